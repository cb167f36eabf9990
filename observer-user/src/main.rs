//! The `observer` binary: argument parsing, privilege and target checks, then a session.

use std::{io::Write as _, process::ExitCode, time::Instant};

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser};
use observer::{
    cli::{Cli, Command, FilterOpts, ObserveOpts},
    kernel::{
        kernel_log::{self, KernelLogConfig},
        privileges,
        probes::{ProbeConfig, Probes},
        tracefs,
    },
    output::output_file,
    proc::{
        scope::{ProcessFilter, Scope},
        target::{self, Launched, TargetError},
    },
    say,
    session::{Ended, Outcome, Session, SessionOptions},
};

fn main() -> ExitCode {
    keep_standard_fds_taken();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        // Log lines name threads, processes and paths of targets: escaped like the rest of
        // stderr (see observer::util::stderr).
        .format(|buf, record| {
            writeln!(
                buf,
                "[{} {} {}] {}",
                buf.timestamp(),
                record.level(),
                record.target(),
                observer::util::stderr::escape(&record.args().to_string())
            )
        })
        .init();
    let args =
        match observer::util::config_file::expand(std::env::args_os().collect(), &Cli::command()) {
            Ok(args) => args,
            Err(e) => {
                say!("observer: {}", e);
                return ExitCode::from(2);
            }
        };
    let cli = Cli::parse_from(args);
    match run(cli) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            say!(
                "observer: error: {}",
                observer::util::errors::render_chain(e.chain())
            );
            // Like a shell: 127 for a command not found, 126 for one that cannot be executed.
            match e.downcast_ref::<TargetError>() {
                Some(TargetError::CannotRun { exit_code, .. }) => ExitCode::from(*exit_code),
                _ => ExitCode::from(2),
            }
        }
    }
}

/// Started with stdin, stdout or stderr closed (`2>&-`), the first file observer opens would
/// take that number, and every message meant for stderr would land in an output file: each
/// closed one is pointed at /dev/null instead.
fn keep_standard_fds_taken() {
    for fd in 0..=2 {
        // SAFETY: F_GETFD only queries the descriptor.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            // SAFETY: a static NUL-terminated path; the fd it returns is the lowest free one,
            // which is `fd` itself since the lower ones are open.
            unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        }
    }
}

/// Says which outputs could not be written (the others were, and the summary was printed);
/// true when there were any.
fn report_failed_outputs(ended: &Ended) -> bool {
    for f in &ended.failed_outputs {
        say!("observer: error: {f}");
    }
    !ended.failed_outputs.is_empty()
}

/// The exit code of `watch`, `record` and `sidecar`: 2 when an output could not be written.
fn observed(ended: &Ended) -> i32 {
    if report_failed_outputs(ended) {
        2
    } else {
        0
    }
}

