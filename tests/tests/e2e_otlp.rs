//! OTLP export: `--otlp-endpoint` sends a deadlock as an OTLP log record and the blocked time as
//! OTLP profiles (v1development) to a small HTTP receiver in the test; what it received is decoded
//! with the official schema (PyPI opentelemetry-proto, via tests/otlp_decode.py).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use observer_tests::{
    require_root, wait_until, FramePointers, GoVersion, ObserverCmd, Target, Value, Workspace, MS,
};

const TIMEOUT: Duration = Duration::from_secs(40);

/// One request: path, Content-Encoding, Content-Type and the (still gzipped) body.
#[derive(Clone)]
struct Request {
    path: String,
    encoding: String,
    content_type: String,
    body: Vec<u8>,
    /// When it arrived, nanoseconds since the Unix epoch.
    at_unix_nano: u64,
}

/// A minimal OTLP/HTTP receiver: keeps every request, answers 200 with an empty body.
fn receiver() -> (String, Arc<Mutex<Vec<Request>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let base = format!("http://{}", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&got);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Ok(read_half) = stream.try_clone() else {
                continue;
            };
            let mut reader = BufReader::new(read_half);
            // One request per connection is enough; keep-alive requests are read in a loop.
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let path = line.split(' ').nth(1).unwrap_or("").to_string();
                let (mut len, mut encoding, mut content_type) =
                    (0usize, String::new(), String::new());
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    let (name, value) = h.split_once(':').unwrap_or((&h, ""));
                    let value = value.trim().to_string();
                    match name.trim().to_ascii_lowercase().as_str() {
                        "content-length" => len = value.parse().unwrap_or(0),
                        "content-encoding" => encoding = value,
                        "content-type" => content_type = value,
                        _ => {}
                    }
                }
                let mut body = vec![0; len];
                if reader.read_exact(&mut body).is_err() {
                    break;
                }
                keep.lock().unwrap().push(Request {
                    path,
                    encoding,
                    content_type,
                    body,
                    at_unix_nano: now_unix_nano(),
                });
                let ok = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                if stream.write_all(ok).is_err() {
                    break;
                }
            }
        }
    });
    (base, got)
}

fn now_unix_nano() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Decodes the bodies of `reqs` with tests/otlp_decode.py; fails loudly without the package.
fn decode(ws: &Workspace, what: &str, reqs: &[Request]) -> Vec<Value> {
    decode_as(ws, what, what, reqs)
}

