//! Goroutine hold episodes: the long waits on one sync primitive that one hold caused are one
//! finding (`goroutine_hold`), however many goroutines queued behind it (a service with 32
//! clients gave 32 `goroutine_wait` lines per 300 ms hold).
//!
//! Waits belong to the same lock when `gopark` got the same lock argument (for semaphores: the
//! lock of the semaphore's wait-queue root, one of 251, so two locks rarely share one) and the
//! same wait reason. A wait joins the lock's open episode when it began before the episode's
//! release (the end of its first wait: it was queued while the holder held the lock). The
//! goroutine that readied the first waiter released the lock: it held it, and its stack names
//! what it did under it. An episode is finished [`QUIET_NS`] after its last wait ended, at
//! most [`MAX_OPEN_NS`] after it opened, or when the process or the session ends.

use std::collections::HashMap;

use crate::golang::GoLabels;
use crate::stacks::frame::Frame;

pub const QUIET_NS: u64 = 300_000_000;
pub const MAX_OPEN_NS: u64 = 10_000_000_000;
/// Episodes open at once per process, at most; past it the oldest is finished early.
pub const MAX_OPEN_EPISODES: usize = 256;
/// Distinct waiter stacks kept per episode (the rest only counted), and listed in an alert.
pub const MAX_WAITER_STACKS: usize = 16;
/// Distinct pprof label sets kept per waiter stack (a label per request makes them many).
pub const MAX_LABEL_SETS: usize = 8;

/// One long goroutine wait on a sync primitive that has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoWaitEnded {
    /// `gopark`'s lock argument (0: unknown, e.g. seen by snapshots only).
    pub lock: u64,
    pub wait_reason: String,
    pub goid: u64,
    pub tid: u32,
    pub stack: Vec<Frame>,
    pub created_by: Vec<String>,
    /// The goroutine that readied it, and its stack then (the releaser).
    pub waker: Option<(u64, Vec<Frame>)>,
    pub start_ns: u64,
    pub duration_ns: u64,
    /// When nothing saw the release: a goroutine that likely held the lock meanwhile.
    pub likely_holder: Option<LikelyHolder>,
    /// Its pprof labels (empty: none, or not readable).
    pub labels: GoLabels,
}

/// A goroutine named as the likely holder of a lock from where it was while others waited
/// (see `golikely`): evidence, not proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LikelyHolder {
    pub goid: u64,
    pub stack: Vec<Frame>,
    /// Why it is named, in words.
    pub why: String,
}

impl GoWaitEnded {
    fn end_ns(&self) -> u64 {
        self.start_ns.saturating_add(self.duration_ns)
    }
}

/// Waits of an episode that share a stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoWaiterStack {
    pub stack: Vec<Frame>,
    pub count: u64,
    pub longest_ns: u64,
    /// Distinct non-empty label sets of its waiters, first seen first, at most
    /// [`MAX_LABEL_SETS`].
    pub label_sets: Vec<GoLabels>,
}

impl GoWaiterStack {
    fn new(w: &GoWaitEnded) -> Self {
        let mut s = GoWaiterStack {
            stack: w.stack.clone(),
            count: 0,
            longest_ns: 0,
            label_sets: Vec::new(),
        };
        s.count_in(w);
        s
    }

    fn count_in(&mut self, w: &GoWaitEnded) {
        self.count += 1;
        self.longest_ns = self.longest_ns.max(w.duration_ns);
        if !w.labels.is_empty()
            && self.label_sets.len() < MAX_LABEL_SETS
            && !self.label_sets.contains(&w.labels)
        {
            self.label_sets.push(w.labels.clone());
        }
    }
}

/// One finished hold episode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoHoldEpisode {
    pub lock: u64,
    pub wait_reason: String,
    /// Earliest wait's start to the release: a lower bound of the hold.
    pub hold_ns: u64,
    /// Monotonic ns of the release.
    pub release_ns: u64,
    /// The goroutine that released the lock to the first waiter, and its stack then.
    pub releaser: Option<(u64, Vec<Frame>)>,
    /// Without a releaser: the goroutine that likely held the lock.
    pub likely_holder: Option<LikelyHolder>,
    /// The waiter that waited longest.
    pub longest: GoWaitEnded,
    pub waiters: u64,
    pub total_wait_ns: u64,
    /// Distinct waiter stacks, most frequent first.
    pub waiter_stacks: Vec<GoWaiterStack>,
    pub waiter_stacks_omitted: u64,
}

struct Open {
    opened_ns: u64,
    first_start_ns: u64,
    release_ns: u64,
    last_end_ns: u64,
    releaser: Option<(u64, Vec<Frame>)>,
    likely_holder: Option<LikelyHolder>,
    longest: GoWaitEnded,
    waiters: u64,
    total_wait_ns: u64,
    stacks: Vec<GoWaiterStack>,
    stacks_omitted: u64,
}

