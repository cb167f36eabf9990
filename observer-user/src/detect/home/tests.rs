use super::*;

const MS: u64 = 1_000_000;
const SCAN: u64 = 200 * MS;
const STALL: u64 = 1_000 * MS;
const G: GroupKey = (100, 7);
const HOME: SiteId = 1;
const AWAY: SiteId = 2;

/// A thread blocked at `site` in a wait that began at `start_ns`.
fn at(tid: u32, site: SiteId, start_ns: u64) -> Observation {
    Observation {
        tid,
        group: G,
        site,
        start_ns,
        io_wait: false,
    }
}

struct Run {
    rule: HomeRule,
    now: u64,
    stalls: Vec<AwayStall>,
    ended: Vec<AwayEnded>,
}

impl Run {
    fn new() -> Self {
        let mut rule = HomeRule::default();
        // The rule starts at the first scan: nothing blocked yet.
        rule.scan(&[], &HashSet::new(), 1_000 * MS, STALL);
        Run {
            rule,
            now: 1_000 * MS,
            stalls: Vec::new(),
            ended: Vec::new(),
        }
    }

    fn scan(&mut self, obs: &[Observation]) -> HomeScan {
        self.now += SCAN;
        let s = self.rule.scan(obs, &HashSet::new(), self.now, STALL);
        self.stalls.extend(s.new_stalls.iter().cloned());
        self.ended.extend(s.ended.iter().copied());
        s
    }

    /// A healthy thread: short waits at home, each seen by one scan, with a scan that finds
    /// it running in between.
    fn healthy(&mut self, tid: u32, scans: usize) {
        for _ in 0..scans {
            let start = self.now + SCAN / 2;
            self.scan(&[at(tid, HOME, start)]);
            self.scan(&[]);
        }
    }

    /// `tid` blocked at `site` from the next scan on for `scans` scans, re-waiting every
    /// `rewait` scans.
    fn blocked(&mut self, tid: u32, site: SiteId, scans: usize, rewait: usize) {
        let mut start = self.now + SCAN / 2;
        for i in 0..scans {
            if i > 0 && i % rewait == 0 {
                start = self.now + SCAN / 2;
            }
            self.scan(&[at(tid, site, start)]);
        }
    }
}

#[test]
fn learns_home_and_a_new_site_stalls_once() {
    let mut r = Run::new();
    r.healthy(1, 30);
    // At home for long: never a stall.
    r.blocked(1, HOME, 30, 1000);
    r.scan(&[]);
    assert!(r.stalls.is_empty(), "{:?}", r.stalls);
    // Away for 2 s: one stall, and its end.
    r.blocked(1, AWAY, 10, 1000);
    assert_eq!(r.stalls.len(), 1, "{:?}", r.stalls);
    let s = &r.stalls[0];
    assert_eq!((s.tid, s.site), (1, AWAY));
    assert_eq!(s.home, vec![HOME]);
    assert!(s.blocked_ns >= STALL);
    assert!(r.ended.is_empty());
    r.scan(&[]);
    assert_eq!(r.ended.len(), 1);
    assert_eq!(r.ended[0].site, AWAY);
}

#[test]
fn rewaits_from_the_same_site_are_one_episode() {
    let mut r = Run::new();
    r.healthy(1, 30);
    // A timed wait that wakes every second (5 scans) and waits again, for 6 s.
    r.blocked(1, AWAY, 30, 5);
    assert_eq!(r.stalls.len(), 1, "{:?}", r.stalls);
    let first_start = r.stalls[0].since_ns;
    r.scan(&[]);
    assert_eq!(r.ended.len(), 1);
    assert_eq!(r.ended[0].since_ns, first_start);
    assert!(r.ended[0].last_start_ns > first_start);
}

#[test]
fn the_ongoing_wait_does_not_learn_itself_and_a_stall_is_never_learned() {
    let mut r = Run::new();
    r.healthy(1, 30);
    // 8 s away, re-waiting every second: one stall, however long (its own observations
    // would be 40 of 70, home by share if they counted).
    r.blocked(1, AWAY, 40, 5);
    r.scan(&[]);
    assert_eq!(r.stalls.len(), 1);
    // The same place again later: a stall again, not home.
    r.blocked(1, AWAY, 10, 1000);
    assert_eq!(r.stalls.len(), 2, "{:?}", r.stalls);
}

