//! Hold-episode rule: the long lock waits that one hold of a lock caused are one finding (a
//! `lock_hold` alert), however many threads queued behind it.
//!
//! Waits on the same (pid, lock address) belong to one episode when each began before the
//! episode's release: it was already waiting while the holder held the lock. The first wait of
//! an episode to end fixes the holder (the owner recorded in the lock when it blocked, else
//! the thread that woke it from a futex call) and the release. Waiters handed the lock one
//! after another (glibc wakes one waiter per unlock) stay in the episode; a wait that began
//! after the release belongs to the next hold. An episode is finished when no wait that could
//! still join it is in flight and [`QUIET_NS`] passed since its last wait ended, or
//! [`MAX_OPEN_NS`] after it opened, or when the session ends.

use std::collections::HashMap;

use crate::stacks::frame::Frame;

/// An episode is finished this long after its last wait ended (no joining wait in flight).
pub const QUIET_NS: u64 = 300_000_000;
/// An episode is finished at most this long after it opened, waiters in flight or not: a
/// lock contended without pause still gets its alerts.
pub const MAX_OPEN_NS: u64 = 10_000_000_000;
/// Episodes open at once, at most; a wait that would open one more is dropped (counted).
pub const MAX_OPEN_EPISODES: usize = 1024;
/// Distinct waiter stacks kept per episode; waits with other stacks are only counted.
pub const MAX_WAITER_STACKS: usize = 64;
/// Distinct waiter stacks an alert lists (most frequent first); the rest are counted.
pub const LISTED_WAITER_STACKS: usize = 16;

/// A thread and its stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadAt {
    pub tid: u32,
    pub comm: Option<String>,
    /// Innermost first.
    pub stack: Vec<Frame>,
}

/// One long lock wait that has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockWaitEnded {
    pub pid: u32,
    /// The futex word waited on.
    pub uaddr: u64,
    /// `observer_common::lock_kind`.
    pub lock_kind: u32,
    pub waiter: ThreadAt,
    /// The lock's owner recorded in the lock when the wait began, as a host thread id, and
    /// its name then.
    pub owner: Option<(u32, Option<String>)>,
    /// The thread that woke the waiter from a futex call (the unlock); `None` when a timer or
    /// a signal ended the wait.
    pub waker: Option<ThreadAt>,
    /// Monotonic ns.
    pub start_ns: u64,
    pub duration_ns: u64,
}

impl LockWaitEnded {
    fn end_ns(&self) -> u64 {
        self.start_ns.saturating_add(self.duration_ns)
    }
}

/// How the holder of a hold is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HolderSource {
    /// Recorded in the lock when the first waiter blocked.
    Owner,
    /// The thread that woke the first waiter from a futex call (the unlock).
    Releaser,
}

impl HolderSource {
    pub fn as_str(self) -> &'static str {
        match self {
            HolderSource::Owner => "owner",
            HolderSource::Releaser => "releaser",
        }
    }
}

/// The holder of a hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub tid: u32,
    pub comm: Option<String>,
    pub known_from: HolderSource,
}

/// Waits of an episode that share a stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaiterStack {
    pub stack: Vec<Frame>,
    pub count: u64,
    pub longest_ns: u64,
    /// The name of the thread that waited longest with this stack.
    pub comm: String,
}

/// One finished hold episode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldEpisode {
    pub pid: u32,
    pub uaddr: u64,
    pub lock_kind: u32,
    /// The lock records its owner and an owner was seen.
    pub owner_recorded: bool,
    /// Start of the earliest wait (a lower bound of when the hold began), monotonic ns.
    pub first_start_ns: u64,
    /// End of the first wait to end: the release, monotonic ns.
    pub release_ns: u64,
    pub holder: Option<Holder>,
    /// The thread that woke the first waiter from a futex call, and its stack then.
    pub release: Option<ThreadAt>,
    /// The waiter that waited longest, and how long.
    pub longest: ThreadAt,
    pub longest_wait_ns: u64,
    pub waiters: u64,
    pub total_wait_ns: u64,
    /// Distinct waiter stacks, most frequent first, at most [`LISTED_WAITER_STACKS`].
    pub waiter_stacks: Vec<WaiterStack>,
    /// Waits whose stack is not in `waiter_stacks`.
    pub waiter_stacks_omitted: u64,
}

