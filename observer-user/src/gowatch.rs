//! Goroutine-level observation of one Go process: waits, stalls, leaks and panics, from the
//! runtime uprobes (see observer-ebpf's `golang` module).

use std::collections::{HashMap, HashSet};

use observer_common::{GoPanicEvent, GoWaitEvent};

use crate::{
    alert::{self, AlertDetail},
    events::go_message,
    folded::FoldedProfile,
    goleak::LeakDetector,
    probes::Probes,
    stackres::StackResolver,
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

/// A panic seen at `runtime.gopanic`, waiting to learn whether it was recovered.
struct PendingPanic {
    tid: u32,
    time_ns: u64,
    message: Option<String>,
    stack: Vec<String>,
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
    /// Stacks of goroutines parked before we attached (the kernel has no stack id for them).
    seeded: HashMap<u64, Vec<u64>>,
}

/// An alert body with the common fields that the session fills in.
pub struct GoAlert {
    pub tid: u32,
    pub time_ns: Option<u64>,
    pub stack: Vec<String>,
    pub detail: AlertDetail,
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
            seeded: HashMap::new(),
        }
    }

    pub fn with_seeded(mut self, seeded: HashMap<u64, Vec<u64>>) -> Self {
        self.seeded = seeded;
        self
    }

    /// A parked goroutine's stack: the kernel's stack id, or the one read at attach.
    fn parked_stack(
        &self,
        goid: u64,
        stack_id: i32,
        probes: &Probes,
        stacks: &mut StackResolver,
    ) -> Vec<String> {
        match self.seeded.get(&goid) {
            Some(pcs) if stack_id < 0 => stacks.resolve_addrs(self.pid, pcs),
            _ => stacks.resolve_id(probes, self.pid, stack_id),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
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

    /// A goroutine wait over the threshold ended.
    pub fn on_wait(
        &mut self,
        ev: &GoWaitEvent,
        probes: &Probes,
        stacks: &mut StackResolver,
        folded: &mut FoldedProfile,
        process: &str,
    ) -> Option<GoAlert> {
        let reason = self.reason(ev.reason);
        let stack = stacks.resolve_id(probes, self.pid, ev.stack_id);
        add_folded(folded, process, &reason, &stack, ev.duration_ns, 1);
        if classify_reason(&reason) != ReasonClass::Sync {
            return None;
        }
        Some(GoAlert {
            tid: ev.tid,
            time_ns: Some(ev.start_ns + ev.duration_ns),
            detail: AlertDetail::GoroutineWait(alert::GoroutineWait {
                goid: ev.goid,
                wait_reason: reason,
                duration_ns: ev.duration_ns,
                created_by: self.created_by(stacks, ev.gopc),
                waker_goid: (ev.waker_goid != 0).then_some(ev.waker_goid),
                waker_stack: stacks.resolve_id(probes, self.pid, ev.waker_stack_id),
            }),
            stack,
        })
    }

    /// Short goroutine waits summed in the kernel, into the profile.
    pub fn drain_aggregates(
        &mut self,
        probes: &mut Probes,
        stacks: &mut StackResolver,
        folded: &mut FoldedProfile,
        process: &str,
    ) {
        let Ok(aggs) = probes.drain_go_aggregates() else {
            return;
        };
        for (key, value) in aggs.into_iter().filter(|(k, _)| k.tgid == self.pid) {
            let reason = self.reason(key.reason);
            let stack = stacks.resolve_id(probes, self.pid, key.stack_id);
            add_folded(
                folded,
                process,
                &reason,
                &stack,
                value.total_ns,
                value.count,
            );
        }
    }

    pub fn on_panic(&mut self, ev: &GoPanicEvent, probes: &Probes, stacks: &mut StackResolver) {
        let message = go_message(ev);
        self.last_panic_message = message.clone().or(self.last_panic_message.take());
        let stack = stacks.resolve_id(probes, self.pid, ev.stack_id);
        // A nested panic (panicking in a deferred call) replaces the first for this goroutine.
        self.pending_panics.insert(
            ev.goid,
            PendingPanic {
                tid: ev.tid,
                time_ns: ev.time_ns,
                message,
                stack,
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

    /// Goroutines parked right now: stalls on sync primitives and leaking creation sites.
    pub fn scan(
        &mut self,
        now_ns: u64,
        stall_after_ns: u64,
        probes: &Probes,
        stacks: &mut StackResolver,
    ) -> Vec<GoAlert> {
        let Ok(parked) = probes.go_parked(self.pid) else {
            return Vec::new();
        };
        let mut alerts = Vec::new();
        let mut live = HashSet::new();
        let mut sites: HashMap<(u64, String), u64> = HashMap::new();
        for (goid, p) in &parked {
            let reason = self.reason(p.reason);
            match classify_reason(&reason) {
                ReasonClass::Sync => {
                    live.insert((*goid, p.start_ns));
                    let age = now_ns.saturating_sub(p.start_ns);
                    if age >= stall_after_ns && self.stalls_reported.insert((*goid, p.start_ns)) {
                        alerts.push(GoAlert {
                            tid: 0,
                            time_ns: None,
                            stack: self.parked_stack(*goid, p.stack_id, probes, stacks),
                            detail: AlertDetail::GoroutineStall(alert::GoroutineStall {
                                goid: *goid,
                                wait_reason: reason,
                                blocked_ns: age,
                                created_by: self.created_by(stacks, p.gopc),
                            }),
                        });
                    }
                }
                ReasonClass::Channel => *sites.entry((p.gopc, reason)).or_default() += 1,
                ReasonClass::Idle => {}
            }
        }
        self.stalls_reported.retain(|k| live.contains(k));
        for finding in self.leaks.sample(now_ns, sites) {
            let sample = parked
                .iter()
                .find(|(_, p)| p.gopc == finding.gopc)
                .map(|(goid, p)| self.parked_stack(*goid, p.stack_id, probes, stacks))
                .unwrap_or_default();
            alerts.push(GoAlert {
                tid: 0,
                time_ns: None,
                stack: sample,
                detail: AlertDetail::GoroutineLeak(alert::GoroutineLeak {
                    created_by: self.created_by(stacks, finding.gopc),
                    wait_reason: finding.wait_reason,
                    count: finding.count,
                    growth: finding.growth,
                    window_ns: finding.window_ns,
                }),
            });
        }
        alerts
    }
}

fn panic_alert(goid: u64, p: PendingPanic, recovered: bool) -> GoAlert {
    GoAlert {
        tid: p.tid,
        time_ns: Some(p.time_ns),
        stack: p.stack,
        detail: AlertDetail::GoPanic(alert::GoPanic {
            goid,
            message: p.message,
            recovered,
        }),
    }
}

/// Goroutine waits in the profile: one "thread" column for all goroutines (goids would make
/// every stack unique), the wait reason as the innermost frame.
fn add_folded(
    folded: &mut FoldedProfile,
    process: &str,
    reason: &str,
    stack: &[String],
    ns: u64,
    count: u64,
) {
    let mut frames = Vec::with_capacity(stack.len() + 1);
    frames.push(format!("[{reason}]"));
    if stack.is_empty() {
        frames.push("[unknown]".to_string());
    } else {
        frames.extend(stack.iter().cloned());
    }
    folded.add_many(process, "goroutines", &frames, ns, count);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_classed_by_text() {
        for r in [
            "sync.Mutex.Lock",
            "sync.RWMutex.RLock",
            "sync.WaitGroup.Wait",
            "sync.Cond.Wait",
            "semacquire",
        ] {
            assert_eq!(classify_reason(r), ReasonClass::Sync, "{r}");
        }
        for r in [
            "chan receive",
            "chan send",
            "select",
            "select (no cases)",
            "chan receive (nil chan)",
        ] {
            assert_eq!(classify_reason(r), ReasonClass::Channel, "{r}");
        }
        for r in [
            "sleep",
            "IO wait",
            "GC worker (idle)",
            "force gc (idle)",
            "wait reason 99",
        ] {
            assert_eq!(classify_reason(r), ReasonClass::Idle, "{r}");
        }
    }
}
