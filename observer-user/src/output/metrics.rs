//! Prometheus metrics of the sidecar: a bounded registry, the text exposition format 0.0.4, and a
//! minimal HTTP endpoint (`GET /metrics`) on tokio.
//!
//! Per-process series carry `pid` and `comm` labels, where `comm` is the process's name (its main
//! thread's comm), never a thread name: thread names would multiply the series. Cardinality stays
//! bounded three ways: a process gets series only once something non-zero is reported for it; at
//! most `max_processes` processes are kept (further ones are refused and counted in
//! `observer_metrics_series_dropped_total`); and a process reported gone keeps its series for
//! [`GONE_GRACE`] (so that the last values are scraped) and then loses them.
//!
//! `observer_alerts_by_kind_total{kind}` exists next to the per-process `observer_alerts_total`
//! because a counter series that first appears with value 1 is invisible to `increase()`: the
//! host-wide one starts at 0 for every kind, so an alert rule on it fires on the first deadlock.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// Where `--metrics-addr` listens by default: loopback only, so nothing leaves the host unless the
/// operator asks for it.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9464";
/// Processes with per-process series at most (a host rarely has more processes worth a series).
pub const DEFAULT_MAX_PROCESSES: usize = 2000;
/// How long a dead process's series stay: several scrape intervals, so its last values are stored.
pub const GONE_GRACE: Duration = Duration::from_secs(300);
/// Distinct alert kinds per process at most; the known kinds are 10, the rest guards misuse.
const MAX_KINDS: usize = 32;
/// The alert kinds of `alert.rs`; each gets a host-wide series at 0 from the start.
const KNOWN_ALERT_KINDS: &[&str] = &[
    "lock_wait",
    "stall",
    "deadlock",
    "thread_exit",
    "process_exit",
    "idle_wait",
    "goroutine_wait",
    "goroutine_stall",
    "goroutine_leak",
    "go_panic",
];
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// A scrape request head is a few hundred bytes; anything larger is not a scraper.
const MAX_REQUEST_HEAD: usize = 8192;
/// A scraper sends its whole request at once; a client still sending after this is idle or
/// hostile (slow loris), and is dropped.
const HEAD_DEADLINE: Duration = Duration::from_secs(2);
/// Everything a connection may take, answer included (a client that reads the body slowly).
const CONNECTION_DEADLINE: Duration = Duration::from_secs(5);
/// Connections open at once (each is a task and a descriptor). When full, the oldest one that
/// has not sent its request yet is dropped for the newcomer: idle clients, however many, can
/// never keep a scrape waiting.
const MAX_CONNECTIONS: usize = 256;

/// What a thread or goroutine waited for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitKind {
    /// A futex wait on a lock held by another thread.
    Lock,
    /// Any other blocking wait (condition variables, sleeps, poll, reads).
    Idle,
    /// A goroutine parked on a sync primitive.
    Goroutine,
}

impl WaitKind {
    const ALL: [WaitKind; 3] = [WaitKind::Lock, WaitKind::Idle, WaitKind::Goroutine];

