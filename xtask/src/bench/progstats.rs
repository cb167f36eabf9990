//! Section 5: nanoseconds per event of each observer program, from the kernel's BPF run-time
//! statistics.

use std::collections::BTreeMap;
use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::fmt::fmt_opt_f;
use super::loud;
use super::proc::{command, Proc, Stream};
use super::run::shorten;
use super::tools::{perf_argv, Tools};
use super::Plan;
use crate::util::output_if_ok;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ProgStats {
    pub(super) prog_type: u32,
    pub(super) id: u32,
    pub(super) run_time_ns: u64,
    pub(super) run_cnt: u64,
}

pub(super) struct StatsRow {
    pub(super) program: String,
    pub(super) stats: ProgStats,
}

pub(super) struct StatsRun {
    pub(super) workload: String,
    pub(super) command: String,
    pub(super) secs: f64,
    pub(super) rows: Vec<StatsRow>,
}

/// Turns kernel.bpf_stats_enabled on for as long as it lives and restores the old value after,
/// also when the bench fails: the statistics cost two clock reads per program run.
struct BpfStatsOn {
    previous: String,
}

const BPF_STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStatsOn {
    fn enable() -> Result<BpfStatsOn> {
        let previous = fs::read_to_string(BPF_STATS_SYSCTL)
            .with_context(|| format!("could not read {BPF_STATS_SYSCTL}"))?;
        fs::write(BPF_STATS_SYSCTL, "1")
            .with_context(|| format!("could not write {BPF_STATS_SYSCTL}"))?;
        Ok(BpfStatsOn {
            previous: previous.trim().to_string(),
        })
    }
}

impl Drop for BpfStatsOn {
    fn drop(&mut self) {
        if let Err(e) = fs::write(BPF_STATS_SYSCTL, &self.previous) {
            loud(&format!(
                "could not restore kernel.bpf_stats_enabled={}: {e}",
                self.previous
            ));
        }
    }
}

pub(super) fn run_prog_stats(plan: &Plan, tools: &Tools, notes: &mut Vec<String>) -> Vec<StatsRun> {
    let secs = plan.secs.max(2).to_string();
    let mut targets: Vec<(String, Vec<String>)> = vec![(
        "mutex_contend (4 threads)".into(),
        vec![
            tools.mutex_contend.display().to_string(),
            "4".into(),
            secs.clone(),
            "1024".into(),
            "32".into(),
        ],
    )];
    if tools.perf {
        targets.push((
            "perf bench futex lock-pi -t 2".into(),
            perf_argv(&["bench", "futex", "lock-pi", "-t", "2", "-r", &secs]),
        ));
    }
    if let Some(go) = &tools.goparks {
        targets.push((
            "goparks".into(),
            vec![go.display().to_string(), "-seconds".into(), secs.clone()],
        ));
    }
    let _on = match BpfStatsOn::enable() {
        Ok(on) => on,
        Err(e) => {
            let msg = format!("section 5 skipped: {e:#}");
            loud(&msg);
            notes.push(msg);
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (name, argv) in targets {
        match prog_stats_once(tools, &argv) {
            Ok((rows, secs)) => {
                for r in &rows {
                    println!(
                        "  {name}: {} {} runs, {} ns/run",
                        r.program,
                        r.stats.run_cnt,
                        fmt_opt_f(ns_per_event(&r.stats), 0)
                    );
                }
                out.push(StatsRun {
                    workload: name,
                    command: format!(
                        "`{} run -- {}`",
                        shorten(&tools.observer.display().to_string()),
                        argv.iter()
                            .map(|a| shorten(a))
                            .collect::<Vec<_>>()
                            .join(" ")
                    ),
                    secs,
                    rows,
                });
            }
            Err(e) => {
                let msg = format!("5 {name}: {e:#}");
                loud(&msg);
                notes.push(msg);
            }
        }
    }
    out
}

fn prog_stats_once(tools: &Tools, argv: &[String]) -> Result<(Vec<StatsRow>, f64)> {
    let mut full = vec![
        tools.observer.display().to_string(),
        "run".into(),
        "--".into(),
    ];
    full.extend(argv.iter().cloned());
    let proc = Proc::spawn(&mut command(&full))?;
    let attached = proc.wait_line(Stream::Err, "observer: running", Duration::from_secs(60));
    let since = Instant::now();
    // Names come from bpftool while the programs are loaded; the statistics from observer's own
    // file descriptors, so other tracers on the host cannot be mixed in.
    let names = if attached.is_some() && tools.bpftool {
        output_if_ok(Command::new("bpftool").args(["prog", "show", "--json"]))
            .map(|j| parse_bpftool_names(&j))
            .unwrap_or_default()
    } else {
        BTreeMap::new()
    };
    let mut latest: BTreeMap<u32, ProgStats> = BTreeMap::new();
    let mut last_sample = Instant::now() - Duration::from_secs(1);
    let end = proc.finish(Duration::from_secs(120), |pid| {
        if last_sample.elapsed() >= Duration::from_millis(200) {
            last_sample = Instant::now();
            for s in read_prog_fdinfo(pid) {
                latest.insert(s.id, s);
            }
        }
    });
    let secs = since.elapsed().as_secs_f64();
    end.checked("observer run")?;
    if latest.is_empty() {
        bail!("no eBPF program file descriptors found in the observer process");
    }
    let rows = latest
        .into_values()
        .map(|stats| StatsRow {
            program: names
                .get(&stats.id)
                .cloned()
                .unwrap_or_else(|| format!("id {} (type {})", stats.id, stats.prog_type)),
            stats,
        })
        .collect();
    Ok((rows, secs))
}

fn read_prog_fdinfo(pid: i32) -> Vec<ProgStats> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| {
            fs::read_link(e.path())
                .map(|l| l.to_string_lossy().contains("bpf-prog"))
                .unwrap_or(false)
        })
        .filter_map(|e| {
            let info = fs::read_to_string(format!(
                "/proc/{pid}/fdinfo/{}",
                e.file_name().to_string_lossy()
            ))
            .ok()?;
            parse_fdinfo(&info)
        })
        .collect()
}

