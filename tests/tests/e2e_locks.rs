//! Lock waits: a lock held too long is reported with both sides, and idle waits are not.

use std::time::Duration;

use observer_tests::{
    frame_index, i64_field, require_root, stack_mentions, str_field, u64_field, FramePointers,
    ObserverCmd, Value, Workspace, MS,
};

const TIMEOUT: Duration = Duration::from_secs(30);

/// lock_hold.c: "maintenance" holds table_lock ~300ms every ~1s while "worker" waits for it.
fn lock_hold(fp: FramePointers) {
    require_root();
    let ws = Workspace::new("lock_hold");
    let target = ws.build_target("lock_hold", fp);
    let run = ObserverCmd::run()
        .opt("--threshold", "100ms")
        .alerts(&ws)
        .command(&target, &["5"])
        .run_to_end(&ws, TIMEOUT);
    let report = run.report();

    assert_eq!(
        run.exit_code(),
        Some(0),
        "observer run must pass on the target's status\n{report}"
    );
    let waits = run.of_kind("lock_wait");
    for wait in &waits {
        let ns = u64_field(wait, "duration_ns").unwrap_or(0);
        assert!(
            ns >= 100 * MS,
            "a lock_wait below the 100ms threshold: {wait}\n{report}"
        );
    }
    let worker_waits: Vec<&&Value> = waits
        .iter()
        .filter(|w| str_field(w, "comm") == Some("worker"))
        .collect();
    // Five seconds give four or five compactions; attaching may cost the first one.
    assert!(
        worker_waits.len() >= 2,
        "expected at least 2 lock_wait alerts for thread \"worker\"\n{report}"
    );

    let complete = worker_waits.iter().find(|w| {
        let ns = u64_field(w, "duration_ns").unwrap_or(0);
        stack_mentions(w, "stack", "worker_update")
            && stack_mentions(w, "waker_stack", "maintenance_compact")
            && str_field(w, "waker_comm") == Some("maintenance")
            && (150 * MS..=450 * MS).contains(&ns)
    });
    let Some(wait) = complete else {
        panic!(
            "no lock_wait with stack naming worker_update, waker_stack naming maintenance_compact, \
             waker_comm \"maintenance\" and duration_ns in [150ms, 450ms]\n{report}"
        );
    };
    // The lock's owner when the worker blocked is the thread that later released it.
    assert_eq!(
        i64_field(wait, "owner_tid"),
        i64_field(wait, "waker_tid"),
        "owner_tid and waker_tid should both be maintenance's tid: {wait}"
    );
    assert!(
        i64_field(wait, "waker_tid").is_some_and(|t| t > 0),
        "no waker_tid: {wait}"
    );
    // Innermost first: the function that took the lock is inside its caller.
    if let Some(caller) = frame_index(wait, "stack", "worker_main") {
        assert!(
            frame_index(wait, "stack", "worker_update") < Some(caller),
            "stack is not innermost first: {wait}"
        );
    }
    assert!(
        run.of_kind("deadlock").is_empty(),
        "a lock held too long is not a deadlock\n{report}"
    );
}

#[test]
fn lock_hold_without_frame_pointers() {
    lock_hold(FramePointers::Omit);
}

#[test]
fn lock_hold_with_frame_pointers() {
    lock_hold(FramePointers::Keep);
}

/// idle_condvar.c: threads idle on a condition variable and in nanosleep for 3s.
fn idle_condvar(fp: FramePointers) {
    require_root();
    let ws = Workspace::new("idle_condvar");
    let target = ws.build_target("idle_condvar", fp);
    let run = ObserverCmd::run()
        .opt("--threshold", "100ms")
        .opt("--stall-after", "1s")
        .alerts(&ws)
        .command(&target, &["3"])
        .run_to_end(&ws, TIMEOUT);
    let report = run.report();

    assert_eq!(run.exit_code(), Some(0), "{report}");
    for kind in ["lock_wait", "stall", "deadlock", "thread_exit"] {
        assert!(
            run.of_kind(kind).is_empty(),
            "an idle process must raise no {kind} alert\n{report}"
        );
    }
    // Proof that observer was watching at all: an empty file would pass the checks above.
    let exits = run.of_kind("process_exit");
    assert!(
        exits.iter().any(|e| i64_field(e, "exit_code") == Some(0)),
        "expected a process_exit alert with exit_code 0\n{report}"
    );
}

#[test]
fn idle_condvar_without_frame_pointers() {
    idle_condvar(FramePointers::Omit);
}

#[test]
fn idle_condvar_with_frame_pointers() {
    idle_condvar(FramePointers::Keep);
}
