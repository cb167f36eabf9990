//! `observer sidecar`: host-wide watching narrowed by `--comm`, metrics that a real Prometheus
//! scrapes and stores, a metrics endpoint on loopback by default, and size-rotated alert files.

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use observer_tests::sidecar::{alerts_so_far, free_port, running, unique_target};
use observer_tests::{
    require_root, str_field, u64_field, wait_until, Observer, ObserverCmd, Target, Value, Workspace,
};

/// Debian's Prometheus, installed by `cargo xtask setup`.
const PROMETHEUS: &str = "/usr/bin/prometheus";
const TIMEOUT: Duration = Duration::from_secs(30);

/// The process name (`/proc/PID/comm`), which the per-process metric series are labelled with.
fn process_comm(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default()
}

/// A plain HTTP/1.0 GET (no chunked encoding, the server closes): (status, head, body).
fn http_get(port: u16, target: &str) -> Result<(u16, String, String), String> {
    let mut stream =
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {target} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("receive: {e}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {response:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    Ok((status, head.to_string(), body.to_string()))
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A Prometheus server with a temporary configuration and database; killed when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Prometheus {
    /// Scrapes `127.0.0.1:<scrape_port>/metrics` every second.
    fn start(ws: &Workspace, scrape_port: u16) -> Self {
        assert!(
            Path::new(PROMETHEUS).is_file(),
            "{PROMETHEUS} not found: run `cargo xtask setup` (it installs Debian's prometheus)"
        );
        let config = ws.path("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: observer\n    scrape_interval: 1s\n    \
                 scrape_timeout: 1s\n    static_configs:\n      - targets: ['127.0.0.1:{scrape_port}']\n"
            ),
        )
        .expect("could not write the prometheus configuration");
        let port = free_port();
        let log = ws.path("prometheus.log");
        let out = fs::File::create(&log).expect("could not create the prometheus log");
        let err = out.try_clone().expect("could not share the prometheus log");
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", ws.path("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {PROMETHEUS}: {e}"));
        let prometheus = Prometheus { child, port, log };
        assert!(
            wait_until(TIMEOUT, || matches!(
                http_get(prometheus.port, "/-/ready"),
                Ok((200, _, _))
            )),
            "prometheus did not become ready on port {port}\n{}",
            prometheus.log()
        );
        prometheus
    }

    /// The `data.result` vector of an instant query.
    fn query(&self, promql: &str) -> Result<Vec<Value>, String> {
        let (status, _, body) = http_get(
            self.port,
            &format!("/api/v1/query?query={}", url_encode(promql)),
        )?;
        let reply: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if status != 200 || str_field(&reply, "status") != Some("success") {
            return Err(format!("HTTP {status}: {body}"));
        }
        reply
            .pointer("/data/result")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| format!("no data.result in {body}"))
    }

    /// What Prometheus says about its scrape target (health, last error), for failure messages.
    fn targets(&self) -> String {
        http_get(self.port, "/api/v1/targets")
            .map(|(_, _, body)| body)
            .unwrap_or_else(|e| e)
    }

    fn log(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        format!("prometheus log (tail):\n{}", &text[start..])
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn label<'a>(series: &'a Value, name: &str) -> Option<&'a str> {
    series
        .pointer(&format!("/metric/{name}"))
        .and_then(Value::as_str)
}

/// The value of an instant-query sample (`"value": [time, "1"]`).
fn sample_value(series: &Value) -> Option<f64> {
    series.pointer("/value/1")?.as_str()?.parse().ok()
}

