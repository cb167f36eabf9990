//! `--alertmanager`: alerts posted to a real Prometheus Alertmanager (Debian's, installed by
//! `cargo xtask setup`) through its v2 API, read back from its own API; and an Alertmanager
//! that is not there costs nothing but a counted failure.

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use observer_tests::cgroups::{fake_id, Cgroups};
use observer_tests::sidecar::{alerts_so_far, free_port, running, unique_target};
use observer_tests::{
    require_root, str_field, u64_field, wait_until, FramePointers, ObserverCmd, Target, Value,
    Workspace,
};

const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";
const TIMEOUT: Duration = Duration::from_secs(30);

/// A plain HTTP/1.0 GET: (status, body).
fn http_get(port: u16, target: &str) -> Result<(u16, String), String> {
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
        .map_err(|e| format!("read: {e}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {response:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    Ok((status, body.to_string()))
}

/// An Alertmanager with its own configuration, storage and port, no clustering; killed when
/// dropped.
struct Alertmanager {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Alertmanager {
    fn start(ws: &Workspace) -> Self {
        assert!(
            Path::new(ALERTMANAGER).is_file(),
            "{ALERTMANAGER} not found: run `cargo xtask setup` (it installs Debian's \
             prometheus-alertmanager)"
        );
        let config = ws.path("alertmanager.yml");
        fs::write(
            &config,
            "route:\n  receiver: nobody\n  group_wait: 1s\nreceivers:\n  - name: nobody\n",
        )
        .expect("could not write the alertmanager configuration");
        let port = free_port();
        let log = ws.path("alertmanager.log");
        let out = fs::File::create(&log).expect("could not create the alertmanager log");
        let err = out
            .try_clone()
            .expect("could not share the alertmanager log");
        let child = Command::new(ALERTMANAGER)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", ws.path("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {ALERTMANAGER}: {e}"));
        let am = Alertmanager { child, port, log };
        assert!(
            wait_until(TIMEOUT, || matches!(
                http_get(am.port, "/-/ready"),
                Ok((200, _))
            )),
            "alertmanager did not become ready on port {port}\n{}",
            am.log()
        );
        am
    }

    /// The alerts Alertmanager holds as firing (resolved ones are not listed).
    fn alerts(&self) -> Vec<Value> {
        let (status, body) = http_get(self.port, "/api/v2/alerts")
            .unwrap_or_else(|e| panic!("GET /api/v2/alerts: {e}"));
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_else(|| panic!("not a JSON array: {body}"))
    }

    fn log(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        format!("alertmanager log (tail):\n{}", &text[start..])
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn label<'a>(alert: &'a Value, name: &str) -> Option<&'a str> {
    alert.pointer(&format!("/labels/{name}"))?.as_str()
}

fn annotation<'a>(alert: &'a Value, name: &str) -> &'a str {
    alert
        .pointer(&format!("/annotations/{name}"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The firing alerts named `alertname` of process `pid`.
fn firing(am: &Alertmanager, alertname: &str, pid: u32) -> Vec<Value> {
    am.alerts()
        .into_iter()
        .filter(|a| {
            label(a, "alertname") == Some(alertname)
                && label(a, "pid") == Some(pid.to_string().as_str())
        })
        .collect()
}

fn wait_for_threads(target: &Target, names: &[&str]) {
    assert!(
        wait_until(Duration::from_secs(5), || names
            .iter()
            .all(|n| !target.tids_named(n).is_empty())),
        "the target did not start threads {names:?}"
    );
}

/// A deadlock reaches Alertmanager with the process and the deadlocked functions, and is
/// resolved when the process is killed; a stall in the kernel shows while it lasts and is gone
/// once its wait ended.
#[test]
fn deadlock_and_stall_reach_alertmanager_and_resolve() {
    require_root();
    let ws = Workspace::new("alertmanager");
    let am = Alertmanager::start(&ws);
    let (deadlock_bin, deadlock_comm) = unique_target(&ws, "deadlock");
    let (stall_bin, stall_comm) = unique_target(&ws, "kernel_stall");
    let deadlock = Target::spawn(&deadlock_bin, &["0"]);
    wait_for_threads(&deadlock, &["alice", "bob"]);
    let pid = deadlock.pid();

    let observer = ObserverCmd::raw(&["sidecar", "--no-metrics"])
        .opt("--comm", &format!("^({deadlock_comm}|{stall_comm})$"))
        .opt("--stall-after", "1s")
        .opt("--alertmanager", &format!("http://127.0.0.1:{}/", am.port))
        .alerts(&ws)
        .spawn(&ws);
    let stderr = || observer.stderr_so_far();

    let mut deadlocks = Vec::new();
    let found = wait_until(TIMEOUT, || {
        deadlocks = firing(&am, "ObserverDeadlock", pid);
        !deadlocks.is_empty() || !running(&observer)
    });
    assert!(
        found && running(&observer),
        "no ObserverDeadlock for pid {pid} in alertmanager: {:?}\nobserver stderr:\n{}\n{}",
        am.alerts(),
        stderr(),
        am.log()
    );
    assert_eq!(deadlocks.len(), 1, "one deadlock, one alert: {deadlocks:?}");
    let d = &deadlocks[0];
    assert_eq!(label(d, "kind"), Some("deadlock"), "{d}");
    assert_eq!(label(d, "comm").map(|c| c.is_empty()), Some(false), "{d}");
    assert!(label(d, "instance").is_some_and(|i| !i.is_empty()), "{d}");
    let stacks = annotation(d, "stacks");
    assert!(
        stacks.contains("transfer_a_to_b") && stacks.contains("transfer_b_to_a"),
        "the stacks annotation should name both deadlocked functions: {d}"
    );
    assert!(annotation(d, "summary").starts_with("deadlock"), "{d}");
    // Still firing a while later (a deadlock lasts).
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(firing(&am, "ObserverDeadlock", pid).len(), 1);

    // A stall in the kernel (forker in D state for 5s): firing while it lasts, then resolved.
    let stall = Target::spawn(&stall_bin, &["5"]);
    let stall_pid = stall.pid();
    let mut stalls = Vec::new();
    let found = wait_until(TIMEOUT, || {
        stalls = firing(&am, "ObserverStall", stall_pid);
        !stalls.is_empty()
    });
    assert!(
        found,
        "no ObserverStall for pid {stall_pid}: {:?}\nobserver stderr:\n{}",
        am.alerts(),
        stderr()
    );
    let s = &stalls[0];
    assert_eq!(label(s, "comm"), Some("forker"), "{s}");
    assert!(label(s, "tid").is_some(), "a stall names its thread: {s}");
    assert!(
        annotation(s, "stacks").contains("forker_waits_for_vfork_child"),
        "{s}"
    );
    assert!(
        wait_until(TIMEOUT, || firing(&am, "ObserverStall", stall_pid)
            .is_empty()),
        "the stall of pid {stall_pid} was not resolved after its wait ended: {:?}",
        firing(&am, "ObserverStall", stall_pid)
    );

    // The deadlocked process is killed: its deadlock is over.
    drop(deadlock);
    assert!(
        wait_until(TIMEOUT, || firing(&am, "ObserverDeadlock", pid).is_empty()),
        "the deadlock of pid {pid} was not resolved after the process was killed: {:?}",
        firing(&am, "ObserverDeadlock", pid)
    );
    assert!(running(&observer), "{}", stderr());
    assert!(
        !stderr().contains("observer: alertmanager:"),
        "no failure expected:\n{}",
        stderr()
    );
}

/// An Alertmanager nobody listens for: observing and the alerts file go on, failures are
/// counted in the metrics and said once on stderr.
#[test]
fn unreachable_alertmanager_leaves_observation_intact() {
    require_root();
    let ws = Workspace::new("alertmanager-down");
    let (binary, comm) = unique_target(&ws, "deadlock");
    let target = Target::spawn(&binary, &["0"]);
    wait_for_threads(&target, &["alice", "bob"]);
    let pid = target.pid();
    let closed = free_port();
    let metrics_port = free_port();
    let alerts = ws.path("alerts.jsonl");
    let observer = ObserverCmd::raw(&["sidecar"])
        .opt("--comm", &format!("^{comm}$"))
        .opt("--stall-after", "1s")
        .opt("--metrics-addr", &format!("127.0.0.1:{metrics_port}"))
        .opt("--alertmanager", &format!("http://127.0.0.1:{closed}"))
        .alerts(&ws)
        .spawn(&ws);
    let found = wait_until(TIMEOUT, || {
        !running(&observer)
            || alerts_so_far(&alerts).iter().any(|a| {
                str_field(a, "kind") == Some("deadlock") && u64_field(a, "pid") == Some(pid.into())
            })
    });
    assert!(
        found && running(&observer),
        "no deadlock alert in the file (observer running: {})\n{}",
        running(&observer),
        observer.stderr_so_far()
    );
    let line = "observer_export_failures_total{sink=\"alertmanager\"} ";
    let mut failures = 0.0;
    let counted = wait_until(TIMEOUT, || {
        let body = http_get(metrics_port, "/metrics")
            .map(|r| r.1)
            .unwrap_or_default();
        failures = body
            .lines()
            .find_map(|l| l.strip_prefix(line))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        failures >= 1.0
    });
    assert!(
        counted,
        "no failure counted in `{line}`\n{}",
        observer.stderr_so_far()
    );
    let body = http_get(metrics_port, "/metrics").unwrap().1;
    assert!(
        body.contains("observer_export_failures_total{sink=\"otlp\"} 0\n"),
        "{body}"
    );
    let stderr = observer.stderr_so_far();
    assert_eq!(
        stderr
            .matches("observer: alertmanager: cannot post alerts")
            .count(),
        1,
        "the failure is said once:\n{stderr}"
    );
    assert!(
        stderr.contains("observer_export_failures_total"),
        "{stderr}"
    );
    assert!(running(&observer), "{stderr}");
    // Observation goes on: the deadlock is still in the file and the file still grows with
    // whatever comes next.
    assert!(alerts_so_far(&alerts)
        .iter()
        .any(|a| str_field(a, "kind") == Some("deadlock")));
}

/// A bad URL is refused at start-up, before anything is attached.
#[test]
fn bad_urls_fail_at_start() {
    let ws = Workspace::new("alertmanager-bad-url");
    for (url, says) in [
        ("https://127.0.0.1:9093", "https is not supported yet"),
        ("ftp://127.0.0.1:9093", "only http:// is supported"),
        ("127.0.0.1:9093", "expected http://HOST:PORT"),
    ] {
        let run = ObserverCmd::raw(&["sidecar", "--no-metrics"])
            .opt("--alertmanager", url)
            .run_to_end(&ws, Duration::from_secs(10));
        assert_eq!(run.exit_code(), Some(2), "{}", run.report());
        assert!(run.stderr.contains(says), "{url}: {}", run.report());
    }
}

/// `watch` posts too; when the deadlocked target is killed, observer ends and resolves the
/// deadlock on its way out (the process is gone), within its flush time.
#[test]
fn watch_resolves_the_deadlock_of_a_killed_target_on_exit() {
    require_root();
    let ws = Workspace::new("alertmanager-watch");
    let am = Alertmanager::start(&ws);
    let binary = ws.build_target("deadlock", FramePointers::Omit);
    let target = Target::spawn(&binary, &["0"]);
    wait_for_threads(&target, &["alice", "bob"]);
    let pid = target.pid();
    let observer = ObserverCmd::watch(pid)
        .opt("--stall-after", "1s")
        .opt("--alertmanager", &format!("http://127.0.0.1:{}", am.port))
        .alerts(&ws)
        .spawn(&ws);
    assert!(
        wait_until(TIMEOUT, || !firing(&am, "ObserverDeadlock", pid).is_empty()),
        "no ObserverDeadlock for pid {pid}: {:?}\n{}",
        am.alerts(),
        observer.stderr_so_far()
    );
    drop(target);
    let run = observer.wait(TIMEOUT);
    assert_eq!(run.exit_code(), Some(0), "{}", run.report());
    assert!(
        firing(&am, "ObserverDeadlock", pid).is_empty(),
        "the deadlock is still firing after observer saw its process end: {:?}\n{}",
        firing(&am, "ObserverDeadlock", pid),
        run.report()
    );
    assert!(!run.of_kind("deadlock").is_empty(), "{}", run.report());
}

/// A deadlock in a process of a Kubernetes pod's container (a cgroup shaped like containerd's
/// under the systemd driver) reaches Alertmanager labelled with its container id and pod UID,
/// so that a page names the pod.
#[test]
fn a_deadlock_in_a_pod_reaches_alertmanager_with_its_container_and_pod() {
    require_root();
    let ws = Workspace::new("alertmanager-pod");
    let am = Alertmanager::start(&ws);
    let (bin, comm) = unique_target(&ws, "deadlock");
    let deadlock = Target::spawn(&bin, &["0"]);
    wait_for_threads(&deadlock, &["alice", "bob"]);
    let pid = deadlock.pid();
    let container_id = fake_id(7);
    let pod_uid = "0c9e4a5b-7d21-4f3e-9a8b-6c5d4e3f2a1b";
    let mut cgroups = Cgroups::new();
    cgroups.put(
        &format!(
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/\
             cri-containerd-{container_id}.scope",
            pod_uid.replace('-', "_")
        ),
        pid,
    );

    let observer = ObserverCmd::raw(&["sidecar", "--no-metrics"])
        .opt("--comm", &format!("^{comm}$"))
        .opt("--stall-after", "1s")
        .opt("--alertmanager", &format!("http://127.0.0.1:{}", am.port))
        .alerts(&ws)
        .spawn(&ws);
    let mut deadlocks = Vec::new();
    let found = wait_until(TIMEOUT, || {
        deadlocks = firing(&am, "ObserverDeadlock", pid);
        !deadlocks.is_empty() || !running(&observer)
    });
    assert!(
        found && !deadlocks.is_empty(),
        "no ObserverDeadlock for pid {pid}: {:?}\nobserver stderr:\n{}\n{}",
        am.alerts(),
        observer.stderr_so_far(),
        am.log()
    );
    let d = &deadlocks[0];
    assert_eq!(label(d, "container_id"), Some(container_id.as_str()), "{d}");
    assert_eq!(label(d, "pod_uid"), Some(pod_uid), "{d}");
    assert!(
        annotation(d, "stacks").contains("transfer_a_to_b"),
        "the deadlocked functions are named: {d}"
    );
    drop(observer);
    drop(deadlock);
}
