//! Goroutine-level observation of one Go process: waits, stalls, leaks and panics, from the
//! runtime uprobes (see observer-ebpf's `golang` module).

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Instant,
};

use observer_common::{
    AggValue, GoAggKey, GoPanicEvent, GoParked, GoSampleKey, GoStack, GoWaitEvent,
};

use crate::stacks::frame::Frame;
use crate::{
    detect::gohold::{GoHoldEpisode, GoHolds, GoWaitEnded},
    detect::goleak::LeakDetector,
    detect::goparked::ParkedTracker,
    golang::{goroutines, GoBinary, GoError, GoLabels},
    stacks::resolver::{KernelStacks, StackResolver},
};

/// What a parked goroutine waits for, judged from its wait-reason string (the numbers move
/// between Go versions; the strings are read from the binary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasonClass {
    /// sync.Mutex, RWMutex, WaitGroup, Cond, semaphores: a goroutine stuck here is a stall.
    Sync,
    /// Channels and select: normal for workers, a leak when they pile up.
    Channel,
    /// Sleeps, network I/O, GC, scheduler: never an alert.
    Idle,
}

pub fn classify_reason(reason: &str) -> ReasonClass {
    if reason.starts_with("sync.") || reason == "semacquire" {
        ReasonClass::Sync
    } else if reason.starts_with("chan ") || reason.starts_with("select") {
        ReasonClass::Channel
    } else {
        ReasonClass::Idle
    }
}

/// What goroutine observation needs of the kernel: the table of goroutines parked right now,
/// the knob of the short-wait sampling, and (for wakers and panics) its stack table. The
/// session hands in the kernel handle; tests hand in a fake.
pub trait GoroutineProbes: KernelStacks {
    /// Goroutines of `pid` parked right now, as (goid, park record); `None` when the table
    /// cannot be read.
    fn go_parked(&self, pid: u32) -> Option<Vec<(u64, GoParked)>>;
    /// Walks the stack of one in `period` short waits of `pid`; false if the kernel did not
    /// take it.
    fn set_go_sample_period(&mut self, pid: u32, period: u32) -> bool;
}

/// A panic seen at `runtime.gopanic`, waiting to learn whether it was recovered.
struct PendingPanic {
    tid: u32,
    time_ns: u64,
    message: Option<String>,
    stack: Vec<Frame>,
    labels: GoLabels,
}

/// How long an unrecovered panic may stay pending before it is reported anyway (a panic that
/// is not recovered kills the process within milliseconds).
const PANIC_DECISION_NS: u64 = 2_000_000_000;

pub struct GoWatch {
    pid: u32,
    wait_reasons: Vec<String>,
    stalls_reported: HashSet<(u64, u64)>,
    pending_panics: HashMap<u64, PendingPanic>,
    fatal_message: Option<String>,
    last_panic_message: Option<String>,
    leaks: LeakDetector,
    /// The executable, to read the stacks of goroutines that stay parked from the process.
    binary: Option<Arc<GoBinary>>,
    /// Its load bias, learnt once the program runs (`observer run` attaches before exec).
    bias: Option<u64>,
    /// 1 in this many short waits has its stack walked, since `drained_at`.
    sample_period: u32,
    drained_at: Instant,
    /// Parked goroutines followed across memory snapshots (per-park probes off).
    tracker: ParkedTracker,
    /// Stacks and pprof labels of snapshot-seen sync waits over the threshold, by (goid, first
    /// seen): both read while the goroutine is still parked.
    wait_stacks: HashMap<(u64, u64), (Vec<Frame>, GoLabels)>,
    /// When the probes last saw each goroutine's long wait end: a wait they reported while on
    /// is not reported again by the snapshots.
    probe_wait_ends: HashMap<u64, u64>,
    /// Long sync waits grouped by the hold that caused them.
    holds: GoHolds,
    /// Likely holders of the locks snapshot-seen waiters queue on.
    likely: likely::LikelyHolders,
}