/// A deadlocked process found by the sidecar ends up in Prometheus' database as
/// `observer_alerts_total{kind="deadlock"}`, labelled with its pid and name.
#[test]
fn deadlock_alert_reaches_prometheus() {
    require_root();
    let ws = Workspace::new("sidecar-prometheus");
    let (binary, comm) = unique_target(&ws, "deadlock");
    let target = Target::spawn(&binary, &["0"]);
    assert!(
        wait_until(Duration::from_secs(5), || {
            !target.tids_named("alice").is_empty() && !target.tids_named("bob").is_empty()
        }),
        "deadlock target did not start threads alice and bob"
    );
    let pid = target.pid();
    assert_eq!(
        process_comm(pid),
        comm,
        "the target's comm is not its file name"
    );

    let metrics_port = free_port();
    let alerts = ws.path("alerts.jsonl");
    let observer = ObserverCmd::raw(&["sidecar"])
        .opt("--comm", &format!("^{comm}$"))
        .opt("--metrics-addr", &format!("127.0.0.1:{metrics_port}"))
        .opt("--stall-after", "1s")
        .alerts(&ws)
        .spawn(&ws);

    // The deadlock alert in the file first: metrics cannot be ahead of the alerts.
    let found = wait_until(TIMEOUT, || {
        !running(&observer)
            || alerts_so_far(&alerts).iter().any(|a| {
                str_field(a, "kind") == Some("deadlock") && u64_field(a, "pid") == Some(pid.into())
            })
    });
    assert!(
        found && running(&observer),
        "no deadlock alert for pid {pid} in {} within {TIMEOUT:?} (observer running: {})\nalerts:\n{}\nobserver stderr:\n{}",
        alerts.display(),
        running(&observer),
        fs::read_to_string(&alerts).unwrap_or_default(),
        observer.stderr_so_far()
    );

    // The endpoint itself: format 0.0.4, and the series the alert counted.
    let (status, head, body) = http_get(metrics_port, "/metrics")
        .unwrap_or_else(|e| panic!("GET /metrics on port {metrics_port}: {e}"));
    assert_eq!(status, 200, "{head}");
    assert!(
        head.lines().any(|l| l
            .to_ascii_lowercase()
            .starts_with("content-type: text/plain; version=0.0.4")),
        "{head}"
    );
    let expected =
        format!("observer_alerts_total{{pid=\"{pid}\",comm=\"{comm}\",kind=\"deadlock\"}} ");
    assert!(
        body.lines().any(|l| l.starts_with(&expected)),
        "no `{expected}...` line in the metrics:\n{body}"
    );

    let prometheus = Prometheus::start(&ws, metrics_port);
    let query = "observer_alerts_total{kind=\"deadlock\"}";
    let mut last = Err(String::from("never queried"));
    let stored = wait_until(TIMEOUT, || {
        last = prometheus.query(query);
        matches!(&last, Ok(series) if !series.is_empty())
    });
    assert!(
        stored,
        "Prometheus has no `{query}` after {TIMEOUT:?}: {last:?}\ntargets: {}\n{}",
        prometheus.targets(),
        prometheus.log()
    );
    let series = last.unwrap_or_default();
    // Only the target was selected by --comm: it is the only deadlocked process there can be.
    assert_eq!(series.len(), 1, "{series:?}");
    let s = &series[0];
    assert_eq!(label(s, "pid"), Some(pid.to_string().as_str()), "{s}");
    assert_eq!(label(s, "comm"), Some(comm.as_str()), "{s}");
    assert_eq!(label(s, "kind"), Some("deadlock"), "{s}");
    assert_eq!(label(s, "job"), Some("observer"), "{s}");
    assert!(sample_value(s).is_some_and(|v| v >= 1.0), "{s}");

    let up = prometheus
        .query("up{job=\"observer\"}")
        .unwrap_or_else(|e| panic!("query up: {e}"));
    assert!(
        up.len() == 1 && sample_value(&up[0]) == Some(1.0),
        "the scrape target is not up: {up:?}\n{}",
        prometheus.targets()
    );
}

/// (local address, port) of the TCP sockets in LISTEN state among `inodes`, from a
/// `/proc/PID/net/tcp` or `tcp6` table (addresses as hex, in the kernel's byte order).
fn listening(table: &str, inodes: &[u64]) -> Vec<(String, u16)> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (addr, port) = fields.get(1)?.split_once(':')?;
            let listen = *fields.get(3)? == "0A";
            let inode: u64 = fields.get(9)?.parse().ok()?;
            if !listen || !inodes.contains(&inode) {
                return None;
            }
            Some((decode_addr(addr)?, u16::from_str_radix(port, 16).ok()?))
        })
        .collect()
}

