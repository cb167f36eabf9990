//! Stalls inside the kernel: a thread in uninterruptible sleep (D state) past --stall-after is
//! a `stall` with its kernel stack and its user stack; an interruptible sleep is none.

use std::time::Duration;

use observer_tests::{
    i64_field, printed_tid, require_root, stack_mentions, str_field, u64_field, wait_until,
    FramePointers, ObserverCmd, Target, Workspace, MS,
};

const TIMEOUT: Duration = Duration::from_secs(30);

/// kernel_stall.c: thread "forker" waits ~6s in D state for its vfork child; thread "sleeper"
/// sleeps ~6s in nanosleep (S state).
fn kernel_stall(fp: FramePointers) {
    require_root();
    let ws = Workspace::new("kernel_stall");
    let target = ws.build_target("kernel_stall", fp);
    let folded = ws.path("profile.folded");
    let run = ObserverCmd::run()
        .opt("--stall-after", "2s")
        .opt("--folded", folded.to_str().unwrap())
        .alerts(&ws)
        .command(&target, &["6"])
        .run_to_end(&ws, TIMEOUT);
    let report = run.report();
    assert_eq!(run.exit_code(), Some(0), "{report}");

    let forker = printed_tid(&run.stderr, "forker").expect("kernel_stall printed no forker tid");
    let sleeper = printed_tid(&run.stderr, "sleeper").expect("kernel_stall printed no sleeper tid");
    let stalls = run.of_kind("stall");
    let mine: Vec<_> = stalls
        .iter()
        .filter(|s| i64_field(s, "tid") == Some(i64::from(forker)))
        .collect();
    assert_eq!(
        mine.len(),
        1,
        "expected exactly one stall (one per episode) for forker (tid {forker})\n{report}"
    );
    let stall = mine[0];
    assert_eq!(str_field(stall, "comm"), Some("forker"), "{stall}");
    assert!(
        u64_field(stall, "blocked_ns").unwrap_or(0) >= 2000 * MS,
        "blocked_ns below --stall-after: {stall}"
    );
    assert_eq!(str_field(stall, "syscall"), Some("vfork"), "{stall}");
    assert!(
        stall.get("owner_tid").is_some_and(|o| o.is_null()),
        "a kernel wait has no lock owner: {stall}"
    );
    // The kernel side: the vfork syscall waiting in kernel_clone for the child.
    assert!(
        stack_mentions(stall, "kernel_stack", "__do_sys_vfork")
            && stack_mentions(stall, "kernel_stack", "kernel_clone"),
        "kernel_stack should name the vfork wait (__do_sys_vfork, kernel_clone): {stall}"
    );
    // The user side: the target's own function that issued the syscall.
    assert!(
        stack_mentions(stall, "stack", "forker_waits_for_vfork_child"),
        "stack should name forker_waits_for_vfork_child: {stall}"
    );
    assert!(
        stalls
            .iter()
            .all(|s| i64_field(s, "tid") != Some(i64::from(sleeper))),
        "an interruptible sleep (nanosleep) is no stall\n{report}"
    );

    // The wait ended (the child exited): the profile has it under a kernel frame marker.
    let profile = std::fs::read_to_string(&folded).unwrap_or_default();
    let line = profile
        .lines()
        .find(|l| l.contains("[kernel: uninterruptible]"));
    let Some(line) = line else {
        panic!("no [kernel: uninterruptible] wait in the folded profile:\n{profile}\n{report}");
    };
    assert!(
        line.contains("forker") && line.contains("kernel_clone"),
        "the kernel wait should be forker's, under its top kernel function: {line}"
    );
}

#[test]
fn kernel_stall_without_frame_pointers() {
    kernel_stall(FramePointers::Omit);
}

#[test]
fn kernel_stall_with_frame_pointers() {
    kernel_stall(FramePointers::Keep);
}

/// The same target already in D state when observer attaches: the thread is seeded from /proc,
/// and its stall carries the kernel stack as /proc/PID/task/TID/stack names it.
#[test]
fn kernel_stall_already_going_on_at_attach() {
    require_root();
    let ws = Workspace::new("kernel_stall_attach");
    let binary = ws.build_target("kernel_stall", FramePointers::Omit);
    let target = Target::spawn(&binary, &["8"]);
    assert!(
        wait_until(Duration::from_secs(5), || !target
            .tids_named("forker")
            .is_empty()),
        "kernel_stall did not start thread forker"
    );
    let forker = target.tids_named("forker")[0];
    let state = || std::fs::read_to_string(format!("/proc/{}/task/{forker}/stat", target.pid()));
    assert!(
        wait_until(Duration::from_secs(5), || state().is_ok_and(|s| s
            .rsplit_once(") ")
            .is_some_and(|(_, r)| r.starts_with('D')))),
        "forker never went into D state"
    );
    let run = ObserverCmd::watch(target.pid())
        .opt("--duration", "3s")
        .opt("--stall-after", "1s")
        .alerts(&ws)
        .run_to_end(&ws, TIMEOUT);
    let report = run.report();
    assert_eq!(run.exit_code(), Some(0), "{report}");
    let stalls = run.of_kind("stall");
    let Some(stall) = stalls
        .iter()
        .find(|s| i64_field(s, "tid") == Some(i64::from(forker)))
    else {
        panic!("no stall for forker (tid {forker}), asleep in D since before the attach\n{report}");
    };
    assert_eq!(str_field(stall, "syscall"), Some("vfork"), "{stall}");
    assert!(
        stack_mentions(stall, "kernel_stack", "kernel_clone"),
        "kernel_stack should name kernel_clone: {stall}"
    );
    assert!(
        stack_mentions(stall, "stack", "forker_waits_for_vfork_child"),
        "stack should name forker_waits_for_vfork_child: {stall}"
    );
}
