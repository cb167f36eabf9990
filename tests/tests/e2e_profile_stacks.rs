//! Short lock waits of every kind in code built without frame pointers (Debian's glibc, a Rust
//! release binary) are in the folded profile under full stacks that name the waiter's function,
//! below the lock's slow path and labelled with the lock's kind; their total stays the kernel's
//! sum.
//!
//! `--threshold 10s` makes every wait of these targets (~300 ms each) a short one: summed in the
//! kernel per frame-pointer stack id, which stops inside glibc or Rust's std, and shared among
//! the sampled, unwound stacks.

use std::fs;
use std::path::Path;
use std::time::Duration;

use observer_tests::{
    require_root, rust_locks, FramePointers, ObserverCmd, ObserverRun, Workspace, MS,
};

const TIMEOUT: Duration = Duration::from_secs(60);
const SECONDS: &str = "5";

fn run_short(ws: &Workspace, binary: &Path, args: &[&str]) -> (String, ObserverRun) {
    let folded = ws.path("blocked.folded");
    let run = ObserverCmd::run()
        .opt("--threshold", "10s")
        .opt("--stall-after", "10s")
        .opt("--folded", folded.to_str().unwrap())
        .alerts(ws)
        .command(binary, args)
        .run_to_end(ws, TIMEOUT);
    (fs::read_to_string(&folded).unwrap_or_default(), run)
}

/// Blocked time of the folded lines where `waiter_fn` is a caller of one of `slow_path`
/// (root to leaf) and that carry `label` at the leaf.
fn waits_in(text: &str, waiter_fn: &str, slow_path: &[&str], label: &str) -> u64 {
    text.lines()
        .filter_map(|l| {
            let (stack, ns) = l.rsplit_once(' ')?;
            let frames: Vec<&str> = stack.split(';').collect();
            let waiter = frames.iter().position(|f| f.contains(waiter_fn))?;
            let slow = frames
                .iter()
                .rposition(|f| slow_path.iter().any(|s| f.contains(s)))?;
            (waiter < slow && frames.last() == Some(&label))
                .then(|| ns.parse::<u64>().ok())
                .flatten()
        })
        .sum()
}

/// Three workers wait ~300 ms for each of ~7 holds: seconds of waits, and never more than
/// three threads' whole run.
fn check_total(blocked: u64, text: &str, report: &str) {
    assert!(
        (1000 * MS..=15_000 * MS).contains(&blocked),
        "the folded profile has {blocked} ns of short lock waits in the waiter's function under \
         the lock's slow path, expected 1s..15s:\n{text}\n{report}"
    );
}

/// Rust std Mutex in a release binary: `worker_update` -> `Mutex::lock_contended` -> futex.
#[test]
fn rust_std_mutex_short_waits_have_full_stacks() {
    require_root();
    let ws = Workspace::new("profile_rust_mutex");
    let binary = rust_locks();
    let (text, run) = run_short(&ws, &binary, &["std-mutex", SECONDS]);
    let blocked = waits_in(
        &text,
        "worker_update",
        &["lock_contended", "futex_wait"],
        "[lock: rust std Mutex]",
    );
    check_total(blocked, &text, &run.report());
}

/// glibc mutex (Debian's glibc has no frame pointers), target at -O2 without frame pointers:
/// `worker_update` -> `pthread_mutex_lock` -> `__lll_lock_wait`.
#[test]
fn glibc_mutex_short_waits_have_full_stacks() {
    require_root();
    let ws = Workspace::new("profile_tailcall_hold");
    let binary = ws.build_target_as(
        "tailcall_hold",
        &["-O2", "-fomit-frame-pointer"],
        ws.path("tailcall_hold"),
    );
    let (text, run) = run_short(&ws, &binary, &[SECONDS]);
    let blocked = waits_in(
        &text,
        "worker_update",
        &["__lll_lock_wait", "pthread_mutex_lock"],
        "[lock: pthread_mutex]",
    );
    check_total(blocked, &text, &run.report());
}

/// pthread rwlock readers waiting for a writer: `reader_lookup` -> `pthread_rwlock_rdlock`.
#[test]
fn pthread_rwlock_short_waits_have_full_stacks() {
    require_root();
    let ws = Workspace::new("profile_rwlock_hold");
    let binary = ws.build_target("rwlock_hold", FramePointers::Omit);
    let (text, run) = run_short(&ws, &binary, &[SECONDS]);
    let blocked = waits_in(
        &text,
        "reader_lookup",
        &["pthread_rwlock_rdlock"],
        "[lock: pthread_rwlock (read)]",
    );
    check_total(blocked, &text, &run.report());
}

/// parking_lot parks on a per-thread futex: `worker_update_pl` -> `RawMutex::lock_slow`.
#[test]
fn parking_lot_short_waits_have_full_stacks() {
    require_root();
    let ws = Workspace::new("profile_parking_lot");
    let binary = rust_locks();
    let (text, run) = run_short(&ws, &binary, &["parking-lot", SECONDS]);
    let blocked = waits_in(
        &text,
        "worker_update_pl",
        &["lock_slow"],
        "[lock: parking_lot Mutex]",
    );
    check_total(blocked, &text, &run.report());
}

/// C++ std::shared_mutex readers (`read_cache`) and std::mutex waiters (`bump_stats`) in one
/// process, each under its lock's slow path and kind.
#[test]
fn cpp_shared_mutex_and_mutex_short_waits_have_full_stacks() {
    require_root();
    let ws = Workspace::new("profile_shared_mutex");
    let binary = ws.build_cpp_target("shared_mutex_hold");
    let (text, run) = run_short(&ws, &binary, &[SECONDS]);
    let report = run.report();
    let readers = waits_in(
        &text,
        "read_cache",
        &["pthread_rwlock_rdlock"],
        "[lock: pthread_rwlock (read)]",
    );
    check_total(readers, &text, &report);
    let counters = waits_in(
        &text,
        "bump_stats",
        &["pthread_mutex_lock", "__lll_lock_wait"],
        "[lock: pthread_mutex]",
    );
    check_total(counters, &text, &report);
}