/// An IPv4 address as `/proc/net/tcp` prints it (one 32-bit word in host order); IPv6 ones
/// are left in hex.
fn decode_addr(hex: &str) -> Option<String> {
    if hex.len() != 8 {
        return Some(hex.to_string());
    }
    let word = u32::from_str_radix(hex, 16).ok()?;
    Some(Ipv4Addr::from(word.to_ne_bytes()).to_string())
}

/// Inodes of the sockets a process holds open.
fn socket_inodes(pid: u32) -> Vec<u64> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let link = fs::read_link(e.path()).ok()?;
                    let link = link.to_str()?;
                    link.strip_prefix("socket:[")?
                        .strip_suffix(']')?
                        .parse()
                        .ok()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Without --metrics-addr the endpoint listens on 127.0.0.1:9464 and nowhere else. observer
/// runs in a network namespace of its own (loopback up), so that port 9464 is free whatever
/// else runs on this host, and its sockets are read from that namespace's tables.
#[test]
fn metrics_listen_on_loopback_only_by_default() {
    require_root();
    let ws = Workspace::new("sidecar-loopback");
    // No comm is longer than 15 bytes: this selects nothing, and the sidecar waits for it.
    let observer = ObserverCmd::raw(&["sidecar", "--quiet"])
        .opt("--comm", "^observer-sidecar-test-selects-nothing$")
        .wrapped_in(&[
            "unshare",
            "--net",
            "--",
            "sh",
            "-c",
            "ip link set lo up && exec \"$0\" \"$@\"",
        ])
        .spawn(&ws);
    let pid = observer.pid();
    let bound = wait_until(TIMEOUT, || {
        let (v4, v6) = listeners_of(pid);
        !running(&observer) || !v4.is_empty() || !v6.is_empty()
    });
    assert!(
        bound && running(&observer),
        "observer (pid {pid}) listened on nothing within {TIMEOUT:?} (running: {})\nstderr:\n{}",
        running(&observer),
        observer.stderr_so_far()
    );
    // Give a second listener (if there were one) time to appear too.
    std::thread::sleep(Duration::from_millis(500));
    let (v4, v6) = listeners_of(pid);
    assert_eq!(
        v4,
        vec![("127.0.0.1".to_string(), 9464)],
        "IPv4 listeners of observer (tcp6: {v6:?})"
    );
    assert!(v6.is_empty(), "observer also listens on IPv6: {v6:?}");
}

/// Listening sockets as (address, port).
type Listeners = Vec<(String, u16)>;

/// The TCP listening sockets of process `pid`: IPv4, then IPv6.
fn listeners_of(pid: u32) -> (Listeners, Listeners) {
    let inodes = socket_inodes(pid);
    let table = |name: &str| {
        listening(
            &fs::read_to_string(format!("/proc/{pid}/net/{name}")).unwrap_or_default(),
            &inodes,
        )
    };
    (table("tcp"), table("tcp6"))
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    PathBuf::from(format!("{}.{n}", path.display()))
}

