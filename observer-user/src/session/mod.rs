//! One observation run: drains kernel events, scans blocked threads, raises alerts, and writes
//! the outputs when it ends (duration, Ctrl-C / SIGTERM, or the target exiting).
//!
//! A session observes either one process (`watch`, `run`, `record --pid`) or every process of
//! the host that a filter accepts (`sidecar`, `record --all`). Per-process state lives in
//! [`watched::WatchedProcess`]; everything else (alert sink, profile, thread-exit tracker, deadlock
//! detector) is shared, since thread ids are unique host-wide.

mod code_sites;
mod degraded;
mod export;
mod go_snapshots;
pub mod goattach;
mod goroutine_events;
mod holders;
mod home_stalls;
mod inflight_stacks;
mod kernel_adapters;
mod lifecycle;
mod live;
mod lock_holds;
mod otlp_hooks;
mod short_stacks;
mod waits;
mod watched;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use anyhow::{Context, Result};
use observer_common::{sysno, wait_class};
use tokio::signal::unix::{signal, SignalKind};

use crate::{
    detect::procexit::ProcessExits,
    detect::stall::StallRule,
    detect::thread_exits::ThreadExitTracker,
    detect::waitgraph::DeadlockReporter,
    kernel::events::{Event, EventError},
    kernel::probes::{Counters, Probes},
    output::alert::{self, Alert, AlertDetail},
    output::profile::BlockedProfile,
    output::recording::{self, Recorder},
    output::sink::AlertSink,
    output::summary,
    proc::scope::Scope,
    proc::target::{self, Launched},
    stacks::frame::Frame,
    stacks::resolver::StackResolver,
    util::clock::monotonic_ns,
    util::duration::duration_ns,
};

use watched::{Discovery, ThreadInfo, WatchedProcess};

/// How often the per-park goroutine probes' duty cycle is looked at (its shortest on-window).
const GO_DUTY_INTERVAL: Duration = Duration::from_millis(10);
/// How often blocked threads are scanned for stalls and deadlocks.
const SCAN_INTERVAL: Duration = Duration::from_millis(200);
/// Deadlock cycles are only looked for among waits at least this old (or --stall-after if
/// shorter): a real cycle never resolves, and young waits are mostly about to be granted.
const DEADLOCK_MIN_AGE: Duration = Duration::from_secs(1);
/// How long to wait for a vanished target's exit event before giving up on it.
const EXIT_EVENT_GRACE: Duration = Duration::from_secs(1);
/// Short-wait aggregates are moved out of the kernel this often, keeping its map small.
const DRAIN_INTERVAL: Duration = Duration::from_secs(5);
/// Host mode: how often /proc is scanned for processes the kernel did not hand us (started by
/// an unwatched parent without exec, or missed while the ring buffer was full).
const DISCOVERY_INTERVAL: Duration = Duration::from_secs(2);

pub struct SessionOptions {
    pub threshold: Duration,
    pub stall_after: Duration,
    pub duration: Option<Duration>,
    pub alerts: Option<PathBuf>,
    /// Rotate the alerts file at this size, keeping this many old files (sidecar).
    pub alerts_rotation: Option<(u64, u32)>,
    pub folded: Option<PathBuf>,
    pub pprof: Option<PathBuf>,
    pub svg: Option<PathBuf>,
    pub report_idle: bool,
    pub quiet: bool,
    pub no_go: bool,
    /// Goroutine parks per second above which the Go probes are taken off (0: no limit).
    /// Share of one core a Go target may spend in per-park probe traps (0: never attach
    /// them; `None`: no limit).
    pub go_probe_budget: Option<f64>,
    /// Write a recording (`observer record`).
    pub record: Option<PathBuf>,
    /// Prometheus metrics to keep up to date (sidecar).
    pub metrics: Option<Arc<crate::output::metrics::Metrics>>,
    /// Show the live top-style view when stderr is a terminal.
    pub live: bool,
    /// Alertmanager v2 endpoints to post alerts to.
    pub alertmanager: Vec<String>,
    /// Export alerts and profiles over OTLP (`--otlp-endpoint`).
    pub otlp: Option<crate::output::otlp::OtlpConfig>,
}

