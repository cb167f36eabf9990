//! The holder's side of a long hold: what a thread that others wait for did meanwhile.
//!
//! Every scan, a lock wait older than `--threshold` with a recorded owner makes that owner a
//! watched holder. A watched holder that is itself blocked (it has its own in-flight wait) is
//! noted with its syscall and the stack unwound from that wait's registers; one that runs is
//! sampled on CPU by the kernel's holder sampler while it is watched. When no wait names it
//! any more it is no longer sampled, and what was seen is kept a few seconds for the alert
//! that reports the hold.

use std::collections::{HashMap, VecDeque};

use observer_common::{lock_kind, wait_class, HolderSampleEvent, InFlight};

use super::{syscall_name, Session};
use crate::{
    detect::holder::{HolderActivity, HolderState},
    proc::procinfo,
    stacks::{frame::Frame, unwind::Regs},
};

/// Holders watched at once; more are counted, not watched.
const MAX_WATCHED: usize = 64;
/// Holders remembered at once, watched or released (the oldest released go first).
const MAX_KEPT: usize = 256;
/// How long what was seen of a holder is kept after the last wait that named it.
const KEEP_NS: u64 = 5_000_000_000;
/// Distinct sampled stacks kept per holder; samples elsewhere are counted without a stack.
const MAX_STACKS: usize = 32;
/// Samples kept per holder (a 20 s hold at 99 Hz); the oldest go first.
const MAX_SAMPLES: usize = 2048;
/// On-CPU time one sample stands for.
const SAMPLE_PERIOD_NS: u64 = 1_000_000_000 / crate::kernel::holder_sampler::HOLDER_SAMPLE_HZ;
/// Index of "a sample whose stack was not kept".
const NO_STACK: usize = usize::MAX;

/// Blocked waits of a holder remembered, newest last: enough to find the one a hold that
/// ended a moment ago overlapped, after the holder went on to block elsewhere.
const BLOCKED_KEPT: usize = 4;

/// The holder blocked in a syscall: one of its blocked waits.
#[derive(Debug, Clone)]
struct Blocked {
    /// Start of the holder's in-flight wait (identifies it).
    wait_start_ns: u64,
    /// Last scan that saw it still blocked in that wait.
    seen_ns: u64,
    syscall: &'static str,
    stack: Vec<Frame>,
}

#[derive(Debug, Default)]
struct Holder {
    tgid: u32,
    /// Named by a lock wait at the last scan.
    watched: bool,
    /// In the kernel's sampler map.
    sampled: bool,
    /// When the last wait naming it went away.
    released_ns: Option<u64>,
    /// Newest last, at most `BLOCKED_KEPT`.
    blocked: VecDeque<Blocked>,
    /// (time, index in `stacks` or `NO_STACK`), oldest first.
    samples: VecDeque<(u64, usize)>,
    stacks: Vec<Vec<Frame>>,
    exited_ns: Option<u64>,
}

/// What to change in the kernel's sampler map after a scan.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct SamplerChanges {
    /// (tgid, tid) to start sampling.
    pub add: Vec<(u32, u32)>,
    /// tids to stop sampling.
    pub remove: Vec<u32>,
}

/// The holders watched and remembered. Plain bookkeeping, unit-tested without a kernel.
#[derive(Debug, Default)]
pub(super) struct Holders {
    by_tid: HashMap<u32, Holder>,
    /// Holders not watched because `MAX_WATCHED` were already (once per scan each).
    pub refused: u64,
}

