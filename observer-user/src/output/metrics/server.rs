//! The HTTP endpoint: `GET /metrics` on tokio, bounded against idle and hostile clients.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use super::registry::Metrics;

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
    use super::super::registry::GONE_GRACE;
    use super::*;
    use std::io::{Read, Write};
    use std::time::Instant;

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