/// How a session ended.
pub struct Ended {
    pub outcome: Outcome,
    /// Outputs that could not be written, each "cannot write X to PATH: why". The others were
    /// written and the summary printed all the same.
    pub failed_outputs: Vec<String>,
}

/// What ended the session, for the exit code.
pub enum Outcome {
    /// Watch mode: done (duration, signal, or target exit).
    Finished,
    /// Run mode: the command's exit code (128 + signal if killed).
    Command(i32),
}

pub struct Session {
    opts: SessionOptions,
    probes: Probes,
    scope: Scope,
    /// The processes observed, by pid.
    watched: HashMap<u32, WatchedProcess>,
    stacks: StackResolver,
    sink: AlertSink,
    folded: BlockedProfile,
    exits: ThreadExitTracker,
    process_exits: ProcessExits,
    deadlocks: DeadlockReporter,
    stall_rule: StallRule,
    lock_holds: lock_holds::LockHolds,
    /// Names of threads seen, kept past their exit for the alerts that name them.
    threads: HashMap<u32, ThreadInfo>,
    /// (tgid, tid, exit time) of threads that exited in the last seconds.
    recent_exits: Vec<(u32, u32, u64)>,
    alert_counts: HashMap<&'static str, u64>,
    /// Single-process scope: the process has ended.
    target_gone: bool,
    event_errors: u64,
    discovery: Discovery,
    started: std::time::Instant,
    started_wall: SystemTime,
    recorder: Option<Recorder>,
    /// The live view, while it owns the terminal.
    live: Option<crate::terminal::liveview::LiveTerminal>,
    live_state: live::LiveState,
    /// Which lock a futex wait is for: builds the tables from the processes' binaries.
    site_builder: code_sites::SiteBuilder,
    /// Full stacks sampled for the short waits the kernel sums.
    short_stacks: short_stacks::ShortStacks,
    /// Threads holding a lock others wait for, and what they were seen doing.
    holders: holders::Holders,
    /// observer's own limits in effect (full ring buffer or maps, the Go probe budget).
    degraded: degraded::Degradation,
    /// Stacks of waiters read while they wait, for waits that no thread of theirs ends.
    wait_stack_worker: Option<inflight_stacks::SnapshotWorker>,
    wait_stack_counts: inflight_stacks::WaitStackCounts,
    /// Threads' homes and their stalls away from them.
    home_stalls: home_stalls::HomeStalls,
    alertmanager: Option<crate::output::alertmanager::Alertmanager>,
    /// The OTLP export, with the blocked time gathered since its last profiles.
    otlp: Option<crate::output::otlp::OtlpExporter>,
}

/// How often the live view is redrawn.
const LIVE_INTERVAL: Duration = Duration::from_secs(1);

