//! `watch --pid` of something that is not an observable user process is refused up front,
//! with what it is and what to do, instead of "watching" nothing.

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use observer_tests::{require_root, wait_until, ObserverCmd, Workspace};

const TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn watching_a_kernel_thread_is_refused() {
    require_root();
    let ws = Workspace::new("kthread");
    // pid 2 is kthreadd on every Linux system.
    let run = ObserverCmd::watch(2)
        .opt("--duration", "1s")
        .run_to_end(&ws, TIMEOUT);
    let report = run.report();
    assert_ne!(run.exit_code(), Some(0), "{report}");
    assert!(
        run.stderr.contains("kernel thread") && run.stderr.contains("no user space"),
        "stderr should say pid 2 is a kernel thread with no user space\n{report}"
    );
    assert!(!run.stderr.contains("watching pid"), "{report}");
}

#[test]
fn watching_a_zombie_is_refused() {
    require_root();
    let ws = Workspace::new("zombie");
    // `true` exits at once; the shell then becomes `sleep`, which never reaps it.
    let mut parent = Command::new("sh")
        .args(["-c", "true & exec sleep 30"])
        .stdout(Stdio::null())
        .spawn()
        .expect("could not start sh");
    let children = format!("/proc/{0}/task/{0}/children", parent.id());
    let mut zombie = None;
    let found = wait_until(Duration::from_secs(10), || {
        zombie = fs::read_to_string(&children)
            .ok()
            .and_then(|c| c.split_whitespace().next()?.parse::<u32>().ok())
            .filter(|pid| {
                fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                    s.rsplit_once(')')
                        .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
                })
            });
        zombie.is_some()
    });
    let run = found.then(|| {
        ObserverCmd::watch(zombie.unwrap_or(0))
            .opt("--duration", "1s")
            .run_to_end(&ws, TIMEOUT)
    });
    let _ = parent.kill();
    let _ = parent.wait();
    let run = run.expect("no unreaped child appeared");
    let report = run.report();
    assert_ne!(run.exit_code(), Some(0), "{report}");
    assert!(
        run.stderr.contains("zombie") && run.stderr.contains("not reaped"),
        "stderr should say the process has exited and is a zombie its parent has not reaped\n{report}"
    );
    assert!(!run.stderr.contains("watching pid"), "{report}");
}