impl Open {
    fn new(w: GoWaitEnded) -> Self {
        Self {
            opened_ns: w.end_ns(),
            first_start_ns: w.start_ns,
            release_ns: w.end_ns(),
            last_end_ns: w.end_ns(),
            releaser: w.waker.clone(),
            likely_holder: w.likely_holder.clone(),
            waiters: 1,
            total_wait_ns: w.duration_ns,
            stacks: vec![GoWaiterStack::new(&w)],
            stacks_omitted: 0,
            longest: w,
        }
    }

    fn join(&mut self, w: GoWaitEnded) {
        self.waiters += 1;
        self.total_wait_ns = self.total_wait_ns.saturating_add(w.duration_ns);
        self.first_start_ns = self.first_start_ns.min(w.start_ns);
        if self.likely_holder.is_none() {
            self.likely_holder = w.likely_holder.clone();
        }
        self.last_end_ns = self.last_end_ns.max(w.end_ns());
        // Waits arrive as they end, not always in order: the release is the earliest end.
        if w.end_ns() < self.release_ns {
            self.release_ns = w.end_ns();
            if w.waker.is_some() {
                self.releaser = w.waker.clone();
            }
        } else if self.releaser.is_none() {
            self.releaser = w.waker.clone();
        }
        match self.stacks.iter().position(|s| s.stack == w.stack) {
            Some(i) => self.stacks[i].count_in(&w),
            None if self.stacks.len() < MAX_WAITER_STACKS => {
                self.stacks.push(GoWaiterStack::new(&w))
            }
            None => self.stacks_omitted += 1,
        }
        if w.duration_ns > self.longest.duration_ns {
            self.longest = w;
        }
    }

    fn finish(mut self, lock: u64, wait_reason: String) -> GoHoldEpisode {
        self.stacks
            .sort_by(|a, b| b.count.cmp(&a.count).then(b.longest_ns.cmp(&a.longest_ns)));
        GoHoldEpisode {
            lock,
            wait_reason,
            hold_ns: self.release_ns.saturating_sub(self.first_start_ns),
            release_ns: self.release_ns,
            // A releaser seen by the probes is certain: no guess beside it.
            likely_holder: self.likely_holder.filter(|_| self.releaser.is_none()),
            releaser: self.releaser,
            longest: self.longest,
            waiters: self.waiters,
            total_wait_ns: self.total_wait_ns,
            waiter_stacks: self.stacks,
            waiter_stacks_omitted: self.stacks_omitted,
        }
    }
}

/// The open episodes of one Go process.
#[derive(Default)]
pub struct GoHolds {
    open: HashMap<(u64, String), Open>,
}

impl GoHolds {
    /// One long sync wait ended; returns the episode it closed, if it began after the open
    /// episode of its lock was released (it waits for a later hold).
    pub fn add(&mut self, w: GoWaitEnded) -> Vec<GoHoldEpisode> {
        let mut done = Vec::new();
        let key = (w.lock, w.wait_reason.clone());
        if let Some(open) = self.open.get_mut(&key) {
            if w.start_ns < open.release_ns {
                open.join(w);
                return done;
            }
            let finished = self.open.remove(&key).expect("present");
            done.push(finished.finish(key.0, key.1.clone()));
        }
        if self.open.len() >= MAX_OPEN_EPISODES {
            if let Some(oldest) = self
                .open
                .iter()
                .min_by_key(|(_, o)| o.opened_ns)
                .map(|(k, _)| k.clone())
            {
                let o = self.open.remove(&oldest).expect("present");
                done.push(o.finish(oldest.0, oldest.1));
            }
        }
        self.open.insert(key, Open::new(w));
        done
    }

