//! Home rule: most threads of a service have a *home* wait, where they wait for work (an event
//! loop's `epoll_wait`, a connection's `recv`, a pool's condition variable). A thread seen
//! blocked in an idle-class wait (condition variable, sleep, poll, read, futex with no owner)
//! continuously, at one place that is not its home, for at least `--stall-after`, is stalled
//! away from home: once per episode.
//!
//! Learned from the periodic scans of blocked threads: each scan that finds a thread blocked
//! at a *site* (where the program called the wait; the session hashes its return addresses)
//! is one time-weighted observation of that site. A site holding at least
//! [`HOME_SHARE`] of a thread's observed waiting is its home, once it has
//! [`MIN_OBSERVATIONS`] of them. A place that is home for any thread of its group (same
//! process, same thread name) is home for all of the group: a pool thread that never waited
//! before finds its pool's home there.
//!
//! What keeps it honest:
//! - The wait now going on never makes its own site home: a wait's observations are learned
//!   when it has ended (a re-wait counts as an end), and a wait that may be a stall is learned
//!   only once its episode ended without stalling; a stall is never learned.
//! - Re-waits from the same site (a timed wait that wakes every second and waits again) are one
//!   episode: only a scan that finds the thread elsewhere (running, or blocked at another site)
//!   ends it.
//! - A wait near the top of its thread (at most [`WORK_WAIT_MAX_DEPTH`] frames of the
//!   program's own code, see [`waits_for_work`]) is a wait for work: the session excuses it
//!   ([`HomeRule::excuse`]) and it is learned instead.
//! - A wait for input (poll, read) is judged only for a thread that waits for input at home
//!   (an event loop, a connection thread): a thread whose home is a condition variable that
//!   waits for input has been handed a connection, a new role.
//! - Nothing is judged before anything is known: a wait already going on when the rule
//!   started (at attach) is never a stall, nor is one of a thread with no learned history of
//!   its own in a group with none either. A thread with no history of its own is judged only
//!   on waits for its own process (futex, sleep): a new connection's first `recv` waits for a
//!   client, not for a stuck thread.
//!
//! Tables are bounded: [`MAX_THREADS`] threads (least recently seen dropped first), [`MAX_SITES`]
//! sites per thread, [`MAX_GROUPS`] groups with [`MAX_GROUP_HOMES`] home sites each.

use std::collections::{HashMap, HashSet};

use observer_common::{sysno, wait_class};

/// A wait's site: a hash of the first return addresses above the syscall.
pub type SiteId = u64;

/// A thread's group: its process and a hash of its name.
pub type GroupKey = (u32, u64);

/// A share of a thread's learned waiting at one site that makes the site home.
pub const HOME_SHARE: f64 = 0.2;
/// Observations (scans that found it waiting, ~5 s of waiting at 200 ms scans) a thread needs
/// before its home is known.
pub const MIN_OBSERVATIONS: u64 = 25;
/// Threads followed at most; the least recently seen go first.
pub const MAX_THREADS: usize = 16384;
/// Sites kept per thread: the least weighty is dropped for a new one.
pub const MAX_SITES: usize = 16;
/// Groups kept at most.
pub const MAX_GROUPS: usize = 4096;
/// Home sites kept per group.
pub const MAX_GROUP_HOMES: usize = 64;
/// Learned weight past which a thread's history is halved: the old fades, the recent decides.
const DECAY_AT: f64 = 3000.0;

/// One blocked thread at one scan, its wait's site known.
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    pub tid: u32,
    pub group: GroupKey,
    pub site: SiteId,
    /// When this wait began (a re-wait has a new one).
    pub start_ns: u64,
    /// A wait for input (poll, epoll, read, recv, accept) rather than for its own process.
    pub io_wait: bool,
}

/// A thread found stalled away from home.
#[derive(Debug, Clone, PartialEq)]
pub struct AwayStall {
    pub tid: u32,
    pub group: GroupKey,
    pub site: SiteId,
    /// When the episode's first wait began.
    pub since_ns: u64,
    /// When the wait going on now began.
    pub start_ns: u64,
    pub blocked_ns: u64,
    /// The thread's home sites, weightiest first (its group's when it has none of its own).
    pub home: Vec<SiteId>,
}

/// A stalled episode that is over: the thread was found not waiting at its site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwayEnded {
    pub tid: u32,
    pub group: GroupKey,
    pub site: SiteId,
    pub since_ns: u64,
    /// When the last wait seen in the episode began.
    pub last_start_ns: u64,
}

/// What one scan found.
#[derive(Debug, Default)]
pub struct HomeScan {
    pub new_stalls: Vec<AwayStall>,
    pub ended: Vec<AwayEnded>,
    /// Threads stalled away from home now (reported before or now): (tid, group, blocked_ns).
    pub stalled_now: Vec<(u32, GroupKey, u64)>,
}

