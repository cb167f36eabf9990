//! Goroutine waits followed across snapshots of the process's memory, for Go processes whose
//! per-park probes are off (a park rate over `--go-max-parks`): the same parked-goroutine
//! table the probes keep, rebuilt from what successive snapshots saw, at no trap cost.
//!
//! A goroutine parked in two snapshots with the same `g`, wait reason and saved stack pointer
//! is taken to be in the same wait. Its start is the first snapshot that saw it, so blocked
//! times are lower bounds, short by up to one snapshot period; a goroutine that woke and
//! parked again at the same place between two snapshots looks like one wait.

use std::collections::HashMap;

use observer_common::GoParked;

use crate::golang::goroutines::ParkedG;

/// A wait one snapshot saw and the next did not: it ended in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndedWait {
    pub goid: u64,
    pub reason: u32,
    pub gopc: u64,
    /// When the first snapshot that saw it was taken (its `start_ns` while parked).
    pub first_seen_ns: u64,
    /// Lower bound of its length: from the first snapshot that saw it to the last.
    pub at_least_ns: u64,
}

#[derive(Debug, Clone, Copy)]
struct Tracked {
    g: ParkedG,
    first_seen_ns: u64,
    last_seen_ns: u64,
}

impl Tracked {
    fn same_wait(&self, g: &ParkedG) -> bool {
        self.g.g_addr == g.g_addr && self.g.reason == g.reason && self.g.sched_sp == g.sched_sp
    }
}

/// The goroutines parked at the last snapshot, with when each wait was first seen.
#[derive(Debug, Default)]
pub struct ParkedTracker {
    waits: HashMap<u64, Tracked>,
}

impl ParkedTracker {
    /// Takes in one snapshot taken at `now_ns` (its parked goroutines) and returns the waits
    /// that ended since the previous one. Memory is that of one snapshot.
    pub fn update(&mut self, now_ns: u64, parked: &[ParkedG]) -> Vec<EndedWait> {
        let mut next: HashMap<u64, Tracked> = HashMap::with_capacity(parked.len());
        let mut ended = Vec::new();
        for g in parked {
            let tracked = match self.waits.remove(&g.goid) {
                Some(t) if t.same_wait(g) => Tracked {
                    last_seen_ns: now_ns,
                    ..t
                },
                previous => {
                    ended.extend(previous.map(ended_wait));
                    Tracked {
                        g: *g,
                        first_seen_ns: now_ns,
                        last_seen_ns: now_ns,
                    }
                }
            };
            next.insert(g.goid, tracked);
        }
        ended.extend(self.waits.drain().map(|(_, t)| ended_wait(t)));
        self.waits = next;
        ended
    }

