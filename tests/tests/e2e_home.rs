//! Stalls away from home: an idle-class wait at a place where the thread does not wait while
//! healthy, past --stall-after, is a `stall` with `stall_on: "away_from_home"` naming the
//! waiting code, and its end a `stall_end` naming who woke it; waits at home never alert.

use std::time::Duration;

use observer_tests::{
    i64_field, printed_tid, require_root, stack_mentions, str_field, u64_field, FramePointers,
    ObserverCmd, Value, Workspace, MS,
};

const TIMEOUT: Duration = Duration::from_secs(60);

/// The alerts of thread `tid` whose stack names `function` (one worker may take both
/// requests).
fn of_wait<'a>(alerts: &[&'a Value], tid: u32, function: &str) -> Vec<&'a Value> {
    alerts
        .iter()
        .copied()
        .filter(|a| i64_field(a, "tid") == Some(i64::from(tid)))
        .filter(|a| stack_mentions(a, "stack", function))
        .collect()
}

/// away_stall.c (timeline in the file): a worker pool at home on its queue for 8 s, a request
/// waiting 3.5 s on an application lock built on a condition variable (held by main, re-waiting
/// every second), a request sleeping 3 s in do_slow_export(), then 4 s of idle pool.
fn away_stall(fp: FramePointers) {
    require_root();
    let ws = Workspace::new("away_stall");
    let target = ws.build_target("away_stall", fp);
    let run = ObserverCmd::run()
        .opt("--stall-after", "1s")
        .alerts(&ws)
        .command(&target, &[] as &[&str])
        .run_to_end(&ws, TIMEOUT);
    let report = run.report();
    assert_eq!(run.exit_code(), Some(0), "{report}");
    let main = printed_tid(&run.stderr, "main").expect("no main tid printed");
    let locked = printed_tid(&run.stderr, "locked").expect("no locked tid printed");
    let export = printed_tid(&run.stderr, "export").expect("no export tid printed");

    let stalls = run.of_kind("stall");
    let away: Vec<&Value> = stalls
        .iter()
        .copied()
        .filter(|s| str_field(s, "stall_on") == Some("away_from_home"))
        .collect();
    // The healthy phase, the pool idle at home and main pacing at home raise nothing: the
    // two requests are the only stalls, once each (the lock wait re-waited 3 times).
    assert_eq!(
        away.len(),
        2,
        "expected exactly the two away-from-home stalls (locked tid {locked}, export tid {export})\n{report}"
    );

    let lock_stall = of_wait(&away, locked, "app_lock_acquire");
    assert_eq!(lock_stall.len(), 1, "one stall for the lock wait\n{report}");
    let s = lock_stall[0];
    assert_eq!(str_field(s, "comm"), Some("worker"), "{s}");
    assert_eq!(str_field(s, "syscall"), Some("futex"), "{s}");
    assert!(u64_field(s, "blocked_ns").unwrap_or(0) >= 1000 * MS, "{s}");
    assert!(
        stack_mentions(s, "stack", "app_lock_acquire"),
        "the stall names the waiting code: {s}"
    );
    assert!(
        stack_mentions(s, "home_stack", "next_job"),
        "its home is the pool's queue: {s}"
    );

    let ends = run.of_kind("stall_end");
    let lock_end = of_wait(&ends, locked, "app_lock_acquire");
    assert_eq!(
        lock_end.len(),
        1,
        "one stall_end for the lock wait\n{report}"
    );
    let e = lock_end[0];
    assert_eq!(str_field(e, "woken_by"), Some("thread"), "{e}");
    assert_eq!(i64_field(e, "waker_tid"), Some(i64::from(main)), "{e}");
    assert!(
        stack_mentions(e, "waker_stack", "app_lock_release"),
        "the releaser's stack names the release: {e}"
    );
    assert!(stack_mentions(e, "stack", "app_lock_acquire"), "{e}");
    let total = u64_field(e, "blocked_ns").unwrap_or(0);
    assert!(
        (3000 * MS..5000 * MS).contains(&total),
        "blocked_ns covers the whole wait, re-waits included (~3.5 s): {e}"
    );

    let sleep_stall = of_wait(&away, export, "do_slow_export");
    assert_eq!(
        sleep_stall.len(),
        1,
        "one stall for the sleep, naming do_slow_export\n{report}"
    );
    assert_eq!(
        str_field(sleep_stall[0], "syscall"),
        Some("clock_nanosleep")
    );
    let sleep_end = of_wait(&ends, export, "do_slow_export");
    assert_eq!(sleep_end.len(), 1, "{report}");
    assert_eq!(
        str_field(sleep_end[0], "woken_by"),
        Some("timer_or_signal"),
        "{}",
        sleep_end[0]
    );
    assert!(sleep_end[0].get("waker_tid").is_some_and(Value::is_null));
}

#[test]
fn away_stall_without_frame_pointers() {
    away_stall(FramePointers::Omit);
}
