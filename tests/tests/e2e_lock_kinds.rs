//! Every lock kind a real program uses: a long hold is one `lock_hold` alert per hold episode
//! that names the lock kind, the waiter's function and the holder's function, whatever library
//! implements the lock (glibc mutex, also held across a blocking read, rwlock and semaphore, C++ std::mutex and std::shared_mutex,
//! Rust std Mutex/RwLock/OnceLock, parking_lot); the waits are in the folded profile; a deadlock
//! through an rwlock and a mutex is a `deadlock`; idle condition-variable and channel pools raise
//! nothing.

use std::fs;
use std::path::Path;
use std::thread;
use std::time::Duration;

use observer_tests::{
    frames, i64_field, printed_tid, require_root, rust_locks, stack_mentions, str_field, u64_field,
    wait_until, FramePointers, ObserverCmd, ObserverRun, Target, Value, Workspace, MS,
};

const TIMEOUT: Duration = Duration::from_secs(60);
/// Every target holds its lock ~300 ms about once a second; the runs last this long.
const SECONDS: &str = "5";

/// What one target's long holds must look like in the alerts.
struct Hold<'a> {
    /// Accepted `lock_kind` values (one lock can be waited for in several modes).
    kinds: &'a [&'a str],
    /// Whether this kind records its holder in the lock (glibc mutexes and rwlock writers).
    owner_recorded: bool,
    /// The function the waiters take the lock in (in `stack` and `waiter_stacks`).
    waiter_fn: &'a str,
    /// The function that holds the lock (in `holder_stack` or `release_stack`).
    holder_fn: &'a str,
    /// The holder's thread name, and the label it printed its tid under.
    holder_comm: &'a str,
    /// How long the holder keeps the lock.
    hold: Duration,
    /// Complete episodes the run must report (attaching may cost the first hold).
    min_episodes: usize,
    /// The most holds the run can contain: one alert per hold, never one per waiter.
    max_episodes: usize,
}

fn lock_holds<'r>(run: &'r ObserverRun, kinds: &[&str]) -> Vec<&'r Value> {
    run.of_kind("lock_hold")
        .into_iter()
        .filter(|a| str_field(a, "lock_kind").is_some_and(|k| kinds.contains(&k)))
        .collect()
}

/// Whether an episode alert is complete and consistent: waiter and holder named, several
/// waiters, the hold's length close to the target's, the per-stack counts adding up.
fn complete_episode(alert: &Value, hold: &Hold, holder_tid: u32) -> bool {
    let held = u64_field(alert, "hold_ns").unwrap_or(0);
    let hold_ms = hold.hold.as_millis() as u64;
    let waiters = u64_field(alert, "waiters").unwrap_or(0);
    let stacks: Vec<&Value> = alert
        .get("waiter_stacks")
        .and_then(Value::as_array)
        .map(|s| s.iter().collect())
        .unwrap_or_default();
    let counted: u64 = stacks
        .iter()
        .filter_map(|s| u64_field(s, "count"))
        .sum::<u64>()
        + u64_field(alert, "waiter_stacks_omitted").unwrap_or(0);
    stack_mentions(alert, "stack", hold.waiter_fn)
        && (stack_mentions(alert, "holder_stack", hold.holder_fn)
            || stack_mentions(alert, "release_stack", hold.holder_fn))
        && i64_field(alert, "holder_tid") == Some(i64::from(holder_tid))
        && str_field(alert, "holder_comm") == Some(hold.holder_comm)
        && waiters >= 2
        && counted == waiters
        && stacks
            .iter()
            .any(|s| stack_mentions(s, "stack", hold.waiter_fn))
        // A lower bound of the hold: the waiters arrive within a few ms of its start.
        && (hold_ms / 2 * MS..=hold_ms * 3 / 2 * MS).contains(&held)
        // Waiters woken one after the other can end a little after the hold did.
        && u64_field(alert, "longest_wait_ns").is_some_and(|ns| ns >= 100 * MS && ns <= 2 * held)
        && u64_field(alert, "total_wait_ns").is_some_and(|ns| ns >= 2 * 100 * MS)
        && alert.get("owner_recorded").and_then(Value::as_bool) == Some(hold.owner_recorded)
        && str_field(alert, "holder_known_from")
            == Some(if hold.owner_recorded { "owner" } else { "releaser" })
}

