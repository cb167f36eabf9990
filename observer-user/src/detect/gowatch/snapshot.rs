//! The goroutine rules fed from memory snapshots (per-park probes off at times).

use std::collections::HashSet;

use super::{
    classify_reason, episode_alert, GoAlert, GoWatch, ReasonClass, SnapshotLimits, MAX_WAIT_STACKS,
};
use crate::detect::gohold::GoWaitEnded;
use crate::golang::goroutines::ParkedG;
use crate::stacks::resolver::StackResolver;

impl GoWatch {
    /// The same rules from a snapshot of the process's memory instead of the probes (their
    /// per-park half is off): stalls, leaks, and sync waits over `threshold_ns` that ended
    /// since the last snapshot (`goroutine_wait`, no waker: nothing saw the wake-up).
    pub fn scan_snapshot(
        &mut self,
        now_ns: u64,
        snapshot: &[ParkedG],
        limits: SnapshotLimits,
        stacks: &mut StackResolver,
    ) -> Vec<GoAlert> {
        let mut alerts = Vec::new();
        self.likely_new_snapshot();
        for ended in self.tracker.update(now_ns, snapshot) {
            let (stack, labels) = self
                .wait_stacks
                .remove(&(ended.goid, ended.first_seen_ns))
                .unwrap_or_default();
            let reason = self.reason(ended.reason);
            let seen_by_probes = self
                .probe_wait_ends
                .get(&ended.goid)
                .is_some_and(|&end| end >= ended.first_seen_ns);
            if ended.at_least_ns < limits.threshold_ns
                || classify_reason(&reason) != ReasonClass::Sync
                || seen_by_probes
            {
                continue;
            }
            let created_by = self.created_by(stacks, ended.gopc);
            let closed = self.holds.add(GoWaitEnded {
                lock: 0,
                wait_reason: reason,
                goid: ended.goid,
                tid: 0,
                stack,
                created_by,
                waker: None,
                start_ns: ended.first_seen_ns,
                duration_ns: ended.at_least_ns,
                likely_holder: self
                    .likely
                    .by_wait
                    .remove(&(ended.goid, ended.first_seen_ns)),
                labels,
            });
            alerts.extend(closed.into_iter().map(episode_alert));
        }
        // The stack of a long sync wait is read while it is still parked: once it ends, the
        // goroutine's stack has moved on.
        let parked = self.tracker.parked();
        for (goid, p) in &parked {
            let long = now_ns.saturating_sub(p.start_ns) >= limits.threshold_ns;
            let key = (*goid, p.start_ns);
            if long
                && self.wait_stacks.len() < MAX_WAIT_STACKS
                && !self.wait_stacks.contains_key(&key)
                && classify_reason(&self.reason(p.reason)) == ReasonClass::Sync
            {
                if let Some(stack) = self.parked_stack(*goid, p, stacks) {
                    let labels = self.labels_of(p.g, *goid, None);
                    self.wait_stacks.insert(key, (stack, labels));
                    self.search_likely_holder(key, p, &parked, stacks);
                }
            }
        }
        let live: HashSet<(u64, u64)> = parked.iter().map(|(g, p)| (*g, p.start_ns)).collect();
        self.wait_stacks.retain(|k, _| live.contains(k));
        self.likely.by_wait.retain(|k, _| live.contains(k));
        alerts.extend(self.scan_parked(now_ns, limits.stall_after_ns, &parked, stacks));
        alerts
    }
}
