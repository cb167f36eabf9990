//! The report's section 6b: `observer sidecar` on a host running many threads.

use std::fmt::Write as _;

use super::fmt::{fmt_si, fmt_spread, table_header, table_row};
use super::sidecar::{SidecarResult, SidecarRun, SidecarVariant};
use super::stats::ratio;

pub(super) fn render_sidecar(s: &mut String, r: &SidecarResult) {
    let window = r.window.as_secs_f64();
    let _ = writeln!(
        s,
        "### 6b. observer sidecar on a host running {} threads ({} processes x {} threads)\n",
        r.threads,
        r.procs,
        r.threads / r.procs.max(1)
    );
    let _ = writeln!(
        s,
        "bench/many_threads.c split over {} processes runs first; then `observer sidecar` (every \
         process of the host, as deployed) starts on a host where it already runs. Each round runs \
         the load alone, under the sidecar with metrics off, and under the sidecar serving metrics \
         that the bench scrapes once a second (order reversed every other round). observer's CPU \
         and the load's throughput are taken over the same {window:.0} s steady window, which \
         starts 1 s after observer says it watches the host's processes.\n",
        r.procs
    );
    table_header(
        s,
        &[
            "variant",
            "load ops/s in the window (median, min-max)",
            "ratio vs bare",
            "time to attach",
            "of which probes loaded",
            "observer CPU until attached",
            "observer CPU in the window, share of one core",
            "observer RSS in the window (VmRSS)",
            "observer peak RSS (VmHWM)",
            "processes watched",
        ]
        .map(String::from),
    );
    let bare = r.runs.get(&SidecarVariant::Bare);
    for (v, runs) in &r.runs {
        let ok: Vec<&SidecarRun> = runs.iter().flatten().collect();
        let load: Vec<f64> = ok.iter().map(|r| r.load_ops).collect();
        let ratio_cell = match (v, bare) {
            (SidecarVariant::Bare, _) => "1.00x".to_string(),
            (_, Some(b)) => fmt_spread(&paired_ratios(b, runs), |x| format!("{x:.2}x")),
            (_, None) => "n/a".into(),
        };
        let obs: Vec<_> = ok.iter().filter_map(|r| r.observer.as_ref()).collect();
        let ms = |f: &dyn Fn(&super::sidecar::SidecarObserver) -> Option<f64>| {
            let vals: Vec<f64> = obs.iter().filter_map(|o| f(o)).collect();
            fmt_spread(&vals, |x| format!("{x:.0} ms"))
        };
        let row = if obs.is_empty() {
            let dash = || "-".to_string();
            vec![
                v.label().to_string(),
                fmt_spread(&load, fmt_si),
                ratio_cell,
                dash(),
                dash(),
                dash(),
                dash(),
                dash(),
                dash(),
                dash(),
            ]
        } else {
            let shares: Vec<f64> = obs.iter().filter_map(|o| o.window_cpu_share).collect();
            let steady: Vec<f64> = obs
                .iter()
                .filter_map(|o| Some(o.steady_rss_kib? as f64 / 1024.0))
                .collect();
            let peak = obs
                .iter()
                .filter_map(|o| o.own.max_rss_kib)
                .max()
                .map(|k| format!("{:.0} MiB", k as f64 / 1024.0))
                .unwrap_or_else(|| "n/a".into());
            let procs: Vec<f64> = obs
                .iter()
                .filter_map(|o| Some(o.processes? as f64))
                .collect();
            vec![
                v.label().to_string(),
                fmt_spread(&load, fmt_si),
                ratio_cell,
                ms(&|o| Some(o.own.attach?.at.as_secs_f64() * 1e3)),
                ms(&|o| Some(o.probes_at?.as_secs_f64() * 1e3)),
                ms(&|o| Some(o.own.attach?.cpu?.as_secs_f64() * 1e3)),
                fmt_spread(&shares, |x| format!("{x:.1}%")),
                fmt_spread(&steady, |x| format!("{x:.0} MiB")),
                peak,
                fmt_spread(&procs, |x| format!("{x:.0}")),
            ]
        };
        table_row(s, &row);
    }
    render_scrapes(s, r);
    let tick_pct = 1.0 / window;
    let _ = writeln!(
        s,
        "\nWhat bounds these figures: the sidecar watches every process of the host, so its CPU \
         and its waits include whatever else runs here (see the load average above and \"processes \
         watched\"). The load is bound by its sleeps (each thread sleeps 50-150 ms or waits for a \
         broadcast every 500 ms between short critical sections), not by CPU, so its ratio shows \
         how much later threads run, not CPU taken from them. CPU comes from /proc/<pid>/stat in \
         clock ticks of 10 ms: +-{tick_pct:.2} percentage points over the {window:.0} s window. \
         Time to attach runs from starting observer to its \"sidecar watching N processes\" line: \
         loading and attaching the probes, then reading /proc for every process and thread of the \
         host. The peak RSS covers the whole run, start-up and exit summary included.\n"
    );
    let _ = writeln!(s, "Commands:\n");
    for (v, c) in &r.commands {
        let _ = writeln!(s, "- {}: {}", v.label(), c);
    }
    let _ = writeln!(s);
}

fn render_scrapes(s: &mut String, r: &SidecarResult) {
    let scrapes: Vec<_> = r
        .runs
        .get(&SidecarVariant::Metrics)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|run| run.observer.as_ref()?.scrapes.as_ref())
        .collect();
    if scrapes.is_empty() {
        return;
    }
    let ok: Vec<_> = scrapes.iter().flat_map(|sc| sc.ok.iter()).collect();
    let failed: u32 = scrapes.iter().map(|sc| sc.failed).sum();
    let latency: Vec<f64> = ok.iter().map(|o| o.latency.as_secs_f64() * 1e3).collect();
    let kib: Vec<f64> = ok.iter().map(|o| o.body_bytes as f64 / 1024.0).collect();
    let series: Vec<f64> = ok.iter().map(|o| o.series as f64).collect();
    let _ = writeln!(
        s,
        "\nScrapes: {} answered, {} failed{}; time to answer {}; {} per answer, {} series.",
        ok.len(),
        failed,
        scrapes
            .iter()
            .find_map(|sc| sc.last_error.as_deref())
            .map(|e| format!(" (last error: {e})"))
            .unwrap_or_default(),
        fmt_spread(&latency, |x| format!("{x:.1} ms")),
        fmt_spread(&kib, |x| format!("{x:.1} KiB")),
        fmt_spread(&series, |x| format!("{x:.0}")),
    );
}

/// The variant's load throughput over bare's, for each round where both ran.
fn paired_ratios(bare: &[Option<SidecarRun>], runs: &[Option<SidecarRun>]) -> Vec<f64> {
    bare.iter()
        .zip(runs)
        .filter_map(|(b, r)| ratio(r.as_ref()?.load_ops, b.as_ref()?.load_ops))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_pair_rounds() {
        let run = |ops: f64| {
            Some(SidecarRun {
                load_ops: ops,
                observer: None,
            })
        };
        let bare = vec![run(100.0), None, run(200.0)];
        let obs = vec![run(90.0), run(50.0), run(150.0)];
        assert_eq!(paired_ratios(&bare, &obs), vec![0.9, 0.75]);
        assert!(paired_ratios(&[], &obs).is_empty());
    }
}
