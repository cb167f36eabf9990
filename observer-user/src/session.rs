//! One observation run: drains kernel events, scans blocked threads, raises alerts, and writes
//! the outputs when it ends (duration, Ctrl-C / SIGTERM, or the target exiting).

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    time::{Duration, SystemTime},
};

use anyhow::{Context, Result};
use aya::maps::{MapData, RingBuf};
use observer_common::{lock_owner, sysno, wait_class, InFlight, WaitEvent};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{signal, SignalKind},
};

use crate::{
    alert::{self, Alert, AlertDetail},
    events::{comm_str, Event},
    folded::FoldedProfile,
    goattach,
    gowatch::{GoAlert, GoWatch},
    probes::{Counters, Probes},
    procexit::ProcessExits,
    recording::{self, Recorder},
    seed,
    sink::AlertSink,
    stackres::StackResolver,
    summary,
    target::{self, Launched},
    thread_exits::{ThreadExitEvent, ThreadExitTracker},
    unwind::Regs,
    waitgraph::{DeadlockReporter, Waiter},
};

/// How often blocked threads are scanned for stalls and deadlocks.
const SCAN_INTERVAL: Duration = Duration::from_millis(200);
/// Deadlock cycles are only looked for among waits at least this old (or --stall-after if
/// shorter): a real cycle never resolves, and young waits are mostly about to be granted.
const DEADLOCK_MIN_AGE: Duration = Duration::from_secs(1);
/// How long to wait for a vanished target's exit event before giving up on it.
const EXIT_EVENT_GRACE: Duration = Duration::from_secs(1);
/// Short-wait aggregates are moved out of the kernel this often, keeping its map small.
const DRAIN_INTERVAL: Duration = Duration::from_secs(5);

pub struct SessionOptions {
    pub threshold: Duration,
    pub stall_after: Duration,
    pub duration: Option<Duration>,
    pub alerts: Option<PathBuf>,
    pub folded: Option<PathBuf>,
    pub pprof: Option<PathBuf>,
    pub svg: Option<PathBuf>,
    pub report_idle: bool,
    pub quiet: bool,
    pub no_go: bool,
    /// Goroutine parks per second above which the Go probes are taken off (0: no limit).
    pub go_max_parks: u64,
    /// Write a recording (`observer record`).
    pub record: Option<PathBuf>,
}

/// What ended the session, for the exit code.
pub enum Outcome {
    /// Watch mode: done (duration, signal, or target exit).
    Finished,
    /// Run mode: the command's exit code (128 + signal if killed).
    Command(i32),
}

struct ThreadInfo {
    comm: String,
}

pub struct Session {
    opts: SessionOptions,
    probes: Probes,
    pid: u32,
    process_name: String,
    stacks: StackResolver,
    sink: AlertSink,
    folded: FoldedProfile,
    exits: ThreadExitTracker,
    process_exits: ProcessExits,
    deadlocks: DeadlockReporter,
    stalls_reported: HashSet<(u32, u64)>,
    threads: HashMap<u32, ThreadInfo>,
    recent_exits: Vec<(u32, u64)>,
    alert_counts: HashMap<&'static str, u64>,
    target_gone: bool,
    event_errors: u64,
    /// Goroutine-level observation, when the target is a Go program.
    go: Option<GoWatch>,
    /// Its binary, until the process runs it and frames can be named from it.
    go_binary: Option<std::sync::Arc<crate::golang::GoBinary>>,
    /// The target's executable and build id, read while it runs (for the pprof mapping).
    executable: Option<(PathBuf, Option<String>)>,
    started: std::time::Instant,
    started_wall: SystemTime,
    recorder: Option<Recorder>,
    /// The target is a Go program (its futex waits are scheduler idling, never lock waits),
    /// whether or not the goroutine probes are on.
    is_go: bool,
    /// Park counter and time of the last rate check.
    park_rate_mark: Option<(std::time::Instant, u64)>,
}