/// Hold episodes in the metrics: one `lock_hold` alert per hold, and the series count the holds
/// and the waits behind them exactly as the alerts do (hold_waiters.c: three threads wait
/// behind each hold).
#[test]
fn lock_holds_are_counted_in_the_metrics() {
    require_root();
    let ws = Workspace::new("sidecar-lock-holds");
    let (binary, comm) = unique_target(&ws, "hold_waiters");
    let metrics_port = free_port();
    let alerts = ws.path("alerts.jsonl");
    let observer = ObserverCmd::raw(&["sidecar", "--quiet"])
        .opt("--comm", &format!("^{comm}$"))
        .opt("--metrics-addr", &format!("127.0.0.1:{metrics_port}"))
        .opt("--threshold", "100ms")
        .alerts(&ws)
        .spawn(&ws);
    std::thread::sleep(Duration::from_millis(1500));
    let target = Target::spawn(&binary, &["4"]);
    let pid = target.pid();
    assert!(target.wait_exit(TIMEOUT), "hold_waiters did not exit");
    // The last hold is written 300ms after its last wait ended, or when the process is gone.
    std::thread::sleep(Duration::from_millis(1500));
    let holds: Vec<Value> = alerts_so_far(&alerts)
        .into_iter()
        .filter(|a| {
            str_field(a, "kind") == Some("lock_hold") && u64_field(a, "pid") == Some(pid.into())
        })
        .collect();
    let waiters: u64 = holds.iter().filter_map(|h| u64_field(h, "waiters")).sum();
    assert!(
        holds.len() >= 2 && waiters >= 2 * holds.len() as u64,
        "expected holds with several waiters each, got {} holds, {waiters} waiters\n{}",
        holds.len(),
        observer.stderr_so_far()
    );
    let (status, _, body) = http_get(metrics_port, "/metrics")
        .unwrap_or_else(|e| panic!("GET /metrics on port {metrics_port}: {e}"));
    assert_eq!(status, 200);
    let labels = format!("{{pid=\"{pid}\",comm=\"{comm}\"}}");
    for (name, expected) in [
        ("observer_lock_hold_episodes_total", holds.len() as u64),
        ("observer_lock_hold_waiters_total", waiters),
    ] {
        let line = format!("{name}{labels} {expected}");
        assert!(
            body.lines().any(|l| l == line),
            "no `{line}` in the metrics:\n{body}"
        );
    }
    let kind = format!(
        "observer_alerts_total{{pid=\"{pid}\",comm=\"{comm}\",kind=\"lock_hold\"}} {}",
        holds.len()
    );
    assert!(body.lines().any(|l| l == kind), "no `{kind}`:\n{body}");
    // SAFETY: kill(2) on observer, our own unreaped child.
    unsafe {
        libc::kill(observer.pid() as libc::pid_t, libc::SIGTERM);
    }
    let run = observer.wait(TIMEOUT);
    assert_eq!(run.exit_code(), Some(0), "{}", run.report());
}

/// `--alerts-max-bytes 4K --alerts-keep 3` on a target that raises lock_hold alerts by the
/// hundred (every wait over 1us): ALERTS, ALERTS.1 ... ALERTS.3 and no more, each within the
/// limit (or holding a single longer line), every line whole.
#[test]
fn alerts_rotate_by_size() {
    require_root();
    let ws = Workspace::new("sidecar-rotation");
    let (binary, comm) = unique_target(&ws, "contention");
    let target = Target::spawn(&binary, &["60", "2"]);
    let alerts = ws.path("alerts.jsonl");
    let alerts_arg = alerts.to_str().expect("temporary path is not UTF-8");
    let observer = ObserverCmd::raw(&["sidecar", "--quiet", "--no-metrics"])
        .opt("--comm", &format!("^{comm}$"))
        .opt("--threshold", "1us")
        .opt("--alerts", alerts_arg)
        .opt("--alerts-max-bytes", "4K")
        .opt("--alerts-keep", "3")
        .spawn(&ws);
    let rotated = wait_until(TIMEOUT, || {
        !running(&observer) || numbered(&alerts, 3).exists()
    });
    assert!(
        rotated && running(&observer),
        "{} did not appear within {TIMEOUT:?} (observer running: {})\nstderr:\n{}",
        numbered(&alerts, 3).display(),
        running(&observer),
        observer.stderr_so_far()
    );
    // SIGTERM: observer stops, flushes and exits; then nothing moves while the files are read.
    // SAFETY: kill(2) on observer, our own unreaped child.
    unsafe {
        libc::kill(observer.pid() as libc::pid_t, libc::SIGTERM);
    }
    let run = observer.wait(TIMEOUT);
    assert_eq!(run.exit_code(), Some(0), "{}", run.report());

    assert!(
        !numbered(&alerts, 4).exists(),
        "--alerts-keep 3 kept a fourth rotated file"
    );
    let mut total = 0;
    for path in [
        alerts.clone(),
        numbered(&alerts, 1),
        numbered(&alerts, 2),
        numbered(&alerts, 3),
    ] {
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            text.len() <= 4096 || lines.len() == 1,
            "{} has {} bytes in {} lines, over the 4K limit",
            path.display(),
            text.len(),
            lines.len()
        );
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{} ends inside a line",
            path.display()
        );
        for line in lines {
            let alert: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: not a JSON line ({e}): {line}", path.display()));
            total += 1;
            // observer's own limits (this flood fills the hold-episode table) are about no
            // process.
            if str_field(&alert, "kind") == Some("degraded") {
                continue;
            }
            assert_eq!(
                u64_field(&alert, "pid"),
                Some(u64::from(target.pid())),
                "an alert for another process than the one --comm selected: {line}"
            );
        }
    }
    // Rotated files are never empty: a file is rotated when a line does not fit any more.
    for n in 1..=3 {
        assert!(
            fs::metadata(numbered(&alerts, n))
                .map(|m| m.len())
                .unwrap_or(0)
                > 0,
            "{} is empty",
            numbered(&alerts, n).display()
        );
    }
    assert!(total >= 4, "only {total} alerts in four files");
}

