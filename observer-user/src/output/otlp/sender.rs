//! The export thread: a bounded queue from the session, alerts batched for up to
//! [`LOG_BATCH_WAIT`], each request gzipped and posted with timeouts and a few retries with
//! backoff. What cannot be delivered is dropped and counted in
//! `observer_export_failures_total{sink="otlp"}`; the first failure is said once on stderr.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
use flate2::Compression;
use prost::Message;

use super::logs::{self, LogEntry};
use super::profiles::{self, ProcessProfile, Window};
use super::{OtlpConfig, OtlpError, SINK};
use crate::output::metrics::Metrics;

/// Items waiting for the thread; past this the newest are dropped (and counted).
const QUEUE: usize = 512;
/// Alerts raised together leave together: the thread waits this long after the first.
const LOG_BATCH_WAIT: Duration = Duration::from_secs(1);
/// At most this many alerts in one request.
const MAX_LOG_BATCH: usize = 256;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Connect, send and answer together.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts per request (the first and the retries), with backoff doubling from this.
const ATTEMPTS: u32 = 3;
const BACKOFF: Duration = Duration::from_millis(500);
/// How long stopping observer waits for what is queued to leave.
pub const FLUSH_LIMIT: Duration = Duration::from_secs(5);

pub(super) enum Item {
    Log(Box<LogEntry>),
    Profiles(Vec<ProcessProfile>, Window),
}

pub(super) struct Sender {
    queue: Option<SyncSender<Item>>,
    done: Receiver<()>,
    failures: Arc<Failures>,
}

impl Sender {
    pub(super) fn start(
        config: &OtlpConfig,
        host: String,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Self, OtlpError> {
        let (queue, rx) = mpsc::sync_channel(QUEUE);
        let (done_tx, done) = mpsc::channel();
        let failures = Arc::new(Failures {
            metrics,
            said: AtomicBool::new(false),
        });
        let worker = Worker {
            agent: agent(),
            logs_url: config.logs_url(),
            profiles_url: config.profiles_url(),
            host,
            failures: Arc::clone(&failures),
            closing_since: None,
        };
        std::thread::Builder::new()
            .name("observer-otlp".into())
            .spawn(move || {
                worker.run(rx);
                let _ = done_tx.send(());
            })
            .map_err(OtlpError::Thread)?;
        Ok(Self {
            queue: Some(queue),
            done,
            failures,
        })
    }

    /// Never blocks: a full queue drops `item` and counts it.
    pub(super) fn send(&self, item: Item) {
        let Some(queue) = &self.queue else { return };
        match queue.try_send(item) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.failures.fail(1, "export queue full, dropped"),
            Err(TrySendError::Disconnected(_)) => {
                self.failures.fail(1, "export thread gone, dropped")
            }
        }
    }

    pub(super) fn failed_items(&self, n: u64, why: &str) {
        self.failures.fail(n, why);
    }

    /// Lets the thread send what is queued, for at most [`FLUSH_LIMIT`].
    pub(super) fn close(&mut self) {
        self.queue = None;
        if self.done.recv_timeout(FLUSH_LIMIT).is_err() {
            self.failures.fail(
                1,
                "gave up sending at exit after 5 s (collector slow or unreachable)",
            );
        }
    }
}

struct Failures {
    metrics: Option<Arc<Metrics>>,
    said: AtomicBool,
}