    /// Episodes finished by `now_ns` (all of them with `all`: the process or session ended).
    pub fn flush(&mut self, now_ns: u64, all: bool) -> Vec<GoHoldEpisode> {
        let due: Vec<(u64, String)> = self
            .open
            .iter()
            .filter(|(_, o)| {
                all || now_ns.saturating_sub(o.last_end_ns) >= QUIET_NS
                    || now_ns.saturating_sub(o.opened_ns) >= MAX_OPEN_NS
            })
            .map(|(k, _)| k.clone())
            .collect();
        let mut out: Vec<GoHoldEpisode> = due
            .into_iter()
            .filter_map(|k| {
                let o = self.open.remove(&k)?;
                Some(o.finish(k.0, k.1))
            })
            .collect();
        out.sort_by_key(|e| e.release_ns);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn wait(goid: u64, lock: u64, start_ms: u64, dur_ms: u64, waker: Option<u64>) -> GoWaitEnded {
        GoWaitEnded {
            lock,
            wait_reason: "sync.Mutex.Lock".into(),
            goid,
            tid: 1,
            stack: vec![Frame::named("main.lookupIndex")],
            created_by: vec![],
            waker: waker.map(|g| (g, vec![Frame::named("main.rebuildIndexSlowly")])),
            likely_holder: None,
            start_ns: start_ms * MS,
            duration_ns: dur_ms * MS,
            labels: GoLabels::new(),
        }
    }

    #[test]
    fn waiter_stacks_keep_their_distinct_label_sets_bounded() {
        let mut h = GoHolds::default();
        let tagged = |goid: u64, id: u64| {
            let mut w = wait(goid, 0xa0, 10 + goid, 200, Some(7));
            if id > 0 {
                w.labels.insert("request_id".into(), format!("r-{id}"));
            }
            w
        };
        h.add(tagged(1, 1));
        h.add(tagged(2, 1));
        h.add(tagged(3, 0));
        for goid in 4..30 {
            h.add(tagged(goid, goid));
        }
        let e = &h.flush(0, true)[0];
        let sets = &e.waiter_stacks[0].label_sets;
        assert_eq!(sets.len(), MAX_LABEL_SETS);
        assert_eq!(sets[0]["request_id"], "r-1");
        assert_eq!(sets[1]["request_id"], "r-4");
        assert_eq!(e.waiter_stacks[0].count, 29);
    }

    #[test]
    fn thirty_two_waiters_behind_one_hold_are_one_episode_with_the_releaser() {
        let mut h = GoHolds::default();
        // The holder took the lock at 0 and released it at 300 ms; waiters queued from 10 ms
        // on and were handed the lock one after another.
        let mut closed = Vec::new();
        closed.extend(h.add(wait(100, 0xa0, 10, 290, Some(77))));
        for i in 1..32 {
            closed.extend(h.add(wait(100 + i, 0xa0, 10 + i, 290 + i, Some(100 + i - 1))));
        }
        assert!(closed.is_empty());
        assert!(h.flush(330 * MS, false).is_empty(), "not quiet yet");
        let eps = h.flush(700 * MS, false);
        assert_eq!(eps.len(), 1);
        let e = &eps[0];
        assert_eq!(e.waiters, 32);
        assert_eq!(e.hold_ns, 290 * MS);
        assert_eq!(e.releaser.as_ref().map(|r| r.0), Some(77));
        assert_eq!(e.waiter_stacks.len(), 1);
        assert_eq!(e.waiter_stacks[0].count, 32);
        assert_eq!(e.longest.goid, 131);
    }

    #[test]
    fn a_wait_that_began_after_the_release_starts_the_next_hold() {
        let mut h = GoHolds::default();
        assert!(h.add(wait(1, 0xa0, 0, 300, Some(9))).is_empty());
        let closed = h.add(wait(2, 0xa0, 400, 300, Some(9)));
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].waiters, 1);
        assert_eq!(h.flush(u64::MAX, true).len(), 1);
    }

    #[test]
    fn other_locks_and_other_reasons_are_other_episodes() {
        let mut h = GoHolds::default();
        h.add(wait(1, 0xa0, 0, 300, None));
        h.add(wait(2, 0xb0, 10, 300, None));
        let mut other = wait(3, 0xa0, 10, 300, None);
        other.wait_reason = "sync.RWMutex.RLock".into();
        h.add(other);
        assert_eq!(h.flush(0, true).len(), 3);
    }

    #[test]
    fn the_release_is_the_earliest_end_whatever_the_arrival_order() {
        let mut h = GoHolds::default();
        h.add(wait(1, 0xa0, 0, 500, Some(5)));
        h.add(wait(2, 0xa0, 10, 200, Some(7)));
        let e = &h.flush(0, true)[0];
        assert_eq!(e.release_ns, 210 * MS);
        assert_eq!(e.releaser.as_ref().map(|r| r.0), Some(7));
        assert_eq!(e.hold_ns, 210 * MS);
        assert_eq!(e.longest.goid, 1);
    }

    #[test]
    fn a_lock_contended_without_pause_is_still_reported_and_memory_is_bounded() {
        let mut h = GoHolds::default();
        h.add(wait(1, 0xa0, 0, 100_000, None));
        assert!(h.flush(5_000 * MS, false).is_empty());
        assert_eq!(h.flush(100_000 * MS + MAX_OPEN_NS, false).len(), 1);
        for lock in 0..(MAX_OPEN_EPISODES as u64 + 10) {
            h.add(wait(lock, lock, 0, 300, None));
        }
        assert!(h.open.len() <= MAX_OPEN_EPISODES);
    }

    fn likely(goid: u64) -> Option<LikelyHolder> {
        Some(LikelyHolder {
            goid,
            stack: vec![Frame::named("main.rebuildIndexSlowly")],
            why: "inside main.rebuildIndexSlowly, which locks the same mutex".into(),
        })
    }

    #[test]
    fn a_likely_holder_is_named_only_without_a_releaser() {
        let mut h = GoHolds::default();
        let mut first = wait(1, 0, 0, 300, None);
        first.likely_holder = likely(25);
        h.add(first);
        h.add(wait(2, 0, 10, 290, None));
        let e = h.flush(u64::MAX, true).pop().unwrap();
        assert_eq!(e.likely_holder.map(|l| l.goid), Some(25));

        let mut seen = wait(1, 0, 0, 300, Some(77));
        seen.likely_holder = likely(25);
        h.add(seen);
        let e = h.flush(u64::MAX, true).pop().unwrap();
        assert_eq!(e.releaser.map(|r| r.0), Some(77));
        assert!(
            e.likely_holder.is_none(),
            "a seen releaser is certain: no guess"
        );
    }
}