/// The checks every long-hold target shares; returns the complete episodes.
fn check_holds<'r>(run: &'r ObserverRun, hold: &Hold) -> Vec<&'r Value> {
    let report = run.report();
    assert_eq!(run.exit_code(), Some(0), "{report}");
    assert!(
        run.of_kind("lock_wait").is_empty(),
        "lock_hold replaces the per-waiter lock_wait alerts\n{report}"
    );
    assert!(
        run.of_kind("deadlock").is_empty(),
        "a lock held too long is not a deadlock\n{report}"
    );
    let holder_tid = printed_tid(&run.stderr, hold.holder_comm)
        .unwrap_or_else(|| panic!("the target printed no {} tid\n{report}", hold.holder_comm));
    let holds = lock_holds(run, hold.kinds);
    for alert in &holds {
        assert!(
            u64_field(alert, "hold_ns").is_some() && str_field(alert, "uaddr").is_some(),
            "a lock_hold without hold_ns or uaddr: {alert}\n{report}"
        );
    }
    // Three waiters per hold: per-waiter alerts would be three times as many.
    assert!(
        holds.len() <= hold.max_episodes,
        "{} lock_hold alerts of kind {:?} for at most {} holds: one alert per hold episode\n{report}",
        holds.len(),
        hold.kinds,
        hold.max_episodes
    );
    let complete: Vec<&Value> = holds
        .iter()
        .copied()
        .filter(|a| complete_episode(a, hold, holder_tid))
        .collect();
    assert!(
        complete.len() >= hold.min_episodes,
        "expected at least {} lock_hold alerts with lock_kind in {:?}, stack naming {}, \
         holder_stack or release_stack naming {}, holder {} (tid {holder_tid}), waiters >= 2 \
         (counted in waiter_stacks), hold_ns near {:?}, owner_recorded {}\n{report}",
        hold.min_episodes,
        hold.kinds,
        hold.waiter_fn,
        hold.holder_fn,
        hold.holder_comm,
        hold.hold,
        hold.owner_recorded
    );
    complete
}

/// The folded profile has the waits, in the waiter's function, for at least one hold's worth.
fn check_folded(folded: &Path, waiter_fn: &str, report: &str) {
    let text = fs::read_to_string(folded).unwrap_or_default();
    let blocked: u64 = text
        .lines()
        .filter(|l| l.contains(waiter_fn))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum();
    assert!(
        blocked >= 200 * MS,
        "the folded profile has {blocked} ns of waits in {waiter_fn}, expected >= 200ms:\n{text}\n{report}"
    );
}

fn run_target(ws: &Workspace, binary: &Path, args: &[&str]) -> ObserverRun {
    let folded = ws.path("blocked.folded");
    ObserverCmd::run()
        .opt("--threshold", "100ms")
        .opt("--folded", folded.to_str().unwrap())
        .alerts(ws)
        .command(binary, args)
        .run_to_end(ws, TIMEOUT)
}

/// rwlock_hold.c: "rebuilder" holds a pthread_rwlock for writing ~300 ms in rebuild_table();
/// three readers wait in reader_lookup(). glibc records the writer in the lock.
#[test]
fn pthread_rwlock_writer_hold() {
    require_root();
    let ws = Workspace::new("rwlock_hold");
    let binary = ws.build_target("rwlock_hold", FramePointers::Omit);
    let run = run_target(&ws, &binary, &[SECONDS]);
    check_holds(
        &run,
        &Hold {
            kinds: &["pthread_rwlock (read)"],
            owner_recorded: true,
            waiter_fn: "reader_lookup",
            holder_fn: "rebuild_table",
            holder_comm: "rebuilder",
            hold: Duration::from_millis(300),
            min_episodes: 2,
            max_episodes: 6,
        },
    );
    check_folded(&ws.path("blocked.folded"), "reader_lookup", &run.report());
}

/// tailcall_hold.c at -O2: rebuild_index() ends in `jmp pthread_mutex_unlock`, so the releaser's
/// stack has its caller and not it: only the holder's own stack, taken while it held the lock,
/// can name rebuild_index().
#[test]
fn glibc_mutex_hold_with_tail_call_unlock() {
    require_root();
    let ws = Workspace::new("tailcall_hold");
    let binary = ws.build_target_as(
        "tailcall_hold",
        &["-O2", "-fomit-frame-pointer"],
        ws.path("tailcall_hold"),
    );
    assert_unlock_is_tail_call(&binary, "rebuild_index");
    let run = run_target(&ws, &binary, &[SECONDS]);
    let report = run.report();
    let hold = Hold {
        kinds: &["pthread_mutex"],
        owner_recorded: true,
        waiter_fn: "worker_update",
        holder_fn: "rebuild_index",
        holder_comm: "maintainer",
        hold: Duration::from_millis(300),
        min_episodes: 2,
        max_episodes: 6,
    };
    let complete = check_holds(&run, &hold);
    // The holder sleeps while it holds the lock: blocked, in rebuild_index.
    assert!(
        complete.iter().any(|a| {
            stack_mentions(a, "holder_stack", "rebuild_index")
                && str_field(a, "holder_state") == Some("blocked")
        }),
        "no lock_hold whose holder_stack names rebuild_index with holder_state \"blocked\"\n{report}"
    );
}

