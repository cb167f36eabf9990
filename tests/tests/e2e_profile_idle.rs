//! Profiles lead with blocked time; idle time is kept apart, the same way for C and Go.
//!
//! - C: `lock_hold` under `--report-idle`: "maintenance" sleeps (idle) nearly all the time and
//!   main sleeps the whole run, while "worker" waits ~300 ms a second for the lock. The idle
//!   time is several times the lock wait.
//! - Go: `idle_pool_mutex`: eight pool workers wait in `select`, a listener in `Accept` (IO
//!   wait), a dispatcher in a channel receive, the whole run; `handleRequest` waits ~300 ms a
//!   second on a mutex a compactor holds while it computes.
//!
//! In both: the summary's first blocked stack is the lock wait and the idle time has a line of
//! its own; every idle line of the folded file is under the root frame `[idle]` and every
//! lock wait outside it; `go tool pprof` shows the lock wait by default and the idle time only
//! under `-sample_index=idle_delay`. The summary's "over the threshold" count says what became
//! of the waits, and the live view's `long` count is the one the alerts make.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use observer_tests::{require_root, FramePointers, GoVersion, ObserverCmd, ObserverRun, Workspace};

const TIMEOUT: Duration = Duration::from_secs(60);

struct Outputs {
    run: ObserverRun,
    folded: String,
    pprof: std::path::PathBuf,
}

fn observe(ws: &Workspace, binary: &Path, args: &[&str], flags: &[&str]) -> Outputs {
    let folded = ws.path("profile.folded");
    let pprof = ws.path("profile.pb.gz");
    let mut cmd = ObserverCmd::run()
        .opt("--folded", folded.to_str().unwrap())
        .opt("--pprof", pprof.to_str().unwrap());
    for f in flags {
        cmd = cmd.flag(f);
    }
    let run = cmd.alerts(ws).command(binary, args).run_to_end(ws, TIMEOUT);
    Outputs {
        folded: fs::read_to_string(&folded).unwrap_or_default(),
        pprof,
        run,
    }
}

/// The summary's stack lines under `header` (until the next unindented line).
fn summary_section<'a>(stderr: &'a str, header: &str) -> Vec<&'a str> {
    stderr
        .lines()
        .skip_while(|l| !l.starts_with(header))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect()
}

/// Total ns of the folded lines that `pick` selects.
fn folded_ns(text: &str, pick: impl Fn(&str) -> bool) -> u64 {
    text.lines()
        .filter(|l| pick(l))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum()
}

fn weight(line: &str) -> &str {
    line.rsplit_once(' ').map_or("", |(_, w)| w)
}

/// Runs `go tool pprof ARGS FILE`; `None` (said loudly) without Go.
fn go_pprof(args: &[&str], file: &Path) -> Option<String> {
    let out = match Command::new("go")
        .args(["tool", "pprof"])
        .args(args)
        .arg(file)
        .output()
    {
        Ok(out) => out,
        Err(_) => {
            eprintln!("SKIPPED (loudly): `go` is not on PATH; the pprof file is not checked");
            return None;
        }
    };
    assert!(
        out.status.success(),
        "go tool pprof {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What every run must show: the lock wait (`lock_fn`, `lock_label`) leads the summary and
/// pprof; idle time (far more of it: `idle_fn` in the folded lines, `idle_pprof` in pprof's
/// functions) sits under `[idle]` and in its own sample type.
struct Expect<'a> {
    lock_fn: &'a str,
    lock_label: &'a str,
    idle_fn: &'a str,
    idle_pprof: &'a str,
    idle_labels: &'a [&'a str],
}

