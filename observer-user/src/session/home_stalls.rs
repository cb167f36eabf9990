//! Stalls away from home (the rule is `detect::home`): each scan reads where every blocked
//! thread waits in an idle-class wait (unwound once per wait, within a budget), feeds the rule,
//! reports its new stalls, has the kernel send the end of a stalled thread's waits, and reports
//! that end with who woke it.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use observer_common::{wait_class, InFlight, WaitEvent};

use super::{now_time, syscall_name, Session};
use crate::{
    detect::home::{
        waits_for_work, woken_by, AwayEnded, AwayStall, GroupKey, HomeRule, Observation, SiteId,
    },
    output::alert::{self, AlertDetail},
    stacks::{frame::Frame, resolver::own_code_depth, unwind::Regs},
    terminal::liveview::{self, StalledWaiter},
};

/// Return addresses (with the pc) that make a wait's site: enough to reach the caller of the
/// wait primitive through glibc's condition variable or sleep wrappers, few enough that one
/// place reached from slightly different callers stays one site.
const SITE_FRAMES: usize = 6;
/// New waits unwound per scan at most, oldest first: a host with thousands of busy threads
/// costs a bounded amount per scan; the others are looked at in later scans.
const UNWINDS_PER_SCAN: usize = 128;
/// Threads whose current wait's site is remembered at most.
const MAX_SITE_CACHE: usize = 32768;
/// Sites whose addresses are kept for naming a home at most.
const MAX_SITE_ADDRS: usize = 16384;
/// Stalls away from home followed at once at most (the kernel marks as many).
const MAX_OPEN: usize = observer_common::MAX_AWAY_STALLED as usize;
/// Scans an ended stall waits for the event of its wait's end before it is written without.
const END_GRACE_SCANS: u32 = 3;
/// Scans between checks for processes no longer watched.
const FORGET_EVERY: u32 = 25;

/// Where a thread's current wait is.
#[derive(Debug, Clone, Copy)]
struct SiteSeen {
    tgid: u32,
    start_ns: u64,
    site: SiteId,
    comm_hash: u64,
}

/// The end of one wait of a stalled thread, as the kernel sent it.
#[derive(Debug, Clone)]
struct Wake {
    start_ns: u64,
    end_ns: u64,
    waker_tid: Option<u32>,
    waker_comm: Option<String>,
    waker_frames: Vec<Frame>,
    woken_by: &'static str,
}

/// A stall reported and not yet ended (or ended and waiting for its wake event).
#[derive(Debug)]
struct Open {
    tgid: u32,
    since_ns: u64,
    syscall: u64,
    comm: String,
    frames: Vec<Frame>,
    marked: bool,
    /// The wait going on when a scan last found it stalled.
    last_start_ns: u64,
    /// The end of that wait (the first wait end since it began), once the kernel sent it.
    final_wake: Option<Wake>,
    ended: Option<(AwayEnded, u64, u32)>,
}

/// The session's side of the home rule.
#[derive(Debug, Default)]
pub(super) struct HomeStalls {
    rule: HomeRule,
    sites: HashMap<u32, SiteSeen>,
    addrs: HashMap<(u32, SiteId), Vec<u64>>,
    open: HashMap<u32, Open>,
    /// Thread name hashes (tid -> (tgid, hash)), read once per thread.
    comms: HashMap<u32, (u32, u64)>,
    scans: u32,
}

/// What the scan found, for the gauges and the live view.
#[derive(Debug, Default)]
pub(super) struct AwayNow {
    pub per_process: HashMap<u32, u64>,
    pub rows: Vec<StalledWaiter>,
}

fn hash_of(v: impl Hash) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

fn regs_of(e: &InFlight) -> Regs {
    Regs {
        ip: e.ip,
        sp: e.sp,
        bp: e.bp,
    }
}

