//! When observer limits itself, it says so three ways: a timestamped stderr line, a `degraded`
//! JSON alert (so an alerts file or recording keeps it) and the metrics
//! `observer_degraded_total{reason}` / `observer_degraded{reason}`; the summary lists the
//! periods. Provoked for real: a tiny `--ring-size` under a flood of long waits (ring buffer
//! full), and a Go program parking far over `--go-probe-budget` (the Go probe budget).

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use observer_tests::{
    read_alerts, require_root, str_field, u64_field, wait_until, FramePointers, GoVersion,
    Observer, ObserverCmd, ObserverRun, Target, Value, Workspace,
};

const TIMEOUT: Duration = Duration::from_secs(60);

/// A program copied under a name no other process has, so `--comm ^NAME$` selects it alone.
fn unique_copy(ws: &Workspace, built: &Path, stem: &str) -> (PathBuf, String) {
    let comm = format!("{}{}", &stem[..stem.len().min(6)], std::process::id());
    let copy = ws.path(&comm);
    fs::copy(built, &copy).expect("could not copy the target");
    (copy, comm)
}

/// `observer sidecar --comm ^COMM$` with metrics on a port the kernel picks, and alerts.
fn sidecar(ws: &Workspace, comm: &str, extra: &[&str]) -> (Observer, u16, PathBuf) {
    let alerts = ws.path("alerts.jsonl");
    let mut argv = vec!["sidecar"];
    argv.extend_from_slice(extra);
    let observer = ObserverCmd::raw(&argv)
        .opt("--comm", &format!("^{comm}$"))
        .opt("--metrics-addr", "127.0.0.1:0")
        .opt("--alerts", alerts.to_str().expect("utf-8 path"))
        .flag("--no-live")
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
    let ready = wait_until(TIMEOUT, || {
        let err = observer.stderr_so_far();
        port = announced(&err);
        port.is_some() && err.contains("sidecar watching")
    });
    assert!(
        ready,
        "the sidecar did not start\n{}",
        observer.stderr_so_far()
    );
    (observer, port.expect("checked"), alerts)
}

fn scrape(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics port");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .expect("send");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text
}

/// The value of one sample line (`name{labels} value`) of the exposition text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn degraded_alerts(alerts: &[Value], reason: &str) -> Vec<Value> {
    alerts
        .iter()
        .filter(|a| {
            str_field(a, "kind") == Some("degraded") && str_field(a, "reason") == Some(reason)
        })
        .cloned()
        .collect()
}

/// "2026-12-05T11:32:04.123Z observer: degraded: ring buffer full, ..."
fn timestamped_line<'a>(stderr: &'a str, text: &str) -> Option<&'a str> {
    stderr.lines().find(|l| {
        let Some((time, rest)) = l.split_once(' ') else {
            return false;
        };
        time.len() >= 20
            && time.as_bytes()[4] == b'-'
            && time.as_bytes()[10] == b'T'
            && time.ends_with('Z')
            && rest.starts_with("observer: degraded: ")
            && rest.contains(text)
    })
}

fn stop(observer: Observer) -> ObserverRun {
    // SAFETY: kill(2) on the observer this test started.
    unsafe { libc::kill(observer.pid() as libc::pid_t, libc::SIGINT) };
    observer.wait(TIMEOUT)
}