impl Session {
    pub fn new(opts: SessionOptions, probes: Probes, scope: Scope) -> Result<Self> {
        let live = crate::terminal::liveview::LiveTerminal::new_if_tty(opts.live && !opts.quiet);
        // While the view owns the terminal, alert lines go into it instead of onto stderr.
        let quiet = opts.quiet || live.is_some();
        let sink = match (opts.alerts.as_deref(), opts.alerts_rotation) {
            (Some(path), Some((max_bytes, keep))) if path != std::path::Path::new("-") => {
                AlertSink::open_rotating(path, max_bytes, keep, quiet)?
            }
            (path, _) => AlertSink::open(path, quiet)?,
        };
        let otlp = match opts.otlp.clone() {
            Some(c) => Some(crate::output::otlp::OtlpExporter::start(
                c,
                opts.metrics.clone(),
            )?),
            None => None,
        };
        let wait_stack_worker = match probes.in_flight_table() {
            Ok(table) => {
                inflight_stacks::SnapshotWorker::start(table, opts.threshold, opts.report_idle)
            }
            Err(e) => {
                log::warn!("no wait stack snapshots: {e}");
                None
            }
        };
        let alertmanager = export::alertmanager(&opts);
        Ok(Self {
            alertmanager,
            opts,
            probes,
            scope,
            watched: HashMap::new(),
            stacks: StackResolver::new(),
            sink,
            folded: BlockedProfile::new(),
            exits: ThreadExitTracker::default(),
            process_exits: ProcessExits::default(),
            deadlocks: DeadlockReporter::new(),
            stall_rule: StallRule::default(),
            lock_holds: lock_holds::LockHolds::default(),
            threads: HashMap::new(),
            recent_exits: Vec::new(),
            alert_counts: HashMap::new(),
            target_gone: false,
            event_errors: 0,
            discovery: Discovery::default(),
            started: std::time::Instant::now(),
            started_wall: SystemTime::now(),
            recorder: None,
            live,
            live_state: live::LiveState::default(),
            site_builder: code_sites::SiteBuilder::start(),
            short_stacks: Default::default(),
            holders: holders::Holders::default(),
            degraded: Default::default(),
            wait_stack_worker,
            wait_stack_counts: Default::default(),
            home_stalls: home_stalls::HomeStalls::default(),
            otlp,
        })
    }

    /// The one process of a single-process session.
    fn single_pid(&self) -> Option<u32> {
        match self.scope {
            Scope::Process(pid) => Some(pid),
            Scope::Host(_) => None,
        }
    }

    fn is_host(&self) -> bool {
        matches!(self.scope, Scope::Host(_))
    }