/// Long waits remembered for that, at most.
const MAX_PROBE_WAIT_ENDS: usize = 4096;

/// Stacks of long sync waits kept between snapshots, at most.
const MAX_WAIT_STACKS: usize = 256;

/// The limits a snapshot scan judges by.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotLimits {
    pub threshold_ns: u64,
    pub stall_after_ns: u64,
}

/// Parked goroutines of one creation site whose stacks are tried for a leak's sample stack.
const LEAK_SAMPLE_TRIES: usize = 3;

/// Short waits at least this long always have their stacks walked for the profile: they carry
/// most of its weight, and one goroutine can end at most 100 of them a second (so at most 100
/// walks a second per blocked goroutine; 1 ms let a loaded machine, where goroutines wait for
/// a CPU, walk a third of a ping-pong's waits).
pub const SAMPLE_ALL_NS: u64 = 10_000_000;

/// Of the shorter waits, the kernel walks the stack of one in N (at random) and counts it N
/// times. N starts here and is then set at every drain so that about `SAMPLES_PER_SEC` of them
/// a second are walked: every wait of a process that parks little, a bounded number of walks
/// for one that parks a lot. Weights stay exact per reason whatever N is (see `split_totals`).
pub const INITIAL_SAMPLE_PERIOD: u32 = 16;
pub const SAMPLES_PER_SEC: f64 = 256.0;
const MAX_SAMPLE_PERIOD: u32 = 1024;

/// What the goroutine rules found; the session makes the alert of the same name of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GoFinding {
    /// Waits on one sync primitive over the threshold behind one hold ended
    /// (`goroutine_wait`, one per hold episode).
    Wait(Box<GoWaitEpisode>),
    /// Still waiting on a sync primitive after --stall-after (`goroutine_stall`).
    Stall {
        goid: u64,
        wait_reason: String,
        blocked_ns: u64,
        created_by: Vec<String>,
        /// A goroutine that likely holds the lock it waits for (see `golikely`).
        likely_holder: Option<(u64, Vec<String>, String)>,
        labels: GoLabels,
    },
    /// Goroutines of one creation site pile up on channels or select (`goroutine_leak`).
    Leak {
        created_by: Vec<String>,
        wait_reason: String,
        count: u64,
        growth: u64,
        window_ns: u64,
        /// The labels of the goroutine whose stack is the alert's sample.
        labels: GoLabels,
    },
    /// A panic, recovered or not (`go_panic`).
    Panic {
        goid: u64,
        message: Option<String>,
        recovered: bool,
        labels: GoLabels,
    },
}

/// One hold episode of a sync primitive, as the `goroutine_wait` alert tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoWaitEpisode {
    /// The goroutine that waited longest, and its wait.
    pub goid: u64,
    pub wait_reason: String,
    pub duration_ns: u64,
    pub created_by: Vec<String>,
    /// The goroutine that released the lock to the first waiter, and its stack then.
    pub waker_goid: Option<u64>,
    pub waker_stack: Vec<String>,
    pub lock: u64,
    pub hold_ns: u64,
    pub waiters: u64,
    pub total_wait_ns: u64,
    /// (stack, waits, longest, distinct label sets), most frequent first.
    pub waiter_stacks: Vec<(Vec<String>, u64, u64, Vec<GoLabels>)>,
    pub waiter_stacks_omitted: u64,
    /// No releaser seen: the goroutine that likely held the lock, its stack, and why.
    pub likely_holder: Option<(u64, Vec<String>, String)>,
    /// The longest waiter's pprof labels.
    pub labels: GoLabels,
}

/// Where goroutine blocked time goes: the session's profile (one column for all goroutines
/// of the process), a list in tests.
pub trait GoProfile {
    /// `class`: what the wait reason says the time was (sync waits are blocked time, the
    /// others idle); `labels`: the goroutine's pprof labels, when the sample is one wait.
    fn add(&mut self, frames: &[Frame], ns: u64, count: u64, class: ReasonClass, labels: &GoLabels);
}

