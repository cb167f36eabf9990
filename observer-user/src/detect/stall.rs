//! Stall rule: a thread blocked on a lock that a live thread holds, or in uninterruptible sleep
//! in the kernel (D state: disk or network file system I/O, `mmap_lock`, a kernel mutex), for
//! longer than `--stall-after`, is a stall, reported once per wait (episode). The same scan
//! gives the lock waits old enough to be looked at for deadlock cycles.

use std::collections::{HashMap, HashSet};

use observer_common::{lock_kind, wait_class, InFlight};

use crate::detect::waitgraph::Waiter;

/// What the rule asks about the blocked threads and their processes. The session answers
/// from its process table and /proc; tests from tables.
pub trait BlockedFacts {
    /// A Go program: its futex waits are scheduler idling, never lock waits.
    fn is_go(&self, tgid: u32) -> bool;
    /// The owner of the lock `tid` waits on, read now (it may have changed hands since the
    /// wait began), as a host thread id; `None` when it cannot be read.
    fn current_owner(&mut self, tid: u32, wait: &InFlight) -> Option<u32>;
    /// Whether thread `tid` of process `tgid` exists now.
    fn thread_alive(&self, tgid: u32, tid: u32) -> bool;
}

/// The age limits of one scan.
#[derive(Debug, Clone, Copy)]
pub struct StallLimits {
    /// A lock wait this old is a stall.
    pub stall_ns: u64,
    /// A lock wait this old is looked at for deadlock cycles.
    pub cycle_ns: u64,
}

/// One thread stalled on a held lock or in the kernel.
#[derive(Debug, Clone, Copy)]
pub struct Stalled {
    pub tid: u32,
    pub wait: InFlight,
    /// The lock's owner now, as a host thread id (the waiter itself for a relock); `None` for
    /// a wait in uninterruptible sleep, which has no owner thread.
    pub owner_tid: Option<u32>,
    pub blocked_ns: u64,
}

impl Stalled {
    /// The wait this stall is part of: a thread's wait, identified by when it began.
    pub fn episode(&self) -> (u32, u64) {
        (self.tid, self.wait.start_ns)
    }
}

/// What one scan found.
#[derive(Debug, Default)]
pub struct StallScan {
    /// Stalls not reported before: one per episode.
    pub new_stalls: Vec<Stalled>,
    /// Every thread stalled now, reported before or not.
    pub stalled_now: Vec<Stalled>,
    /// Threads stalled now, per process.
    pub stalled_per_process: HashMap<u32, u64>,
    /// Lock waits old enough to be looked at for deadlock cycles.
    pub deadlock_candidates: Vec<Waiter>,
    /// The lock waits on a held lock and the uninterruptible waits going on now (tid,
    /// start): what outlives this scan.
    pub live_episodes: HashSet<(u32, u64)>,
}

/// The stall rule, with the episodes it has reported (forgotten as they end).
#[derive(Debug, Default)]
pub struct StallRule {
    reported: HashSet<(u32, u64)>,
}

impl StallRule {
    /// Looks at the threads blocked at `now_ns` (tid -> its wait).
    pub fn scan(
        &mut self,
        blocked: &HashMap<u32, InFlight>,
        now_ns: u64,
        limits: StallLimits,
        facts: &mut dyn BlockedFacts,
    ) -> StallScan {
        let mut out = StallScan::default();
        for (&tid, e) in blocked {
            let age = now_ns.saturating_sub(e.start_ns);
            // Uninterruptible sleep is decided by the kernel's own task state: no owner to
            // check, and a Go thread stuck in it is as stuck as any other.
            if e.class == wait_class::UNINTERRUPTIBLE {
                out.live_episodes.insert((tid, e.start_ns));
                if age >= limits.stall_ns {
                    self.stalled(&mut out, tid, e, None, age);
                }
                continue;
            }
            if e.class != wait_class::LOCK || facts.is_go(e.tgid) {
                continue;
            }
            let Some(owner) = facts.current_owner(tid, e) else {
                // A lock whose kind records no owner (Rust, parking_lot, semaphores) stalls
                // all the same; a wait classified only by an owner word that is gone now
                // was granted or never a lock wait.
                if e.lock_kind != lock_kind::UNKNOWN && !lock_kind::records_owner(e.lock_kind) {
                    out.live_episodes.insert((tid, e.start_ns));
                    if age >= limits.stall_ns {
                        self.stalled(&mut out, tid, e, None, age);
                    }
                }
                continue;
            };
            // A self-owned lock is a relock of a non-recursive mutex: a deadlock of one. An
            // owner that is gone left the lock word behind: nobody holds it, no alert.
            if owner != tid && !facts.thread_alive(e.tgid, owner) {
                continue;
            }
            out.live_episodes.insert((tid, e.start_ns));
            if age >= limits.cycle_ns {
                out.deadlock_candidates.push(Waiter {
                    tid,
                    uaddr: e.uaddr,
                    owner_tid: Some(owner),
                });
            }
            if age >= limits.stall_ns {
                self.stalled(&mut out, tid, e, Some(owner), age);
            }
        }
        self.reported.retain(|k| out.live_episodes.contains(k));
        out
    }

    /// Counts a stalled thread, new if its episode was not reported before.
    fn stalled(
        &mut self,
        out: &mut StallScan,
        tid: u32,
        e: &InFlight,
        owner_tid: Option<u32>,
        age: u64,
    ) {
        let stalled = Stalled {
            tid,
            wait: *e,
            owner_tid,
            blocked_ns: age,
        };
        *out.stalled_per_process.entry(e.tgid).or_default() += 1;
        out.stalled_now.push(stalled);
        if self.reported.insert(stalled.episode()) {
            out.new_stalls.push(stalled);
        }
    }
}

#[cfg(test)]
mod tests;
