//! Outputs people already use (pprof, SVG, folded) and incident recordings read after the
//! process and its binary are gone.

use std::{path::Path, process::Command, time::Duration};

use observer_tests::{
    observer_bin, parse_alerts, require_root, stack_mentions, str_field, FramePointers,
    ObserverCmd, Target, Workspace,
};

const TIMEOUT: Duration = Duration::from_secs(30);

/// lock_hold.c under `observer run` with every profile output; the real `go tool pprof` reads
/// the pprof file and names the contended function.
#[test]
fn pprof_svg_and_folded_name_the_contended_function() {
    require_root();
    let ws = Workspace::new("outputs");
    let target = ws.build_target("lock_hold", FramePointers::Omit);
    let (pprof, svg, folded) = (
        ws.path("blocked.pb.gz"),
        ws.path("blocked.svg"),
        ws.path("blocked.folded"),
    );
    let run = ObserverCmd::run()
        .opt("--pprof", pprof.to_str().unwrap())
        .opt("--svg", svg.to_str().unwrap())
        .opt("--folded", folded.to_str().unwrap())
        .alerts(&ws)
        .command(&target, &["3"])
        .run_to_end(&ws, TIMEOUT);
    let report = run.report();
    assert_eq!(run.exit_code(), Some(0), "{report}");

    let folded_text = std::fs::read_to_string(&folded).expect("folded file written");
    let line = folded_text
        .lines()
        .find(|l| l.contains("worker_update"))
        .unwrap_or_else(|| panic!("no folded line names worker_update:\n{folded_text}"));
    let (stack, weight) = line.rsplit_once(' ').expect("`stack weight` line");
    assert!(
        stack.starts_with("lock_hold") && stack.contains(";worker;"),
        "{line}"
    );
    assert!(
        weight.parse::<u64>().expect("numeric weight") > 200_000_000,
        "{line}"
    );

    let svg_text = std::fs::read_to_string(&svg).expect("svg written");
    assert!(
        svg_text.starts_with("<?xml") && svg_text.contains("worker_update"),
        "svg lacks the frame"
    );

    let Some(go) = which("go") else {
        eprintln!("SKIPPED (loudly): `go` is not on PATH; `cargo xtask setup` installs it. pprof file not checked by go tool pprof");
        return;
    };
    let top = Command::new(&go)
        .args(["tool", "pprof", "-top", pprof.to_str().unwrap()])
        .output()
        .expect("go tool pprof runs");
    let top_text = String::from_utf8_lossy(&top.stdout);
    assert!(
        top.status.success(),
        "go tool pprof -top failed: {}",
        String::from_utf8_lossy(&top.stderr)
    );
    assert!(top_text.contains("Type: delay"), "{top_text}");
    assert!(
        top_text.contains("worker_update"),
        "pprof -top does not name worker_update:\n{top_text}"
    );
    let traces = Command::new(&go)
        .args(["tool", "pprof", "-traces", pprof.to_str().unwrap()])
        .output()
        .expect("go tool pprof runs");
    let traces_text = String::from_utf8_lossy(&traces.stdout);
    assert!(
        traces_text.contains("thread:") && traces_text.contains("worker"),
        "{traces_text}"
    );
    // Real mappings: the target's own file with its build id, its code at file offsets.
    let path = std::fs::canonicalize(&target).expect("target path");
    assert_mapping_with_build_id(&go, &pprof, &path, &gnu_build_id(&target));
}

/// `go tool pprof -raw` lists a Mapping for the file at `path` (as the process saw it) with its
/// GNU build id, and some location lies in it.
fn assert_mapping_with_build_id(go: &Path, pprof: &Path, path: &Path, build_id: &str) {
    let raw = Command::new(go)
        .args(["tool", "pprof", "-raw"])
        .arg(pprof)
        .output()
        .expect("go tool pprof runs");
    let raw_text = String::from_utf8_lossy(&raw.stdout);
    assert!(
        raw.status.success(),
        "go tool pprof -raw failed: {}",
        String::from_utf8_lossy(&raw.stderr)
    );
    let mappings = raw_text
        .split("\nMappings\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no Mappings section:\n{raw_text}"));
    // `1: 0x10000000/0x10002000/0x0 /path/to/lock_hold 6f1c...e2 [FN][FL][LN][IN]`
    let line = mappings
        .lines()
        .find(|l| l.split_whitespace().nth(2) == path.to_str())
        .unwrap_or_else(|| panic!("no mapping for {}:\n{raw_text}", path.display()));
    assert_eq!(line.split_whitespace().nth(3), Some(build_id), "{line}");
    let id = line.split(':').next().expect("mapping id").trim();
    assert!(
        raw_text.contains(&format!(" M={id} ")),
        "no location in mapping {id}:\n{raw_text}"
    );
}

