//! Command-line interface. The subcommand and flag names are a contract: tests and users
//! depend on them.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::util::duration::parse_duration;

#[derive(Debug, Parser)]
#[command(
    name = "observer",
    version,
    about = "External stall observer for Linux processes: long lock waits and who released them, \
             stalled threads, deadlocks and silent thread deaths, with stacks that name the code. \
             No change to the target.",
    long_about = None,
    after_help = "Common options of watch and run: --threshold DUR (report lock waits at least \
                  this long, default 100ms), --stall-after DUR (default 5s), --duration DUR, \
                  --alerts PATH, --folded PATH, --pprof PATH, --svg PATH, --config FILE (options \
                  from a TOML file); see `observer watch --help`.\n\n\
                  Needs root, or CAP_BPF + CAP_PERFMON + CAP_SYS_PTRACE. \
                  Alerts are JSON lines (see README, 'Alert schema')."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Attach to a running process and all its threads, including ones it creates later.
    ///
    /// Stops at --duration, on Ctrl-C / SIGTERM, or when the target exits; then writes the
    /// outputs and prints a short summary on stderr.
    Watch {
        /// Process to observe.
        #[arg(long, value_name = "PID")]
        pid: u32,
        #[command(flatten)]
        opts: ObserveOpts,
    },
    /// Record an incident for later analysis: like `watch`, and everything observed goes to a
    /// self-contained recording (alerts, blocked-time profile, symbolized stacks) that
    /// `observer report` reads after the process, and even its binary, are gone.
    Record {
        /// Process to record.
        #[arg(
            long,
            value_name = "PID",
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        pid: Option<u32>,
        /// Record every process on the host (like `observer sidecar`), e.g. during an incident
        /// whose culprit is not known yet. --comm / --cgroup / --container narrow it.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        filter: FilterOpts,
        /// The recording file to write.
        #[arg(short = 'o', long, value_name = "FILE")]
        output: PathBuf,
        #[command(flatten)]
        opts: ObserveOpts,
    },
    /// Watch every process on the host (or those --comm / --cgroup / --container select), for good: the
    /// fleet-wide mode, run once per host by systemd or a Kubernetes DaemonSet (see deploy/).
    ///
    /// Processes started later are watched from their birth; Go programs get the goroutine
    /// probes as they start. Alerts go to --alerts as JSON lines, rotated by size; Prometheus
    /// metrics are served on --metrics-addr. Exits of ordinary processes are only reported
    /// when they crash (or fail, for processes singled out by --comm / --cgroup / --container).
    Sidecar {
        #[command(flatten)]
        filter: FilterOpts,
        /// Rotate the --alerts file when it reaches this size (bytes; K, M, G suffixes).
        #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = parse_size)]
        alerts_max_bytes: u64,
        /// How many rotated alert files to keep (ALERTS.1 ... ALERTS.N).
        #[arg(long, value_name = "N", default_value_t = 5)]
        alerts_keep: u32,
        /// Serve Prometheus metrics at http://ADDR/metrics. Binds loopback unless told
        /// otherwise (e.g. 0.0.0.0:9464 for a scraper on another host).
        #[arg(long, value_name = "ADDR", default_value = crate::output::metrics::DEFAULT_ADDR)]
        metrics_addr: String,
        /// Do not serve metrics.
        #[arg(long)]
        no_metrics: bool,
        #[command(flatten)]
        opts: ObserveOpts,
    },
    /// Report on a recording: replay its alerts or render its profile.
    Report {
        /// The recording (from `observer record`).
        file: PathBuf,
        /// What to produce.
        #[arg(long, value_enum, default_value = "text")]
        format: crate::output::report::Format,
        /// Where to write it (default: stdout; required for pprof).
        #[arg(short = 'o', long, value_name = "PATH")]
        output: Option<PathBuf>,
    },
    /// Dump the goroutines of a running Go program from outside, without probes and without
    /// stopping it (reads runtime.allgs with process_vm_readv), like
    /// /debug/pprof/goroutine?debug=2 (default) or ?debug=1 (--grouped).
    Goroutines {
        /// The Go process.
        #[arg(long, value_name = "PID")]
        pid: u32,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Group identical stacks with counts, like ?debug=1.
        #[arg(long)]
        grouped: bool,
        /// Also show runtime-internal goroutines and frames (like GOTRACEBACK=system).
        #[arg(long)]
        system: bool,
        /// Print no dump: time the probe-free snapshot observer reads of this process when its
        /// goroutine park probes are off (runtime.allgs and every g, no stacks), ten times, and
        /// the snapshot period that keeps observer within its CPU share for it.
        #[arg(long, conflicts_with_all = ["json", "grouped", "system"])]
        snapshot_cost: bool,
    },
    /// Start CMD observed from its first instruction; its stdin/stdout/stderr pass through and
    /// observer exits with its status.
    Run {
        #[command(flatten)]
        opts: ObserveOpts,
        /// The command to run, after `--`.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
}