/// The /proc/net/tcp reading above, on a real table layout (needs no root).
#[test]
fn proc_net_tcp_listeners_are_decoded() {
    let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:24F8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 100 0 0 10 0
   2: 0100007F:24F8 0100007F:A000 01 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 20 4 30 10 -1
";
    assert_eq!(
        listening(table, &[4242, 4343]),
        vec![
            ("127.0.0.1".to_string(), 9464),
            ("0.0.0.0".to_string(), 8080)
        ]
    );
    assert_eq!(
        listening(table, &[4343]),
        vec![("0.0.0.0".to_string(), 8080)]
    );
    assert!(listening(table, &[1]).is_empty());
}

/// The sidecar started with `--metrics-addr ADDR`, once it printed where it listens: the port
/// of that line.
fn sidecar_announcing_metrics(ws: &Workspace, addr: &str, extra: &[&str]) -> (Observer, u16) {
    let mut argv = vec!["sidecar"];
    argv.extend_from_slice(extra);
    let observer = ObserverCmd::raw(&argv)
        .opt("--comm", "^observer-sidecar-test-selects-nothing$")
        .opt("--metrics-addr", addr)
        .spawn(ws);
    let announced = |text: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix("observer: metrics on http://127.0.0.1:")?
                .strip_suffix("/metrics")?
                .parse::<u16>()
                .ok()
        })
    };
    let mut port = None;
    wait_until(TIMEOUT, || {
        port = announced(&observer.stderr_so_far());
        port.is_some() || !running(&observer)
    });
    let port = port.unwrap_or_else(|| {
        panic!(
            "no 'observer: metrics on http://127.0.0.1:PORT/metrics' line\nstderr:\n{}",
            observer.stderr_so_far()
        )
    });
    (observer, port)
}

/// `--metrics-addr 127.0.0.1:0` lets the kernel choose the port: observer says which, also
/// under --quiet (that line is the only way to learn it), and serves there.
#[test]
fn metrics_on_port_zero_print_the_bound_port() {
    require_root();
    for extra in [&[][..], &["--quiet"][..]] {
        let ws = Workspace::new("sidecar-port0");
        let (observer, port) = sidecar_announcing_metrics(&ws, "127.0.0.1:0", extra);
        assert_ne!(
            port, 0,
            "the announced port is the asked one, not the bound one"
        );
        let (status, _, body) = http_get(port, "/metrics")
            .unwrap_or_else(|e| panic!("GET /metrics on the announced port {port}: {e}"));
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("observer_"), "{body}");
        drop(observer);
    }
}

/// 200 idle connections (a port scanner, stuck clients, an attacker) and a scrape still
/// answers at once; before, 16 of them kept every scrape waiting 5 s each.
#[test]
fn idle_connections_never_delay_a_scrape() {
    require_root();
    let ws = Workspace::new("sidecar-idle-clients");
    let port = free_port();
    let (observer, port) =
        sidecar_announcing_metrics(&ws, &format!("127.0.0.1:{port}"), &["--no-live"]);
    let idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let start = std::time::Instant::now();
    let scraped = http_get(port, "/metrics");
    let took = start.elapsed();
    eprintln!("scrape with {} idle connections open: {took:?}", idle.len());
    let (status, _, body) = scraped.unwrap_or_else(|e| panic!("scrape failed after {took:?}: {e}"));
    assert_eq!(status, 200, "{body}");
    assert!(
        took < Duration::from_secs(1),
        "the scrape took {took:?} behind 200 idle connections"
    );
    assert!(running(&observer), "{}", observer.stderr_so_far());
}

