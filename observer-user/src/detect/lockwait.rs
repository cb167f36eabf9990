//! Lock-wait rule: a long wait that has just ended was either a wait for a lock another thread
//! held (part of a hold episode, `lockhold`, and its time in the blocked profile) or idling
//! (an `idle_wait`, reported only on request).

use observer_common::{lock_kind, sysno, wait_class, WaitEvent};

/// What the rule concluded about one finished wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitVerdict {
    /// A wait for a lock held by a live thread (else idling).
    pub lock: bool,
    /// The lock's owner at block time, as a host thread id (0: none).
    pub owner_tid: u32,
    /// The thread that woke the waiter, when it did so from a futex call (an unlock); a timer
    /// or signal wake-up has none worth naming.
    pub waker_tid: Option<u32>,
}

/// Judges a finished wait. `owner_tid` is the owner the kernel saw at block time, already as a
/// host thread id; `is_go` says the process is a Go program; `thread_alive(tgid, tid)` says
/// whether a thread exists now (asked only when it matters).
pub fn judge_wait(
    w: &WaitEvent,
    is_go: bool,
    owner_tid: u32,
    thread_alive: impl FnOnce(u32, u32) -> bool,
) -> WaitVerdict {
    // In a Go process futex waits are idle scheduler threads (M parking), never lock waits.
    // A wait that ended because the process is exiting (the waker is in exit_group and kills
    // its threads) was not granted the lock: stall/deadlock alerts cover it. An owner that
    // neither woke the waiter nor still exists was a stale word in the lock, not a holder.
    // A wait the kernel placed in a lock's slow path (a known `lock_kind`) is a lock wait
    // whatever the owner field says; one classified only by an owner-looking word needs
    // that owner to be real.
    let lock = !is_go
        && !woken_by_signal_or_exit(w.waker_syscall)
        && w.class == wait_class::LOCK
        && (w.lock_kind != lock_kind::UNKNOWN
            || w.waker_tid == owner_tid
            || thread_alive(w.tgid, owner_tid));
    WaitVerdict {
        lock,
        owner_tid,
        waker_tid: (w.waker_syscall == sysno::FUTEX as i64).then_some(w.waker_tid),
    }
}

/// Whether short waits of `class` summed in the kernel count as lock waits. Their owners and
/// wakers are not kept, so only the class and the process's language decide.
pub fn short_waits_are_lock(class: u32, is_go: bool) -> bool {
    class == wait_class::LOCK && !is_go
}