/// [`decode`], with the bodies kept under `label` in the workspace.
fn decode_as(ws: &Workspace, what: &str, label: &str, reqs: &[Request]) -> Vec<Value> {
    let files: Vec<PathBuf> = reqs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let path = ws.path(&format!("{label}-{i}.bin.gz"));
            std::fs::write(&path, &r.body).unwrap();
            path
        })
        .collect();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("otlp_decode.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(what)
        .args(&files)
        .output()
        .expect("running python3");
    assert!(
        out.status.success(),
        "decoding OTLP {what} with the official schema failed (is PyPI opentelemetry-proto \
         installed? `cargo xtask setup` installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("decoder JSON")
}

fn mentions(list: &Value, name: &str) -> bool {
    list.as_array().is_some_and(|a| {
        a.iter()
            .any(|f| f.as_str().is_some_and(|s| s.contains(name)))
    })
}

#[test]
fn deadlock_reaches_otlp_as_a_log_record_and_profiles() {
    require_root();
    let ws = Workspace::new("otlp");
    let binary = ws.build_target("deadlock", FramePointers::Keep);
    let target = Target::spawn(&binary, &["0"]);
    assert!(
        wait_until(Duration::from_secs(5), || {
            !target.tids_named("alice").is_empty() && !target.tids_named("bob").is_empty()
        }),
        "deadlock target did not start threads alice and bob"
    );
    thread::sleep(Duration::from_millis(500));
    let (base, got) = receiver();
    let run = ObserverCmd::watch(target.pid())
        .opt("--duration", "7s")
        .opt("--stall-after", "1s")
        .opt("--otlp-endpoint", &base)
        .opt("--export-interval", "2s")
        .alerts(&ws)
        .run_to_end(&ws, TIMEOUT);
    let report = run.report();
    assert_eq!(run.exit_code(), Some(0), "{report}");
    assert!(
        !run.of_kind("deadlock").is_empty(),
        "no deadlock alert\n{report}"
    );

    let reqs = got.lock().unwrap().clone();
    let summary: Vec<String> = reqs
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {}B",
                r.path,
                r.content_type,
                r.encoding,
                r.body.len()
            )
        })
        .collect();
    for r in &reqs {
        assert_eq!(r.encoding, "gzip", "{summary:?}");
        assert_eq!(r.content_type, "application/x-protobuf", "{summary:?}");
    }
    let logs_reqs: Vec<Request> = reqs
        .iter()
        .filter(|r| r.path == "/v1/logs")
        .cloned()
        .collect();
    let prof_reqs: Vec<Request> = reqs
        .iter()
        .filter(|r| r.path == "/v1development/profiles")
        .cloned()
        .collect();
    assert!(
        !logs_reqs.is_empty(),
        "no logs request: {summary:?}\n{report}"
    );
    assert!(
        !prof_reqs.is_empty(),
        "no profiles request: {summary:?}\n{report}"
    );

    // Logs: the deadlock, with its functions, severity and the process as resource.
    let records = decode(&ws, "logs", &logs_reqs);
    let pid = u64::from(target.pid());
    let deadlock = records
        .iter()
        .find(|r| r["attributes"]["kind"] == "deadlock")
        .unwrap_or_else(|| panic!("no deadlock log record: {records:?}"));
    assert_eq!(deadlock["severity_text"], "ERROR", "{deadlock}");
    assert_eq!(deadlock["severity_number"], 17, "{deadlock}");
    assert_eq!(deadlock["scope"], "observer", "{deadlock}");
    assert_eq!(
        deadlock["resource"]["process.pid"].as_u64(),
        Some(pid),
        "{deadlock}"
    );
    assert_eq!(
        deadlock["resource"]["process.executable.name"].as_str(),
        Some(&binary.file_name().unwrap().to_string_lossy()[..]),
        "{deadlock}"
    );
    assert!(deadlock["resource"]["host.name"].is_string(), "{deadlock}");
    assert!(
        deadlock["body"]
            .as_str()
            .is_some_and(|b| b.contains("deadlock")),
        "{deadlock}"
    );
    let attrs = &deadlock["attributes"];
    assert_eq!(attrs["pid"].as_u64(), Some(pid), "{deadlock}");
    let cycle_stacks = [&attrs["cycle.0.stack"], &attrs["cycle.1.stack"]];
    assert!(
        cycle_stacks.iter().any(|s| mentions(s, "transfer_a_to_b"))
            && cycle_stacks.iter().any(|s| mentions(s, "transfer_b_to_a")),
        "the cycle's stacks name both transfers: {deadlock}"
    );
    // The alert left within seconds of being raised, not at the end of the run.
    let raised = deadlock["time_unix_nano"].as_u64().unwrap_or(0);
    let first_logs = logs_reqs.iter().map(|r| r.at_unix_nano).min().unwrap_or(0);
    assert!(
        raised > 0 && first_logs >= raised && first_logs - raised < 3_000 * MS,
        "the deadlock (raised at {raised}) reached the collector at {first_logs}"
    );

    // Profiles: the deadlocked functions, with plausible blocked time (a few seconds each).
    let profiles = decode(&ws, "profiles", &prof_reqs);
    let delay: Vec<&Value> = profiles
        .iter()
        .filter(|p| p["sample_type"] == serde_json::json!(["delay", "nanoseconds"]))
        .collect();
    assert!(
        !delay.is_empty(),
        "no delay/nanoseconds profile: {profiles:?}"
    );
    for p in &delay {
        assert_eq!(p["resource"]["process.pid"].as_u64(), Some(pid), "{p}");
        assert_eq!(p["scope"], "observer", "{p}");
    }
    let blocked_in = |func: &str, thread: &str| -> u64 {
        delay
            .iter()
            .flat_map(|p| p["samples"].as_array().cloned().unwrap_or_default())
            .filter(|s| mentions(&s["functions"], func) && s["attributes"]["thread.name"] == thread)
            .map(|s| s["values"][0].as_u64().unwrap_or(0))
            .sum()
    };
    for (func, thread) in [("transfer_a_to_b", "alice"), ("transfer_b_to_a", "bob")] {
        let ns = blocked_in(func, thread);
        eprintln!("otlp deadlock: {thread} blocked {ns} ns in {func}");
        assert!(
            (3_000 * MS..=120_000 * MS).contains(&ns),
            "{thread} blocked in {func} for {ns} ns: expected seconds\n{profiles:?}"
        );
    }
    drop(target);
}

