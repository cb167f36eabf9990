//! Stalls and leaks among the goroutines parked now (the probes' table, or a snapshot's).

use std::collections::{HashMap, HashSet};

use observer_common::GoParked;

use super::{classify_reason, GoAlert, GoFinding, GoWatch, ReasonClass, LEAK_SAMPLE_TRIES};
use crate::stacks::resolver::StackResolver;

impl GoWatch {
    /// Stalls and leaks among the goroutines parked now.
    pub(super) fn scan_parked(
        &mut self,
        now_ns: u64,
        stall_after_ns: u64,
        parked: &[(u64, GoParked)],
        stacks: &mut StackResolver,
    ) -> Vec<GoAlert> {
        let mut alerts = Vec::new();
        let mut live = HashSet::new();
        let mut sites: HashMap<(u64, String), u64> = HashMap::new();
        self.likely_new_snapshot();
        for (goid, p) in parked {
            let reason = self.reason(p.reason);
            match classify_reason(&reason) {
                ReasonClass::Sync => {
                    live.insert((*goid, p.start_ns));
                    let age = now_ns.saturating_sub(p.start_ns);
                    if age < stall_after_ns || self.stalls_reported.contains(&(*goid, p.start_ns)) {
                        continue;
                    }
                    // Woken since the map was read: its wait ends as an event instead.
                    let Some(stack) = self.parked_stack(*goid, p, stacks) else {
                        continue;
                    };
                    self.stalls_reported.insert((*goid, p.start_ns));
                    let key = (*goid, p.start_ns);
                    if !self.likely.by_wait.contains_key(&key) {
                        self.search_likely_holder(key, p, parked, stacks);
                    }
                    let likely = self.likely.by_wait.get(&key).cloned();
                    let more_frames = likely
                        .as_ref()
                        .map(|h| vec![("likely_holder_stack", h.stack.clone())])
                        .unwrap_or_default();
                    let labels = self.labels_of(p.g, *goid, None);
                    alerts.push(GoAlert {
                        tid: 0,
                        time_ns: None,
                        more_frames,
                        stack,
                        finding: GoFinding::Stall {
                            goid: *goid,
                            wait_reason: reason,
                            blocked_ns: age,
                            created_by: self.created_by(stacks, p.gopc),
                            likely_holder: likely
                                .map(|h| (h.goid, crate::stacks::frame::names(&h.stack), h.why)),
                            labels,
                        },
                    });
                }
                ReasonClass::Channel => *sites.entry((p.gopc, reason)).or_default() += 1,
                ReasonClass::Idle => {}
            }
        }
        self.stalls_reported.retain(|k| live.contains(k));
        for finding in self.leaks.sample(now_ns, sites) {
            let (sample, labels) = parked
                .iter()
                .filter(|(_, p)| p.gopc == finding.gopc)
                .take(LEAK_SAMPLE_TRIES)
                .find_map(|(goid, p)| {
                    let stack = self.parked_stack(*goid, p, stacks)?;
                    Some((stack, self.labels_of(p.g, *goid, None)))
                })
                .unwrap_or_default();
            alerts.push(GoAlert {
                tid: 0,
                time_ns: None,
                more_frames: Vec::new(),
                stack: sample,
                finding: GoFinding::Leak {
                    created_by: self.created_by(stacks, finding.gopc),
                    wait_reason: finding.wait_reason,
                    count: finding.count,
                    growth: finding.growth,
                    window_ns: finding.window_ns,
                    labels,
                },
            });
        }
        alerts
    }
}
