//! Go programs: goroutine waits, stalls, leaks and panics seen from outside, and the
//! `observer goroutines` dump, each on an old (1.19) and a current (1.27) toolchain, whose
//! runtimes differ in layout, prologues, wait reasons and closure names.
//!
//! The programs are `goprogs/patterns/*.go` (one failure pattern each) and
//! `goprogs/goroutines/main.go`. A test is skipped, loudly, only when its toolchain is missing.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use observer_tests::{
    frames, i64_field, require_root, stack_mentions, str_field, u64_field, wait_until, GoToolchain,
    GoVersion, ObserverCmd, ObserverRun, Target, Value, Workspace, MS,
};

const TIMEOUT: Duration = Duration::from_secs(40);
const SECOND: u64 = 1000 * MS;

/// Every Go test runs once per toolchain: `go119::name` and `go127::name`.
macro_rules! for_each_go_version {
    ($($case:ident),* $(,)?) => {
        mod go119 {
            $(#[test]
            fn $case() {
                super::$case(super::GoVersion::Go119, concat!("go119::", stringify!($case)));
            })*
        }
        mod go127 {
            $(#[test]
            fn $case() {
                super::$case(super::GoVersion::Go127, concat!("go127::", stringify!($case)));
            })*
        }
    };
}

for_each_go_version!(
    recovered_panic,
    waitgroup_skip_run,
    waitgroup_skip_watch_after_park,
    waitgroup_skip_run_through_env,
    waitgroup_skip_run_through_sh_exec,
    waitgroup_skip_watch_across_exec,
    closed_channel,
    select_leak,
    mutex_slow_io,
    idle_http_is_quiet,
    stripped_binaries,
    no_go_flag,
    no_go_flag_across_exec,
    goroutines_dump,
);

fn toolchain(version: GoVersion, test: &str) -> Option<GoToolchain> {
    require_root();
    version.toolchain(test)
}

/// `observer run [flags] --stall-after S --alerts .. -- binary args`.
fn observe_run(
    ws: &Workspace,
    flags: &[&str],
    stall_after: &str,
    binary: &Path,
    args: &[&str],
) -> ObserverRun {
    let mut argv = vec!["run"];
    argv.extend_from_slice(flags);
    ObserverCmd::raw(&argv)
        .opt("--stall-after", stall_after)
        .alerts(ws)
        .command(binary, args)
        .run_to_end(ws, TIMEOUT)
}

fn goroutine_alerts(run: &ObserverRun) -> Vec<&Value> {
    run.alerts
        .iter()
        .filter(|a| str_field(a, "kind").is_some_and(|k| k.starts_with("goroutine_")))
        .collect()
}

/// The one process_exit of a run, which must carry `exit_code`.
fn assert_process_exit(run: &ObserverRun, exit_code: i64, report: &str) -> Value {
    let exits = run.of_kind("process_exit");
    assert_eq!(
        exits.len(),
        1,
        "expected exactly one process_exit alert\n{report}"
    );
    assert_eq!(
        i64_field(exits[0], "exit_code"),
        Some(exit_code),
        "process_exit exit_code\n{report}"
    );
    exits[0].clone()
}

// ---------------------------------------------------------------------------------------------
// recovered_panic.go: a panic swallowed by recover().

fn recovered_panic(version: GoVersion, test: &str) {
    let Some(go) = toolchain(version, test) else {
        return;
    };
    let ws = Workspace::new("go-recovered-panic");
    let bin = ws.build_go(&go, "patterns/recovered_panic.go", false);
    let run = observe_run(&ws, &[], "5s", &bin, &[]);
    let report = format!("{}\n{}", go.reported, run.report());

    assert_eq!(
        run.exit_code(),
        Some(0),
        "observer passes on status 0\n{report}"
    );
    assert_process_exit(&run, 0, &report);
    let panics = run.of_kind("go_panic");
    assert_eq!(
        panics.len(),
        1,
        "the program panics exactly once: expected one go_panic\n{report}"
    );
    let panic = panics[0];
    assert_eq!(
        panic.get("recovered"),
        Some(&Value::Bool(true)),
        "the panic was recovered: {panic}\n{report}"
    );
    assert_eq!(
        str_field(panic, "message"),
        Some("empty record in parseRecord"),
        "go_panic message: {panic}\n{report}"
    );
    // parseRecord may be inlined into handleRecord; either names the code that panicked.
    assert!(
        stack_mentions(panic, "stack", "main.parseRecord")
            || stack_mentions(panic, "stack", "main.handleRecord"),
        "go_panic stack names neither main.parseRecord nor main.handleRecord: {:?}\n{report}",
        frames(panic, "stack")
    );
}

// ---------------------------------------------------------------------------------------------
// waitgroup_skip.go: a coordinator waits forever on a WaitGroup a worker forgot.

fn waitgroup_wait_reason(version: GoVersion) -> &'static str {
    match version {
        // Before Go 1.20 every semaphore wait is "semacquire".
        GoVersion::Go119 => "semacquire",
        GoVersion::Go127 => "sync.WaitGroup.Wait",
    }
}

