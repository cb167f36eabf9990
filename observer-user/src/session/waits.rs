//! Thread-level waits: long waits as they end, blocked threads scanned for stalls and deadlock
//! cycles, and short waits summed in the kernel moved into the profile.

use std::collections::HashMap;

use observer_common::{wait_class, InFlight, WaitEvent};

use super::short_stacks::{category, wait_label};
use super::DEADLOCK_MIN_AGE;
use super::{class_frame, now_time, syscall_name, wall_time, Session};
use crate::stacks::frame::Frame;
use crate::util::{clock::monotonic_ns, duration::duration_ns};
use crate::{
    detect::holder::HolderState,
    detect::lockhold::{LockWaitEnded, ThreadAt},
    detect::lockwait::{judge_wait, short_waits_are_lock},
    detect::stall::{BlockedFacts, StallLimits, Stalled},
    detect::waitgraph::Cycle,
    output::alert::{self, AlertDetail},
    output::metrics::WaitKind,
    proc::{procinfo, seed},
    stacks::unwind::Regs,
    terminal::liveview::{self, StalledWaiter},
};

impl Session {
    fn is_go(&self, tgid: u32) -> bool {
        self.watched.get(&tgid).is_some_and(|t| t.is_go)
    }

    pub(super) fn on_wait(&mut self, w: &WaitEvent) {
        self.note_away_wake(w);
        let stack_frames = self.waiter_frames(w);
        let comm = self.thread_comm(w.tgid, w.tid).unwrap_or_default();
        let process = self.process_name(w.tgid);
        let owner = self.host_tid(w.tgid, w.owner);
        let verdict = judge_wait(w, self.is_go(w.tgid), owner, procinfo::thread_exists);
        let is_lock = verdict.lock;
        if let Some(m) = &self.opts.metrics {
            let kind = if is_lock {
                WaitKind::Lock
            } else {
                WaitKind::Idle
            };
            m.wait(w.tgid, &process, kind, w.duration_ns);
        }
        if is_lock {
            self.live_state.blocked(w.tgid, w.duration_ns);
        }
        let in_kernel = w.class == wait_class::UNINTERRUPTIBLE;
        let cat = category(w.class, is_lock);
        self.live_state.long_waits.thread(cat);
        if in_kernel {
            // Long waits in the kernel are in the profile like lock waits, under the
            // kernel frames they waited in.
            let frames = self.with_kernel_frames(stack_frames.clone(), w.kstack_id);
            self.profile_add(w.tgid, cat, &process, &comm, &frames, w.duration_ns, 1);
        } else if is_lock || self.opts.report_idle {
            let mut frames = stack_frames.clone();
            let class = if is_lock { wait_class::LOCK } else { w.class };
            if let Some(label) = wait_label(class, w.lock_kind, self.opts.report_idle) {
                frames.insert(0, label);
            }
            self.profile_add(w.tgid, cat, &process, &comm, &frames, w.duration_ns, 1);
        }
        let (waker_tid, waker_comm, waker_frames) = match verdict.waker_tid {
            Some(waker) => (
                Some(waker),
                self.thread_comm(w.waker_tgid, waker),
                self.stacks.resolve_snapshot_frames(
                    &self.probes,
                    w.waker_tgid,
                    &w.waker,
                    w.waker_stack_id,
                ),
            ),
            None => (None, None, Vec::new()),
        };
        if is_lock {
            let owner = (verdict.owner_tid != 0).then(|| {
                let comm = self.thread_comm(w.tgid, verdict.owner_tid);
                (verdict.owner_tid, comm)
            });
            self.add_lock_wait(LockWaitEnded {
                pid: w.tgid,
                uaddr: w.uaddr,
                lock_kind: w.lock_kind,
                waiter: ThreadAt {
                    tid: w.tid,
                    comm: Some(comm),
                    stack: stack_frames,
                },
                owner,
                waker: waker_tid.map(|tid| ThreadAt {
                    tid,
                    comm: waker_comm,
                    stack: waker_frames,
                }),
                start_ns: w.start_ns,
                duration_ns: w.duration_ns,
            });
            return;
        }
        if !self.opts.report_idle {
            return;
        }
        let detail = AlertDetail::IdleWait(alert::IdleWait {
            duration_ns: w.duration_ns,
            syscall: syscall_name(w.syscall).to_string(),
            wait_class: class_frame(w.class).trim_matches(['[', ']']).to_string(),
            waker_tid,
        });
        let time = wall_time(w.start_ns + w.duration_ns);
        let a = self.alert_with_comm(time, w.tgid, w.tid, comm, stack_frames, detail);
        self.emit(a);
    }

