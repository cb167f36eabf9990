//! Real servers from Debian under real load generators (installed by `cargo xtask setup`):
//! MariaDB + sysbench and redis + redis-benchmark, each a private instance started and stopped
//! by the test.
//!
//! - Healthy load for 10 s under `observer watch --pid` with no flags raises no alert at all and
//!   loses nothing.
//! - The incidents a person would page someone for are stalls by default (`--stall-after 2s`
//!   only to keep them short): an InnoDB row lock and a metadata (table) lock held 6 s by one
//!   session freeze another, and redis `DEBUG SLEEP 5` blocks the event loop. Each blocked
//!   session or loop waits away from its home wait (condition variables, a sleep: idle-class
//!   waits), so each is a `stall` with `stall_on: "away_from_home"` naming the waiting code, and
//!   for MariaDB its `stall_end` names the releasing session's thread as the waker.

use std::thread;
use std::time::{Duration, Instant};

use observer_tests::servers::{MariaDb, Redis};
use observer_tests::{
    require_root, str_field, u64_field, wait_until, Observer, ObserverCmd, ObserverRun, Value,
    Workspace,
};

const ATTACH_TIMEOUT: Duration = Duration::from_secs(30);
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// `observer watch --pid PID` with `extra`, its alerts in the workspace, once attached.
fn watch(ws: &Workspace, pid: u32, extra: &[&str]) -> Observer {
    let mut cmd = ObserverCmd::watch(pid).alerts(ws).flag("--no-live");
    for pair in extra.chunks(2) {
        cmd = match pair {
            [name, value] => cmd.opt(name, value),
            [flag] => cmd.flag(flag),
            _ => cmd,
        };
    }
    let observer = cmd.spawn(ws);
    let attached = wait_until(ATTACH_TIMEOUT, || {
        observer.stderr_so_far().contains("watching pid")
    });
    assert!(
        attached,
        "observer did not attach; stderr:\n{}",
        observer.stderr_so_far()
    );
    observer
}

/// Ctrl-C, as a person would end it; then everything it wrote.
fn stop(observer: Observer) -> ObserverRun {
    // SAFETY: kill(2) on the observer this test started.
    unsafe { libc::kill(observer.pid() as libc::pid_t, libc::SIGINT) };
    let run = observer.wait(EXIT_TIMEOUT);
    assert_eq!(run.exit_code(), Some(0), "{}", run.report());
    run
}

/// The summary's drops line says nothing was lost: no event, aggregate or in-flight wait
/// dropped. (A wait whose stack id the kernel refused, two stacks in one bucket of its table,
/// is still reported; a few of those on a busy server are not a loss of observations.)
fn assert_nothing_lost(run: &ObserverRun) {
    let drops = run
        .stderr
        .lines()
        .find(|l| l.starts_with("drops:"))
        .unwrap_or_else(|| panic!("no \"drops:\" line in the summary\n{}", run.report()));
    for part in drops.trim_start_matches("drops:").split(',') {
        if part.contains("without a stack") {
            continue;
        }
        let n: Option<u64> = part.split_whitespace().next().and_then(|w| w.parse().ok());
        assert_eq!(
            n,
            Some(0),
            "healthy load lost observations: {drops}\n{}",
            run.report()
        );
    }
    assert!(!run.stderr.contains("degraded"), "{}", run.report());
}

fn assert_no_alert(run: &ObserverRun, what: &str) {
    assert!(
        run.alerts_written,
        "observer wrote no alerts file\n{}",
        run.report()
    );
    assert!(
        run.alerts.is_empty(),
        "healthy {what} raised {} alerts (none expected)\n{}",
        run.alerts.len(),
        run.report()
    );
    assert!(
        run.stderr.contains("alerts: none"),
        "the summary should say \"alerts: none\"\n{}",
        run.report()
    );
}