impl Holders {
    /// The holders named by lock waits now (tgid, tid): starts watching new ones, stops
    /// watching the others, and forgets what is older than `KEEP_NS`.
    pub fn scan(&mut self, named: &[(u32, u32)], now_ns: u64) -> SamplerChanges {
        let mut changes = SamplerChanges::default();
        let mut watched_now: Vec<u32> = Vec::new();
        for &(tgid, tid) in named {
            if watched_now.contains(&tid) {
                continue;
            }
            let known = self.by_tid.get(&tid).is_some_and(|h| h.tgid == tgid);
            if !known && self.watched_count() >= MAX_WATCHED {
                self.refused += 1;
                continue;
            }
            let h = self.by_tid.entry(tid).or_default();
            if h.tgid != tgid {
                // A tid reused by another process: nothing of the old one applies.
                *h = Holder::default();
                h.tgid = tgid;
            }
            h.watched = true;
            h.released_ns = None;
            if !h.sampled && h.exited_ns.is_none() {
                h.sampled = true;
                changes.add.push((tgid, tid));
            }
            watched_now.push(tid);
        }
        for (&tid, h) in self.by_tid.iter_mut() {
            if watched_now.contains(&tid) {
                continue;
            }
            if h.watched {
                h.watched = false;
                h.released_ns = Some(now_ns);
            }
            if h.sampled {
                h.sampled = false;
                changes.remove.push(tid);
            }
        }
        self.by_tid.retain(|_, h| {
            h.watched
                || h.released_ns
                    .is_some_and(|r| now_ns.saturating_sub(r) < KEEP_NS)
        });
        while self.by_tid.len() > MAX_KEPT {
            let oldest = self
                .by_tid
                .iter()
                .filter(|(_, h)| !h.watched)
                .min_by_key(|(_, h)| h.released_ns)
                .map(|(&tid, _)| tid);
            match oldest {
                Some(tid) => {
                    self.by_tid.remove(&tid);
                }
                None => break,
            }
        }
        changes
    }

    fn watched_count(&self) -> usize {
        self.by_tid.values().filter(|h| h.watched).count()
    }

    /// Watched holders (tgid, tid).
    pub fn watched(&self) -> Vec<(u32, u32)> {
        self.by_tid
            .iter()
            .filter(|(_, h)| h.watched)
            .map(|(&tid, h)| (h.tgid, tid))
            .collect()
    }

    /// Whether the holder's blocked wait that started at `wait_start_ns` was already noted
    /// (then only its time is updated: its stack has not moved since).
    pub fn still_blocked(&mut self, tid: u32, wait_start_ns: u64, now_ns: u64) -> bool {
        let Some(b) = self
            .by_tid
            .get_mut(&tid)
            .and_then(|h| h.blocked.back_mut())
            .filter(|b| b.wait_start_ns == wait_start_ns)
        else {
            return false;
        };
        b.seen_ns = now_ns;
        true
    }

    pub fn note_blocked(
        &mut self,
        tid: u32,
        wait_start_ns: u64,
        now_ns: u64,
        syscall: &'static str,
        stack: Vec<Frame>,
    ) {
        if let Some(h) = self.by_tid.get_mut(&tid) {
            if h.blocked.len() >= BLOCKED_KEPT {
                h.blocked.pop_front();
            }
            h.blocked.push_back(Blocked {
                wait_start_ns,
                seen_ns: now_ns,
                syscall,
                stack,
            });
        }
    }

    pub fn note_exited(&mut self, tid: u32, now_ns: u64) -> bool {
        match self.by_tid.get_mut(&tid) {
            Some(h) if h.exited_ns.is_none() => {
                h.exited_ns = Some(now_ns);
                h.sampled = false;
                true
            }
            _ => false,
        }
    }

    /// Whether samples of this thread are wanted (it is a holder of that process).
    pub fn wants_sample(&self, tgid: u32, tid: u32) -> bool {
        self.by_tid.get(&tid).is_some_and(|h| h.tgid == tgid)
    }

    pub fn note_sample(&mut self, tgid: u32, tid: u32, time_ns: u64, stack: Vec<Frame>) {
        let Some(h) = self.by_tid.get_mut(&tid).filter(|h| h.tgid == tgid) else {
            return;
        };
        let same = |s: &Vec<Frame>| {
            s.len() == stack.len() && s.iter().zip(&stack).all(|(a, b)| a.name == b.name)
        };
        let index = match h.stacks.iter().position(same) {
            Some(i) => i,
            None if h.stacks.len() < MAX_STACKS && !stack.is_empty() => {
                h.stacks.push(stack);
                h.stacks.len() - 1
            }
            None => NO_STACK,
        };
        if h.samples.len() >= MAX_SAMPLES {
            h.samples.pop_front();
        }
        h.samples.push_back((time_ns, index));
    }

