//! Faults, hostile conditions and security properties: observer stopped by signals, thousands of
//! short-lived threads, two observers on one target, a ring buffer that overflows, a pid that is
//! reused, output paths planted with symlinks, missing capabilities, and a source scan proving
//! observer never writes to the memory of the processes it watches.
//!
//! (The target exiting under `watch` and the unprivileged user are covered in e2e_cli.rs.)

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use observer_tests::{
    bpf_prog_ids_of, bpf_prog_name, i64_field, require_root, str_field, wait_until, FramePointers,
    Observer, ObserverCmd, ObserverRun, Target, Workspace,
};

const TIMEOUT: Duration = Duration::from_secs(30);
/// From Ctrl-C / SIGTERM to exit, outputs written: a person is waiting at the terminal.
const PROMPT_EXIT: Duration = Duration::from_secs(5);

/// Waits until observer has its probes attached (it says so on stderr), then gives it `settle`.
fn wait_attached(observer: &Observer, settle: Duration) {
    let attached = wait_until(TIMEOUT, || {
        let err = observer.stderr_so_far();
        err.contains("watching pid") || err.contains("running `")
    });
    assert!(
        attached,
        "observer did not report being attached; stderr:\n{}",
        observer.stderr_so_far()
    );
    thread::sleep(settle);
}

/// The BPF programs `observer` holds, with their names; fails the test if there are none.
fn programs_of(observer: &Observer) -> Vec<(u32, String)> {
    let progs: Vec<(u32, String)> = bpf_prog_ids_of(observer.pid())
        .into_iter()
        .filter_map(|id| bpf_prog_name(id).map(|name| (id, name)))
        .collect();
    let names: Vec<&str> = progs.iter().map(|(_, n)| n.as_str()).collect();
    for expected in ["sched_switch", "sched_waking"] {
        assert!(
            names.contains(&expected),
            "observer (pid {}) should hold a BPF program named {expected}; it holds {progs:?}",
            observer.pid()
        );
    }
    progs
}

/// After observer has ended, none of its programs may stay loaded (attached programs are
/// held by their links; a pinned or leaked link would keep one alive).
fn assert_programs_gone(progs: &[(u32, String)], how: &str) {
    let mut left = Vec::new();
    let gone = wait_until(Duration::from_secs(5), || {
        left = progs
            .iter()
            .filter(|(id, _)| bpf_prog_name(*id).is_some())
            .cloned()
            .collect();
        left.is_empty()
    });
    assert!(
        gone,
        "after {how}, observer's BPF programs are still loaded: {left:?} (of {progs:?})"
    );
}

fn send_signal(observer: &Observer, signal: libc::c_int) {
    // SAFETY: kill(2) on the observer process this test started and has not reaped.
    let rc = unsafe { libc::kill(observer.pid() as libc::pid_t, signal) };
    assert_eq!(rc, 0, "could not signal observer");
}

/// `watch` on a long-running target, stopped with `signal` after it has seen a lock wait.
fn stopped_by(signal: libc::c_int, name: &str) {
    require_root();
    let ws = Workspace::new(&format!("sig{name}"));
    let binary = ws.build_target("lock_hold", FramePointers::Omit);
    let target = Target::spawn(&binary, &["60"]);
    let folded = ws.path("blocked.folded");
    let observer = ObserverCmd::watch(target.pid())
        .alerts(&ws)
        .opt("--folded", folded.to_str().unwrap())
        .spawn(&ws);
    // lock_hold's first 300ms lock hold ends about 1s after its start.
    wait_attached(&observer, Duration::from_millis(1500));
    let progs = programs_of(&observer);

    send_signal(&observer, signal);
    let sent = Instant::now();
    let run = observer.wait(TIMEOUT);
    let took = sent.elapsed();
    let report = run.report();

    assert_programs_gone(&progs, name);
    assert!(
        target.exit_status().is_none(),
        "stopping observer must not stop the watched process\n{report}"
    );
    if signal == libc::SIGKILL {
        assert_eq!(run.exit_code(), Some(128 + libc::SIGKILL), "{report}");
        return;
    }
    assert!(
        took <= PROMPT_EXIT,
        "observer took {took:?} to exit after {name} (limit {PROMPT_EXIT:?})\n{report}"
    );
    assert_eq!(run.exit_code(), Some(0), "{report}");
    assert!(
        run.stderr.contains("observer summary for") && run.stderr.contains("drops:"),
        "no summary after {name}\n{report}"
    );
    assert!(run.alerts_written, "no alerts file after {name}\n{report}");
    assert!(
        run.of_kind("lock_hold")
            .iter()
            .any(|a| str_field(a, "comm") == Some("worker")),
        "the lock wait seen before {name} is missing from the alerts file\n{report}"
    );
    assert!(
        fs::read_to_string(&folded).is_ok_and(|f| f.contains("worker_update")),
        "the folded profile was not written after {name}\n{report}"
    );
}

