//! Scraping observer's Prometheus endpoint the way a Prometheus server does: one GET per scrape
//! over a fresh TCP connection, so that serving it lands in observer's own CPU figures.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// One successful scrape.
#[derive(Debug, Clone, Copy)]
pub(super) struct Scrape {
    pub(super) latency: Duration,
    pub(super) body_bytes: usize,
    /// Sample lines in the exposition (not comments): the cardinality a scraper stores.
    pub(super) series: usize,
}

/// All scrapes of one run.
#[derive(Debug, Clone, Default)]
pub(super) struct Scrapes {
    pub(super) ok: Vec<Scrape>,
    pub(super) failed: u32,
    pub(super) last_error: Option<String>,
}

impl Scrapes {
    pub(super) fn record(&mut self, outcome: Result<Scrape>) {
        match outcome {
            Ok(s) => self.ok.push(s),
            Err(e) => {
                self.failed += 1;
                self.last_error = Some(format!("{e:#}"));
            }
        }
    }
}

/// A loopback port nobody listens on right now. Another process could take it before observer
/// binds it; observer then fails to start with a clear error and the round counts as failed.
pub(super) fn free_port() -> Result<u16> {
    let l = TcpListener::bind(("127.0.0.1", 0)).context("could not find a free loopback port")?;
    Ok(l.local_addr()?.port())
}

pub(super) fn scrape(port: u16) -> Result<Scrape> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("could not connect to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .context("reading the metrics response")?;
    let latency = started.elapsed();
    let text = String::from_utf8_lossy(&raw);
    let body = response_body(&text)?;
    Ok(Scrape {
        latency,
        body_bytes: body.len(),
        series: count_series(body),
    })
}

/// The body of an HTTP/1.x response whose status is 200.
fn response_body(text: &str) -> Result<&str> {
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("the metrics response has no end of headers")?;
    let status = head.lines().next().unwrap_or_default();
    let mut words = status.split_whitespace();
    let version = words.next().unwrap_or_default();
    let code = words.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") || code != "200" {
        bail!("metrics answered `{status}`");
    }
    Ok(body)
}

fn count_series(body: &str) -> usize {
    body.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses() {
        let ok = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n# HELP a x\n# TYPE a counter\na 1\nb{c=\"d\"} 2\n";
        let body = response_body(ok).expect("body");
        assert!(body.starts_with("# HELP"));
        assert_eq!(count_series(body), 2);
        assert!(response_body("HTTP/1.1 404 Not Found\r\n\r\n").is_err());
        assert!(response_body("HTTP/1.1 200 OK\r\nno end").is_err());
        assert!(response_body("SPDY 200\r\n\r\nx").is_err());
        assert_eq!(count_series("\n# only comments\n"), 0);
    }

    #[test]
    fn scrapes_tally() {
        let mut s = Scrapes::default();
        s.record(Ok(Scrape {
            latency: Duration::from_millis(2),
            body_bytes: 10,
            series: 1,
        }));
        s.record(Err(anyhow::anyhow!("refused")));
        assert_eq!((s.ok.len(), s.failed), (1, 1));
        assert_eq!(s.last_error.as_deref(), Some("refused"));
    }

    #[test]
    fn scrape_of_a_real_socket() {
        // A one-shot server on loopback, to test the client end to end without observer.
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            let mut req = [0u8; 512];
            let n = conn.read(&mut req).expect("read");
            assert!(String::from_utf8_lossy(&req[..n]).starts_with("GET /metrics HTTP/1.1\r\n"));
            conn.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nx 1\ny 2\nz 3\n")
                .expect("write");
        });
        let s = scrape(port).expect("scrape");
        server.join().expect("server");
        assert_eq!((s.series, s.body_bytes), (3, 12));
        assert!(free_port().expect("port") > 0);
    }
}