/// An idle-class wait the home rule judges: a futex wait without owner, a sleep, poll/epoll,
/// read/recv/accept. Not a lock wait or a wait in the kernel (the stall rule's), and not the
/// other blocking calls (`wait4` for a child, `pause`, `sigwaitinfo`, AIO completions): a
/// shell waiting for its command, or a process for its children, is no stall of its own.
fn judged_class(class: u32) -> bool {
    matches!(
        class,
        wait_class::FUTEX | wait_class::SLEEP | wait_class::POLL | wait_class::IO
    )
}

impl Session {
    /// One scan of the home rule over the threads blocked now.
    pub(super) fn scan_home(&mut self, blocked: &HashMap<u32, InFlight>, now: u64) -> AwayNow {
        let own = std::process::id();
        let mut home = std::mem::take(&mut self.home_stalls);
        home.scans = home.scans.wrapping_add(1);
        if home.scans.is_multiple_of(FORGET_EVERY) {
            let watched = &self.watched;
            home.rule
                .retain_processes(|tgid| watched.contains_key(&tgid));
            home.sites.retain(|_, s| watched.contains_key(&s.tgid));
            home.addrs.retain(|(tgid, _), _| watched.contains_key(tgid));
            home.comms.retain(|_, (tgid, _)| watched.contains_key(tgid));
        }
        let mut observations = Vec::new();
        let mut unknown = HashSet::new();
        let mut to_unwind: Vec<(u32, &InFlight)> = Vec::new();
        for (&tid, e) in blocked {
            // Waits seeded at attach count too: their sites are the same (`blocked_site`),
            // and the places where threads wait when observer comes are mostly homes.
            if !judged_class(e.class) || e.tgid == own || self.is_go_process(e.tgid) {
                continue;
            }
            match home.sites.get(&tid) {
                Some(s) if s.start_ns == e.start_ns && s.tgid == e.tgid => {
                    observations.push(observation(tid, e, s));
                }
                _ => to_unwind.push((tid, e)),
            }
        }
        to_unwind.sort_unstable_by_key(|(tid, e)| (e.start_ns, *tid));
        for (i, (tid, e)) in to_unwind.into_iter().enumerate() {
            if i >= UNWINDS_PER_SCAN {
                unknown.insert(tid);
                continue;
            }
            let addrs = self.stacks.blocked_site(e.tgid, regs_of(e), SITE_FRAMES);
            let site = hash_of(&addrs);
            let comm_hash = match home.comms.get(&tid) {
                Some(&(tgid, hash)) if tgid == e.tgid => hash,
                _ => {
                    let hash = hash_of(self.thread_comm(e.tgid, tid).unwrap_or_default());
                    if home.comms.len() >= MAX_SITE_CACHE {
                        home.comms.clear();
                    }
                    home.comms.insert(tid, (e.tgid, hash));
                    hash
                }
            };
            if home.addrs.len() < MAX_SITE_ADDRS || home.addrs.contains_key(&(e.tgid, site)) {
                home.addrs.insert((e.tgid, site), addrs);
            }
            let seen = SiteSeen {
                tgid: e.tgid,
                start_ns: e.start_ns,
                site,
                comm_hash,
            };
            if home.sites.len() < MAX_SITE_CACHE || home.sites.contains_key(&tid) {
                home.sites.insert(tid, seen);
            }
            observations.push(observation(tid, e, &seen));
        }
        home.sites.retain(|tid, _| blocked.contains_key(tid));
        let scan = home.rule.scan(
            &observations,
            &unknown,
            now,
            crate::util::duration::duration_ns(self.opts.stall_after),
        );
        let mut excused = HashSet::new();
        for s in &scan.new_stalls {
            let Some(e) = blocked.get(&s.tid) else {
                continue;
            };
            let frames = self.stacks.resolve_blocked_frames(e.tgid, regs_of(e));
            if waits_for_work(own_code_depth(&frames)) {
                home.rule.excuse(s.tid);
                excused.insert(s.tid);
                continue;
            }
            self.report_away(&mut home, s, e, frames);
        }
        // The wait going on now of each stalled thread: its end is the stall's end.
        for &(tid, _, _) in &scan.stalled_now {
            if let (Some(o), Some(e)) = (home.open.get_mut(&tid), blocked.get(&tid)) {
                if e.start_ns > o.last_start_ns {
                    o.last_start_ns = e.start_ns;
                    o.final_wake.take_if(|w| w.start_ns < e.start_ns);
                }
            }
        }
        for ended in scan.ended {
            if let Some(o) = home.open.get_mut(&ended.tid) {
                o.ended = Some((ended, now, 0));
            }
        }
        self.finish_away(&mut home, false);
        let mut out = AwayNow::default();
        for &(tid, group, blocked_ns) in &scan.stalled_now {
            if excused.contains(&tid) {
                continue;
            }
            *out.per_process.entry(group.0).or_default() += 1;
            if self.live.is_none() {
                continue;
            }
            let Some(o) = home.open.get(&tid) else {
                continue;
            };
            out.rows.push(StalledWaiter {
                pid: group.0,
                comm: o.comm.clone(),
                waiter: liveview::Waiter::Thread { tid },
                blocked_ns,
                on: format!("away from home in {}", syscall_name(o.syscall)),
                frames: crate::stacks::frame::names(&o.frames),
            });
        }
        self.home_stalls = home;
        out
    }