    /// Threads blocked right now: stalls (long waits on a held lock or in the kernel) and
    /// deadlock cycles.
    /// Thread ids are unique host-wide, so one wait-for graph serves every process.
    pub(super) fn scan_blocked(&mut self) {
        let Ok(in_flight) = self.probes.in_flight() else {
            // Without the waits in flight, only episodes quiet for long enough end.
            self.flush_lock_holds(&HashMap::new());
            return;
        };
        let now = monotonic_ns();
        let limits = StallLimits {
            stall_ns: duration_ns(self.opts.stall_after),
            cycle_ns: duration_ns(DEADLOCK_MIN_AGE.min(self.opts.stall_after)),
        };
        let blocked: HashMap<u32, InFlight> = in_flight
            .into_iter()
            .filter(|(_, e)| self.watched.contains_key(&e.tgid))
            .collect();
        self.watch_holders(&blocked, now);
        // The rule asks the session about owners and threads while it runs.
        let mut rule = std::mem::take(&mut self.stall_rule);
        let scan = rule.scan(&blocked, now, limits, self);
        self.stall_rule = rule;
        for stalled in &scan.new_stalls {
            self.report_stall(stalled, &blocked);
        }
        let away = self.scan_home(&blocked, now);
        self.live_state
            .stall_frames
            .retain(|k, _| scan.live_episodes.contains(k));
        if self.live.is_some() {
            let mut rows = Vec::new();
            for s in &scan.stalled_now {
                rows.push(StalledWaiter {
                    pid: s.wait.tgid,
                    comm: self.thread_comm(s.wait.tgid, s.tid).unwrap_or_default(),
                    waiter: liveview::Waiter::Thread { tid: s.tid },
                    blocked_ns: s.blocked_ns,
                    on: match s.owner_tid {
                        Some(owner) => format!("lock {:#x} held by tid {owner}", s.wait.uaddr),
                        None => format!(
                            "the kernel: uninterruptible sleep in {}",
                            syscall_name(s.wait.syscall)
                        ),
                    },
                    frames: self
                        .live_state
                        .stall_frames
                        .get(&s.episode())
                        .cloned()
                        .unwrap_or_default(),
                });
            }
            rows.extend(away.rows);
            self.live_state.thread_stalls = rows;
        }
        if let Some(m) = self.opts.metrics.clone() {
            for (&pid, t) in &self.watched {
                let threads = scan.stalled_per_process.get(&pid).copied().unwrap_or(0)
                    + away.per_process.get(&pid).copied().unwrap_or(0);
                let goroutines = t.go.as_ref().map_or(0, |g| g.stalled_count());
                m.set_blocked(pid, &t.name, threads, goroutines);
            }
        }
        for cycle in self.deadlocks.scan(&scan.deadlock_candidates) {
            self.report_deadlock(&cycle, &blocked);
        }
        self.flush_lock_holds(&blocked);
        self.export_update(scan.live_episodes);
    }

    /// User frames (innermost first) of a wait in uninterruptible sleep with, inside them,
    /// the `[kernel: uninterruptible]` marker and the kernel frames it waited in.
    fn with_kernel_frames(&mut self, user: Vec<Frame>, kstack_id: i32) -> Vec<Frame> {
        let kernel = self.stacks.resolve_kernel(&self.probes, kstack_id);
        let mut frames: Vec<Frame> = kernel.wait_frames().into_iter().map(Frame::named).collect();
        frames.push(Frame::named(class_frame(wait_class::UNINTERRUPTIBLE)));
        frames.extend(user);
        frames
    }