    /// What holder `tid` of `tgid` was seen doing between `since_ns` and `until_ns` (the
    /// hold): blocked if a scan found it blocked then (unless the samples found it on CPU for longer than that wait lasted:
    /// a scan can land on a short syscall of a thread that mostly computes), else running if
    /// samples found it on CPU, else exited, else unknown.
    pub fn activity(&self, tgid: u32, tid: u32, since_ns: u64, until_ns: u64) -> HolderActivity {
        let Some(h) = self.by_tid.get(&tid).filter(|h| h.tgid == tgid) else {
            return HolderActivity::unknown();
        };
        let mut counts = vec![0u32; h.stacks.len()];
        let mut samples = 0u32;
        for &(t, i) in &h.samples {
            if t < since_ns || t > until_ns {
                continue;
            }
            samples += 1;
            if let Some(c) = counts.get_mut(i) {
                *c += 1;
            }
        }
        let on_cpu_ns = u64::from(samples) * SAMPLE_PERIOD_NS;
        // The blocked wait that overlapped the hold most.
        let overlap = |b: &Blocked| {
            b.seen_ns
                .min(until_ns)
                .saturating_sub(b.wait_start_ns.max(since_ns))
        };
        let during = h
            .blocked
            .iter()
            .filter(|b| b.seen_ns >= since_ns && b.wait_start_ns <= until_ns)
            .max_by_key(|b| overlap(b));
        if let Some(b) = during {
            let blocked_ns = overlap(b);
            if samples == 0 || blocked_ns >= on_cpu_ns {
                return HolderActivity {
                    state: HolderState::Blocked,
                    syscall: Some(b.syscall.to_string()),
                    stack: b.stack.clone(),
                    samples: 0,
                };
            }
        }
        if samples > 0 {
            // Most frequent first; on a tie the stack seen first.
            let top = counts
                .iter()
                .enumerate()
                .filter(|(_, &c)| c > 0)
                .max_by_key(|&(i, &c)| (c, std::cmp::Reverse(i)))
                .map(|(i, _)| h.stacks[i].clone())
                .unwrap_or_default();
            return HolderActivity {
                state: HolderState::Running,
                syscall: None,
                stack: top,
                samples,
            };
        }
        if h.exited_ns.is_some() {
            return HolderActivity {
                state: HolderState::Exited,
                ..HolderActivity::unknown()
            };
        }
        HolderActivity::unknown()
    }
}

/// At most this many threads of one process are watched as possible holders of a lock that
/// records no owner.
const MAX_POSSIBLE_HOLDERS: usize = 16;

/// The threads of `tgid` that may hold a lock others wait for: not waiting for a lock
/// themselves, not idling on a futex (condition variables, thread parking) or in poll/epoll
/// (event loops): running ones, or ones blocked in a sleep, a read or write, or in the kernel.
fn possible_holders(tgid: u32, blocked: &HashMap<u32, InFlight>) -> Vec<u32> {
    let tasks = procinfo::all_pids(std::path::Path::new(&format!("/proc/{tgid}/task")));
    tasks
        .into_iter()
        .filter(|tid| match blocked.get(tid) {
            Some(e) => !matches!(
                e.class,
                wait_class::LOCK | wait_class::FUTEX | wait_class::POLL
            ),
            None => true,
        })
        .take(MAX_POSSIBLE_HOLDERS)
        .collect()
}

impl Session {
    /// What the holder `holder_tid` of a lock in process `tgid` did between `since_ns` and
    /// `until_ns` (monotonic ns), from what the scans and the sampler saw.
    pub(crate) fn holder_activity(
        &mut self,
        tgid: u32,
        holder_tid: u32,
        since_ns: u64,
        until_ns: u64,
    ) -> HolderActivity {
        self.holders.activity(tgid, holder_tid, since_ns, until_ns)
    }