/// A finding with the common alert fields that the session completes.
pub struct GoAlert {
    pub tid: u32,
    pub time_ns: Option<u64>,
    pub stack: Vec<Frame>,
    pub finding: GoFinding,
    /// Frames behind the detail's own stacks (a goroutine wait's `waker_stack`), by field.
    pub more_frames: Vec<(&'static str, Vec<Frame>)>,
}

impl GoWatch {
    pub fn new(pid: u32, wait_reasons: Vec<String>, leak_window_ns: u64) -> Self {
        Self {
            pid,
            wait_reasons,
            stalls_reported: HashSet::new(),
            pending_panics: HashMap::new(),
            fatal_message: None,
            last_panic_message: None,
            leaks: LeakDetector::new(leak_window_ns, 10),
            binary: None,
            bias: None,
            sample_period: INITIAL_SAMPLE_PERIOD,
            drained_at: Instant::now(),
            tracker: ParkedTracker::default(),
            wait_stacks: HashMap::new(),
            probe_wait_ends: HashMap::new(),
            holds: GoHolds::default(),
            likely: Default::default(),
        }
    }

    /// The executable, without which parked goroutines have no stacks.
    pub fn with_binary(mut self, binary: Arc<GoBinary>) -> Self {
        self.binary = Some(binary);
        self
    }

