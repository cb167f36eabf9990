use super::*;
use observer_common::lock_kind;

const PID: u32 = 100;
const LOCK: u64 = 0x1000;
const HOLDER: u32 = 102;
const MS: u64 = 1_000_000;

fn at(tid: u32, comm: &str, frames: &[&str]) -> ThreadAt {
    ThreadAt {
        tid,
        comm: Some(comm.into()),
        stack: frames.iter().map(|f| Frame::named(*f)).collect(),
    }
}

/// A wait of `tid` on LOCK from `start_ms` to `end_ms`, woken by `waker` (its stack
/// `waker_fn`), the lock recording `owner` when it blocked.
fn wait(tid: u32, func: &str, start_ms: u64, end_ms: u64, owner: Option<u32>) -> LockWaitEnded {
    LockWaitEnded {
        pid: PID,
        uaddr: LOCK,
        lock_kind: lock_kind::PTHREAD_MUTEX,
        waiter: at(tid, &format!("w{tid}"), &["__lll_lock_wait", func, "main"]),
        owner: owner.map(|o| (o, Some("maint".to_string()))),
        waker: None,
        start_ns: start_ms * MS,
        duration_ns: (end_ms - start_ms) * MS,
    }
}

fn woken_by(mut w: LockWaitEnded, tid: u32, func: &str) -> LockWaitEnded {
    w.waker = Some(at(tid, &format!("t{tid}"), &["__lll_unlock_wake", func]));
    w
}

fn none_in_flight() -> HashMap<(u32, u64), u64> {
    HashMap::new()
}

#[test]
fn three_waiters_behind_one_hold_are_one_episode() {
    let mut r = HoldEpisodes::default();
    // The holder takes the lock at 0 and releases it at 300ms; waiters 11 and 12 (same
    // function) and 13 (another) queue behind it and are handed the lock one after another.
    r.add(woken_by(
        wait(11, "update", 2, 300, Some(HOLDER)),
        HOLDER,
        "compact",
    ));
    r.add(woken_by(
        wait(12, "update", 5, 301, Some(HOLDER)),
        11,
        "update",
    ));
    r.add(woken_by(
        wait(13, "lookup", 1, 302, Some(HOLDER)),
        12,
        "update",
    ));
    assert!(
        r.flush(350 * MS, &none_in_flight()).is_empty(),
        "not quiet yet"
    );
    let eps = r.flush(603 * MS, &none_in_flight());
    assert_eq!(eps.len(), 1, "{eps:#?}");
    let e = &eps[0];
    assert_eq!(e.waiters, 3);
    assert_eq!(
        e.holder,
        Some(Holder {
            tid: HOLDER,
            comm: Some("maint".into()),
            known_from: HolderSource::Owner
        })
    );
    assert!(e.owner_recorded);
    assert_eq!(e.release.as_ref().map(|t| t.tid), Some(HOLDER));
    assert_eq!(e.release_ns, 300 * MS);
    assert_eq!(
        e.hold_ns(),
        299 * MS,
        "from the earliest start to the release"
    );
    assert_eq!(e.longest.tid, 13);
    assert_eq!(e.longest_wait_ns, 301 * MS);
    assert_eq!(e.total_wait_ns, (298 + 296 + 301) * MS);
    let stacks: Vec<(String, u64)> = e
        .waiter_stacks
        .iter()
        .map(|s| (s.stack[1].name.to_string(), s.count))
        .collect();
    assert_eq!(
        stacks,
        vec![("update".to_string(), 2), ("lookup".to_string(), 1)]
    );
    assert_eq!(e.waiter_stacks[0].longest_ns, 298 * MS);
    assert_eq!(e.waiter_stacks[0].comm, "w11");
    assert_eq!(e.waiter_stacks_omitted, 0);
    assert_eq!(r.open_episodes(), 0);
}

#[test]
fn a_wait_that_starts_after_the_release_is_the_next_hold() {
    let mut r = HoldEpisodes::default();
    r.add(woken_by(
        wait(11, "update", 0, 300, Some(HOLDER)),
        HOLDER,
        "compact",
    ));
    // The holder takes the lock again at 301 and 11 waits again from 305.
    r.add(woken_by(
        wait(11, "update", 305, 600, Some(HOLDER)),
        HOLDER,
        "compact",
    ));
    // A waiter queued behind both holds: it began before the first release.
    r.add(woken_by(
        wait(12, "update", 200, 601, Some(HOLDER)),
        11,
        "update",
    ));
    let eps = r.drain_all();
    assert_eq!(eps.len(), 2, "{eps:#?}");
    assert_eq!((eps[0].release_ns, eps[0].waiters), (300 * MS, 2));
    assert_eq!((eps[1].release_ns, eps[1].waiters), (600 * MS, 1));
}