/// MariaDB under sysbench oltp_read_write, 8 threads, 10 s: no alert, nothing lost.
#[test]
fn mariadb_under_sysbench_is_quiet() {
    require_root();
    let ws = Workspace::new("servers-mariadb-healthy");
    let Some(db) = MariaDb::start(&ws, "mariadb_under_sysbench_is_quiet") else {
        return;
    };
    db.prepare_sysbench();
    let observer = watch(&ws, db.pid(), &[]);
    let report = db.run_sysbench("oltp_read_write", 8, 10);
    let run = stop(observer);
    assert!(report.contains("transactions:"), "sysbench:\n{report}");
    assert_no_alert(&run, "MariaDB under sysbench");
    assert_nothing_lost(&run);
}

/// redis under redis-benchmark (GET/SET, 50 clients) for 10 s: no alert, nothing lost.
#[test]
fn redis_under_benchmark_is_quiet() {
    require_root();
    let ws = Workspace::new("servers-redis-healthy");
    let Some(redis) = Redis::start(&ws, "redis_under_benchmark_is_quiet") else {
        return;
    };
    let observer = watch(&ws, redis.pid(), &[]);
    let report = redis.benchmark(10);
    let run = stop(observer);
    assert!(
        report.contains("requests per second"),
        "redis-benchmark:\n{report}"
    );
    assert_no_alert(&run, "redis under redis-benchmark");
    assert_nothing_lost(&run);
}

/// The thread id MariaDB runs a session on, as the session printed it (`TID <n>`).
fn session_tid(output: &str) -> Option<u32> {
    output
        .lines()
        .find_map(|l| l.strip_prefix("TID\t").or_else(|| l.strip_prefix("TID ")))
        .and_then(|n| n.trim().parse().ok())
}

const PRINT_TID: &str = "SELECT 'TID', TID FROM information_schema.PROCESSLIST \
                         WHERE ID = CONNECTION_ID();";

/// The away-from-home stall of thread `tid` (and its end), or a failure naming what came.
fn away_from_home(run: &ObserverRun, tid: Option<u32>) -> (&Value, Option<&Value>) {
    let of_tid = |a: &&Value| tid.is_none_or(|t| u64_field(a, "tid") == Some(u64::from(t)));
    let stall = run
        .of_kind("stall")
        .into_iter()
        .filter(of_tid)
        .find(|a| str_field(a, "stall_on") == Some("away_from_home"))
        .unwrap_or_else(|| {
            panic!(
                "no stall with stall_on \"away_from_home\" for the blocked thread ({tid:?})\n{}",
                run.report()
            )
        });
    let frames = stall["stack"].as_array().map_or(0, Vec::len);
    assert!(frames > 0, "the stall's stack is empty: {stall}");
    let stall_tid = u64_field(stall, "tid");
    let end = run
        .of_kind("stall_end")
        .into_iter()
        .find(|a| u64_field(a, "tid") == stall_tid);
    (stall, end)
}

/// Runs `incident` (which blocks session B behind session A for ~6 s) against a MariaDB that
/// had healthy load first (so each thread's home is known), and checks B's stall and its end.
fn mariadb_incident(label: &str, hold: &str, blocked: &str) {
    require_root();
    let ws = Workspace::new(label);
    let Some(db) = MariaDb::start(&ws, label) else {
        return;
    };
    db.prepare_sysbench();
    let observer = watch(&ws, db.pid(), &["--stall-after", "2s"]);
    // Healthy load, then quiet: long enough for every thread group's home to be learned
    // (observer judges nothing before ~5 s of a group's waiting has been seen).
    db.run_sysbench("oltp_read_write", 4, 6);
    thread::sleep(Duration::from_secs(2));
    let mut a = db.session("a", &format!("{PRINT_TID} {hold}"));
    let a_tid = wait_until(Duration::from_secs(10), || {
        session_tid(&a.output()).is_some()
    })
    .then(|| session_tid(&a.output()))
    .flatten();
    // B blocks behind A for the rest of A's hold.
    thread::sleep(Duration::from_millis(500));
    let b_started = Instant::now();
    let mut b = db.session("b", &format!("{PRINT_TID} {blocked}"));
    a.wait(Duration::from_secs(30));
    let b_out = b.wait(Duration::from_secs(30));
    // The incident itself happened: B was frozen until A let go.
    assert!(
        b_started.elapsed() >= Duration::from_secs(4),
        "session B was not blocked behind A ({:?})\n{b_out}",
        b_started.elapsed()
    );
    thread::sleep(Duration::from_secs(1));
    let run = stop(observer);
    let a_tid = a_tid.unwrap_or_else(|| panic!("session A printed no TID\n{}", a.output()));
    let b_tid = session_tid(&b_out);
    let (stall, end) = away_from_home(&run, b_tid);
    let end = end.unwrap_or_else(|| {
        panic!(
            "no stall_end for the blocked session's thread\nstall: {stall}\n{}",
            run.report()
        )
    });
    assert_eq!(str_field(end, "stall_on"), Some("away_from_home"), "{end}");
    assert!(
        u64_field(end, "blocked_ns").is_some_and(|ns| ns >= 4_000_000_000),
        "B waited ~5.5 s: {end}"
    );
    assert_eq!(
        u64_field(end, "waker_tid"),
        Some(u64::from(a_tid)),
        "the waker should be session A's thread (it released the lock)\n{end}\n{}",
        run.report()
    );
    assert_eq!(str_field(end, "woken_by"), Some("thread"), "{end}");
}