#[test]
fn bad_endpoint_scheme_is_a_start_up_error() {
    require_root();
    let ws = Workspace::new("otlp_scheme");
    for (url, says) in [
        ("https://127.0.0.1:4318", "https is not supported yet"),
        ("ftp://127.0.0.1", "expected http://HOST:PORT"),
    ] {
        let run = ObserverCmd::run()
            .opt("--otlp-endpoint", url)
            .command(Path::new("/bin/true"), &[] as &[&str])
            .run_to_end(&ws, TIMEOUT);
        assert_ne!(run.exit_code(), Some(0), "{}", run.report());
        assert!(run.report().contains(says), "{}", run.report());
    }
}

#[test]
fn an_unreachable_collector_does_not_stop_observation() {
    require_root();
    let ws = Workspace::new("otlp_down");
    let binary = ws.build_target("deadlock", FramePointers::Keep);
    let target = Target::spawn(&binary, &["0"]);
    thread::sleep(Duration::from_millis(500));
    // A port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start = std::time::Instant::now();
    let run = ObserverCmd::watch(target.pid())
        .opt("--duration", "4s")
        .opt("--stall-after", "1s")
        .opt("--otlp-endpoint", &format!("http://127.0.0.1:{port}"))
        .opt("--export-interval", "1s")
        .alerts(&ws)
        .run_to_end(&ws, TIMEOUT);
    let report = run.report();
    assert_eq!(run.exit_code(), Some(0), "{report}");
    assert!(
        !run.of_kind("deadlock").is_empty(),
        "observation went on\n{report}"
    );
    assert!(
        report.contains("observer: otlp:") && report.contains("observer_export_failures_total"),
        "the failure is said once on stderr\n{report}"
    );
    assert_eq!(report.matches("observer: otlp:").count(), 1, "{report}");
    // 4 s of observation plus at most 5 s of flushing at the end (and start-up).
    assert!(start.elapsed() < Duration::from_secs(20), "{report}");
    drop(target);
}

