//! Feeding the live top-style view: what the session knows, as a [`LiveSnapshot`] per second.

use std::collections::HashMap;

use super::Session;
use crate::{
    output::alert::{Alert, AlertDetail},
    output::long_waits::LongWaits,
    output::summary::IdleTime,
    terminal::liveview::{Death, LiveCounters, LiveSnapshot, ProcessRow, StalledWaiter, Waiter},
};
use crate::{proc::scope::Scope, util::clock::monotonic_ns};

/// Deaths kept for the view.
const MAX_DEATHS: usize = 50;
/// Stacks the view may show.
const TOP_STACKS: usize = 50;

/// What the view needs beyond the session's own state.
#[derive(Default)]
pub(super) struct LiveState {
    deaths: Vec<Death>,
    /// Goroutines reported stalled: (pid, goid) -> (when it began, monotonic ns; the waiter).
    goroutine_stalls: HashMap<(u32, u64), (u64, StalledWaiter)>,
    /// Threads stalled now (refreshed by every scan).
    pub thread_stalls: Vec<StalledWaiter>,
    /// Stacks of the thread stalls reported, by (tid, start of the wait).
    pub stall_frames: HashMap<(u32, u64), Vec<String>>,
    /// Blocked ns per process since the last frame, and alerts per process.
    blocked_since_frame: HashMap<u32, u64>,
    alerts_per_process: HashMap<u32, u64>,
    last_frame_ns: u64,
    /// Waits over the threshold that ended, by what was made of them.
    pub long_waits: LongWaits,
}

impl LiveState {
    /// Blocked (not idle) time of `pid`: thread lock waits, goroutine sync waits.
    pub fn blocked(&mut self, pid: u32, ns: u64) {
        if ns > 0 {
            let total = self.blocked_since_frame.entry(pid).or_default();
            *total = total.saturating_add(ns);
        }
    }

    pub fn alert(&mut self, a: &Alert) {
        *self.alerts_per_process.entry(a.pid).or_default() += 1;
        if let Some(d) = Death::from_alert(a) {
            if self.deaths.len() == MAX_DEATHS {
                self.deaths.remove(0);
            }
            self.deaths.push(d);
        }
        if let AlertDetail::GoroutineStall(s) = &a.detail {
            let began = monotonic_ns().saturating_sub(s.blocked_ns);
            self.goroutine_stalls.insert(
                (a.pid, s.goid),
                (
                    began,
                    StalledWaiter {
                        pid: a.pid,
                        comm: a.comm.clone(),
                        waiter: Waiter::Goroutine { goid: s.goid },
                        blocked_ns: s.blocked_ns,
                        on: s.wait_reason.clone(),
                        frames: a.stack.clone(),
                    },
                ),
            );
        }
    }

    pub fn process_gone(&mut self, pid: u32) {
        self.goroutine_stalls.retain(|(p, _), _| *p != pid);
        self.alerts_per_process.remove(&pid);
        self.blocked_since_frame.remove(&pid);
    }
}

impl Session {
    /// Idle time in the profile, for the summary.
    pub(super) fn idle_time(&self) -> IdleTime {
        let (weight_ns, count) = self.folded.totals(true);
        IdleTime {
            weight_ns,
            count,
            top: self.folded.top_idle(3),
        }
    }

    /// Redraws the live view, when it is on.
    pub(super) fn draw_live(&mut self) {
        if self.live.is_none() {
            return;
        }
        let snapshot = self.live_snapshot();
        if let Some(term) = self.live.as_mut() {
            if let Err(e) = term.draw(&snapshot) {
                log::debug!("live view: {e}");
            }
        }
    }

    fn live_snapshot(&mut self) -> LiveSnapshot {
        let now = monotonic_ns();
        let c = self.probes.counters();
        let counters = LiveCounters {
            waits_seen: c.waits_started,
            long_waits: self.live_state.long_waits,
            report_idle: self.opts.report_idle,
            events_dropped: c.events_dropped,
            aggregates_dropped: c.agg_dropped,
            in_flight_dropped: c.inflight_dropped,
            alerts_by_kind: self
                .alert_counts
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            lock_holds: self.lock_holds.episodes,
            lock_hold_waiters: self.lock_holds.waiters,
        };
        // Goroutine stalls end when the goroutine is no longer parked.
        let go_pids: Vec<u32> = self
            .live_state
            .goroutine_stalls
            .keys()
            .map(|(p, _)| *p)
            .collect();
        for pid in go_pids {
            let parked: Vec<u64> = self
                .probes
                .go_parked(pid)
                .map(|v| v.into_iter().map(|(goid, _)| goid).collect())
                .unwrap_or_default();
            self.live_state
                .goroutine_stalls
                .retain(|(p, goid), _| *p != pid || parked.contains(goid));
        }
        let mut stalled = self.live_state.thread_stalls.clone();
        stalled.extend(
            self.live_state
                .goroutine_stalls
                .values()
                .map(|(began, w)| StalledWaiter {
                    blocked_ns: now.saturating_sub(*began),
                    ..w.clone()
                }),
        );
        let elapsed = now.saturating_sub(self.live_state.last_frame_ns).max(1);
        self.live_state.last_frame_ns = now;
        let blocked = std::mem::take(&mut self.live_state.blocked_since_frame);
        let processes = if matches!(self.scope, Scope::Host(_)) {
            self.watched
                .iter()
                .map(|(&pid, t)| ProcessRow {
                    pid,
                    comm: t.name.clone(),
                    go: t.is_go,
                    blocked_ns_per_s: blocked.get(&pid).map_or(0, |ns| {
                        (*ns as u128 * 1_000_000_000 / elapsed as u128) as u64
                    }),
                    alerts: self
                        .live_state
                        .alerts_per_process
                        .get(&pid)
                        .copied()
                        .unwrap_or(0),
                })
                .collect()
        } else {
            Vec::new()
        };
        LiveSnapshot {
            mode: match (&self.scope, self.opts.record.is_some()) {
                (Scope::Host(_), _) => "sidecar".into(),
                (_, true) => "record".into(),
                _ => "watch".into(),
            },
            target: self.scope_label(),
            uptime: self.started.elapsed(),
            counters,
            top_stacks: self.folded.top(TOP_STACKS),
            idle_ns: self.folded.totals(true).0,
            stalled,
            recent_deaths: self.live_state.deaths.clone(),
            processes,
            recent_alerts: Vec::new(),
        }
    }
}