    /// Called by each scan with the threads blocked now, before the stall rule runs (so a
    /// stall reported by the same scan sees what was found here).
    pub(super) fn watch_holders(&mut self, blocked: &HashMap<u32, InFlight>, now_ns: u64) {
        // Holders are watched from half the threshold on: with scans 200 ms apart, a hold of
        // 300 ms at a 100 ms threshold is then always seen by one (a 200 ms window from the
        // threshold on was missed for good when the hold's period was a multiple of the scan's).
        let watch_from = crate::util::duration::duration_ns(self.opts.threshold) / 2;
        let mut named = Vec::new();
        let mut unrecorded: Vec<u32> = Vec::new();
        for (&tid, e) in blocked {
            if e.class != wait_class::LOCK || now_ns.saturating_sub(e.start_ns) < watch_from {
                continue;
            }
            if e.owner == 0 {
                if e.lock_kind != lock_kind::UNKNOWN
                    && !lock_kind::records_owner(e.lock_kind)
                    && !unrecorded.contains(&e.tgid)
                {
                    unrecorded.push(e.tgid);
                }
                continue;
            }
            let owner = self.host_tid(e.tgid, e.owner);
            if owner != 0 && owner != tid {
                named.push((e.tgid, owner));
            }
        }
        // A lock that records no owner (Rust, parking_lot, semaphores) names its holder only
        // when it is released, as the thread that wakes a waiter. Until then every thread of
        // the process that could be holding it is watched, so that what the releaser did
        // during the hold is known when it turns out to be the one.
        for tgid in unrecorded {
            named.extend(
                possible_holders(tgid, blocked)
                    .into_iter()
                    .map(|tid| (tgid, tid)),
            );
        }
        let before = self.holders.refused;
        let changes = self.holders.scan(&named, now_ns);
        if self.holders.refused > before && before == 0 {
            log::warn!(
                "more than {MAX_WATCHED} lock holders at once: the others are not watched \
                 (their alerts say holder_state \"unknown\")"
            );
        }
        for tid in changes.remove {
            self.probes.unsample_holder(tid);
        }
        for (tgid, tid) in changes.add {
            if let Err(e) = self.probes.sample_holder(tgid, tid) {
                log::warn!("cannot sample lock holder {tid} on CPU: {e}");
            }
        }
        for (tgid, tid) in self.holders.watched() {
            match blocked.get(&tid) {
                Some(own) if own.tgid == tgid => {
                    if !self.holders.still_blocked(tid, own.start_ns, now_ns) {
                        let regs = Regs {
                            ip: own.ip,
                            sp: own.sp,
                            bp: own.bp,
                        };
                        let stack = self.stacks.resolve_blocked_frames(tgid, regs);
                        let syscall = syscall_name(own.syscall);
                        self.holders
                            .note_blocked(tid, own.start_ns, now_ns, syscall, stack);
                    }
                }
                _ => {
                    if !procinfo::thread_exists(tgid, tid) && self.holders.note_exited(tid, now_ns)
                    {
                        self.probes.unsample_holder(tid);
                    }
                }
            }
        }
    }