#[test]
fn waiters_still_in_flight_keep_the_episode_open_until_the_cap() {
    let mut r = HoldEpisodes::default();
    r.add(woken_by(
        wait(11, "update", 0, 300, Some(HOLDER)),
        HOLDER,
        "compact",
    ));
    // 12 began before the release and is still waiting: it will join.
    let joinable = HashMap::from([((PID, LOCK), 100 * MS)]);
    assert!(r.flush(900 * MS, &joinable).is_empty());
    // A waiter in flight since after the release waits for the next hold: no reason to wait.
    let next_hold = HashMap::from([((PID, LOCK), 400 * MS)]);
    assert_eq!(r.flush(900 * MS, &next_hold).len(), 1);

    r.add(woken_by(
        wait(11, "update", 1000, 1300, Some(HOLDER)),
        HOLDER,
        "compact",
    ));
    let joinable = HashMap::from([((PID, LOCK), 1100 * MS)]);
    assert!(r.flush(11_299 * MS, &joinable).is_empty());
    let eps = r.flush(11_300 * MS, &joinable);
    assert_eq!(eps.len(), 1, "at most 10s after it opened");
}

#[test]
fn without_a_recorded_owner_the_releaser_is_the_holder() {
    let mut r = HoldEpisodes::default();
    let mut w = woken_by(wait(11, "update", 0, 300, None), 40, "rebuild_index");
    w.lock_kind = lock_kind::RUST_MUTEX;
    r.add(w);
    let e = &r.drain_all()[0];
    assert_eq!(
        e.holder,
        Some(Holder {
            tid: 40,
            comm: Some("t40".into()),
            known_from: HolderSource::Releaser
        })
    );
    assert!(!e.owner_recorded);
    assert_eq!(
        e.release.as_ref().unwrap().stack[1].name.as_ref(),
        "rebuild_index"
    );

    // Neither an owner nor a futex waker (a timed wait that timed out): no holder.
    let mut r = HoldEpisodes::default();
    r.add(wait(11, "update", 0, 300, None));
    let e = &r.drain_all()[0];
    assert_eq!((e.holder.clone(), e.release.clone()), (None, None));
    // An "owner" of a lock kind that records none is no owner: the releaser is named.
    let mut r = HoldEpisodes::default();
    let mut w = woken_by(
        wait(11, "update", 0, 300, Some(HOLDER)),
        40,
        "sem_post_site",
    );
    w.lock_kind = lock_kind::SEMAPHORE;
    r.add(w);
    let e = &r.drain_all()[0];
    assert!(!e.owner_recorded);
    assert_eq!(
        e.holder.as_ref().map(|h| (h.tid, h.known_from)),
        Some((40, HolderSource::Releaser))
    );
}

#[test]
fn the_first_wait_to_end_names_the_release_even_when_it_arrives_late() {
    let mut r = HoldEpisodes::default();
    r.add(woken_by(
        wait(12, "update", 5, 301, Some(HOLDER)),
        11,
        "update",
    ));
    r.add(woken_by(
        wait(11, "update", 2, 300, Some(HOLDER)),
        HOLDER,
        "compact",
    ));
    let eps = r.drain_all();
    assert_eq!(eps.len(), 1);
    assert_eq!(eps[0].release.as_ref().map(|t| t.tid), Some(HOLDER));
    assert_eq!(eps[0].release_ns, 300 * MS);
}

#[test]
fn locks_and_processes_are_apart() {
    let mut r = HoldEpisodes::default();
    r.add(wait(11, "update", 0, 300, Some(HOLDER)));
    let mut other_lock = wait(12, "update", 0, 300, Some(HOLDER));
    other_lock.uaddr = LOCK + 8;
    r.add(other_lock);
    let mut other_pid = wait(13, "update", 0, 300, Some(HOLDER));
    other_pid.pid = PID + 1;
    r.add(other_pid);
    assert_eq!(r.drain_all().len(), 3);
}

