//! Long lock waits grouped into hold episodes: one `lock_hold` alert per hold of a lock,
//! however many threads queued behind it (see `detect::lockhold` for the rule).

use std::collections::HashMap;

use observer_common::{lock_kind, wait_class, InFlight};

use super::{wall_time, Session};
use crate::{
    detect::holder::{HolderActivity, HolderState},
    detect::lockhold::{lock_identity, HoldEpisode, HoldEpisodes, LockWaitEnded},
    output::alert::{self, AlertDetail},
    stacks::frame::names,
    util::clock::monotonic_ns,
};

/// The episodes being collected and what was reported.
#[derive(Default)]
pub(super) struct LockHolds {
    rule: HoldEpisodes,
    /// `lock_hold` alerts raised, and the waits they grouped.
    pub episodes: u64,
    pub waiters: u64,
}

impl LockHolds {
    /// Long lock waits left out of any episode (too many open at once).
    pub fn ungrouped(&self) -> u64 {
        self.rule.waits_dropped
    }
}

impl Session {
    /// A long lock wait has ended: it joins the episode of the hold it waited behind.
    pub(super) fn add_lock_wait(&mut self, w: LockWaitEnded) {
        self.lock_holds.rule.add(w);
    }

    /// Reports the episodes that are over. `blocked` is every wait in flight now: a wait on
    /// the same lock that began before an episode's release may still join it.
    pub(super) fn flush_lock_holds(&mut self, blocked: &HashMap<u32, InFlight>) {
        let mut earliest: HashMap<(u32, u64), u64> = HashMap::new();
        for e in blocked.values() {
            if e.uaddr != 0 && e.class != wait_class::UNINTERRUPTIBLE {
                let lock = lock_identity(e.lock_kind, e.uaddr);
                let start = earliest.entry((e.tgid, lock)).or_insert(e.start_ns);
                *start = (*start).min(e.start_ns);
            }
        }
        let done = self.lock_holds.rule.flush(monotonic_ns(), &earliest);
        for ep in done {
            self.report_lock_hold(ep);
        }
    }

    /// The session ends: every episode is reported, finished or not.
    pub(super) fn drain_lock_holds(&mut self) {
        for ep in self.lock_holds.rule.drain_all() {
            self.report_lock_hold(ep);
        }
    }

    fn report_lock_hold(&mut self, ep: HoldEpisode) {
        let activity = match &ep.holder {
            Some(h) => self.holder_activity(ep.pid, h.tid, ep.first_start_ns, ep.release_ns),
            None => HolderActivity::unknown(),
        };
        let detail = alert::LockHold {
            uaddr: ep.uaddr,
            lock_kind: lock_kind::name(ep.lock_kind).to_string(),
            owner_recorded: ep.owner_recorded,
            hold_ns: ep.hold_ns(),
            holder_tid: ep.holder.as_ref().map(|h| h.tid),
            holder_comm: ep.holder.as_ref().and_then(|h| h.comm.clone()),
            holder_known_from: ep
                .holder
                .as_ref()
                .map(|h| h.known_from.as_str().to_string()),
            holder_state: state_name(activity.state).to_string(),
            holder_syscall: activity.syscall.clone(),
            holder_stack: names(&activity.stack),
            holder_samples: activity.samples,
            release_tid: ep.release.as_ref().map(|r| r.tid),
            release_comm: ep.release.as_ref().and_then(|r| r.comm.clone()),
            release_stack: ep
                .release
                .as_ref()
                .map(|r| names(&r.stack))
                .unwrap_or_default(),
            waiters: ep.waiters,
            longest_wait_ns: ep.longest_wait_ns,
            total_wait_ns: ep.total_wait_ns,
            waiter_stacks: ep
                .waiter_stacks
                .iter()
                .map(|s| alert::WaiterStack {
                    stack: names(&s.stack),
                    count: s.count,
                    longest_ns: s.longest_ns,
                    comm: s.comm.clone(),
                })
                .collect(),
            waiter_stacks_omitted: ep.waiter_stacks_omitted,
        };
        let longest = ep.longest;
        let mut a = self.alert_with_comm(
            wall_time(ep.release_ns),
            ep.pid,
            longest.tid,
            longest.comm.unwrap_or_default(),
            longest.stack,
            AlertDetail::LockHold(detail),
        );
        a.keep_frames("holder_stack", activity.stack);
        if let Some(r) = ep.release {
            a.keep_frames("release_stack", r.stack);
        }
        for (i, s) in ep.waiter_stacks.into_iter().enumerate() {
            a.keep_frames(format!("waiter_stacks.{i}.stack"), s.stack);
        }
        self.lock_holds.episodes += 1;
        self.lock_holds.waiters += ep.waiters;
        if let Some(m) = &self.opts.metrics {
            m.lock_hold(ep.pid, &self.process_name(ep.pid), ep.waiters);
        }
        self.emit(a);
    }
}

fn state_name(s: HolderState) -> &'static str {
    match s {
        HolderState::Running => "running",
        HolderState::Blocked => "blocked",
        HolderState::Exited => "exited",
        HolderState::Unknown => "unknown",
    }
}