/// lock_hold.c under `run` with a 1 s interval: the blocked time arrives as deltas, one profile
/// request per interval with nothing counted twice, and the last one at the end.
#[test]
fn profiles_are_periodic_deltas() {
    require_root();
    let ws = Workspace::new("otlp_periodic");
    let target = ws.build_target("lock_hold", FramePointers::Keep);
    let (base, got) = receiver();
    let folded = ws.path("blocked.folded");
    let run = ObserverCmd::run()
        .opt("--threshold", "100ms")
        .opt("--folded", folded.to_str().unwrap())
        .opt("--otlp-endpoint", &base)
        .opt("--export-interval", "1s")
        .alerts(&ws)
        .command(&target, &["5"])
        .run_to_end(&ws, TIMEOUT);
    let report = run.report();
    assert_eq!(run.exit_code(), Some(0), "{report}");
    let reqs: Vec<Request> = got
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.path == "/v1development/profiles")
        .cloned()
        .collect();
    assert!(
        reqs.len() >= 3,
        "expected a profiles request about every second, got {}\n{report}",
        reqs.len()
    );
    let mut windows = Vec::new();
    let mut worker_ns = 0u64;
    for (i, req) in reqs.iter().enumerate() {
        let profiles = decode_as(
            &ws,
            "profiles",
            &format!("periodic{i}"),
            std::slice::from_ref(req),
        );
        for p in profiles
            .iter()
            .filter(|p| p["sample_type"] == serde_json::json!(["delay", "nanoseconds"]))
        {
            windows.push((
                p["time_unix_nano"].as_u64().unwrap_or(0),
                p["duration_nano"].as_u64().unwrap_or(0),
            ));
            worker_ns += p["samples"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|s| {
                    mentions(&s["functions"], "worker_update")
                        && s["attributes"]["thread.name"] == "worker"
                })
                .map(|s| s["values"][0].as_u64().unwrap_or(0))
                .sum::<u64>();
        }
    }
    windows.sort();
    windows.dedup();
    assert!(windows.len() >= 2, "{windows:?}\n{report}");
    for pair in windows.windows(2) {
        let (start, len) = pair[0];
        assert!(
            start + len <= pair[1].0 + 10 * MS,
            "windows overlap (a delta counted twice): {windows:?}"
        );
    }
    eprintln!(
        "otlp periodic: {} profile requests, worker blocked {worker_ns} ns in worker_update",
        reqs.len()
    );
    let whole: u64 = std::fs::read_to_string(&folded)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(";worker;") && l.contains("worker_update"))
        .filter(|l| !l.contains("[idle]"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum();
    assert_eq!(
        worker_ns, whole,
        "the deltas add up to --folded's whole run\n{report}"
    );
    // About 300 ms behind each of ~5 compactions: 0.6 s to 2.5 s in all (never the sum of
    // cumulative snapshots, which would be several times that).
    assert!(
        (600 * MS..=2_500 * MS).contains(&worker_ns),
        "worker blocked {worker_ns} ns in worker_update over all deltas\n{report}"
    );
}

/// `targets/deadlock.c` copied under a name no other process has, so that `--comm ^NAME$`
/// selects this one process. Returns the running target and its name.
fn unique_deadlock(ws: &Workspace) -> (Target, String) {
    let built = ws.build_target("deadlock", FramePointers::Keep);
    let name = format!("otlpdl{}", std::process::id());
    let copy = ws.path(&name);
    std::fs::copy(&built, &copy).expect("could not copy the target");
    let target = Target::spawn(&copy, &["0"]);
    assert!(
        wait_until(Duration::from_secs(5), || !target
            .tids_named("bob")
            .is_empty()),
        "deadlock target did not start"
    );
    (target, name)
}

/// The sidecar: the deadlock's log record arrives while it runs, the blocked time when it
/// stops (SIGTERM).
#[test]
fn sidecar_exports_while_running_and_at_stop() {
    require_root();
    let ws = Workspace::new("otlp_sidecar");
    let (target, name) = unique_deadlock(&ws);
    let pid = u64::from(target.pid());
    let (base, got) = receiver();
    let observer = ObserverCmd::raw(&["sidecar"])
        .opt("--comm", &format!("^{name}$"))
        .opt("--stall-after", "1s")
        .flag("--no-metrics")
        .opt("--otlp-endpoint", &base)
        .opt("--export-interval", "2s")
        .alerts(&ws)
        .spawn(&ws);
    let logs_of = |got: &Arc<Mutex<Vec<Request>>>| -> Vec<Request> {
        got.lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == "/v1/logs")
            .cloned()
            .collect()
    };
    let arrived = wait_until(Duration::from_secs(30), || {
        let reqs = logs_of(&got);
        !reqs.is_empty()
            && decode(&ws, "logs", &reqs).iter().any(|r| {
                r["attributes"]["kind"] == "deadlock"
                    && r["resource"]["process.pid"].as_u64() == Some(pid)
            })
    });
    assert!(
        arrived,
        "no deadlock log record for pid {pid} while the sidecar runs\n{}",
        observer.stderr_so_far()
    );
    // SAFETY: kill(2) on the observer this test started.
    unsafe { libc::kill(observer.pid() as libc::pid_t, libc::SIGTERM) };
    let run = observer.wait(TIMEOUT);
    let report = run.report();
    let profiles: Vec<Request> = got
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.path == "/v1development/profiles")
        .cloned()
        .collect();
    let decoded = decode(&ws, "profiles", &profiles);
    let blocked: u64 = decoded
        .iter()
        .filter(|p| {
            p["sample_type"] == serde_json::json!(["delay", "nanoseconds"])
                && p["resource"]["process.pid"].as_u64() == Some(pid)
                && p["resource"]["process.executable.name"] == name.as_str()
        })
        .flat_map(|p| p["samples"].as_array().cloned().unwrap_or_default())
        .filter(|s| mentions(&s["functions"], "transfer_a_to_b"))
        .map(|s| s["values"][0].as_u64().unwrap_or(0))
        .sum();
    assert!(
        blocked >= 1_000 * MS,
        "alice's blocked time in transfer_a_to_b not in the profiles sent at stop ({blocked} ns)\n{decoded:?}\n{report}"
    );
    drop(target);
}