#[test]
fn a_short_wait_away_is_no_stall_and_a_frequent_place_becomes_home() {
    let mut r = Run::new();
    r.healthy(1, 30);
    // Often at a second place, briefly each time: learned, so a long wait there is home.
    for _ in 0..20 {
        r.blocked(1, AWAY, 3, 1000);
        r.scan(&[]);
    }
    assert!(r.stalls.is_empty());
    r.blocked(1, AWAY, 20, 1000);
    assert!(r.stalls.is_empty(), "{:?}", r.stalls);
}

#[test]
fn nothing_is_judged_before_a_home_is_known() {
    let mut r = Run::new();
    // Fresh thread, fresh group: its first long wait is not judged.
    r.blocked(1, AWAY, 20, 1000);
    r.scan(&[]);
    assert!(r.stalls.is_empty());
}

#[test]
fn a_wait_going_on_at_attach_is_never_a_stall() {
    let mut rule = HomeRule::default();
    let mut now = 10_000 * MS;
    // Blocked since before the first scan, for 10 s.
    for _ in 0..50 {
        let s = rule.scan(&[at(1, AWAY, 1_000 * MS)], &HashSet::new(), now, STALL);
        assert!(s.new_stalls.is_empty());
        now += SCAN;
    }
}

#[test]
fn a_timer_thread_learns_its_site_from_its_rewaits() {
    let mut r = Run::new();
    // Its only wait: a 100 ms timer, seen at every scan with a new start. Learned after
    // MIN_OBSERVATIONS, and then a long wait there is home.
    r.blocked(1, HOME, 40, 1);
    assert!(r.stalls.is_empty());
    r.blocked(1, HOME, 30, 1000);
    assert!(r.stalls.is_empty());
    // Somewhere else: a stall.
    r.scan(&[]);
    r.blocked(1, AWAY, 10, 1000);
    assert_eq!(r.stalls.len(), 1);
}

#[test]
fn a_new_pool_thread_uses_its_groups_home() {
    let mut r = Run::new();
    r.healthy(1, 30);
    // Thread 2 of the same group never waited before: at the group's home, nothing; away
    // (on a lock built on a condition variable), a stall.
    r.blocked(2, HOME, 20, 1000);
    r.scan(&[]);
    assert!(r.stalls.is_empty(), "{:?}", r.stalls);
    r.blocked(3, AWAY, 10, 1000);
    assert_eq!(r.stalls.len(), 1);
    assert_eq!(r.stalls[0].tid, 3);
    assert_eq!(r.stalls[0].home, vec![HOME]);
}

#[test]
fn a_new_thread_waiting_for_input_is_not_judged() {
    let mut r = Run::new();
    r.healthy(1, 30);
    // A new connection's first wait, for its client: no history of its own, not judged.
    let start = r.now + SCAN / 2;
    for _ in 0..20 {
        let mut o = at(2, AWAY, start);
        o.io_wait = true;
        r.scan(&[o]);
    }
    assert!(r.stalls.is_empty());
}

#[test]
fn two_threads_stalled_at_one_place_do_not_make_it_home() {
    let mut r = Run::new();
    r.healthy(1, 30);
    r.healthy(2, 30);
    let start = r.now + SCAN / 2;
    for _ in 0..10 {
        r.scan(&[at(1, AWAY, start), at(2, AWAY, start + 1)]);
    }
    assert_eq!(r.stalls.len(), 2, "{:?}", r.stalls);
}

#[test]
fn unknown_sites_leave_episodes_alone() {
    let mut r = Run::new();
    r.healthy(1, 30);
    let start = r.now + SCAN / 2;
    r.scan(&[at(1, AWAY, start)]);
    // The unwind budget ran out for thread 1 this scan: its episode goes on.
    r.now += SCAN;
    let unknown: HashSet<u32> = [1].into_iter().collect();
    let s = r.rule.scan(&[], &unknown, r.now, STALL);
    assert!(s.ended.is_empty());
    r.blocked(1, AWAY, 5, 1000);
    assert_eq!(r.stalls.len(), 1);
}

