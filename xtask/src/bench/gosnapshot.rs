//! Section 8: what following a Go process from memory costs observer (the goroutine snapshots
//! taken while a process's per-park probes are off), at 1,000, 10,000 and 100,000 goroutines:
//! `observer goroutines --pid P --snapshot-cost` against `goparks -idle N`.

use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::fmt::{table_header, table_row};
use super::loud;
use super::proc::{Proc, Stream};
use super::tools::Tools;

pub(super) const COUNTS: [usize; 3] = [1_000, 10_000, 100_000];

pub(super) struct SnapshotCost {
    pub(super) goroutines: usize,
    /// observer's own line: counts, median/min/max, the period it derives.
    pub(super) line: String,
}

pub(super) fn run_snapshot_costs(tools: &Tools, notes: &mut Vec<String>) -> Vec<SnapshotCost> {
    let Some(goparks) = &tools.goparks else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for n in COUNTS {
        match snapshot_cost(tools, goparks, n) {
            Ok(line) => {
                println!("  {n} goroutines: {line}");
                out.push(SnapshotCost {
                    goroutines: n,
                    line,
                });
            }
            Err(e) => {
                let msg = format!("8 snapshot cost at {n} goroutines: {e:#}");
                loud(&msg);
                notes.push(msg);
            }
        }
    }
    out
}

fn snapshot_cost(tools: &Tools, goparks: &std::path::Path, n: usize) -> Result<String> {
    let target = Proc::spawn(Command::new(goparks).args([
        "-pairs",
        "0",
        "-lockers",
        "0",
        "-idle",
        &n.to_string(),
        "-seconds",
        "60",
    ]))?;
    let ready = target.wait_line(Stream::Out, "ready", Duration::from_secs(60));
    let result = match ready {
        None => Err(anyhow::anyhow!("goparks -idle {n} never said it was ready")),
        Some(_) => Command::new(&tools.observer)
            .args([
                "goroutines",
                "--pid",
                &target.pid.to_string(),
                "--snapshot-cost",
            ])
            .output()
            .context("could not run observer goroutines --snapshot-cost"),
    };
    target.signal(libc::SIGKILL);
    let _ = target.finish(Duration::from_secs(5), |_| {});
    let output = result?;
    if !output.status.success() {
        bail!(
            "observer goroutines --snapshot-cost failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let line = String::from_utf8_lossy(&output.stdout).trim().to_string();
    // "pid P: 10008 goroutines ...": keep what follows the pid.
    Ok(line
        .split_once(": ")
        .map_or(line.clone(), |(_, rest)| rest.to_string()))
}

pub(super) fn render_snapshot_costs(s: &mut String, rows: &[SnapshotCost]) {
    let _ = writeln!(
        s,
        "### 8. Goroutine snapshots: observer's cost per snapshot\n\n\
         A Go process whose per-park probes are off (park rate over `--go-max-parks`) is followed \
         from memory: `runtime.allgs` and every `g` (neighbouring `g`s in one read), no stacks. \
         Measured with `observer goroutines --pid P --snapshot-cost` (ten reads, median) against \
         `goparks -pairs 0 -lockers 0 -idle N`; the period is the cost over 1% of one core, \
         within 200 ms..30 s. The target is never stopped; the cost is observer's.\n"
    );
    if rows.is_empty() {
        let _ = writeln!(s, "n/a (see the notes)\n");
        return;
    }
    table_header(
        s,
        &["goroutines parked".into(), "observer's measure".into()],
    );
    for r in rows {
        table_row(s, &[r.goroutines.to_string(), r.line.clone()]);
    }
    let _ = writeln!(s);
}