    fn label(self) -> &'static str {
        match self {
            WaitKind::Lock => "lock",
            WaitKind::Idle => "idle",
            WaitKind::Goroutine => "goroutine",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A metric family drawn from the wait totals: name, help text, and the value it shows.
type WaitFamily = (&'static str, &'static str, fn(&WaitTotals) -> String);

#[derive(Clone, Copy, Default)]
struct WaitTotals {
    count: u64,
    total_ns: u64,
}

struct Process {
    comm: String,
    waits: [WaitTotals; 3],
    alerts: BTreeMap<String, u64>,
    stalled_threads: u64,
    stalled_goroutines: u64,
    thread_deaths: u64,
    go_panics: u64,
    gone_since: Option<Instant>,
}

impl Process {
    fn new(comm: &str) -> Self {
        Process {
            comm: comm.to_string(),
            waits: [WaitTotals::default(); 3],
            alerts: BTreeMap::new(),
            stalled_threads: 0,
            stalled_goroutines: 0,
            thread_deaths: 0,
            go_panics: 0,
            gone_since: None,
        }
    }
}

/// Kernel-side loss counters, cumulative since the probes were loaded.
#[derive(Clone, Copy, Default)]
struct Drops {
    events: u64,
    aggregates: u64,
    in_flight: u64,
    stacks_missing: u64,
}

struct Registry {
    processes: BTreeMap<u32, Process>,
    max_processes: usize,
    series_dropped: u64,
    alerts_by_kind: BTreeMap<String, u64>,
    drops: Drops,
    watched: u64,
    go_watched: u64,
}

impl Registry {
    /// The entry of `pid`, created if there is room. A pid seen again under another name is a new
    /// process (the pid was reused, or the process exec'd): its counters start over.
    fn process(&mut self, pid: u32, comm: &str) -> Option<&mut Process> {
        let fresh = match self.processes.get(&pid) {
            Some(p) => p.comm != comm,
            None => {
                if self.processes.len() >= self.max_processes && !self.evict_one_gone() {
                    self.series_dropped += 1;
                    return None;
                }
                true
            }
        };
        if fresh {
            self.processes.insert(pid, Process::new(comm));
        }
        let p = self.processes.get_mut(&pid)?;
        // A report after `process_gone` is a late event of it (or the pid lives again): keep it.
        p.gone_since = None;
        Some(p)
    }

    /// Makes room by dropping the process that has been gone longest; false if none is gone.
    fn evict_one_gone(&mut self) -> bool {
        let oldest = self
            .processes
            .iter()
            .filter_map(|(pid, p)| p.gone_since.map(|t| (t, *pid)))
            .min();
        match oldest {
            Some((_, pid)) => {
                self.processes.remove(&pid);
                true
            }
            None => false,
        }
    }

    fn expire(&mut self, now: Instant, grace: Duration) {
        self.processes.retain(|_, p| {
            p.gone_since
                .is_none_or(|t| now.saturating_duration_since(t) < grace)
        });
    }

    fn count_alert_kind(&mut self, kind: &str) {
        if let Some(n) = self.alerts_by_kind.get_mut(kind) {
            *n += 1;
        } else if self.alerts_by_kind.len() < MAX_KINDS {
            self.alerts_by_kind.insert(kind.to_string(), 1);
        } else {
            self.series_dropped += 1;
        }
    }
}

/// The sidecar's metrics. Updates take a std mutex for a few map operations; rendering holds it
/// while formatting (well under a millisecond for hundreds of processes).
pub struct Metrics {
    registry: Mutex<Registry>,
    grace: Duration,
    version: &'static str,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Self::with_limits(DEFAULT_MAX_PROCESSES, GONE_GRACE))
    }

    /// A registry keeping at most `max_processes` processes, and dead ones for `grace`.
    pub fn with_limits(max_processes: usize, grace: Duration) -> Metrics {
        let alerts_by_kind = KNOWN_ALERT_KINDS
            .iter()
            .map(|k| (k.to_string(), 0))
            .collect();
        Metrics {
            registry: Mutex::new(Registry {
                processes: BTreeMap::new(),
                max_processes,
                series_dropped: 0,
                alerts_by_kind,
                drops: Drops::default(),
                watched: 0,
                go_watched: 0,
            }),
            grace,
            version: env!("CARGO_PKG_VERSION"),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic elsewhere while holding the lock leaves plain counters behind: still usable.
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `count` waits totalling `total_ns` (deltas, e.g. one drain of the kernel aggregates).
    pub fn wait(&self, pid: u32, comm: &str, kind: WaitKind, count: u64, total_ns: u64) {
        if count == 0 && total_ns == 0 {
            return;
        }
        let mut reg = self.lock();
        if let Some(p) = reg.process(pid, comm) {
            let w = &mut p.waits[kind.index()];
            w.count = w.count.saturating_add(count);
            w.total_ns = w.total_ns.saturating_add(total_ns);
        }
    }

    /// Counts one alert of `kind` (`Alert::kind()`); `thread_exit` also counts a thread death and
    /// `go_panic` a panic.
    pub fn alert(&self, pid: u32, comm: &str, kind: &str) {
        let mut reg = self.lock();
        reg.count_alert_kind(kind);
        let Some(p) = reg.process(pid, comm) else {
            return;
        };
        match kind {
            "thread_exit" => p.thread_deaths += 1,
            "go_panic" => p.go_panics += 1,
            _ => {}
        }
        if let Some(n) = p.alerts.get_mut(kind) {
            *n += 1;
        } else if p.alerts.len() < MAX_KINDS {
            p.alerts.insert(kind.to_string(), 1);
        } else {
            reg.series_dropped += 1;
        }
    }

    /// Thread deaths that raised no alert (their creation site had already alerted).
    pub fn thread_deaths(&self, pid: u32, comm: &str, count: u64) {
        if count == 0 {
            return;
        }
        let mut reg = self.lock();
        if let Some(p) = reg.process(pid, comm) {
            p.thread_deaths = p.thread_deaths.saturating_add(count);
        }
    }

    /// Threads and goroutines blocked past `--stall-after` right now.
    pub fn set_blocked(&self, pid: u32, comm: &str, stalled_threads: u64, stalled_goroutines: u64) {
        let mut reg = self.lock();
        let known = reg.processes.contains_key(&pid);
        if !known && stalled_threads == 0 && stalled_goroutines == 0 {
            return;
        }
        if let Some(p) = reg.process(pid, comm) {
            p.stalled_threads = stalled_threads;
            p.stalled_goroutines = stalled_goroutines;
        }
    }

    /// The kernel's loss counters (cumulative totals, not deltas).
    pub fn set_drops(&self, events: u64, aggregates: u64, in_flight: u64, stacks_missing: u64) {
        self.lock().drops = Drops {
            events,
            aggregates,
            in_flight,
            stacks_missing,
        };
    }

    pub fn set_watched(&self, processes: u64, go_processes: u64) {
        let mut reg = self.lock();
        reg.watched = processes;
        reg.go_watched = go_processes;
    }

    /// The process ended: its gauges drop to 0 and its series go after [`GONE_GRACE`].
    pub fn process_gone(&self, pid: u32) {
        self.process_gone_at(pid, Instant::now());
    }

    fn process_gone_at(&self, pid: u32, now: Instant) {
        if let Some(p) = self.lock().processes.get_mut(&pid) {
            p.stalled_threads = 0;
            p.stalled_goroutines = 0;
            p.gone_since.get_or_insert(now);
        }
    }

    /// The exposition text (format 0.0.4).
    pub fn render(&self) -> String {
        self.render_at(Instant::now())
    }

    fn render_at(&self, now: Instant) -> String {
        let mut reg = self.lock();
        reg.expire(now, self.grace);
        let mut out = String::with_capacity(1024 + reg.processes.len() * 512);
        let r = &*reg;

        family(&mut out, "observer_up", "gauge", "1 while observer runs.");
        out.push_str("observer_up 1\n");
        family(
            &mut out,
            "observer_build_info",
            "gauge",
            "observer's version, as a label; the value is always 1.",
        );
        let _ = writeln!(
            out,
            "observer_build_info{{version=\"{}\"}} 1",
            escape_label(self.version)
        );
        family(
            &mut out,
            "observer_watched_processes",
            "gauge",
            "Processes observer watches now.",
        );
        let _ = writeln!(out, "observer_watched_processes {}", r.watched);
        family(
            &mut out,
            "observer_go_processes",
            "gauge",
            "Watched processes with the goroutine probes attached.",
        );
        let _ = writeln!(out, "observer_go_processes {}", r.go_watched);
        family(
            &mut out,
            "observer_events_dropped_total",
            "counter",
            "Observations lost in the kernel: ring buffer full (events), aggregate map full \
             (aggregates), in-flight table full (in_flight), samples without a stack (stacks_missing).",
        );
        for (what, n) in [
            ("events", r.drops.events),
            ("aggregates", r.drops.aggregates),
            ("in_flight", r.drops.in_flight),
            ("stacks_missing", r.drops.stacks_missing),
        ] {
            let _ = writeln!(out, "observer_events_dropped_total{{what=\"{what}\"}} {n}");
        }
        family(
            &mut out,
            "observer_metrics_series_dropped_total",
            "counter",
            "Metric updates refused because the per-process series limit was reached.",
        );
        let _ = writeln!(
            out,
            "observer_metrics_series_dropped_total {}",
            r.series_dropped
        );
        family(
            &mut out,
            "observer_alerts_by_kind_total",
            "counter",
            "Alerts raised on this host, by kind (every kind starts at 0).",
        );
        for (kind, n) in &r.alerts_by_kind {
            let _ = writeln!(
                out,
                "observer_alerts_by_kind_total{{kind=\"{}\"}} {n}",
                escape_label(kind)
            );
        }

        let labels: Vec<(u32, &Process, String)> = r
            .processes
            .iter()
            .map(|(pid, p)| {
                (
                    *pid,
                    p,
                    format!("pid=\"{pid}\",comm=\"{}\"", escape_label(&p.comm)),
                )
            })
            .collect();

        let waits: [WaitFamily; 2] = [
            (
                "observer_waits_total",
                "Blocking waits observed, by process and kind (lock, idle, goroutine).",
                |w| w.count.to_string(),
            ),
            (
                "observer_wait_seconds_total",
                "Time spent in those waits, in seconds.",
                |w| seconds(w.total_ns),
            ),
        ];
        for (name, help, value) in waits {
            family(&mut out, name, "counter", help);
            for (_, p, l) in &labels {
                for kind in WaitKind::ALL {
                    let w = p.waits[kind.index()];
                    if w.count > 0 || w.total_ns > 0 {
                        let _ =
                            writeln!(out, "{name}{{{l},kind=\"{}\"}} {}", kind.label(), value(&w));
                    }
                }
            }
        }
        family(
            &mut out,
            "observer_alerts_total",
            "counter",
            "Alerts raised, by process and kind.",
        );
        for (_, p, l) in &labels {
            for (kind, n) in &p.alerts {
                let _ = writeln!(
                    out,
                    "observer_alerts_total{{{l},kind=\"{}\"}} {n}",
                    escape_label(kind)
                );
            }
        }
        family(
            &mut out,
            "observer_stalled_threads",
            "gauge",
            "Threads blocked on a held lock past --stall-after, now.",
        );
        for (_, p, l) in &labels {
            let _ = writeln!(out, "observer_stalled_threads{{{l}}} {}", p.stalled_threads);
        }
        family(
            &mut out,
            "observer_stalled_goroutines",
            "gauge",
            "Goroutines waiting on a sync primitive past --stall-after, now.",
        );
        for (_, p, l) in &labels {
            let _ = writeln!(
                out,
                "observer_stalled_goroutines{{{l}}} {}",
                p.stalled_goroutines
            );
        }
        family(
            &mut out,
            "observer_thread_deaths_total",
            "counter",
            "Threads that died while their process lived on.",
        );
        for (_, p, l) in &labels {
            let _ = writeln!(
                out,
                "observer_thread_deaths_total{{{l}}} {}",
                p.thread_deaths
            );
        }
        family(
            &mut out,
            "observer_go_panics_total",
            "counter",
            "Go panics, recovered or not.",
        );
        for (_, p, l) in &labels {
            let _ = writeln!(out, "observer_go_panics_total{{{l}}} {}", p.go_panics);
        }
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Label values escape backslash, double quote and newline (exposition format 0.0.4).
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text escapes backslash and newline only.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Nanoseconds as seconds, exactly: integer part and 9 decimals, trailing zeros trimmed. (An f64
/// would round counters above ~104 days of accumulated wait.)
fn seconds(ns: u64) -> String {
    let (whole, frac) = (ns / 1_000_000_000, ns % 1_000_000_000);
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:09}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

#[derive(Debug, Error)]
pub enum MetricsError {
    #[error(
        "--metrics-addr {addr}: not an address to listen on (expected IP:PORT, e.g. 127.0.0.1:9464, \
         or 0.0.0.0:9464 for every interface)"
    )]
    BadAddress { addr: String },
    #[error(
        "--metrics-addr {addr}: address in use (another observer or exporter listens there); \
         choose another with --metrics-addr, or turn the endpoint off with --no-metrics"
    )]
    InUse { addr: String },
    #[error(
        "--metrics-addr {addr}: permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)"
    )]
    PermissionDenied { addr: String },
    #[error("--metrics-addr {addr}: address not available (no interface of this host has it)")]
    NotAvailable { addr: String },
    #[error("--metrics-addr {addr}: {source}")]
    Io { addr: String, source: io::Error },
}

