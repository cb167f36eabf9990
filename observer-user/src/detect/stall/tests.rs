//! The stall rule fed with synthetic blocked threads.

use super::*;
use crate::detect::waitgraph::DeadlockReporter;

/// The processes as a test lays them out.
#[derive(Default)]
struct Facts {
    go: HashSet<u32>,
    /// Lock owner now of each waiting tid (missing: unreadable).
    owners: HashMap<u32, u32>,
    alive: HashSet<u32>,
}

impl BlockedFacts for Facts {
    fn is_go(&self, tgid: u32) -> bool {
        self.go.contains(&tgid)
    }
    fn current_owner(&mut self, tid: u32, _wait: &InFlight) -> Option<u32> {
        self.owners.get(&tid).copied()
    }
    fn thread_alive(&self, _tgid: u32, tid: u32) -> bool {
        self.alive.contains(&tid)
    }
}

const PID: u32 = 100;
const SECOND: u64 = 1_000_000_000;
const LIMITS: StallLimits = StallLimits {
    stall_ns: 3 * SECOND,
    cycle_ns: SECOND,
};

fn lock_wait(tgid: u32, start_ns: u64, uaddr: u64) -> InFlight {
    InFlight {
        start_ns,
        uaddr,
        tgid,
        class: wait_class::LOCK,
        ..InFlight::default()
    }
}

/// Thread 11 waits since 0 on lock 0x1000, held by live thread 12.
fn one_waiter() -> (HashMap<u32, InFlight>, Facts) {
    let blocked = HashMap::from([(11, lock_wait(PID, 0, 0x1000))]);
    let facts = Facts {
        owners: HashMap::from([(11, 12)]),
        alive: HashSet::from([11, 12]),
        ..Facts::default()
    };
    (blocked, facts)
}

fn tids(stalls: &[Stalled]) -> Vec<(u32, u32, u64)> {
    let mut v: Vec<_> = stalls
        .iter()
        .map(|s| (s.tid, s.owner_tid.unwrap_or(0), s.blocked_ns))
        .collect();
    v.sort();
    v
}

#[test]
fn a_lock_wait_becomes_a_stall_at_the_threshold() {
    let (blocked, mut facts) = one_waiter();
    let mut rule = StallRule::default();
    let before = rule.scan(&blocked, LIMITS.stall_ns - 1, LIMITS, &mut facts);
    assert!(before.new_stalls.is_empty() && before.stalled_now.is_empty());
    assert!(before.stalled_per_process.is_empty());
    let at = rule.scan(&blocked, LIMITS.stall_ns, LIMITS, &mut facts);
    assert_eq!(tids(&at.new_stalls), vec![(11, 12, LIMITS.stall_ns)]);
    assert_eq!(at.new_stalls[0].wait.uaddr, 0x1000);
    assert_eq!(tids(&at.stalled_now), tids(&at.new_stalls));
    assert_eq!(at.stalled_per_process, HashMap::from([(PID, 1)]));
}

#[test]
fn a_stall_is_reported_once_per_episode() {
    let (mut blocked, mut facts) = one_waiter();
    let mut rule = StallRule::default();
    assert_eq!(
        rule.scan(&blocked, 4 * SECOND, LIMITS, &mut facts)
            .new_stalls
            .len(),
        1
    );
    // Still the same wait: stalled, not reported again.
    let later = rule.scan(&blocked, 9 * SECOND, LIMITS, &mut facts);
    assert!(later.new_stalls.is_empty());
    assert_eq!(tids(&later.stalled_now), vec![(11, 12, 9 * SECOND)]);
    assert_eq!(later.live_episodes, HashSet::from([(11, 0)]));
    // The lock changed hands but thread 11 still waits: the same episode.
    facts.owners.insert(11, 13);
    facts.alive.insert(13);
    let moved = rule.scan(&blocked, 10 * SECOND, LIMITS, &mut facts);
    assert!(moved.new_stalls.is_empty());
    assert_eq!(tids(&moved.stalled_now), vec![(11, 13, 10 * SECOND)]);
    // The wait ended; a new one of the same thread is a new episode.
    blocked.clear();
    assert!(rule
        .scan(&blocked, 11 * SECOND, LIMITS, &mut facts)
        .live_episodes
        .is_empty());
    assert!(rule.reported.is_empty(), "ended episodes are forgotten");
    blocked.insert(11, lock_wait(PID, 11 * SECOND, 0x1000));
    let again = rule.scan(&blocked, 15 * SECOND, LIMITS, &mut facts);
    assert_eq!(tids(&again.new_stalls), vec![(11, 13, 4 * SECOND)]);
}

