//! Command-line interface. The subcommand and flag names are a contract: tests and users
//! depend on them.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::duration::parse_duration;

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
                  --alerts PATH, --folded PATH, --pprof PATH, --svg PATH; see `observer watch --help`.\n\n\
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
        #[arg(long, value_name = "PID")]
        pid: u32,
        /// The recording file to write.
        #[arg(short = 'o', long, value_name = "FILE")]
        output: PathBuf,
        #[command(flatten)]
        opts: ObserveOpts,
    },
    /// Report on a recording: replay its alerts or render its profile.
    Report {
        /// The recording (from `observer record`).
        file: PathBuf,
        /// What to produce.
        #[arg(long, value_enum, default_value = "text")]
        format: crate::report::Format,
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

#[derive(Debug, Args, Clone)]
pub struct ObserveOpts {
    /// Report lock waits at least this long (lock_wait alerts), e.g. 250ms, 2s.
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
    /// Take the goroutine probes off a Go target that parks goroutines faster than this (per
    /// second, measured every half second): each park costs it two uprobe traps (~10-25 us here, see
    /// BENCHMARKS.md), and observer must never be what slows a program down. Thread-level
    /// observation goes on. 0 = no limit.
    #[arg(long, value_name = "N", default_value_t = 5000)]
    pub go_max_parks: u64,
    /// Do not print alerts and the summary on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}
