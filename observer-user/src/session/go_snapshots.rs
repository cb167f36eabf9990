//! Goroutines of Go processes whose per-park probes are off, followed from memory snapshots:
//! stalls, leaks and long sync waits keep being found at no trap cost to the target. The
//! snapshot period follows its cost, so observer spends at most `SNAPSHOT_CPU_SHARE` of a core
//! on a process whatever its goroutine count.

use std::time::{Duration, Instant};

use super::Session;
use crate::detect::goparked::{
    snapshot_period_ns, MAX_PERIOD_NS, MIN_PERIOD_NS, SNAPSHOT_CPU_SHARE,
};
use crate::detect::gowatch::SnapshotLimits;
use crate::util::{clock::monotonic_ns, duration::duration_ns};

/// When the next snapshot of a process is due, and whether snapshots gave up on it.
#[derive(Debug, Default)]
pub(super) struct SnapshotSchedule {
    due: Option<Instant>,
    failed: bool,
    /// Cost of the last snapshot and the goroutines it read (live view, summary).
    pub last_cost: Duration,
    pub last_goroutines: usize,
}

impl Session {
    /// Snapshots the Go processes whose per-park probes are off, where one is due.
    pub(super) fn snapshot_goroutines(&mut self) {
        let now = Instant::now();
        let limits = SnapshotLimits {
            threshold_ns: duration_ns(self.opts.threshold),
            stall_after_ns: duration_ns(self.opts.stall_after),
        };
        let due: Vec<u32> = self
            .watched
            .iter()
            .filter(|(_, t)| {
                t.go.is_some() && t.follows_goroutines_from_memory() && !t.go_snapshots.failed
            })
            .filter(|(_, t)| t.go_snapshots.due.is_none_or(|d| d <= now))
            .map(|(&pid, _)| pid)
            .collect();
        for pid in due {
            let Some(t) = self.watched.get_mut(&pid) else {
                continue;
            };
            let Some(go) = t.go.as_mut() else {
                continue;
            };
            let started = Instant::now();
            let snapshot = match go.read_parked() {
                Ok(s) => s,
                Err(e) => {
                    t.go_snapshots.failed = true;
                    crate::say!(
                        "observer: pid {pid}: its goroutines cannot be read from memory ({e}): \
                         with the park probes off, goroutine stalls, leaks and waits are no \
                         longer seen for it"
                    );
                    continue;
                }
            };
            let cost = started.elapsed();
            let alerts =
                go.scan_snapshot(monotonic_ns(), &snapshot.parked, limits, &mut self.stacks);
            let period = snapshot_period_ns(
                duration_ns(cost),
                SNAPSHOT_CPU_SHARE,
                MIN_PERIOD_NS,
                MAX_PERIOD_NS,
            );
            t.go_snapshots.due = Some(now + Duration::from_nanos(period));
            t.go_snapshots.last_cost = cost;
            t.go_snapshots.last_goroutines = snapshot.goroutines;
            log::debug!(
                "pid {pid}: {} goroutines ({} parked) read in {cost:?}; next in {:?}",
                snapshot.goroutines,
                snapshot.parked.len(),
                Duration::from_nanos(period)
            );
            for a in alerts {
                self.emit_go(pid, a);
            }
        }
    }
}

impl Session {
    /// The summary's word on Go processes whose park probes were limited: how much of the
    /// time they were on, and what the snapshots read.
    pub(super) fn go_sampling_note(&self) -> String {
        let mut out = String::new();
        let mut pids: Vec<&u32> = self.watched.keys().collect();
        pids.sort();
        for pid in pids {
            let t = &self.watched[pid];
            if t.go.is_none() || !t.follows_goroutines_from_memory() {
                continue;
            }
            let probes = match (t.go_parks_off, t.go_duty.as_ref()) {
                (true, _) => "park probes off (--go-probe-budget 0)".to_string(),
                (false, Some(d)) => match d.lifetime_on_share() {
                    Some(share) if t.go_profile_scaled => format!(
                        "park probes on {:.1}% of the time under --go-probe-budget, goroutine \
                         profile scaled up by the time they were off",
                        share * 100.0
                    ),
                    _ => "park probes duty-cycled under --go-probe-budget".to_string(),
                },
                (false, None) => continue,
            };
            out += &format!(
                "goroutines of pid {pid}: {probes}; stalls, leaks and long waits from memory \
                 snapshots ({} goroutines, last read in {:.1} ms)\n",
                t.go_snapshots.last_goroutines,
                t.go_snapshots.last_cost.as_secs_f64() * 1e3
            );
        }
        out
    }
}
