//! The waiter's stack of every wait, whoever ends it: a timer (sleep, poll timeout, timed
//! condition variable), or a signal sent by another process. The kernel can copy a waiter's
//! stack only from its own address space, so these waits used to show the frame-pointer walk
//! taken when they began: in code without frame pointers one or two frames of libc, or text
//! read as return addresses.

use std::{path::PathBuf, process::Command, time::Duration};

use observer_tests::{
    frames, printed_tid, require_root, stack_mentions, u64_field, ObserverCmd, ObserverRun, Value,
    Workspace, MS,
};

const TIMEOUT: Duration = Duration::from_secs(60);
const ROUNDS: u64 = 3;

/// Compiles `targets/<name>.c` as distributions build release code: -O2, no frame pointers.
fn build_o2_nofp(ws: &Workspace, name: &str) -> PathBuf {
    ws.build_target_as(name, &["-O2", "-fomit-frame-pointer"], ws.path(name))
}

/// (thread name, function that waits in it) of nofp_waits.c. (The child process that sends the
/// signal is not watched: `run` watches the command's process only.)
const WAITS: [(&str, &str); 6] = [
    ("exporter", "do_slow_export"),
    ("reader", "poll_timeout_in_reader"),
    ("acker", "wait_for_ack"),
    ("reloader", "wait_for_reload"),
    ("poller", "epoll_timeout_in_loop"),
    ("spawner", "spawn_and_wait"),
];

/// Whether a frame names code or is one of observer's own labels (`[sleep]`, `[poll]`,
/// `[frame pointers only]`, ...): anything but an address shown as a frame.
fn is_junk(frame: &str) -> bool {
    frame.starts_with("[unknown]") || frame.starts_with("[not code]")
}

/// With `--report-idle --threshold 100ms`, every 300 ms wait is an `idle_wait` alert whose
/// stack names the function that waited, unwound to the thread's start, and no alert has a
/// frame that is an address outside code. The folded and pprof profiles of the same run have
/// no such frame either, and put each wait's time under its function.
#[test]
fn waits_ended_by_timers_and_other_processes_name_the_waiting_function() {
    require_root();
    let ws = Workspace::new("wait-stacks");
    let target = build_o2_nofp(&ws, "nofp_waits");
    let (folded, pprof) = (ws.path("waits.folded"), ws.path("waits.pb.gz"));
    let run = ObserverCmd::run()
        .flag("--no-live")
        .flag("--report-idle")
        .opt("--threshold", "100ms")
        .opt("--folded", folded.to_str().unwrap())
        .opt("--pprof", pprof.to_str().unwrap())
        .alerts(&ws)
        .command(&target, &[ROUNDS.to_string()])
        .run_to_end(&ws, TIMEOUT);
    check_alerts(&run, ROUNDS, 300, 0);

    // The folded profile: no junk, and each wait's time under its function.
    let text = std::fs::read_to_string(&folded).expect("folded file written");
    for line in text.lines() {
        let (stack, _) = line.rsplit_once(' ').expect("`stack weight` line");
        assert!(
            !stack.split(';').any(is_junk),
            "junk frame in the folded profile: {line}"
        );
    }
    // The ticker's short sleeps keep their frame-pointer stack, which must not take the
    // callback its %rbp points at for a caller: code, but not after a call. (The address is
    // the callback's entry; looked up one byte earlier, as a return address is, it named the
    // padding's function, `frame_dummy`.)
    let ticker: Vec<&str> = text
        .lines()
        // Sleeps are idle time: under the profile's `[idle]` root.
        .filter(|l| {
            l.trim_start_matches("[idle];")
                .starts_with("nofp_waits;ticker;")
                && l.contains("[sleep]")
        })
        .collect();
    assert!(
        !ticker.is_empty(),
        "no sleeps of the ticker in the profile:\n{text}"
    );
    let real = [
        "__GI___clock_nanosleep",
        "__GI___nanosleep",
        "tick_with_callback",
        "run ",
        "start_thread",
        "clone3",
        "[",
    ];
    for line in ticker {
        let (stack, _) = line.rsplit_once(' ').expect("`stack weight` line");
        let stack = stack.trim_start_matches("[idle];");
        for frame in stack.split(';').skip(2) {
            assert!(
                real.iter().any(|r| frame.starts_with(r)),
                "{frame}: not a caller of the ticker's sleep: {line}"
            );
        }
    }
    for (thread, function) in WAITS {
        let under: u64 = text
            .lines()
            .filter(|l| l.contains(function))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
            .sum();
        assert!(
            under >= ROUNDS * 250 * MS,
            "{thread}: only {under} ns under {function} in the folded profile:\n{text}"
        );
    }

    // The pprof profile, as `go tool pprof` reads it.
    let Some(go) = which("go") else {
        eprintln!("SKIPPED (loudly): `go` is not on PATH; `cargo xtask setup` installs it. pprof file not checked");
        return;
    };
    let out = Command::new(&go)
        .args(["tool", "pprof", "-traces", pprof.to_str().unwrap()])
        .output()
        .expect("go tool pprof runs");
    let traces = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "go tool pprof -traces failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (_, function) in WAITS {
        assert!(
            traces.contains(function),
            "pprof has no {function}:\n{traces}"
        );
    }
    assert!(
        !traces.lines().any(|l| is_junk(l.trim())),
        "junk frame in the pprof profile:\n{traces}"
    );
}