impl Session {
    pub fn new(opts: SessionOptions, probes: Probes, pid: u32) -> Result<Self> {
        let sink = AlertSink::open(opts.alerts.as_deref(), opts.quiet)?;
        let process_name = read_comm(pid, pid).unwrap_or_else(|| format!("pid{pid}"));
        Ok(Self {
            opts,
            probes,
            pid,
            process_name,
            stacks: StackResolver::new(),
            sink,
            folded: FoldedProfile::new(),
            exits: ThreadExitTracker::default(),
            process_exits: ProcessExits::default(),
            deadlocks: DeadlockReporter::new(),
            stalls_reported: HashSet::new(),
            threads: HashMap::new(),
            recent_exits: Vec::new(),
            alert_counts: HashMap::new(),
            target_gone: false,
            event_errors: 0,
            go: None,
            go_binary: None,
            executable: None,
            started: std::time::Instant::now(),
            started_wall: SystemTime::now(),
            recorder: None,
            is_go: false,
            park_rate_mark: None,
        })
    }

    /// Goroutine-level observation when the target is a Go program. A failure here costs the
    /// goroutine view only: thread-level observation goes on, and the user is told.
    fn attach_go(&mut self, exe: &std::path::Path, seed: bool) {
        match goattach::attach(&mut self.probes, self.pid, exe, seed) {
            Ok(Some(attached)) => {
                if !self.opts.quiet {
                    eprintln!("observer: goroutine probes attached: {}", attached.summary);
                }
                for w in &attached.warnings {
                    eprintln!("observer: warning: {w}");
                }
                self.go = Some(attached.watch);
                self.is_go = true;
                self.go_binary = Some(attached.binary);
            }
            Ok(None) => {}
            Err(e) => eprintln!("observer: warning: no goroutine-level view: {e}"),
        }
    }