    fn is_go_process(&self, tgid: u32) -> bool {
        self.watched.get(&tgid).is_some_and(|t| t.is_go)
    }

    /// A `stall` alert with `stall_on: "away_from_home"`; the kernel is asked for the end of
    /// the thread's waits from now on.
    fn report_away(
        &mut self,
        home: &mut HomeStalls,
        s: &AwayStall,
        e: &InFlight,
        frames: Vec<Frame>,
    ) {
        let home_frames = s
            .home
            .first()
            .and_then(|site| home.addrs.get(&(e.tgid, *site)))
            .map(|addrs| self.stacks.resolve_addrs_frames(e.tgid, addrs))
            .unwrap_or_default();
        let comm = self.thread_comm(e.tgid, s.tid).unwrap_or_default();
        let mut a = self.alert_with_comm(
            now_time(),
            e.tgid,
            s.tid,
            comm.clone(),
            frames.clone(),
            AlertDetail::Stall(alert::Stall {
                blocked_ns: s.blocked_ns,
                stall_on: "away_from_home".to_string(),
                uaddr: (e.class == wait_class::FUTEX).then_some(e.uaddr),
                syscall: syscall_name(e.syscall).to_string(),
                owner_tid: None,
                owner_stack: Vec::new(),
                kernel_stack: Vec::new(),
                holder_state: None,
                holder_syscall: None,
                holder_stack: Vec::new(),
                holder_samples: 0,
                lock_kind: None,
                owner_recorded: None,
                home_stack: crate::stacks::frame::names(&home_frames),
            }),
        );
        a.keep_frames("home_stack", home_frames);
        self.emit(a);
        if home.open.len() >= MAX_OPEN {
            return;
        }
        let marked = match self.probes.mark_away_stalled(e.tgid, s.tid) {
            Ok(()) => true,
            Err(err) => {
                log::debug!(
                    "the end of tid {}'s stall will not name its waker: {err}",
                    s.tid
                );
                false
            }
        };
        home.open.insert(
            s.tid,
            Open {
                tgid: e.tgid,
                since_ns: s.since_ns,
                syscall: e.syscall,
                comm,
                frames,
                marked,
                last_start_ns: s.start_ns,
                final_wake: None,
                ended: None,
            },
        );
    }

