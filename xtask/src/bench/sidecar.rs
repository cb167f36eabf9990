//! Section 6b: `observer sidecar` on a host running many threads spread over several processes.
//!
//! Each round runs the same load three ways, order alternating: alone, under `observer sidecar
//! --no-metrics`, and under `observer sidecar` with its metrics endpoint scraped once a second by
//! the bench. The load is started first and the sidecar attached to a host where it already runs,
//! so the time to attach includes finding and seeding every thread. observer's CPU and the load's
//! throughput are taken over the same steady window, after attach and a settling pause.

use std::collections::BTreeMap;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::fmt::{fmt_opt_kib, fmt_opt_ms, fmt_si};
use super::load::Load;
use super::loud;
use super::ownstats::{observer_stats, ObserverStats};
use super::proc::{command, proc_cpu, proc_rss_kib, tail, Proc, Stream};
use super::run::{shorten, SETTLE};
use super::scrape::{free_port, scrape, Scrapes};
use super::tools::Tools;
use super::{round_order, Plan};

/// observer's line once its probes are attached, before it looks at the host's processes.
const PROBES_LINE: &str = "observer: sidecar: watching";
/// observer's line once it has adopted every process already running: the end of the attach.
const WATCHING_LINE: &str = "sidecar watching";
const SCRAPE_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum SidecarVariant {
    Bare,
    NoMetrics,
    Metrics,
}

impl SidecarVariant {
    const ALL: [SidecarVariant; 3] = [
        SidecarVariant::Bare,
        SidecarVariant::NoMetrics,
        SidecarVariant::Metrics,
    ];

    pub(super) fn label(self) -> &'static str {
        match self {
            SidecarVariant::Bare => "bare (load alone)",
            SidecarVariant::NoMetrics => "observer sidecar --no-metrics",
            SidecarVariant::Metrics => "observer sidecar, metrics scraped 1/s",
        }
    }
}

/// What observer did during one sidecar run.
#[derive(Debug, Clone)]
pub(super) struct SidecarObserver {
    /// Attach is the "sidecar watching N processes" line; drops and waits from its exit summary.
    pub(super) own: ObserverStats,
    /// Since observer started, when its probes were attached (before adopting processes).
    pub(super) probes_at: Option<Duration>,
    /// N in "sidecar watching N processes": every process of the host, not only the load.
    pub(super) processes: Option<u64>,
    /// observer's CPU over the steady window, as a share of one core.
    pub(super) window_cpu_share: Option<f64>,
    /// VmRSS at the end of the steady window.
    pub(super) steady_rss_kib: Option<u64>,
    pub(super) scrapes: Option<Scrapes>,
}

#[derive(Debug, Clone)]
pub(super) struct SidecarRun {
    /// The load's operations per second over the steady window, summed over its processes.
    pub(super) load_ops: f64,
    pub(super) observer: Option<SidecarObserver>,
}

pub(super) struct SidecarResult {
    pub(super) threads: u32,
    pub(super) procs: u32,
    pub(super) window: Duration,
    /// Per variant, one entry per round (None: the round failed, see the notes).
    pub(super) runs: BTreeMap<SidecarVariant, Vec<Option<SidecarRun>>>,
    pub(super) commands: Vec<(SidecarVariant, String)>,
}

