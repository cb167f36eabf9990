//! Deadlock detection on the wait-for graph of blocked lock waits.
//!
//! Each blocked thread waits on one lock at a time, and each lock has at most one owner, so every
//! thread has at most one outgoing edge `tid -> owner_tid`: the graph is a functional graph, whose
//! cycles are disjoint and found in linear time by following edges. A cycle is a deadlock: every
//! member waits for a lock held by the next. A self-loop (a thread waiting on a lock it owns) is a
//! one-member cycle: relocking a non-recursive mutex, a real bug that never resolves.
//!
//! Owners are read from the lock words at scan time, so a scan is a snapshot; [`DeadlockReporter`]
//! alerts each deadlock once while it persists and can require it in several consecutive scans
//! before alerting, to filter owner reads that raced with a release.

use std::collections::{BTreeMap, BTreeSet};

/// A thread blocked on the lock at `uaddr`, with the owner read from the lock (`None` or `Some(0)`:
/// no owner known).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Waiter {
    pub tid: u32,
    pub uaddr: u64,
    pub owner_tid: Option<u32>,
}

/// One member of a cycle: `tid` waits on `uaddr`, held by `owner_tid` (the next member).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CycleMember {
    pub tid: u32,
    pub uaddr: u64,
    pub owner_tid: u32,
}

/// A deadlock: members in wait order, rotated so that the smallest tid comes first.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cycle {
    pub members: Vec<CycleMember>,
}

impl Cycle {
    /// Identity of the deadlock: which threads wait on which locks, independent of rotation.
    fn key(&self) -> Vec<(u32, u64)> {
        let set: BTreeSet<(u32, u64)> = self.members.iter().map(|m| (m.tid, m.uaddr)).collect();
        set.into_iter().collect()
    }
}

/// Every cycle among `waiters`, each once, ordered by smallest member tid.
///
/// Threads on chains that lead into a cycle are not members. If a tid appears more than once
/// (inconsistent input), the entry with the smallest `uaddr` is used.
pub fn find_cycles(waiters: &[Waiter]) -> Vec<Cycle> {
    let mut edges: BTreeMap<u32, (u64, u32)> = BTreeMap::new();
    let mut sorted = waiters.to_vec();
    sorted.sort();
    for w in sorted {
        if let Some(owner) = w.owner_tid.filter(|&o| o != 0) {
            edges.entry(w.tid).or_insert((w.uaddr, owner));
        }
    }

    #[derive(Clone, Copy, PartialEq)]
    enum State {
        OnPath(usize),
        Done,
    }
    let mut state: BTreeMap<u32, State> = BTreeMap::new();
    let mut cycles = Vec::new();
    for &start in edges.keys() {
        if state.contains_key(&start) {
            continue;
        }
        let mut path: Vec<CycleMember> = Vec::new();
        let mut tid = start;
        while let Some(&(uaddr, owner)) = edges.get(&tid) {
            state.insert(tid, State::OnPath(path.len()));
            path.push(CycleMember {
                tid,
                uaddr,
                owner_tid: owner,
            });
            match state.get(&owner) {
                Some(&State::OnPath(pos)) => {
                    cycles.push(canonical(path[pos..].to_vec()));
                    break;
                }
                Some(&State::Done) => break,
                None => tid = owner,
            }
        }
        for m in &path {
            state.insert(m.tid, State::Done);
        }
    }
    cycles.sort();
    cycles
}

fn canonical(mut members: Vec<CycleMember>) -> Cycle {
    let min_pos = members
        .iter()
        .enumerate()
        .min_by_key(|(_, m)| m.tid)
        .map_or(0, |(i, _)| i);
    members.rotate_left(min_pos);
    Cycle { members }
}

/// Turns repeated scans into one alert per deadlock.
///
/// A cycle is reported once it has been seen in `confirmations` consecutive scans, and not again
/// while it persists; once a scan no longer contains it, it is forgotten (so if it forms again, it
/// is reported again).
#[derive(Debug, Clone)]
pub struct DeadlockReporter {
    confirmations: u32,
    /// Consecutive scans each current cycle has been seen in.
    seen: BTreeMap<Vec<(u32, u64)>, u32>,
    reported: BTreeSet<Vec<(u32, u64)>>,
}

impl Default for DeadlockReporter {
    fn default() -> Self {
        Self::new()
    }
}

impl DeadlockReporter {
    /// Reports a cycle on the first scan that shows it.
    pub fn new() -> Self {
        Self::with_confirmations(1)
    }

    /// Reports a cycle only after `scans` consecutive scans show it (0 is treated as 1).
    pub fn with_confirmations(scans: u32) -> Self {
        DeadlockReporter {
            confirmations: scans.max(1),
            seen: BTreeMap::new(),
            reported: BTreeSet::new(),
        }
    }