/// Binds the metrics listener, with an error that names the option and what to do about it.
pub async fn bind(addr: &str) -> Result<TcpListener, MetricsError> {
    let owned = || addr.to_string();
    // A bare ":9464" (Go style) would mean every interface: make the operator say so.
    if addr.starts_with(':') || !addr.contains(':') {
        return Err(MetricsError::BadAddress { addr: owned() });
    }
    TcpListener::bind(addr).await.map_err(|e| match e.kind() {
        io::ErrorKind::AddrInUse => MetricsError::InUse { addr: owned() },
        io::ErrorKind::PermissionDenied => MetricsError::PermissionDenied { addr: owned() },
        io::ErrorKind::AddrNotAvailable => MetricsError::NotAvailable { addr: owned() },
        io::ErrorKind::InvalidInput => MetricsError::BadAddress { addr: owned() },
        _ if e.raw_os_error().is_none() => MetricsError::BadAddress { addr: owned() },
        _ => MetricsError::Io {
            addr: owned(),
            source: e,
        },
    })
}

/// Answers scrapes until the task is dropped or aborted: `GET`/`HEAD /metrics`, 404 elsewhere,
/// 405 for other methods. One request per connection, each connection a task of its own
/// (accepting never waits for one), bounded by [`HEAD_DEADLINE`], [`CONNECTION_DEADLINE`] and
/// [`MAX_CONNECTIONS`].
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    let mut open: VecDeque<Connection> = VecDeque::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and the like pass; retrying at once would spin.
                log::warn!("metrics endpoint: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        open.retain(|c| !c.task.is_finished());
        if open.len() >= MAX_CONNECTIONS {
            match open.iter().position(|c| c.idle.load(Ordering::Relaxed)) {
                Some(oldest_idle) => {
                    if let Some(shed) = open.remove(oldest_idle) {
                        shed.task.abort();
                    }
                }
                // Every one is being answered (they end within the deadline): refuse fast.
                None => continue,
            }
        }
        let idle = Arc::new(AtomicBool::new(true));
        let metrics = Arc::clone(&metrics);
        let flag = Arc::clone(&idle);
        let task = tokio::spawn(async move {
            match tokio::time::timeout(CONNECTION_DEADLINE, answer(stream, &metrics, &flag)).await {
                Ok(Err(e)) => log::debug!("metrics endpoint: {e}"),
                Err(_) => log::debug!("metrics endpoint: connection deadline passed"),
                Ok(Ok(())) => {}
            }
        });
        open.push_back(Connection {
            task: task.abort_handle(),
            idle,
        });
    }
}