/// Which processes of the host (`sidecar`, `record --all`).
#[derive(Debug, Args, Clone, Default)]
pub struct FilterOpts {
    /// Only processes whose name (comm, as in `ps -o comm`) matches this regular expression.
    #[arg(long, value_name = "REGEX")]
    pub comm: Option<String>,
    /// Only processes in this cgroup (v2) or below it, e.g. /sys/fs/cgroup/system.slice/app.service
    /// or kubepods.slice.
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<String>,
    /// Only processes in the container whose id starts with this (4 to 64 hex digits, as
    /// `docker ps` or `crictl ps` shows it; Docker, containerd, CRI-O and Podman, read from
    /// /proc/PID/cgroup). With --comm / --cgroup, all given must match.
    #[arg(long, value_name = "ID")]
    pub container: Option<String>,
}

/// `64M` -> 67108864.
fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, mult) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (t, 1),
        Some((i, _)) => {
            let mult = match t[i..].to_ascii_uppercase().trim_end_matches(['B', 'I']) {
                "" => 1,
                "K" => 1 << 10,
                "M" => 1 << 20,
                "G" => 1 << 30,
                other => return Err(format!("unknown size suffix {other:?} (use K, M or G)")),
            };
            (&t[..i], mult)
        }
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 64M"))?;
    n.checked_mul(mult)
        .filter(|&b| b >= 4096)
        .ok_or_else(|| format!("{text:?}: must be at least 4K"))
}

/// `--alertmanager`: an http URL, checked now so that a typo fails at start-up; the value is
/// the v2 alerts endpoint.
fn parse_alertmanager(text: &str) -> Result<String, String> {
    crate::output::alertmanager::endpoint(text).map_err(|e| e.to_string())
}

/// `--ring-size`: the kernel wants a power of two of at least a page.
fn parse_ring_size(text: &str) -> Result<u32, String> {
    let bytes = parse_size(text)?;
    if !bytes.is_power_of_two() || bytes > 1 << 30 {
        return Err(format!(
            "{text:?}: must be a power of two from 4K to 1G, e.g. 64M"
        ));
    }
    Ok(bytes as u32)
}

