//! The holder's side of a long hold: what the thread that holds a contended lock does while
//! others wait for it (blocked in a syscall, or running), reported in the `stall` alert.

use std::time::Duration;

use observer_tests::{
    bpfmaps, require_root, stack_mentions, str_field, u64_field, wait_until, FramePointers,
    ObserverCmd, ObserverRun, Value, Workspace,
};

const TIMEOUT: Duration = Duration::from_secs(30);

fn observe(ws: &Workspace, target: &std::path::Path) -> ObserverRun {
    ObserverCmd::run()
        .opt("--threshold", "100ms")
        .opt("--stall-after", "500ms")
        .alerts(ws)
        .command(target, &["2"])
        .run_to_end(ws, TIMEOUT)
}

/// Stalls of the "worker" threads on a lock whose owner is known.
fn worker_stalls(run: &ObserverRun) -> Vec<&Value> {
    run.of_kind("stall")
        .into_iter()
        .filter(|s| str_field(s, "comm") == Some("worker") && u64_field(s, "owner_tid").is_some())
        .collect()
}

/// holder_read.c: "holder" keeps cache_lock across a read() of a pipe nobody writes to for
/// 2 s, in refresh_from_disk(); two workers wait for the lock.
#[test]
fn a_holder_blocked_in_read_is_named_with_its_syscall_and_function() {
    require_root();
    let ws = Workspace::new("holder_read");
    let target = ws.build_target("holder_read", FramePointers::Omit);
    let run = observe(&ws, &target);
    let report = run.report();
    assert_eq!(run.exit_code(), Some(0), "observer run failed\n{report}");
    let stalls = worker_stalls(&run);
    assert!(
        !stalls.is_empty(),
        "no stall of a worker on the held lock\n{report}"
    );
    let named = stalls.iter().find(|s| {
        str_field(s, "holder_state") == Some("blocked")
            && str_field(s, "holder_syscall") == Some("read")
            && stack_mentions(s, "holder_stack", "refresh_from_disk")
    });
    assert!(
        named.is_some(),
        "no stall says the holder was blocked in read() in refresh_from_disk \
         (holder_state \"blocked\", holder_syscall \"read\", holder_stack naming \
         refresh_from_disk)\n{report}"
    );
}

/// holder_busy.c (-O2, the unlock a tail call): "holder" keeps index_lock 2 s while it
/// computes in rebuild_index(); two workers wait for the lock.
#[test]
fn a_running_holder_is_sampled_in_the_function_that_holds_the_lock() {
    require_root();
    let ws = Workspace::new("holder_busy");
    let target = ws.build_target_as(
        "holder_busy",
        &["-O2", "-fomit-frame-pointer"],
        ws.path("holder_busy-O2"),
    );
    let run = observe(&ws, &target);
    let report = run.report();
    assert_eq!(run.exit_code(), Some(0), "observer run failed\n{report}");
    let stalls = worker_stalls(&run);
    assert!(
        !stalls.is_empty(),
        "no stall of a worker on the held lock\n{report}"
    );
    let named = stalls.iter().find(|s| {
        str_field(s, "holder_state") == Some("running")
            && u64_field(s, "holder_samples").is_some_and(|n| n > 0)
            && stack_mentions(s, "holder_stack", "rebuild_index")
    });
    assert!(
        named.is_some(),
        "no stall says the holder was running in rebuild_index (holder_state \"running\", \
         holder_samples > 0, holder_stack naming rebuild_index)\n{report}"
    );
    // Nothing claims it was blocked: it never left the CPU while holding the lock.
    assert!(
        stalls
            .iter()
            .all(|s| str_field(s, "holder_state") != Some("blocked")),
        "a stall says the computing holder was blocked\n{report}"
    );
}

/// The sampler costs more than a failed lookup only while a hold is going on: the holder is in
/// the kernel's `HOLDERS` map while workers wait for it, and out of it once they stop.
#[test]
fn a_holder_is_sampled_only_while_others_wait_for_it() {
    require_root();
    let ws = Workspace::new("holder_sampled");
    let target = ws.build_target_as(
        "holder_busy",
        &["-O2", "-fomit-frame-pointer"],
        ws.path("holder_busy-O2"),
    );
    // One 2 s hold, then 4 s of uncontended work before the target exits.
    let observer = ObserverCmd::run()
        .opt("--threshold", "100ms")
        .alerts(&ws)
        .command(&target, &["1", "4"])
        .spawn(&ws);
    let holders = || bpfmaps::u32_keys_of_map(observer.pid(), "HOLDERS");
    let mut seen = Vec::new();
    let sampled = wait_until(Duration::from_secs(4), || {
        seen = holders().unwrap_or_default();
        !seen.is_empty()
    });
    assert!(
        sampled,
        "the holder never entered HOLDERS during its 2 s hold\n{}",
        observer.stderr_so_far()
    );
    assert_eq!(seen.len(), 1, "one holder, not {seen:?}");
    let released = wait_until(Duration::from_secs(4), || {
        holders().is_some_and(|k| k.is_empty())
    });
    assert!(
        released,
        "the holder stayed in HOLDERS after the hold ended: {:?}",
        holders()
    );
    let run = observer.wait(TIMEOUT);
    assert_eq!(
        run.exit_code(),
        Some(0),
        "observer run failed\n{}",
        run.report()
    );
}