    /// An on-CPU sample of a holder, unwound from the registers and stack copy it carries.
    pub(super) fn on_holder_sample(&mut self, s: &HolderSampleEvent) {
        if !self.holders.wants_sample(s.tgid, s.tid) {
            return;
        }
        let stack = self
            .stacks
            .resolve_snapshot_frames(&self.probes, s.tgid, &s.stack, -1);
        self.holders.note_sample(s.tgid, s.tid, s.time_ns, stack);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(names: &[&str]) -> Vec<Frame> {
        crate::stacks::frame::from_names(&names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn names(a: &HolderActivity) -> Vec<String> {
        crate::stacks::frame::names(&a.stack)
    }

    #[test]
    fn a_named_holder_is_sampled_until_no_wait_names_it() {
        let mut h = Holders::default();
        assert_eq!(
            h.scan(&[(10, 11), (10, 11)], 100),
            SamplerChanges {
                add: vec![(10, 11)],
                remove: vec![]
            }
        );
        assert_eq!(h.scan(&[(10, 11)], 200), SamplerChanges::default());
        assert_eq!(
            h.scan(&[], 300),
            SamplerChanges {
                add: vec![],
                remove: vec![11]
            }
        );
        // Kept a few seconds for the alert that follows, then forgotten.
        h.note_sample(10, 11, 250, frames(&["rebuild_index"]));
        assert_eq!(h.activity(10, 11, 0, u64::MAX).state, HolderState::Running);
        h.scan(&[], 300 + KEEP_NS);
        assert_eq!(h.activity(10, 11, 0, u64::MAX).state, HolderState::Unknown);
    }

    #[test]
    fn running_reports_the_most_frequent_stack_since_the_wait_began() {
        let mut h = Holders::default();
        h.scan(&[(10, 11)], 0);
        h.note_sample(10, 11, 5, frames(&["old_work"]));
        h.note_sample(10, 11, 5, frames(&["old_work"]));
        h.note_sample(10, 11, 5, frames(&["old_work"]));
        h.note_sample(10, 11, 20, frames(&["now_ms", "rebuild_index"]));
        h.note_sample(10, 11, 30, frames(&["rebuild_index", "holder_main"]));
        h.note_sample(10, 11, 40, frames(&["rebuild_index", "holder_main"]));
        // Another process's thread with a reused tid is not this holder.
        h.note_sample(99, 11, 50, frames(&["elsewhere"]));
        let a = h.activity(10, 11, 10, u64::MAX);
        assert_eq!(a.state, HolderState::Running);
        assert_eq!(a.samples, 3);
        assert_eq!(names(&a), ["rebuild_index", "holder_main"]);
        assert_eq!(h.activity(99, 11, 0, u64::MAX).state, HolderState::Unknown);
    }

    #[test]
    fn blocked_wins_and_is_noted_once_per_wait() {
        let mut h = Holders::default();
        h.scan(&[(10, 11)], 0);
        h.note_sample(10, 11, 5, frames(&["prepare"]));
        assert!(!h.still_blocked(11, 7, 100));
        h.note_blocked(11, 7, 100, "read", frames(&["read", "refresh_from_disk"]));
        assert!(h.still_blocked(11, 7, 300));
        assert!(
            !h.still_blocked(11, 8, 300),
            "a new wait is a new observation"
        );
        let a = h.activity(10, 11, 200, u64::MAX);
        assert_eq!(a.state, HolderState::Blocked);
        assert_eq!(a.syscall.as_deref(), Some("read"));
        assert_eq!(names(&a), ["read", "refresh_from_disk"]);
        // Seen blocked only before the wait began: not evidence about this hold.
        let later = h.activity(10, 11, 400, u64::MAX);
        assert_eq!(later.state, HolderState::Unknown);
    }

    #[test]
    fn a_short_syscall_of_a_computing_holder_does_not_make_it_blocked() {
        let mut h = Holders::default();
        h.scan(&[(10, 11)], 0);
        for i in 0..30 {
            h.note_sample(10, 11, 1_000 + i, frames(&["rebuild_index"]));
        }
        // A scan caught it 2 ms into a write(): 30 samples (~300 ms on CPU) outweigh it.
        h.note_blocked(11, 500_000_000, 502_000_000, "write", frames(&["write"]));
        let a = h.activity(10, 11, 0, u64::MAX);
        assert_eq!(a.state, HolderState::Running);
        assert_eq!(names(&a), ["rebuild_index"]);
        // Blocked in it for a second: blocked.
        assert!(h.still_blocked(11, 500_000_000, 1_500_000_000));
        let a = h.activity(10, 11, 0, u64::MAX);
        assert_eq!(a.state, HolderState::Blocked);
        assert_eq!(a.syscall.as_deref(), Some("write"));
    }

    #[test]
    fn an_exited_holder_says_so_and_leaves_the_sampler() {
        let mut h = Holders::default();
        h.scan(&[(10, 11)], 0);
        assert!(h.note_exited(11, 50));
        assert!(!h.note_exited(11, 60));
        assert_eq!(h.activity(10, 11, 0, u64::MAX).state, HolderState::Exited);
        // Still named by the waits it left behind: not sampled again.
        assert_eq!(h.scan(&[(10, 11)], 100).add, vec![]);
    }

    #[test]
    fn the_watched_set_is_bounded_and_refusals_counted() {
        let mut h = Holders::default();
        let named: Vec<(u32, u32)> = (0..MAX_WATCHED as u32 + 3).map(|t| (1, 100 + t)).collect();
        let changes = h.scan(&named, 0);
        assert_eq!(changes.add.len(), MAX_WATCHED);
        assert_eq!(h.refused, 3);
        assert_eq!(h.watched().len(), MAX_WATCHED);
    }

    #[test]
    fn samples_and_stacks_per_holder_are_bounded() {
        let mut h = Holders::default();
        h.scan(&[(10, 11)], 0);
        for i in 0..(MAX_SAMPLES + 10) as u64 {
            let f = format!("f{}", i % (MAX_STACKS as u64 + 5));
            h.note_sample(10, 11, i, frames(&[&f]));
        }
        let holder = &h.by_tid[&11];
        assert_eq!(holder.samples.len(), MAX_SAMPLES);
        assert_eq!(holder.stacks.len(), MAX_STACKS);
        assert_eq!(h.activity(10, 11, 0, u64::MAX).samples, MAX_SAMPLES as u32);
    }
}