/// The test is only meaningful if the compiler really made the unlock a jump.
fn assert_unlock_is_tail_call(binary: &Path, function: &str) {
    let out = std::process::Command::new("objdump")
        .args(["-d", "--no-show-raw-insn"])
        .arg(binary)
        .output()
        .expect("could not run objdump (binutils)");
    let text = String::from_utf8_lossy(&out.stdout);
    let body: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.ends_with(&format!("<{function}>:")))
        .take_while(|l| !l.trim().is_empty())
        .collect();
    assert!(
        body.iter()
            .any(|l| l.contains("jmp") && l.contains("<pthread_mutex_unlock")),
        "{function} does not end in a jump to pthread_mutex_unlock:\n{}",
        body.join("\n")
    );
}

/// mutex_read_hold.c: "refresher" holds a glibc mutex while blocked in read() in
/// refresh_from_disk(); the alert says what the holder did meanwhile: blocked, in read, there.
#[test]
fn glibc_mutex_held_across_blocking_read() {
    require_root();
    let ws = Workspace::new("mutex_read_hold");
    let binary = ws.build_target("mutex_read_hold", FramePointers::Omit);
    let run = run_target(&ws, &binary, &[SECONDS]);
    let report = run.report();
    let complete = check_holds(
        &run,
        &Hold {
            kinds: &["pthread_mutex"],
            owner_recorded: true,
            waiter_fn: "lookup_config",
            holder_fn: "refresh_from_disk",
            holder_comm: "refresher",
            hold: Duration::from_millis(300),
            min_episodes: 2,
            max_episodes: 6,
        },
    );
    assert!(
        complete.iter().any(|a| {
            str_field(a, "holder_state") == Some("blocked")
                && str_field(a, "holder_syscall") == Some("read")
                && stack_mentions(a, "holder_stack", "refresh_from_disk")
        }),
        "no lock_hold whose holder was blocked in read (holder_state \"blocked\", holder_syscall \
         \"read\", holder_stack naming refresh_from_disk)\n{report}"
    );
}

/// sem_hold.c: a semaphore used as a lock, held ~300 ms in flush_journal(); it records no owner.
#[test]
fn semaphore_hold() {
    require_root();
    let ws = Workspace::new("sem_hold");
    let binary = ws.build_target("sem_hold", FramePointers::Omit);
    let run = run_target(&ws, &binary, &[SECONDS]);
    check_holds(
        &run,
        &Hold {
            kinds: &["semaphore"],
            owner_recorded: false,
            waiter_fn: "append_record",
            holder_fn: "flush_journal",
            holder_comm: "flusher",
            hold: Duration::from_millis(300),
            min_episodes: 2,
            max_episodes: 6,
        },
    );
}

/// shared_mutex_hold.cpp: std::shared_mutex held exclusively in rebuild_cache() while readers
/// wait with std::shared_lock in read_cache(), and std::mutex held in rebuild_stats() while
/// bump_stats() waits; both in one process, told apart by kind.
#[test]
fn cpp_shared_mutex_and_mutex_holds() {
    require_root();
    let ws = Workspace::new("shared_mutex_hold");
    let binary = ws.build_cpp_target("shared_mutex_hold");
    let run = run_target(&ws, &binary, &[SECONDS]);
    check_holds(
        &run,
        &Hold {
            kinds: &["pthread_rwlock (read)"],
            owner_recorded: true,
            waiter_fn: "read_cache",
            holder_fn: "rebuild_cache",
            holder_comm: "cache-writer",
            hold: Duration::from_millis(300),
            min_episodes: 2,
            max_episodes: 6,
        },
    );
    // Two counters wait on the std::mutex.
    check_holds(
        &run,
        &Hold {
            kinds: &["pthread_mutex"],
            owner_recorded: true,
            waiter_fn: "bump_stats",
            holder_fn: "rebuild_stats",
            holder_comm: "stats-flusher",
            hold: Duration::from_millis(300),
            min_episodes: 2,
            max_episodes: 6,
        },
    );
    let report = run.report();
    check_folded(&ws.path("blocked.folded"), "read_cache", &report);
    check_folded(&ws.path("blocked.folded"), "bump_stats", &report);
}