/// The wait-time histogram, scraped by a real Prometheus, puts a target's known waits in their
/// buckets (lock_hold.c: "maintenance" holds a lock for 300 ms, sleeping, every second, and
/// "worker" waits behind it): lock waits past 250 ms and none past 500 ms, and the 300 ms sleeps
/// themselves, summed and binned in the kernel (idle waits raise no alert), likewise. Its _count
/// and _sum are the wait counters' values.
#[test]
fn wait_histogram_reaches_prometheus() {
    require_root();
    let ws = Workspace::new("sidecar-histogram");
    let (binary, comm) = unique_target(&ws, "lock_hold");
    let metrics_port = free_port();
    let observer = ObserverCmd::raw(&["sidecar", "--quiet"])
        .opt("--comm", &format!("^{comm}$"))
        .opt("--metrics-addr", &format!("127.0.0.1:{metrics_port}"))
        .opt("--threshold", "100ms")
        .alerts(&ws)
        .spawn(&ws);
    std::thread::sleep(Duration::from_millis(1500));
    // Running all along: short waits reach the metrics at drains (every 5 s) of the kernel's
    // sums, and the sums of a process that has ended are not drained.
    let target = Target::spawn(&binary, &["60"]);
    let pid = target.pid();
    let name = "observer_wait_duration_seconds";
    let mut body = String::new();
    let scraped = |body: &str, series: &str| -> Option<f64> {
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    };
    let le = |kind: &str, le: &str| {
        format!("{name}_bucket{{pid=\"{pid}\",comm=\"{comm}\",kind=\"{kind}\",le=\"{le}\"}}")
    };
    // Two holds of 300 ms, and their 300 ms sleeps drained.
    let seen = wait_until(TIMEOUT, || {
        body = http_get(metrics_port, "/metrics")
            .map(|(_, _, b)| b)
            .unwrap_or_default();
        ["lock", "idle"].iter().all(|kind| {
            let below = scraped(&body, &le(kind, "0.25")).unwrap_or(0.0);
            scraped(&body, &le(kind, "0.5")).is_some_and(|above| above - below >= 2.0)
        })
    });
    assert!(
        seen,
        "no two 300ms lock and idle waits in the histogram after {TIMEOUT:?}:\n{body}\n{}",
        observer.stderr_so_far()
    );
    let value_of = |series: &str| scraped(&body, series);
    for kind in ["lock", "idle"] {
        let l = format!("{{pid=\"{pid}\",comm=\"{comm}\",kind=\"{kind}\"}}");
        let count = value_of(&format!("{name}_count{l}"));
        assert!(count.is_some(), "no {name}_count{l}:\n{body}");
        assert_eq!(
            count,
            value_of(&format!("observer_waits_total{l}")),
            "{body}"
        );
        assert_eq!(
            value_of(&format!("{name}_sum{l}")),
            value_of(&format!("observer_wait_seconds_total{l}")),
            "{body}"
        );
    }

    let prometheus = Prometheus::start(&ws, metrics_port);
    let bucket = |kind: &str, le: &str| -> Result<f64, String> {
        let q = format!(
            "observer_wait_duration_seconds_bucket{{pid=\"{pid}\",kind=\"{kind}\",le=\"{le}\"}}"
        );
        let series = prometheus.query(&q)?;
        match series.as_slice() {
            [s] => sample_value(s).ok_or_else(|| format!("no value in {s}")),
            other => Err(format!("{q}: {other:?}")),
        }
    };
    let mut last = Err(String::from("never queried"));
    let stored = wait_until(TIMEOUT, || {
        last = bucket("lock", "+Inf");
        last.is_ok()
    });
    assert!(
        stored,
        "Prometheus has no lock histogram for pid {pid}: {last:?}\ntargets: {}\n{}",
        prometheus.targets(),
        prometheus.log()
    );
    for kind in ["lock", "idle"] {
        let (b25, b50, inf) = (
            bucket(kind, "0.25").unwrap(),
            bucket(kind, "0.5").unwrap(),
            bucket(kind, "+Inf").unwrap(),
        );
        assert!(
            b50 - b25 >= 2.0,
            "{kind}: {b25} waits <= 250ms, {b50} <= 500ms: the 300ms ones are missing"
        );
        if kind == "lock" {
            // The worker waits behind holds of 300 ms, never longer.
            assert_eq!(inf, b50, "lock waits over 500ms: {inf} vs {b50}");
        }
    }
    drop(target);
    // SAFETY: kill(2) on observer, our own unreaped child.
    unsafe {
        libc::kill(observer.pid() as libc::pid_t, libc::SIGTERM);
    }
    let run = observer.wait(TIMEOUT);
    assert_eq!(run.exit_code(), Some(0), "{}", run.report());
}

