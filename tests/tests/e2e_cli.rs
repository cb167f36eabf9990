//! The command line: help, exit statuses, bad input, and the environment observer runs in.

use std::fs;
use std::thread;
use std::time::Duration;

use observer_tests::{
    i64_field, parse_alerts, require_root, str_field, u64_field, unused_pid, FramePointers,
    ObserverCmd, Target, Workspace,
};

const TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn help_mentions_threshold() {
    let ws = Workspace::new("help");
    for args in [&["--help"][..], &["watch", "--help"], &["run", "--help"]] {
        let run = ObserverCmd::raw(args).run_to_end(&ws, TIMEOUT);
        assert_eq!(run.exit_code(), Some(0), "{}", run.report());
        assert!(
            run.stdout.contains("--threshold"),
            "`observer {}` should mention --threshold\n{}",
            args.join(" "),
            run.report()
        );
    }
}

#[test]
fn run_passes_on_the_exit_status() {
    require_root();
    let ws = Workspace::new("status");
    for (cmd, args, expected) in [
        ("false", &[][..], 1),
        ("true", &[], 0),
        ("sh", &["-c", "exit 7"], 7),
    ] {
        let program = std::path::PathBuf::from(format!("/usr/bin/{cmd}"));
        let program = if program.exists() {
            program
        } else {
            format!("/bin/{cmd}").into()
        };
        let run = ObserverCmd::run()
            .command(&program, args)
            .run_to_end(&ws, TIMEOUT);
        assert_eq!(run.exit_code(), Some(expected), "{}", run.report());
    }
}

#[test]
fn alerts_to_stdout() {
    require_root();
    let ws = Workspace::new("stdout");
    let target = ws.build_target("exit_code", FramePointers::Omit);
    let run = ObserverCmd::run()
        .opt("--alerts", "-")
        .command(&target, &[] as &[&str])
        .run_to_end(&ws, TIMEOUT);
    assert_eq!(run.exit_code(), Some(3), "{}", run.report());
    let alerts = parse_alerts(&run.stdout, "stdout");
    assert!(
        alerts
            .iter()
            .any(|a| str_field(a, "kind") == Some("process_exit")
                && i64_field(a, "exit_code") == Some(3)),
        "--alerts - should write alert lines to stdout\n{}",
        run.report()
    );
}

#[test]
fn bad_duration_is_rejected() {
    let ws = Workspace::new("baddur");
    let run = ObserverCmd::watch(std::process::id())
        .opt("--threshold", "banana")
        .run_to_end(&ws, TIMEOUT);
    assert_ne!(run.exit_code(), Some(0), "{}", run.report());
    assert!(
        run.stderr.contains("banana"),
        "the error should quote the bad value\n{}",
        run.report()
    );
}

#[test]
fn watch_missing_pid_fails() {
    require_root();
    let ws = Workspace::new("nopid");
    let pid = unused_pid();
    let run = ObserverCmd::watch(pid)
        .opt("--duration", "2s")
        .run_to_end(&ws, TIMEOUT);
    assert_ne!(run.exit_code(), Some(0), "{}", run.report());
    let stderr = run.stderr.to_lowercase();
    assert!(
        stderr.contains(&pid.to_string()) && stderr.contains("no such process"),
        "stderr should name pid {pid} and say \"no such process\"\n{}",
        run.report()
    );
}

/// Without --duration, `watch` ends by itself when its target exits, and says how it exited.
#[test]
fn watch_ends_when_target_exits() {
    require_root();
    let ws = Workspace::new("watch_exit");
    let binary = ws.build_target("lock_hold", FramePointers::Omit);
    let target = Target::spawn(&binary, &["3"]);
    thread::sleep(Duration::from_millis(300));
    let run = ObserverCmd::watch(target.pid())
        .alerts(&ws)
        .run_to_end(&ws, Duration::from_secs(30));
    let report = run.report();

    assert!(
        target.exit_status().is_some_and(|s| s.success()),
        "the target should have exited 0"
    );
    assert_eq!(run.exit_code(), Some(0), "{report}");
    assert!(
        run.alerts_written,
        "observer wrote no alerts file\n{report}"
    );
    let exit = run
        .of_kind("process_exit")
        .into_iter()
        .find(|p| u64_field(p, "pid") == Some(u64::from(target.pid())))
        .unwrap_or_else(|| panic!("no process_exit for pid {}\n{report}", target.pid()));
    assert_eq!(i64_field(exit, "exit_code"), Some(0), "{exit}");
}

#[test]
fn unprivileged_user_is_told_what_is_needed() {
    require_root();
    let ws = Workspace::new("nonroot");
    let observer = ws.public_observer_copy();
    let run = ObserverCmd::watch(std::process::id())
        .opt("--duration", "1s")
        .binary(&observer)
        .wrapped_in(&[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ])
        .run_to_end(&ws, TIMEOUT);
    let report = run.report();

    assert!(
        !run.stderr.contains("setpriv:"),
        "setpriv itself failed, the test could not run observer unprivileged\n{report}"
    );
    assert_ne!(run.exit_code(), Some(0), "{report}");
    let stderr = run.stderr.to_lowercase();
    assert!(
        stderr.contains("root") || stderr.contains("cap_bpf"),
        "stderr should say observer needs root or CAP_BPF+CAP_PERFMON+CAP_SYS_PTRACE\n{report}"
    );
}

/// tracefs is not mounted at boot on these machines: observer mounts it itself (with a note).
#[test]
fn works_without_tracefs_mounted() {
    require_root();
    let ws = Workspace::new("tracefs");
    let target = ws.build_target("lock_hold", FramePointers::Omit);
    // A private mount namespace (unshare's default propagation), so the host keeps its tracefs.
    let script = "umount /sys/kernel/tracing 2>/dev/null || true; \
                  if grep -q ' /sys/kernel/tracing tracefs ' /proc/mounts; then \
                    echo 'test setup: tracefs still mounted' >&2; exit 97; fi; \
                  exec \"$@\"";
    let run = ObserverCmd::run()
        .opt("--threshold", "100ms")
        .alerts(&ws)
        .command(&target, &["3"])
        .wrapped_in(&["unshare", "-m", "sh", "-c", script, "sh"])
        .run_to_end(&ws, TIMEOUT);
    let report = run.report();

    assert_ne!(
        run.exit_code(),
        Some(97),
        "could not unmount tracefs in the namespace\n{report}"
    );
    assert_eq!(run.exit_code(), Some(0), "{report}");
    assert!(
        run.stderr.to_lowercase().contains("tracefs"),
        "observer should note that it mounted tracefs\n{report}"
    );
    assert!(
        run.of_kind("lock_hold")
            .iter()
            .any(|w| str_field(w, "comm") == Some("worker")),
        "observer did not work after mounting tracefs itself\n{report}"
    );
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    assert!(
        mounts.contains(" /sys/kernel/tracing tracefs "),
        "the host lost its tracefs mount"
    );
}