    /// A `stall` alert, with the waiter's and the owner's stacks read now (or, for a wait in
    /// the kernel, its kernel stack from when it went to sleep: it has not moved since).
    fn report_stall(&mut self, s: &Stalled, blocked: &HashMap<u32, InFlight>) {
        let e = &s.wait;
        let stack = self.stacks.resolve_blocked_frames(e.tgid, regs_of(e));
        let owner_frames = s
            .owner_tid
            .and_then(|owner| blocked.get(&owner))
            .map(|o| self.stacks.resolve_blocked_frames(o.tgid, regs_of(o)))
            .unwrap_or_default();
        let kernel_stack = if e.class != wait_class::UNINTERRUPTIBLE {
            Vec::new()
        } else if e.kstack_id < 0 {
            // Asleep since before we attached (seeded), or its stack did not fit: the
            // kernel's own view, which has not changed since it went to sleep.
            seed::kernel_stack_of(e.tgid, s.tid)
        } else {
            self.stacks
                .resolve_kernel(&self.probes, e.kstack_id)
                .wait_frames()
        };
        let uaddr = (e.class != wait_class::UNINTERRUPTIBLE).then_some(e.uaddr);
        // What the holder did since this wait began (a relock's owner is the waiter itself).
        let holder = s
            .owner_tid
            .filter(|&o| o != s.tid)
            .map(|o| self.holder_activity(e.tgid, o, e.start_ns, u64::MAX));
        let holder_frames = holder.as_ref().map(|h| h.stack.clone()).unwrap_or_default();
        self.live_state
            .stall_frames
            .insert(s.episode(), crate::stacks::frame::names(&stack));
        let mut a = self.alert(
            now_time(),
            e.tgid,
            s.tid,
            stack,
            AlertDetail::Stall(alert::Stall {
                blocked_ns: s.blocked_ns,
                stall_on: if e.class == wait_class::UNINTERRUPTIBLE {
                    "kernel"
                } else {
                    "lock"
                }
                .to_string(),
                uaddr,
                syscall: syscall_name(e.syscall).to_string(),
                owner_tid: s.owner_tid,
                owner_stack: crate::stacks::frame::names(&owner_frames),
                kernel_stack,
                holder_state: holder.as_ref().map(|h| state_name(h.state).to_string()),
                holder_syscall: holder.as_ref().and_then(|h| h.syscall.clone()),
                holder_stack: crate::stacks::frame::names(&holder_frames),
                holder_samples: holder.as_ref().map_or(0, |h| h.samples),
                lock_kind: (e.class == wait_class::LOCK)
                    .then(|| observer_common::lock_kind::name(e.lock_kind).to_string()),
                owner_recorded: (e.class == wait_class::LOCK)
                    .then(|| observer_common::lock_kind::records_owner(e.lock_kind)),
                home_stack: Vec::new(),
            }),
        );
        a.keep_frames("owner_stack", owner_frames);
        a.keep_frames("holder_stack", holder_frames);
        self.emit(a);
    }

    /// A `deadlock` alert: every member of the cycle with its stack, read now.
    fn report_deadlock(&mut self, cycle: &Cycle, blocked: &HashMap<u32, InFlight>) {
        let Some(pid) = cycle
            .members
            .first()
            .and_then(|m| blocked.get(&m.tid))
            .map(|e| e.tgid)
        else {
            return;
        };
        let member_frames: Vec<Vec<Frame>> = cycle
            .members
            .iter()
            .map(|m| {
                let e = blocked.get(&m.tid).copied().unwrap_or_default();
                self.stacks.resolve_blocked_frames(pid, regs_of(&e))
            })
            .collect();
        let members: Vec<alert::DeadlockMember> = cycle
            .members
            .iter()
            .zip(&member_frames)
            .map(|(m, frames)| alert::DeadlockMember {
                tid: m.tid,
                comm: self.thread_comm(pid, m.tid).unwrap_or_default(),
                uaddr: m.uaddr,
                owner_tid: m.owner_tid,
                stack: crate::stacks::frame::names(frames),
            })
            .collect();
        let Some(first) = members.first() else {
            return;
        };
        let (tid, comm) = (first.tid, first.comm.clone());
        let first_frames = member_frames.first().cloned().unwrap_or_default();
        let mut a = self.alert_with_comm(
            now_time(),
            pid,
            tid,
            comm,
            first_frames,
            AlertDetail::Deadlock(alert::Deadlock { cycle: members }),
        );
        for (i, frames) in member_frames.into_iter().enumerate() {
            a.keep_frames(format!("cycle.{i}.stack"), frames);
        }
        self.emit(a);
    }