/// `observer sidecar --config FILE`: the selection, alert path, metrics address, duration and
/// stall limit come from the file, and an option on the command line wins over it (the file's
/// `stall-after = "60s"` would raise no stall within the run; the command line's 1s does).
#[test]
fn options_come_from_a_config_file_and_the_command_line_wins() {
    require_root();
    let ws = Workspace::new("sidecar-config");
    let (binary, comm) = unique_target(&ws, "deadlock");
    let target = Target::spawn(&binary, &["0"]);
    let pid = target.pid();
    let metrics_port = free_port();
    let alerts = ws.path("from-config.jsonl");
    let config = ws.path("observer.toml");
    fs::write(
        &config,
        format!(
            "# sidecar options\ncomm = \"^{comm}$\"\nalerts = \"{}\"\nmetrics_addr = \"127.0.0.1:{metrics_port}\"\n\
             duration = \"8s\"\nstall-after = \"60s\"\nthreshold = \"100ms\"\nquiet = true\nno-go = false\n",
            alerts.display()
        ),
    )
    .unwrap();
    let observer = ObserverCmd::raw(&["sidecar"])
        .opt("--config", config.to_str().unwrap())
        .opt("--stall-after", "1s")
        .spawn(&ws);
    let mut body = String::new();
    let served = wait_until(TIMEOUT, || {
        if let Ok((200, _, b)) = http_get(metrics_port, "/metrics") {
            body = b;
        }
        body.contains(&format!(
            "observer_alerts_total{{pid=\"{pid}\",comm=\"{comm}\",kind=\"deadlock\"}}"
        ))
    });
    assert!(
        served,
        "no deadlock counted on the config file's metrics address {metrics_port}:\n{body}\n{}",
        observer.stderr_so_far()
    );
    // --duration 8s from the file ends the run.
    let run = observer.wait(TIMEOUT);
    assert_eq!(run.exit_code(), Some(0), "{}", run.report());
    let written = alerts_so_far(&alerts);
    let of_kind = |kind: &str| {
        written
            .iter()
            .filter(|a| str_field(a, "kind") == Some(kind))
            .count()
    };
    assert!(
        of_kind("deadlock") >= 1 && of_kind("stall") >= 2,
        "expected a deadlock and the two stalls (stall-after 1s from the command line) in {}:\n{written:?}\n{}",
        alerts.display(),
        run.report()
    );
    // comm from the file: only the target.
    assert!(
        written
            .iter()
            .all(|a| u64_field(a, "pid") == Some(pid.into())),
        "{written:?}"
    );
    // quiet from the file: no alert lines on stderr.
    assert!(!run.stderr.contains("deadlock   tid"), "{}", run.stderr);

    // A bad key stops observer before it starts, naming the file, line and key.
    fs::write(&config, "quiet = true\nstall-afte = \"5s\"\n").unwrap();
    let run = ObserverCmd::raw(&["sidecar"])
        .opt("--config", config.to_str().unwrap())
        .run_to_end(&ws, TIMEOUT);
    assert_eq!(run.exit_code(), Some(2), "{}", run.report());
    let expected = format!(
        "observer: {}: line 2: key `stall-afte`: unknown option (did you mean `stall-after`?)",
        config.display()
    );
    assert!(run.stderr.contains(&expected), "{}", run.report());
}