fn check(o: &Outputs, e: &Expect) {
    let Expect {
        lock_fn,
        lock_label,
        idle_fn,
        idle_pprof,
        idle_labels,
    } = *e;
    let report = o.run.report();
    let folded = &o.folded;
    let stderr = &o.run.stderr;

    // The folded file: idle lines under [idle], lock waits outside it.
    let idle_ns = folded_ns(folded, |l| l.starts_with("[idle];"));
    let lock_ns = folded_ns(folded, |l| l.contains(lock_fn) && l.contains(lock_label));
    assert!(
        lock_ns > 0,
        "no lock wait in {lock_fn} in the folded file:\n{folded}\n{report}"
    );
    assert!(
        idle_ns > 2 * lock_ns,
        "the idle time ({idle_ns} ns) should dwarf the lock wait ({lock_ns} ns):\n{folded}\n{report}"
    );
    for line in folded.lines() {
        if line.contains(lock_label) {
            assert!(
                !line.starts_with("[idle];"),
                "a lock wait under [idle]: {line}\n{folded}"
            );
        } else if idle_labels
            .iter()
            .any(|l| line.ends_with(&format!("{l} {}", weight(line))))
        {
            assert!(
                line.starts_with("[idle];"),
                "an idle wait outside [idle]: {line}\n{folded}"
            );
        }
    }
    assert!(
        folded
            .lines()
            .any(|l| l.starts_with("[idle];") && l.contains(idle_fn)),
        "no idle line of {idle_fn} under [idle]:\n{folded}"
    );

    // The summary: the first blocked stack is the lock wait; idle time has its own line.
    let blocked = summary_section(stderr, "top blocked stacks");
    assert!(
        blocked.first().is_some_and(|l| l.contains(lock_fn)),
        "the summary's first blocked stack is not the lock wait in {lock_fn}:\n{report}"
    );
    assert!(
        !blocked
            .iter()
            .any(|l| idle_labels.iter().any(|i| l.contains(i))),
        "idle stacks among the blocked ones:\n{report}"
    );
    let idle = summary_section(stderr, "idle (waiting for work or time");
    assert!(
        !idle.is_empty(),
        "no idle line with its heaviest stacks:\n{report}"
    );
    let over = stderr
        .lines()
        .find(|l| l.starts_with("waits observed:"))
        .unwrap_or_else(|| panic!("no waits observed line:\n{report}"));
    assert!(
        over.contains("over the threshold: "),
        "the long waits are not explained: {over}\n{report}"
    );

    // pprof: the default sample type is blocked time only; idle time is its own sample type.
    let Some(top) = go_pprof(&["-top"], &o.pprof) else {
        return;
    };
    assert!(
        top.contains(lock_fn),
        "pprof -top does not name {lock_fn}:\n{top}"
    );
    let Some(tags) = go_pprof(&["-tags"], &o.pprof) else {
        return;
    };
    assert!(
        category_share(&tags, "lock") != "0" && category_share(&tags, "idle") == "0",
        "pprof's default sample type is not blocked time alone:\n{tags}"
    );
    let Some(idle_top) = go_pprof(&["-top", "-sample_index=idle_delay"], &o.pprof) else {
        return;
    };
    assert!(
        idle_top.contains("Type: idle_delay") && idle_top.contains(idle_pprof),
        "pprof -sample_index=idle_delay does not name {idle_pprof}:\n{idle_top}"
    );
    let Some(idle_tags) = go_pprof(&["-tags", "-sample_index=idle_delay"], &o.pprof) else {
        return;
    };
    assert!(
        category_share(&idle_tags, "idle") != "0" && category_share(&idle_tags, "lock") == "0",
        "pprof's idle sample type is not idle time alone:\n{idle_tags}"
    );
}