/// Waits just over the threshold (150 ms, threshold 100 ms) get their stacks too: the
/// in-flight table is read for snapshots every quarter of the threshold while it is small, so
/// each wait is seen between half the threshold and its end. (With the 200 ms scans alone,
/// about half of these waits would end unseen and keep their frame-pointer stack.)
#[test]
fn waits_just_over_the_threshold_name_the_waiting_function() {
    require_root();
    let ws = Workspace::new("wait-stacks-short");
    let target = build_o2_nofp(&ws, "nofp_waits");
    let rounds = 6;
    let run = ObserverCmd::run()
        .flag("--no-live")
        .flag("--report-idle")
        .opt("--threshold", "100ms")
        .alerts(&ws)
        .command(&target, &[rounds.to_string(), "150".to_string()])
        .run_to_end(&ws, TIMEOUT);
    // A wait of 150 ms is seen by the snapshot thread if it runs at least once in the wait's
    // last 100 ms: on a loaded machine a few may keep their (marked) frame-pointer stack.
    check_alerts(&run, rounds, 150, rounds * WAITS.len() as u64 / 6);
}

/// The alerts of a run of nofp_waits: no frame of any alert is an address outside code, and
/// each of the `rounds` waits of `ms` of each thread is an `idle_wait` whose stack names its
/// function and goes down to the thread's start, but for at most `max_partial` whose stack
/// says it is the frame-pointer stack (`[frame pointers only]`).
fn check_alerts(run: &ObserverRun, rounds: u64, ms: u64, max_partial: u64) {
    let mut partial = 0;
    let report = run.report();
    assert_eq!(run.exit_code(), Some(0), "{report}");
    for alert in &run.alerts {
        for_each_stack(alert, &mut |field, stack| {
            assert!(
                !stack.iter().any(|f| is_junk(f)),
                "an address that is not code shown as a frame in {field}: {alert}\n{report}"
            );
        });
    }
    let idle = run.of_kind("idle_wait");
    for (thread, function) in WAITS {
        // By tid: a thread's name is read when its alert is made, and a loaded machine may
        // make that after the process is gone.
        let tid = printed_tid(&run.stdout, thread)
            .unwrap_or_else(|| panic!("the target printed no tid for {thread}:\n{report}"));
        let waits: Vec<&&Value> = idle
            .iter()
            .filter(|a| {
                u64_field(a, "tid") == Some(u64::from(tid))
                    && u64_field(a, "duration_ns").is_some_and(|d| d >= ms * 8 / 10 * MS)
            })
            .collect();
        assert!(
            waits.len() as u64 >= rounds,
            "{thread}: {} waits of {ms} ms reported, expected {rounds}:\n{report}",
            waits.len()
        );
        for a in waits {
            let stack = frames(a, "stack");
            if partial < max_partial && stack.last() == Some(&"[frame pointers only]") {
                eprintln!("NOTE: {thread}: a wait kept its frame-pointer stack: {stack:?}");
                partial += 1;
                continue;
            }
            assert!(
                stack_mentions(a, "stack", function),
                "{thread}: the stack does not name {function}: {stack:?}\n{report}"
            );
            // Unwound to where the thread began, not cut short.
            assert!(
                stack.iter().any(|f| f.starts_with("start_thread")),
                "{thread}: the stack of {function} is cut short: {stack:?}\n{report}"
            );
            assert!(
                !stack.iter().any(|f| f.starts_with('[')),
                "{thread}: {stack:?}\n{report}"
            );
        }
    }
}

/// Calls `f` with every stack (array of frame strings) in `alert`, at any depth, and its path.
fn for_each_stack(v: &Value, f: &mut dyn FnMut(&str, Vec<&str>)) {
    fn walk(path: &str, v: &Value, f: &mut dyn FnMut(&str, Vec<&str>)) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    walk(&format!("{path}.{k}"), v, f);
                }
            }
            Value::Array(items) => {
                if items.iter().all(Value::is_string) {
                    f(path, items.iter().filter_map(Value::as_str).collect());
                } else {
                    for (i, v) in items.iter().enumerate() {
                        walk(&format!("{path}.{i}"), v, f);
                    }
                }
            }
            _ => {}
        }
    }
    walk("", v, f);
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| PathBuf::from(dir).join(name))
        .find(|p| p.is_file())
}