fn run(cli: Cli) -> Result<i32> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Watch { pid, opts } => {
            check_outputs(&opts, None)?;
            let session_opts = session_options(&opts)?;
            // Privileges first: without them the pid check fails too, with less useful advice.
            privileges::check()?;
            target::check_pid(pid)?;
            let probes = attach(&opts, false)?;
            // It may have exited while the probes were loading.
            target::check_pid(pid)?;
            if !opts.quiet {
                say!(
                    "observer: watching pid {pid} ({}); threshold {}, stall-after {}{}. Ctrl-C to stop.",
                    observer::proc::procinfo::comm_of(pid).unwrap_or_default(),
                    observer::util::duration::human(opts.threshold),
                    observer::util::duration::human(opts.stall_after),
                    opts.duration
                        .map(|d| format!(", for {}", observer::util::duration::human(d)))
                        .unwrap_or_default()
                );
            }
            let session = Session::new(session_opts, probes, Scope::Process(pid))?;
            Ok(observed(&runtime.block_on(session.run(None))?))
        }
        Command::Record {
            pid,
            all,
            filter,
            output,
            opts,
        } => {
            check_outputs(&opts, Some(&output))?;
            let mut session_opts = session_options(&opts)?;
            let scope = match pid {
                Some(pid) => {
                    privileges::check()?;
                    target::check_pid(pid)?;
                    Scope::Process(pid)
                }
                None => Scope::Host(process_filter(&filter)?),
            };
            debug_assert!(all || pid.is_some());
            let probes = attach(&opts, matches!(scope, Scope::Host(_)))?;
            let what = match &scope {
                Scope::Process(pid) => {
                    target::check_pid(*pid)?;
                    format!("pid {pid}")
                }
                Scope::Host(f) => format!("the host ({})", f.describe()),
            };
            if !opts.quiet {
                say!(
                    "observer: recording {what} to {}. Ctrl-C to stop.",
                    output.display()
                );
            }
            session_opts.record = Some(output);
            let session = Session::new(session_opts, probes, scope)?;
            Ok(observed(&runtime.block_on(session.run(None))?))
        }
        Command::Sidecar {
            filter,
            alerts_max_bytes,
            alerts_keep,
            metrics_addr,
            no_metrics,
            opts,
        } => {
            check_outputs(&opts, None)?;
            let filter = process_filter(&filter)?;
            privileges::check()?;
            let mut session_opts = session_options(&opts)?;
            session_opts.alerts_rotation = Some((alerts_max_bytes, alerts_keep));
            // Bound before the probes load: a taken port is a quick, clear error. Served from
            // a thread of its own, so that a scrape never waits for the session's work
            // (draining the kernel maps, symbolizing).
            if !no_metrics {
                let server = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("starting the metrics server")?;
                let listener = server.block_on(observer::output::metrics::bind(&metrics_addr))?;
                let bound = listener
                    .local_addr()
                    .map_or_else(|_| metrics_addr.clone(), |a| a.to_string());
                let metrics = observer::output::metrics::Metrics::new();
                session_opts.metrics = Some(metrics.clone());
                std::thread::Builder::new()
                    .name("observer-metrics".into())
                    .spawn(move || {
                        server.block_on(observer::output::metrics::serve(listener, metrics))
                    })
                    .context("starting the metrics server")?;
                // The bound address, not the asked one: with port 0 the kernel picks the
                // port, and this line is the only place it can be learnt (so even --quiet
                // prints it then).
                let port_chosen_by_kernel = metrics_addr.ends_with(":0");
                if !opts.quiet || port_chosen_by_kernel {
                    say!("observer: metrics on http://{bound}/metrics");
                }
            }
            let probes = attach(&opts, true)?;
            if !opts.quiet {
                say!(
                    "observer: sidecar: watching {}; threshold {}, stall-after {}. Ctrl-C to stop.",
                    filter.describe(),
                    observer::util::duration::human(opts.threshold),
                    observer::util::duration::human(opts.stall_after),
                );
            }
            let session = Session::new(session_opts, probes, Scope::Host(filter))?;
            Ok(observed(&runtime.block_on(session.run(None))?))
        }
        Command::Report {
            file,
            format,
            output,
        } => {
            if let Some(out) = output
                .as_deref()
                .filter(|p| *p != std::path::Path::new("-"))
            {
                output_file::open(out, output_file::Mode::Check)?;
            }
            let rec = observer::output::recording::Recording::read(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            if rec.truncated {
                say!(
                    "observer: note: {} was cut short; reporting up to its last whole block",
                    file.display()
                );
            }
            observer::output::report::report(&rec, format, output.as_deref())?;
            Ok(0)
        }
        Command::Goroutines {
            pid,
            json,
            grouped,
            system,
            snapshot_cost,
        } => {
            if snapshot_cost {
                goroutine_snapshot_cost(pid)?;
            } else {
                goroutines_dump(pid, json, grouped, system)?;
            }
            Ok(0)
        }
        Command::Run { opts, command } => {
            check_outputs(&opts, None)?;
            let mut session_opts = session_options(&opts)?;
            target::check_command(&command[0])?;
            let probes = attach(&opts, false)?;
            let _guard = runtime.enter(); // the command is awaited on a blocking task of the runtime
            let launched = Launched::spawn(&command)?;
            if !opts.quiet {
                say!(
                    "observer: running `{}` as pid {}",
                    command.join(" "),
                    launched.pid
                );
            }
            // The command shares the terminal: no live view over its output.
            session_opts.live = false;
            let session = Session::new(session_opts, probes, Scope::Process(launched.pid))?;
            let ended = runtime.block_on(session.run(Some(launched)))?;
            let code = match ended.outcome {
                Outcome::Command(code) => code,
                Outcome::Finished => 0,
            };
            // The command's status is what the caller of `run` acts on: a failed output is
            // said, and does not replace it.
            if report_failed_outputs(&ended) {
                say!("observer: the command exited with status {code}; exiting with it although outputs failed");
            }
            Ok(code)
        }
    }
}

/// `observer goroutines --snapshot-cost`: what following this process from memory costs.
fn goroutine_snapshot_cost(pid: u32) -> Result<()> {
    use observer::detect::goparked::{snapshot_period_ns, SNAPSHOT_CPU_SHARE};
    use observer::golang;
    const READS: usize = 10;
    target::check_pid(pid)?;
    let bin = golang::GoBinary::for_pid(pid).with_context(|| format!("pid {pid}"))?;
    let bias = golang::goroutines::load_bias(pid, &bin)?;
    let mut costs = Vec::with_capacity(READS);
    let mut last = golang::goroutines::ParkedSnapshot::default();
    for _ in 0..READS {
        let started = Instant::now();
        last = golang::goroutines::parked_snapshot(pid, &bin, bias)?;
        costs.push(started.elapsed());
    }
    costs.sort();
    let median = costs[READS / 2];
    let period = snapshot_period_ns(
        median.as_nanos() as u64,
        SNAPSHOT_CPU_SHARE,
        observer::detect::goparked::MIN_PERIOD_NS,
        observer::detect::goparked::MAX_PERIOD_NS,
    );
    println!(
        "pid {pid}: {} goroutines ({} parked): snapshot {:.3} ms (median of {READS}, min {:.3}, max {:.3}); \
         read every {:.0} ms at {}% of a core",
        last.goroutines,
        last.parked.len(),
        median.as_secs_f64() * 1e3,
        costs[0].as_secs_f64() * 1e3,
        costs[READS - 1].as_secs_f64() * 1e3,
        period as f64 / 1e6,
        SNAPSHOT_CPU_SHARE * 100.0
    );
    Ok(())
}