/// The value `go tool pprof -tags` gives the label `category: value` ("0" when absent).
fn category_share<'a>(tags: &'a str, value: &str) -> &'a str {
    tags.lines()
        .skip_while(|l| !l.trim_start().starts_with("category:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .find(|l| l.trim_end().ends_with(&format!(": {value}")))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or("0")
}

#[test]
fn c_idle_time_is_apart_from_a_lock_wait() {
    require_root();
    let ws = Workspace::new("profile_idle_c");
    let binary = ws.build_target("lock_hold", FramePointers::Omit);
    let o = observe(&ws, &binary, &["4"], &["--report-idle"]);
    check(
        &o,
        &Expect {
            lock_fn: "worker_update",
            lock_label: "[lock: pthread_mutex]",
            idle_fn: ";maintenance;",
            idle_pprof: "clock_nanosleep",
            idle_labels: &["[sleep]", "[futex]", "[poll]"],
        },
    );
    let report = o.run.report();
    // Lock waits went into lock_hold alerts; the idle ones into idle_wait alerts.
    let over = o
        .run
        .stderr
        .lines()
        .find(|l| l.starts_with("waits observed:"))
        .unwrap();
    assert!(
        over.contains("lock waits (in ") && over.contains("idle (idle_wait alerts)"),
        "{over}\n{report}"
    );
}

fn go_case(version: GoVersion, test: &str) {
    require_root();
    let Some(go) = version.toolchain(test) else {
        return;
    };
    let ws = Workspace::new(&format!("profile_idle_{}", version.label()));
    let binary = ws.build_go(&go, "patterns/idle_pool_mutex.go", false);
    let o = observe(&ws, &binary, &["4"], &[]);
    let reason = match version {
        GoVersion::Go119 => "[semacquire]",
        GoVersion::Go127 => "[sync.Mutex.Lock]",
    };
    check(
        &o,
        &Expect {
            lock_fn: "main.handleRequest",
            lock_label: reason,
            idle_fn: "main.poolWorker",
            idle_pprof: "main.poolWorker",
            idle_labels: &["[sleep]", "[select]", "[chan receive]", "[IO wait]"],
        },
    );
    let report = o.run.report();
    let over = o
        .run
        .stderr
        .lines()
        .find(|l| l.starts_with("waits observed:"))
        .unwrap();
    assert!(
        over.contains("goroutine sync wait") && over.contains("goroutine_wait alert"),
        "{over}\n{report}"
    );
}

#[test]
fn go119_idle_time_is_apart_from_a_mutex_wait() {
    go_case(
        GoVersion::Go119,
        "go119_idle_time_is_apart_from_a_mutex_wait",
    );
}

#[test]
fn go127_idle_time_is_apart_from_a_mutex_wait() {
    go_case(
        GoVersion::Go127,
        "go127_idle_time_is_apart_from_a_mutex_wait",
    );
}

/// The live view (on a pseudo-terminal, as in e2e_host) counts the long waits the alerts count
/// (`long N (M alerted, ...)`, not `long 0` next to goroutine_wait alerts), lists the mutex
/// wait among the blocked stacks and the idle time only as a total.
#[test]
fn go127_live_view_counts_what_the_alerts_count() {
    require_root();
    let Some(go) = GoVersion::Go127.toolchain("go127_live_view_counts_what_the_alerts_count")
    else {
        return;
    };
    let ws = Workspace::new("profile_idle_live");
    let binary = ws.build_go(&go, "patterns/idle_pool_mutex.go", false);
    let target = observer_tests::Target::spawn(&binary, &["8"]);
    std::thread::sleep(Duration::from_millis(300));
    let command = format!(
        "TERM=xterm COLUMNS=160 LINES=40 {} watch --pid {} --duration 4s",
        observer_tests::observer_bin().display(),
        target.pid()
    );
    let out = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .output()
        .expect("running script(1)");
    let screen = String::from_utf8_lossy(&out.stdout);
    let (Some(enter), Some(leave)) = (screen.find("\x1b[?1049h"), screen.rfind("\x1b[?1049l"))
    else {
        panic!("the live view never showed:\n{screen:?}");
    };
    let view = &screen[enter..leave];
    let alerted = view
        .match_indices("long ")
        .filter_map(|(i, _)| {
            let rest = &view[i + 5..];
            let (_, after) = rest.split_once(" (")?;
            let n: String = after.chars().take_while(char::is_ascii_digit).collect();
            after[n.len()..]
                .starts_with(" alerted")
                .then(|| n.parse::<u64>().ok())
                .flatten()
        })
        .max();
    assert!(
        alerted.is_some_and(|n| n > 0),
        "the live view's long count never says the goroutine waits were alerted:\n{view}"
    );
    assert!(
        view.contains("main.handleRequest"),
        "the mutex wait is not among the blocked stacks:\n{view}"
    );
    assert!(
        view.contains("idle not shown"),
        "the idle time is not a total apart:\n{view}"
    );
    assert!(
        !view.contains("main.poolWorker"),
        "an idle stack among the blocked ones:\n{view}"
    );
}
