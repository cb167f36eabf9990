//! Running the variants of one workload, round after round, and what each run gave.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::Duration;

use anyhow::{bail, Result};

use super::fmt::fmt_opt_si;
use super::ownstats::{observer_stats, ObserverStats};
use super::proc::{command, tail, Proc, Stream};
use super::tools::Tools;
use super::workloads::{Compare, Variant, Workload};
use super::{loud, round_order, Plan};
use crate::util::display_path;

#[derive(Debug, Clone)]
pub(super) struct RunResult {
    pub(super) metrics: Vec<Option<f64>>,
    pub(super) observer: Option<ObserverStats>,
    /// With `best_of` > 1: the first metric of every try of this round, in run order (this
    /// result is the best of them).
    pub(super) tries: Vec<f64>,
}

pub(super) struct WorkloadResult {
    pub(super) workload: Workload,
    /// Per variant, one entry per round.
    pub(super) runs: BTreeMap<Variant, Vec<Option<RunResult>>>,
    /// The command line of each variant, for the report.
    pub(super) commands: BTreeMap<Variant, String>,
}

pub(super) fn run_workload(
    plan: &Plan,
    tools: &Tools,
    workload: Workload,
    notes: &mut Vec<String>,
) -> WorkloadResult {
    let variants: Vec<Variant> = workload
        .variants
        .iter()
        .copied()
        .filter(|v| {
            let ok = !v.needs_bpftrace() || tools.bpftrace;
            if !ok {
                notes.push(format!(
                    "{}: {} is n/a (no bpftrace)",
                    workload.section,
                    v.label()
                ));
            }
            ok
        })
        .collect();
    let mut runs: BTreeMap<Variant, Vec<Option<RunResult>>> = BTreeMap::new();
    let mut commands = BTreeMap::new();
    for v in &variants {
        commands.insert(*v, describe_variant(tools, &workload.argv, *v));
    }
    for round in 0..plan.rounds {
        // best_of passes over all variants, each pass in alternating order, so that a slow
        // drift of the machine spreads over every variant's tries alike.
        let mut tries: BTreeMap<Variant, Vec<Result<RunResult>>> = BTreeMap::new();
        for pass in 0..workload.best_of.max(1) {
            for v in round_order(&variants, round + pass) {
                tries
                    .entry(v)
                    .or_default()
                    .push(run_variant(plan, tools, &workload, v));
            }
        }
        for v in &variants {
            let lower_is_better = workload
                .metrics
                .first()
                .is_some_and(|m| m.compare == Compare::Difference);
            let outcome = best_try(tries.remove(v).unwrap_or_default(), lower_is_better);
            let entry = runs.entry(*v).or_default();
            match outcome {
                Ok(r) => {
                    println!(
                        "  round {} {:<34} {}{}",
                        round + 1,
                        v.label(),
                        r.metrics
                            .iter()
                            .zip(&workload.metrics)
                            .map(|(m, spec)| format!("{} {}", fmt_opt_si(*m), spec.label))
                            .collect::<Vec<_>>()
                            .join(", "),
                        if r.tries.len() > 1 {
                            format!(
                                " (best of {})",
                                r.tries
                                    .iter()
                                    .map(|t| fmt_opt_si(Some(*t)))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        } else {
                            String::new()
                        }
                    );
                    entry.push(Some(r));
                }
                Err(e) => {
                    let msg = format!(
                        "{} round {}, {}: {e:#}",
                        workload.section,
                        round + 1,
                        v.label()
                    );
                    loud(&msg);
                    notes.push(msg);
                    entry.push(None);
                }
            }
        }
    }
    WorkloadResult {
        workload,
        runs,
        commands,
    }
}

fn run_variant(plan: &Plan, tools: &Tools, w: &Workload, v: Variant) -> Result<RunResult> {
    let timeout = plan.run_timeout();
    let (stdout, observer) = match v {
        Variant::Bare => {
            let end = Proc::spawn(&mut command(&w.argv))?.finish(timeout, |_| {});
            (end.checked(&w.argv[0])?.stdout, None)
        }
        Variant::ObserverRun | Variant::ObserverRunNoGo => {
            let mut argv = vec![tools.observer.display().to_string(), "run".into()];
            if v == Variant::ObserverRunNoGo {
                argv.push("--no-go".into());
            }
            argv.push("--".into());
            argv.extend(w.argv.iter().cloned());
            let proc = Proc::spawn(&mut command(&argv))?;
            let attach = proc.wait_attached("observer: running");
            let end = proc.finish(timeout, |_| {});
            let stats = observer_stats(&end, attach);
            (end.checked("observer run")?.stdout, Some(stats))
        }
        Variant::ObserverWatchIdle => {
            let idle = Proc::spawn(Command::new("sleep").arg("3600"))?;
            let argv = vec![
                tools.observer.display().to_string(),
                "watch".into(),
                "--pid".into(),
                idle.pid.to_string(),
            ];
            let observer = Proc::spawn(&mut command(&argv))?;
            let attach = observer.wait_attached("observer: watching");
            let bare = match attach {
                Some(_) => {
                    // Measure the steady state, not the session setup right after the attach.
                    thread::sleep(SETTLE);
                    Some(Proc::spawn(&mut command(&w.argv))?.finish(timeout, |_| {}))
                }
                None => None,
            };
            observer.signal(libc::SIGINT);
            let obs_end = observer.finish(Duration::from_secs(30), |_| {});
            idle.signal(libc::SIGKILL);
            idle.finish(Duration::from_secs(5), |_| {});
            let Some(bare) = bare else {
                bail!("observer did not attach: {}", tail(&obs_end.stderr, 3));
            };
            let stats = observer_stats(&obs_end, attach);
            (bare.checked(&w.argv[0])?.stdout, Some(stats))
        }
        Variant::BpftraceNoop => {
            let tracer = Proc::spawn(Command::new("bpftrace").arg(&tools.noop_bt))?;
            let ready = tracer.wait_line(Stream::Out, "Attaching", Duration::from_secs(60));
            let bare = match ready {
                Some(_) => {
                    // bpftrace prints "Attaching N probes..." before it attaches.
                    thread::sleep(SETTLE);
                    Some(Proc::spawn(&mut command(&w.argv))?.finish(timeout, |_| {}))
                }
                None => None,
            };
            tracer.signal(libc::SIGINT);
            let t_end = tracer.finish(Duration::from_secs(30), |_| {});
            let Some(bare) = bare else {
                bail!("bpftrace did not attach: {}", tail(&t_end.stderr, 3));
            };
            (bare.checked(&w.argv[0])?.stdout, None)
        }
        Variant::BpftraceFutexctn | Variant::BpftraceUprobe => {
            if w.argv.iter().any(|a| a.contains(char::is_whitespace)) {
                bail!("bpftrace -c splits its command at spaces and a path here has one");
            }
            let mut cmd = Command::new("bpftrace");
            if v == Variant::BpftraceFutexctn {
                cmd.arg(&tools.futexctn_bt);
            } else {
                cmd.arg("-e").arg(uprobe_program(&w.argv[0]));
            }
            cmd.arg("-c").arg(w.argv.join(" "));
            let end = Proc::spawn(&mut cmd)?.finish(timeout, |_| {});
            (end.checked("bpftrace")?.stdout, None)
        }
    };
    let metrics: Vec<Option<f64>> = w.metrics.iter().map(|m| (m.parse)(&stdout)).collect();
    if metrics.first().copied().flatten().is_none() {
        bail!("no figure in the output: {}", tail(&stdout, 3));
    }
    Ok(RunResult {
        tries: metrics.first().copied().flatten().into_iter().collect(),
        metrics,
        observer,
    })
}

/// The round's result of one variant: the try with the best first metric (highest throughput,
/// or lowest time for a `Difference` metric). Interference from the rest of the host only ever
/// slows a run down, so the best of a few short runs is the steadier estimate of what the
/// variant itself costs; anything observer does in every run (its periodic work) is in all of
/// them. Fails only when every try failed.
fn best_try(tries: Vec<Result<RunResult>>, lower_is_better: bool) -> Result<RunResult> {
    let mut firsts = Vec::new();
    let mut best: Option<RunResult> = None;
    let mut last_err = None;
    for t in tries {
        match t {
            Ok(r) => {
                let v = r.metrics.first().copied().flatten().unwrap_or(f64::NAN);
                firsts.push(v);
                let better = match &best {
                    None => true,
                    Some(b) => {
                        let bv = b.metrics.first().copied().flatten().unwrap_or(f64::NAN);
                        if lower_is_better {
                            v < bv
                        } else {
                            v > bv
                        }
                    }
                };
                if better {
                    best = Some(r);
                }
            }
            Err(e) => last_err = Some(e),
        }
    }
    match (best, last_err) {
        (Some(mut b), _) => {
            b.tries = firsts;
            Ok(b)
        }
        (None, Some(e)) => Err(e),
        (None, None) => bail!("no try was run"),
    }
}

/// Pause between a tracer saying it is attached and the measured command: the tracer's own
/// start-up work (observer seeds its tables from /proc) must not count as a tax on the command.
pub(super) const SETTLE: Duration = Duration::from_secs(1);

/// An empty bpftrace uprobe on bench/uprobe_loop.c's probed function.
fn uprobe_program(binary: &str) -> String {
    format!("uprobe:{binary}:probed {{}}")
}

fn describe_variant(tools: &Tools, argv: &[String], v: Variant) -> String {
    let shown: Vec<String> = argv.iter().map(|a| shorten(a)).collect();
    let cmd = shown.join(" ");
    let observer = shorten(&tools.observer.display().to_string());
    match v {
        Variant::Bare => format!("`{cmd}`"),
        Variant::ObserverRun => format!("`{observer} run -- {cmd}`"),
        Variant::ObserverRunNoGo => format!("`{observer} run --no-go -- {cmd}`"),
        Variant::ObserverWatchIdle => format!(
            "`{cmd}` while `{observer} watch --pid <pid of sleep 3600>` runs (started, then SIGINT)"
        ),
        Variant::BpftraceNoop => format!(
            "`{cmd}` while `bpftrace {}` runs",
            shorten(&tools.noop_bt.display().to_string())
        ),
        Variant::BpftraceFutexctn => format!(
            "`bpftrace {} -c \"{cmd}\"`",
            shorten(&tools.futexctn_bt.display().to_string())
        ),
        Variant::BpftraceUprobe => {
            format!("`bpftrace -e '{}' -c \"{cmd}\"`", uprobe_program(&shown[0]))
        }
    }
}

pub(super) fn shorten(path: &str) -> String {
    display_path(Path::new(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(v: f64) -> Result<RunResult> {
        Ok(RunResult {
            metrics: vec![Some(v), Some(v * 10.0)],
            observer: None,
            tries: vec![v],
        })
    }

    #[test]
    fn best_try_keeps_the_fastest_and_lists_every_try() {
        let b = best_try(vec![ok(5.0), ok(7.0), ok(6.0)], false).unwrap();
        assert_eq!(b.metrics, vec![Some(7.0), Some(70.0)]);
        assert_eq!(b.tries, vec![5.0, 7.0, 6.0]);
        let b = best_try(vec![ok(5.0), ok(7.0), ok(6.0)], true).unwrap();
        assert_eq!(b.metrics[0], Some(5.0));
    }

    #[test]
    fn best_try_skips_failed_tries_and_fails_only_when_all_did() {
        let b = best_try(vec![Err(anyhow::anyhow!("x")), ok(3.0)], false).unwrap();
        assert_eq!(b.metrics[0], Some(3.0));
        assert_eq!(b.tries, vec![3.0]);
        let e = best_try(vec![Err(anyhow::anyhow!("boom"))], false).unwrap_err();
        assert!(format!("{e}").contains("boom"));
        assert!(best_try(Vec::new(), false).is_err());
    }
}