/// `observer goroutines`: a probe-free dump of a Go process.
fn goroutines_dump(pid: u32, json: bool, grouped: bool, system: bool) -> Result<()> {
    use observer::golang;
    target::check_pid(pid)?;
    let bin = golang::GoBinary::for_pid(pid).with_context(|| format!("pid {pid}"))?;
    let started = Instant::now();
    let goroutines = golang::goroutines::dump(pid, &bin)?;
    let bias = golang::goroutines::load_bias(pid, &bin)?;
    let mut sym = golang::PclntabSymbolizer::new(&bin, bias);
    let opts = golang::RenderOptions {
        show_system: system,
    };
    let text = if json {
        serde_json::to_string_pretty(&golang::render_json(&goroutines, &mut sym))?
    } else if grouped {
        golang::render_debug1(&goroutines, &mut sym, opts)
    } else {
        golang::render_debug2(&goroutines, &mut sym, opts)
    };
    // A reader that closes the pipe early (`| head`) is not an error.
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = writeln!(stdout, "{}", text.trim_end()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e.into());
        }
    }
    log::info!(
        "{} goroutines read in {:?}",
        goroutines.len(),
        started.elapsed()
    );
    Ok(())
}

/// Every output is opened (created if missing, checked if present: see
/// [`observer::output::output_file`]) before anything is attached: a typo in a directory name, a FIFO
/// or a file of another user at the path fails in a second, not after a long run. The files
/// are opened again, with the same checks, when they are written.
fn check_outputs(opts: &ObserveOpts, extra: Option<&std::path::Path>) -> Result<()> {
    let paths = [&opts.alerts, &opts.folded, &opts.pprof, &opts.svg];
    for path in paths
        .into_iter()
        .flatten()
        .map(|p| p.as_path())
        .chain(extra)
    {
        if path == std::path::Path::new("-") {
            continue;
        }
        output_file::open(path, output_file::Mode::Check)?;
    }
    Ok(())
}

fn json_alerts_on_a_terminal(opts: &ObserveOpts) -> bool {
    opts.alerts.as_deref() == Some(std::path::Path::new("-"))
        && std::io::IsTerminal::is_terminal(&std::io::stdout())
}

fn process_filter(f: &FilterOpts) -> Result<ProcessFilter> {
    if let Some(cgroup) = f.cgroup.as_deref() {
        observer::proc::scope::check_cgroup(cgroup)?;
    }
    Ok(ProcessFilter::new(
        f.comm.as_deref(),
        f.cgroup.as_deref(),
        f.container.as_deref(),
    )?)
}

fn attach(opts: &ObserveOpts, sidecar: bool) -> Result<Probes> {
    // Every observing command attaches before its first long step (symbolizing a big binary).
    observer::util::progress::set_quiet(opts.quiet);
    privileges::check()?;
    let tracefs_dir = tracefs::ensure_tracefs()?;
    let started = Instant::now();
    let probes = Probes::load(
        &ProbeConfig {
            threshold_ns: observer::util::duration::duration_ns(opts.threshold),
            report_idle: opts.report_idle,
            ring_bytes: opts.ring_size,
            sidecar,
            kernel_log: kernel_log_config(opts.kernel_log),
        },
        &tracefs_dir,
    )?;
    log::info!("probes attached in {:?}", started.elapsed());
    Ok(probes)
}

/// `--kernel-log` / `RUST_LOG=observer_ebpf`: the probes' diagnostics go to stderr, escaped
/// (they carry values read from targets).
fn kernel_log_config(flag: bool) -> Option<KernelLogConfig> {
    let rust_log = std::env::var(kernel_log::ENV).ok();
    let level = kernel_log::wanted_level(flag, rust_log.as_deref());
    fn to_stderr(line: &str) {
        say!("{line}");
    }
    (level != log::LevelFilter::Off).then_some(KernelLogConfig {
        level,
        sink: to_stderr,
    })
}

fn session_options(opts: &ObserveOpts) -> Result<SessionOptions> {
    let otlp = opts
        .otlp_endpoint
        .as_deref()
        .map(|url| observer::output::otlp::OtlpConfig::new(url, opts.export_interval))
        .transpose()?;
    Ok(SessionOptions {
        threshold: opts.threshold,
        stall_after: opts.stall_after,
        duration: opts.duration,
        alerts: opts.alerts.clone(),
        folded: opts.folded.clone(),
        pprof: opts.pprof.clone(),
        svg: opts.svg.clone(),
        report_idle: opts.report_idle,
        quiet: opts.quiet,
        no_go: opts.no_go,
        go_probe_budget: opts.go_probe_budget.0,
        record: None,
        alerts_rotation: None,
        metrics: None,
        alertmanager: opts.alertmanager.clone(),
        // JSON alerts on a terminal's stdout would scribble over the view.
        live: !opts.no_live && !json_alerts_on_a_terminal(opts),
        otlp,
    })
}