/// One mode of rustprogs/locks (release build without debug info) under `observer run`.
fn rust_hold(mode: &str, hold: &Hold) {
    require_root();
    let ws = Workspace::new(mode);
    let run = run_target(&ws, &rust_locks(), &[mode, SECONDS]);
    check_holds(&run, hold);
    check_folded(&ws.path("blocked.folded"), hold.waiter_fn, &run.report());
}

#[test]
fn rust_std_mutex_hold() {
    rust_hold(
        "std-mutex",
        &Hold {
            kinds: &["rust std Mutex"],
            owner_recorded: false,
            waiter_fn: "worker_update",
            holder_fn: "rebuild_index",
            holder_comm: "maintainer",
            hold: Duration::from_millis(300),
            min_episodes: 2,
            max_episodes: 6,
        },
    );
}

#[test]
fn rust_std_rwlock_writer_hold() {
    rust_hold(
        "std-rwlock",
        &Hold {
            kinds: &["rust std RwLock (read)"],
            owner_recorded: false,
            waiter_fn: "reader_lookup",
            holder_fn: "rebuild_table",
            holder_comm: "writer",
            hold: Duration::from_millis(300),
            min_episodes: 2,
            max_episodes: 6,
        },
    );
}

/// parking_lot parks each waiter on its own per-thread futex: the lock is known only from the
/// call site, and the episode must still gather the waiters of one hold.
#[test]
fn parking_lot_mutex_hold() {
    rust_hold(
        "parking-lot",
        &Hold {
            kinds: &["parking_lot Mutex"],
            owner_recorded: false,
            waiter_fn: "worker_update_pl",
            holder_fn: "rebuild_index_pl",
            holder_comm: "maintainer",
            hold: Duration::from_millis(300),
            min_episodes: 2,
            max_episodes: 6,
        },
    );
}

/// A OnceLock whose initializer runs ~1 s (load_config) while three threads wait for it
/// (read_config): one hold, once.
#[test]
fn rust_oncelock_initialization_wait() {
    rust_hold(
        "oncelock",
        &Hold {
            kinds: &["rust std Once/OnceLock"],
            owner_recorded: false,
            waiter_fn: "read_config",
            holder_fn: "load_config",
            holder_comm: "initializer",
            hold: Duration::from_millis(900),
            min_episodes: 1,
            max_episodes: 1,
        },
    );
}

/// An idle pool under `observer run` with a short stall threshold: only its exit is reported.
/// A second run with `--report-idle` proves the waits were seen, long, and classed idle: threads
/// named with each prefix in `idle_comms` have idle waits over the threshold, and still no lock
/// alert. (By thread name: idle waits keep only the frames a frame-pointer walk gives.)
fn idle_pool(label: &str, binary: &Path, args: &[&str], idle_comms: &[&str]) {
    let observe = |report_idle: bool| {
        // Each run its own workspace: its own alerts file.
        let ws = Workspace::new(label);
        let mut cmd = ObserverCmd::run()
            .opt("--threshold", "100ms")
            .opt("--stall-after", "1s");
        if report_idle {
            cmd = cmd.flag("--report-idle");
        }
        cmd.alerts(&ws)
            .command(binary, args)
            .run_to_end(&ws, TIMEOUT)
    };
    let run = observe(false);
    let report = run.report();
    assert_eq!(run.exit_code(), Some(0), "{report}");
    let raised: Vec<&Value> = run
        .alerts
        .iter()
        .filter(|a| str_field(a, "kind") != Some("process_exit"))
        .collect();
    assert!(
        raised.is_empty(),
        "an idle pool must raise no alert, got {}\n{report}",
        raised.len()
    );
    // Proof that observer was watching at all: an empty file would pass the check above.
    assert!(
        run.of_kind("process_exit")
            .iter()
            .any(|e| i64_field(e, "exit_code") == Some(0)),
        "expected a process_exit alert with exit_code 0\n{report}"
    );

    let run = observe(true);
    let report = run.report();
    assert_eq!(run.exit_code(), Some(0), "{report}");
    for kind in ["lock_hold", "lock_wait", "stall", "deadlock"] {
        assert!(
            run.of_kind(kind).is_empty(),
            "an idle pool must raise no {kind} alert, also with --report-idle\n{report}"
        );
    }
    let idle = run.of_kind("idle_wait");
    for prefix in idle_comms {
        assert!(
            idle.iter().any(|a| str_field(a, "comm").is_some_and(|c| c.starts_with(prefix))
                && u64_field(a, "duration_ns").is_some_and(|ns| ns >= 100 * MS)),
            "no idle_wait over 100ms by a thread {prefix}*: the pool's waits were not seen\n{report}"
        );
    }
}