pub(super) fn run_sidecar(plan: &Plan, tools: &Tools, notes: &mut Vec<String>) -> SidecarResult {
    let procs = plan.sidecar_procs.max(1);
    let per_proc = plan.many_threads / procs;
    // Far longer than a round needs: the bench kills the load once the window is over, and a
    // load left behind by a crashed bench still ends by itself.
    let load_secs = plan.sidecar_window.as_secs() + 120;
    let load_argv = vec![
        tools.many_threads.display().to_string(),
        per_proc.to_string(),
        load_secs.to_string(),
        "1".into(),
    ];
    let observer = shorten(&tools.observer.display().to_string());
    let load = format!(
        "{procs} x `{}` started together (the bench waits until each prints \"threads started\", \
         and kills them after the window)",
        load_argv
            .iter()
            .map(|a| shorten(a))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let window = plan.sidecar_window.as_secs();
    let commands = vec![
        (SidecarVariant::Bare, format!("{load}; {window} s window after a 1 s pause")),
        (
            SidecarVariant::NoMetrics,
            format!(
                "the same load, then `{observer} sidecar --no-metrics`; window after \"{WATCHING_LINE}\" \
                 and a 1 s pause, then SIGINT"
            ),
        ),
        (
            SidecarVariant::Metrics,
            format!(
                "the same, with `{observer} sidecar --metrics-addr 127.0.0.1:<free port>` and \
                 `GET /metrics` over a new TCP connection every second of the window"
            ),
        ),
    ];
    let mut runs: BTreeMap<SidecarVariant, Vec<Option<SidecarRun>>> = BTreeMap::new();
    for round in 0..plan.rounds {
        for v in round_order(&SidecarVariant::ALL, round) {
            let entry = runs.entry(v).or_default();
            match sidecar_once(plan, tools, &load_argv, procs, v) {
                Ok(r) => {
                    println!(
                        "  round {} {:<38} {}",
                        round + 1,
                        v.label(),
                        describe_run(&r)
                    );
                    entry.push(Some(r));
                }
                Err(e) => {
                    let msg = format!("6b round {}, {}: {e:#}", round + 1, v.label());
                    loud(&msg);
                    notes.push(msg);
                    entry.push(None);
                }
            }
        }
    }
    SidecarResult {
        threads: per_proc * procs,
        procs,
        window: plan.sidecar_window,
        runs,
        commands,
    }
}

fn describe_run(r: &SidecarRun) -> String {
    let mut s = format!("load {} ops/s", fmt_si(r.load_ops));
    if let Some(o) = &r.observer {
        s.push_str(&format!(
            ", attach {}, cpu {}, rss {}, watching {} processes",
            fmt_opt_ms(o.own.attach.map(|a| a.at)),
            o.window_cpu_share
                .map(|c| format!("{c:.1}%"))
                .unwrap_or_else(|| "n/a".into()),
            fmt_opt_kib(o.steady_rss_kib),
            o.processes
                .map(|n| n.to_string())
                .unwrap_or_else(|| "?".into()),
        ));
        if let Some(sc) = &o.scrapes {
            s.push_str(&format!(
                ", {} scrapes ok, {} failed",
                sc.ok.len(),
                sc.failed
            ));
        }
    }
    s
}

fn sidecar_once(
    plan: &Plan,
    tools: &Tools,
    load_argv: &[String],
    procs: u32,
    v: SidecarVariant,
) -> Result<SidecarRun> {
    let load = Load::start(load_argv, procs)?;
    let Some((observer, port)) = start_sidecar(tools, v)? else {
        thread::sleep(SETTLE);
        let from = Instant::now();
        thread::sleep(plan.sidecar_window);
        let load_ops = load.ops_per_sec(from, Instant::now())?;
        return Ok(SidecarRun {
            load_ops,
            observer: None,
        });
    };
    let probes_at = observer.wait_line(Stream::Err, PROBES_LINE, Duration::from_secs(60));
    let attach = observer.wait_attached(WATCHING_LINE);
    if attach.is_none() {
        observer.signal(libc::SIGINT);
        let end = observer.finish(Duration::from_secs(30), |_| {});
        bail!("observer sidecar did not attach: {}", tail(&end.stderr, 3));
    }
    let processes = observer
        .lines(Stream::Err)
        .iter()
        .find_map(|(_, l)| parse_watching(l));

    // observer has adopted every process and done its start-up work.
    thread::sleep(SETTLE);
    let window = steady_window(observer.pid, plan.sidecar_window, port);
    let load_ops = load.ops_per_sec(window.from, window.to);

    observer.signal(libc::SIGINT);
    let end = observer
        .finish(Duration::from_secs(60), |_| {})
        .checked("observer sidecar")?;
    Ok(SidecarRun {
        load_ops: load_ops?,
        observer: Some(SidecarObserver {
            own: observer_stats(&end, attach),
            probes_at,
            processes,
            window_cpu_share: window.cpu_share,
            steady_rss_kib: window.rss_kib,
            scrapes: window.scrapes,
        }),
    })
}

/// What one steady window measured of observer.
struct Window {
    from: Instant,
    to: Instant,
    cpu_share: Option<f64>,
    /// VmRSS at the end.
    rss_kib: Option<u64>,
    scrapes: Option<Scrapes>,
}

/// Waits out `length`, scraping observer's metrics at `port` (if any) every second from the
/// start, and reads observer's CPU time at both ends.
fn steady_window(pid: i32, length: Duration, port: Option<u16>) -> Window {
    let from = Instant::now();
    let cpu_from = proc_cpu(pid);
    let until = from + length;
    let mut scrapes = port.map(|_| Scrapes::default());
    let mut next = from;
    loop {
        if let (Some(port), Some(sc)) = (port, scrapes.as_mut()) {
            sc.record(scrape(port));
        }
        next += SCRAPE_EVERY;
        let now = Instant::now();
        if now >= until {
            break;
        }
        thread::sleep(next.min(until).saturating_duration_since(now));
        if Instant::now() >= until {
            break;
        }
    }
    let to = Instant::now();
    let cpu_share = match (cpu_from, proc_cpu(pid)) {
        (Some(a), Some(b)) => cpu_share(b.saturating_sub(a), to - from),
        _ => None,
    };
    Window {
        from,
        to,
        cpu_share,
        rss_kib: proc_rss_kib(pid).0,
        scrapes,
    }
}

/// Starts observer for a sidecar variant; None for the bare one.
fn start_sidecar(tools: &Tools, v: SidecarVariant) -> Result<Option<(Proc, Option<u16>)>> {
    let mut argv = vec![tools.observer.display().to_string(), "sidecar".to_string()];
    let port = match v {
        SidecarVariant::Bare => return Ok(None),
        SidecarVariant::NoMetrics => {
            argv.push("--no-metrics".into());
            None
        }
        SidecarVariant::Metrics => {
            let port = free_port()?;
            argv.push("--metrics-addr".into());
            argv.push(format!("127.0.0.1:{port}"));
            Some(port)
        }
    };
    Ok(Some((Proc::spawn(&mut command(&argv))?, port)))
}

fn cpu_share(cpu: Duration, wall: Duration) -> Option<f64> {
    (wall > Duration::ZERO).then(|| cpu.as_secs_f64() / wall.as_secs_f64() * 100.0)
}

/// "observer: sidecar watching 143 processes (2 Go programs with goroutine probes)" -> 143.
fn parse_watching(line: &str) -> Option<u64> {
    let (_, rest) = line.split_once(WATCHING_LINE)?;
    let mut words = rest.split_whitespace();
    let n = words.next()?.parse().ok()?;
    (words.next()? == "processes").then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watching_line() {
        assert_eq!(
            parse_watching(
                "observer: sidecar watching 143 processes (2 Go programs with goroutine probes)"
            ),
            Some(143)
        );
        assert_eq!(
            parse_watching("observer: sidecar: watching every process; threshold 100ms"),
            None
        );
        assert_eq!(
            parse_watching("observer: sidecar watching many processes"),
            None
        );
    }

    #[test]
    fn shares() {
        assert_eq!(
            cpu_share(Duration::from_millis(500), Duration::from_secs(2)),
            Some(25.0)
        );
        assert_eq!(cpu_share(Duration::from_millis(5), Duration::ZERO), None);
    }
}
