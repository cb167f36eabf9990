//! A process killed while its threads wait on a lock: the kill wakes them to die, it does not
//! release the lock, so nothing may say "released in".

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use observer_tests::{require_root, signal_is, wait_until, FramePointers, ObserverCmd, Workspace};

/// lock_killed.c: four "waiter" threads block on a mutex the main thread keeps; the process is
/// then killed. Its parent (this test) reaps it only at the end, as a busy parent would: the
/// main thread, the lock's owner, stays visible as a zombie meanwhile, which is what made the
/// kill look like a release ("released in ?").
#[test]
fn sigkill_of_lock_waiters_is_not_a_lock_release() {
    killed_while_waiting(true);
}

/// The same with waits that began before observer attached (found in /proc and seeded): the
/// kernel's check needs the waiter's task, which a seeded wait lacks; the waker, in kill(2),
/// tells it instead.
#[test]
fn sigkill_of_lock_waiters_blocked_before_attach_is_not_a_lock_release() {
    killed_while_waiting(false);
}

fn killed_while_waiting(attach_first: bool) {
    require_root();
    let ws = Workspace::new("lock_killed");
    let binary = ws.build_target("lock_killed", FramePointers::Omit);
    let args: &[&str] = if attach_first { &["4", "gate"] } else { &["4"] };
    let mut target = Command::new(&binary)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("could not start lock_killed");
    let pid = target.id();
    let mut stdout = BufReader::new(target.stdout.take().expect("stdout"));
    let mut ready = String::new();
    if !attach_first {
        stdout
            .read_line(&mut ready)
            .expect("reading lock_killed's stdout");
        assert_eq!(ready.trim(), "ready");
    }
    let observer = ObserverCmd::watch(pid)
        .opt("--threshold", "100ms")
        .opt("--stall-after", "30s")
        .opt("--duration", "20s")
        .alerts(&ws)
        .spawn(&ws);
    let attached = wait_until(Duration::from_secs(20), || {
        observer.stderr_so_far().contains("watching pid")
    });
    let kill_target = |target: &mut std::process::Child| {
        let _ = target.kill();
        let _ = target.wait();
    };
    if !attached {
        kill_target(&mut target);
        panic!("observer did not attach:\n{}", observer.stderr_so_far());
    }
    if attach_first {
        let mut gate = target.stdin.take().expect("stdin");
        gate.write_all(b"go\n").expect("could not open the gate");
        stdout
            .read_line(&mut ready)
            .expect("reading lock_killed's stdout");
        assert_eq!(ready.trim(), "ready");
    }
    // Every waiter has now waited well over the threshold.
    thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) of the child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) }, 0);
    let run = observer.wait(Duration::from_secs(30));
    kill_target(&mut target);
    let report = run.report();
    let lock_holds = run.of_kind("lock_hold");
    assert!(
        lock_holds.is_empty(),
        "the waiters were killed, never granted the lock, yet {} lock_hold alert(s) were \
         raised, e.g. {}\n{report}",
        lock_holds.len(),
        lock_holds[0]
    );
    assert!(
        !run.stderr.contains("released in ?") && !run.stderr.contains("[unknown]"),
        "stderr names an unknown releaser or an unknown frame\n{report}"
    );
    assert!(
        run.of_kind("process_exit")
            .iter()
            .any(|a| signal_is(a, 9, "SIGKILL")),
        "no process_exit alert says SIGKILL\n{report}"
    );
}