/// cond_pool.c: 8 threads in pthread_cond_wait / pthread_cond_timedwait for seconds, a producer
/// that signals every ~1.5 s.
#[test]
fn idle_condition_variable_pool_raises_nothing() {
    require_root();
    let ws = Workspace::new("cond_pool");
    let binary = ws.build_target("cond_pool", FramePointers::Omit);
    idle_pool("cond_pool", &binary, &["4"], &["pool-"]);
}

/// rustprogs/locks condvar-pool: 8 threads on a std Condvar, 4 on mpsc channels, rarely woken.
#[test]
fn idle_rust_condvar_and_channel_pool_raises_nothing() {
    require_root();
    idle_pool(
        "condvar_pool",
        &rust_locks(),
        &["condvar-pool", "4"],
        &["pool-", "chan-"],
    );
}

/// rwlock_mutex_deadlock.c: "indexer" holds an rwlock for writing and wants a mutex that
/// "reporter" holds, which wants the rwlock for writing. The rwlock records its writer, the mutex
/// its owner: the cycle runs through both.
#[test]
fn deadlock_through_rwlock_and_mutex() {
    require_root();
    let ws = Workspace::new("rwlock_deadlock");
    let binary = ws.build_target("rwlock_mutex_deadlock", FramePointers::Omit);
    let target = Target::spawn(&binary, &["0"]);
    assert!(
        wait_until(Duration::from_secs(5), || {
            !target.tids_named("indexer").is_empty() && !target.tids_named("reporter").is_empty()
        }),
        "the target did not start threads indexer and reporter"
    );
    let indexer = i64::from(target.tids_named("indexer")[0]);
    let reporter = i64::from(target.tids_named("reporter")[0]);
    // The deadlock forms 100 ms after start; attach once it has.
    thread::sleep(Duration::from_millis(500));
    assert!(
        target.exit_status().is_none(),
        "the target exited on its own"
    );

    let run = ObserverCmd::watch(target.pid())
        .opt("--duration", "4s")
        .opt("--stall-after", "1s")
        .alerts(&ws)
        .run_to_end(&ws, TIMEOUT);
    let report = run.report();
    assert_eq!(run.exit_code(), Some(0), "{report}");

    let in_cycle = |alert: &Value| {
        let members: Vec<&Value> = alert
            .get("cycle")
            .and_then(Value::as_array)
            .map(|c| c.iter().collect())
            .unwrap_or_default();
        let member = |tid: i64| {
            members
                .iter()
                .copied()
                .find(|m| i64_field(m, "tid") == Some(tid))
        };
        let (Some(i), Some(r)) = (member(indexer), member(reporter)) else {
            return false;
        };
        members.len() == 2
            && u64_field(alert, "pid") == Some(u64::from(target.pid()))
            && i64_field(i, "owner_tid") == Some(reporter)
            && i64_field(r, "owner_tid") == Some(indexer)
            && stack_mentions(i, "stack", "reindex")
            && stack_mentions(r, "stack", "publish_report")
    };
    assert!(
        run.of_kind("deadlock").iter().any(|a| in_cycle(a)),
        "no deadlock alert whose cycle is indexer (tid {indexer}, in reindex, waiting for the \
         mutex reporter holds) and reporter (tid {reporter}, in publish_report, waiting for the \
         rwlock indexer holds for writing)\n{report}"
    );
    // The rwlock side's stall names its owner too: the writer recorded in the lock.
    assert!(
        run.of_kind("stall").iter().any(|s| {
            i64_field(s, "tid") == Some(reporter)
                && i64_field(s, "owner_tid") == Some(indexer)
                && !frames(s, "stack").is_empty()
        }),
        "no stall for reporter (tid {reporter}) with owner_tid {indexer} (the rwlock's writer)\n{report}"
    );
}