fn assert_waitgroup_stall(run: &ObserverRun, version: GoVersion, report: &str) {
    let stalls: Vec<&Value> = run
        .of_kind("goroutine_stall")
        .into_iter()
        .filter(|s| stack_mentions(s, "stack", "main.coordinateBatch"))
        .collect();
    assert_eq!(
        stalls.len(),
        1,
        "expected exactly one goroutine_stall (once per episode) naming main.coordinateBatch\n{report}"
    );
    let stall = stalls[0];
    assert_eq!(
        str_field(stall, "wait_reason"),
        Some(waitgroup_wait_reason(version)),
        "goroutine_stall wait_reason: {stall}\n{report}"
    );
    let blocked = u64_field(stall, "blocked_ns").unwrap_or(0);
    assert!(
        blocked >= SECOND,
        "blocked_ns {blocked} is under --stall-after 1s: {stall}\n{report}"
    );
    assert!(
        u64_field(stall, "goid").is_some_and(|g| g > 0),
        "goroutine_stall without goid: {stall}\n{report}"
    );
    assert!(
        stack_mentions(stall, "created_by", "main.main"),
        "coordinateBatch was started by main.main: {stall}\n{report}"
    );
}

fn waitgroup_skip_run(version: GoVersion, test: &str) {
    let Some(go) = toolchain(version, test) else {
        return;
    };
    let ws = Workspace::new("go-waitgroup-run");
    let bin = ws.build_go(&go, "patterns/waitgroup_skip.go", false);
    let run = observe_run(&ws, &[], "1s", &bin, &["4"]);
    let report = format!("{}\n{}", go.reported, run.report());

    assert_eq!(
        run.exit_code(),
        Some(0),
        "observer passes on status 0\n{report}"
    );
    assert_process_exit(&run, 0, &report);
    assert_waitgroup_stall(&run, version, &report);
}

/// The coordinator is already parked when observer attaches: it is found in the goroutine
/// table, not by a probe, and still reported.
fn waitgroup_skip_watch_after_park(version: GoVersion, test: &str) {
    let Some(go) = toolchain(version, test) else {
        return;
    };
    let ws = Workspace::new("go-waitgroup-watch");
    let bin = ws.build_go(&go, "patterns/waitgroup_skip.go", false);
    let target = Target::spawn(&bin, &["8"]);
    std::thread::sleep(Duration::from_millis(500));
    let run = ObserverCmd::watch(target.pid())
        .opt("--duration", "3s")
        .opt("--stall-after", "1s")
        .alerts(&ws)
        .run_to_end(&ws, TIMEOUT);
    let report = format!("{}\n{}", go.reported, run.report());

    assert_eq!(
        run.exit_code(),
        Some(0),
        "watch ends cleanly at --duration\n{report}"
    );
    assert!(
        target.exit_status().is_none(),
        "the target must outlive the watch (it runs 8s)\n{report}"
    );
    assert_waitgroup_stall(&run, version, &report);
    let stall = &run.of_kind("goroutine_stall")[0];
    assert_eq!(
        i64_field(stall, "pid"),
        Some(i64::from(target.pid())),
        "goroutine_stall pid: {stall}\n{report}"
    );
}

/// The Go program is exec'ed by the command observer started (`env X=1 prog`): the goroutine
/// probes follow it to the new program, as they do when it is started directly.
fn waitgroup_skip_run_through_env(version: GoVersion, test: &str) {
    waitgroup_skip_run_through(version, test, "/usr/bin/env", |bin| {
        vec!["X=1".into(), bin.into(), "4".into()]
    });
}

/// The same through a shell that execs the program.
fn waitgroup_skip_run_through_sh_exec(version: GoVersion, test: &str) {
    waitgroup_skip_run_through(version, test, "/bin/sh", |bin| {
        vec!["-c".into(), "exec \"$0\" 4".into(), bin.into()]
    });
}

/// `observer run -- LAUNCHER ARGS...` where the launcher execs the Go program (args names it).
fn waitgroup_skip_run_through(
    version: GoVersion,
    test: &str,
    launcher: &str,
    args: impl Fn(&str) -> Vec<String>,
) {
    let Some(go) = toolchain(version, test) else {
        return;
    };
    let ws = Workspace::new("go-waitgroup-exec");
    let bin = ws.build_go(&go, "patterns/waitgroup_skip.go", false);
    let args = args(bin.to_str().unwrap());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = observe_run(&ws, &[], "1s", Path::new(launcher), &args);
    let report = format!("{}\n{}", go.reported, run.report());

    assert_eq!(
        run.exit_code(),
        Some(0),
        "observer passes on status 0\n{report}"
    );
    assert_waitgroup_stall(&run, version, &report);
}

