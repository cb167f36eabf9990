//! Host-wide observation without a pid: `observer sidecar` and `observer record --all` find
//! a deadlock in a process they were never told about (already running, started later, or in
//! a pid namespace of its own), and attach the goroutine probes to a Go program as it starts.

use std::process::Command;
use std::thread;
use std::time::Duration;

use observer_tests::{
    i64_field, require_root, stack_mentions, str_field, wait_until, FramePointers, GoVersion,
    ObserverCmd, ObserverRun, Target, Value, Workspace,
};

const TIMEOUT: Duration = Duration::from_secs(40);

fn deadlocks_of(run: &ObserverRun, pid: u32) -> Vec<&Value> {
    run.of_kind("deadlock")
        .into_iter()
        .filter(|a| i64_field(a, "pid") == Some(i64::from(pid)))
        .collect()
}

fn assert_names_the_transfers(alert: &Value, report: &str) {
    let cycle = alert
        .get("cycle")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("deadlock alert without a cycle: {alert}\n{report}"));
    assert_eq!(cycle.len(), 2, "AB/BA cycle of two: {alert}\n{report}");
    for function in ["transfer_a_to_b", "transfer_b_to_a"] {
        assert!(
            cycle.iter().any(|m| stack_mentions(m, "stack", function)),
            "no cycle member's stack names {function}: {alert}\n{report}"
        );
    }
}

/// No pid, no filter: every process of the host is watched, the deadlocked one among them.
#[test]
fn sidecar_without_a_pid_finds_a_deadlock_on_the_host() {
    require_root();
    let ws = Workspace::new("sidecar-host");
    let binary = ws.build_target("deadlock", FramePointers::Omit);
    let target = Target::spawn(&binary, &["0"]);
    thread::sleep(Duration::from_millis(500));
    let run = ObserverCmd::raw(&["sidecar", "--no-metrics"])
        .opt("--duration", "5s")
        .opt("--stall-after", "1s")
        .alerts(&ws)
        .run_to_end(&ws, TIMEOUT);
    let report = run.report();
    assert_eq!(run.exit_code(), Some(0), "{report}");
    let found = deadlocks_of(&run, target.pid());
    assert!(
        !found.is_empty(),
        "no deadlock alert for pid {}\n{report}",
        target.pid()
    );
    assert_names_the_transfers(found[0], &report);
    assert!(
        run.stderr.contains("sidecar watching"),
        "the sidecar says how many processes it watches\n{report}"
    );
}

/// `--comm`: a process started after the sidecar, matching the filter, is watched from its
/// exec; one that does not match raises nothing.
#[test]
fn sidecar_comm_filter_takes_processes_as_they_start() {
    require_root();
    let ws = Workspace::new("sidecar-comm");
    let binary = ws.build_target("deadlock", FramePointers::Keep);
    let other = ws.path("unwatched-deadlock");
    std::fs::copy(&binary, &other).expect("copying the target");
    let observer = ObserverCmd::raw(&["sidecar", "--no-metrics", "--comm", "^deadlock-fp$"])
        .opt("--duration", "6s")
        .opt("--stall-after", "1s")
        .alerts(&ws)
        .spawn(&ws);
    thread::sleep(Duration::from_millis(1500));
    let target = Target::spawn(&binary, &["0"]);
    let unwatched = Target::spawn(&other, &["0"]);
    let run = observer.wait(TIMEOUT);
    let report = run.report();
    assert_eq!(run.exit_code(), Some(0), "{report}");
    let found = deadlocks_of(&run, target.pid());
    assert!(
        !found.is_empty(),
        "no deadlock alert for pid {} started after the sidecar\n{report}",
        target.pid()
    );
    assert_names_the_transfers(found[0], &report);
    assert!(
        run.alerts
            .iter()
            .all(|a| i64_field(a, "pid") != Some(i64::from(unwatched.pid()))),
        "a process whose name does not match --comm was reported\n{report}"
    );
}