#[derive(Debug, Args, Clone)]
pub struct ObserveOpts {
    /// Read options from a TOML file: keys are long option names without the dashes, e.g.
    /// `stall-after = "5s"`, `report-idle = true`, `comm = "^db"`; options given on the command
    /// line win. See README "Config file" and deploy/observer.toml.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Report lock waits at least this long (lock_hold alerts: one per hold), e.g. 250ms, 2s.
    /// Shorter waits are only summed into the profile (--folded).
    #[arg(long, value_name = "DUR", default_value = "100ms", value_parser = parse_duration)]
    pub threshold: Duration,
    /// Report a thread still blocked on a held lock after this long (stall alert, once per
    /// episode); deadlock cycles are checked among waits older than this or 1s, whichever is less.
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = parse_duration)]
    pub stall_after: Duration,
    /// Stop after this long (default: until the target exits or Ctrl-C).
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Write alerts as JSON lines to PATH (`-` for stdout). Alerts are also summarised on stderr.
    #[arg(long, value_name = "PATH")]
    pub alerts: Option<PathBuf>,
    /// Also post alerts to Prometheus Alertmanager (its v2 API; plain http only), e.g.
    /// http://127.0.0.1:9093; repeat for several. Stalls and deadlocks are re-sent while they
    /// last and resolved when they end; other alerts are sent once (README, "Alertmanager").
    /// Failures never stop observing: they are counted in observer_export_failures_total.
    #[arg(long, value_name = "URL", value_parser = parse_alertmanager)]
    pub alertmanager: Vec<String>,
    /// Write blocked time as folded stacks (process;thread;frame;... nanoseconds), for
    /// flamegraph.pl or inferno-flamegraph.
    #[arg(long, value_name = "PATH")]
    pub folded: Option<PathBuf>,
    /// Write blocked time as a gzipped pprof profile (`go tool pprof`), shaped like Go's block
    /// profile: contentions/count and delay/nanoseconds, labelled by thread and wait reason.
    #[arg(long, value_name = "PATH")]
    pub pprof: Option<PathBuf>,
    /// Write blocked time as an interactive SVG flame graph.
    #[arg(long, value_name = "PATH")]
    pub svg: Option<PathBuf>,
    /// Also report idle waits (condition variables, joins, sleeps, poll/epoll, reads) longer
    /// than --threshold, as `idle_wait` alerts, and include them in --folded.
    #[arg(long)]
    pub report_idle: bool,
    /// Do not attach the goroutine probes to a Go target (by default they are attached whenever
    /// the executable is a Go program).
    #[arg(long)]
    pub no_go: bool,
    /// Share of one core (percent) a Go target may spend in the per-park goroutine probes
    /// (gopark, ready: two uprobe traps per park, ~22 us here, see BENCHMARKS.md); default
    /// 0.5, i.e. at most 5 ms of the target's time per second per process. Under it
    /// they stay on; past it they are switched on and off so the traps stay within it on
    /// average, the goroutine profile is scaled up by the time they were off, and goroutines
    /// are followed from memory snapshots meanwhile (stalls, leaks, long waits). Panics and
    /// fatal errors are watched whatever the budget. 0 = park probes never on (snapshots only);
    /// `none` = no limit.
    #[arg(long, value_name = "PERCENT", default_value = "0.5", value_parser = parse_budget)]
    pub go_probe_budget: GoProbeBudget,
    /// Size of the kernel's event ring buffer (a power of two, 4K to 1G; default 16M). Long
    /// waits, thread and process events and their stack copies pass through it; when observer
    /// falls behind and it fills, events are dropped and a `degraded` alert says so: raise it.
    #[arg(long, value_name = "SIZE", value_parser = parse_ring_size)]
    pub ring_size: Option<u32>,
    /// Do not print alerts, the summary or progress lines of long steps on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// No live view: print alerts as lines instead of a refreshing top-style screen (the
    /// view is shown by `watch`, `record` and `sidecar` when stderr is a terminal).
    #[arg(long)]
    pub no_live: bool,
    /// Print the probes' own diagnostics on stderr, as `observer: kernel: ...` lines: lock
    /// words they could not read, futex calls blocked in an unexpected way, full kernel maps.
    /// For finding out why a wait was missed. Costs each probe a little (a check and, at most a
    /// few times a second per message site, a message); off, it costs nothing.
    /// RUST_LOG=observer_ebpf[=LEVEL] turns it on too, or narrows it (warn: full maps only).
    #[arg(long)]
    pub kernel_log: bool,
    /// Send alerts (as OTLP log records, within about a second) and the blocked-time profile
    /// (as OTLP profiles, every --export-interval and at the end) to this OpenTelemetry
    /// collector: OTLP/HTTP, protobuf, gzip, to URL/v1/logs and URL/v1development/profiles.
    /// Plain http only (e.g. http://127.0.0.1:4318).
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// How often the blocked-time profile goes to --otlp-endpoint (the time since the last one).
    #[arg(long, value_name = "DUR", default_value = "60s", value_parser = parse_duration)]
    pub export_interval: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("8KiB"), Ok(8 << 10));
        assert_eq!(parse_size("10000"), Ok(10000));
        assert!(parse_size("1K").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("M").is_err());
        assert_eq!(parse_ring_size("64K"), Ok(64 << 10));
        assert!(parse_ring_size("48K").is_err());
        assert!(parse_ring_size("2G").is_err());
    }

    #[test]
    fn record_needs_pid_or_all() {
        assert!(Cli::try_parse_from(["observer", "record", "-o", "x"]).is_err());
        assert!(Cli::try_parse_from(["observer", "record", "--all", "-o", "x"]).is_ok());
        assert!(
            Cli::try_parse_from(["observer", "record", "--pid", "1", "--all", "-o", "x"]).is_err()
        );
        assert!(Cli::try_parse_from(["observer", "sidecar", "--comm", "nginx"]).is_ok());
    }

    #[test]
    fn alertmanager_urls_are_checked_at_start() {
        let Command::Sidecar { opts, .. } = Cli::try_parse_from([
            "observer",
            "sidecar",
            "--alertmanager",
            "http://127.0.0.1:9093/",
            "--alertmanager",
            "http://am2:9093",
        ])
        .unwrap()
        .command
        else {
            panic!("not the sidecar");
        };
        assert_eq!(
            opts.alertmanager,
            [
                "http://127.0.0.1:9093/api/v2/alerts",
                "http://am2:9093/api/v2/alerts"
            ]
        );
        let e = Cli::try_parse_from(["observer", "sidecar", "--alertmanager", "https://am:9093"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("https is not supported yet"), "{e}");
        assert!(Cli::try_parse_from([
            "observer",
            "watch",
            "--pid",
            "1",
            "--alertmanager",
            "am:9093"
        ])
        .is_err());
    }
}