    /// The goroutines parked at the last snapshot, as the probes' table has them (goid, park
    /// record with `start_ns` = first seen).
    pub fn parked(&self) -> Vec<(u64, GoParked)> {
        self.waits
            .iter()
            .map(|(&goid, t)| {
                (
                    goid,
                    GoParked {
                        start_ns: t.first_seen_ns,
                        gopc: t.g.gopc,
                        g: t.g.g_addr,
                        reason: t.g.reason,
                        _pad: 0,
                        lock: 0,
                    },
                )
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.waits.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waits.is_empty()
    }
}

fn ended_wait(t: Tracked) -> EndedWait {
    EndedWait {
        goid: t.g.goid,
        reason: t.g.reason,
        gopc: t.g.gopc,
        first_seen_ns: t.first_seen_ns,
        at_least_ns: t.last_seen_ns - t.first_seen_ns,
    }
}

/// Share of one core observer may spend reading one process's goroutines.
pub const SNAPSHOT_CPU_SHARE: f64 = 0.01;
/// Snapshot period bounds: no faster than the stall scan, no slower than this.
pub const MIN_PERIOD_NS: u64 = 200_000_000;
pub const MAX_PERIOD_NS: u64 = 30_000_000_000;

/// The next snapshot's delay: the last one's cost over the CPU share observer may spend on
/// snapshots, within `[min, max]`. 10,000 goroutines read in 5 ms at a 1% share: every 500 ms.
pub fn snapshot_period_ns(cost_ns: u64, cpu_share: f64, min_ns: u64, max_ns: u64) -> u64 {
    let wanted = if cpu_share > 0.0 {
        (cost_ns as f64 / cpu_share).min(u64::MAX as f64) as u64
    } else {
        max_ns
    };
    wanted.clamp(min_ns, max_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(goid: u64, reason: u32, sp: u64) -> ParkedG {
        ParkedG {
            goid,
            g_addr: 0xc000_0000 + goid * 0x100,
            gopc: 0x4010,
            reason,
            sched_sp: sp,
        }
    }

    #[test]
    fn a_wait_seen_in_successive_snapshots_keeps_its_first_sighting() {
        let mut t = ParkedTracker::default();
        assert!(t.update(1_000, &[g(7, 3, 0x100)]).is_empty());
        assert!(t.update(2_000, &[g(7, 3, 0x100)]).is_empty());
        assert!(t.update(3_000, &[g(7, 3, 0x100)]).is_empty());
        let parked = t.parked();
        assert_eq!(parked.len(), 1);
        assert_eq!(parked[0].0, 7);
        assert_eq!(parked[0].1.start_ns, 1_000);
        assert_eq!(parked[0].1.reason, 3);
    }

    #[test]
    fn a_goroutine_gone_from_the_snapshot_ended_its_wait_with_a_lower_bound() {
        let mut t = ParkedTracker::default();
        t.update(1_000, &[g(7, 3, 0x100), g(8, 3, 0x200)]);
        t.update(2_500, &[g(7, 3, 0x100), g(8, 3, 0x200)]);
        let ended = t.update(4_000, &[g(8, 3, 0x200)]);
        assert_eq!(
            ended,
            vec![EndedWait {
                goid: 7,
                reason: 3,
                gopc: 0x4010,
                first_seen_ns: 1_000,
                at_least_ns: 1_500,
            }]
        );
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn parking_again_elsewhere_or_for_another_reason_is_a_new_wait() {
        let mut t = ParkedTracker::default();
        t.update(1_000, &[g(7, 3, 0x100)]);
        let ended = t.update(2_000, &[g(7, 3, 0x180)]);
        assert_eq!(ended.len(), 1, "moved stack pointer: the old wait ended");
        assert_eq!(t.parked()[0].1.start_ns, 2_000);
        let ended = t.update(3_000, &[g(7, 4, 0x180)]);
        assert_eq!(ended.len(), 1, "another reason: the old wait ended");
        assert_eq!(t.parked()[0].1.start_ns, 3_000);
    }

    #[test]
    fn a_reused_g_for_another_goroutine_is_not_the_same_wait() {
        let mut t = ParkedTracker::default();
        t.update(1_000, &[g(7, 3, 0x100)]);
        let mut other = g(7, 3, 0x100);
        other.g_addr = 0xdead_0000;
        let ended = t.update(2_000, &[other]);
        assert_eq!(ended.len(), 1);
    }

    #[test]
    fn memory_is_one_snapshot() {
        let mut t = ParkedTracker::default();
        let many: Vec<ParkedG> = (0..1000).map(|i| g(i, 3, 0x100)).collect();
        t.update(1, &many);
        assert_eq!(t.len(), 1000);
        let ended = t.update(2, &[]);
        assert_eq!(ended.len(), 1000);
        assert!(t.is_empty());
    }

    #[test]
    fn the_period_follows_the_cost_within_bounds() {
        let ms = 1_000_000;
        assert_eq!(
            snapshot_period_ns(5 * ms, 0.01, 200 * ms, 30_000 * ms),
            500 * ms
        );
        assert_eq!(
            snapshot_period_ns(ms / 10, 0.01, 200 * ms, 30_000 * ms),
            200 * ms
        );
        assert_eq!(
            snapshot_period_ns(900 * ms, 0.01, 200 * ms, 30_000 * ms),
            30_000 * ms
        );
        assert_eq!(
            snapshot_period_ns(ms, 0.0, 200 * ms, 30_000 * ms),
            30_000 * ms
        );
    }
}
