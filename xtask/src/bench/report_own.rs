//! The report's sections on observer's own cost: attach time, CPU and memory on one process (6),
//! and events lost in every observed run (7).

use std::fmt::Write as _;

use super::fmt::{
    fmt_attach, fmt_cpu_share, fmt_opt_si, fmt_rss, fmt_si, fmt_spread, fmt_startup_cpu,
    table_header, table_row,
};
use super::many::ManyResult;
use super::ownstats::ObserverStats;
use super::run::WorkloadResult;
use super::sidecar::{SidecarResult, SidecarVariant};
use super::workloads::Variant;

pub(super) fn render_many(s: &mut String, many: &ManyResult, results: &[WorkloadResult]) {
    let _ = writeln!(s, "### 6. observer's own cost and attach time\n");
    table_header(
        s,
        &[
            "target",
            "time to attach (median, min-max)",
            "observer CPU until attached",
            "observer CPU after attach, share of one core",
            "observer max RSS",
            "waits observed/s",
        ]
        .map(String::from),
    );
    let idle: Vec<&ObserverStats> = results
        .iter()
        .flat_map(|w| {
            w.runs
                .get(&Variant::ObserverWatchIdle)
                .into_iter()
                .flatten()
        })
        .filter_map(|r| r.as_ref()?.observer.as_ref())
        .collect();
    if !idle.is_empty() {
        table_row(
            s,
            &[
                "idle `sleep` (1 thread), `observer watch`".to_string(),
                fmt_attach(&idle),
                fmt_startup_cpu(&idle),
                fmt_cpu_share(&idle),
                fmt_rss(&idle),
                "-".into(),
            ],
        );
    }
    let runs: Vec<&ObserverStats> = many.runs.iter().map(|r| &r.stats).collect();
    let rates: Vec<f64> = many
        .runs
        .iter()
        .filter_map(|r| Some(r.stats.waits? as f64 / r.observed.as_secs_f64()))
        .collect();
    table_row(
        s,
        &[
            format!(
                "bench/many_threads.c, {} threads, `observer watch`",
                many.threads
            ),
            fmt_attach(&runs),
            fmt_startup_cpu(&runs),
            fmt_cpu_share(&runs),
            fmt_rss(&runs),
            fmt_spread(&rates, fmt_si),
        ],
    );
    let _ = writeln!(
        s,
        "\nTime to attach: from starting observer until it prints its \"watching\" line (probes loaded \
         and attached); CPU is read from /proc/<observer pid>/stat then and once it has exited (clock \
         ticks of 10 ms). The idle row's share covers 1 s of settling, the getppid loop and the \
         shutdown. Command for the many-threads row: {}\n",
        many.command
    );
}

pub(super) fn render_drops(
    s: &mut String,
    results: &[WorkloadResult],
    many: &ManyResult,
    sidecar: &SidecarResult,
) {
    let _ = writeln!(
        s,
        "### 7. Events lost (observer's \"drops:\" summary line)\n"
    );
    let mut rows: Vec<(String, Vec<&ObserverStats>, Option<f64>)> = Vec::new();
    for w in results {
        for (v, runs) in &w.runs {
            if !v.is_observer() || *v == Variant::ObserverWatchIdle {
                continue;
            }
            let stats: Vec<&ObserverStats> = runs
                .iter()
                .filter_map(|r| r.as_ref()?.observer.as_ref())
                .collect();
            rows.push((format!("{} {}", w.workload.section, v.label()), stats, None));
        }
    }
    rows.push((
        format!("6 many_threads ({} threads)", many.threads),
        many.runs.iter().map(|r| &r.stats).collect(),
        many.runs.first().map(|r| r.observed.as_secs_f64()),
    ));
    for (v, runs) in &sidecar.runs {
        if *v == SidecarVariant::Bare {
            continue;
        }
        rows.push((
            format!("6b {}", v.label()),
            runs.iter()
                .filter_map(|r| Some(&r.as_ref()?.observer.as_ref()?.own))
                .collect(),
            None,
        ));
    }
    let labels: Vec<String> = {
        let mut seen = Vec::new();
        for (_, stats, _) in &rows {
            for st in stats {
                for (label, _) in st.drops.iter().flatten() {
                    if !seen.contains(label) {
                        seen.push(label.clone());
                    }
                }
            }
        }
        seen
    };
    let mut header = vec!["run".to_string(), "highest waits observed/s".to_string()];
    header.extend(labels.iter().map(|l| format!("{l} (sum over rounds)")));
    table_header(s, &header);
    for (name, stats, observed) in rows {
        if stats.is_empty() {
            continue;
        }
        let best_rate = stats
            .iter()
            .filter_map(|st| {
                let secs = observed.unwrap_or(st.wall.as_secs_f64());
                Some(st.waits? as f64 / secs.max(1e-9))
            })
            .fold(None, |acc: Option<f64>, x| {
                Some(acc.map_or(x, |a| a.max(x)))
            });
        let mut row = vec![name, fmt_opt_si(best_rate)];
        for l in &labels {
            let total: Option<u64> = stats
                .iter()
                .filter_map(|st| {
                    st.drops
                        .as_ref()?
                        .iter()
                        .find(|(k, _)| k == l)
                        .map(|(_, n)| *n)
                })
                .fold(None, |acc, n| Some(acc.unwrap_or(0) + n));
            row.push(total.map(|t| t.to_string()).unwrap_or_else(|| "n/a".into()));
        }
        table_row(s, &row);
    }
    let _ = writeln!(
        s,
        "\nwaits observed/s: the summary's \"waits observed\" over observer's lifetime (run, \
         sidecar) or --duration (watch); futex calls that return without sleeping are not waits. \
         The sidecar rows count the waits of every process of the host.\n"
    );
}
