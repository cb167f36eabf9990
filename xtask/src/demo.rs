//! `cargo xtask demo`: one C program with three classic problems, observed end to end.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::tasks;
use crate::util::{describe, display_path, run, target_dir, workspace_root};

pub fn run_demo() -> Result<()> {
    let observer = tasks::build()?;
    let out_dir = target_dir().join("demo");
    fs::create_dir_all(&out_dir)
        .with_context(|| format!("could not create {}", out_dir.display()))?;

    let source = workspace_root().join("demo").join("demo.c");
    let demo = out_dir.join("demo");
    // Built the way a distribution ships C code: optimised, no frame pointers, with debug info
    // (which a distribution would put in a separate -dbgsym package).
    run(Command::new("gcc")
        .args(["-O1", "-g", "-pthread", "-fomit-frame-pointer", "-o"])
        .arg(&demo)
        .arg(&source))?;

    let alerts = out_dir.join("alerts.jsonl");
    let folded = out_dir.join("demo.folded");
    // Stale output from an earlier run would be mistaken for this run's.
    for stale in [&alerts, &folded] {
        if stale.exists() {
            fs::remove_file(stale)
                .with_context(|| format!("could not remove {}", stale.display()))?;
        }
    }

    let mut cmd = Command::new(&observer);
    cmd.args([
        "run",
        "--threshold",
        "100ms",
        "--stall-after",
        "2s",
        "--alerts",
    ])
    .arg(&alerts)
    .arg("--folded")
    .arg(&folded)
    .arg("--")
    .arg(&demo);
    println!("$ {}", describe(&cmd));
    let status = cmd.status().context("could not start observer")?;
    if !status.success() {
        bail!("observer exited with {status}");
    }

    print_alerts(&alerts)?;
    print_folded_hint(&folded);
    Ok(())
}

fn print_alerts(path: &Path) -> Result<()> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("observer wrote no alerts file at {}", path.display()))?;
    let mut count = 0;
    println!();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        count += 1;
        match serde_json::from_str::<Value>(line) {
            Ok(alert) => {
                let kind = alert.get("kind").and_then(Value::as_str).unwrap_or("?");
                println!("== alert {count}: {kind}");
                println!("{}", serde_json::to_string_pretty(&alert)?);
            }
            // Show what observer wrote even when it is not JSON: that is itself worth seeing.
            Err(e) => println!("== alert {count}: not JSON ({e}): {line}"),
        }
        println!();
    }
    println!("demo: {count} alert(s) in {}", display_path(path));
    Ok(())
}

fn print_folded_hint(folded: &Path) {
    let shown = display_path(folded);
    if folded.is_file() {
        println!("demo: folded stacks in {shown}; render a flame graph with");
        println!("  inferno-flamegraph < {shown} > demo.svg     (cargo install inferno)");
        println!(
            "  flamegraph.pl {shown} > demo.svg            (github.com/brendangregg/FlameGraph)"
        );
    } else {
        println!("demo: observer wrote no folded stacks at {shown}");
    }
}