    /// The end of a wait of a thread stalled away from home: kept for its `stall_end`.
    pub(super) fn note_away_wake(&mut self, w: &WaitEvent) {
        let Some(o) = self.home_stalls.open.get(&w.tid) else {
            return;
        };
        if o.tgid != w.tgid || w.start_ns < o.since_ns {
            return;
        }
        let by = woken_by(w.class, w.tgid, w.waker_tgid, w.waker_tid, w.waker_syscall);
        log::debug!(
            "stalled tid {}: wait from {} for {} ns ended by tid {} of {} in syscall {}: {}",
            w.tid,
            w.start_ns,
            w.duration_ns,
            w.waker_tid,
            w.waker_tgid,
            w.waker_syscall,
            by.name()
        );
        let named = by == crate::detect::home::WokenBy::Thread;
        let waker_tid = named.then_some(w.waker_tid);
        let waker_comm = waker_tid.and_then(|t| self.thread_comm(w.waker_tgid, t));
        let waker_frames = if named {
            self.stacks.resolve_snapshot_frames(
                &self.probes,
                w.waker_tgid,
                &w.waker,
                w.waker_stack_id,
            )
        } else {
            Vec::new()
        };
        let Some(o) = self.home_stalls.open.get_mut(&w.tid) else {
            return;
        };
        // Waits end in order: the first end of a wait that began no earlier than the one the
        // scans saw is that wait's end; later ones are waits after the stall.
        if w.start_ns < o.last_start_ns
            || o.final_wake
                .as_ref()
                .is_some_and(|f| f.start_ns <= w.start_ns)
        {
            return;
        }
        o.final_wake = Some(Wake {
            start_ns: w.start_ns,
            end_ns: w.start_ns + w.duration_ns,
            waker_tid,
            waker_comm,
            waker_frames,
            woken_by: by.name(),
        });
    }

    /// Writes a `stall_end` for every ended stall whose wait's end arrived (or that waited
    /// long enough for it); `all` writes every open one (observer stops).
    pub(super) fn finish_away(&mut self, home: &mut HomeStalls, all: bool) {
        let mut done = Vec::new();
        for (&tid, o) in home.open.iter_mut() {
            let Some((_, _, waited)) = o.ended.as_mut() else {
                continue;
            };
            *waited += 1;
            if o.final_wake.is_some() || *waited > END_GRACE_SCANS {
                done.push(tid);
            }
        }
        if all {
            done = home.open.keys().copied().collect();
        }
        for tid in done {
            let Some(o) = home.open.remove(&tid) else {
                continue;
            };
            if o.marked {
                self.probes.unmark_away_stalled(tid);
            }
            let Some((_, at_ns, _)) = o.ended else {
                continue; // still stalled when observer stops: its stall alert said so
            };
            let wake = o.final_wake;
            let end_ns = wake.as_ref().map_or(at_ns, |w| w.end_ns);
            let detail = AlertDetail::StallEnd(alert::StallEnd {
                blocked_ns: end_ns.saturating_sub(o.since_ns),
                stall_on: "away_from_home".to_string(),
                syscall: syscall_name(o.syscall).to_string(),
                waker_tid: wake.as_ref().and_then(|w| w.waker_tid),
                waker_comm: wake.as_ref().and_then(|w| w.waker_comm.clone()),
                waker_stack: wake
                    .as_ref()
                    .map(|w| crate::stacks::frame::names(&w.waker_frames))
                    .unwrap_or_default(),
                // No end sent: the kernel map was full or the event was lost.
                woken_by: wake.as_ref().map_or("unknown", |w| w.woken_by).to_string(),
            });
            let waker_frames = wake.map(|w| w.waker_frames).unwrap_or_default();
            let mut a = self.alert_with_comm(now_time(), o.tgid, tid, o.comm, o.frames, detail);
            a.keep_frames("waker_stack", waker_frames);
            self.emit(a);
        }
    }

    /// Observer stops: the stalls that ended get their `stall_end`, the marks go.
    pub(super) fn flush_away(&mut self) {
        let mut home = std::mem::take(&mut self.home_stalls);
        self.finish_away(&mut home, true);
        self.home_stalls = home;
    }
}

fn observation(tid: u32, e: &InFlight, s: &SiteSeen) -> Observation {
    let group: GroupKey = (e.tgid, s.comm_hash);
    Observation {
        tid,
        group,
        site: s.site,
        start_ns: e.start_ns,
        io_wait: matches!(e.class, wait_class::POLL | wait_class::IO),
    }
}