    /// Runs until the end condition; `launched` is the command of `observer run`.
    pub async fn run(mut self, mut launched: Option<Launched>) -> Result<Ended> {
        let mut ring = self.probes.take_events()?;
        match (self.single_pid(), launched.as_mut()) {
            (Some(pid), Some(l)) => self.start_launched(pid, l)?,
            (Some(pid), None) => self.start_running(pid)?,
            (None, _) => self.discover(true),
        }
        self.start_recording()?;
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut scan = tokio::time::interval(SCAN_INTERVAL);
        let mut drain = tokio::time::interval(DRAIN_INTERVAL);
        let mut discovery = tokio::time::interval(DISCOVERY_INTERVAL);
        let mut live_tick = tokio::time::interval(LIVE_INTERVAL);
        let mut go_duty_tick = tokio::time::interval(GO_DUTY_INTERVAL);
        let otlp_interval = self
            .otlp
            .as_ref()
            .map_or(Duration::from_secs(3600), |o| o.interval());
        let mut otlp_tick =
            tokio::time::interval_at(tokio::time::Instant::now() + otlp_interval, otlp_interval);
        let deadline = self.opts.duration.map(|d| tokio::time::Instant::now() + d);
        let sleep_until = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(sleep_until);
        let mut command_status = None;
        let mut gone_since: Option<std::time::Instant> = None;
        let mut interrupts = 0u32;
        let mut exit = launched.as_mut().and_then(Launched::take_exit);

        loop {
            tokio::select! {
                batch = ring.next_batch() => {
                    self.handle_batch(batch?);
                }
                _ = scan.tick() => {
                    self.refresh_code_sites();
                    self.scan_blocked();
                    self.scan_goroutines();
                    self.poll_thread_exits();
                    self.check_degraded();
                    self.update_metrics();
                    if let (Some(pid), None) = (self.single_pid(), launched.as_ref()) {
                        if !self.target_gone && !target::is_alive(pid) {
                            // The group leader turns zombie before the last thread has
                            // exited: wait a little for the process-exit event, which ends
                            // the loop.
                            let since = *gone_since.get_or_insert_with(std::time::Instant::now);
                            self.handle_batch(ring.take_ready());
                            if since.elapsed() > EXIT_EVENT_GRACE {
                                self.target_gone = true;
                            }
                        }
                        if self.target_gone {
                            break;
                        }
                    }
                }
                _ = discovery.tick(), if self.is_host() => {
                    self.discover(false);
                }
                _ = go_duty_tick.tick(), if self.go_duty_active() => {
                    self.tick_go_duty();
                }
                _ = otlp_tick.tick(), if self.otlp.is_some() => {
                    self.otlp_export_profiles();
                }
                _ = live_tick.tick(), if self.live.is_some() => {
                    self.draw_live();
                }
                _ = drain.tick() => {
                    self.drain_aggregates();
                    self.record_profile();
                }
                code = async { exit.as_mut().expect("guarded").await }, if exit.is_some() => {
                    command_status = Some(code.unwrap_or(1));
                    break;
                }
                _ = sigint.recv() => {
                    // Under `run`, the terminal sent SIGINT to the command too: the first one
                    // waits for it to exit; a second one stops observing at once.
                    interrupts += 1;
                    if launched.is_none() || interrupts > 1 {
                        crate::say!("observer: interrupted, writing outputs");
                        break;
                    }
                }
                _ = sigterm.recv() => {
                    interrupts += 1;
                    match launched.as_ref() {
                        Some(l) if interrupts == 1 => {
                            // SAFETY: signalling our own child.
                            unsafe { libc::kill(l.pid as i32, libc::SIGTERM) };
                        }
                        _ => {
                            crate::say!("observer: terminated, writing outputs");
                            break;
                        }
                    }
                }
                _ = &mut sleep_until => break,
            }
        }
        // Events of the last moments (the process exit among them).
        self.handle_batch(ring.take_ready());
        self.poll_thread_exits();
        let failed_outputs = self.finish();
        if let (None, Some(exit)) = (command_status, exit.as_mut()) {
            // --duration ended the observation, not the command: its status is still ours.
            if !self.opts.quiet {
                crate::say!("observer: observation over; waiting for the command to exit");
            }
            drop(self);
            return Ok(Ended {
                outcome: Outcome::Command(exit.await.unwrap_or(1)),
                failed_outputs,
            });
        }
        Ok(Ended {
            outcome: match command_status {
                Some(code) => Outcome::Command(code),
                None => Outcome::Finished,
            },
            failed_outputs,
        })
    }

    fn handle_batch(&mut self, records: Vec<Result<Event, EventError>>) {
        let mut batch = Vec::with_capacity(records.len());
        for record in records {
            match record {
                Ok(ev) => batch.push(ev),
                Err(e) => {
                    self.event_errors += 1;
                    log::warn!("{e}");
                }
            }
        }
        for ev in batch {
            self.handle(ev);
        }
    }

    fn handle(&mut self, ev: Event) {
        let tgid = match &ev {
            Event::Wait(w) => w.tgid,
            Event::Fork(f) => f.tgid,
            Event::Exit(e) => e.tgid,
            Event::Signal(s) => s.tgid,
            Event::GoWait(w) => w.tgid,
            Event::ShortSample(s) => s.key.tgid,
            Event::GoPanic(p) | Event::GoRecovered(p) | Event::GoFatal(p) => p.tgid,
            Event::HolderSample(s) => s.tgid,
            Event::Exec(e) => {
                self.on_exec(e);
                return;
            }
        };
        // Once a single target has ended, its pid may belong to an unrelated process: nothing
        // more is taken from it (the kernel stops watching it at the same moment).
        if !self.accept_event_from(tgid) {
            return;
        }
        match ev {
            Event::Wait(w) => self.on_wait(&w),
            Event::Fork(f) => self.on_fork(&f),
            Event::Exit(e) => self.on_exit(&e),
            Event::Signal(s) => self.process_exits.fatal_signal(s.tgid, s.tid, s.sig),
            Event::GoWait(w) => self.on_go_wait(&w),
            Event::ShortSample(s) => self.on_short_sample(&s),
            Event::GoPanic(p) => self.on_go_panic(&p),
            Event::GoRecovered(p) => self.on_go_recovered(&p),
            Event::GoFatal(p) => self.on_go_fatal(&p),
            Event::HolderSample(s) => self.on_holder_sample(&s),
            Event::Exec(_) => {}
        }
    }