#[test]
fn idle_waits_and_go_processes_never_stall() {
    let (mut blocked, mut facts) = one_waiter();
    let mut rule = StallRule::default();
    for class in [
        wait_class::FUTEX,
        wait_class::SLEEP,
        wait_class::POLL,
        wait_class::IO,
        wait_class::OTHER,
    ] {
        blocked.get_mut(&11).expect("waiter").class = class;
        let scan = rule.scan(&blocked, 100 * SECOND, LIMITS, &mut facts);
        assert!(scan.stalled_now.is_empty(), "class {class}");
        assert!(scan.deadlock_candidates.is_empty(), "class {class}");
    }
    blocked.get_mut(&11).expect("waiter").class = wait_class::LOCK;
    facts.go.insert(PID);
    let scan = rule.scan(&blocked, 100 * SECOND, LIMITS, &mut facts);
    assert!(scan.stalled_now.is_empty() && scan.deadlock_candidates.is_empty());
}

#[test]
fn the_owner_decides() {
    let (blocked, mut facts) = one_waiter();
    let mut rule = StallRule::default();
    // Owner gone: the lock word is a leftover, nobody holds the lock.
    facts.alive.remove(&12);
    let gone = rule.scan(&blocked, 100 * SECOND, LIMITS, &mut facts);
    assert!(gone.stalled_now.is_empty() && gone.live_episodes.is_empty());
    assert!(gone.deadlock_candidates.is_empty());
    // Owner unreadable (the lock is free now, or its memory is gone).
    facts.owners.clear();
    assert!(rule
        .scan(&blocked, 100 * SECOND, LIMITS, &mut facts)
        .stalled_now
        .is_empty());
    // Self-owned: a relock of a non-recursive mutex, a deadlock of one, even though the
    // oracle is not asked about (or does not know) the waiter.
    facts.owners.insert(11, 11);
    facts.alive.clear();
    let relock = rule.scan(&blocked, 100 * SECOND, LIMITS, &mut facts);
    assert_eq!(tids(&relock.new_stalls), vec![(11, 11, 100 * SECOND)]);
    assert_eq!(
        relock.deadlock_candidates,
        vec![Waiter {
            tid: 11,
            uaddr: 0x1000,
            owner_tid: Some(11)
        }]
    );
}

#[test]
fn old_enough_lock_waits_are_deadlock_candidates() {
    let (blocked, mut facts) = one_waiter();
    let mut rule = StallRule::default();
    let young = rule.scan(&blocked, LIMITS.cycle_ns - 1, LIMITS, &mut facts);
    assert!(young.deadlock_candidates.is_empty());
    assert_eq!(young.live_episodes, HashSet::from([(11, 0)]));
    let old = rule.scan(&blocked, LIMITS.cycle_ns, LIMITS, &mut facts);
    assert_eq!(
        old.deadlock_candidates,
        vec![Waiter {
            tid: 11,
            uaddr: 0x1000,
            owner_tid: Some(12)
        }]
    );
    assert!(
        old.stalled_now.is_empty(),
        "a candidate before it is a stall"
    );
}

#[test]
fn two_threads_holding_each_others_lock_are_a_deadlock() {
    // 11 waits on 0x1000 held by 12; 12 waits on 0x2000 held by 11; 13 waits on 0x3000 held
    // by 12, outside the cycle.
    let blocked = HashMap::from([
        (11, lock_wait(PID, 0, 0x1000)),
        (12, lock_wait(PID, 0, 0x2000)),
        (13, lock_wait(PID, 0, 0x3000)),
    ]);
    let mut facts = Facts {
        owners: HashMap::from([(11, 12), (12, 11), (13, 12)]),
        alive: HashSet::from([11, 12, 13]),
        ..Facts::default()
    };
    let mut rule = StallRule::default();
    let mut deadlocks = DeadlockReporter::new();
    let mut cycles = Vec::new();
    for i in 0..5 {
        let scan = rule.scan(&blocked, (2 + i) * SECOND, LIMITS, &mut facts);
        assert_eq!(scan.deadlock_candidates.len(), 3);
        cycles.extend(deadlocks.scan(&scan.deadlock_candidates));
    }
    assert_eq!(cycles.len(), 1, "reported once");
    let members: Vec<(u32, u64, u32)> = cycles[0]
        .members
        .iter()
        .map(|m| (m.tid, m.uaddr, m.owner_tid))
        .collect();
    assert_eq!(members, vec![(11, 0x1000, 12), (12, 0x2000, 11)]);
}