impl Failures {
    fn fail(&self, n: u64, why: &str) {
        if let Some(m) = &self.metrics {
            m.export_failures(SINK, n);
        }
        if !self.said.swap(true, Ordering::Relaxed) {
            crate::say!(
                "observer: otlp: {why} (further failures counted in observer_export_failures_total)"
            );
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_global(Some(REQUEST_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into()
}

struct Worker {
    agent: ureq::Agent,
    logs_url: String,
    profiles_url: String,
    host: String,
    failures: Arc<Failures>,
    /// Once the session stopped: retries end at [`FLUSH_LIMIT`] after it.
    closing_since: Option<Instant>,
}

impl Worker {
    fn run(mut self, rx: Receiver<Item>) {
        let mut pending: Vec<LogEntry> = Vec::new();
        let mut flush_at: Option<Instant> = None;
        loop {
            let got = match flush_at {
                Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match got {
                Ok(Item::Log(entry)) => {
                    pending.push(*entry);
                    flush_at.get_or_insert_with(|| Instant::now() + LOG_BATCH_WAIT);
                    if pending.len() >= MAX_LOG_BATCH {
                        self.post_logs(&mut pending);
                        flush_at = None;
                    }
                }
                Ok(Item::Profiles(processes, window)) => {
                    self.post_logs(&mut pending);
                    flush_at = None;
                    if let Some(req) = profiles::request(&processes, &self.host, window) {
                        self.post(&self.profiles_url, &req.encode_to_vec(), "profiles");
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.post_logs(&mut pending);
                    flush_at = None;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.closing_since = Some(Instant::now());
                    self.post_logs(&mut pending);
                    return;
                }
            }
        }
    }

    fn post_logs(&self, pending: &mut Vec<LogEntry>) {
        if pending.is_empty() {
            return;
        }
        let req = logs::request(pending, &self.host);
        pending.clear();
        self.post(&self.logs_url, &req.encode_to_vec(), "logs");
    }

    /// Posts `body` gzipped, retrying with backoff; a request that never succeeds counts once.
    fn post(&self, url: &str, body: &[u8], what: &str) {
        let Ok(gz) = gzip(body) else {
            self.failures.fail(1, "cannot gzip a request");
            return;
        };
        let mut backoff = BACKOFF;
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            match self.post_once(url, &gz) {
                Ok(()) => return,
                Err(Retry::No(why)) => {
                    last = why;
                    break;
                }
                Err(Retry::Yes(why)) => last = why,
            }
            let out_of_time = self
                .closing_since
                .is_some_and(|t| t.elapsed() + backoff >= FLUSH_LIMIT);
            if attempt == ATTEMPTS || out_of_time {
                break;
            }
            std::thread::sleep(backoff);
            backoff *= 2;
        }
        self.failures
            .fail(1, &format!("{what} to {url} not delivered: {last}"));
    }

    fn post_once(&self, url: &str, gz: &[u8]) -> Result<(), Retry> {
        let resp = self
            .agent
            .post(url)
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "gzip")
            .send(gz)
            .map_err(|e| Retry::Yes(e.to_string()))?;
        let status = resp.status().as_u16();
        match status {
            200..=299 => Ok(()),
            // As the OTLP/HTTP spec says: these may succeed later, other errors will not.
            429 | 502 | 503 | 504 => Err(Retry::Yes(format!("HTTP {status}"))),
            _ => Err(Retry::No(format!("HTTP {status}"))),
        }
    }
}

enum Retry {
    Yes(String),
    No(String),
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes)?;
    enc.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read};
    use std::net::TcpListener;
    use std::sync::Mutex;

    /// (path, gunzipped body) of each request received.
    type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

    /// A receiver answering `status` to every request.
    fn receiver(status: u16) -> (String, Received) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let keep = Arc::clone(&got);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let path = line.split(' ').nth(1).unwrap_or("").to_string();
                let mut len = 0;
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    if h.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                let mut plain = Vec::new();
                flate2::read::GzDecoder::new(&body[..])
                    .read_to_end(&mut plain)
                    .unwrap();
                keep.lock().unwrap().push((path, plain));
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        (format!("http://{addr}"), got)
    }

    fn entry() -> LogEntry {
        LogEntry {
            json: serde_json::json!({"kind": "deadlock", "pid": 5}),
            text: "deadlock".into(),
            time_unix_nano: 1,
            process: "p".into(),
        }
    }

    fn config(base: &str) -> OtlpConfig {
        OtlpConfig::new(base, Duration::from_secs(60)).unwrap()
    }

    #[test]
    fn alerts_are_batched_and_posted_gzipped() {
        let (base, got) = receiver(200);
        let metrics = Metrics::new();
        let mut s = Sender::start(&config(&base), "h".into(), Some(Arc::clone(&metrics))).unwrap();
        let t = Instant::now();
        s.send(Item::Log(Box::new(entry())));
        s.send(Item::Log(Box::new(entry())));
        while got.lock().unwrap().is_empty() && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "alerts leave within seconds"
        );
        s.close();
        let got = got.lock().unwrap();
        assert_eq!(got.len(), 1, "both alerts in one request");
        assert_eq!(got[0].0, "/v1/logs");
        let req =
            opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest::decode(
                &got[0].1[..],
            )
            .unwrap();
        assert_eq!(req.resource_logs[0].scope_logs[0].log_records.len(), 2);
        assert!(metrics
            .render()
            .contains("observer_export_failures_total{sink=\"otlp\"} 0\n"));
    }

    #[test]
    fn failures_are_counted_and_bounded_in_time() {
        // 400: not retried; the request counts once.
        let (base, got) = receiver(400);
        let metrics = Metrics::new();
        let mut s = Sender::start(&config(&base), "h".into(), Some(Arc::clone(&metrics))).unwrap();
        s.send(Item::Log(Box::new(entry())));
        s.close();
        assert_eq!(got.lock().unwrap().len(), 1);
        assert!(metrics
            .render()
            .contains("observer_export_failures_total{sink=\"otlp\"} 1\n"));

        // Nothing listens: retried, then dropped, and closing stays within the flush limit.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let metrics = Metrics::new();
        let cfg = config(&format!("http://127.0.0.1:{port}"));
        let mut s = Sender::start(&cfg, "h".into(), Some(Arc::clone(&metrics))).unwrap();
        for _ in 0..(QUEUE + 50) {
            s.send(Item::Log(Box::new(entry())));
        }
        let t = Instant::now();
        s.close();
        assert!(t.elapsed() <= FLUSH_LIMIT + Duration::from_millis(500));
        assert!(!metrics
            .render()
            .contains("observer_export_failures_total{sink=\"otlp\"} 0\n"));
    }

    #[test]
    fn a_collector_that_never_answers_does_not_hold_up_the_sender() {
        // Accepts and reads nothing: the request times out; the session's calls never wait.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let _keep = std::thread::spawn(move || {
            let conns: Vec<_> = listener.incoming().take(10).collect();
            std::thread::sleep(Duration::from_secs(30));
            drop(conns);
        });
        let mut s = Sender::start(&config(&base), "h".into(), None).unwrap();
        let t = Instant::now();
        for _ in 0..2000 {
            s.send(Item::Log(Box::new(entry())));
        }
        assert!(t.elapsed() < Duration::from_millis(500));
        s.close();
        assert!(t.elapsed() <= FLUSH_LIMIT + Duration::from_secs(1));
    }
}