/// `watch` of a process that later execs a Go program (a launcher script).
fn waitgroup_skip_watch_across_exec(version: GoVersion, test: &str) {
    let Some(go) = toolchain(version, test) else {
        return;
    };
    let ws = Workspace::new("go-waitgroup-watch-exec");
    let bin = ws.build_go(&go, "patterns/waitgroup_skip.go", false);
    let bin_arg = bin.to_str().unwrap();
    let target = Target::spawn(
        Path::new("/bin/sh"),
        &["-c", "sleep 1.5; exec \"$0\" 8", bin_arg],
    );
    let run = ObserverCmd::watch(target.pid())
        .opt("--duration", "5s")
        .opt("--stall-after", "1s")
        .alerts(&ws)
        .run_to_end(&ws, TIMEOUT);
    let report = format!("{}\n{}", go.reported, run.report());

    assert_eq!(
        run.exit_code(),
        Some(0),
        "watch ends cleanly at --duration\n{report}"
    );
    assert!(
        target.exit_status().is_none(),
        "the target must outlive the watch (it runs 9.5 s)\n{report}"
    );
    assert_waitgroup_stall(&run, version, &report);
}

// ---------------------------------------------------------------------------------------------
// closed_channel.go: an unrecovered "send on closed channel" kills the process.

fn assert_closed_channel(run: &ObserverRun, report: &str) {
    assert_eq!(
        run.exit_code(),
        Some(2),
        "observer exits with the target's status 2\n{report}"
    );
    let exit = assert_process_exit(run, 2, report);
    assert!(
        str_field(&exit, "message").is_some_and(|m| m.contains("send on closed channel")),
        "process_exit message should carry the fatal panic text: {exit}\n{report}"
    );
    let panics: Vec<&Value> = run
        .of_kind("go_panic")
        .into_iter()
        .filter(|p| str_field(p, "message") == Some("send on closed channel"))
        .collect();
    assert_eq!(
        panics.len(),
        1,
        "expected one go_panic with message \"send on closed channel\"\n{report}"
    );
    let panic = panics[0];
    assert_eq!(
        panic.get("recovered"),
        Some(&Value::Bool(false)),
        "the panic killed the process, it was not recovered: {panic}\n{report}"
    );
    assert!(
        stack_mentions(panic, "stack", "main.produce"),
        "go_panic stack should name main.produce, the sender: {:?}\n{report}",
        frames(panic, "stack")
    );
}

fn closed_channel(version: GoVersion, test: &str) {
    let Some(go) = toolchain(version, test) else {
        return;
    };
    let ws = Workspace::new("go-closed-channel");
    let bin = ws.build_go(&go, "patterns/closed_channel.go", false);
    let run = observe_run(&ws, &[], "5s", &bin, &[]);
    let report = format!("{}\n{}", go.reported, run.report());
    assert_closed_channel(&run, &report);
}

// ---------------------------------------------------------------------------------------------
// select_leak.go: a goroutine per request that never returns.

fn select_leak(version: GoVersion, test: &str) {
    let Some(go) = toolchain(version, test) else {
        return;
    };
    let ws = Workspace::new("go-select-leak");
    let bin = ws.build_go(&go, "patterns/select_leak.go", false);
    let run = observe_run(&ws, &[], "5s", &bin, &["10"]);
    let report = format!("{}\n{}", go.reported, run.report());

    assert_eq!(
        run.exit_code(),
        Some(0),
        "observer passes on status 0\n{report}"
    );
    assert_process_exit(&run, 0, &report);
    let leak = run.of_kind("goroutine_leak").into_iter().find(|l| {
        stack_mentions(l, "created_by", "main.handleRequest")
            && stack_mentions(l, "stack", "main.fetchResult")
    });
    let Some(leak) = leak else {
        panic!(
            "no goroutine_leak with created_by naming main.handleRequest and stack naming \
             main.fetchResult\n{report}"
        );
    };
    let growth = u64_field(leak, "growth").unwrap_or(0);
    assert!(growth >= 10, "growth {growth} < 10: {leak}\n{report}");
    assert!(
        u64_field(leak, "count").unwrap_or(0) >= growth,
        "count must include the growth: {leak}\n{report}"
    );
}

// ---------------------------------------------------------------------------------------------
// mutex_slow_io.go: a mutex held across a 1.5s call; lookups wait behind it.

fn mutex_wait_reason(version: GoVersion) -> &'static str {
    match version {
        GoVersion::Go119 => "semacquire",
        GoVersion::Go127 => "sync.Mutex.Lock",
    }
}