    /// The stack of a goroutine that is parked right now, read from the process (the kernel
    /// takes none at park time). `None` when it is no longer parked there (it woke, or its `g`
    /// was reused); an empty stack when the process cannot be read.
    fn parked_stack(
        &mut self,
        goid: u64,
        parked: &GoParked,
        stacks: &mut StackResolver,
    ) -> Option<Vec<Frame>> {
        let Some(bin) = self.binary.clone() else {
            return Some(Vec::new());
        };
        let bias = match self.bias {
            Some(b) => b,
            None => match goroutines::load_bias(self.pid, &bin) {
                Ok(b) => *self.bias.insert(b),
                Err(e) => {
                    log::debug!("pid {}: no load bias for goroutine stacks: {e}", self.pid);
                    return Some(Vec::new());
                }
            },
        };
        match goroutines::parked_stack(self.pid, &bin, bias, parked.g, goid) {
            Ok(Some((pcs, truncated))) => {
                let mut frames = stacks.resolve_addrs_frames(self.pid, &pcs);
                if truncated {
                    frames.push(Frame::named(TRUNCATED_FRAME));
                }
                Some(frames)
            }
            Ok(None) => None,
            Err(e) => {
                log::debug!("pid {}: goroutine {goid}: {e}", self.pid);
                Some(Vec::new())
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Which of its goroutines are parked now, read from the process's memory (no probe).
    pub fn read_parked(&mut self) -> Result<goroutines::ParkedSnapshot, GoError> {
        let bin = self
            .binary
            .clone()
            .ok_or(GoError::NoBinary { pid: self.pid })?;
        let bias = match self.bias {
            Some(b) => b,
            None => *self.bias.insert(goroutines::load_bias(self.pid, &bin)?),
        };
        goroutines::parked_snapshot(self.pid, &bin, bias)
    }

    /// Goroutines stalled right now (reported by [`GoWatch::scan`] and still waiting).
    pub fn stalled_count(&self) -> u64 {
        self.stalls_reported.len() as u64
    }

    /// Whether goroutine `goid` is stalled now (reported by a scan and still waiting).
    pub fn is_stalled(&self, goid: u64) -> bool {
        self.stalls_reported.iter().any(|&(g, _)| g == goid)
    }

    /// Whether wait reason `n` is a wait on a sync primitive (a lock-like wait).
    pub fn is_sync_reason(&self, n: u32) -> bool {
        classify_reason(&self.reason(n)) == ReasonClass::Sync
    }

    pub fn reason(&self, n: u32) -> String {
        self.wait_reasons
            .get(n as usize)
            .filter(|s| !s.is_empty())
            .cloned()
            .unwrap_or_else(|| format!("wait reason {n}"))
    }

    fn created_by(&self, stacks: &mut StackResolver, gopc: u64) -> Vec<String> {
        if gopc == 0 {
            return Vec::new();
        }
        // gopc is the return address of the `go` statement's call: look up the call itself.
        let site = stacks.resolve_pc(self.pid, gopc.saturating_sub(1));
        // The main goroutine is started by the runtime itself: no creator to name, like Go's
        // own tracebacks.
        if site.first().is_some_and(|f| f.starts_with("runtime.")) {
            return Vec::new();
        }
        site
    }

    /// A goroutine wait over the threshold ended: into its lock's hold episode; the episodes
    /// it closed come back as alerts.
    pub fn on_wait(
        &mut self,
        ev: &GoWaitEvent,
        probes: &dyn GoroutineProbes,
        stacks: &mut StackResolver,
        profile: &mut dyn GoProfile,
    ) -> Vec<GoAlert> {
        let reason = self.reason(ev.reason);
        let frames = go_stack_frames(stacks, self.pid, &ev.stack);
        let labels = self.labels_of(ev.g, ev.goid, Some(ev.labels));
        add_to_profile(profile, &reason, &frames, ev.duration_ns, 1, &labels);
        if classify_reason(&reason) != ReasonClass::Sync {
            return Vec::new();
        }
        if self.probe_wait_ends.len() >= MAX_PROBE_WAIT_ENDS {
            // The oldest half goes: snapshots are at most 30 s apart.
            let mut ends: Vec<u64> = self.probe_wait_ends.values().copied().collect();
            ends.sort_unstable();
            let cut = ends[ends.len() / 2];
            self.probe_wait_ends.retain(|_, &mut end| end > cut);
        }
        self.probe_wait_ends
            .insert(ev.goid, ev.start_ns.saturating_add(ev.duration_ns));
        let waker_frames = stacks.resolve_id_frames(probes, self.pid, ev.waker_stack_id);
        let ended = GoWaitEnded {
            lock: ev.lock,
            wait_reason: reason,
            goid: ev.goid,
            tid: ev.tid,
            stack: frames,
            created_by: self.created_by(stacks, ev.gopc),
            waker: (ev.waker_goid != 0 || !waker_frames.is_empty())
                .then_some((ev.waker_goid, waker_frames)),
            start_ns: ev.start_ns,
            duration_ns: ev.duration_ns,
            likely_holder: None,
            labels,
        };
        self.holds
            .add(ended)
            .into_iter()
            .map(episode_alert)
            .collect()
    }

    /// Hold episodes finished by `now_ns` (all of them with `all`), as alerts.
    pub fn flush_holds(&mut self, now_ns: u64, all: bool) -> Vec<GoAlert> {
        self.holds
            .flush(now_ns, all)
            .into_iter()
            .map(episode_alert)
            .collect()
    }

    /// Short goroutine waits summed in the kernel, into the profile: each wait reason's exact
    /// totals, split between the stacks sampled for it in the same period (a reason without a
    /// sampled stack keeps its whole weight under "[stack not sampled]").
    pub fn drain_aggregates(
        &mut self,
        drained: GoDrained<'_>,
        probes: &mut dyn GoroutineProbes,
        stacks: &mut StackResolver,
        profile: &mut dyn GoProfile,
    ) {
        let GoDrained {
            totals,
            samples,
            probes_on_share,
        } = drained;
        // Probes on part of the time (duty-cycled): what they saw stands for the whole time.
        let scale = if probes_on_share > 0.0 && probes_on_share < 1.0 {
            1.0 / probes_on_share
        } else {
            1.0
        };
        let now = Instant::now();
        let secs = now.duration_since(self.drained_at).as_secs_f64();
        self.drained_at = now;
        let waits = totals.iter().map(|(_, v)| v.count).sum();
        let period = sample_period_for(waits, secs);
        if period != self.sample_period && probes.set_go_sample_period(self.pid, period) {
            self.sample_period = period;
        }
        let totals: Vec<(u32, AggValue)> = totals
            .iter()
            .filter(|(k, _)| k.tgid == self.pid)
            .map(|(k, v)| {
                let scaled = AggValue {
                    count: (v.count as f64 * scale).round() as u64,
                    total_ns: (v.total_ns as f64 * scale).round() as u64,
                    bins: Default::default(),
                };
                (k.reason, scaled)
            })
            .collect();
        let samples: Vec<(u32, &GoStack, AggValue)> = samples
            .iter()
            .filter(|(k, _)| k.tgid == self.pid)
            .map(|(k, v)| (k.reason, &k.stack, *v))
            .collect();
        for share in split_totals(&totals, &samples) {
            let reason = self.reason(share.reason);
            let stack = match share.stack {
                Some(walked) => go_stack_frames(stacks, self.pid, walked),
                None => vec![Frame::named("[stack not sampled]")],
            };
            add_to_profile(
                profile,
                &reason,
                &stack,
                share.ns,
                share.count,
                &GoLabels::new(),
            );
        }
    }

    pub fn on_panic(
        &mut self,
        ev: &GoPanicEvent,
        probes: &dyn GoroutineProbes,
        stacks: &mut StackResolver,
    ) {
        let message = go_message(ev);
        self.last_panic_message = message.clone().or(self.last_panic_message.take());
        let stack = stacks.resolve_id_frames(probes, self.pid, ev.stack_id);
        let labels = self.labels_of(ev.g, ev.goid, Some(ev.labels));
        // A nested panic (panicking in a deferred call) replaces the first for this goroutine.
        self.pending_panics.insert(
            ev.goid,
            PendingPanic {
                tid: ev.tid,
                time_ns: ev.time_ns,
                message,
                stack,
                labels,
            },
        );
    }

    /// `runtime.recovery`: the goroutine's panic was recovered and it carries on.
    pub fn on_recovered(&mut self, ev: &GoPanicEvent) -> Option<GoAlert> {
        let p = self.pending_panics.remove(&ev.goid)?;
        Some(panic_alert(ev.goid, p, true))
    }

    pub fn on_fatal(&mut self, ev: &GoPanicEvent) {
        if let Some(m) = go_message(ev) {
            self.fatal_message.get_or_insert(m);
        }
    }

    /// The message `process_exit` should carry, when the process dies.
    pub fn exit_message(&self) -> Option<String> {
        match (&self.fatal_message, &self.last_panic_message) {
            // A panic that nobody recovered ends in fatalpanic, which prints "panic: <value>".
            (_, Some(p)) if !self.pending_panics.is_empty() => Some(format!("panic: {p}")),
            (Some(f), _) => Some(f.clone()),
            _ => None,
        }
    }

    /// Panics that were never recovered (the process is exiting, or one stayed pending too long).
    pub fn unrecovered(&mut self, now_ns: u64, process_gone: bool) -> Vec<GoAlert> {
        let expired: Vec<u64> = self
            .pending_panics
            .iter()
            .filter(|(_, p)| process_gone || now_ns.saturating_sub(p.time_ns) > PANIC_DECISION_NS)
            .map(|(&g, _)| g)
            .collect();
        expired
            .into_iter()
            .filter_map(|g| Some(panic_alert(g, self.pending_panics.remove(&g)?, false)))
            .collect()
    }

    /// Goroutines parked right now, from the probes' table: stalls on sync primitives and
    /// leaking creation sites.
    pub fn scan(
        &mut self,
        now_ns: u64,
        stall_after_ns: u64,
        probes: &dyn GoroutineProbes,
        stacks: &mut StackResolver,
    ) -> Vec<GoAlert> {
        let Some(parked) = probes.go_parked(self.pid) else {
            return Vec::new();
        };
        self.scan_parked(now_ns, stall_after_ns, &parked, stacks)
    }
}

/// A finished hold episode as the alert of its longest waiter.
fn episode_alert(e: GoHoldEpisode) -> GoAlert {
    use crate::stacks::frame::names;
    let (waker_goid, waker_frames) = match e.releaser {
        Some((goid, frames)) => ((goid != 0).then_some(goid), frames),
        None => (None, Vec::new()),
    };
    let w = e.longest;
    let waker_names = names(&waker_frames);
    let likely_frames = e.likely_holder.as_ref().map(|h| h.stack.clone());
    let mut more_frames = vec![("waker_stack", waker_frames)];
    more_frames.extend(likely_frames.map(|f| ("likely_holder_stack", f)));
    GoAlert {
        tid: w.tid,
        time_ns: Some(w.start_ns.saturating_add(w.duration_ns)),
        finding: GoFinding::Wait(Box::new(GoWaitEpisode {
            goid: w.goid,
            wait_reason: w.wait_reason,
            duration_ns: w.duration_ns,
            created_by: w.created_by,
            waker_goid,
            waker_stack: waker_names,
            lock: e.lock,
            hold_ns: e.hold_ns,
            waiters: e.waiters,
            total_wait_ns: e.total_wait_ns,
            waiter_stacks: e
                .waiter_stacks
                .into_iter()
                .map(|s| (names(&s.stack), s.count, s.longest_ns, s.label_sets))
                .collect(),
            waiter_stacks_omitted: e.waiter_stacks_omitted,
            likely_holder: e.likely_holder.map(|h| (h.goid, names(&h.stack), h.why)),
            labels: w.labels,
        })),
        stack: w.stack,
        more_frames,
    }
}

fn panic_alert(goid: u64, p: PendingPanic, recovered: bool) -> GoAlert {
    GoAlert {
        tid: p.tid,
        time_ns: Some(p.time_ns),
        more_frames: Vec::new(),
        stack: p.stack,
        finding: GoFinding::Panic {
            goid,
            message: p.message,
            recovered,
            labels: p.labels,
        },
    }
}

/// One drain of the goroutine short-wait maps, every process's entries (each `GoWatch` takes
/// its own).
pub struct GoDrained<'a> {
    pub totals: &'a [(GoAggKey, AggValue)],
    pub samples: &'a [(GoSampleKey, AggValue)],
    /// Share of the time since the last drain the per-park probes were on (1.0: always):
    /// the totals are scaled up by its inverse.
    pub probes_on_share: f64,
}

/// Marks where a goroutine stack walked in the kernel was cut (at `GO_STACK_DEPTH` frames):
/// the frame before it is not the goroutine's root.
pub const TRUNCATED_FRAME: &str = "[deeper callers not walked]";

/// The frames of a goroutine stack the kernel walked, innermost first, with
/// [`TRUNCATED_FRAME`] after the outermost one when the walk was cut.
fn go_stack_frames(stacks: &mut StackResolver, pid: u32, walked: &GoStack) -> Vec<Frame> {
    let mut frames = stacks.resolve_addrs_frames(pid, go_stack_pcs(walked));
    if walked.truncated != 0 {
        frames.push(Frame::named(TRUNCATED_FRAME));
    }
    frames
}

/// The frames of a goroutine stack walked by the kernel (innermost first); a length beyond the
/// array is cut to it.
pub fn go_stack_pcs(stack: &GoStack) -> &[u64] {
    let len = usize::try_from(stack.len).map_or(stack.pcs.len(), |l| l.min(stack.pcs.len()));
    &stack.pcs[..len]
}

/// The text of a Go panic or throw message, when it is printable text.
pub fn go_message(ev: &GoPanicEvent) -> Option<String> {
    let len = (ev.message_len as usize).min(ev.message.len());
    let text = std::str::from_utf8(&ev.message[..len]).ok()?;
    let printable = !text.is_empty()
        && text
            .chars()
            .all(|c| !c.is_control() || c == '\n' || c == '\t');
    printable.then(|| text.to_string())
}

/// A wait reason's share of the short-wait profile under one stack.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Share<S> {
    reason: u32,
    /// `None`: no wait of this reason was sampled in the period.
    stack: Option<S>,
    ns: u64,
    count: u64,
}

/// Splits each reason's exact totals between its sampled stacks, in proportion to the sampled
/// blocked time (and count). The kernel weights each walked wait by the inverse of its chance
/// to be walked (1 from `SAMPLE_ALL_NS` up, N below it), so a stack's share of the weighted
/// nanoseconds estimates its share of all; the totals themselves are exact, and the shares of
/// a reason add up to them exactly. Samples of a reason without totals (its totals were lost:
/// map full) are left out rather than guessed.
fn split_totals<S: Copy>(
    totals: &[(u32, AggValue)],
    samples: &[(u32, S, AggValue)],
) -> Vec<Share<S>> {
    let mut out = Vec::new();
    for &(reason, total) in totals {
        let mine: Vec<&(u32, S, AggValue)> =
            samples.iter().filter(|(r, _, _)| *r == reason).collect();
        if mine.is_empty() {
            out.push(Share {
                reason,
                stack: None,
                ns: total.total_ns,
                count: total.count,
            });
            continue;
        }
        let sampled_ns: Vec<u64> = mine.iter().map(|(_, _, v)| v.total_ns).collect();
        let sampled_counts: Vec<u64> = mine.iter().map(|(_, _, v)| v.count).collect();
        // Zero-length waits only: split the time like the counts.
        let ns_weights = if sampled_ns.iter().all(|&n| n == 0) {
            &sampled_counts
        } else {
            &sampled_ns
        };
        let ns = apportion(total.total_ns, ns_weights);
        let counts = apportion(total.count, &sampled_counts);
        for ((s, ns), count) in mine.iter().zip(ns).zip(counts) {
            out.push(Share {
                reason,
                stack: Some(s.1),
                ns,
                count,
            });
        }
    }
    out
}

/// The sampling period that walks about `SAMPLES_PER_SEC` of `waits` short waits seen in
/// `secs` seconds: a power of two from 1 to `MAX_SAMPLE_PERIOD`.
fn sample_period_for(waits: u64, secs: f64) -> u32 {
    if secs <= 0.0 {
        return INITIAL_SAMPLE_PERIOD;
    }
    let wanted = (waits as f64 / secs / SAMPLES_PER_SEC).ceil();
    if wanted >= f64::from(MAX_SAMPLE_PERIOD) {
        return MAX_SAMPLE_PERIOD;
    }
    (wanted as u32).max(1).next_power_of_two()
}

/// `total` split in proportion to `weights`, rounded down, the rest going to the heaviest, so
/// the parts add up to `total` exactly. All-zero weights split evenly.
fn apportion(total: u64, weights: &[u64]) -> Vec<u64> {
    if weights.is_empty() {
        return Vec::new();
    }
    let sum: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    let mut parts: Vec<u64> = if sum == 0 {
        vec![total / weights.len() as u64; weights.len()]
    } else {
        weights
            .iter()
            .map(|&w| (u128::from(total) * u128::from(w) / sum) as u64)
            .collect()
    };
    let given: u64 = parts.iter().sum();
    // The first of equals, so the result does not depend on the iterator's tie rule.
    let heaviest = (0..weights.len()).fold(
        0,
        |best, i| {
            if weights[i] > weights[best] {
                i
            } else {
                best
            }
        },
    );
    parts[heaviest] += total - given;
    parts
}

/// Goroutine waits in the profile: the wait reason as the innermost frame.
fn add_to_profile(
    profile: &mut dyn GoProfile,
    reason: &str,
    stack: &[Frame],
    ns: u64,
    count: u64,
    labels: &GoLabels,
) {
    let mut frames = Vec::with_capacity(stack.len() + 1);
    frames.push(Frame::named(format!("[{reason}]")));
    if stack.is_empty() {
        frames.push(Frame::named("[unknown]"));
    } else {
        frames.extend(stack.iter().cloned());
    }
    profile.add(&frames, ns, count, classify_reason(reason), labels);
}

mod labels;
mod likely;
mod parked;
mod snapshot;

#[cfg(test)]
mod tests;