/// A wait ended by a thread in `exit_group` (it kills its threads) or in a signal-sending
/// call was not handed the lock: the waiter dies, or runs a handler and waits again. The
/// kernel drops most kill wake-ups itself (SIGKILL queued for the waiter); this also covers
/// waits seeded from /proc, whose kernel task the probes do not know.
fn woken_by_signal_or_exit(waker_syscall: i64) -> bool {
    u64::try_from(waker_syscall).is_ok_and(|nr| nr == sysno::EXIT_GROUP || sysno::sends_signal(nr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use observer_common::{event_kind, UserStack, STACK_COPY_BYTES};

    const PID: u32 = 100;
    const WAITER: u32 = 101;
    const OWNER: u32 = 102;
    const OTHER: u32 = 103;

    fn no_stack() -> UserStack {
        UserStack {
            ip: 0,
            sp: 0,
            bp: 0,
            len: 0,
            bytes: [0; STACK_COPY_BYTES],
        }
    }

    /// A wait of WAITER on a lock, woken by `waker_tid` from syscall `waker_syscall`.
    fn wait(class: u32, waker_tid: u32, waker_syscall: i64) -> WaitEvent {
        WaitEvent {
            kind: event_kind::WAIT,
            tgid: PID,
            tid: WAITER,
            waker_tgid: PID,
            waker_tid,
            futex_val: 0,
            owner: OWNER,
            class,
            stack_id: -1,
            waker_stack_id: -1,
            waker_syscall,
            syscall: sysno::FUTEX,
            op: 0x80,
            uaddr: 0x1000,
            start_ns: 1,
            duration_ns: 50_000_000,
            waiter: no_stack(),
            waker: no_stack(),
            kstack_id: -1,
            lock_kind: 0,
        }
    }

    const FUTEX: i64 = sysno::FUTEX as i64;
    const ALIVE: fn(u32, u32) -> bool = |_, _| true;
    const GONE: fn(u32, u32) -> bool = |_, _| false;

    #[test]
    fn released_by_its_owner_is_a_lock_wait() {
        let v = judge_wait(&wait(wait_class::LOCK, OWNER, FUTEX), false, OWNER, GONE);
        assert_eq!(
            v,
            WaitVerdict {
                lock: true,
                owner_tid: OWNER,
                waker_tid: Some(OWNER)
            }
        );
    }

    #[test]
    fn lock_changed_hands_while_the_owner_lives_is_a_lock_wait() {
        // Woken by another thread (the lock changed hands), the first owner still running.
        let w = wait(wait_class::LOCK, OTHER, FUTEX);
        assert!(judge_wait(&w, false, OWNER, |_, tid| tid == OWNER).lock);
        // The owner word was stale: no such thread, and not the waker either.
        assert!(!judge_wait(&w, false, OWNER, GONE).lock);
        // No owner recorded at all.
        assert!(!judge_wait(&w, false, 0, |_, tid| tid != 0).lock);
    }

    #[test]
    fn go_processes_and_non_lock_classes_are_idle() {
        let w = wait(wait_class::LOCK, OWNER, FUTEX);
        assert!(!judge_wait(&w, true, OWNER, ALIVE).lock, "Go M parking");
        for class in [
            wait_class::FUTEX,
            wait_class::SLEEP,
            wait_class::POLL,
            wait_class::IO,
            wait_class::OTHER,
        ] {
            let w = wait(class, OWNER, FUTEX);
            assert!(!judge_wait(&w, false, OWNER, ALIVE).lock, "class {class}");
        }
    }

    #[test]
    fn woken_by_exit_or_a_signal_is_not_a_lock_grant() {
        for nr in [sysno::EXIT_GROUP, 62 /* kill */, 200 /* tkill */] {
            let w = wait(wait_class::LOCK, OWNER, nr as i64);
            let v = judge_wait(&w, false, OWNER, ALIVE);
            assert!(!v.lock, "waker in syscall {nr}");
            assert_eq!(v.waker_tid, None, "only a futex waker is named");
        }
        // A timer or an interrupt (no syscall): still a grant if the owner lives.
        let w = wait(wait_class::LOCK, OTHER, -1);
        let v = judge_wait(&w, false, OWNER, ALIVE);
        assert!(v.lock);
        assert_eq!(v.waker_tid, None);
    }

    #[test]
    fn the_owner_is_looked_up_only_when_it_matters() {
        let asked = std::cell::Cell::new(0);
        let count = |_, _| {
            asked.set(asked.get() + 1);
            true
        };
        judge_wait(&wait(wait_class::LOCK, OWNER, FUTEX), false, OWNER, count);
        judge_wait(&wait(wait_class::FUTEX, OTHER, FUTEX), false, OWNER, count);
        judge_wait(&wait(wait_class::LOCK, OTHER, FUTEX), true, OWNER, count);
        assert_eq!(asked.get(), 0);
        judge_wait(&wait(wait_class::LOCK, OTHER, FUTEX), false, OWNER, count);
        assert_eq!(asked.get(), 1);
    }

    #[test]
    fn short_waits_are_lock_waits_by_class_outside_go() {
        assert!(short_waits_are_lock(wait_class::LOCK, false));
        assert!(!short_waits_are_lock(wait_class::LOCK, true));
        assert!(!short_waits_are_lock(wait_class::FUTEX, false));
        assert!(!short_waits_are_lock(wait_class::SLEEP, false));
    }

    #[test]
    fn signal_senders_and_exit_group_do_not_release_locks() {
        for nr in [62, 129, 200, 234, 297, 424, 231] {
            assert!(woken_by_signal_or_exit(nr), "syscall {nr}");
        }
        // futex (the unlock), a timer or interrupt (no syscall), anything else.
        for nr in [202, -1, 0, 60, 35] {
            assert!(!woken_by_signal_or_exit(nr), "syscall {nr}");
        }
    }
}
