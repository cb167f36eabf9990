//! `cargo xtask bench`: what observer costs the programs it watches and the machine it runs on,
//! measured as ratios against bare runs of the same workloads taken side by side in one invocation.
//!
//! Absolute figures on a shared 2-core VM move by tens of percent from one minute to the next; the
//! ratio of two runs a few seconds apart, repeated over rounds whose order alternates (bare first,
//! then bare last) so that drift cancels, moves much less. Nothing here asserts a time: the output
//! is a table for people (BENCHMARKS.md), never a test.

mod fmt;
mod gosnapshot;
mod load;
mod machine;
mod many;
mod ownstats;
mod proc;
mod progstats;
mod report;
mod report_own;
mod report_sidecar;
mod run;
mod scrape;
mod sidecar;
mod stats;
mod tools;
mod workloads;

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::tasks;
use crate::util::{display_path, is_root, workspace_root};

use machine::{load_average, MachineFacts};
use report::{render_report, splice_section, Report};
use tools::Tools;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Rounds per comparison. Default 7 (2 with --quick). In the goal sections (1-3) a round runs
    /// every variant 3 times and keeps each one's best; elsewhere once.
    #[arg(long, value_name = "N")]
    rounds: Option<usize>,
    /// CI-size run (about 2 minutes): 1-second workloads, 2 rounds. Prints the results and writes
    /// no file unless --output is given, so it never replaces the committed full-run table.
    #[arg(long)]
    quick: bool,
    /// Where to write the results (default: BENCHMARKS.md at the workspace root, full runs only).
    #[arg(long, value_name = "PATH")]
    output: Option<PathBuf>,
    /// Print the results only.
    #[arg(long, conflicts_with = "output")]
    no_write: bool,
    /// Run only the timed workloads of these sections (e.g. `--only 3b,3c`; `8` is the goroutine
    /// snapshot cost), skip the rest of the
    /// bench and print their tables: for checking a row while working on it. Writes no file.
    #[arg(
        long,
        value_name = "SECTIONS",
        value_delimiter = ',',
        conflicts_with = "output"
    )]
    only: Vec<String>,
}

