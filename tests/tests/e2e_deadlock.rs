//! Deadlocks: observer attached with `watch` finds the AB/BA cycle and the stalled threads.

use std::thread;
use std::time::Duration;

use observer_tests::{
    i64_field, require_root, stack_mentions, str_field, u64_field, wait_until, FramePointers,
    ObserverCmd, ObserverRun, Target, Value, Workspace, MS,
};

const TIMEOUT: Duration = Duration::from_secs(30);

struct Threads {
    alice: i64,
    bob: i64,
}

/// deadlock.c: "alice" takes lock_a then lock_b, "bob" lock_b then lock_a, 100ms apart.
/// `start_delay_ms` delays the transfers; `attach_after` is how long the test waits to attach.
fn deadlock(fp: FramePointers, start_delay_ms: u32, attach_after: Duration) {
    require_root();
    let ws = Workspace::new("deadlock");
    let binary = ws.build_target("deadlock", fp);
    let target = Target::spawn(&binary, &[start_delay_ms.to_string()]);

    // Thread ids straight from /proc, to check observer's against.
    assert!(
        wait_until(Duration::from_secs(5), || {
            !target.tids_named("alice").is_empty() && !target.tids_named("bob").is_empty()
        }),
        "deadlock target did not start threads alice and bob"
    );
    let threads = Threads {
        alice: i64::from(target.tids_named("alice")[0]),
        bob: i64::from(target.tids_named("bob")[0]),
    };
    thread::sleep(attach_after);
    assert!(
        target.exit_status().is_none(),
        "the deadlock target exited on its own"
    );

    let run = ObserverCmd::watch(target.pid())
        .opt("--duration", "4s")
        .opt("--stall-after", "1s")
        .alerts(&ws)
        .run_to_end(&ws, TIMEOUT);
    assert_eq!(run.exit_code(), Some(0), "{}", run.report());
    check_cycle(&run, &target, &threads);
    check_stalls(&run, &threads);
}

fn check_cycle(run: &ObserverRun, target: &Target, threads: &Threads) {
    let report = run.report();
    let deadlocks = run.of_kind("deadlock");
    assert!(!deadlocks.is_empty(), "no deadlock alert\n{report}");
    let found = deadlocks.iter().any(|alert| {
        let members: Vec<&Value> = alert
            .get("cycle")
            .and_then(Value::as_array)
            .map(|c| c.iter().collect())
            .unwrap_or_default();
        let member = |comm: &str| {
            members
                .iter()
                .copied()
                .find(|m| str_field(m, "comm") == Some(comm))
        };
        let (Some(alice), Some(bob)) = (member("alice"), member("bob")) else {
            return false;
        };
        members.len() == 2
            && u64_field(alert, "pid") == Some(u64::from(target.pid()))
            && i64_field(alice, "tid") == Some(threads.alice)
            && i64_field(bob, "tid") == Some(threads.bob)
            // Each waits for a lock the other one owns: that is what makes it a cycle.
            && i64_field(alice, "owner_tid") == Some(threads.bob)
            && i64_field(bob, "owner_tid") == Some(threads.alice)
            && alice.get("uaddr") != bob.get("uaddr")
            && stack_mentions(alice, "stack", "transfer_a_to_b")
            && stack_mentions(bob, "stack", "transfer_b_to_a")
    });
    assert!(
        found,
        "no deadlock alert whose cycle is alice (tid {}, in transfer_a_to_b, waiting for bob) and \
         bob (tid {}, in transfer_b_to_a, waiting for alice)\n{report}",
        threads.alice, threads.bob
    );
}

fn check_stalls(run: &ObserverRun, threads: &Threads) {
    let report = run.report();
    let stalls = run.of_kind("stall");
    for (comm, tid, owner, function) in [
        ("alice", threads.alice, threads.bob, "transfer_a_to_b"),
        ("bob", threads.bob, threads.alice, "transfer_b_to_a"),
    ] {
        let ok = stalls.iter().any(|s| {
            str_field(s, "comm") == Some(comm)
                && i64_field(s, "tid") == Some(tid)
                // --stall-after 1s, with a little room for clock granularity.
                && u64_field(s, "blocked_ns").is_some_and(|ns| ns >= 900 * MS)
                && i64_field(s, "owner_tid") == Some(owner)
                && stack_mentions(s, "stack", function)
        });
        assert!(
            ok,
            "no stall alert for {comm} (tid {tid}, blocked >= 1s in {function}, owner_tid {owner})\n{report}"
        );
    }
}

/// The deadlock forms ~1.6s after start, while observer is already attached.
#[test]
fn deadlock_forming_while_watched_without_frame_pointers() {
    deadlock(FramePointers::Omit, 1500, Duration::ZERO);
}

#[test]
fn deadlock_forming_while_watched_with_frame_pointers() {
    deadlock(FramePointers::Keep, 1500, Duration::ZERO);
}

/// The usual case in production: attaching to a process that is already stuck.
#[test]
fn deadlock_already_formed_without_frame_pointers() {
    deadlock(FramePointers::Omit, 0, Duration::from_millis(500));
}

#[test]
fn deadlock_already_formed_with_frame_pointers() {
    deadlock(FramePointers::Keep, 0, Duration::from_millis(500));
}