fn assert_mutex_slow_io(run: &ObserverRun, version: GoVersion, report: &str) {
    assert_eq!(
        run.exit_code(),
        Some(0),
        "observer passes on status 0\n{report}"
    );
    assert_process_exit(run, 0, report);
    let waits = run.of_kind("goroutine_wait");
    for wait in &waits {
        let ns = u64_field(wait, "duration_ns").unwrap_or(0);
        assert!(
            ns >= 100 * MS,
            "a goroutine_wait under the 100ms threshold: {wait}\n{report}"
        );
    }
    // 1.19 names the deferred unlock main.refreshCache.func1, 1.27 main.refreshCache.deferwrap1;
    // both are main.refreshCache as a whole identifier path.
    let complete = waits.iter().find(|w| {
        let ns = u64_field(w, "duration_ns").unwrap_or(0);
        stack_mentions(w, "stack", "main.lookupCache")
            && stack_mentions(w, "waker_stack", "main.refreshCache")
            && (SECOND..=1800 * MS).contains(&ns)
    });
    let Some(wait) = complete else {
        panic!(
            "no goroutine_wait with stack naming main.lookupCache, waker_stack naming \
             main.refreshCache and duration_ns in [1.0s, 1.8s]\n{report}"
        );
    };
    assert_eq!(
        str_field(wait, "wait_reason"),
        Some(mutex_wait_reason(version)),
        "goroutine_wait wait_reason: {wait}\n{report}"
    );
    assert!(
        u64_field(wait, "waker_goid").is_some_and(|g| g > 0)
            && u64_field(wait, "waker_goid") != u64_field(wait, "goid"),
        "the waker is another goroutine: {wait}\n{report}"
    );
    let stall = run.of_kind("goroutine_stall").into_iter().find(|s| {
        stack_mentions(s, "stack", "main.lookupCache")
            && u64_field(s, "blocked_ns").unwrap_or(0) >= SECOND
    });
    assert!(
        stall.is_some(),
        "no goroutine_stall naming main.lookupCache with blocked_ns >= 1s\n{report}"
    );
    for kind in ["lock_hold", "stall", "deadlock"] {
        assert!(
            run.of_kind(kind).is_empty(),
            "Go futex waits are idle scheduler threads, not {kind}\n{report}"
        );
    }
}

fn mutex_slow_io(version: GoVersion, test: &str) {
    let Some(go) = toolchain(version, test) else {
        return;
    };
    let ws = Workspace::new("go-mutex-slow-io");
    let bin = ws.build_go(&go, "patterns/mutex_slow_io.go", false);
    let run = observe_run(&ws, &[], "1s", &bin, &["4"]);
    let report = format!("{}\n{}", go.reported, run.report());
    assert_mutex_slow_io(&run, version, &report);
}

// ---------------------------------------------------------------------------------------------
// idle_http.go: a healthy server; nothing to report.