#[test]
fn sigint_detaches_and_writes_outputs() {
    stopped_by(libc::SIGINT, "SIGINT");
}

#[test]
fn sigterm_detaches_and_writes_outputs() {
    stopped_by(libc::SIGTERM, "SIGTERM");
}

#[test]
fn sigkill_leaves_no_program_loaded() {
    stopped_by(libc::SIGKILL, "SIGKILL");
}

/// The numbers of the summary line `drops: N events dropped (ring buffer full), ...`.
fn events_dropped(stderr: &str) -> Option<u64> {
    let line = stderr.lines().find(|l| l.starts_with("drops:"))?;
    line.trim_start_matches("drops:")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `thread deaths: N from K creation sites ...` -> (N, K); "none" -> (0, 0).
fn thread_deaths(stderr: &str) -> Option<(u64, u64)> {
    let line = stderr.lines().find(|l| l.starts_with("thread deaths:"))?;
    let rest = line.trim_start_matches("thread deaths:").trim();
    if rest.starts_with("none") {
        return Some((0, 0));
    }
    let words: Vec<&str> = rest.split_whitespace().collect();
    let deaths = words.first()?.parse().ok()?;
    let sites = words.get(2)?.parse().ok()?;
    Some((deaths, sites))
}

/// 100,000 threads, each joined, from one creation site: observer's memory must not grow with
/// the number of threads ever seen, it must keep up (or count what it drops), and the deaths
/// must not flood the alert stream.
#[test]
fn hundred_thousand_short_lived_threads() {
    require_root();
    let ws = Workspace::new("churn");
    let binary = ws.build_target("thread_churn", FramePointers::Omit);
    let started = Instant::now();
    let (run, peak_kib) = ObserverCmd::run()
        .alerts(&ws)
        .command(&binary, &["100000", "1000"])
        .spawn(&ws)
        .wait_with_peak_rss(Duration::from_secs(90));
    let took = started.elapsed();
    let report = run.report();

    assert_eq!(run.exit_code(), Some(0), "{report}");
    assert!(
        run.stdout.contains("done 100000"),
        "the target did not create all its threads\n{report}"
    );
    assert!(
        peak_kib < 300 * 1024,
        "observer's peak RSS was {} MiB for 100,000 threads (limit 300 MiB)\n{report}",
        peak_kib / 1024
    );
    assert!(
        took < Duration::from_secs(60),
        "observing 100,000 threads took {took:?}\n{report}"
    );
    let dropped = events_dropped(&run.stderr);
    assert!(
        dropped.is_some(),
        "the summary has no \"drops:\" line\n{report}"
    );
    let (deaths, sites) = thread_deaths(&run.stderr)
        .unwrap_or_else(|| panic!("the summary has no \"thread deaths:\" line\n{report}"));
    let alerts = run.of_kind("thread_exit").len() as u64;
    // One alert per creation site at most, the rest counted: thread_churn has one site, plus
    // the bucket of threads whose creation event was dropped.
    assert!(
        alerts <= sites && sites <= 2,
        "{alerts} thread_exit alerts from {sites} creation sites: deaths flood the alerts\n{report}"
    );
    eprintln!(
        "100,000 threads: {took:?}, peak RSS {} MiB, {} events dropped, {deaths} deaths counted \
         from {sites} sites, {alerts} thread_exit alerts",
        peak_kib / 1024,
        dropped.unwrap_or(0)
    );
}

/// Two observers on one target load their own programs and maps: both see everything.
#[test]
fn two_observers_on_one_target() {
    require_root();
    let ws_target = Workspace::new("two");
    let binary = ws_target.build_target("lock_hold", FramePointers::Omit);
    let target = Target::spawn(&binary, &["8"]);
    let (ws_a, ws_b) = (Workspace::new("two-a"), Workspace::new("two-b"));
    let first = ObserverCmd::watch(target.pid())
        .opt("--duration", "5s")
        .alerts(&ws_a)
        .spawn(&ws_a);
    let second = ObserverCmd::watch(target.pid())
        .opt("--duration", "5s")
        .alerts(&ws_b)
        .spawn(&ws_b);
    for (label, run) in [
        ("first", first.wait(TIMEOUT)),
        ("second", second.wait(TIMEOUT)),
    ] {
        let report = run.report();
        assert_eq!(run.exit_code(), Some(0), "{label} observer\n{report}");
        let wait = run
            .of_kind("lock_hold")
            .into_iter()
            .find(|a| str_field(a, "comm") == Some("worker"))
            .unwrap_or_else(|| {
                panic!("the {label} observer saw no lock_hold of the worker\n{report}")
            });
        assert_eq!(
            str_field(wait, "release_comm"),
            Some("maintenance"),
            "{label} observer: {wait}"
        );
    }
}

/// Every wait over a 1us threshold is an event; a 64 KiB ring buffer cannot hold them. What is
/// lost must be counted and said, never hidden.
#[test]
fn ring_buffer_overflow_is_counted() {
    require_root();
    let ws = Workspace::new("overflow");
    let binary = ws.build_target("contention", FramePointers::Omit);
    let run = ObserverCmd::run()
        .opt("--threshold", "1us")
        .command(&binary, &["3", "4"])
        .wrapped_in(&["env", "OBSERVER_RING_BUFFER_BYTES=65536"])
        .run_to_end(&ws, Duration::from_secs(60));
    let report = run.report();

    assert_eq!(run.exit_code(), Some(0), "{report}");
    let dropped = events_dropped(&run.stderr)
        .unwrap_or_else(|| panic!("the summary has no \"drops:\" line\n{report}"));
    assert!(
        dropped > 0,
        "a 64 KiB ring buffer under a 1us threshold should overflow, and the loss be counted\n{report}"
    );
    assert!(
        run.stderr.contains("data was lost"),
        "the summary should warn that counts are lower bounds\n{report}"
    );
}

/// A number from the summary: `label: N ...` on a line of its own, or `, N label` inside the
/// "drops:" line.
fn summary_count(stderr: &str, label: &str) -> Option<u64> {
    if let Some(line) = stderr.lines().find(|l| l.starts_with(label)) {
        return line[label.len()..]
            .trim_start_matches(':')
            .split(|c: char| c == ',' || c.is_whitespace())
            .find(|w| !w.is_empty())?
            .parse()
            .ok();
    }
    let drops = stderr.lines().find(|l| l.starts_with("drops:"))?;
    drops
        .trim_start_matches("drops:")
        .split(',')
        .find(|part| part.contains(label))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// 64 threads on one mutex: tens of thousands of short waits summed in the kernel while
/// observer drains the sums every second. Two CPUs adding the same new key at once, or a wait
/// added while userspace read and deleted its key, used to lose it (about one run in three
/// here); the aggregate maps are double-buffered now, and nothing may be lost.
#[test]
fn short_waits_are_summed_without_loss() {
    require_root();
    let ws = Workspace::new("aggregates");
    let binary = ws.build_target("contention", FramePointers::Omit);
    let run = ObserverCmd::run()
        .command(&binary, &["5", "64"])
        .run_to_end(&ws, Duration::from_secs(60));
    let report = run.report();

    assert_eq!(run.exit_code(), Some(0), "{report}");
    let waits = summary_count(&run.stderr, "waits observed")
        .unwrap_or_else(|| panic!("the summary has no \"waits observed\" line\n{report}"));
    assert!(
        waits >= 5_000,
        "64 threads on one mutex should block thousands of times; observer saw {waits}\n{report}"
    );
    let lost = summary_count(&run.stderr, "aggregate updates lost")
        .unwrap_or_else(|| panic!("the summary has no aggregate-loss count\n{report}"));
    assert_eq!(
        lost, 0,
        "short waits were lost from the kernel's sums\n{report}"
    );
}

/// Starts `binary` so that it gets `pid` (just freed), through `ns_last_pid`; other processes
/// forking at the same moment can take it first, hence the retries. `None` if it never worked.
fn spawn_with_pid(binary: &Path, args: &[&str], pid: u32) -> Option<Target> {
    for _ in 0..50 {
        if fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).is_err() {
            return None;
        }
        let target = Target::spawn(binary, args);
        if target.pid() == pid {
            return Some(target);
        }
        drop(target);
    }
    None
}

/// `watch` follows one process: when it exits, observer stops, even if a new process gets the
/// same pid right away, and it never reports anything about that new process.
#[test]
fn reused_pid_is_not_followed() {
    require_root();
    let ws = Workspace::new("pidreuse");
    let first = ws.build_target("exit_after", FramePointers::Omit);
    let second = ws.build_target("contention", FramePointers::Omit);
    let target = Target::spawn(&first, &["3000", "7"]);
    let pid = target.pid();
    let observer = ObserverCmd::watch(pid)
        .opt("--threshold", "1ms")
        .opt("--stall-after", "500ms")
        .alerts(&ws)
        .spawn(&ws);
    wait_attached(&observer, Duration::ZERO);
    assert!(
        target.wait_exit(Duration::from_secs(10)),
        "exit_after did not exit"
    );
    // As fast as possible: the new process must exist while observer may still be looking.
    let impostor = spawn_with_pid(&second, &["6", "4"], pid);
    if impostor.is_none() {
        eprintln!(
            "NOTE reused_pid_is_not_followed: could not give pid {pid} to a new process \
             (other processes took it); checking only that observer stops"
        );
    }
    let exited = wait_until(Duration::from_secs(3), || {
        !Path::new(&format!("/proc/{}", observer.pid())).exists()
            || fs::read_to_string(format!("/proc/{}/stat", observer.pid()))
                .is_ok_and(|s| s.contains(") Z "))
    });
    let still_running_impostor = impostor.as_ref().is_some_and(|t| t.exit_status().is_none());
    let run = observer.wait(TIMEOUT);
    let report = run.report();

    assert!(
        exited,
        "observer kept running more than 3s after its target (pid {pid}) exited\n{report}"
    );
    if impostor.is_some() {
        assert!(
            still_running_impostor,
            "the test is void: the new process with pid {pid} ended before observer did"
        );
    }
    assert_eq!(run.exit_code(), Some(0), "{report}");
    let exits = run.of_kind("process_exit");
    assert_eq!(
        exits.len(),
        1,
        "exactly one process_exit (the watched process's) expected\n{report}"
    );
    assert_eq!(i64_field(exits[0], "exit_code"), Some(7), "{report}");
    let foreign: Vec<_> = run
        .alerts
        .iter()
        .filter(|a| str_field(a, "kind") != Some("process_exit"))
        .collect();
    assert!(
        foreign.is_empty(),
        "alerts about a process observer was not watching (exit_after makes none)\n{report}"
    );
    assert!(
        !run.stderr.contains("hammer") && !run.stderr.contains("contention"),
        "observer reported on the new process that got pid {pid}\n{report}"
    );
}

/// `path` is a symlink planted to `victim`; observer must refuse to write through it.
fn assert_refused(
    run: &ObserverRun,
    flag: &str,
    path: &Path,
    victim: &Path,
    marker: &str,
) -> Result<(), String> {
    let report = run.report();
    let mut problems = Vec::new();
    if fs::read_to_string(victim).ok().as_deref() != Some(marker) {
        problems.push(format!(
            "{flag}: the file behind the planted symlink was overwritten"
        ));
    }
    if run.exit_code() == Some(0) {
        problems.push(format!("{flag}: observer exited 0 instead of refusing"));
    }
    let err = run.stderr.to_lowercase();
    if !run.stderr.contains(&path.display().to_string())
        || !(err.contains("symbolic link") || err.contains("symlink"))
    {
        problems.push(format!(
            "{flag}: the error should name {} and say it is a symbolic link",
            path.display()
        ));
    }
    if fs::read_link(path).ok().as_deref() != Some(victim) {
        problems.push(format!(
            "{flag}: the symlink itself was replaced or removed"
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\n{report}", problems.join("\n")))
    }
}

fn planted(ws: &Workspace, name: &str) -> (PathBuf, PathBuf, &'static str) {
    let victim = ws.path(&format!("victim-of-{name}"));
    let marker = "precious data, not observer's\n";
    fs::write(&victim, marker).unwrap();
    let link = ws.path(name);
    symlink(&victim, &link).unwrap();
    (link, victim, marker)
}

/// A symlink planted at the alerts path (in a shared directory, by another user) must not
/// redirect observer's writes; the command is not even started.
#[test]
fn alerts_path_symlink_is_refused() {
    require_root();
    let ws = Workspace::new("plant-alerts");
    let (link, victim, marker) = planted(&ws, "alerts.jsonl");
    let started_marker = ws.path("command-ran");
    let script = format!("touch {}", started_marker.display());
    let run = ObserverCmd::run()
        .opt("--alerts", link.to_str().unwrap())
        .command(Path::new("/bin/sh"), &["-c", &script])
        .run_to_end(&ws, TIMEOUT);
    if let Err(problem) = assert_refused(&run, "--alerts", &link, &victim, marker) {
        panic!("{problem}");
    }
    thread::sleep(Duration::from_millis(200));
    assert!(
        !started_marker.exists(),
        "the command ran although observer refused its output path\n{}",
        run.report()
    );
}

/// The same for the profile outputs.
#[test]
fn profile_output_symlinks_are_refused() {
    require_root();
    let ws = Workspace::new("plant-prof");
    let binary = ws.build_target("exit_after", FramePointers::Omit);
    let mut failures = Vec::new();
    for (flag, name) in [
        ("--folded", "blocked.folded"),
        ("--pprof", "blocked.pb.gz"),
        ("--svg", "blocked.svg"),
    ] {
        let (link, victim, marker) = planted(&ws, name);
        let run = ObserverCmd::run()
            .opt(flag, link.to_str().unwrap())
            .command(&binary, &["100", "0"])
            .run_to_end(&ws, TIMEOUT);
        if let Err(problem) = assert_refused(&run, flag, &link, &victim, marker) {
            failures.push(problem);
        }
    }
    assert!(
        failures.is_empty(),
        "output files written through planted symlinks:\n{}",
        failures.join("\n\n")
    );
}

/// Root without the capabilities (a container, a dropped bounding set) is not enough: observer
/// names exactly the ones it lacks.
#[test]
fn root_without_capabilities_is_told_which() {
    require_root();
    let ws = Workspace::new("nocaps");
    let run = ObserverCmd::watch(std::process::id())
        .opt("--duration", "1s")
        .wrapped_in(&[
            "setpriv",
            "--bounding-set=-bpf,-perfmon,-sys_ptrace,-sys_admin",
        ])
        .run_to_end(&ws, TIMEOUT);
    let report = run.report();
    assert!(
        !run.stderr.contains("setpriv:"),
        "setpriv could not drop the capabilities\n{report}"
    );
    assert_eq!(run.exit_code(), Some(2), "{report}");
    for cap in ["CAP_BPF", "CAP_PERFMON", "CAP_SYS_PTRACE"] {
        assert!(
            run.stderr.contains(cap),
            "the error should name the missing {cap}\n{report}"
        );
    }
    assert!(
        bpf_prog_ids_of(std::process::id()).is_empty(),
        "the test process itself holds BPF programs?"
    );
}

/// Calls that write to (or stop, or steer) another process. observer only reads: it must never
/// gain one. A use that is really needed must be argued for and this list changed with it.
const FORBIDDEN: &[(&str, &str)] = &[
    ("process_vm_writev", "writes another process's memory"),
    (
        "ptrace(",
        "ptrace stops the target and can write its memory",
    ),
    (
        "PTRACE_",
        "ptrace stops the target and can write its memory",
    ),
    ("/mem\"", "/proc/PID/mem can be written"),
    (
        "bpf_probe_write_user",
        "a BPF program writing target memory",
    ),
    (
        "bpf_override_return",
        "a BPF program changing a call's result",
    ),
    ("bpf_send_signal", "a BPF program signalling the target"),
];

/// Code lines of a Rust file, comments removed (the docs say "never ptrace", which is fine).
fn code_lines(text: &str) -> Vec<(usize, String)> {
    let mut in_block = false;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut code = String::new();
        let mut rest = line;
        loop {
            if in_block {
                match rest.find("*/") {
                    Some(end) => {
                        rest = &rest[end + 2..];
                        in_block = false;
                    }
                    None => break,
                }
            } else {
                let line_comment = rest.find("//");
                let block = rest.find("/*");
                match (line_comment, block) {
                    (Some(l), b) if b.is_none_or(|b| l < b) => {
                        code.push_str(&rest[..l]);
                        break;
                    }
                    (_, Some(b)) => {
                        code.push_str(&rest[..b]);
                        rest = &rest[b + 2..];
                        in_block = true;
                    }
                    _ => {
                        code.push_str(rest);
                        break;
                    }
                }
            }
        }
        out.push((n + 1, code));
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn forbidden_uses(text: &str) -> Vec<(usize, &'static str, &'static str)> {
    code_lines(text)
        .into_iter()
        .flat_map(|(n, code)| {
            FORBIDDEN
                .iter()
                .filter(move |(pattern, _)| code.contains(pattern))
                .map(move |(pattern, why)| (n, *pattern, *why))
        })
        .collect()
}

/// observer reads target memory (process_vm_readv, BPF reads) and never writes it.
#[test]
fn source_never_writes_target_memory() {
    // The scanner itself: it must see real uses and ignore comments.
    assert_eq!(
        forbidden_uses("let n = libc::process_vm_writev(pid, a, 1, b, 1, 0);").len(),
        1
    );
    assert_eq!(
        forbidden_uses("libc::ptrace(libc::PTRACE_POKEDATA, pid, a, v);").len(),
        2
    );
    assert_eq!(
        forbidden_uses("let f = open(format!(\"/proc/{pid}/mem\"));").len(),
        1
    );
    assert!(forbidden_uses("// never ptrace( it\n/* nor PTRACE_ATTACH */ let x = 1;").is_empty());
    assert!(forbidden_uses("const CAP_SYS_PTRACE: u32 = 19;").is_empty());

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for crate_dir in [
        "observer-user/src",
        "observer-ebpf/src",
        "observer-common/src",
    ] {
        rust_files(&root.join(crate_dir), &mut files);
    }
    assert!(
        files.len() >= 20,
        "found only {} source files: is the layout still observer-user/src etc.?",
        files.len()
    );
    let mut found = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).unwrap();
        for (line, pattern, why) in forbidden_uses(&text) {
            found.push(format!("{}:{line}: `{pattern}`: {why}", file.display()));
        }
    }
    assert!(
        found.is_empty(),
        "observer must only read the processes it watches; found:\n{}",
        found.join("\n")
    );
    // The one way observer reads target memory is read-only.
    let memory = fs::read_to_string(root.join("observer-user/src/proc/memory.rs")).unwrap();
    assert!(memory.contains("process_vm_readv"));
}

#[test]
fn summary_line_parsers() {
    let summary =
        "alerts: none\nthread deaths: 44809 from 2 creation sites (first of each alerted):\n\
                   drops: 94217 events dropped (ring buffer full), 0 aggregate updates lost\n";
    assert_eq!(events_dropped(summary), Some(94217));
    assert_eq!(thread_deaths(summary), Some((44809, 2)));
    assert_eq!(thread_deaths("thread deaths: none\n"), Some((0, 0)));
    assert_eq!(events_dropped("no summary"), None);
}