    /// Runs until the end condition; `launched` is the command of `observer run`.
    pub async fn run(mut self, mut launched: Option<Launched>) -> Result<Outcome> {
        self.probes.watch(self.pid)?;
        let ring = self.probes.take_events()?;
        // SAFETY: the RingBuf owns its fd and is moved into the AsyncFd, so the fd stays open
        // for exactly as long as it is registered.
        let mut ring = unsafe { AsyncFd::register(ring) }
            .map_err(|e| anyhow::anyhow!("polling the event ring buffer: {}", e))?;
        if let Some(l) = launched.as_mut() {
            // Before exec, so that the first goroutines are seen too.
            if let (false, Some(exe)) = (self.opts.no_go, l.program.clone()) {
                self.attach_go(&exe, false);
            }
            l.release();
            if let Some(name) = read_comm(self.pid, self.pid) {
                self.process_name = name;
            }
        } else {
            self.seed_blocked_threads();
        }
        if launched.is_none() {
            // A command's maps are read on first use instead: right after exec, the dynamic
            // loader has not mapped its libraries yet.
            self.stacks.prepare(self.pid);
        }
        self.executable = executable_of(self.pid);
        self.start_recording()?;
        if launched.is_none() && !self.opts.no_go {
            self.attach_go(&PathBuf::from(format!("/proc/{}/exe", self.pid)), true);
        }
        if let Some(bin) = self.go_binary.take() {
            // The process runs the binary now: its load bias is known.
            let bias = crate::golang::goroutines::load_bias(self.pid, &bin).unwrap_or(0);
            self.stacks.set_go_binary(self.pid, bin, bias);
        }
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut scan = tokio::time::interval(SCAN_INTERVAL);
        let mut drain = tokio::time::interval(DRAIN_INTERVAL);
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
                guard = ring.readable_mut() => {
                    let mut guard = guard?;
                    self.drain_ring(guard.get_inner_mut());
                    guard.clear_ready();
                }
                _ = scan.tick() => {
                    self.scan_blocked();
                    self.scan_goroutines();
                    self.poll_thread_exits();
                    if launched.is_none() && !self.target_gone && !target::is_alive(self.pid) {
                        // The group leader turns zombie before the last thread has exited:
                        // wait a little for the process-exit event, which ends the loop.
                        let since = *gone_since.get_or_insert_with(std::time::Instant::now);
                        self.drain_ring(ring.get_mut());
                        if since.elapsed() > EXIT_EVENT_GRACE {
                            self.target_gone = true;
                        }
                    }
                    if self.target_gone && launched.is_none() {
                        break;
                    }
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
                        eprintln!("observer: interrupted, writing outputs");
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
                            eprintln!("observer: terminated, writing outputs");
                            break;
                        }
                    }
                }
                _ = &mut sleep_until => break,
            }
        }
        // Events of the last moments (the process exit among them).
        self.drain_ring(ring.get_mut());
        self.poll_thread_exits();
        self.finish()?;
        if let (None, Some(exit)) = (command_status, exit.as_mut()) {
            // --duration ended the observation, not the command: its status is still ours.
            if !self.opts.quiet {
                eprintln!("observer: observation over; waiting for the command to exit");
            }
            drop(self);
            return Ok(Outcome::Command(exit.await.unwrap_or(1)));
        }
        Ok(match command_status {
            Some(code) => Outcome::Command(code),
            None => Outcome::Finished,
        })
    }

    /// Threads blocked since before we attached (see `seed`).
    fn seed_blocked_threads(&mut self) {
        let now = monotonic_ns();
        for (tid, state) in seed::blocked_threads(self.pid) {
            let entry = seed::in_flight_for(self.pid, tid, &state, now);
            if self.probes.seed_in_flight(tid, &entry).is_err() {
                continue; // the kernel saw it block meanwhile: its entry is better
            }
            // It may have woken between the read and the insert: then the entry is stale.
            if seed::blocked_state(self.pid, tid) != Some(state) {
                self.probes.unseed_in_flight(tid, now);
            }
        }
    }

    fn drain_ring(&mut self, ring: &mut RingBuf<MapData>) {
        let mut batch = Vec::new();
        while let Some(item) = ring.next() {
            match Event::parse(&item) {
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
        // Once the target has ended, its pid may belong to an unrelated process: nothing more
        // is taken from it (the kernel stops watching it at the same moment).
        if self.target_gone {
            return;
        }
        match ev {
            Event::Wait(w) => self.on_wait(&w),
            Event::Fork(f) => {
                let created_by =
                    self.stacks
                        .resolve_snapshot(&self.probes, f.tgid, &f.creator, f.stack_id);
                self.exits
                    .thread_created(f.tgid, f.child_tid, f.time_ns, created_by);
            }
            Event::Exit(e) => {
                let comm = comm_str(&e.comm);
                if e.group_dead != 0 {
                    let end = self
                        .process_exits
                        .process_ended(e.tgid, e.tid, e.syscall, e.arg0);
                    self.exits.process_exited(e.tgid, e.time_ns);
                    let mut message = None;
                    if let Some(go) = self.go.as_mut().filter(|g| g.pid() == e.tgid) {
                        message = go.exit_message();
                        for a in go.unrecovered(e.time_ns, true) {
                            self.emit_go(a);
                        }
                    }
                    let by_comm = self
                        .thread_comm(e.tgid, end.by_tid)
                        .unwrap_or_else(|| comm.clone());
                    self.emit(Alert {
                        time: wall_time(e.time_ns),
                        pid: e.tgid,
                        tid: end.by_tid,
                        comm: by_comm,
                        stack: Vec::new(),
                        detail: AlertDetail::ProcessExit(alert::ProcessExit {
                            exit_code: end.exit_code,
                            signal: end.signal.map(alert::signal_name),
                            by_tid: end.by_tid,
                            message,
                        }),
                    });
                    self.stacks.process_gone(e.tgid);
                    if e.tgid == self.pid {
                        self.target_gone = true;
                    }
                } else {
                    self.process_exits
                        .thread_exited(e.tgid, e.tid, e.syscall, e.arg0);
                    self.threads
                        .insert(e.tid, ThreadInfo { comm: comm.clone() });
                    let via_exit = e.syscall == sysno::EXIT as i64;
                    self.exits.thread_exited(ThreadExitEvent {
                        tgid: e.tgid,
                        tid: e.tid,
                        comm,
                        time_ns: e.time_ns,
                        via_exit_syscall: via_exit,
                        exit_code: if via_exit { (e.arg0 & 0xff) as i32 } else { 0 },
                        signal: None,
                    });
                    self.recent_exits.push((e.tid, e.time_ns));
                    if self.probes.take_joined(e.tid) {
                        self.exits.joiner_waiting(e.tgid, e.tid);
                    }
                }
            }
            Event::Signal(s) => self.process_exits.fatal_signal(s.tgid, s.tid, s.sig),
            Event::GoWait(w) => {
                let process = self.process_name.clone();
                if let Some(go) = self.go.as_mut().filter(|g| g.pid() == w.tgid) {
                    let alert = go.on_wait(
                        &w,
                        &self.probes,
                        &mut self.stacks,
                        &mut self.folded,
                        &process,
                    );
                    if let Some(a) = alert {
                        self.emit_go(a);
                    }
                }
            }
            Event::GoPanic(p) => {
                if let Some(go) = self.go.as_mut().filter(|g| g.pid() == p.tgid) {
                    go.on_panic(&p, &self.probes, &mut self.stacks);
                }
            }
            Event::GoRecovered(p) => {
                let alert = self
                    .go
                    .as_mut()
                    .filter(|g| g.pid() == p.tgid)
                    .and_then(|go| go.on_recovered(&p));
                if let Some(a) = alert {
                    self.emit_go(a);
                }
            }
            Event::GoFatal(p) => {
                if let Some(go) = self.go.as_mut().filter(|g| g.pid() == p.tgid) {
                    go.on_fatal(&p);
                }
            }
        }
    }

    fn on_wait(&mut self, w: &WaitEvent) {
        let stack = self
            .stacks
            .resolve_snapshot(&self.probes, w.tgid, &w.waiter, w.stack_id);
        let comm = self.thread_comm(w.tgid, w.tid).unwrap_or_default();
        // In a Go process futex waits are idle scheduler threads (M parking), never lock waits.
        // A wait that ended because the process is exiting (the waker is in exit_group and
        // kills its threads) was not granted the lock: stall/deadlock alerts cover it.
        let is_lock = !self.is_go
            && w.waker_syscall != sysno::EXIT_GROUP as i64
            && w.class == wait_class::LOCK
            && (w.waker_tid == w.owner || thread_exists(w.tgid, w.owner));
        if is_lock || self.opts.report_idle {
            let mut frames = stack.clone();
            if self.opts.report_idle {
                frames.insert(
                    0,
                    class_frame(if is_lock { wait_class::LOCK } else { w.class }).to_string(),
                );
            }
            self.folded
                .add(&self.process_name, &comm, &frames, w.duration_ns);
        }
        let waker_known = w.waker_syscall == sysno::FUTEX as i64;
        let (waker_tid, waker_comm, waker_stack) = if waker_known {
            (
                Some(w.waker_tid),
                self.thread_comm(w.waker_tgid, w.waker_tid),
                self.stacks.resolve_snapshot(
                    &self.probes,
                    w.waker_tgid,
                    &w.waker,
                    w.waker_stack_id,
                ),
            )
        } else {
            (None, None, Vec::new())
        };
        let time = wall_time(w.start_ns + w.duration_ns);
        if is_lock {
            self.emit(Alert {
                time,
                pid: w.tgid,
                tid: w.tid,
                comm,
                stack,
                detail: AlertDetail::LockWait(alert::LockWait {
                    duration_ns: w.duration_ns,
                    uaddr: w.uaddr,
                    owner_tid: Some(w.owner),
                    waker_tid,
                    waker_comm,
                    waker_stack,
                }),
            });
        } else if self.opts.report_idle {
            self.emit(Alert {
                time,
                pid: w.tgid,
                tid: w.tid,
                comm,
                stack,
                detail: AlertDetail::IdleWait(alert::IdleWait {
                    duration_ns: w.duration_ns,
                    syscall: syscall_name(w.syscall).to_string(),
                    wait_class: class_frame(w.class).trim_matches(['[', ']']).to_string(),
                    waker_tid,
                }),
            });
        }
    }

    /// Threads blocked right now: stalls (long waits on a held lock) and deadlock cycles.
    fn scan_blocked(&mut self) {
        let Ok(in_flight) = self.probes.in_flight() else {
            return;
        };
        let now = monotonic_ns();
        let stall_ns = duration_ns(self.opts.stall_after);
        let cycle_ns = duration_ns(DEADLOCK_MIN_AGE.min(self.opts.stall_after));
        let blocked: HashMap<u32, InFlight> = in_flight
            .into_iter()
            .filter(|(_, e)| e.tgid == self.pid)
            .collect();
        let mut waiters = Vec::new();
        let mut live_episodes = HashSet::new();
        for (&tid, e) in &blocked {
            if e.class != wait_class::LOCK || self.is_go {
                continue;
            }
            let age = now.saturating_sub(e.start_ns);
            // The lock may have changed hands since the wait began: read its owner now.
            let Some(owner) = current_owner(e.tgid, tid, e) else {
                continue;
            };
            // A self-owned lock is a relock of a non-recursive mutex: a deadlock of one.
            if owner != tid && !thread_exists(e.tgid, owner) {
                continue;
            }
            live_episodes.insert((tid, e.start_ns));
            if age >= cycle_ns {
                waiters.push(Waiter {
                    tid,
                    uaddr: e.uaddr,
                    owner_tid: Some(owner),
                });
            }
            if age >= stall_ns && !self.stalls_reported.contains(&(tid, e.start_ns)) {
                self.stalls_reported.insert((tid, e.start_ns));
                let stack = self.stacks.resolve_blocked(e.tgid, regs_of(e));
                let owner_stack = blocked
                    .get(&owner)
                    .map(|o| self.stacks.resolve_blocked(o.tgid, regs_of(o)))
                    .unwrap_or_default();
                let comm = self.thread_comm(e.tgid, tid).unwrap_or_default();
                self.emit(Alert {
                    time: alert::format_time(SystemTime::now()),
                    pid: e.tgid,
                    tid,
                    comm,
                    stack,
                    detail: AlertDetail::Stall(alert::Stall {
                        blocked_ns: age,
                        uaddr: Some(e.uaddr),
                        syscall: syscall_name(e.syscall).to_string(),
                        owner_tid: Some(owner),
                        owner_stack,
                    }),
                });
            }
        }
        self.stalls_reported.retain(|k| live_episodes.contains(k));
        for cycle in self.deadlocks.scan(&waiters) {
            let members: Vec<alert::DeadlockMember> = cycle
                .members
                .iter()
                .map(|m| {
                    let e = blocked.get(&m.tid).copied().unwrap_or_default();
                    alert::DeadlockMember {
                        tid: m.tid,
                        comm: self.thread_comm(self.pid, m.tid).unwrap_or_default(),
                        uaddr: m.uaddr,
                        owner_tid: m.owner_tid,
                        stack: self.stacks.resolve_blocked(self.pid, regs_of(&e)),
                    }
                })
                .collect();
            let Some(first) = members.first() else {
                continue;
            };
            self.emit(Alert {
                time: alert::format_time(SystemTime::now()),
                pid: self.pid,
                tid: first.tid,
                comm: first.comm.clone(),
                stack: first.stack.clone(),
                detail: AlertDetail::Deadlock(alert::Deadlock { cycle: members }),
            });
        }
    }

    /// Takes the Go probes off when the target parks goroutines faster than the limit: the
    /// uprobe traps would then cost it more than observation is worth.
    fn guard_park_rate(&mut self) {
        if self.go.is_none() || self.opts.go_max_parks == 0 {
            return;
        }
        let parks = self.probes.counters().go_parks;
        let now = std::time::Instant::now();
        let Some((since, at)) = self.park_rate_mark else {
            self.park_rate_mark = Some((now, parks));
            return;
        };
        let elapsed = now.duration_since(since).as_secs_f64();
        if elapsed < 0.5 {
            return;
        }
        let rate = parks.saturating_sub(at) as f64 / elapsed;
        self.park_rate_mark = Some((now, parks));
        if rate > self.opts.go_max_parks as f64 {
            self.probes.unwatch_go(self.pid);
            self.go = None;
            eprintln!(
                "observer: WARNING: pid {} parks {rate:.0} goroutines/s, over --go-max-parks {}: \
                 goroutine probes taken off (each park costs it two uprobe traps); \
                 thread-level observation goes on. Raise --go-max-parks to keep them.",
                self.pid, self.opts.go_max_parks
            );
        }
    }

    /// Goroutine stalls, leaks, and panics that were never recovered.
    fn scan_goroutines(&mut self) {
        self.guard_park_rate();
        let Some(go) = self.go.as_mut() else { return };
        let now = monotonic_ns();
        let mut alerts = go.scan(
            now,
            duration_ns(self.opts.stall_after),
            &self.probes,
            &mut self.stacks,
        );
        alerts.extend(go.unrecovered(now, false));
        for a in alerts {
            self.emit_go(a);
        }
    }

    fn emit_go(&mut self, a: GoAlert) {
        let comm = if a.tid != 0 {
            self.thread_comm(self.pid, a.tid).unwrap_or_default()
        } else {
            self.process_name.clone()
        };
        self.emit(Alert {
            time: a
                .time_ns
                .map(wall_time)
                .unwrap_or_else(|| alert::format_time(SystemTime::now())),
            pid: self.pid,
            tid: a.tid,
            comm,
            stack: a.stack,
            detail: a.detail,
        });
    }

    fn poll_thread_exits(&mut self) {
        let now = monotonic_ns();
        // A joiner may have been woken by the exit after the exit event was read.
        let recent = std::mem::take(&mut self.recent_exits);
        for (tid, t) in recent {
            if self.probes.take_joined(tid) {
                self.exits.joiner_waiting(self.pid, tid);
            }
            if now.saturating_sub(t) < 3_000_000_000 {
                self.recent_exits.push((tid, t));
            }
        }
        for d in self.exits.poll(now) {
            self.emit(Alert {
                time: wall_time(d.time_ns),
                pid: d.tgid,
                tid: d.tid,
                comm: d.comm,
                stack: Vec::new(),
                detail: AlertDetail::ThreadExit(alert::ThreadExit {
                    exit_code: d.exit_code,
                    signal: d.signal.map(alert::signal_name),
                    lifetime_ns: d.lifetime_ns,
                    created_by: d.created_by,
                    count: d.count,
                }),
            });
        }
    }

    fn start_recording(&mut self) -> Result<()> {
        let Some(path) = self.opts.record.clone() else {
            return Ok(());
        };
        let meta = recording::Meta {
            observer_version: env!("CARGO_PKG_VERSION").to_string(),
            pid: self.pid,
            process: self.process_name.clone(),
            executable: self
                .executable
                .as_ref()
                .map(|(p, _)| p.display().to_string()),
            build_id: self.executable.as_ref().and_then(|(_, b)| b.clone()),
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
            eprintln!("observer: recording: {e}");
        }
    }

    fn drain_aggregates(&mut self) {
        if let Some(go) = self.go.as_mut() {
            let process = self.process_name.clone();
            go.drain_aggregates(
                &mut self.probes,
                &mut self.stacks,
                &mut self.folded,
                &process,
            );
        }
        let Ok(aggs) = self.probes.drain_aggregates() else {
            return;
        };
        for (key, value) in aggs {
            let lock = key.class == wait_class::LOCK;
            if !lock && !self.opts.report_idle {
                continue;
            }
            let mut frames = self.stacks.resolve_id(&self.probes, key.tgid, key.stack_id);
            if frames.is_empty() {
                frames.push("[unknown]".to_string());
            }
            if self.opts.report_idle {
                frames.insert(0, class_frame(key.class).to_string());
            }
            let comm = self
                .thread_comm(key.tgid, key.tid)
                .unwrap_or_else(|| key.tid.to_string());
            self.folded.add_many(
                &self.process_name,
                &comm,
                &frames,
                value.total_ns,
                value.count,
            );
        }
    }

    fn finish(&mut self) -> Result<()> {
        self.drain_aggregates();
        self.add_ongoing_lock_waits();
        self.record_profile();
        if let Some(r) = self.recorder.take() {
            r.finish().context("finishing the recording")?;
        }
        // Thread deaths still in their grace period when observation stops are reported: the
        // process outlived them for as long as we watched.
        let counters = self.probes.counters();
        if let Some(path) = &self.opts.folded {
            self.folded
                .write_to(path)
                .with_context(|| format!("writing folded stacks to {}", path.display()))?;
        }
        if let Some(path) = &self.opts.pprof {
            let meta = crate::pprof::PprofMeta {
                main_binary: self.executable.as_ref().map(|(p, _)| p.clone()),
                build_id: self.executable.as_ref().and_then(|(_, b)| b.clone()),
                duration_ns: duration_ns(self.started.elapsed()),
                time_nanos: self
                    .started_wall
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(duration_ns)
                    .unwrap_or(0),
            };
            crate::pprof::write_pprof(&self.folded, &meta, path)?;
        }
        if let Some(path) = &self.opts.svg {
            let title = format!("Blocked time: {} (pid {})", self.process_name, self.pid);
            crate::svg::write_svg(&self.folded, &title, path)?;
        }
        self.sink.flush()?;
        if !self.opts.quiet {
            eprint!("{}", self.summary_text(&counters));
        }
        Ok(())
    }

    /// Waits on held locks that have not ended (stalls, deadlocks) count in the profile for
    /// the time they have lasted so far.
    fn add_ongoing_lock_waits(&mut self) {
        let Ok(in_flight) = self.probes.in_flight() else {
            return;
        };
        let now = monotonic_ns();
        for (tid, e) in in_flight {
            if e.tgid != self.pid || (e.class != wait_class::LOCK && !self.opts.report_idle) {
                continue;
            }
            let mut frames = self.stacks.resolve_blocked(e.tgid, regs_of(&e));
            if self.opts.report_idle {
                frames.insert(0, class_frame(e.class).to_string());
            }
            let comm = self
                .thread_comm(e.tgid, tid)
                .unwrap_or_else(|| tid.to_string());
            self.folded.add(
                &self.process_name,
                &comm,
                &frames,
                now.saturating_sub(e.start_ns),
            );
        }
    }

    fn summary_text(&self, c: &Counters) -> String {
        let mut kinds: Vec<(String, u64)> = self
            .alert_counts
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        kinds.sort();
        summary::render(&summary::SummaryInput {
            process: format!("{} (pid {})", self.process_name, self.pid),
            top_stacks: self.folded.top(5),
            alerts_by_kind: kinds,
            thread_deaths: self.exits.site_counts(),
            events_dropped: c.events_dropped,
            agg_dropped: c.agg_dropped,
            inflight_dropped: c.inflight_dropped,
            stacks_missing: c.stack_missing,
            waits_seen: c.waits_started,
            long_waits: c.waits_long,
            folded_path: self.opts.folded.clone(),
            alerts_path: self.opts.alerts.clone(),
            undecodable_events: self.event_errors,
        })
    }

    fn emit(&mut self, alert: Alert) {
        *self.alert_counts.entry(alert.detail.kind()).or_default() += 1;
        if let Some(r) = self.recorder.as_mut() {
            if let Err(e) = r.alert(&alert) {
                eprintln!("observer: recording: {e}");
            }
        }
        if let Err(e) = self.sink.write(&alert) {
            eprintln!("observer: writing alert: {e}");
        }
    }

    fn thread_comm(&mut self, tgid: u32, tid: u32) -> Option<String> {
        if let Some(comm) = read_comm(tgid, tid) {
            self.threads.insert(tid, ThreadInfo { comm: comm.clone() });
            return Some(comm);
        }
        self.threads.get(&tid).map(|t| t.comm.clone())
    }
}

/// The executable's path and GNU build id (hex), read while the process lives.
fn executable_of(pid: u32) -> Option<(PathBuf, Option<String>)> {
    use object::Object as _;
    let path = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let data = std::fs::read(format!("/proc/{pid}/exe")).ok();
    let build_id = data.as_deref().and_then(|d| {
        let file = object::File::parse(d).ok()?;
        let id = file.build_id().ok()??;
        Some(id.iter().map(|b| format!("{b:02x}")).collect::<String>())
    });
    Some((path, build_id))
}

fn regs_of(e: &InFlight) -> Regs {
    Regs {
        ip: e.ip,
        sp: e.sp,
        bp: e.bp,
    }
}

/// The lock's owner as it is now (it may have changed hands since the wait began).
fn current_owner(pid: u32, tid: u32, e: &InFlight) -> Option<u32> {
    lock_owner(e.op, seed::read_words(pid, e.uaddr)?, tid)
}

fn thread_exists(tgid: u32, tid: u32) -> bool {
    tid != 0 && std::path::Path::new(&format!("/proc/{tgid}/task/{tid}")).exists()
}

fn read_comm(tgid: u32, tid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{tgid}/task/{tid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_string())
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
        _ => "[other]",
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Wall-clock time of a kernel timestamp.
fn wall_time(mono_ns: u64) -> String {
    let ago = monotonic_ns().saturating_sub(mono_ns);
    alert::format_time(SystemTime::now() - Duration::from_nanos(ago))
}