    pub(super) fn drain_aggregates(&mut self) {
        let Ok(drained) = self.probes.drain_aggregates() else {
            return;
        };
        self.drain_go_aggregates(&drained.go_totals, &drained.go_samples);
        for (key, value) in drained.waits {
            if !self.watched.contains_key(&key.tgid) {
                continue;
            }
            let lock = short_waits_are_lock(key.class, self.is_go(key.tgid));
            let process = self.process_name(key.tgid);
            if let Some(m) = &self.opts.metrics {
                let kind = if lock { WaitKind::Lock } else { WaitKind::Idle };
                m.waits_summed(key.tgid, &process, kind, &value);
            }
            if lock {
                self.live_state.blocked(key.tgid, value.total_ns);
            }
            if !lock && !self.opts.report_idle {
                continue;
            }
            self.add_short_waits(&key, &value, &process, lock);
        }
        self.end_short_drain();
    }

    /// Waits on held locks and in the kernel that have not ended (stalls, deadlocks) count in
    /// the profile for the time they have lasted so far.
    pub(super) fn add_ongoing_lock_waits(&mut self) {
        let Ok(in_flight) = self.probes.in_flight() else {
            return;
        };
        let now = monotonic_ns();
        for (tid, e) in in_flight {
            let in_kernel = e.class == wait_class::UNINTERRUPTIBLE;
            if !self.watched.contains_key(&e.tgid)
                || (e.class != wait_class::LOCK && !in_kernel && !self.opts.report_idle)
            {
                continue;
            }
            let mut frames = self.stacks.resolve_blocked_frames(e.tgid, regs_of(&e));
            if in_kernel {
                frames = self.with_kernel_frames(frames, e.kstack_id);
            } else if let Some(label) = wait_label(e.class, e.lock_kind, self.opts.report_idle) {
                frames.insert(0, label);
            }
            let comm = self
                .thread_comm(e.tgid, tid)
                .unwrap_or_else(|| tid.to_string());
            let process = self.process_name(e.tgid);
            let cat = category(e.class, short_waits_are_lock(e.class, self.is_go(e.tgid)));
            let ns = now.saturating_sub(e.start_ns);
            self.profile_add(e.tgid, cat, &process, &comm, &frames, ns, 1);
        }
    }
}

fn state_name(state: HolderState) -> &'static str {
    match state {
        HolderState::Running => "running",
        HolderState::Blocked => "blocked",
        HolderState::Exited => "exited",
        HolderState::Unknown => "unknown",
    }
}

fn regs_of(e: &InFlight) -> Regs {
    Regs {
        ip: e.ip,
        sp: e.sp,
        bp: e.bp,
    }
}

/// What the stall rule asks, answered from the process table and /proc.
impl BlockedFacts for Session {
    fn is_go(&self, tgid: u32) -> bool {
        self.watched.get(&tgid).is_some_and(|t| t.is_go)
    }

    /// Read from the lock word in the process, as a host thread id.
    fn current_owner(&mut self, tid: u32, e: &InFlight) -> Option<u32> {
        let ns_tid = match self.watched.get(&e.tgid).and_then(|t| t.ns_pid) {
            Some(_) => procinfo::ns_id(e.tgid, tid)?,
            None => tid,
        };
        let owner = seed::owner_for_kind(e.tgid, e.lock_kind, e.op, e.uaddr, ns_tid)?;
        Some(self.host_tid(e.tgid, owner))
    }

    fn thread_alive(&self, tgid: u32, tid: u32) -> bool {
        procinfo::thread_exists(tgid, tid)
    }
}