pub(super) fn ns_per_event(s: &ProgStats) -> Option<f64> {
    (s.run_cnt > 0).then(|| s.run_time_ns as f64 / s.run_cnt as f64)
}

/// /proc/PID/fdinfo/FD of a BPF program.
fn parse_fdinfo(text: &str) -> Option<ProgStats> {
    let field = |key: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key)
                .then(|| v.trim().parse::<u64>().ok())
                .flatten()
        })
    };
    Some(ProgStats {
        prog_type: u32::try_from(field("prog_type")?).ok()?,
        id: u32::try_from(field("prog_id")?).ok()?,
        run_time_ns: field("run_time_ns").unwrap_or(0),
        run_cnt: field("run_cnt").unwrap_or(0),
    })
}

/// Program names by id from `bpftool prog show --json`.
fn parse_bpftool_names(json: &str) -> BTreeMap<u32, String> {
    let Ok(serde_json::Value::Array(progs)) = serde_json::from_str::<serde_json::Value>(json)
    else {
        return BTreeMap::new();
    };
    progs
        .iter()
        .filter_map(|p| {
            let id = u32::try_from(p.get("id")?.as_u64()?).ok()?;
            let name = p.get("name")?.as_str()?.to_string();
            Some((id, name))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo() {
        let info = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t2052\nprog_type:\t26\nprog_jited:\t1\n\
                    prog_tag:\tabcdef0123456789\nmemlock:\t4096\nprog_id:\t77\nrun_time_ns:\t123456\n\
                    run_cnt:\t1000\nrecursion_misses:\t0\nverified_insns:\t500\n";
        assert_eq!(
            parse_fdinfo(info),
            Some(ProgStats {
                prog_type: 26,
                id: 77,
                run_time_ns: 123456,
                run_cnt: 1000
            })
        );
        assert_eq!(parse_fdinfo("pos:\t0\n"), None);
    }

    #[test]
    fn bpftool_names() {
        let json = r#"[{"id":77,"type":"tracing","name":"sched_switch"},{"id":78,"type":"tracepoint","name":"sched_waking","run_cnt":5},{"id":79,"type":"kprobe"}]"#;
        let names = parse_bpftool_names(json);
        assert_eq!(names.get(&77).map(String::as_str), Some("sched_switch"));
        assert_eq!(names.get(&78).map(String::as_str), Some("sched_waking"));
        assert_eq!(names.get(&79), None);
        assert!(parse_bpftool_names("not json").is_empty());
        assert!(parse_bpftool_names("{}").is_empty());
    }
}