pub fn run_bench(args: BenchArgs) -> Result<()> {
    if !is_root() {
        bail!("`cargo xtask bench` loads eBPF programs and changes kernel.bpf_stats_enabled: run it as root");
    }
    let plan = Plan::new(&args);
    let started = Instant::now();
    let observer = tasks::build()?;
    let tools = Tools::prepare(observer)?;
    let facts = MachineFacts::collect(&tools);
    for warning in &facts.warnings {
        loud(warning);
    }

    let mut notes: Vec<String> = tools.notes.clone();
    let mut results = Vec::new();
    for workload in workloads::workloads(&plan, &tools, &mut notes) {
        if !args.only.is_empty() && !args.only.iter().any(|s| s == workload.section) {
            continue;
        }
        println!("bench: {} ({} rounds)", workload.title, plan.rounds);
        results.push(run::run_workload(&plan, &tools, workload, &mut notes));
    }
    if args.only.iter().any(|s| s == "8") {
        println!("bench: goroutine snapshot cost");
        let costs = gosnapshot::run_snapshot_costs(&tools, &mut notes);
        let mut s = String::new();
        gosnapshot::render_snapshot_costs(&mut s, &costs);
        println!("\n{s}");
        if results.is_empty() {
            return Ok(());
        }
    }
    if !args.only.is_empty() {
        if results.is_empty() {
            bail!("--only {}: no such section", args.only.join(","));
        }
        println!("\n{}", report::render_workloads(&results, &notes));
        println!("bench: done in {:.0} s", started.elapsed().as_secs_f64());
        return Ok(());
    }
    println!(
        "bench: 2,000-thread process under `observer watch` ({} rounds)",
        plan.rounds
    );
    let many = many::run_many_threads(&plan, &tools, &mut notes);
    println!(
        "bench: `observer sidecar` on a host running {} threads in {} processes ({} rounds)",
        plan.many_threads, plan.sidecar_procs, plan.rounds
    );
    let sidecar = sidecar::run_sidecar(&plan, &tools, &mut notes);
    println!("bench: per-program cost from the kernel's BPF run-time statistics");
    let stats = progstats::run_prog_stats(&plan, &tools, &mut notes);
    println!(
        "bench: goroutine snapshot cost at {:?} goroutines",
        gosnapshot::COUNTS
    );
    let snapshots = gosnapshot::run_snapshot_costs(&tools, &mut notes);

    let end_load = load_average();
    let report = render_report(&Report {
        plan: &plan,
        facts: &facts,
        tools: &tools,
        results: &results,
        many: &many,
        sidecar: &sidecar,
        stats: &stats,
        snapshots: &snapshots,
        notes: &notes,
        end_load,
        elapsed: started.elapsed(),
    });
    println!("\n{report}");

    let target = match (
        &args.output,
        args.no_write || (plan.quick && args.output.is_none()),
    ) {
        (_, true) => None,
        (Some(path), false) => Some(path.clone()),
        (None, false) => Some(workspace_root().join("BENCHMARKS.md")),
    };
    if let Some(path) = target {
        // Read right before writing: the hand-written parts may have changed during the run.
        let old = fs::read_to_string(&path).unwrap_or_default();
        fs::write(&path, splice_section(&old, &report))
            .with_context(|| format!("could not write {}", path.display()))?;
        println!("bench: results written to {}", display_path(&path));
    }
    println!("bench: done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn loud(message: &str) {
    eprintln!("!!! bench: {message}");
}

/// How long and how often.
struct Plan {
    rounds: usize,
    quick: bool,
    /// Length of each timed workload, in seconds.
    secs: u32,
    /// Length of each try in the best-of sections.
    short_secs: u32,
    /// Tries per variant and round in the goal sections.
    best_of: usize,
    syscall_loops: u64,
    many_threads: u32,
    /// The sidecar case spreads `many_threads` over this many processes: a host runs many.
    sidecar_procs: u32,
    /// The sidecar case's measured steady window, after attach and settling.
    sidecar_window: Duration,
    uprobe_calls: u64,
}

impl Plan {
    fn new(args: &BenchArgs) -> Plan {
        let quick = args.quick;
        Plan {
            rounds: args.rounds.unwrap_or(Plan::default_rounds(quick)).max(1),
            quick,
            secs: if quick { 1 } else { 2 },
            short_secs: 1,
            best_of: if quick { 1 } else { 3 },
            // About one second of getppid calls here.
            syscall_loops: if quick { 1_000_000 } else { 6_000_000 },
            many_threads: 2000,
            sidecar_procs: 10,
            sidecar_window: Duration::from_secs(if quick { 2 } else { 4 }),
            uprobe_calls: if quick { 50_000 } else { 200_000 },
        }
    }

    fn default_rounds(quick: bool) -> usize {
        if quick {
            2
        } else {
            7
        }
    }

    /// Longest a single workload run may take before it is killed and counted as failed: the
    /// workload itself plus bpftrace's compile and attach.
    fn run_timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.secs) + 90)
    }
}

/// Round `round` runs the variants in order when even and in reverse when odd, so that a slow
/// drift of the machine favours neither bare nor observed runs.
fn round_order<T: Copy>(variants: &[T], round: usize) -> Vec<T> {
    let mut order = variants.to_vec();
    if round % 2 == 1 {
        order.reverse();
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_alternate() {
        let v = [1, 2, 3];
        assert_eq!(round_order(&v, 0), vec![1, 2, 3]);
        assert_eq!(round_order(&v, 1), vec![3, 2, 1]);
        assert_eq!(round_order(&v, 2), vec![1, 2, 3]);
    }
}
