//! Goroutine pprof labels (`pprof.Do`) on goroutine alerts and on the goroutine samples of the
//! pprof profile, read from each goroutine's `g` in memory, on an old (1.19: the labels are a
//! Go map) and a current (1.27: a sorted slice) toolchain.
//!
//! The program is `goprogs/patterns/labels.go`: under `pprof.Do(ctx, pprof.Labels("request_id",
//! "r-42", "route", "/cache"), ...)` a goroutine stalls 2.5 s on a sync.Mutex, goroutines leak
//! parked in a select, and a handler recovers a panic. A test is skipped, loudly, only when its
//! toolchain is missing.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use observer_tests::{
    require_root, stack_mentions, u64_field, GoToolchain, GoVersion, ObserverCmd, ObserverRun,
    Value, Workspace, MS,
};

const TIMEOUT: Duration = Duration::from_secs(60);
const SECOND: u64 = 1000 * MS;

macro_rules! for_each_go_version {
    ($($case:ident),* $(,)?) => {
        mod go119 {
            $(#[test]
            fn $case() {
                super::$case(super::GoVersion::Go119, concat!("go119::", stringify!($case)));
            })*
        }
        mod go127 {
            $(#[test]
            fn $case() {
                super::$case(super::GoVersion::Go127, concat!("go127::", stringify!($case)));
            })*
        }
    };
}

for_each_go_version!(
    labels_on_alerts_and_profile_samples,
    labels_from_a_stripped_binary,
    labels_when_goroutines_are_followed_from_memory,
);

fn toolchain(version: GoVersion, test: &str) -> Option<GoToolchain> {
    require_root();
    version.toolchain(test)
}

fn expected() -> Value {
    serde_json::json!({"request_id": "r-42", "route": "/cache"})
}

/// `observer run --stall-after 1s --pprof P -- labels SECS [mode]`.
fn observe(ws: &Workspace, binary: &Path, args: &[&str]) -> (ObserverRun, std::path::PathBuf) {
    let pprof = ws.path("goroutines.pb.gz");
    let run = ObserverCmd::run()
        .opt("--stall-after", "1s")
        .opt("--pprof", pprof.to_str().unwrap())
        .alerts(ws)
        .command(binary, args)
        .run_to_end(ws, TIMEOUT);
    (run, pprof)
}

/// The one alert of `kind` whose `field` stack names `function`.
fn naming<'a>(run: &'a ObserverRun, kind: &str, field: &str, function: &str) -> Vec<&'a Value> {
    run.of_kind(kind)
        .into_iter()
        .filter(|a| stack_mentions(a, field, function))
        .collect()
}

fn assert_labeled(alert: Option<&&Value>, what: &str, report: &str) {
    let Some(alert) = alert else {
        panic!("no {what}\n{report}");
    };
    assert_eq!(
        alert.get("labels"),
        Some(&expected()),
        "{what} must carry the goroutine's pprof labels: {alert}\n{report}"
    );
}

/// No goroutine alert carries labels other than the program's one set (a wrong label is
/// worse than none).
fn assert_no_wrong_labels(run: &ObserverRun, report: &str) {
    for a in &run.alerts {
        if let Some(labels) = a.get("labels") {
            assert_eq!(labels, &expected(), "a label set never set: {a}\n{report}");
        }
    }
}

fn assert_alerts(run: &ObserverRun, report: &str, leak: bool) {
    assert_eq!(
        run.exit_code(),
        Some(0),
        "observer passes on status 0\n{report}"
    );
    let stalls = naming(run, "goroutine_stall", "stack", "main.lookupTagged");
    assert_labeled(
        stalls.first(),
        "goroutine_stall naming main.lookupTagged",
        report,
    );
    assert!(
        u64_field(stalls[0], "blocked_ns").unwrap_or(0) >= SECOND,
        "{report}"
    );
    let waits = naming(run, "goroutine_wait", "stack", "main.lookupTagged");
    assert_labeled(
        waits.first(),
        "goroutine_wait naming main.lookupTagged",
        report,
    );
    let stacks = waits[0]
        .get("waiter_stacks")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    assert!(
        stacks
            .iter()
            .any(|s| s.get("labels") == Some(&serde_json::json!([expected()]))),
        "a waiter stack lists the waiters' label sets: {}\n{report}",
        waits[0]
    );
    if leak {
        let leaks = naming(run, "goroutine_leak", "stack", "main.fetchTagged");
        assert_labeled(
            leaks.first(),
            "goroutine_leak sampling main.fetchTagged",
            report,
        );
    }
    let panics: Vec<&Value> = run
        .of_kind("go_panic")
        .into_iter()
        .filter(|p| stack_mentions(p, "stack", "main.parseTagged"))
        .collect();
    assert_labeled(panics.first(), "go_panic in main.parseTagged", report);
    assert_no_wrong_labels(run, report);
}

