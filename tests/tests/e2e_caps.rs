//! The capability sets observer is deployed with, and the one it advises, run every probe:
//! the real observer under exactly those capabilities (no more) raises a goroutine-level
//! alert on a Go program and a lock_hold on a C program.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use observer_tests::{
    read_alerts, require_root, str_field, FramePointers, GoVersion, ObserverCmd, ObserverRun,
    Workspace,
};

const TIMEOUT: Duration = Duration::from_secs(40);
const NOBODY: u32 = 65534;

fn deploy_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The capabilities of a systemd unit setting (`CAP_BPF CAP_PERFMON ...`), as setpriv names them.
fn systemd_setting(setting: &str) -> BTreeSet<String> {
    let unit = deploy_file("observer.service");
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix(setting))
        .unwrap_or_else(|| panic!("deploy/observer.service has no {setting}"));
    line.split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_lowercase())
        .collect()
}

fn systemd_caps() -> BTreeSet<String> {
    systemd_setting("CapabilityBoundingSet=")
}

/// The DaemonSet's `capabilities.add` list.
fn daemonset_caps() -> BTreeSet<String> {
    let yaml = deploy_file("daemonset.yaml");
    let line = yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("add:"))
        .expect("deploy/daemonset.yaml has no capabilities add: list");
    line.trim()
        .trim_matches(['[', ']'])
        .split(',')
        .map(|c| c.trim().trim_matches('"').to_lowercase())
        .filter(|c| !c.is_empty())
        .collect()
}

/// How observer is started with exactly `caps`.
enum Identity {
    /// uid 0 whose bounding set holds only `caps` (the systemd unit, the DaemonSet).
    Root,
    /// An ordinary user given `caps` as ambient capabilities (what `setcap` gives a user).
    Nobody,
}

fn setpriv(caps: &BTreeSet<String>, who: &Identity) -> Vec<String> {
    let list: String = std::iter::once("-all".to_string())
        .chain(caps.iter().map(|c| format!("+{c}")))
        .collect::<Vec<_>>()
        .join(",");
    match who {
        Identity::Root => vec![
            "setpriv".into(),
            format!("--bounding-set={list}"),
            "--".into(),
        ],
        Identity::Nobody => vec![
            "setpriv".into(),
            format!("--reuid={NOBODY}"),
            format!("--regid={NOBODY}"),
            "--clear-groups".into(),
            format!("--inh-caps={list}"),
            format!("--ambient-caps={list}"),
            "--".into(),
        ],
    }
}

/// A directory the observer (running as `who`) may write its alerts into.
fn alerts_path(ws: &Workspace, who: &Identity) -> PathBuf {
    let dir = ws.path("out");
    fs::create_dir(&dir).unwrap();
    if let Identity::Nobody = who {
        chown(&dir, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    dir.join("alerts.jsonl")
}

fn observe(
    ws: &Workspace,
    caps: &BTreeSet<String>,
    who: &Identity,
    program: &Path,
    args: &[&str],
) -> (ObserverRun, Vec<observer_tests::Value>) {
    let alerts = alerts_path(ws, who);
    let run = ObserverCmd::run()
        .opt("--stall-after", "1s")
        .opt("--alerts", alerts.to_str().unwrap())
        .binary(&ws.public_observer_copy())
        .wrapped_in(&setpriv(caps, who))
        .command(program, args)
        .run_to_end(ws, TIMEOUT);
    let alerts = if alerts.exists() {
        read_alerts(&alerts)
    } else {
        Vec::new()
    };
    (run, alerts)
}

/// Under exactly `caps`: the Go program's forgotten WaitGroup is a goroutine_stall, every
/// goroutine probe attached without a warning; the C program's held mutex is a lock_hold.
fn every_probe_runs_under(caps: &BTreeSet<String>, who: Identity, test: &str) {
    require_root();
    let Some(go) = GoVersion::Go127.toolchain(test) else {
        return;
    };
    let ws = Workspace::new("caps-go");
    let bin = ws.build_go(&go, "patterns/waitgroup_skip.go", false);
    let (run, alerts) = observe(&ws, caps, &who, &bin, &["3"]);
    let report = format!("capabilities {caps:?}\n{}", run.report());
    assert!(
        !run.stderr.contains("setpriv:"),
        "setpriv could not set the capabilities\n{report}"
    );
    assert_eq!(run.exit_code(), Some(0), "{report}");
    assert!(
        run.stderr.contains("goroutine probes attached"),
        "the goroutine probes did not attach\n{report}"
    );
    assert!(
        !run.stderr.contains("warning"),
        "a capability is missing: observer warned\n{report}"
    );
    assert!(
        alerts
            .iter()
            .any(|a| str_field(a, "kind") == Some("goroutine_stall")),
        "no goroutine_stall for the forgotten WaitGroup: {alerts:?}\n{report}"
    );

    let ws = Workspace::new("caps-c");
    let target = ws.build_target("lock_hold", FramePointers::Omit);
    let (run, alerts) = observe(&ws, caps, &who, &target, &["2"]);
    let report = format!("capabilities {caps:?}\n{}", run.report());
    assert_eq!(run.exit_code(), Some(0), "{report}");
    assert!(
        alerts
            .iter()
            .any(|a| str_field(a, "kind") == Some("lock_hold")),
        "no lock_hold on the held mutex: {alerts:?}\n{report}"
    );
}

#[test]
fn both_deploy_files_grant_the_same_capabilities() {
    assert_eq!(
        systemd_caps(),
        daemonset_caps(),
        "deploy/observer.service and deploy/daemonset.yaml disagree"
    );
    assert_eq!(
        systemd_caps(),
        systemd_setting("AmbientCapabilities="),
        "the unit's bounding set and ambient set differ"
    );
}

#[test]
fn the_deploy_capability_set_runs_every_probe() {
    every_probe_runs_under(
        &systemd_caps(),
        Identity::Root,
        "the_deploy_capability_set_runs_every_probe",
    );
}

/// The capabilities named by the `setcap` line observer prints to a user without them.
fn advised_caps(ws: &Workspace) -> BTreeSet<String> {
    let run = ObserverCmd::watch(std::process::id())
        .opt("--duration", "1s")
        .binary(&ws.public_observer_copy())
        .wrapped_in(&setpriv(&BTreeSet::new(), &Identity::Nobody))
        .run_to_end(ws, TIMEOUT);
    let report = run.report();
    assert_eq!(run.exit_code(), Some(2), "{report}");
    let setcap = run
        .stderr
        .split("setcap ")
        .nth(1)
        .unwrap_or_else(|| panic!("the refusal has no setcap advice\n{report}"));
    let list = setcap.split('+').next().unwrap_or_default();
    list.split(',')
        .map(|c| c.trim().trim_start_matches("cap_").to_string())
        .collect()
}

#[test]
fn the_advised_capability_set_runs_every_probe() {
    require_root();
    let caps = advised_caps(&Workspace::new("caps-advice"));
    every_probe_runs_under(
        &caps,
        Identity::Nobody,
        "the_advised_capability_set_runs_every_probe",
    );
}