/// Observations per site, decaying.
#[derive(Debug, Default, Clone)]
struct History {
    sites: Vec<(SiteId, f64)>,
    total: f64,
    observations: u64,
    /// Sites of waits for input (of `sites`).
    input_sites: Vec<SiteId>,
}

impl History {
    fn add(&mut self, site: SiteId, n: u64) {
        if n == 0 {
            return;
        }
        self.observations += n;
        let w = n as f64;
        if let Some(slot) = self.sites.iter_mut().find(|(s, _)| *s == site) {
            slot.1 += w;
        } else {
            if self.sites.len() >= MAX_SITES {
                let (i, _) = self
                    .sites
                    .iter()
                    .enumerate()
                    .min_by(|a, b| a.1 .1.total_cmp(&b.1 .1))
                    .expect("full, so not empty");
                self.total -= self.sites.swap_remove(i).1;
            }
            self.sites.push((site, w));
        }
        self.total += w;
        if self.total > DECAY_AT {
            for (_, w) in &mut self.sites {
                *w /= 2.0;
            }
            self.total /= 2.0;
        }
    }

    fn learned(&self) -> bool {
        self.observations >= MIN_OBSERVATIONS
    }

    fn note_input_site(&mut self, site: SiteId) {
        if !self.input_sites.contains(&site) {
            self.input_sites
                .retain(|s| self.sites.iter().any(|(k, _)| k == s));
            self.input_sites.push(site);
        }
    }

    /// Whether the thread waits for input at home (an event loop, a connection's reads).
    fn input_at_home(&self) -> bool {
        self.home().iter().any(|s| self.input_sites.contains(s))
    }

    /// Home sites, weightiest first; none until learned.
    fn home(&self) -> Vec<SiteId> {
        if !self.learned() || self.total <= 0.0 {
            return Vec::new();
        }
        let mut home: Vec<(SiteId, f64)> = self
            .sites
            .iter()
            .copied()
            .filter(|(_, w)| *w / self.total >= HOME_SHARE)
            .collect();
        home.sort_by(|a, b| b.1.total_cmp(&a.1));
        home.into_iter().map(|(s, _)| s).collect()
    }
}

/// Waits at one site seen at every scan since `since_ns`.
#[derive(Debug, Clone, Copy)]
struct Episode {
    site: SiteId,
    since_ns: u64,
    last_start_ns: u64,
    /// Observations of the wait going on (`last_start_ns`), not learned yet.
    current: u64,
    /// Observations of earlier waits of the episode held back until it ends without
    /// stalling (it might be a stall).
    held: u64,
    /// Whether this episode can be a stall (see the module comment).
    judged: bool,
    /// A wait for input.
    input: bool,
    reported: bool,
}

#[derive(Debug, Default)]
struct ThreadState {
    group: GroupKey,
    learned: History,
    episode: Option<Episode>,
    last_seen_ns: u64,
}

#[derive(Debug, Default)]
struct GroupState {
    /// Sites that are home for a thread of the group, with when that was last seen.
    homes: HashMap<SiteId, u64>,
    last_seen_ns: u64,
}

/// The home rule's state: every followed thread's learned sites and current episode.
#[derive(Debug, Default)]
pub struct HomeRule {
    threads: HashMap<u32, ThreadState>,
    groups: HashMap<GroupKey, GroupState>,
    /// The first scan: waits that began before it are never stalls.
    started_ns: Option<u64>,
}

impl HomeRule {
    /// Looks at the blocked threads of one scan at `now_ns`. `unknown` are threads blocked now
    /// whose site was not read this scan (the unwind budget ran out): their episodes are left
    /// as they are.
    pub fn scan(
        &mut self,
        observations: &[Observation],
        unknown: &HashSet<u32>,
        now_ns: u64,
        stall_ns: u64,
    ) -> HomeScan {
        let started = *self.started_ns.get_or_insert(now_ns);
        let mut out = HomeScan::default();
        let seen: HashMap<u32, &Observation> = observations.iter().map(|o| (o.tid, o)).collect();
        // Episodes that are over: the thread is not blocked at its site any more.
        let mut over = Vec::new();
        for (&tid, t) in &self.threads {
            let Some(ep) = t.episode else { continue };
            if unknown.contains(&tid) {
                continue;
            }
            match seen.get(&tid) {
                Some(o) if o.site == ep.site && o.group == t.group => {}
                _ => over.push(tid),
            }
        }
        for tid in over {
            self.end_episode(tid, now_ns, &mut out);
        }
        for o in observations {
            self.observe(o, started, now_ns);
        }
        for o in observations {
            self.judge(o.tid, now_ns, stall_ns, &mut out);
        }
        self.bound(now_ns);
        out
    }