/// An open connection of the metrics endpoint.
struct Connection {
    task: AbortHandle,
    /// Its request head has not arrived yet.
    idle: Arc<AtomicBool>,
}

async fn answer(mut stream: TcpStream, metrics: &Metrics, idle: &AtomicBool) -> io::Result<()> {
    let head = match tokio::time::timeout(HEAD_DEADLINE, read_head(&mut stream)).await {
        Ok(head) => head?,
        Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "request timed out")),
    };
    idle.store(false, Ordering::Relaxed);
    let response = match head {
        Some(head) => respond(&head, metrics),
        None => reply("400 Bad Request", "text/plain", "bad request\n", true, &[]),
    };
    stream.write_all(&response).await?;
    stream.shutdown().await
}

/// Reads up to the blank line ending the request head; `None` if it is too long or cut short.
async fn read_head(stream: &mut TcpStream) -> io::Result<Option<String>> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            return Ok(Some(String::from_utf8_lossy(&buf[..end]).into_owned()));
        }
        if buf.len() > MAX_REQUEST_HEAD {
            return Ok(None);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The whole response for a request head.
fn respond(head: &str, metrics: &Metrics) -> Vec<u8> {
    let request_line = head.lines().next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return reply("400 Bad Request", "text/plain", "bad request\n", true, &[]);
    };
    if !version.starts_with("HTTP/1.") {
        return reply("400 Bad Request", "text/plain", "bad request\n", true, &[]);
    }
    let path = target.split(['?', '#']).next().unwrap_or_default();
    if path != "/metrics" {
        let with_body = method != "HEAD";
        return reply(
            "404 Not Found",
            "text/plain",
            "not found: metrics are at /metrics\n",
            with_body,
            &[],
        );
    }
    match method {
        "GET" => reply("200 OK", CONTENT_TYPE, &metrics.render(), true, &[]),
        "HEAD" => reply("200 OK", CONTENT_TYPE, &metrics.render(), false, &[]),
        _ => reply(
            "405 Method Not Allowed",
            "text/plain",
            "only GET and HEAD\n",
            true,
            &[("Allow", "GET, HEAD")],
        ),
    }
}

