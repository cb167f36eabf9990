//! Threads that were already blocked when observer attached never pass `sched_switch`, so the
//! kernel has no in-flight entry for them: a process that deadlocked before we arrived would
//! look idle. Seed the table from `/proc/PID/task/TID/syscall` (read-only), with the attach
//! time as the start: their blocked times are lower bounds.

use observer_common::{
    classify_syscall, futex_op, lock_kind, lock_owner, sysno, wait_class, InFlight, PID_MAX_LIMIT,
};

use crate::proc::memory::read_process_memory;

/// A thread's syscall state as `/proc/PID/task/TID/syscall` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyscallState {
    pub nr: u64,
    pub args: [u64; 6],
    pub sp: u64,
    pub pc: u64,
    /// In uninterruptible sleep (`D` in `/proc/PID/task/TID/stat`; TASK_IDLE shows as `I`).
    pub uninterruptible: bool,
}

/// Parses `"202 0x55d0 0x80 0x2 0x0 0x0 0x0 0x7ffc 0x7f12"`; `running` or `-1 sp pc` (blocked
/// outside a syscall) give `None`.
pub fn parse_syscall_line(line: &str) -> Option<SyscallState> {
    let mut fields = line.split_whitespace();
    let nr: u64 = fields.next()?.parse().ok()?;
    let mut nums = [0u64; 8];
    for slot in nums.iter_mut() {
        let text = fields.next()?;
        *slot = u64::from_str_radix(text.strip_prefix("0x").unwrap_or(text), 16).ok()?;
    }
    let [a0, a1, a2, a3, a4, a5, sp, pc] = nums;
    Some(SyscallState {
        nr,
        args: [a0, a1, a2, a3, a4, a5],
        sp,
        pc,
        uninterruptible: false,
    })
}