    fn start_recording(&mut self) -> Result<()> {
        let Some(path) = self.opts.record.clone() else {
            return Ok(());
        };
        let (pid, process, executable) = match self.single_pid() {
            Some(pid) => {
                let t = self.watched.get(&pid);
                (
                    pid,
                    t.map(|t| t.name.clone()).unwrap_or_default(),
                    t.and_then(|t| t.executable.clone()),
                )
            }
            None => (
                0,
                match &self.scope {
                    Scope::Host(f) => format!("host: {}", f.describe()),
                    Scope::Process(_) => String::new(),
                },
                None,
            ),
        };
        let meta = recording::Meta {
            observer_version: env!("CARGO_PKG_VERSION").to_string(),
            pid,
            process,
            executable: executable.as_ref().map(|(p, _)| p.display().to_string()),
            build_id: executable.and_then(|(_, b)| b),
            started: alert::format_time(self.started_wall),
            threshold_ns: duration_ns(self.opts.threshold),
            stall_after_ns: duration_ns(self.opts.stall_after),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
        };
        self.recorder = Some(
            Recorder::create(&path, &meta)
                .with_context(|| format!("creating the recording {}", path.display()))?,
        );
        Ok(())
    }

    /// A profile snapshot in the recording, so a cut-short recording still has one.
    fn record_profile(&mut self) {
        let Some(r) = self.recorder.as_mut() else {
            return;
        };
        let c = self.probes.counters();
        let snapshot = recording::ProfileSnapshot {
            elapsed_ns: duration_ns(self.started.elapsed()),
            stacks: self.folded.entries(),
            events_dropped: c.events_dropped,
            agg_dropped: c.agg_dropped,
        };
        if let Err(e) = r.profile(&snapshot) {
            crate::say!("observer: error: recording: {e}");
        }
    }

    /// Writes every output and prints the summary. One output that fails (a full disk, a
    /// removed directory) does not stop the others: the failures are returned.
    fn finish(&mut self) -> Vec<String> {
        // The terminal is the user's again before anything else is printed.
        if let Some(mut term) = self.live.take() {
            term.restore();
        }
        self.drain_aggregates();
        self.drain_lock_holds();
        self.flush_go_holds(true);
        self.flush_away();
        self.add_ongoing_lock_waits();
        self.finish_degraded();
        self.record_profile();
        let mut failed = Vec::new();
        if let Some(r) = self.recorder.take() {
            if let Err(e) = r.finish() {
                let path = self
                    .opts
                    .record
                    .as_deref()
                    .unwrap_or(std::path::Path::new("?"));
                failed.push(format!(
                    "cannot write the recording {}: {e}",
                    path.display()
                ));
            }
        }
        let counters = self.probes.counters();
        if let Some(path) = &self.opts.folded {
            if let Err(e) = self.folded.write_to(path) {
                failed.push(e.to_string());
            }
        }
        let main = self
            .single_pid()
            .and_then(|pid| self.watched.get(&pid))
            .and_then(|t| t.executable.clone());
        if let Some(path) = &self.opts.pprof {
            let meta = crate::output::pprof::PprofMeta {
                main_binary: main.as_ref().map(|(p, _)| p.clone()),
                build_id: main.as_ref().and_then(|(_, b)| b.clone()),
                duration_ns: duration_ns(self.started.elapsed()),
                time_nanos: self
                    .started_wall
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(duration_ns)
                    .unwrap_or(0),
            };
            if let Err(e) = crate::output::pprof::write_pprof(&self.folded, &meta, path) {
                failed.push(e.to_string());
            }
        }
        if let Some(path) = &self.opts.svg {
            let title = format!("Blocked time: {}", self.scope_label());
            if let Err(e) = crate::output::svg::write_svg(&self.folded, &title, path) {
                failed.push(e.to_string());
            }
        }
        failed.extend(self.sink.finish());
        self.finish_export();
        if !self.opts.quiet {
            crate::util::stderr::text(&self.summary_text(&counters));
        }
        // Last: local outputs are written before the (bounded) wait for the collector.
        if let Some(o) = self.otlp.take() {
            o.finish();
        }
        failed
    }