    /// Keeps only the threads and groups of the processes `keep` says are still watched.
    pub fn retain_processes(&mut self, keep: impl Fn(u32) -> bool) {
        self.threads.retain(|_, t| keep(t.group.0));
        self.groups.retain(|g, _| keep(g.0));
    }

    /// The stall of `tid` just found is a wait for work after all (see [`waits_for_work`]):
    /// no stall; its episode is learned like any healthy wait, so its site becomes home.
    pub fn excuse(&mut self, tid: u32) {
        if let Some(ep) = self.threads.get_mut(&tid).and_then(|t| t.episode.as_mut()) {
            ep.reported = false;
            ep.judged = false;
        }
    }

    /// Threads followed now.
    pub fn threads(&self) -> usize {
        self.threads.len()
    }

    fn end_episode(&mut self, tid: u32, now_ns: u64, out: &mut HomeScan) {
        let Some(t) = self.threads.get_mut(&tid) else {
            return;
        };
        let Some(ep) = t.episode.take() else { return };
        if ep.reported {
            out.ended.push(AwayEnded {
                tid,
                group: t.group,
                site: ep.site,
                since_ns: ep.since_ns,
                last_start_ns: ep.last_start_ns,
            });
            return;
        }
        t.learned.add(ep.site, ep.held + ep.current);
        if ep.input {
            t.learned.note_input_site(ep.site);
        }
        let group = t.group;
        let home = t.learned.home();
        self.note_group_home(group, &home, now_ns);
    }

    fn note_group_home(&mut self, group: GroupKey, home: &[SiteId], now_ns: u64) {
        if home.is_empty() {
            return;
        }
        let g = self.groups.entry(group).or_default();
        g.last_seen_ns = now_ns;
        for &site in home {
            if g.homes.len() >= MAX_GROUP_HOMES && !g.homes.contains_key(&site) {
                if let Some(oldest) = g.homes.iter().min_by_key(|(_, &t)| t).map(|(&s, _)| s) {
                    g.homes.remove(&oldest);
                }
            }
            g.homes.insert(site, now_ns);
        }
    }

    fn observe(&mut self, o: &Observation, started: u64, now_ns: u64) {
        let group_learned = self
            .groups
            .get(&o.group)
            .is_some_and(|g| !g.homes.is_empty());
        let t = self.threads.entry(o.tid).or_default();
        if t.group != o.group {
            // A new thread, or a reused tid: start from nothing.
            *t = ThreadState {
                group: o.group,
                ..ThreadState::default()
            };
        }
        t.last_seen_ns = now_ns;
        let mut learned_now = false;
        match &mut t.episode {
            Some(ep) if ep.site == o.site => {
                if o.start_ns != ep.last_start_ns {
                    // A re-wait: the previous wait is over. Learned now, unless the episode
                    // may be a stall (then only if it ends without one).
                    let done = std::mem::take(&mut ep.current);
                    if ep.judged {
                        ep.held += done;
                    } else {
                        t.learned.add(o.site, done);
                        if o.io_wait {
                            t.learned.note_input_site(o.site);
                        }
                        learned_now = done > 0;
                    }
                    ep.last_start_ns = o.start_ns;
                }
                ep.current += 1;
            }
            _ => {
                // A wait for input is judged only for a thread that waits for input at home:
                // for any other it is a new role (a pool thread handed a connection), not a
                // stall. Other waits are judged by the thread's own home, else its group's.
                let own = t.learned.learned() && (!o.io_wait || t.learned.input_at_home());
                t.episode = Some(Episode {
                    site: o.site,
                    since_ns: o.start_ns,
                    last_start_ns: o.start_ns,
                    current: 1,
                    held: 0,
                    judged: o.start_ns > started && (own || (group_learned && !o.io_wait)),
                    input: o.io_wait,
                    reported: false,
                });
            }
        }
        if learned_now {
            let (group, home) = (t.group, t.learned.home());
            self.note_group_home(group, &home, now_ns);
        }
    }