/// An InnoDB row lock: A holds `FOR UPDATE` on a row for 6 s, B's UPDATE of it waits.
#[test]
fn mariadb_row_lock_is_a_stall_named_with_its_releaser() {
    mariadb_incident(
        "servers-mariadb-row-lock",
        "BEGIN; SELECT id FROM sbtest1 WHERE id = 1 FOR UPDATE; SELECT SLEEP(6); COMMIT;",
        "UPDATE sbtest1 SET k = k + 1 WHERE id = 1;",
    );
}

/// A metadata lock: A holds `LOCK TABLES ... WRITE` for 6 s, B's SELECT waits.
#[test]
fn mariadb_table_lock_is_a_stall_named_with_its_releaser() {
    mariadb_incident(
        "servers-mariadb-table-lock",
        "LOCK TABLES sbtest2 WRITE; SELECT SLEEP(6); UNLOCK TABLES;",
        "SELECT COUNT(*) FROM sbtest2;",
    );
}

/// redis `DEBUG SLEEP 5` blocks the event loop in a sleep, away from its `epoll_wait` home.
#[test]
fn redis_debug_sleep_is_a_stall() {
    require_root();
    let ws = Workspace::new("servers-redis-sleep");
    let Some(redis) = Redis::start(&ws, "redis_debug_sleep_is_a_stall") else {
        return;
    };
    let observer = watch(&ws, redis.pid(), &["--stall-after", "2s"]);
    // Idle, then load, then idle: the event loop's epoll_wait home is learned from its
    // re-waits (redis wakes 10 times a second) before the incident.
    thread::sleep(Duration::from_secs(3));
    redis.benchmark(3);
    thread::sleep(Duration::from_secs(2));
    let slept = Instant::now();
    let mut sleeper = redis.cli_background(&["DEBUG", "SLEEP", "5"]);
    // The event loop is frozen meanwhile: a PING sent a second in waits for the sleep.
    thread::sleep(Duration::from_secs(1));
    let ping = Instant::now();
    assert!(redis.cli(&["PING"]).contains("PONG"));
    assert!(
        ping.elapsed() >= Duration::from_secs(3),
        "PING was answered during DEBUG SLEEP ({:?})",
        ping.elapsed()
    );
    let done = wait_until(Duration::from_secs(20), || {
        matches!(sleeper.try_wait(), Ok(Some(_)))
    });
    assert!(done, "DEBUG SLEEP 5 did not return");
    assert!(slept.elapsed() >= Duration::from_secs(5));
    assert!(redis.cli(&["PING"]).contains("PONG"));
    thread::sleep(Duration::from_secs(1));
    let run = stop(observer);
    let (stall, end) = away_from_home(&run, Some(redis.pid()));
    assert!(
        u64_field(stall, "blocked_ns").is_some_and(|ns| ns >= 2_000_000_000),
        "{stall}"
    );
    let end = end.unwrap_or_else(|| panic!("no stall_end for the event loop\n{}", run.report()));
    assert_eq!(str_field(end, "woken_by"), Some("timer_or_signal"), "{end}");
}