    /// "bank (pid 42)" or "host: every process".
    fn scope_label(&self) -> String {
        match &self.scope {
            Scope::Process(pid) => format!(
                "{} (pid {pid})",
                self.watched
                    .get(pid)
                    .map(|t| t.name.clone())
                    .unwrap_or_else(|| format!("pid{pid}"))
            ),
            Scope::Host(f) => format!("host: {}", f.describe()),
        }
    }

    fn summary_text(&self, c: &Counters) -> String {
        let mut kinds: Vec<(String, u64)> = self
            .alert_counts
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        kinds.sort();
        let text = summary::render(&summary::SummaryInput {
            process: self.scope_label(),
            top_stacks: self.folded.top(5),
            idle: self.idle_time(),
            alerts_by_kind: kinds,
            lock_holds: self.lock_holds.episodes,
            lock_hold_waiters: self.lock_holds.waiters,
            lock_waits_ungrouped: self.lock_holds.ungrouped(),
            thread_deaths: self.exits.site_counts(),
            events_dropped: c.events_dropped,
            agg_dropped: c.agg_dropped,
            inflight_dropped: c.inflight_dropped,
            stacks_missing: c.stack_missing,
            waits_seen: c.waits_started,
            long_waits: self.live_state.long_waits,
            report_idle: self.opts.report_idle,
            folded_path: self.opts.folded.clone(),
            alerts_path: self.opts.alerts.clone(),
            undecodable_events: self.event_errors,
        });
        text + &self.short_stacks_note(c)
            + &self.inflight_stacks_note()
            + &self.go_sampling_note()
            + &self.degraded_note()
    }

    /// An alert about process `pid`, thread `tid`, with their namespace ids when they differ;
    /// `stack` gives the alert's `stack` names and the frames a recording keeps.
    fn alert(
        &mut self,
        time: String,
        pid: u32,
        tid: u32,
        stack: Vec<Frame>,
        detail: AlertDetail,
    ) -> Alert {
        let comm = if tid != 0 {
            self.thread_comm(pid, tid).unwrap_or_default()
        } else {
            self.process_name(pid)
        };
        self.alert_with_comm(time, pid, tid, comm, stack, detail)
    }

    fn alert_with_comm(
        &mut self,
        time: String,
        pid: u32,
        tid: u32,
        comm: String,
        stack: Vec<Frame>,
        detail: AlertDetail,
    ) -> Alert {
        let ns_pid = self.watched.get(&pid).and_then(|t| t.ns_pid);
        let ns_tid = ns_pid.and_then(|_| crate::proc::procinfo::ns_id(pid, tid));
        let identity = self.container_of(pid);
        let mut alert = Alert {
            time,
            pid,
            tid,
            comm,
            ns_pid,
            ns_tid,
            container_id: identity.container_id,
            pod_uid: identity.pod_uid,
            stack: crate::stacks::frame::names(&stack),
            detail,
            frames: Vec::new(),
        };
        alert.keep_frames("stack", stack);
        alert
    }

    fn emit(&mut self, alert: Alert) {
        *self.alert_counts.entry(alert.detail.kind()).or_default() += 1;
        self.live_state.alert(&alert);
        if let Some(term) = self.live.as_mut() {
            term.note(crate::output::alert_text::one_line(&alert));
        }
        if let Some(m) = &self.opts.metrics {
            let comm = self.process_name(alert.pid);
            m.alert(alert.pid, &comm, alert.detail.kind());
        }
        if let Some(r) = self.recorder.as_mut() {
            if let Err(e) = r.alert(&alert) {
                crate::say!("observer: error: recording: {e}");
            }
        }
        if let Some(am) = self.alertmanager.as_mut() {
            am.alert(&alert);
        }
        self.otlp_alert(&alert);
        self.sink.write(&alert);
    }

