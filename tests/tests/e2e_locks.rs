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
    let holds = run.of_kind("lock_hold");
    for hold in &holds {
        let longest = u64_field(hold, "longest_wait_ns").unwrap_or(0);
        assert!(
            longest >= 100 * MS,
            "a lock_hold whose longest wait is below the 100ms threshold: {hold}\n{report}"
        );
        // One worker waits behind each hold: one waiter, one stack, every wait counted.
        assert_eq!(u64_field(hold, "waiters"), Some(1), "{hold}\n{report}");
        assert_eq!(u64_field(hold, "total_wait_ns"), Some(longest), "{hold}");
        assert_eq!(u64_field(hold, "waiter_stacks_omitted"), Some(0), "{hold}");
        assert!(
            u64_field(hold, "hold_ns").is_some_and(|h| h >= longest),
            "the hold lasted at least as long as its longest wait: {hold}"
        );
    }
    let worker_holds: Vec<&&Value> = holds
        .iter()
        .filter(|w| str_field(w, "comm") == Some("worker"))
        .collect();
    // Five seconds give four or five compactions; attaching may cost the first one.
    assert!(
        (2..=6).contains(&worker_holds.len()),
        "expected one lock_hold alert per compaction (2 to 6) for thread \"worker\"\n{report}"
    );

    let complete = worker_holds.iter().find(|w| {
        let ns = u64_field(w, "longest_wait_ns").unwrap_or(0);
        stack_mentions(w, "stack", "worker_update")
            && stack_mentions(w, "release_stack", "maintenance_compact")
            && str_field(w, "release_comm") == Some("maintenance")
            && str_field(w, "holder_comm") == Some("maintenance")
            && (150 * MS..=450 * MS).contains(&ns)
    });
    let Some(hold) = complete else {
        panic!(
            "no lock_hold with stack naming worker_update, release_stack naming \
             maintenance_compact, holder and releaser \"maintenance\" and the longest wait in \
             [150ms, 450ms]\n{report}"
        );
    };
    // The lock's owner when the worker blocked is the thread that later released it.
    assert_eq!(
        str_field(hold, "holder_known_from"),
        Some("owner"),
        "{hold}"
    );
    assert_eq!(hold["owner_recorded"], true, "{hold}");
    assert_eq!(
        i64_field(hold, "holder_tid"),
        i64_field(hold, "release_tid"),
        "holder_tid and release_tid should both be maintenance's tid: {hold}"
    );
    assert!(
        i64_field(hold, "holder_tid").is_some_and(|t| t > 0),
        "no holder_tid: {hold}"
    );
    assert!(str_field(hold, "lock_kind").is_some(), "{hold}");
    assert!(
        str_field(hold, "uaddr").is_some_and(|a| a.starts_with("0x")),
        "{hold}"
    );
    assert!(str_field(hold, "holder_state").is_some(), "{hold}");
    // The one waiter stack is the worker's.
    let stacks = hold["waiter_stacks"].as_array().expect("waiter_stacks");
    assert_eq!(stacks.len(), 1, "{hold}");
    assert!(
        stack_mentions(&stacks[0], "stack", "worker_update"),
        "{hold}"
    );
    assert_eq!(u64_field(&stacks[0], "count"), Some(1), "{hold}");
    assert_eq!(str_field(&stacks[0], "comm"), Some("worker"), "{hold}");
    // Innermost first: the function that took the lock is inside its caller.
    if let Some(caller) = frame_index(hold, "stack", "worker_main") {
        assert!(
            frame_index(hold, "stack", "worker_update") < Some(caller),
            "stack is not innermost first: {hold}"
        );
    }
    assert!(
        run.stderr.contains("lock holds: ") && run.stderr.contains("waits behind them"),
        "the summary does not count the holds\n{report}"
    );
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

/// hold_waiters.c: "maintenance" holds table_lock ~300ms every ~1s while two "writer" threads
/// (writer_update) and one "reader" (reader_lookup) wait behind it: one alert per hold, not
/// one per waiter, with the three waiters and their two distinct stacks inside.
#[test]
fn one_alert_per_hold_with_every_waiter_inside() {
    require_root();
    let ws = Workspace::new("hold_waiters");
    let target = ws.build_target("hold_waiters", FramePointers::Omit);
    let run = ObserverCmd::run()
        .opt("--threshold", "100ms")
        .alerts(&ws)
        .command(&target, &["5"])
        .run_to_end(&ws, TIMEOUT);
    let report = run.report();
    assert_eq!(run.exit_code(), Some(0), "{report}");

    let holds = run.of_kind("lock_hold");
    // Five seconds hold the lock five times (at 0.7s, 1.7s, ...); one alert per waiter would
    // be three times as many.
    assert!(
        (2..=6).contains(&holds.len()),
        "expected one lock_hold per hold (2 to 6), got {}\n{report}",
        holds.len()
    );
    let full: Vec<&&Value> = holds
        .iter()
        .filter(|h| u64_field(h, "waiters") == Some(3))
        .collect();
    assert!(
        full.len() >= 2,
        "expected at least 2 holds with all 3 threads waiting behind them\n{report}"
    );
    for hold in full {
        assert_eq!(
            str_field(hold, "holder_comm"),
            Some("maintenance"),
            "{hold}"
        );
        assert!(
            stack_mentions(hold, "release_stack", "maintenance_compact"),
            "{hold}"
        );
        let stacks = hold["waiter_stacks"].as_array().expect("waiter_stacks");
        let count_of = |function: &str| -> u64 {
            stacks
                .iter()
                .filter(|s| stack_mentions(s, "stack", function))
                .map(|s| u64_field(s, "count").unwrap_or(0))
                .sum()
        };
        assert_eq!(
            (
                stacks.len(),
                count_of("writer_update"),
                count_of("reader_lookup")
            ),
            (2, 2, 1),
            "two distinct waiter stacks, most frequent first: {hold}"
        );
        assert!(
            stack_mentions(&stacks[0], "stack", "writer_update"),
            "{hold}"
        );
        // The top-level stack is the waiter that waited longest.
        assert!(
            stack_mentions(hold, "stack", "writer_update")
                || stack_mentions(hold, "stack", "reader_lookup"),
            "{hold}"
        );
        let longest = u64_field(hold, "longest_wait_ns").unwrap_or(0);
        let total = u64_field(hold, "total_wait_ns").unwrap_or(0);
        assert!(
            longest >= 100 * MS && total >= longest + 200 * MS,
            "three waits of ~300ms: {hold}"
        );
    }
    assert!(
        run.stderr
            .contains(&format!("lock holds: {} (one alert each)", holds.len())),
        "the summary counts the holds\n{report}"
    );
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
    for kind in ["lock_hold", "stall", "deadlock", "thread_exit"] {
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