/// The scheduler state letter from `/proc/PID/task/TID/stat` (after the `(comm)` field).
pub fn parse_state(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// What the kernel program would have recorded for a thread blocked in `state`.
pub fn in_flight_for(pid: u32, tid: u32, state: &SyscallState, start_ns: u64) -> InFlight {
    let mut entry = InFlight {
        start_ns,
        ip: state.pc,
        sp: state.sp,
        syscall: state.nr,
        tgid: pid,
        class: classify_syscall(state.nr),
        stack_id: -1,
        kstack_id: -1,
        ..InFlight::default()
    };
    if state.uninterruptible {
        // Its kernel stack is read from /proc when it stalls (see `kernel_stack_of`).
        entry.class = wait_class::UNINTERRUPTIBLE;
        return entry;
    }
    if state.nr == sysno::FUTEX || state.nr == sysno::FUTEX_WAIT {
        entry.uaddr = state.args[0];
        entry.op = if state.nr == sysno::FUTEX {
            state.args[1] & futex_op::CMD_MASK
        } else {
            futex_op::WAIT
        };
        if futex_op::is_wait(entry.op) {
            if let Some(words) = read_words(pid, entry.uaddr) {
                entry.futex_val = words[0];
                if let Some(owner) = lock_owner(entry.op, words, tid) {
                    entry.owner = owner;
                    entry.class = wait_class::LOCK;
                }
            }
        }
    }
    entry
}

/// The owner of the lock a wait of `kind` on futex word `uaddr` is for, as the target
/// records it (a thread id in the target's pid namespace), read now; `None` when the kind
/// records none, nobody holds it, or it is the waiter itself (`self_tid`).
pub fn owner_for_kind(pid: u32, kind: u32, op: u64, uaddr: u64, self_tid: u32) -> Option<u32> {
    match kind {
        lock_kind::UNKNOWN | lock_kind::PTHREAD_MUTEX => {
            lock_owner(op, read_words(pid, uaddr)?, self_tid)
        }
        // glibc rwlock `__cur_writer` (lock + 24) from the futex word the waiter blocked on
        // (readers: lock + 8, writers: lock + 12); the kernel program reads the same.
        lock_kind::PTHREAD_RWLOCK_READ => read_tid(pid, uaddr + 16, self_tid),
        lock_kind::PTHREAD_RWLOCK_WRITE => read_tid(pid, uaddr + 12, self_tid),
        _ => None,
    }
}

fn read_tid(pid: u32, addr: u64, self_tid: u32) -> Option<u32> {
    let bytes = read_process_memory(pid, addr, 4).ok()?;
    let tid = u32::from_ne_bytes(bytes.get(..4)?.try_into().ok()?);
    (tid != 0 && tid != self_tid && tid < PID_MAX_LIMIT).then_some(tid)
}

/// The first three 32-bit words at `addr` in the target (the futex word and glibc's owner).
pub fn read_words(pid: u32, addr: u64) -> Option<[u32; 3]> {
    let bytes = read_process_memory(pid, addr, 12).ok()?;
    let word = |i: usize| {
        bytes
            .get(i..i + 4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    Some([word(0)?, word(4)?, word(8)?])
}

/// Threads of `pid` sleeping in a syscall right now.
pub fn blocked_threads(pid: u32) -> Vec<(u32, SyscallState)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|tid| Some((tid, blocked_state(pid, tid)?)))
        .collect()
}

/// The syscall thread `tid` sleeps in, if it sleeps in one.
pub fn blocked_state(pid: u32, tid: u32) -> Option<SyscallState> {
    let base = format!("/proc/{pid}/task/{tid}");
    let stat = std::fs::read_to_string(format!("{base}/stat")).ok()?;
    let letter = parse_state(&stat)?;
    if !matches!(letter, 'S' | 'D') {
        return None;
    }
    let mut state = parse_syscall_line(&std::fs::read_to_string(format!("{base}/syscall")).ok()?)?;
    state.uninterruptible = letter == 'D';
    Some(state)
}

/// At most this many frames are read from `/proc/PID/task/TID/stack`.
const KERNEL_STACK_MAX: usize = 64;

/// The kernel stack of a sleeping thread as `/proc/PID/task/TID/stack` names it (root only),
/// innermost first, function names only: for a wait the kernel program did not see begin.
pub fn kernel_stack_of(pid: u32, tid: u32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stack"))
        .map(|text| parse_kernel_stack(&text))
        .unwrap_or_default()
}

/// `"[<0>] kernel_clone+0x1d3/0x400"` lines to `"kernel_clone"` (a module's keeps ` [mod]`).
pub fn parse_kernel_stack(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let frame = line.split_once("] ").map_or(line, |(_, f)| f).trim();
            let (name, rest) = frame.split_once('+').unwrap_or((frame, ""));
            let module = rest.split_once(' ').map(|(_, m)| m.trim());
            (!name.is_empty()).then(|| match module {
                Some(m) if !m.is_empty() => format!("{name} {m}"),
                _ => name.to_string(),
            })
        })
        .take(KERNEL_STACK_MAX)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_futex_wait() {
        let s = parse_syscall_line(
            "202 0x5581d0c3a0a0 0x80 0x2 0x0 0x0 0x0 0x7f3a2bffed58 0x7f3a2c69d2f6\n",
        )
        .unwrap();
        assert_eq!(s.nr, 202);
        assert_eq!(s.args[0], 0x5581d0c3a0a0);
        assert_eq!(s.args[1], 0x80);
        assert_eq!(s.sp, 0x7f3a2bffed58);
        assert_eq!(s.pc, 0x7f3a2c69d2f6);
    }

    #[test]
    fn running_and_outside_syscall_are_not_waits() {
        assert_eq!(parse_syscall_line("running\n"), None);
        assert_eq!(parse_syscall_line("-1 0x7ffc 0x7f12\n"), None);
        assert_eq!(parse_syscall_line(""), None);
    }

    #[test]
    fn kernel_stack_lines_become_function_names() {
        let text = "[<0>] kernel_clone+0x1d3/0x400\n[<0>] __do_sys_vfork+0x66/0x90\n\
                    [<0>] nfs_wait_bit_killable+0x10/0x60 [nfs]\n";
        assert_eq!(
            parse_kernel_stack(text),
            [
                "kernel_clone",
                "__do_sys_vfork",
                "nfs_wait_bit_killable [nfs]"
            ]
        );
        assert!(parse_kernel_stack("").is_empty());
        let deep = "[<0>] f+0x1/0x2\n".repeat(1000);
        assert_eq!(parse_kernel_stack(&deep).len(), KERNEL_STACK_MAX);
    }

    #[test]
    fn an_uninterruptible_thread_is_seeded_as_a_wait_in_the_kernel() {
        let mut state = parse_syscall_line("58 0x0 0x0 0x0 0x0 0x0 0x0 0x7ffc 0x7f12").unwrap();
        assert_eq!(in_flight_for(1, 2, &state, 5).class, wait_class::OTHER);
        state.uninterruptible = true;
        let e = in_flight_for(1, 2, &state, 5);
        assert_eq!(
            (e.class, e.kstack_id, e.syscall),
            (wait_class::UNINTERRUPTIBLE, -1, 58)
        );
    }

    #[test]
    fn state_letter_after_comm_with_spaces_and_parens() {
        assert_eq!(parse_state("123 (a) b) S 1 2 3"), Some('S'));
        assert_eq!(parse_state("123 (worker) R 1"), Some('R'));
    }

    #[test]
    fn glibc_mutex_owner_and_condvar_are_told_apart() {
        // locked mutex with waiters (2), owner tid 77 at +8
        assert_eq!(lock_owner(futex_op::WAIT, [2, 0, 77], 10), Some(77));
        // condvar signal word: non-zero word but +8 holds something that is not a pid
        assert_eq!(lock_owner(futex_op::WAIT, [1, 0, 0], 10), None);
        // PI futex: owner in the word, waiters bit set
        assert_eq!(
            lock_owner(futex_op::LOCK_PI, [0x8000_0000 | 55, 0, 0], 10),
            Some(55)
        );
        // a thread never waits for itself here
        assert_eq!(lock_owner(futex_op::WAIT, [2, 0, 10], 10), None);
    }
}
