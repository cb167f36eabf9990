//! What thread and process churn leaves behind in observer: nothing that costs anything once
//! the churn is over, and no false alert from threads that die while they wait.

use std::fs;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use observer_tests::{bpfmaps, require_root, wait_until, FramePointers, ObserverCmd, Workspace};

/// CPU time (user + system) process `pid` has used so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // After the comm: state is field 3, utime 14 and stime 15 (proc(5)).
    let tick = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    tick(14) + tick(15)
}

/// Share of one core `pid` uses over `window`, in percent.
fn cpu_percent(pid: u32, window: Duration) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let before = cpu_ticks(pid);
    let started = Instant::now();
    thread::sleep(window);
    let used = cpu_ticks(pid).saturating_sub(before) as f64 / hz;
    100.0 * used / started.elapsed().as_secs_f64()
}

/// 20,000 threads exit, then their process sleeps: observer's in-flight table must hold no
/// entry of a dead thread (each thread's last switch, after it exited, used to leave one), and
/// observer must idle, not walk the dead entries with bpf() calls (17 % of a core before).
#[test]
fn thread_churn_leaves_no_in_flight_entries_and_no_idle_cost() {
    require_root();
    let ws = Workspace::new("churn_idle");
    let binary = ws.build_target("thread_churn", FramePointers::Omit);
    let observer = ObserverCmd::run()
        .command(&binary, &["20000", "100", "20"])
        .spawn(&ws);
    let stdout = ws.path("observer.stdout");
    assert!(
        wait_until(Duration::from_secs(60), || {
            fs::read_to_string(&stdout).is_ok_and(|s| s.contains("done 20000"))
        }),
        "thread_churn did not finish its 20,000 threads; observer stderr:\n{}",
        observer.stderr_so_far()
    );
    // Let observer finish the events of the churn (20,000 creations and deaths) first.
    thread::sleep(Duration::from_secs(3));
    let keys = bpfmaps::u32_keys_of_map(observer.pid(), "IN_FLIGHT")
        .expect("observer holds no IN_FLIGHT map");
    let dead: Vec<u32> = keys
        .iter()
        .copied()
        .filter(|tid| !Path::new(&format!("/proc/{tid}")).exists())
        .collect();
    let idle = cpu_percent(observer.pid(), Duration::from_secs(4));
    eprintln!(
        "after 20,000 thread exits: {} in-flight entries, {} of dead threads; observer idles at \
         {idle:.1} % of a core",
        keys.len(),
        dead.len()
    );
    assert!(
        dead.is_empty(),
        "{} of observer's {} in-flight entries belong to threads that have exited (e.g. {:?})",
        dead.len(),
        keys.len(),
        &dead[..dead.len().min(5)]
    );
    assert!(
        idle < 5.0,
        "observer used {idle:.1} % of a core while its target slept after the churn"
    );
}