impl HoldEpisode {
    /// How long the lock was held at least: from the earliest waiter's start to the release.
    pub fn hold_ns(&self) -> u64 {
        self.release_ns.saturating_sub(self.first_start_ns)
    }
}

/// An episode still collecting waits.
#[derive(Debug)]
struct Open {
    ep: HoldEpisode,
    /// When the episode opened and when its last wait ended, monotonic ns.
    opened_ns: u64,
    last_end_ns: u64,
}

/// Which lock a wait on futex word `uaddr` was for, as far as the word tells: the key that
/// groups waits into episodes. A glibc rwlock's readers and writers wait on two words 4 bytes
/// apart (lock + 8, lock + 12), in one 16-byte block of the 8-byte aligned lock; parking_lot
/// parks each thread on a word of its own, so its waits say nothing of the lock: they are
/// grouped per process (0), by time alone.
pub fn lock_identity(lock_kind: u32, uaddr: u64) -> u64 {
    use observer_common::lock_kind as k;
    match lock_kind {
        k::PTHREAD_RWLOCK_READ | k::PTHREAD_RWLOCK_WRITE => uaddr & !15,
        k::PARKING_LOT_MUTEX | k::PARKING_LOT_RWLOCK_READ | k::PARKING_LOT_RWLOCK_WRITE => 0,
        _ => uaddr,
    }
}

/// The episodes being collected, per lock.
#[derive(Debug, Default)]
pub struct HoldEpisodes {
    /// Per (pid, `lock_identity`), oldest first.
    open: HashMap<(u32, u64), Vec<Open>>,
    open_count: usize,
    /// Waits dropped because [`MAX_OPEN_EPISODES`] were open.
    pub waits_dropped: u64,
}

impl HoldEpisodes {
    /// Takes in one long lock wait that has ended.
    pub fn add(&mut self, w: LockWaitEnded) {
        let key = (w.pid, lock_identity(w.lock_kind, w.uaddr));
        let end = w.end_ns();
        if let Some(open) = self
            .open
            .get_mut(&key)
            .and_then(|eps| eps.iter_mut().find(|o| w.start_ns < o.ep.release_ns))
        {
            if end < open.ep.release_ns {
                // Events of different CPUs arrive slightly out of order: the first wait to
                // end is the one that saw the release.
                set_release(&mut open.ep, &w);
            }
            join(open, w);
            return;
        }
        if self.open_count >= MAX_OPEN_EPISODES {
            self.waits_dropped += 1;
            return;
        }
        let mut ep = HoldEpisode {
            pid: w.pid,
            uaddr: w.uaddr,
            lock_kind: w.lock_kind,
            owner_recorded: false,
            first_start_ns: w.start_ns,
            release_ns: end,
            holder: None,
            release: None,
            longest: w.waiter.clone(),
            longest_wait_ns: 0,
            waiters: 0,
            total_wait_ns: 0,
            waiter_stacks: Vec::new(),
            waiter_stacks_omitted: 0,
        };
        set_release(&mut ep, &w);
        let mut open = Open {
            ep,
            opened_ns: end,
            last_end_ns: end,
        };
        join(&mut open, w);
        self.open.entry(key).or_default().push(open);
        self.open_count += 1;
    }

    /// Episodes finished by `now_ns`. `in_flight` gives, per (pid, `lock_identity`), the start of
    /// the earliest wait on it still in flight: a wait that began before an episode's release
    /// may still join it.
    pub fn flush(&mut self, now_ns: u64, in_flight: &HashMap<(u32, u64), u64>) -> Vec<HoldEpisode> {
        self.take(|key, o| {
            let joinable = in_flight
                .get(key)
                .is_some_and(|&start| start < o.ep.release_ns);
            now_ns.saturating_sub(o.opened_ns) >= MAX_OPEN_NS
                || (!joinable && now_ns.saturating_sub(o.last_end_ns) >= QUIET_NS)
        })
    }