/// A response with `Content-Length` of `body` (also for HEAD, which sends no body).
fn reply(
    status: &str,
    content_type: &str,
    body: &str,
    with_body: bool,
    extra: &[(&str, &str)],
) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in extra {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if with_body {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn sample_lines(text: &str, name: &str) -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn golden_exposition() {
        let m = Metrics::with_limits(10, GONE_GRACE);
        m.set_watched(3, 1);
        m.set_drops(1, 2, 3, 4);
        m.wait(42, "db", WaitKind::Lock, 3, 1_500_000_000);
        m.wait(42, "db", WaitKind::Lock, 1, 250_000_000);
        m.wait(42, "db", WaitKind::Idle, 2, 7);
        m.alert(42, "db", "deadlock");
        m.alert(42, "db", "stall");
        m.alert(42, "db", "stall");
        m.alert(7, "api", "go_panic");
        m.set_blocked(42, "db", 2, 0);
        let text = m.render();
        let expected_tail = "\
# HELP observer_waits_total Blocking waits observed, by process and kind (lock, idle, goroutine).
# TYPE observer_waits_total counter
observer_waits_total{pid=\"42\",comm=\"db\",kind=\"lock\"} 4
observer_waits_total{pid=\"42\",comm=\"db\",kind=\"idle\"} 2
# HELP observer_wait_seconds_total Time spent in those waits, in seconds.
# TYPE observer_wait_seconds_total counter
observer_wait_seconds_total{pid=\"42\",comm=\"db\",kind=\"lock\"} 1.75
observer_wait_seconds_total{pid=\"42\",comm=\"db\",kind=\"idle\"} 0.000000007
# HELP observer_alerts_total Alerts raised, by process and kind.
# TYPE observer_alerts_total counter
observer_alerts_total{pid=\"7\",comm=\"api\",kind=\"go_panic\"} 1
observer_alerts_total{pid=\"42\",comm=\"db\",kind=\"deadlock\"} 1
observer_alerts_total{pid=\"42\",comm=\"db\",kind=\"stall\"} 2
# HELP observer_stalled_threads Threads blocked on a held lock past --stall-after, now.
# TYPE observer_stalled_threads gauge
observer_stalled_threads{pid=\"7\",comm=\"api\"} 0
observer_stalled_threads{pid=\"42\",comm=\"db\"} 2
# HELP observer_stalled_goroutines Goroutines waiting on a sync primitive past --stall-after, now.
# TYPE observer_stalled_goroutines gauge
observer_stalled_goroutines{pid=\"7\",comm=\"api\"} 0
observer_stalled_goroutines{pid=\"42\",comm=\"db\"} 0
# HELP observer_thread_deaths_total Threads that died while their process lived on.
# TYPE observer_thread_deaths_total counter
observer_thread_deaths_total{pid=\"7\",comm=\"api\"} 0
observer_thread_deaths_total{pid=\"42\",comm=\"db\"} 0
# HELP observer_go_panics_total Go panics, recovered or not.
# TYPE observer_go_panics_total counter
observer_go_panics_total{pid=\"7\",comm=\"api\"} 1
observer_go_panics_total{pid=\"42\",comm=\"db\"} 0
";
        assert!(
            text.ends_with(expected_tail),
            "per-process part differs:\n{text}"
        );
        let head = format!(
            "\
# HELP observer_up 1 while observer runs.
# TYPE observer_up gauge
observer_up 1
# HELP observer_build_info observer's version, as a label; the value is always 1.
# TYPE observer_build_info gauge
observer_build_info{{version=\"{}\"}} 1
# HELP observer_watched_processes Processes observer watches now.
# TYPE observer_watched_processes gauge
observer_watched_processes 3
# HELP observer_go_processes Watched processes with the goroutine probes attached.
# TYPE observer_go_processes gauge
observer_go_processes 1
",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.starts_with(&head), "head differs:\n{text}");
        assert_eq!(
            sample_lines(&text, "observer_events_dropped_total"),
            [
                "observer_events_dropped_total{what=\"events\"} 1",
                "observer_events_dropped_total{what=\"aggregates\"} 2",
                "observer_events_dropped_total{what=\"in_flight\"} 3",
                "observer_events_dropped_total{what=\"stacks_missing\"} 4",
            ]
        );
        let by_kind = sample_lines(&text, "observer_alerts_by_kind_total");
        assert_eq!(by_kind.len(), KNOWN_ALERT_KINDS.len(), "{by_kind:?}");
        assert!(by_kind.contains(&"observer_alerts_by_kind_total{kind=\"stall\"} 2".into()));
        assert!(by_kind.contains(&"observer_alerts_by_kind_total{kind=\"lock_wait\"} 0".into()));
    }

    /// Every line is a comment or `name{labels} value`, every family is declared once before
    /// its samples, and no sample appears twice: what Prometheus' parser insists on.
    #[test]
    fn exposition_is_well_formed() {
        let m = Metrics::with_limits(100, GONE_GRACE);
        for pid in 1..20 {
            m.wait(pid, "w\"eird\\comm\n", WaitKind::Goroutine, 1, 1);
            m.alert(pid, "w\"eird\\comm\n", "thread_exit");
        }
        let text = m.render();
        assert!(text.ends_with('\n'));
        let mut declared = std::collections::HashSet::new();
        let mut seen = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(declared.insert(name.to_string()), "declared twice: {line}");
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect(line);
            assert!(value.parse::<f64>().is_ok(), "bad value: {line}");
            let name = series.split('{').next().unwrap();
            assert!(declared.contains(name), "sample before its TYPE: {line}");
            assert!(seen.insert(series.to_string()), "duplicate series: {line}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
        assert_eq!(escape_label("plain-name_1"), "plain-name_1");
        let m = Metrics::with_limits(10, GONE_GRACE);
        m.alert(1, "evil\"} 99\nfake_metric 1", "stall");
        let text = m.render();
        assert!(
            text.contains(
                "observer_alerts_total{pid=\"1\",comm=\"evil\\\"} 99\\nfake_metric 1\",kind=\"stall\"} 1\n"
            ),
            "{text}"
        );
        assert!(!text.lines().any(|l| l.starts_with("fake_metric")));
        assert_eq!(escape_help("a\\b\nc"), "a\\\\b\\nc");
    }

    #[test]
    fn seconds_are_exact() {
        assert_eq!(seconds(0), "0");
        assert_eq!(seconds(1_000_000_000), "1");
        assert_eq!(seconds(1_500_000_000), "1.5");
        assert_eq!(seconds(1), "0.000000001");
        // Above 2^53 ns an f64 would round; this must not.
        assert_eq!(seconds(u64::MAX), "18446744073.709551615");
    }

    #[test]
    fn cardinality_is_capped_and_refusals_counted() {
        let m = Metrics::with_limits(3, GONE_GRACE);
        for pid in 1..=5 {
            m.alert(pid, "p", "stall");
        }
        let text = m.render();
        assert_eq!(sample_lines(&text, "observer_stalled_threads").len(), 3);
        assert!(
            text.contains("observer_metrics_series_dropped_total 2\n"),
            "{text}"
        );
        // The host-wide count still saw all five.
        assert!(text.contains("observer_alerts_by_kind_total{kind=\"stall\"} 5\n"));
        // Known processes keep being updated at the cap.
        m.alert(1, "p", "stall");
        assert!(m
            .render()
            .contains("observer_alerts_total{pid=\"1\",comm=\"p\",kind=\"stall\"} 2\n"));
        // A gone process makes room at once when the table is full.
        m.process_gone(2);
        m.alert(9, "q", "deadlock");
        let text = m.render();
        assert!(text.contains("pid=\"9\""), "{text}");
        assert!(!text.contains("pid=\"2\""), "{text}");
        assert!(text.contains("observer_metrics_series_dropped_total 2\n"));
    }

    #[test]
    fn alert_kinds_per_process_are_capped() {
        let m = Metrics::with_limits(10, GONE_GRACE);
        for i in 0..MAX_KINDS + 5 {
            m.alert(1, "p", &format!("kind{i}"));
        }
        let text = m.render();
        assert_eq!(
            sample_lines(&text, "observer_alerts_total").len(),
            MAX_KINDS
        );
        assert!(
            !text.contains("observer_metrics_series_dropped_total 0\n"),
            "{text}"
        );
    }

    #[test]
    fn gone_processes_expire_after_the_grace() {
        let grace = Duration::from_secs(60);
        let m = Metrics::with_limits(10, grace);
        m.set_blocked(5, "p", 3, 1);
        m.alert(5, "p", "stall");
        let t0 = Instant::now();
        m.process_gone_at(5, t0);
        let text = m.render_at(t0 + Duration::from_secs(59));
        assert!(text.contains("observer_stalled_threads{pid=\"5\",comm=\"p\"} 0\n"));
        assert!(text.contains("observer_alerts_total{pid=\"5\",comm=\"p\",kind=\"stall\"} 1\n"));
        let text = m.render_at(t0 + Duration::from_secs(61));
        assert!(!text.contains("pid=\"5\""), "{text}");
    }

    #[test]
    fn zero_reports_create_no_series_and_a_new_comm_starts_over() {
        let m = Metrics::with_limits(10, GONE_GRACE);
        m.set_blocked(1, "idle", 0, 0);
        m.wait(1, "idle", WaitKind::Lock, 0, 0);
        m.thread_deaths(1, "idle", 0);
        assert!(!m.render().contains("pid=\"1\""));
        m.thread_deaths(1, "idle", 4);
        m.alert(1, "idle", "thread_exit");
        assert!(m
            .render()
            .contains("observer_thread_deaths_total{pid=\"1\",comm=\"idle\"} 5\n"));
        // The pid now names another program.
        m.alert(1, "other", "stall");
        let text = m.render();
        assert!(!text.contains("comm=\"idle\""), "{text}");
        assert!(text.contains("observer_thread_deaths_total{pid=\"1\",comm=\"other\"} 0\n"));
    }

    #[test]
    fn request_routing() {
        let m = Metrics::with_limits(10, GONE_GRACE);
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
        let get = text(respond("GET /metrics HTTP/1.1\r\nHost: x", &m));
        assert!(get.starts_with("HTTP/1.1 200 OK\r\n"), "{get}");
        assert!(get.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        assert!(get.ends_with("observer_go_panics_total counter\n"), "{get}");
        let head = text(respond("HEAD /metrics?x=1 HTTP/1.0", &m));
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"));
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, m.render().len());
        assert!(text(respond("GET / HTTP/1.1", &m)).starts_with("HTTP/1.1 404 "));
        assert!(text(respond("GET /metricsx HTTP/1.1", &m)).starts_with("HTTP/1.1 404 "));
        let post = text(respond("POST /metrics HTTP/1.1", &m));
        assert!(post.starts_with("HTTP/1.1 405 ") && post.contains("\r\nAllow: GET, HEAD\r\n"));
        assert!(text(respond("garbage", &m)).starts_with("HTTP/1.1 400 "));
        assert!(text(respond("GET /metrics SPDY/3", &m)).starts_with("HTTP/1.1 400 "));
    }

    fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn http_round_trip() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let m = Metrics::new();
            m.alert(1234, "dead\"lock", "deadlock");
            let listener = bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(serve(listener, Arc::clone(&m)));
            let (get, head, missing, second) = tokio::task::spawn_blocking(move || {
                (
                    exchange(
                        addr,
                        b"GET /metrics HTTP/1.1\r\nHost: t\r\nAccept: */*\r\n\r\n",
                    ),
                    exchange(addr, b"HEAD /metrics HTTP/1.1\r\nHost: t\r\n\r\n"),
                    exchange(addr, b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n"),
                    exchange(addr, b"GET /metrics HTTP/1.0\r\n\r\n"),
                )
            })
            .await
            .unwrap();
            server.abort();

            let (head_part, body) = get.split_once("\r\n\r\n").unwrap();
            assert!(head_part.starts_with("HTTP/1.1 200 OK"), "{get}");
            assert!(head_part.contains("Content-Type: text/plain; version=0.0.4"));
            let len: usize = head_part
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(len, body.len());
            assert!(body.contains(
                "observer_alerts_total{pid=\"1234\",comm=\"dead\\\"lock\",kind=\"deadlock\"} 1\n"
            ));
            assert!(head.starts_with("HTTP/1.1 200 OK") && head.ends_with("\r\n\r\n"));
            assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");
            assert!(second.starts_with("HTTP/1.1 200 OK"));
        });
    }

    /// The server as the sidecar runs it: a current-thread runtime on a thread of its own.
    fn server_thread(metrics: Arc<Metrics>) -> std::net::SocketAddr {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = rt.block_on(bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || rt.block_on(serve(listener, metrics)));
        addr
    }

    /// A scrape with a deadline: how long it took and what came back.
    fn timed_scrape(addr: std::net::SocketAddr) -> (Duration, String) {
        let start = Instant::now();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        (start.elapsed(), out)
    }

    fn idle_clients(addr: std::net::SocketAddr, n: usize) -> Vec<std::net::TcpStream> {
        let clients: Vec<_> = (0..n)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        // Let the server accept them all before the scrape queues behind them.
        std::thread::sleep(Duration::from_millis(300));
        clients
    }

    /// Prometheus gives a scrape 10 s: idle connections (a port scanner, a stuck client, an
    /// attacker) must not make one take more than a moment.
    #[test]
    fn idle_connections_never_delay_a_scrape() {
        let m = Metrics::new();
        m.alert(7, "api", "deadlock");
        let addr = server_thread(m);
        let _idle = idle_clients(addr, 200);
        let (took, out) = timed_scrape(addr);
        assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
        assert!(took < Duration::from_secs(1), "scrape took {took:?}");
    }

    /// More idle connections than the server keeps: the oldest are dropped, the scrape served.
    #[test]
    fn connections_over_the_cap_shed_the_oldest_idle() {
        let addr = server_thread(Metrics::new());
        let mut idle = idle_clients(addr, MAX_CONNECTIONS + 40);
        let (took, out) = timed_scrape(addr);
        assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
        assert!(took < Duration::from_secs(1), "scrape took {took:?}");
        let oldest = &mut idle[0];
        oldest
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut byte = [0u8; 1];
        assert!(
            matches!(oldest.read(&mut byte), Ok(0) | Err(_)),
            "the oldest idle connection is still open"
        );
    }

    /// A client that sends its request a byte at a time is cut off at the head deadline.
    #[test]
    fn slow_loris_is_dropped_at_the_head_deadline() {
        let addr = server_thread(Metrics::new());
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let start = Instant::now();
        let mut closed_after = None;
        for byte in b"GET /metrics HTTP/1.1\r\nHost: a-very-long-host-name\r\n"
            .iter()
            .cycle()
        {
            if s.write_all(&[*byte]).is_err() {
                closed_after = Some(start.elapsed());
                break;
            }
            if start.elapsed() > Duration::from_secs(8) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let took = closed_after.expect("the server kept a dribbling client for 8 s");
        assert!(
            took < HEAD_DEADLINE + Duration::from_secs(1),
            "closed after {took:?}"
        );
    }

    #[test]
    fn bind_errors_name_the_option_and_the_cause() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let first = bind("127.0.0.1:0").await.unwrap();
            let taken = first.local_addr().unwrap().to_string();
            let err = bind(&taken).await.unwrap_err();
            assert!(matches!(err, MetricsError::InUse { .. }), "{err:?}");
            assert_eq!(
                err.to_string().split(';').next().unwrap(),
                format!("--metrics-addr {taken}: address in use (another observer or exporter listens there)")
            );
            for bad in [":9464", "9464", "not an address", "127.0.0.1:99999"] {
                let err = bind(bad).await.unwrap_err();
                assert!(matches!(err, MetricsError::BadAddress { .. }), "{bad}: {err:?}");
                assert!(err.to_string().starts_with(&format!("--metrics-addr {bad}: ")));
            }
            // TEST-NET-1: on no interface of any host.
            let err = bind("192.0.2.1:9464").await.unwrap_err();
            assert!(matches!(err, MetricsError::NotAvailable { .. }), "{err:?}");
        });
    }
}