/// A target in its own pid namespace (a container's view): alerts carry both pids.
#[test]
fn host_and_namespace_pids_in_alerts() {
    require_root();
    let ws = Workspace::new("sidecar-pidns");
    let binary = ws.build_target("deadlock", FramePointers::Omit);
    // unshare forks: the target is pid 1 of the new namespace, a child of unshare on the host.
    let unshare = Target::spawn(
        std::path::Path::new("unshare"),
        &[
            "--pid".as_ref(),
            "--fork".as_ref(),
            "--kill-child".as_ref(),
            binary.as_os_str(),
            "0".as_ref(),
        ],
    );
    let mut host_pid = None;
    assert!(
        wait_until(Duration::from_secs(5), || {
            host_pid = children_of(unshare.pid()).into_iter().next();
            host_pid.is_some()
        }),
        "unshare did not start the target"
    );
    let host_pid = host_pid.unwrap_or_default();
    let run = ObserverCmd::raw(&["sidecar", "--no-metrics", "--comm", "^deadlock-nofp$"])
        .opt("--duration", "4s")
        .opt("--stall-after", "1s")
        .alerts(&ws)
        .run_to_end(&ws, TIMEOUT);
    let report = run.report();
    let found = deadlocks_of(&run, host_pid);
    assert!(
        !found.is_empty(),
        "no deadlock alert for host pid {host_pid}\n{report}"
    );
    let alert = found[0];
    assert_eq!(
        i64_field(alert, "ns_pid"),
        Some(1),
        "the namespace pid of the target is 1: {alert}\n{report}"
    );
    let tid = i64_field(alert, "tid").unwrap_or_default();
    let ns_tid = i64_field(alert, "ns_tid").unwrap_or_default();
    assert!(
        ns_tid > 1 && ns_tid != tid,
        "ns_tid {ns_tid} is the thread's id inside the namespace, not the host's {tid}: {alert}\n{report}"
    );
}

/// `record --all` then `report`: the deadlock is in the recording of the whole host.
#[test]
fn record_all_then_report_replays_the_deadlock() {
    require_root();
    let ws = Workspace::new("record-all");
    let binary = ws.build_target("deadlock", FramePointers::Omit);
    let target = Target::spawn(&binary, &["0"]);
    thread::sleep(Duration::from_millis(300));
    let recording = ws.path("host.obsrec");
    let run = ObserverCmd::raw(&["record", "--all", "--quiet"])
        .opt("-o", &recording.display().to_string())
        .opt("--duration", "4s")
        .opt("--stall-after", "1s")
        .run_to_end(&ws, TIMEOUT);
    assert_eq!(run.exit_code(), Some(0), "{}", run.report());
    drop(target);
    let out = Command::new(observer_tests::observer_bin())
        .args(["report", "--format", "json"])
        .arg(&recording)
        .output()
        .expect("running observer report");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alerts = observer_tests::parse_alerts(&text, "report --format json");
    assert!(
        alerts
            .iter()
            .any(|a| str_field(a, "kind") == Some("deadlock")
                && a.get("cycle")
                    .is_some_and(|c| c.to_string().contains("transfer_a_to_b"))),
        "the host recording replays no deadlock naming transfer_a_to_b:\n{text}"
    );
}

/// A Go program started under a running sidecar gets the goroutine probes: its recovered
/// panic is reported.
#[test]
fn sidecar_attaches_go_probes_to_a_go_program_as_it_starts() {
    require_root();
    let Some(go) = GoVersion::Go127.toolchain("sidecar_attaches_go_probes") else {
        return;
    };
    let ws = Workspace::new("sidecar-go");
    let bin = ws.build_go(&go, "patterns/recovered_panic.go", false);
    let name = bin
        .file_name()
        .map(|n| n.to_string_lossy().chars().take(15).collect::<String>())
        .unwrap_or_default();
    let observer = ObserverCmd::raw(&["sidecar", "--no-metrics"])
        .opt("--comm", &format!("^{}$", regex_escape(&name)))
        .opt("--duration", "8s")
        .alerts(&ws)
        .spawn(&ws);
    thread::sleep(Duration::from_millis(1500));
    // The program waits a moment before it panics (see recovered_panic.go).
    let program = Target::spawn(&bin, &[] as &[&str]);
    let run = observer.wait(TIMEOUT);
    let report = format!("{}\n{}", go.reported, run.report());
    let panics: Vec<&Value> = run
        .of_kind("go_panic")
        .into_iter()
        .filter(|a| i64_field(a, "pid") == Some(i64::from(program.pid())))
        .collect();
    assert_eq!(
        panics.len(),
        1,
        "one recovered panic of pid {}\n{report}",
        program.pid()
    );
    assert_eq!(
        panics[0].get("recovered"),
        Some(&Value::Bool(true)),
        "{report}"
    );
    assert!(
        run.stderr.contains("goroutine probes attached to pid"),
        "the sidecar says it attached the goroutine probes\n{report}"
    );
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                vec![c]
            } else {
                vec!['\\', c]
            }
        })
        .collect()
}

fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// `--cgroup`: only the process moved into the given cgroup (v2) is watched.
#[test]
fn sidecar_cgroup_filter() {
    require_root();
    let Some(root) = cgroup2_mount() else {
        eprintln!(
            "SKIPPED sidecar_cgroup_filter: no cgroup2 file system is mounted on this machine"
        );
        return;
    };
    let ws = Workspace::new("sidecar-cgroup");
    let binary = ws.build_target("deadlock", FramePointers::Omit);
    let group = root.join(format!("observer-e2e-{}", std::process::id()));
    std::fs::create_dir(&group).expect("creating a cgroup");
    let inside = Target::spawn(&binary, &["0"]);
    let outside = Target::spawn(&binary, &["0"]);
    std::fs::write(group.join("cgroup.procs"), inside.pid().to_string())
        .expect("moving the target into the cgroup");
    let run = ObserverCmd::raw(&["sidecar", "--no-metrics"])
        .opt("--cgroup", &group.display().to_string())
        .opt("--duration", "4s")
        .opt("--stall-after", "1s")
        .alerts(&ws)
        .run_to_end(&ws, TIMEOUT);
    let report = run.report();
    let inside_pid = inside.pid();
    let outside_pid = outside.pid();
    drop(inside);
    drop(outside);
    // The cgroup can be removed once its process is gone.
    for _ in 0..50 {
        if std::fs::remove_dir(&group).is_ok() {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !deadlocks_of(&run, inside_pid).is_empty(),
        "no deadlock alert for pid {inside_pid} inside {}\n{report}",
        group.display()
    );
    assert!(
        deadlocks_of(&run, outside_pid).is_empty(),
        "pid {outside_pid}, outside the cgroup, was reported\n{report}"
    );
}

/// Where the cgroup2 hierarchy is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on a
/// hybrid system), from /proc/self/mountinfo.
fn cgroup2_mount() -> Option<std::path::PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2")
            .then(|| left.split_whitespace().nth(4).map(Into::into))
            .flatten()
    })
}

/// The live view on a terminal: `watch` under a pseudo-terminal (`script`) takes the alternate
/// screen, shows the stalled threads, and gives the terminal back before the summary.
#[test]
fn live_view_on_a_terminal() {
    require_root();
    let ws = Workspace::new("live-view");
    let binary = ws.build_target("deadlock", FramePointers::Omit);
    let target = Target::spawn(&binary, &["0"]);
    thread::sleep(Duration::from_millis(300));
    let command = format!(
        "TERM=xterm {} watch --pid {} --duration 3s --stall-after 1s",
        observer_tests::observer_bin().display(),
        target.pid()
    );
    let out = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .output()
        .expect("running script(1)");
    let screen = String::from_utf8_lossy(&out.stdout);
    let enter = screen.find("\x1b[?1049h");
    let leave = screen.rfind("\x1b[?1049l");
    assert!(
        enter.is_some() && leave.is_some() && enter < leave,
        "the view enters and then leaves the alternate screen:\n{screen:?}"
    );
    let view = &screen[enter.unwrap_or(0)..leave.unwrap_or(0)];
    for shown in ["STALLED NOW", "transfer_a_to_b", "observer watch"] {
        assert!(view.contains(shown), "the view shows {shown:?}:\n{view}");
    }
    assert!(
        screen[leave.unwrap_or(0)..].contains("observer summary"),
        "the summary comes after the view, on the normal screen:\n{screen}"
    );
}