/// The GNU build id of an ELF file, as `readelf -n` prints it.
fn gnu_build_id(file: &Path) -> String {
    let out = Command::new("readelf")
        .arg("-n")
        .arg(file)
        .output()
        .expect("readelf runs (binutils, installed with gcc)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("{} has no build id", file.display()))
}

/// A recording taken while the process lived; the process exits and its binary is deleted;
/// `observer report` still replays the alerts with symbolized stacks and renders the profile.
#[test]
fn recording_outlives_the_process_and_its_binary() {
    require_root();
    let ws = Workspace::new("record");
    let built = ws.build_target("lock_hold", FramePointers::Omit);
    let binary = ws.path("doomed_lock_hold");
    std::fs::copy(&built, &binary).expect("copy target");
    let target = Target::spawn(&binary, &["3"]);
    let recording = ws.path("incident.obsrec");
    let run = ObserverCmd::raw(&[
        "record",
        "--pid",
        &target.pid().to_string(),
        "-o",
        recording.to_str().unwrap(),
    ])
    .run_to_end(&ws, TIMEOUT);
    let report = run.report();
    assert_eq!(run.exit_code(), Some(0), "{report}");
    let build_id = gnu_build_id(&binary);
    let binary_path = std::fs::canonicalize(&binary).expect("binary path");
    std::fs::remove_file(&binary).expect("delete the target's binary");

    let json = Command::new(observer_bin())
        .args(["report", recording.to_str().unwrap(), "--format", "json"])
        .output()
        .expect("observer report runs");
    assert!(
        json.status.success(),
        "{}",
        String::from_utf8_lossy(&json.stderr)
    );
    let alerts = parse_alerts(
        &String::from_utf8_lossy(&json.stdout),
        "observer report --format json",
    );
    let wait = alerts
        .iter()
        .find(|a| str_field(a, "kind") == Some("lock_hold"))
        .unwrap_or_else(|| panic!("no lock_hold replayed: {alerts:?}\n{report}"));
    assert!(stack_mentions(wait, "stack", "worker_update"), "{wait}");
    assert!(
        stack_mentions(wait, "release_stack", "maintenance_compact"),
        "{wait}"
    );
    assert!(
        alerts
            .iter()
            .any(|a| str_field(a, "kind") == Some("process_exit")),
        "{alerts:?}"
    );

    // The alert stacks are kept as code addresses too: (file, build id, offset) per frame.
    let text = Command::new(observer_bin())
        .args(["report", recording.to_str().unwrap(), "--format", "text"])
        .output()
        .expect("observer report runs");
    let text = String::from_utf8_lossy(&text.stdout);
    let addresses_of = |field: &str| {
        text.lines().any(|l| {
            l.trim_start().starts_with(&format!("{field} at "))
                && l.contains(" doomed_lock_hold+0x")
        })
    };
    assert!(
        addresses_of("stack"),
        "no addresses in the binary for the alert stack in the text report:\n{text}"
    );
    assert!(
        addresses_of("release_stack"),
        "no addresses in the binary for the waker stack in the text report:\n{text}"
    );
    assert!(
        text.contains(&format!(
            "doomed_lock_hold = {} (build id {build_id})",
            binary_path.display()
        )),
        "the module legend should name the deleted binary and its build id:\n{text}"
    );

    let folded = Command::new(observer_bin())
        .args(["report", recording.to_str().unwrap(), "--format", "folded"])
        .output()
        .expect("observer report runs");
    assert!(String::from_utf8_lossy(&folded.stdout).contains("worker_update"));

    // pprof from the recording alone: names from its symbol table, real mappings and build ids.
    let pprof = ws.path("from-recording.pb.gz");
    let out = Command::new(observer_bin())
        .args([
            "report",
            recording.to_str().unwrap(),
            "--format",
            "pprof",
            "-o",
        ])
        .arg(&pprof)
        .output()
        .expect("observer report runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if let Some(go) = which("go") {
        let top = Command::new(&go)
            .args(["tool", "pprof", "-top"])
            .arg(&pprof)
            .output()
            .expect("go tool pprof runs");
        let top_text = String::from_utf8_lossy(&top.stdout);
        assert!(top_text.contains("worker_update"), "{top_text}");
        assert!(
            top_text.contains(&format!("Build ID: {build_id}")),
            "{top_text}"
        );
        assert_mapping_with_build_id(&go, &pprof, &binary_path, &build_id);
    } else {
        eprintln!("SKIPPED (loudly): `go` is not on PATH; pprof from the recording not checked");
    }

    // Cut short: readable up to the last whole block, with a note.
    let bytes = std::fs::read(&recording).unwrap();
    let cut = ws.path("cut.obsrec");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let text = Command::new(observer_bin())
        .args(["report", cut.to_str().unwrap()])
        .output()
        .expect("observer report runs");
    assert!(
        text.status.success(),
        "{}",
        String::from_utf8_lossy(&text.stderr)
    );
    assert!(String::from_utf8_lossy(&text.stderr).contains("cut short"));

    // Corrupt: a clear error, not a panic.
    let mut bad = bytes.clone();
    let mid = bad.len() / 3;
    bad[mid] ^= 0x5a;
    let corrupt = ws.path("corrupt.obsrec");
    std::fs::write(&corrupt, &bad).unwrap();
    let out = Command::new(observer_bin())
        .args(["report", corrupt.to_str().unwrap()])
        .output()
        .expect("observer report runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("corrupt") || err.contains("checksum"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}