    /// Every episode, finished or not (the session ends).
    pub fn drain_all(&mut self) -> Vec<HoldEpisode> {
        self.take(|_, _| true)
    }

    /// Episodes open now.
    pub fn open_episodes(&self) -> usize {
        self.open_count
    }

    fn take(&mut self, mut done: impl FnMut(&(u32, u64), &Open) -> bool) -> Vec<HoldEpisode> {
        let mut out = Vec::new();
        self.open.retain(|key, eps| {
            let mut i = 0;
            while i < eps.len() {
                if done(key, &eps[i]) {
                    out.push(finish(eps.remove(i).ep));
                } else {
                    i += 1;
                }
            }
            !eps.is_empty()
        });
        self.open_count -= out.len();
        out.sort_by_key(|e| (e.release_ns, e.pid, e.uaddr));
        out
    }
}

/// The first wait to end names the holder and the release.
fn set_release(ep: &mut HoldEpisode, w: &LockWaitEnded) {
    ep.release_ns = w.end_ns();
    ep.release = w.waker.clone();
    // A word read where a lock of this kind keeps no owner would be a guess: the releaser
    // is named instead.
    let owner = w
        .owner
        .as_ref()
        .filter(|(tid, _)| *tid != 0 && observer_common::lock_kind::records_owner(w.lock_kind));
    ep.owner_recorded = owner.is_some();
    ep.holder = match (owner, &w.waker) {
        (Some((tid, comm)), _) => Some(Holder {
            tid: *tid,
            comm: comm.clone(),
            known_from: HolderSource::Owner,
        }),
        (None, Some(waker)) => Some(Holder {
            tid: waker.tid,
            comm: waker.comm.clone(),
            known_from: HolderSource::Releaser,
        }),
        (None, None) => None,
    };
}

fn join(open: &mut Open, w: LockWaitEnded) {
    let ep = &mut open.ep;
    open.last_end_ns = open.last_end_ns.max(w.end_ns());
    ep.first_start_ns = ep.first_start_ns.min(w.start_ns);
    ep.waiters += 1;
    ep.total_wait_ns = ep.total_wait_ns.saturating_add(w.duration_ns);
    let comm = w.waiter.comm.clone().unwrap_or_default();
    let kept = ep.waiter_stacks.len();
    match ep
        .waiter_stacks
        .iter_mut()
        .find(|s| s.stack == w.waiter.stack)
    {
        Some(s) => {
            s.count += 1;
            if w.duration_ns > s.longest_ns {
                s.longest_ns = w.duration_ns;
                s.comm = comm;
            }
        }
        None if kept < MAX_WAITER_STACKS => ep.waiter_stacks.push(WaiterStack {
            stack: w.waiter.stack.clone(),
            count: 1,
            longest_ns: w.duration_ns,
            comm,
        }),
        None => ep.waiter_stacks_omitted += 1,
    }
    if w.duration_ns > ep.longest_wait_ns {
        ep.longest_wait_ns = w.duration_ns;
        ep.longest = w.waiter;
    }
}

/// Most frequent stacks first (then the longest wait), at most [`LISTED_WAITER_STACKS`].
fn finish(mut ep: HoldEpisode) -> HoldEpisode {
    ep.waiter_stacks
        .sort_by(|a, b| b.count.cmp(&a.count).then(b.longest_ns.cmp(&a.longest_ns)));
    if ep.waiter_stacks.len() > LISTED_WAITER_STACKS {
        let rest: u64 = ep.waiter_stacks[LISTED_WAITER_STACKS..]
            .iter()
            .map(|s| s.count)
            .sum();
        ep.waiter_stacks.truncate(LISTED_WAITER_STACKS);
        ep.waiter_stacks_omitted += rest;
    }
    ep
}

#[cfg(test)]
mod tests;
