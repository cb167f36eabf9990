//! Section 6: observer's own cost on one process with many threads (`observer watch`).

use std::time::Duration;

use anyhow::{bail, Result};

use super::fmt::{fmt_opt_kib, fmt_opt_ms};
use super::loud;
use super::ownstats::{observer_stats, ObserverStats};
use super::proc::{command, tail, Proc, Stream};
use super::run::shorten;
use super::tools::Tools;
use super::Plan;

pub(super) struct ManyRun {
    pub(super) stats: ObserverStats,
    /// Length of the observation (--duration).
    pub(super) observed: Duration,
}

pub(super) struct ManyResult {
    pub(super) threads: u32,
    pub(super) runs: Vec<ManyRun>,
    pub(super) command: String,
}

pub(super) fn run_many_threads(plan: &Plan, tools: &Tools, notes: &mut Vec<String>) -> ManyResult {
    let observe_secs = plan.secs + 1;
    let target_argv = vec![
        tools.many_threads.display().to_string(),
        plan.many_threads.to_string(),
        (observe_secs + 4).to_string(),
    ];
    let command = format!(
        "`{}` (waits until it prints \"threads started\"), then `{} watch --pid <its pid> --duration {observe_secs}s`",
        target_argv.iter().map(|a| shorten(a)).collect::<Vec<_>>().join(" "),
        shorten(&tools.observer.display().to_string()),
    );
    let mut runs = Vec::new();
    for round in 0..plan.rounds {
        match many_threads_once(tools, &target_argv, observe_secs) {
            Ok(r) => {
                println!(
                    "  round {} attach {} cpu {} rss {}",
                    round + 1,
                    fmt_opt_ms(r.stats.attach.map(|a| a.at)),
                    fmt_opt_ms(r.stats.cpu),
                    fmt_opt_kib(r.stats.max_rss_kib)
                );
                runs.push(r);
            }
            Err(e) => {
                let msg = format!("6 round {}: {e:#}", round + 1);
                loud(&msg);
                notes.push(msg);
            }
        }
    }
    ManyResult {
        threads: plan.many_threads,
        runs,
        command,
    }
}

fn many_threads_once(tools: &Tools, target_argv: &[String], observe_secs: u32) -> Result<ManyRun> {
    let target = Proc::spawn(&mut command(target_argv))?;
    if target
        .wait_line(Stream::Out, "threads started", Duration::from_secs(60))
        .is_none()
    {
        target.signal(libc::SIGKILL);
        let end = target.finish(Duration::from_secs(10), |_| {});
        bail!("many_threads did not start: {}", tail(&end.stderr, 3));
    }
    let argv = vec![
        tools.observer.display().to_string(),
        "watch".into(),
        "--pid".into(),
        target.pid.to_string(),
        "--duration".into(),
        format!("{observe_secs}s"),
    ];
    let observer = Proc::spawn(&mut command(&argv))?;
    let attach = observer.wait_attached("observer: watching");
    let end = observer.finish(Duration::from_secs(u64::from(observe_secs) + 60), |_| {});
    // It has served its purpose; joining 2,000 threads would only make the bench longer.
    target.signal(libc::SIGKILL);
    target.finish(Duration::from_secs(30), |_| {});
    let end = end.checked("observer watch")?;
    Ok(ManyRun {
        stats: observer_stats(&end, attach),
        observed: Duration::from_secs(u64::from(observe_secs)),
    })
}