#[test]
fn tables_are_bounded() {
    let mut rule = HomeRule::default();
    let mut now = 1_000 * MS;
    rule.scan(&[], &HashSet::new(), now, STALL);
    let n = MAX_THREADS as u32 + 500;
    let mut tid = 1;
    while tid < n {
        now += SCAN;
        let obs: Vec<Observation> = (tid..(tid + 2_000).min(n))
            .map(|t| Observation {
                tid: t,
                group: (t % (MAX_GROUPS as u32 + 100), 1),
                site: u64::from(t),
                start_ns: now,
                io_wait: false,
            })
            .collect();
        rule.scan(&obs, &HashSet::new(), now, STALL);
        tid += 2_000;
    }
    assert!(rule.threads() <= MAX_THREADS);
    // One thread at more sites than kept.
    let mut h = History::default();
    for site in 0..100 {
        h.add(site, 1);
    }
    assert!(h.sites.len() <= MAX_SITES);
    for _ in 0..10_000 {
        h.add(1, 1);
    }
    assert!(h.total <= DECAY_AT);
}

#[test]
fn who_woke_a_wait() {
    use observer_common::{sysno, wait_class};
    let futex = sysno::FUTEX as i64;
    // A condvar signalled by a thread of its process: the releaser.
    assert_eq!(woken_by(wait_class::FUTEX, 5, 5, 7, futex), WokenBy::Thread);
    assert_eq!(
        woken_by(wait_class::FUTEX, 5, 9, 7, futex),
        WokenBy::OtherProcess
    );
    // A timed wait's timeout fired while some thread ran in another syscall.
    let write = sysno::WRITE as i64;
    assert_eq!(
        woken_by(wait_class::FUTEX, 5, 5, 7, write),
        WokenBy::TimerOrSignal
    );
    // Interrupt, idle task, sleeps, signals.
    assert_eq!(
        woken_by(wait_class::FUTEX, 5, 5, 7, -1),
        WokenBy::TimerOrSignal
    );
    assert_eq!(
        woken_by(wait_class::POLL, 5, 0, 0, write),
        WokenBy::TimerOrSignal
    );
    assert_eq!(
        woken_by(wait_class::SLEEP, 5, 5, 7, futex),
        WokenBy::TimerOrSignal
    );
    let kill = sysno::TGKILL as i64;
    assert_eq!(
        woken_by(wait_class::POLL, 5, 9, 7, kill),
        WokenBy::TimerOrSignal
    );
    // A poll woken by a write: of its own process, or a client's.
    assert_eq!(woken_by(wait_class::POLL, 5, 5, 7, write), WokenBy::Thread);
    assert_eq!(
        woken_by(wait_class::IO, 5, 9, 7, write),
        WokenBy::OtherProcess
    );
}

#[test]
fn an_excused_wait_is_learned_as_home() {
    let mut r = Run::new();
    r.healthy(1, 30);
    let start = r.now + SCAN / 2;
    let mut excused = false;
    for _ in 0..30 {
        let s = r.scan(&[at(1, AWAY, start)]);
        if !s.new_stalls.is_empty() {
            r.rule.excuse(1);
            excused = true;
        }
    }
    assert!(excused);
    r.stalls.clear();
    r.scan(&[]);
    assert!(r.ended.is_empty(), "an excused wait has no end to report");
    // Now a place it waits at: no stall there.
    r.blocked(1, AWAY, 20, 1000);
    assert!(r.stalls.is_empty(), "{:?}", r.stalls);
}

#[test]
fn waits_near_the_top_of_a_thread_wait_for_work() {
    assert!(waits_for_work(2));
    assert!(waits_for_work(WORK_WAIT_MAX_DEPTH));
    assert!(!waits_for_work(WORK_WAIT_MAX_DEPTH + 1));
}

#[test]
fn a_wait_for_input_is_judged_only_for_a_thread_that_waits_for_input_at_home() {
    let input = |tid, site, start| Observation {
        io_wait: true,
        ..at(tid, site, start)
    };
    let mut r = Run::new();
    // Thread 1: home on a condition variable, then handed a connection: its reads are a new
    // role, not a stall.
    r.healthy(1, 30);
    let start = r.now + SCAN / 2;
    for _ in 0..10 {
        r.scan(&[input(1, AWAY, start)]);
    }
    r.scan(&[]);
    assert!(r.stalls.is_empty(), "{:?}", r.stalls);
    // Thread 2: an event loop (home: a wait for input); a read elsewhere is a stall.
    for _ in 0..30 {
        let start = r.now + SCAN / 2;
        r.scan(&[input(2, 5, start)]);
        r.scan(&[]);
    }
    let start = r.now + SCAN / 2;
    for _ in 0..10 {
        r.scan(&[input(2, 6, start)]);
    }
    assert_eq!(r.stalls.len(), 1, "{:?}", r.stalls);
    assert_eq!(r.stalls[0].tid, 2);
}