#[test]
fn memory_is_bounded_and_what_is_left_out_is_counted() {
    let mut r = HoldEpisodes::default();
    // Distinct waiter stacks: MAX_WAITER_STACKS kept, the rest counted; the alert lists
    // LISTED_WAITER_STACKS, the most frequent first.
    let n = MAX_WAITER_STACKS as u32 + 10;
    for i in 0..n {
        let func = format!("f{i}");
        r.add(wait(1000 + i, &func, 0, 300 + u64::from(i), Some(HOLDER)));
        if i == 3 {
            r.add(wait(5000, &func, 0, 310, Some(HOLDER)));
        }
    }
    let e = &r.drain_all()[0];
    assert_eq!(e.waiters, u64::from(n) + 1);
    assert_eq!(e.waiter_stacks.len(), LISTED_WAITER_STACKS);
    assert_eq!(e.waiter_stacks[0].count, 2);
    assert_eq!(e.waiter_stacks[0].stack[1].name.as_ref(), "f3");
    let listed: u64 = e.waiter_stacks.iter().map(|s| s.count).sum();
    assert_eq!(listed + e.waiter_stacks_omitted, e.waiters);

    // Open episodes: at the cap, a wait that would open another is dropped and counted.
    let mut r = HoldEpisodes::default();
    for i in 0..MAX_OPEN_EPISODES as u64 + 3 {
        let mut w = wait(11, "update", 0, 300, Some(HOLDER));
        w.uaddr = 0x10_0000 + i * 8;
        r.add(w);
    }
    assert_eq!(r.open_episodes(), MAX_OPEN_EPISODES);
    assert_eq!(r.waits_dropped, 3);
    // A wait joining an open episode is still taken.
    r.add(wait(12, "update", 0, 301, Some(HOLDER)));
    assert_eq!(r.waits_dropped, 4, "LOCK itself has no open episode");
    let mut w = wait(12, "update", 0, 301, Some(HOLDER));
    w.uaddr = 0x10_0000;
    r.add(w);
    assert_eq!(r.waits_dropped, 4);
    assert_eq!(r.drain_all().len(), MAX_OPEN_EPISODES);
    assert_eq!(r.open_episodes(), 0);
}

#[test]
fn parking_lot_waiters_on_their_own_words_are_one_episode() {
    // parking_lot parks each waiter on a futex word of its own: the words differ, the hold
    // is the same.
    let mut r = HoldEpisodes::default();
    for (i, tid) in [11u32, 12, 13].into_iter().enumerate() {
        let mut w = woken_by(
            wait(tid, "worker_update", 2 + i as u64, 300 + i as u64, None),
            HOLDER,
            "rebuild_index",
        );
        w.lock_kind = lock_kind::PARKING_LOT_MUTEX;
        w.uaddr = 0x7000 + 0x100 * tid as u64;
        r.add(w);
    }
    let eps = r.drain_all();
    assert_eq!(eps.len(), 1, "{eps:#?}");
    assert_eq!(eps[0].waiters, 3);
    assert_eq!(
        eps[0].holder.as_ref().map(|h| h.known_from),
        Some(HolderSource::Releaser)
    );
}

#[test]
fn rwlock_readers_and_writers_of_one_lock_are_one_episode() {
    let mut r = HoldEpisodes::default();
    let mut reader = wait(11, "reader_lookup", 2, 300, Some(HOLDER));
    reader.lock_kind = lock_kind::PTHREAD_RWLOCK_READ;
    reader.uaddr = 0x1008; // __wrphase_futex
    let mut writer = wait(12, "writer_update", 3, 301, Some(HOLDER));
    writer.lock_kind = lock_kind::PTHREAD_RWLOCK_WRITE;
    writer.uaddr = 0x100c; // __writers_futex
    r.add(reader);
    r.add(writer);
    let eps = r.drain_all();
    assert_eq!(eps.len(), 1, "{eps:#?}");
    assert_eq!(eps[0].waiters, 2);
    // Another rwlock 56 bytes further is another lock.
    assert_ne!(
        lock_identity(lock_kind::PTHREAD_RWLOCK_READ, 0x1008),
        lock_identity(lock_kind::PTHREAD_RWLOCK_READ, 0x1008 + 56)
    );
}