    /// Feeds one scan's cycles; returns the ones to alert now.
    pub fn update(&mut self, cycles: &[Cycle]) -> Vec<Cycle> {
        let mut seen = BTreeMap::new();
        let mut fresh = Vec::new();
        for cycle in cycles {
            let key = cycle.key();
            let count = self.seen.get(&key).copied().unwrap_or(0).saturating_add(1);
            if count >= self.confirmations && !self.reported.contains(&key) {
                self.reported.insert(key.clone());
                fresh.push(cycle.clone());
            }
            seen.insert(key, count);
        }
        self.reported.retain(|k| seen.contains_key(k));
        self.seen = seen;
        fresh
    }

    /// [`find_cycles`] then [`update`](Self::update).
    pub fn scan(&mut self, waiters: &[Waiter]) -> Vec<Cycle> {
        self.update(&find_cycles(waiters))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(tid: u32, uaddr: u64, owner: u32) -> Waiter {
        Waiter {
            tid,
            uaddr,
            owner_tid: Some(owner),
        }
    }

    fn m(tid: u32, uaddr: u64, owner: u32) -> CycleMember {
        CycleMember {
            tid,
            uaddr,
            owner_tid: owner,
        }
    }

    fn tids(c: &Cycle) -> Vec<u32> {
        c.members.iter().map(|m| m.tid).collect()
    }

    #[test]
    fn two_cycle() {
        let cycles = find_cycles(&[w(20, 0xa, 10), w(10, 0xb, 20)]);
        assert_eq!(
            cycles,
            vec![Cycle {
                members: vec![m(10, 0xb, 20), m(20, 0xa, 10)]
            }]
        );
    }

    #[test]
    fn three_cycle_rotated_to_smallest_tid() {
        let cycles = find_cycles(&[w(30, 0xc, 5), w(5, 0xa, 17), w(17, 0xb, 30)]);
        assert_eq!(cycles.len(), 1);
        assert_eq!(
            cycles[0].members,
            vec![m(5, 0xa, 17), m(17, 0xb, 30), m(30, 0xc, 5)]
        );
    }

    #[test]
    fn chain_without_cycle() {
        // 1 -> 2 -> 3, and 3 waits on an unowned lock; 4 waits on a lock whose owner is not blocked.
        let waiters = [
            w(1, 0xa, 2),
            w(2, 0xb, 3),
            Waiter {
                tid: 3,
                uaddr: 0xc,
                owner_tid: None,
            },
            w(4, 0xd, 99),
            w(5, 0xe, 0),
        ];
        assert!(find_cycles(&waiters).is_empty());
    }

    #[test]
    fn self_loop_is_a_deadlock() {
        let cycles = find_cycles(&[w(7, 0xa, 7), w(8, 0xa, 7)]);
        assert_eq!(
            cycles,
            vec![Cycle {
                members: vec![m(7, 0xa, 7)]
            }]
        );
    }

    #[test]
    fn two_separate_cycles() {
        let cycles = find_cycles(&[w(40, 0xd, 30), w(2, 0xb, 1), w(30, 0xc, 40), w(1, 0xa, 2)]);
        assert_eq!(
            cycles.iter().map(tids).collect::<Vec<_>>(),
            vec![vec![1, 2], vec![30, 40]]
        );
    }

    #[test]
    fn chain_into_cycle_reports_only_members() {
        // 1 -> 2 -> 3 -> 4 -> 3: threads 1 and 2 are victims, not members.
        let cycles = find_cycles(&[w(1, 0xa, 2), w(2, 0xb, 3), w(3, 0xc, 4), w(4, 0xd, 3)]);
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].members, vec![m(3, 0xc, 4), m(4, 0xd, 3)]);
    }

    #[test]
    fn order_of_input_does_not_matter() {
        let a = [w(9, 1, 3), w(3, 2, 6), w(6, 3, 9), w(1, 4, 9)];
        let mut b = a;
        b.reverse();
        assert_eq!(find_cycles(&a), find_cycles(&b));
    }

    #[test]
    fn reporter_alerts_once_and_forgets_when_gone() {
        let deadlock = [w(1, 0xa, 2), w(2, 0xb, 1)];
        let mut r = DeadlockReporter::new();
        assert_eq!(r.scan(&deadlock).len(), 1);
        assert!(r.scan(&deadlock).is_empty());
        assert!(r.scan(&deadlock).is_empty());
        // Another cycle appears alongside: only it is new.
        let both = [deadlock[0], deadlock[1], w(5, 0xc, 5)];
        assert_eq!(
            r.scan(&both).iter().map(tids).collect::<Vec<_>>(),
            vec![vec![5]]
        );
        // Gone, then formed again: reported again.
        assert!(r.scan(&[]).is_empty());
        assert_eq!(r.scan(&deadlock).len(), 1);
    }

    #[test]
    fn reporter_with_confirmations_needs_consecutive_scans() {
        let deadlock = [w(1, 0xa, 2), w(2, 0xb, 1)];
        let mut r = DeadlockReporter::with_confirmations(2);
        assert!(r.scan(&deadlock).is_empty());
        assert!(r.scan(&[]).is_empty()); // transient: the streak restarts
        assert!(r.scan(&deadlock).is_empty());
        assert_eq!(r.scan(&deadlock).len(), 1);
        assert!(r.scan(&deadlock).is_empty());
    }
}
