//! Stacks that name code only: a frame-pointer walk through code built without frame pointers
//! must not turn the data `%rbp` held into frames.

use std::{path::PathBuf, time::Duration};

use observer_tests::{require_root, ObserverCmd, Workspace};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Compiles `targets/<name>.c` as distributions build release code: -O2, no frame pointers.
fn build_o2_nofp(ws: &Workspace, name: &str) -> PathBuf {
    ws.build_target_as(name, &["-O2", "-fomit-frame-pointer"], ws.path(name))
}

/// timed_waits.c sleeps 100 times in do_slow_export() with text in %rbp; each sleep is ended by
/// a timer, so its stack is the kernel's frame-pointer walk. Before the fix the folded profile
/// had one stack per text read as a return address (`[unknown] 0x302e302e302e3732;
/// do_slow_export ...`, ten of them); now the walk stops at the first address that is not code
/// and the profile has one stack for the one place the thread waits.
#[test]
fn timer_ended_waits_in_code_without_frame_pointers_give_one_stack_without_junk() {
    require_root();
    let ws = Workspace::new("stacks");
    let target = build_o2_nofp(&ws, "timed_waits");
    let folded = ws.path("waits.folded");
    let run = ObserverCmd::raw(&[
        "run",
        "--no-live",
        "--report-idle",
        "--folded",
        folded.to_str().unwrap(),
    ])
    .command(&target, &["2"])
    .run_to_end(&ws, TIMEOUT);
    let report = run.report();
    assert_eq!(run.exit_code(), Some(0), "{report}");
    let text = std::fs::read_to_string(&folded).expect("folded file written");
    let exporter: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("[idle];")) // sleeps are idle time
        .filter(|l| l.starts_with("timed_waits;exporter;"))
        .collect();
    assert_eq!(
        exporter.len(),
        1,
        "one stack for the one place the exporter waits:\n{text}"
    );
    let (stack, _) = exporter[0].rsplit_once(' ').expect("`stack weight` line");
    let frames: Vec<&str> = stack.split(';').skip(2).collect();
    assert!(
        frames
            .iter()
            .any(|f| f.starts_with("do_slow_export (timed_waits.c:")),
        "{frames:?}"
    );
    // No data shown as a frame: every address in this program is in a file or the vDSO, so any
    // `[unknown] 0x...` frame would be an address outside every executable mapping.
    assert!(
        frames.iter().all(|f| !f.starts_with("[unknown]")),
        "{frames:?}"
    );
    // A timer ends these waits, so none is sampled with a stack copy: the stack is the
    // frame-pointer walk, marked `[frame pointers only]` outermost, cut at the text and saying
    // so just inside that; a stack unwound from a copy would have no cut at all. Either way the
    // cut marker is never further in.
    let frames: Vec<&str> = frames
        .into_iter()
        .skip_while(|f| *f == "[frame pointers only]")
        .collect();
    let marks = frames
        .iter()
        .filter(|f| **f == "[truncated: not code]")
        .count();
    assert!(
        marks == 0 || (marks == 1 && frames[0] == "[truncated: not code]"),
        "the cut is marked once, outermost: {frames:?}"
    );
}