/// `--go-probe-budget`: a share of one core (0.02 for `2`), `None` for no limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GoProbeBudget(pub Option<f64>);

/// `--go-probe-budget`: a percentage of one core (`2`, `0.5%`), or `none` for no limit.
fn parse_budget(text: &str) -> Result<GoProbeBudget, String> {
    parse_budget_share(text).map(GoProbeBudget)
}

fn parse_budget_share(text: &str) -> Result<Option<f64>, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("none") || t.eq_ignore_ascii_case("unlimited") {
        return Ok(None);
    }
    let pct: f64 = t
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{text:?} is not a percentage of a core (e.g. 2, 0.5%, none)"))?;
    if !(0.0..=100.0).contains(&pct) || !pct.is_finite() {
        return Err(format!(
            "{text:?}: the budget is between 0 and 100 (% of one core)"
        ));
    }
    Ok(Some(pct / 100.0))
}

#[cfg(test)]
mod budget_tests {
    use super::parse_budget_share as parse_budget;

    #[test]
    fn budgets_are_percent_of_a_core_or_none() {
        assert_eq!(parse_budget("2"), Ok(Some(0.02)));
        assert_eq!(parse_budget("0.5%"), Ok(Some(0.005)));
        assert_eq!(parse_budget("0"), Ok(Some(0.0)));
        assert_eq!(parse_budget("none"), Ok(None));
        assert!(parse_budget("150").is_err());
        assert!(parse_budget("-1").is_err());
        assert!(parse_budget("NaN").is_err());
        assert!(parse_budget("lots").is_err());
    }
}