/// `go tool pprof ARGS FILE` with the `go` on PATH (installed by setup for every Go test).
fn go_pprof(args: &[&str], file: &Path) -> String {
    let out = Command::new("go")
        .env("GOTOOLCHAIN", "local")
        .arg("tool")
        .arg("pprof")
        .args(args)
        .arg(file)
        .output()
        .expect("`go` (Go 1.27, installed by `cargo xtask setup`) runs");
    assert!(
        out.status.success(),
        "go tool pprof {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The long waits of the tagged goroutine are samples with the labels: `-tagfocus` keeps them.
fn assert_profile(pprof: &Path, report: &str) {
    let tags = go_pprof(&["-tags"], pprof);
    assert!(
        tags.contains("request_id") && tags.contains("r-42") && tags.contains("/cache"),
        "the profile's tags list the labels:\n{tags}\n{report}"
    );
    let focused = go_pprof(&["-tagfocus=request_id=r-42", "-top"], pprof);
    assert!(
        focused.contains("main.lookupTagged"),
        "-tagfocus=request_id=r-42 keeps the tagged goroutine's mutex wait:\n{focused}\n{report}"
    );
    // The untagged holder's 2.5 s sleep (an idle wait) is in the profile, not under the
    // tagged request's labels. (The request's own last sleep may have no labels: its goroutine
    // leaves pprof.Do right after it, before observer reads them.)
    let idle = ["-sample_index=idle_delay", "-top"];
    let all_idle = go_pprof(&idle, pprof);
    let focused_idle = go_pprof(&[&["-tagfocus=request_id=r-42"][..], &idle].concat(), pprof);
    assert!(
        all_idle.contains("main.holdCacheLock") && !focused_idle.contains("main.holdCacheLock"),
        "idle samples: the untagged one not under -tagfocus:\n{all_idle}\n{focused_idle}\n{report}"
    );
    let other = go_pprof(&["-tagfocus=request_id=r-41", "-top"], pprof);
    assert!(
        !other.contains("main.lookupTagged"),
        "no sample carries a label never set:\n{other}\n{report}"
    );
}

fn labels_on_alerts_and_profile_samples(version: GoVersion, test: &str) {
    let Some(go) = toolchain(version, test) else {
        return;
    };
    let ws = Workspace::new("go-labels");
    let bin = ws.build_go(&go, "patterns/labels.go", false);
    let (run, pprof) = observe(&ws, &bin, &["8"]);
    let report = format!("{}\n{}", go.reported, run.report());
    assert_alerts(&run, &report, true);
    assert_profile(&pprof, &report);
}

/// Without DWARF, `g.labels` comes from the measured table (1.19, 1.27).
fn labels_from_a_stripped_binary(version: GoVersion, test: &str) {
    let Some(go) = toolchain(version, test) else {
        return;
    };
    let ws = Workspace::new("go-labels-stripped");
    let bin = ws.build_go(&go, "patterns/labels.go", true);
    let (run, _) = observe(&ws, &bin, &["5"]);
    let report = format!("{}\n{}", go.reported, run.report());
    assert_alerts(&run, &report, false);
}

/// A ping-pong parks goroutines fast enough that the park probes are duty-cycled: the stall
/// is found from memory snapshots, which read the labels of the goroutines they report.
fn labels_when_goroutines_are_followed_from_memory(version: GoVersion, test: &str) {
    let Some(go) = toolchain(version, test) else {
        return;
    };
    let ws = Workspace::new("go-labels-busy");
    let bin = ws.build_go(&go, "patterns/labels.go", false);
    let (run, _) = observe(&ws, &bin, &["6", "busy"]);
    let report = format!("{}\n{}", go.reported, run.report());
    assert!(
        run.stderr.contains("park probes on"),
        "the budget must have duty-cycled the park probes\n{report}"
    );
    assert_eq!(run.exit_code(), Some(0), "{report}");
    // The stall and the wait are found from snapshots here (not always both: a snapshot
    // period can fall across the stall threshold; seen once in five runs on 1.19): every one
    // found carries the labels, and at least one is found.
    let mut found = naming(&run, "goroutine_stall", "stack", "main.lookupTagged");
    found.extend(naming(&run, "goroutine_wait", "stack", "main.lookupTagged"));
    assert!(
        !found.is_empty(),
        "no goroutine_stall or goroutine_wait naming main.lookupTagged\n{report}"
    );
    for alert in &found {
        assert_labeled(Some(alert), "alert naming main.lookupTagged", &report);
    }
    assert_no_wrong_labels(&run, &report);
}