/// A 64 KiB ring buffer under a 1us threshold: every wait of a contended mutex is an event
/// with two 16 KiB stack copies, far more than fits. The loss starts, is reported (not once per
/// event), shows in the metrics while it lasts, and ends once the load is gone.
#[test]
fn a_full_ring_buffer_is_said_on_stderr_in_the_alerts_and_the_metrics() {
    require_root();
    let ws = Workspace::new("degraded-ring");
    let built = ws.build_target("contention", FramePointers::Omit);
    let (binary, comm) = unique_copy(&ws, &built, "conten");
    let (observer, port, alerts_path) =
        sidecar(&ws, &comm, &["--ring-size", "64K", "--threshold", "1us"]);
    let target = Target::spawn(&binary, &["4", "8"]);
    let mut metrics = String::new();
    let seen = wait_until(TIMEOUT, || {
        metrics = scrape(port);
        sample(&metrics, "observer_degraded{reason=\"ring_buffer_full\"}") == Some(1.0)
    });
    assert!(
        seen,
        "observer_degraded{{reason=\"ring_buffer_full\"}} never became 1\n{metrics}\nstderr:\n{}",
        observer.stderr_so_far()
    );
    assert!(
        sample(
            &metrics,
            "observer_degraded_total{reason=\"ring_buffer_full\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    assert!(target.wait_exit(TIMEOUT), "the target did not finish");
    // No more loss: the period ends after 5 quiet seconds and the gauge drops back.
    let ended = wait_until(TIMEOUT, || {
        metrics = scrape(port);
        sample(&metrics, "observer_degraded{reason=\"ring_buffer_full\"}") == Some(0.0)
    });
    assert!(ended, "the degraded period did not end\n{metrics}");
    let run = stop(observer);
    let alerts = read_alerts(&alerts_path);
    let ring = degraded_alerts(&alerts, "ring_buffer_full");
    let report = run.report();
    let started = ring
        .iter()
        .find(|a| str_field(a, "state") == Some("started"))
        .unwrap_or_else(|| panic!("no degraded alert \"started\" in {ring:?}\n{report}"));
    assert!(
        u64_field(started, "count").is_some_and(|n| n > 0),
        "{started}"
    );
    assert!(
        str_field(started, "since").is_some_and(|s| s.ends_with('Z')),
        "{started}"
    );
    assert!(
        str_field(started, "detail").is_some_and(|d| d.contains("--ring-size")),
        "the alert should say what to do: {started}"
    );
    let ended = ring
        .iter()
        .find(|a| str_field(a, "state") == Some("ended"))
        .unwrap_or_else(|| panic!("no degraded alert \"ended\" in {ring:?}\n{report}"));
    assert_eq!(str_field(ended, "since"), str_field(started, "since"));
    // Rate-limited: a start, one report per 5 s while it lasted, an end; never one per event.
    assert!(
        ring.len() <= 6,
        "{} degraded alerts for one period\n{report}",
        ring.len()
    );
    assert!(
        timestamped_line(&run.stderr, "ring buffer full, ").is_some(),
        "no timestamped \"observer: degraded: ring buffer full\" line\n{report}"
    );
    assert!(
        run.stderr.contains("degraded periods") && run.stderr.contains("ring buffer full: "),
        "the summary should list the period\n{report}"
    );
}

/// A Go program parking >100k goroutines/s, far over `--go-probe-budget`: its park probes are
/// duty-cycled from then on, and that is a degraded period of that process, until it exits.
#[test]
fn the_go_probe_budget_is_said_on_stderr_in_the_alerts_and_the_metrics() {
    require_root();
    let Some(go) = GoVersion::Go127.toolchain("the_go_probe_budget_is_said") else {
        return;
    };
    let ws = Workspace::new("degraded-go");
    let built = ws.build_go(&go, "patterns/pingpong.go", false);
    let (binary, comm) = unique_copy(&ws, &built, "pingpo");
    let (observer, port, alerts_path) = sidecar(&ws, &comm, &[]);
    let target = Target::spawn(&binary, &["4"]);
    let mut metrics = String::new();
    let seen = wait_until(TIMEOUT, || {
        metrics = scrape(port);
        sample(&metrics, "observer_degraded{reason=\"go_probe_budget\"}") == Some(1.0)
    });
    assert!(
        seen,
        "observer_degraded{{reason=\"go_probe_budget\"}} never became 1\n{metrics}\nstderr:\n{}",
        observer.stderr_so_far()
    );
    assert_eq!(
        sample(
            &metrics,
            "observer_degraded_total{reason=\"go_probe_budget\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(target.wait_exit(TIMEOUT), "the Go program did not finish");
    let ended = wait_until(TIMEOUT, || {
        metrics = scrape(port);
        sample(&metrics, "observer_degraded{reason=\"go_probe_budget\"}") == Some(0.0)
    });
    assert!(
        ended,
        "the budget period did not end with the process\n{metrics}"
    );
    let run = stop(observer);
    let report = run.report();
    let alerts = read_alerts(&alerts_path);
    let budget = degraded_alerts(&alerts, "go_probe_budget");
    let started = budget
        .iter()
        .find(|a| str_field(a, "state") == Some("started"))
        .unwrap_or_else(|| panic!("no degraded go_probe_budget alert\n{report}"));
    assert_eq!(
        u64_field(started, "pid"),
        Some(u64::from(target.pid())),
        "{started}"
    );
    assert!(
        str_field(started, "detail").is_some_and(|d| d.contains("--go-probe-budget")),
        "{started}"
    );
    assert!(
        budget
            .iter()
            .any(|a| str_field(a, "state") == Some("ended")),
        "no \"ended\" when the process exited\n{report}"
    );
    let line = timestamped_line(&run.stderr, "Go probe budget: ")
        .unwrap_or_else(|| panic!("no timestamped Go probe budget line\n{report}"));
    assert!(line.contains("park probes on"), "{line}");
}