/// An unreachable collector: the sidecar goes on observing and counts the failures in its
/// metrics.
#[test]
fn sidecar_counts_failures_of_an_unreachable_collector() {
    require_root();
    let ws = Workspace::new("otlp_sidecar_down");
    let (target, name) = unique_deadlock(&ws);
    let free = |_| {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (dead, metrics) = (free(0), free(1));
    let observer = ObserverCmd::raw(&["sidecar"])
        .opt("--comm", &format!("^{name}$"))
        .opt("--stall-after", "1s")
        .opt("--metrics-addr", &format!("127.0.0.1:{metrics}"))
        .opt("--otlp-endpoint", &format!("http://127.0.0.1:{dead}"))
        .opt("--export-interval", "1s")
        .alerts(&ws)
        .spawn(&ws);
    let mut last = String::new();
    let counted = wait_until(Duration::from_secs(30), || {
        last = scrape(metrics);
        last.lines().any(|l| {
            l.strip_prefix("observer_export_failures_total{sink=\"otlp\"} ")
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n >= 1)
        })
    });
    let stderr = observer.stderr_so_far();
    assert!(counted, "no otlp export failure counted\n{last}\n{stderr}");
    assert!(
        last.contains("observer_export_failures_total{sink=\"alertmanager\"} 0"),
        "{last}"
    );
    assert!(
        last.lines().any(|l| l
            .strip_prefix("observer_alerts_by_kind_total{kind=\"deadlock\"} ")
            .is_some_and(|n| n != "0")),
        "observation goes on\n{last}\n{stderr}"
    );
    assert_eq!(
        stderr.matches("observer: otlp:").count(),
        1,
        "said once\n{stderr}"
    );
    drop(observer);
    drop(target);
}

/// GET /metrics on loopback `port` (empty when not answering yet).
fn scrape(port: u16) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text
}

/// A Go program (mutex_slow_io.go: goroutines queue ~1.5 s on a sync.Mutex held across slow
/// I/O): the goroutines' blocked time reaches the profiles under the thread `goroutines`.
#[test]
fn go_goroutine_waits_reach_the_profiles() {
    require_root();
    let Some(go) = GoVersion::Go127.toolchain("go_goroutine_waits_reach_the_profiles") else {
        return;
    };
    let ws = Workspace::new("otlp_go");
    let bin = ws.build_go(&go, "patterns/mutex_slow_io.go", false);
    let (base, got) = receiver();
    let folded = ws.path("blocked.folded");
    let run = ObserverCmd::run()
        .opt("--stall-after", "1s")
        .opt("--otlp-endpoint", &base)
        .opt("--export-interval", "1s")
        .opt("--folded", folded.to_str().unwrap())
        .alerts(&ws)
        .command(&bin, &["4"])
        .run_to_end(&ws, TIMEOUT);
    let report = run.report();
    assert_eq!(run.exit_code(), Some(0), "{report}");
    let reqs: Vec<Request> = got
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.path == "/v1development/profiles")
        .cloned()
        .collect();
    let profiles = decode(&ws, "profiles", &reqs);
    let blocked: u64 = profiles
        .iter()
        .filter(|p| p["sample_type"] == serde_json::json!(["delay", "nanoseconds"]))
        .flat_map(|p| p["samples"].as_array().cloned().unwrap_or_default())
        .filter(|s| {
            mentions(&s["functions"], "main.lookupCache")
                && s["attributes"]["thread.name"] == "goroutines"
                && s["attributes"]["observer.category"] == "lock"
        })
        .map(|s| s["values"][0].as_u64().unwrap_or(0))
        .sum();
    // The deltas add up to the whole run's profile: nothing lost, nothing counted twice.
    let whole: u64 = std::fs::read_to_string(&folded)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(";goroutines;") && l.contains("main.lookupCache"))
        .filter(|l| !l.contains("[idle]"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum();
    eprintln!(
        "otlp go: goroutines blocked {blocked} ns in main.lookupCache ({} profile requests; \
         --folded: {whole} ns)",
        reqs.len()
    );
    assert_eq!(blocked, whole, "OTLP deltas vs --folded\n{report}");
    assert!(
        blocked >= 1_000 * MS,
        "goroutines' blocked time in main.lookupCache: {blocked} ns\n{profiles:?}\n{report}"
    );
}
