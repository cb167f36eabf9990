//! Thread deaths and process exits: who died, who created it, who ended the process and how.

use std::time::Duration;

use observer_tests::{
    i64_field, printed_tid, require_root, signal_is, stack_mentions, str_field, u64_field,
    FramePointers, ObserverCmd, Workspace, MS,
};

const TIMEOUT: Duration = Duration::from_secs(30);

/// thread_death.c: worker-2 of a pool of three calls pthread_exit() after ~500ms; the process
/// lives on and exits 0 after 4s.
fn thread_death(fp: FramePointers) {
    require_root();
    let ws = Workspace::new("thread_death");
    let target = ws.build_target("thread_death", fp);
    let run = ObserverCmd::run()
        .opt("--threshold", "100ms")
        .alerts(&ws)
        .command(&target, &["4", "-v"])
        .run_to_end(&ws, TIMEOUT);
    let report = run.report();
    assert_eq!(run.exit_code(), Some(0), "{report}");

    let exits = run.of_kind("thread_exit");
    assert_eq!(
        exits.len(),
        1,
        "expected exactly one thread_exit alert (worker-2); the healthy workers end with the process\n{report}"
    );
    let death = exits[0];
    assert_eq!(str_field(death, "comm"), Some("worker-2"), "{report}");
    // The target reports the dying thread's tid on stderr, which observer passes through.
    let tid =
        printed_tid(&run.stderr, "worker-2").expect("thread_death did not report worker-2's tid");
    assert_eq!(i64_field(death, "tid"), Some(i64::from(tid)), "{report}");
    assert!(
        stack_mentions(death, "created_by", "start_workers") || stack_mentions(death, "created_by", "main"),
        "created_by should name the function that created worker-2 (start_workers or main): {death}"
    );
    let lifetime = u64_field(death, "lifetime_ns").unwrap_or(0);
    assert!(
        (200 * MS..=3000 * MS).contains(&lifetime),
        "worker-2 lived ~500ms, lifetime_ns is {lifetime}: {death}"
    );

    let process = run.of_kind("process_exit");
    assert!(
        process.iter().any(|p| i64_field(p, "exit_code") == Some(0)),
        "expected process_exit with exit_code 0\n{report}"
    );
}

#[test]
fn thread_death_without_frame_pointers() {
    thread_death(FramePointers::Omit);
}

#[test]
fn thread_death_with_frame_pointers() {
    thread_death(FramePointers::Keep);
}

/// exit_code.c: thread "validator" calls exit(3) from fatal_error() after ~300ms.
fn exit_code(fp: FramePointers) {
    require_root();
    let ws = Workspace::new("exit_code");
    let target = ws.build_target("exit_code", fp);
    let run = ObserverCmd::run()
        .alerts(&ws)
        .command(&target, &["--print-tid"])
        .run_to_end(&ws, TIMEOUT);
    let report = run.report();

    assert_eq!(
        run.exit_code(),
        Some(3),
        "observer run must exit with the target's status\n{report}"
    );
    let tid =
        printed_tid(&run.stdout, "fatal_error").expect("exit_code did not print its tid on stdout");
    let exits = run.of_kind("process_exit");
    let exit = exits
        .iter()
        .find(|p| i64_field(p, "exit_code") == Some(3))
        .unwrap_or_else(|| panic!("no process_exit with exit_code 3\n{report}"));
    assert_eq!(
        i64_field(exit, "by_tid"),
        Some(i64::from(tid)),
        "by_tid should be the validator thread that called exit(3): {exit}"
    );
    assert_ne!(
        i64_field(exit, "pid"),
        Some(i64::from(tid)),
        "exit(3) came from a thread, not from the main thread: {exit}"
    );
}

#[test]
fn exit_code_without_frame_pointers() {
    exit_code(FramePointers::Omit);
}

#[test]
fn exit_code_with_frame_pointers() {
    exit_code(FramePointers::Keep);
}

/// crash.c: thread "parser" dereferences NULL in bad_pointer().
#[test]
fn crash_reports_sigsegv() {
    require_root();
    let ws = Workspace::new("crash");
    let target = ws.build_target("crash", FramePointers::Omit);
    let run = ObserverCmd::run()
        .alerts(&ws)
        .command(&target, &["--print-tid"])
        .run_to_end(&ws, TIMEOUT);
    let report = run.report();

    assert_eq!(
        run.exit_code(),
        Some(128 + libc::SIGSEGV),
        "observer run should end like the target did (killed by SIGSEGV, 139 in shell terms)\n{report}"
    );
    let tid =
        printed_tid(&run.stdout, "bad_pointer").expect("crash did not print its tid on stdout");
    let exit = run
        .of_kind("process_exit")
        .into_iter()
        .find(|p| signal_is(p, i64::from(libc::SIGSEGV), "SIGSEGV"))
        .unwrap_or_else(|| panic!("no process_exit with signal SIGSEGV\n{report}"));
    assert_eq!(
        i64_field(exit, "by_tid"),
        Some(i64::from(tid)),
        "by_tid should be the parser thread that crashed: {exit}"
    );
}