fn idle_http_is_quiet(version: GoVersion, test: &str) {
    let Some(go) = toolchain(version, test) else {
        return;
    };
    let ws = Workspace::new("go-idle-http");
    let bin = ws.build_go(&go, "patterns/idle_http.go", false);
    let run = observe_run(&ws, &[], "5s", &bin, &["5"]);
    let report = format!("{}\n{}", go.reported, run.report());

    assert_eq!(
        run.exit_code(),
        Some(0),
        "observer passes on status 0\n{report}"
    );
    assert_process_exit(&run, 0, &report);
    let noise: Vec<&Value> = run
        .alerts
        .iter()
        .filter(|a| str_field(a, "kind") != Some("process_exit"))
        .collect();
    assert!(
        noise.is_empty(),
        "a healthy idle server must raise no alert besides process_exit; got {} others\n{report}",
        noise.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Stripped binaries (-ldflags=-s -w): no .symtab, no DWARF; frames are named from .gopclntab.

fn stripped_binaries(version: GoVersion, test: &str) {
    let Some(go) = toolchain(version, test) else {
        return;
    };
    let ws = Workspace::new("go-stripped");
    let mutex = ws.build_go(&go, "patterns/mutex_slow_io.go", true);
    let closed = ws.build_go(&go, "patterns/closed_channel.go", true);
    assert_stripped(&mutex);

    let run = observe_run(&ws, &[], "1s", &mutex, &["4"]);
    let report = format!("{} (stripped)\n{}", go.reported, run.report());
    assert_mutex_slow_io(&run, version, &report);

    let run = observe_run(&ws, &[], "5s", &closed, &[]);
    let report = format!("{} (stripped)\n{}", go.reported, run.report());
    assert_closed_channel(&run, &report);
}

/// Guards the test itself: a "stripped" build that still had a symbol table would prove nothing.
fn assert_stripped(binary: &Path) {
    let out = std::process::Command::new("readelf")
        .arg("-S")
        .arg(binary)
        .output();
    if let Ok(out) = out {
        let sections = String::from_utf8_lossy(&out.stdout);
        assert!(
            !sections.contains(".symtab") && !sections.contains(".debug_info"),
            "{} still has .symtab or DWARF:\n{sections}",
            binary.display()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// --no-go: the goroutine probes stay off.

fn no_go_flag(version: GoVersion, test: &str) {
    let Some(go) = toolchain(version, test) else {
        return;
    };
    let ws = Workspace::new("go-no-go");
    let bin = ws.build_go(&go, "patterns/mutex_slow_io.go", false);
    let run = observe_run(&ws, &["--no-go"], "1s", &bin, &["4"]);
    let report = format!("{}\n{}", go.reported, run.report());

    assert_eq!(
        run.exit_code(),
        Some(0),
        "observer passes on status 0\n{report}"
    );
    assert_process_exit(&run, 0, &report);
    assert!(
        goroutine_alerts(&run).is_empty() && run.of_kind("go_panic").is_empty(),
        "--no-go must attach no goroutine probes, yet goroutine alerts came\n{report}"
    );
    // Without the goroutine view, Go's parked scheduler threads are still idle futex waits.
    for kind in ["lock_hold", "stall", "deadlock"] {
        assert!(
            run.of_kind(kind).is_empty(),
            "Go futex waits are idle scheduler threads, not {kind} (also with --no-go)\n{report}"
        );
    }
}

/// --no-go also holds for a Go program the command execs: the exec re-evaluation attaches
/// nothing.
fn no_go_flag_across_exec(version: GoVersion, test: &str) {
    let Some(go) = toolchain(version, test) else {
        return;
    };
    let ws = Workspace::new("go-no-go-exec");
    let bin = ws.build_go(&go, "patterns/waitgroup_skip.go", false);
    let bin_arg = bin.to_str().unwrap();
    let run = observe_run(
        &ws,
        &["--no-go"],
        "1s",
        Path::new("/usr/bin/env"),
        &["X=1", bin_arg, "3"],
    );
    let report = format!("{}\n{}", go.reported, run.report());

    assert_eq!(run.exit_code(), Some(0), "{report}");
    assert!(
        goroutine_alerts(&run).is_empty() && !run.stderr.contains("goroutine probes attached"),
        "--no-go must attach no goroutine probes after an exec either\n{report}"
    );
}

// ---------------------------------------------------------------------------------------------
// observer goroutines: the dump, against the program's own net/http/pprof.

/// Goroutine ids of a debug=2 style dump ("goroutine 17 [chan receive]:").
fn dump_goids(text: &str) -> BTreeSet<u64> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("goroutine ")?;
            let (id, tail) = rest.split_once(' ')?;
            tail.starts_with('[').then(|| id.parse().ok()).flatten()
        })
        .collect()
}

/// GET http://addr/path with plain std, HTTP/1.0 so that the server closes when done.
fn http_get(addr: &str, path: &str) -> String {
    let mut stream =
        TcpStream::connect(addr).unwrap_or_else(|e| panic!("could not connect to {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set_read_timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("sending the request");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .unwrap_or_else(|e| panic!("reading http://{addr}{path}: {e}"));
    let response = String::from_utf8_lossy(&response).into_owned();
    assert!(
        response.starts_with("HTTP/1.") && response.contains(" 200 "),
        "http://{addr}{path} failed:\n{}",
        &response[..response.len().min(2000)]
    );
    response
}

/// Sizes of the groups of a debug=1 style dump whose frames name `function`.
fn group_counts_naming(text: &str, function: &str) -> Vec<u64> {
    text.split("\n\n")
        .filter(|group| group.contains(function))
        .filter_map(|group| {
            let header = group.lines().find(|l| l.contains(" @ "))?;
            header.split(' ').next()?.parse().ok()
        })
        .collect()
}

fn goroutines_dump(version: GoVersion, test: &str) {
    let Some(go) = toolchain(version, test) else {
        return;
    };
    let ws = Workspace::new("go-goroutines");
    let bin = ws.build_go(&go, "goroutines/main.go", false);
    let stdout = ws.path("target.stdout");
    let target = Target::spawn_with_stdout(&bin, &["1000"], &stdout);
    let mut addr = String::new();
    let listening = wait_until(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&stdout).unwrap_or_default();
        match text.lines().find_map(|l| l.strip_prefix("listening ")) {
            Some(a) => {
                addr = a.trim().to_string();
                true
            }
            None => false,
        }
    });
    assert!(listening, "{} never printed its port", bin.display());
    // The workers are created before the listener; give them a moment to park.
    std::thread::sleep(Duration::from_millis(300));
    let pid = target.pid().to_string();

    let dump = |extra: &[&str]| {
        let mut argv = vec!["goroutines", "--pid", pid.as_str()];
        argv.extend_from_slice(extra);
        let run = ObserverCmd::raw(&argv).run_to_end(&ws, TIMEOUT);
        assert_eq!(
            run.exit_code(),
            Some(0),
            "{} failed ({})\nstderr:\n{}",
            run.command,
            go.reported,
            run.stderr
        );
        run.stdout
    };

    // Text, like ?debug=2; then at once the runtime's own view.
    let text = dump(&[]);
    let pprof = http_get(&addr, "/debug/pprof/goroutine?debug=2");
    let short = &text[..text.len().min(3000)];
    for needle in ["goroutine 1 [", "main.leakyWorker", "main.lockedSection"] {
        assert!(
            text.contains(needle),
            "`observer goroutines` text lacks {needle:?} ({}):\n{short}",
            go.reported
        );
    }
    let ours = dump_goids(&text);
    let theirs = dump_goids(&pprof);
    let only_ours: Vec<&u64> = ours.difference(&theirs).collect();
    let only_theirs: Vec<&u64> = theirs.difference(&ours).collect();
    // The request itself wakes a few goroutines (connection, reader) that the earlier dump
    // could not have seen; anything more is a disagreement about the goroutine table.
    assert!(
        theirs.len() >= 1000 && only_ours.len() <= 3 && only_theirs.len() <= 3,
        "goroutine ids differ from /debug/pprof/goroutine?debug=2 ({}): observer {} ids, runtime {} ids; \
         only observer: {only_ours:?}; only runtime: {only_theirs:?}",
        go.reported,
        ours.len(),
        theirs.len()
    );

    // JSON.
    let json = dump(&["--json"]);
    let parsed: Value = serde_json::from_str(&json).unwrap_or_else(|e| {
        panic!(
            "`observer goroutines --json` is not JSON ({e}):\n{}",
            &json[..json.len().min(2000)]
        )
    });
    let goroutines = parsed.as_array().unwrap_or_else(|| {
        panic!(
            "--json output is not an array: {}",
            &json[..json.len().min(500)]
        )
    });
    assert!(
        goroutines.len() >= 1000,
        "--json lists {} goroutines, expected >= 1000",
        goroutines.len()
    );
    let leaky = goroutines
        .iter()
        .filter(|g| {
            g.get("frames").and_then(Value::as_array).is_some_and(|fs| {
                fs.iter()
                    .any(|f| str_field(f, "function") == Some("main.leakyWorker"))
            })
        })
        .count();
    assert!(
        leaky >= 1000,
        "--json has {leaky} goroutines with a main.leakyWorker frame, expected >= 1000"
    );

    // Grouped, like ?debug=1.
    let grouped = dump(&["--grouped"]);
    let counts = group_counts_naming(&grouped, "main.leakyWorker");
    assert!(
        grouped.lines().any(|l| l.starts_with("1000 @")) || counts.iter().any(|&c| c >= 1000),
        "--grouped has no group of >= 1000 main.leakyWorker goroutines (groups naming it: {counts:?}):\n{}",
        &grouped[..grouped.len().min(3000)]
    );
    drop(target);
}

#[test]
fn goroutines_refuses_a_program_that_is_not_go() {
    require_root();
    let ws = Workspace::new("go-not-go");
    let sleep = Target::spawn(Path::new("/bin/sleep"), &["30"]);
    let pid = sleep.pid().to_string();
    let run = ObserverCmd::raw(&["goroutines", "--pid", pid.as_str()]).run_to_end(&ws, TIMEOUT);
    assert!(
        run.exit_code().is_some_and(|c| c != 0),
        "`observer goroutines` on /bin/sleep must fail\n{}",
        run.report()
    );
    assert!(
        run.stderr.contains("not a Go program"),
        "the error should say \"not a Go program\"\n{}",
        run.report()
    );
}

/// A park-heavy program: the per-park goroutine probes are duty-cycled under the default
/// --go-probe-budget (and the user is told), the program's exit status still passes through,
/// a panic it recovers afterwards is still reported (the panic probes stay on whatever the
/// budget), and the summary says how the goroutine profile was sampled; with
/// `--go-probe-budget none` they stay on.
#[test]
fn go_probe_budget_duty_cycles_the_park_probes() {
    let Some(go) = toolchain(
        GoVersion::Go127,
        "go_probe_budget_duty_cycles_the_park_probes",
    ) else {
        return;
    };
    let ws = Workspace::new("go-park-budget");
    let binary = ws.build_go(&go, "patterns/pingpong.go", false);
    let budgeted = observe_run(&ws, &[], "5s", &binary, &["3", "panic"]);
    let report = budgeted.report();
    assert_eq!(budgeted.exit_code(), Some(0), "{report}");
    assert!(
        budgeted
            .stderr
            .contains("faster than --go-probe-budget allows: park probes on"),
        "a program parking >100k goroutines/s must get its park probes duty-cycled\n{report}"
    );
    assert!(
        budgeted
            .stderr
            .contains("of the time under --go-probe-budget, goroutine profile scaled up"),
        "the summary must say the goroutine profile was sampled and scaled\n{report}"
    );
    let panics = budgeted.of_kind("go_panic");
    assert!(
        panics.iter().any(|p| str_field(p, "message")
            .is_some_and(|m| m.contains("bad input after load"))
            && p.get("recovered").and_then(Value::as_bool) == Some(true)),
        "the panic recovered under load must still be a go_panic (recovered)\n{report}"
    );
    let unlimited = observe_run(&ws, &["--go-probe-budget", "none"], "5s", &binary, &["1"]);
    assert_eq!(unlimited.exit_code(), Some(0), "{}", unlimited.report());
    assert!(
        !unlimited.stderr.contains("park probes on"),
        "--go-probe-budget none must keep them on\n{}",
        unlimited.report()
    );
}

/// With the per-park probes duty-cycled (a park rate far over --go-probe-budget), a goroutine
/// blocked 3 s on a sync.Mutex is still found, from snapshots of the process's memory: one
/// goroutine_stall naming the waiting function, and one goroutine_wait when the wait ends.
#[test]
fn goroutine_stalls_are_found_from_memory_when_the_park_probes_are_off() {
    let Some(go) = toolchain(
        GoVersion::Go127,
        "goroutine_stalls_are_found_from_memory_when_the_park_probes_are_off",
    ) else {
        return;
    };
    let ws = Workspace::new("go-snapshot-stall");
    let binary = ws.build_go(&go, "patterns/pingpong.go", false);
    let run = observe_run(&ws, &[], "1s", &binary, &["6", "stall"]);
    let report = run.report();
    assert_eq!(run.exit_code(), Some(0), "{report}");
    assert!(
        run.stderr.contains("park probes on"),
        "the budget must have duty-cycled the park probes first\n{report}"
    );
    let stalls: Vec<&Value> = run
        .of_kind("goroutine_stall")
        .into_iter()
        .filter(|s| stack_mentions(s, "stack", "main.lookupIndex"))
        .collect();
    assert_eq!(
        stalls.len(),
        1,
        "one goroutine_stall naming main.lookupIndex (once per episode)\n{report}"
    );
    assert_eq!(
        str_field(stalls[0], "wait_reason"),
        Some("sync.Mutex.Lock"),
        "{report}"
    );
    let blocked = u64_field(stalls[0], "blocked_ns").unwrap_or(0);
    assert!(
        blocked >= SECOND,
        "blocked_ns {blocked} under --stall-after\n{report}"
    );
    // Nothing saw holdIndexLock take the lock (it never released it while watched): the
    // goroutine sleeping inside it is named as the likely holder, from the code.
    assert!(
        stack_mentions(stalls[0], "likely_holder_stack", "main.holdIndexLock")
            && str_field(stalls[0], "likely_holder_why")
                .is_some_and(|why| why.contains("main.indexLock")),
        "the stall must name holdIndexLock as the likely holder of main.indexLock\n{report}"
    );
    let waits: Vec<&Value> = run
        .of_kind("goroutine_wait")
        .into_iter()
        .filter(|w| stack_mentions(w, "stack", "main.lookupIndex"))
        .collect();
    assert_eq!(waits.len(), 1, "one goroutine_wait when it ended\n{report}");
    let d = u64_field(waits[0], "duration_ns").unwrap_or(0);
    assert!(
        (2 * SECOND..=4 * SECOND).contains(&d),
        "the wait lasted ~3 s (lower bound from snapshots): {d}\n{report}"
    );
}

/// A busy net/http service (thousands of requests/s, 32 keep-alive clients) with incidents
/// from its third second on: the per-park probes are duty-cycled under the default budget,
/// and recovered panics, long sync.Mutex waits and a goroutine leak keep being reported
/// (panics from the probes, which stay on; waits and leaks from probes and snapshots).
#[test]
fn a_busy_http_service_keeps_being_observed_under_the_budget() {
    let Some(go) = toolchain(
        GoVersion::Go127,
        "a_busy_http_service_keeps_being_observed_under_the_budget",
    ) else {
        return;
    };
    let ws = Workspace::new("go-busy-http");
    let binary = ws.build_go(&go, "patterns/busyhttp.go", false);
    let run = observe_run(
        &ws,
        &[],
        "1s",
        &binary,
        &["bench", "-seconds", "8", "-incidents"],
    );
    let report = run.report();
    assert_eq!(run.exit_code(), Some(0), "{report}");
    assert!(
        run.stderr.contains("faster than --go-probe-budget allows"),
        "a service at thousands of requests/s must get its park probes duty-cycled\n{report}"
    );
    let recovered = run
        .of_kind("go_panic")
        .into_iter()
        .filter(|p| {
            str_field(p, "message").is_some_and(|m| m.contains("empty record in parseRecord"))
                && p.get("recovered").and_then(Value::as_bool) == Some(true)
        })
        .count();
    assert!(
        recovered >= 3,
        "recovered panics keep being reported under load (one per 1,000 requests): {recovered}\n{report}"
    );
    assert!(
        run.of_kind("goroutine_wait")
            .iter()
            .chain(run.of_kind("goroutine_stall").iter())
            .any(|w| stack_mentions(w, "stack", "main.lookupIndex")
                && str_field(w, "wait_reason") == Some("sync.Mutex.Lock")),
        "the 300 ms holds of the index lock must show as goroutine waits in lookupIndex\n{report}"
    );
    // The probes are off most of the time, so the release is rarely seen: the goroutine
    // sleeping under the lock must be named anyway, as the likely holder.
    assert!(
        run.of_kind("goroutine_wait").iter().any(|w| {
            stack_mentions(w, "stack", "main.lookupIndex")
                && (stack_mentions(w, "waker_stack", "main.rebuildIndexSlowly")
                    || (stack_mentions(w, "likely_holder_stack", "main.rebuildIndexSlowly")
                        && str_field(w, "likely_holder_why")
                            .is_some_and(|why| why.contains("main.indexLock"))))
        }),
        "a 300 ms hold must name rebuildIndexSlowly, the function sleeping under the lock\n{report}"
    );
    assert!(
        run.of_kind("goroutine_leak").iter().any(|l| stack_mentions(
            l,
            "created_by",
            "main.handler"
        )),
        "the steady leak of watchers created by main.handler must be a goroutine_leak\n{report}"
    );
}

/// With every probe on, the 300 ms holds of the busy service's index lock are one
/// goroutine_wait each, however many of its 32 clients queued behind it, and each names the
/// function that held the lock (the releaser's stack).
#[test]
fn goroutine_waits_behind_one_hold_are_one_alert_naming_the_holder() {
    let Some(go) = toolchain(
        GoVersion::Go127,
        "goroutine_waits_behind_one_hold_are_one_alert_naming_the_holder",
    ) else {
        return;
    };
    let ws = Workspace::new("go-hold-episodes");
    let binary = ws.build_go(&go, "patterns/busyhttp.go", false);
    let run = observe_run(
        &ws,
        &["--go-probe-budget", "none"],
        "5s",
        &binary,
        &["bench", "-seconds", "5", "-incidents"],
    );
    let report = run.report();
    assert_eq!(run.exit_code(), Some(0), "{report}");
    let holds: Vec<&Value> = run
        .of_kind("goroutine_wait")
        .into_iter()
        .filter(|w| stack_mentions(w, "stack", "main.lookupIndex"))
        .collect();
    assert!(
        !holds.is_empty(),
        "the index lock holds must be reported\n{report}"
    );
    let grouped = holds
        .iter()
        .filter(|w| u64_field(w, "waiters").is_some_and(|n| n >= 2))
        .count();
    assert!(
        grouped * 2 >= holds.len(),
        "most holds queue several clients and must be one alert each: {grouped} of {}\n{report}",
        holds.len()
    );
    let waiters: u64 = holds.iter().filter_map(|w| u64_field(w, "waiters")).sum();
    assert!(
        waiters > holds.len() as u64,
        "{waiters} waits in {} alerts: not one per waiter\n{report}",
        holds.len()
    );
    assert!(
        holds
            .iter()
            .any(|w| stack_mentions(w, "waker_stack", "main.rebuildIndexSlowly")),
        "the releaser's stack must name the function that held the lock\n{report}"
    );
}

/// The sidecar's wait histogram counts goroutine waits exactly: pingpong.go's hundreds of
/// thousands of channel parks a second (summed and binned in the kernel) in the 1 ms bucket,
/// its 3 s mutex wait and 3 s sleep (events) between 2.5 s and 5 s; _count is
/// observer_waits_total.
#[test]
fn goroutine_waits_fill_the_wait_histogram() {
    let Some(go) = toolchain(GoVersion::Go127, "goroutine_waits_fill_the_wait_histogram") else {
        return;
    };
    let ws = Workspace::new("go-histogram");
    let binary = ws.build_go(&go, "patterns/pingpong.go", false);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let name = binary.file_name().unwrap().to_string_lossy().into_owned();
    let _observer = ObserverCmd::raw(&["sidecar", "--quiet", "--go-probe-budget", "none"])
        .opt("--comm", &format!("^{}$", &name[..name.len().min(15)]))
        .opt("--metrics-addr", &addr)
        .spawn(&ws);
    std::thread::sleep(Duration::from_millis(1500));
    let target = Target::spawn(&binary, &["30", "stall"]);
    let pid = target.pid();
    let comm = name[..name.len().min(15)].to_string();
    let series = |suffix: &str, le: Option<&str>| {
        let le = le.map(|l| format!(",le=\"{l}\"")).unwrap_or_default();
        format!(
            "observer_wait_duration_seconds{suffix}{{pid=\"{pid}\",comm=\"{comm}\",kind=\"goroutine\"{le}}}"
        )
    };
    let value = |body: &str, series: &str| -> Option<f64> {
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    };
    let mut body = String::new();
    let filled = wait_until(TIMEOUT, || {
        if let Some(b) = std::net::TcpStream::connect(&addr)
            .ok()
            .map(|_| http_get(&addr, "/metrics"))
        {
            body = b;
        }
        let short = value(&body, &series("_bucket", Some("0.001"))).unwrap_or(0.0);
        let to5 = value(&body, &series("_bucket", Some("5"))).unwrap_or(0.0)
            - value(&body, &series("_bucket", Some("2.5"))).unwrap_or(0.0);
        short >= 10_000.0 && to5 >= 2.0
    });
    assert!(
        filled,
        "no 10,000 goroutine waits <= 1ms and two of 3s in the histogram for pid {pid}:\n{}",
        body.lines()
            .filter(|l| l.contains(&format!("pid=\"{pid}\"")))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let total = format!("observer_waits_total{{pid=\"{pid}\",comm=\"{comm}\",kind=\"goroutine\"}}");
    assert_eq!(
        value(&body, &series("_count", None)),
        value(&body, &total),
        "{body}"
    );
}