    fn judge(&mut self, tid: u32, now_ns: u64, stall_ns: u64, out: &mut HomeScan) {
        let Some(t) = self.threads.get(&tid) else {
            return;
        };
        let Some(ep) = t.episode else { return };
        let blocked_ns = now_ns.saturating_sub(ep.since_ns);
        if ep.reported {
            out.stalled_now.push((tid, t.group, blocked_ns));
            return;
        }
        if !ep.judged || blocked_ns < stall_ns {
            return;
        }
        let own_home = t.learned.home();
        let group_homes = self.groups.get(&t.group).map(|g| &g.homes);
        if own_home.contains(&ep.site) || group_homes.is_some_and(|h| h.contains_key(&ep.site)) {
            return;
        }
        let home = if own_home.is_empty() {
            let mut h: Vec<(SiteId, u64)> = group_homes
                .map(|h| h.iter().map(|(&s, &t)| (s, t)).collect())
                .unwrap_or_default();
            h.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            h.into_iter().map(|(s, _)| s).collect()
        } else {
            own_home
        };
        out.new_stalls.push(AwayStall {
            tid,
            group: t.group,
            site: ep.site,
            since_ns: ep.since_ns,
            start_ns: ep.last_start_ns,
            blocked_ns,
            home,
        });
        out.stalled_now.push((tid, t.group, blocked_ns));
        if let Some(ep) = self.threads.get_mut(&tid).and_then(|t| t.episode.as_mut()) {
            ep.reported = true;
        }
    }

    /// Keeps the tables within their bounds, dropping the least recently seen.
    fn bound(&mut self, _now_ns: u64) {
        if self.threads.len() > MAX_THREADS {
            let mut by_age: Vec<(u64, u32)> = self
                .threads
                .iter()
                .filter(|(_, t)| t.episode.is_none_or(|e| !e.reported))
                .map(|(&tid, t)| (t.last_seen_ns, tid))
                .collect();
            by_age.sort_unstable();
            let excess = self.threads.len() - MAX_THREADS;
            for (_, tid) in by_age.into_iter().take(excess) {
                self.threads.remove(&tid);
            }
        }
        if self.groups.len() > MAX_GROUPS {
            let mut by_age: Vec<(u64, GroupKey)> = self
                .groups
                .iter()
                .map(|(&k, g)| (g.last_seen_ns, k))
                .collect();
            by_age.sort_unstable();
            let excess = self.groups.len() - MAX_GROUPS;
            for (_, k) in by_age.into_iter().take(excess) {
                self.groups.remove(&k);
            }
        }
    }
}

/// At most this many frames of the program's own code between a thread's start and its wait:
/// the wait is the thread's wait for work, whatever its history says.
pub const WORK_WAIT_MAX_DEPTH: usize = 4;

/// Whether a wait with `own_depth` frames of the program's own code on its stack (from the
/// thread's start routine or `main` to the call of the wait) is a wait for work. Threads wait
/// for work at the top of their loop, a few frames below their start (a pool's `next_job`, an
/// event loop's `epoll_wait`, a connection thread parked in a thread cache); a stall happens in
/// the middle of the work, deeper (a lock wait inside a query, a sleep inside a command). This
/// spares a thread that takes a new role (a connection thread returned to its cache) from
/// being reported at its first wait there.
pub fn waits_for_work(own_depth: usize) -> bool {
    own_depth <= WORK_WAIT_MAX_DEPTH
}

/// Who ended a wait, from the thread that was running when it was woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WokenBy {
    /// A thread of the waiter's own process, from its own call (a futex wake: the releaser
    /// of a lock built on a condition variable; a write to a pipe or socket it polled).
    Thread,
    /// A timeout, a timer or a signal (the wake came from an interrupt, or from a thread that
    /// only happened to run then).
    TimerOrSignal,
    /// Another process (a client writing to the socket it read, a shared futex).
    OtherProcess,
}

impl WokenBy {
    pub fn name(self) -> &'static str {
        match self {
            WokenBy::Thread => "thread",
            WokenBy::TimerOrSignal => "timer_or_signal",
            WokenBy::OtherProcess => "other_process",
        }
    }
}

/// Who ended an idle wait of class `class` of a thread of process `tgid`, woken while thread
/// `waker_tid` of `waker_tgid` ran in syscall `waker_syscall` (-1: not in a syscall).
pub fn woken_by(
    class: u32,
    tgid: u32,
    waker_tgid: u32,
    waker_tid: u32,
    waker_syscall: i64,
) -> WokenBy {
    let Ok(nr) = u64::try_from(waker_syscall) else {
        // Not in a syscall: an interrupt, i.e. a timer.
        return WokenBy::TimerOrSignal;
    };
    if waker_tid == 0 || class == wait_class::SLEEP || sysno::sends_signal(nr) {
        return WokenBy::TimerOrSignal;
    }
    let same = waker_tgid == tgid;
    if nr == sysno::FUTEX {
        return if same {
            WokenBy::Thread
        } else {
            WokenBy::OtherProcess
        };
    }
    // A futex wait is ended by a futex call; a wake from any other call is its timeout firing
    // while that thread ran.
    if class == wait_class::FUTEX {
        WokenBy::TimerOrSignal
    } else if same {
        WokenBy::Thread
    } else {
        WokenBy::OtherProcess
    }
}

#[cfg(test)]
mod tests;