/// Thread `tid` in uninterruptible sleep since `start_ns` (e.g. a vfork parent, disk I/O).
fn kernel_wait(tgid: u32, start_ns: u64) -> InFlight {
    InFlight {
        start_ns,
        tgid,
        syscall: observer_common::sysno::VFORK,
        class: wait_class::UNINTERRUPTIBLE,
        kstack_id: 3,
        ..InFlight::default()
    }
}

#[test]
fn an_uninterruptible_wait_is_a_stall_once_per_episode_without_an_owner() {
    // No owner, no thread facts: the kernel's task state decides alone.
    let mut facts = Facts::default();
    let mut blocked = HashMap::from([(21, kernel_wait(PID, 0))]);
    let mut rule = StallRule::default();
    let before = rule.scan(&blocked, LIMITS.stall_ns - 1, LIMITS, &mut facts);
    assert!(before.new_stalls.is_empty() && before.stalled_now.is_empty());
    let at = rule.scan(&blocked, LIMITS.stall_ns, LIMITS, &mut facts);
    assert_eq!(at.new_stalls.len(), 1);
    let s = at.new_stalls[0];
    assert_eq!(
        (s.tid, s.owner_tid, s.blocked_ns),
        (21, None, LIMITS.stall_ns)
    );
    assert_eq!(s.wait.kstack_id, 3);
    assert_eq!(at.stalled_per_process, HashMap::from([(PID, 1)]));
    assert!(
        at.deadlock_candidates.is_empty(),
        "no lock: no wait-for edge"
    );
    // Still blocked: counted as stalled, not reported again.
    let later = rule.scan(&blocked, 10 * LIMITS.stall_ns, LIMITS, &mut facts);
    assert!(later.new_stalls.is_empty());
    assert_eq!(later.stalled_now.len(), 1);
    // A new uninterruptible wait of the same thread is a new episode.
    blocked.insert(21, kernel_wait(PID, 20 * SECOND));
    let again = rule.scan(&blocked, 20 * SECOND + LIMITS.stall_ns, LIMITS, &mut facts);
    assert_eq!(again.new_stalls.len(), 1);
}

#[test]
fn uninterruptible_waits_of_go_programs_stall_too() {
    let mut facts = Facts {
        go: HashSet::from([PID]),
        ..Facts::default()
    };
    let blocked = HashMap::from([(21, kernel_wait(PID, 0))]);
    let scan = StallRule::default().scan(&blocked, LIMITS.stall_ns, LIMITS, &mut facts);
    assert_eq!(scan.new_stalls.len(), 1);
}

#[test]
fn interruptible_waits_without_an_owner_never_stall() {
    let mut facts = Facts::default();
    let blocked: HashMap<u32, InFlight> = [
        wait_class::FUTEX,
        wait_class::SLEEP,
        wait_class::POLL,
        wait_class::IO,
        wait_class::OTHER,
    ]
    .into_iter()
    .enumerate()
    .map(|(i, class)| {
        let e = InFlight {
            class,
            ..kernel_wait(PID, 0)
        };
        (30 + i as u32, e)
    })
    .collect();
    let scan = StallRule::default().scan(&blocked, 100 * LIMITS.stall_ns, LIMITS, &mut facts);
    assert!(scan.new_stalls.is_empty() && scan.stalled_now.is_empty());
}

#[test]
fn lock_stalls_are_unchanged_next_to_kernel_stalls() {
    let (mut blocked, mut facts) = one_waiter();
    blocked.insert(21, kernel_wait(PID, 0));
    let scan = StallRule::default().scan(&blocked, LIMITS.stall_ns, LIMITS, &mut facts);
    assert_eq!(
        tids(&scan.new_stalls),
        vec![(11, 12, LIMITS.stall_ns), (21, 0, LIMITS.stall_ns)]
    );
    assert_eq!(scan.stalled_per_process, HashMap::from([(PID, 2)]));
    assert_eq!(scan.deadlock_candidates.len(), 1);
}

#[test]
fn the_kernel_task_state_decides_uninterruptible_waits() {
    use observer_common::task_state::is_uninterruptible_wait;
    assert!(is_uninterruptible_wait(0x2), "TASK_UNINTERRUPTIBLE");
    assert!(is_uninterruptible_wait(0x102), "TASK_KILLABLE");
    assert!(
        is_uninterruptible_wait(0x2102),
        "TASK_KILLABLE | TASK_FREEZABLE (vfork)"
    );
    assert!(!is_uninterruptible_wait(0x402), "TASK_IDLE is no stall");
    assert!(!is_uninterruptible_wait(0x1), "TASK_INTERRUPTIBLE");
    assert!(!is_uninterruptible_wait(0x4), "stopped");
    assert!(!is_uninterruptible_wait(0x8), "traced");
}