    /// Kernel counters and the number of processes watched, for the metrics endpoint.
    fn update_metrics(&mut self) {
        let Some(m) = &self.opts.metrics else { return };
        let c = self.probes.counters();
        m.set_drops(
            c.events_dropped,
            c.agg_dropped,
            c.inflight_dropped,
            c.stack_missing,
        );
        let go = self.watched.values().filter(|t| t.go.is_some()).count();
        m.set_watched(self.watched.len() as u64, go as u64);
    }

    fn process_name(&self, pid: u32) -> String {
        self.watched
            .get(&pid)
            .map(|t| t.name.clone())
            .or_else(|| crate::proc::procinfo::comm_of(pid))
            .unwrap_or_else(|| format!("pid{pid}"))
    }

    fn thread_comm(&mut self, tgid: u32, tid: u32) -> Option<String> {
        if let Some(comm) = crate::proc::procinfo::thread_comm_of(tgid, tid) {
            self.threads.insert(
                tid,
                ThreadInfo {
                    tgid,
                    comm: comm.clone(),
                },
            );
            return Some(comm);
        }
        self.threads.get(&tid).map(|t| t.comm.clone())
    }
}

fn syscall_name(nr: u64) -> &'static str {
    match nr {
        sysno::FUTEX => "futex",
        sysno::FUTEX_WAITV => "futex_waitv",
        sysno::FUTEX_WAIT => "futex_wait",
        sysno::NANOSLEEP => "nanosleep",
        sysno::CLOCK_NANOSLEEP => "clock_nanosleep",
        sysno::POLL => "poll",
        sysno::PPOLL => "ppoll",
        sysno::SELECT => "select",
        sysno::PSELECT6 => "pselect6",
        sysno::EPOLL_WAIT => "epoll_wait",
        sysno::EPOLL_PWAIT => "epoll_pwait",
        sysno::EPOLL_PWAIT2 => "epoll_pwait2",
        sysno::READ => "read",
        sysno::RECVFROM => "recvfrom",
        sysno::RECVMSG => "recvmsg",
        sysno::ACCEPT => "accept",
        sysno::ACCEPT4 => "accept4",
        sysno::WAIT4 => "wait4",
        // Where threads sleep uninterruptibly (disk and network file systems, memory maps).
        sysno::VFORK => "vfork",
        sysno::WRITE => "write",
        sysno::OPEN => "open",
        sysno::OPENAT => "openat",
        sysno::CLOSE => "close",
        sysno::MMAP => "mmap",
        sysno::MUNMAP => "munmap",
        sysno::PREAD64 => "pread64",
        sysno::PWRITE64 => "pwrite64",
        sysno::MSYNC => "msync",
        sysno::FSYNC => "fsync",
        sysno::FDATASYNC => "fdatasync",
        sysno::NONE => "none (page fault)",
        _ => "other",
    }
}

fn class_frame(class: u32) -> &'static str {
    match class {
        wait_class::LOCK => "[lock]",
        wait_class::FUTEX => "[futex]",
        wait_class::SLEEP => "[sleep]",
        wait_class::POLL => "[poll]",
        wait_class::IO => "[io]",
        wait_class::UNINTERRUPTIBLE => "[kernel: uninterruptible]",
        _ => "[other]",
    }
}

/// Wall-clock time of a kernel timestamp.
fn wall_time(mono_ns: u64) -> String {
    let ago = monotonic_ns().saturating_sub(mono_ns);
    alert::format_time(SystemTime::now() - Duration::from_nanos(ago))
}

fn now_time() -> String {
    alert::format_time(SystemTime::now())
}
