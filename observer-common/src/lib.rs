//! Types shared by the kernel programs (observer-ebpf) and the loader (observer-user).
//!
//! Everything here is `#[repr(C)]` plain data: the kernel writes it into maps and the ring
//! buffer, userspace reads the same bytes. No logic lives here.
#![no_std]

/// Bytes of user stack copied next to a register snapshot, for `.eh_frame` unwinding in
/// userspace (a power of two). Enough for the frames between a blocking syscall and the
/// application code in ordinary C/C++/Rust programs; deeper stacks are cut (the unwinder stops
/// at the end of the copy).
pub const STACK_COPY_BYTES: usize = 16384;

/// x86_64 syscall numbers the probes classify.
pub mod sysno {
    pub const READ: u64 = 0;
    pub const WRITE: u64 = 1;
    pub const OPEN: u64 = 2;
    pub const CLOSE: u64 = 3;
    pub const MMAP: u64 = 9;
    pub const MUNMAP: u64 = 11;
    pub const PREAD64: u64 = 17;
    pub const PWRITE64: u64 = 18;
    pub const MSYNC: u64 = 26;
    pub const FSYNC: u64 = 74;
    pub const FDATASYNC: u64 = 75;
    pub const OPENAT: u64 = 257;
    pub const POLL: u64 = 7;
    pub const SELECT: u64 = 23;
    pub const NANOSLEEP: u64 = 35;
    pub const ACCEPT: u64 = 43;
    pub const RECVFROM: u64 = 45;
    pub const RECVMSG: u64 = 47;
    pub const VFORK: u64 = 58;
    pub const WAIT4: u64 = 61;
    pub const EXIT: u64 = 60;
    pub const FUTEX: u64 = 202;
    pub const CLOCK_NANOSLEEP: u64 = 230;
    pub const EXIT_GROUP: u64 = 231;
    pub const EPOLL_WAIT: u64 = 232;
    pub const PSELECT6: u64 = 270;
    pub const PPOLL: u64 = 271;
    pub const EPOLL_PWAIT: u64 = 281;
    pub const ACCEPT4: u64 = 288;
    pub const EPOLL_PWAIT2: u64 = 441;
    pub const FUTEX_WAITV: u64 = 449;
    pub const FUTEX_WAIT: u64 = 455;
    pub const KILL: u64 = 62;
    pub const RT_SIGQUEUEINFO: u64 = 129;
    pub const TKILL: u64 = 200;
    pub const TGKILL: u64 = 234;
    pub const RT_TGSIGQUEUEINFO: u64 = 297;
    pub const PIDFD_SEND_SIGNAL: u64 = 424;
    /// `orig_rax` of a task that entered the kernel by an exception or interrupt (a page
    /// fault), not by a syscall: the entry code stores -1 there.
    pub const NONE: u64 = u64::MAX;

    /// Syscalls that send a signal: a thread they wake was signalled, not handed a lock.
    pub const fn sends_signal(nr: u64) -> bool {
        matches!(
            nr,
            KILL | RT_SIGQUEUEINFO | TKILL | TGKILL | RT_TGSIGQUEUEINFO | PIDFD_SEND_SIGNAL
        )
    }
}

/// `futex(2)` operations (after masking FUTEX_PRIVATE_FLAG and FUTEX_CLOCK_REALTIME).
pub mod futex_op {
    pub const CMD_MASK: u64 = 0x7f;
    pub const WAIT: u64 = 0;
    pub const LOCK_PI: u64 = 6;
    pub const WAIT_BITSET: u64 = 9;
    pub const WAIT_REQUEUE_PI: u64 = 11;
    pub const LOCK_PI2: u64 = 13;
    /// Ops whose futex word holds the owner's TID (priority-inheritance futexes).
    pub const fn is_pi(cmd: u64) -> bool {
        cmd == LOCK_PI || cmd == LOCK_PI2 || cmd == WAIT_REQUEUE_PI
    }
    pub const fn is_wait(cmd: u64) -> bool {
        cmd == WAIT || cmd == WAIT_BITSET || is_pi(cmd)
    }
    pub const TID_MASK: u32 = 0x3fff_ffff;
}

/// Values of the kernel's `WATCHED` map (tgid -> flags).
pub mod watch_flag {
    /// Watched: its threads' waits, births and deaths are recorded.
    pub const WATCHED: u32 = 1;
    /// A Go program: its runtime's own scheduler waits (an idle M parked in `futex`, the
    /// network poller in `epoll_pwait`, `sysmon` in `nanosleep`) are not recorded per thread
    /// (goroutine waits are what tell what the program waits for); other waits are.
    pub const GO_RUNTIME: u32 = 2;
}

/// Whether a Go program's thread blocked in `syscall` is one of its runtime's scheduler
/// waits (see `watch_flag::GO_RUNTIME`).
pub fn is_go_scheduler_wait(syscall: u64) -> bool {
    matches!(
        syscall,
        sysno::FUTEX
            | sysno::EPOLL_WAIT
            | sysno::EPOLL_PWAIT
            | sysno::EPOLL_PWAIT2
            | sysno::NANOSLEEP
            | sysno::CLOCK_NANOSLEEP
    )
}

/// What a blocked thread is waiting for, decided in the kernel from its syscall registers.
pub mod wait_class {
    /// A futex wait where a lock owner was seen (PI owner, or a glibc mutex `__owner`).
    pub const LOCK: u32 = 0;
    /// Any other futex wait: condition variables, semaphores, joins, Go scheduler idling.
    pub const FUTEX: u32 = 1;
    /// nanosleep / clock_nanosleep.
    pub const SLEEP: u32 = 2;
    /// poll, select, epoll.
    pub const POLL: u32 = 3;
    /// read, recv, accept.
    pub const IO: u32 = 4;
    /// Anything else that blocks interruptibly (other syscalls, kernel-internal waits).
    pub const OTHER: u32 = 5;
    /// Uninterruptible sleep (D state): disk or network file system I/O, `mmap_lock`, a kernel
    /// mutex, a vfork parent. Decided from the scheduler state, whatever the syscall.
    pub const UNINTERRUPTIBLE: u32 = 6;
    pub const COUNT: u32 = 7;
}

/// Which lock a lock wait (`wait_class::LOCK`) waited for, decided from the lock library's
/// slow path on the waiter's stack (see `CodeSite`) or, failing that, from a recorded owner.
pub mod lock_kind {
    /// A lock with a recorded owner whose library was not recognised on the stack (a glibc
    /// mutex in a binary without symbols, a PI futex).
    pub const UNKNOWN: u32 = 0;
    pub const PTHREAD_MUTEX: u32 = 1;
    pub const PTHREAD_RWLOCK_READ: u32 = 2;
    pub const PTHREAD_RWLOCK_WRITE: u32 = 3;
    pub const SEMAPHORE: u32 = 4;
    pub const RUST_MUTEX: u32 = 5;
    pub const RUST_RWLOCK_READ: u32 = 6;
    pub const RUST_RWLOCK_WRITE: u32 = 7;
    pub const RUST_ONCE: u32 = 8;
    pub const PARKING_LOT_MUTEX: u32 = 9;
    pub const PARKING_LOT_RWLOCK_READ: u32 = 10;
    pub const PARKING_LOT_RWLOCK_WRITE: u32 = 11;
    pub const COUNT: u32 = 12;

    /// The name alerts and profiles use.
    pub const fn name(kind: u32) -> &'static str {
        match kind {
            PTHREAD_MUTEX => "pthread_mutex",
            PTHREAD_RWLOCK_READ => "pthread_rwlock (read)",
            PTHREAD_RWLOCK_WRITE => "pthread_rwlock (write)",
            SEMAPHORE => "semaphore",
            RUST_MUTEX => "rust std Mutex",
            RUST_RWLOCK_READ => "rust std RwLock (read)",
            RUST_RWLOCK_WRITE => "rust std RwLock (write)",
            RUST_ONCE => "rust std Once/OnceLock",
            PARKING_LOT_MUTEX => "parking_lot Mutex",
            PARKING_LOT_RWLOCK_READ => "parking_lot RwLock (read)",
            PARKING_LOT_RWLOCK_WRITE => "parking_lot RwLock (write)",
            _ => "lock",
        }
    }

    /// Whether this kind of lock records which thread holds it (glibc mutexes in `__owner`,
    /// rwlocks the writer in `__cur_writer`); the others say "owner not recorded".
    pub const fn records_owner(kind: u32) -> bool {
        matches!(
            kind,
            UNKNOWN | PTHREAD_MUTEX | PTHREAD_RWLOCK_READ | PTHREAD_RWLOCK_WRITE
        )
    }
}

/// Where a futex wait comes from, for the kernel to tell lock waits from idle ones: one row
/// of a per-process table of code ranges, built by userspace from the
/// symbols and `.eh_frame` of the process's modules (`stacks::lock_sites`).
///
/// The kernel looks up the wait's instruction pointer; a `PASS` row (a wait primitive such as
/// glibc's `syscall()` or `__futex_abstimed_wait_common`) says how to find its caller's return
/// address (the `.eh_frame` rule valid in that range), and the walk goes on from there; a
/// `LOCK` row (a lock's slow path) ends the walk with the lock's kind. Anything else ends it
/// as not a lock: unknown code never makes a lock wait.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CodeSite {
    pub start: u64,
    pub len: u32,
    /// `site_verdict::PASS` or `site_verdict::LOCK`.
    pub verdict: u8,
    /// `lock_kind` of a `LOCK` row.
    pub lock_kind: u8,
    /// `PASS` rows: the register the canonical frame address is relative to
    /// (`cfa_reg::SP` or `cfa_reg::BP`).
    pub cfa_reg: u8,
    pub _pad: u8,
    /// `PASS` rows: CFA = register + this; the return address is at CFA - 8.
    pub cfa_offset: i16,
    /// `PASS` rows: the caller's rbp is saved at CFA + this; 0 when rbp is unchanged.
    pub rbp_offset: i16,
    pub _pad2: u32,
}

pub mod site_verdict {
    pub const PASS: u8 = 1;
    pub const LOCK: u8 = 2;
}

pub mod cfa_reg {
    pub const SP: u8 = 0;
    pub const BP: u8 = 1;
}

/// Frames the kernel walks up from the syscall looking for a lock's slow path: deep enough
/// for parking_lot's park chain in a debug build (six wait-primitive frames).
pub const MAX_SITE_DEPTH: usize = 8;
/// Rows kept per code page; a page with more relevant rows keeps the first ones (said by
/// userspace).
pub const SITES_PER_PAGE: usize = 32;
/// Code pages are 4 KiB: the table is looked up by (process, pc >> PAGE_SHIFT).
pub const CODE_PAGE_SHIFT: u32 = 12;

/// Key of the kernel's code-site table: one code page of one process.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CodePageKey {
    pub tgid: u32,
    pub _pad: u32,
    /// Address >> `CODE_PAGE_SHIFT`.
    pub page: u64,
}

/// The rows overlapping one code page (a row spanning pages is in each of them).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CodePageSites {
    pub len: u32,
    pub _pad: u32,
    pub sites: [CodeSite; SITES_PER_PAGE],
}

/// Bits of `task_struct.__state` as `sched_switch` passes it (`prev_state`).
pub mod task_state {
    pub const UNINTERRUPTIBLE: u64 = 0x2;
    /// Set with UNINTERRUPTIBLE for TASK_IDLE: kernel threads and waits that sleep
    /// uninterruptibly only to ignore signals (not counted in the load average): no stall.
    pub const NOLOAD: u64 = 0x400;

    /// A switch-out in uninterruptible sleep that can be a stall: TASK_UNINTERRUPTIBLE and
    /// TASK_KILLABLE (UNINTERRUPTIBLE | WAKEKILL) count, TASK_IDLE does not.
    pub const fn is_uninterruptible_wait(prev_state: u64) -> bool {
        prev_state & (UNINTERRUPTIBLE | NOLOAD) == UNINTERRUPTIBLE
    }
}

/// The wait class of a thread blocked in syscall `nr` (before any owner is known).
pub const fn classify_syscall(nr: u64) -> u32 {
    match nr {
        sysno::FUTEX | sysno::FUTEX_WAIT | sysno::FUTEX_WAITV => wait_class::FUTEX,
        sysno::NANOSLEEP | sysno::CLOCK_NANOSLEEP => wait_class::SLEEP,
        sysno::POLL | sysno::PPOLL | sysno::SELECT | sysno::PSELECT6 => wait_class::POLL,
        sysno::EPOLL_WAIT | sysno::EPOLL_PWAIT | sysno::EPOLL_PWAIT2 => wait_class::POLL,
        sysno::READ | sysno::RECVFROM | sysno::RECVMSG | sysno::ACCEPT | sysno::ACCEPT4 => {
            wait_class::IO
        }
        _ => wait_class::OTHER,
    }
}

/// Largest pid the kernel hands out (PID_MAX_LIMIT on 64-bit).
pub const PID_MAX_LIMIT: u32 = 4 * 1024 * 1024;

/// Who holds the lock a futex waiter waits on, from the first 12 bytes at the futex address.
/// PI futexes keep the owner's TID in the word itself; a glibc mutex keeps it in `__owner` at
/// `uaddr + 8` (only meaningful while the lock word is non-zero). Anything that is not a
/// plausible *other* thread is no owner: condition variables, joins, semaphores.
pub const fn lock_owner(cmd: u64, words: [u32; 3], self_tid: u32) -> Option<u32> {
    let owner = if futex_op::is_pi(cmd) {
        words[0] & futex_op::TID_MASK
    } else if words[0] != 0 {
        words[2]
    } else {
        0
    };
    if owner != 0 && owner != self_tid && owner < PID_MAX_LIMIT {
        Some(owner)
    } else {
        None
    }
}

/// One thread blocked right now: written at switch-out, removed at wake-up.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct InFlight {
    pub start_ns: u64,
    pub uaddr: u64,
    /// User registers at the syscall entry, for unwinding while the thread stays blocked.
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
    pub syscall: u64,
    pub op: u64,
    /// The blocked thread's `task_struct` (kernel address; 0 for entries seeded from
    /// userspace), read at wake-up to tell a release from a kill. Only ever passed to
    /// `bpf_probe_read_kernel`, which cannot fault on a stale pointer.
    pub task: u64,
    pub tgid: u32,
    /// Futex word at block time (PI futexes: owner TID and flags).
    pub futex_val: u32,
    /// Lock owner TID seen at block time, 0 when none.
    pub owner: u32,
    pub class: u32,
    /// Frame-pointer user stack id in `STACKS`, negative when none.
    pub stack_id: i32,
    /// Kernel stack id in `KERNEL_STACKS` for a wait in uninterruptible sleep, negative when
    /// none (every other wait: their kernel side is the syscall itself).
    pub kstack_id: i32,
    /// Which lock (`lock_kind`) when `class` is `LOCK`; `lock_kind::UNKNOWN` otherwise.
    pub lock_kind: u32,
    pub _pad: u32,
}

/// Key of the in-kernel aggregate of short waits.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AggKey {
    pub tgid: u32,
    pub stack_id: i32,
    pub class: u32,
    /// `lock_kind` of a lock wait, so the profile can name the lock.
    pub lock_kind: u32,
    /// The waiting thread's name, not its id: a pool of 2,000 workers blocking at the same
    /// few places is a few keys, not 2,000 x those (the profile names threads anyway).
    pub comm: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct AggValue {
    pub count: u64,
    pub total_ns: u64,
    /// Waits per duration bin (`agg_bin`), so the metrics' wait-time histogram stays exact for
    /// waits summed here. u32: a bin counts one key's waits on one CPU between two drains.
    /// (64 bytes more per entry and CPU: the maps are preallocated, see README Limits.)
    /// Only `aggregate_wait` fills them; the sampled Go stacks leave them 0.
    pub bins: [u32; AGG_BINS],
}

/// Upper bounds (inclusive, ns) of the aggregate's duration bins, 1 ms to 60 s: the metrics'
/// histogram bounds. Bin `AGG_BOUNDS_NS.len()` holds the waits above the last bound. All of
/// them, not only those below --threshold: waits no alert wants (idle waits without
/// --report-idle) are summed here whatever their length.
pub const AGG_BOUNDS_NS: [u64; 15] = [
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
];
pub const AGG_BINS: usize = AGG_BOUNDS_NS.len() + 1;

/// The bin of a wait of `ns`: how many bounds are below it. Four compares (a binary search
/// unrolled on constants), for the sched_waking hot path.
#[inline(always)]
pub const fn agg_bin(ns: u64) -> usize {
    if ns <= 250_000_000 {
        if ns <= 10_000_000 {
            if ns <= 2_500_000 {
                if ns <= 1_000_000 {
                    0
                } else {
                    1
                }
            } else {
                if ns <= 5_000_000 {
                    2
                } else {
                    3
                }
            }
        } else {
            if ns <= 50_000_000 {
                if ns <= 25_000_000 {
                    4
                } else {
                    5
                }
            } else {
                if ns <= 100_000_000 {
                    6
                } else {
                    7
                }
            }
        }
    } else {
        if ns <= 5_000_000_000 {
            if ns <= 1_000_000_000 {
                if ns <= 500_000_000 {
                    8
                } else {
                    9
                }
            } else {
                if ns <= 2_500_000_000 {
                    10
                } else {
                    11
                }
            }
        } else {
            if ns <= 30_000_000_000 {
                if ns <= 10_000_000_000 {
                    12
                } else {
                    13
                }
            } else {
                if ns <= 60_000_000_000 {
                    14
                } else {
                    15
                }
            }
        }
    }
}

/// Registers and a copy of the user stack from `sp` upwards.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct UserStack {
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
    /// Bytes of `bytes` that hold stack memory; 0 when nothing could be copied.
    pub len: u64,
    pub bytes: [u8; STACK_COPY_BYTES],
}

/// Ring-buffer event kinds: every event starts with a `u32` kind.
pub mod event_kind {
    pub const WAIT: u32 = 1;
    pub const FORK: u32 = 2;
    pub const EXIT: u32 = 3;
    pub const SIGNAL: u32 = 4;
    pub const GO_WAIT: u32 = 5;
    pub const GO_PANIC: u32 = 6;
    pub const GO_RECOVERED: u32 = 7;
    pub const GO_FATAL: u32 = 8;
    pub const EXEC: u32 = 9;
    pub const HOLDER_SAMPLE: u32 = 10;
    pub const SHORT_SAMPLE: u32 = 11;
}

/// A wait longer than the threshold that has just ended (sent at wake-up).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct WaitEvent {
    pub kind: u32,
    pub tgid: u32,
    pub tid: u32,
    pub waker_tgid: u32,
    pub waker_tid: u32,
    pub futex_val: u32,
    pub owner: u32,
    pub class: u32,
    pub stack_id: i32,
    pub waker_stack_id: i32,
    /// Syscall the waker was in (futex wake / unlock), or -1 when it was not in a syscall.
    pub waker_syscall: i64,
    pub syscall: u64,
    pub op: u64,
    pub uaddr: u64,
    pub start_ns: u64,
    pub duration_ns: u64,
    /// The waiter's stack, copied only when the waker shares its address space.
    pub waiter: UserStack,
    pub waker: UserStack,
    /// The waiter's kernel stack id in `KERNEL_STACKS` (uninterruptible waits), or negative.
    pub kstack_id: i32,
    /// `lock_kind` of a lock wait (`class == LOCK`).
    pub lock_kind: u32,
}

/// One short wait of a reported class (lock, uninterruptible; any with `--report-idle`) with
/// a copy of the waiter's stack, sent at wake-up for a sample of short waits (at most
/// `SHORT_SAMPLES_PER_WINDOW` per CPU per `SHORT_SAMPLE_WINDOW_NS`): userspace unwinds it with
/// `.eh_frame` and shares the exact sum of its `key` in `AGG0`/`AGG1` among such samples.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ShortSampleEvent {
    pub kind: u32,
    pub _pad: u32,
    /// The aggregate this wait was added to.
    pub key: AggKey,
    pub duration_ns: u64,
    pub waiter: UserStack,
}

/// Short-wait samples per CPU per window: bounds the stack copies (16 KiB each) whatever the
/// wait rate, 80 per second per CPU.
pub const SHORT_SAMPLES_PER_WINDOW: u32 = 8;
pub const SHORT_SAMPLE_WINDOW_NS: u64 = 100_000_000;

/// Per-CPU budget of short-wait samples in the current window.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SampleBudget {
    pub window_end_ns: u64,
    pub left: u32,
    pub _pad: u32,
}

/// Threads the holder sampler looks at: at most this many lock holders at a time.
pub const MAX_SAMPLED_HOLDERS: u32 = 256;

/// Threads stalled away from home whose wait's end the kernel reports (`AWAY_STALLED`): at
/// most this many at a time.
pub const MAX_AWAY_STALLED: u32 = 1024;

/// An on-CPU sample of a thread that holds a contended lock (the `cpu-clock` perf event
/// found it running while userspace had it in `HOLDERS`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct HolderSampleEvent {
    pub kind: u32,
    pub tgid: u32,
    pub tid: u32,
    pub _pad: u32,
    pub time_ns: u64,
    /// Its user registers and stack where the sample found it (kernel code it was running
    /// is left out: the user code that called into it is what holds the lock).
    pub stack: UserStack,
}

/// A thread or process was created (`sched_process_fork`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ForkEvent {
    pub kind: u32,
    pub tgid: u32,
    pub parent_tid: u32,
    pub child_tid: u32,
    pub time_ns: u64,
    pub stack_id: i32,
    pub _pad: u32,
    pub comm: [u8; 16],
    pub creator: UserStack,
}

/// A thread exited (`sched_process_exit`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExitEvent {
    pub kind: u32,
    pub tgid: u32,
    pub tid: u32,
    /// 1 when this was the last thread of its process.
    pub group_dead: u32,
    pub time_ns: u64,
    /// Syscall the thread was in when it died: `exit` (60) for a thread that ended itself,
    /// `exit_group` (231) for the thread that ended the process, anything else when killed.
    pub syscall: i64,
    /// First syscall argument: the status for exit / exit_group.
    pub arg0: u64,
    pub comm: [u8; 16],
}

/// A process ran a new program (`sched_process_exec`; sent in sidecar mode only, for every
/// process on the host, so userspace can start or stop watching it and find Go programs).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecEvent {
    pub kind: u32,
    pub tgid: u32,
    pub time_ns: u64,
    pub comm: [u8; 16],
}

/// A signal whose default action kills the process is being delivered (`signal_deliver`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SignalEvent {
    pub kind: u32,
    pub tgid: u32,
    pub tid: u32,
    pub sig: i32,
    pub code: i32,
    pub _pad: u32,
    pub time_ns: u64,
}

/// Where a Go process keeps what the Go probes read (byte offsets, from its binary), and how
/// often its short waits have their stacks walked.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GoProcess {
    pub goid_offset: u64,
    pub gopc_offset: u64,
    /// `g.m` (48 in every version so far).
    pub m_offset: u64,
    /// `m.curg`: the user goroutine of a thread running on the system stack (g0).
    pub m_curg_offset: u64,
    /// `g.sched.pc` and `g.sched.bp` (`g.sched` plus the `gobuf` field): where a parked
    /// goroutine resumes (inside `gopark`) and `gopark`'s frame pointer, both saved by `mcall`.
    /// The parked goroutine's stack is walked from there, by whoever wakes it.
    pub sched_pc_offset: u64,
    pub sched_bp_offset: u64,
    /// Short waits at least this long always have their stack walked for the profile (they
    /// carry its weight); of the shorter ones, one in `sample_period` (chosen at random; 0:
    /// none), counted `sample_period` times.
    pub sample_all_ns: u64,
    pub sample_period: u32,
    pub _pad: u32,
    /// Parks of this process so far, counted by `gopark` (not atomically: a rate for the
    /// park-rate guard, where a lost increment does not matter).
    pub parks: u64,
    /// `g.labels` (pprof labels), 0 when unknown: events carry the pointer it held then.
    pub labels_offset: u64,
}

/// A parked goroutine, keyed by (tgid, goid).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GoKey {
    pub tgid: u32,
    pub _pad: u32,
    pub goid: u64,
}

/// What `runtime.gopark` records: no stack (it is walked later, only when needed, from the
/// goroutine's saved context at `g`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GoParked {
    pub start_ns: u64,
    /// Creation pc of the goroutine (`g.gopc`): "created by".
    pub gopc: u64,
    /// Address of the goroutine's `g`: its saved registers (`g.sched`) start the stack walk.
    pub g: u64,
    pub reason: u32,
    pub _pad: u32,
    /// `gopark`'s lock argument: for a semaphore wait (sync.Mutex, RWMutex, WaitGroup) the
    /// lock of its semaphore's wait-queue root, which tells which lock waits belong together
    /// (0 when unknown).
    pub lock: u64,
}

/// Key of the exact in-kernel totals of short goroutine waits, per wait reason.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GoAggKey {
    pub tgid: u32,
    pub reason: u32,
}

/// Frames of a goroutine stack walked in the kernel (frame pointers from `g.sched`).
pub const GO_STACK_DEPTH: usize = 32;

/// A goroutine stack, innermost first: `pcs[0]` is the pc it resumes at, the others return
/// addresses. Slots from `len` on are zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GoStack {
    pub len: u32,
    /// Nonzero when the frame chain went on past `GO_STACK_DEPTH` frames (the outer callers
    /// are missing).
    pub truncated: u32,
    pub pcs: [u64; GO_STACK_DEPTH],
}

/// Key of the sampled short goroutine waits, summed under their stack, each weighted by the
/// inverse of its chance of being sampled (see `GoProcess`): an estimate that userspace scales
/// to the exact per-reason totals.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GoSampleKey {
    pub tgid: u32,
    pub reason: u32,
    pub stack: GoStack,
}

/// Bytes of a Go panic or throw message carried in an event.
pub const GO_MESSAGE_BYTES: usize = 256;

/// A goroutine wait longer than the threshold that has just ended (at `runtime.ready`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct GoWaitEvent {
    pub kind: u32,
    pub tgid: u32,
    pub tid: u32,
    pub reason: u32,
    pub goid: u64,
    pub waker_goid: u64,
    pub gopc: u64,
    pub waker_stack_id: i32,
    pub _pad: u32,
    pub start_ns: u64,
    pub duration_ns: u64,
    /// `GoParked::lock` of the wait.
    pub lock: u64,
    /// Address of the woken goroutine's `g`, and its `g.labels` while it waited (before it
    /// runs again): its pprof labels are read from there, if the `g` still holds them.
    pub g: u64,
    pub labels: u64,
    /// The woken goroutine's stack where it parked, walked by the waker.
    pub stack: GoStack,
}

/// `runtime.gopanic`, `runtime.throw` / `runtime.fatal`, or `runtime.recovery`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GoPanicEvent {
    pub kind: u32,
    pub tgid: u32,
    pub tid: u32,
    pub stack_id: i32,
    pub goid: u64,
    pub time_ns: u64,
    /// Address of the goroutine's `g`, and its `g.labels` at the panic.
    pub g: u64,
    pub labels: u64,
    /// Bytes of `message` that hold text; 0 when the value was not a string or error.
    pub message_len: u64,
    pub message: [u8; GO_MESSAGE_BYTES],
}

/// Indexes of the per-CPU `COUNTERS` array: nothing is dropped silently.
pub mod counter {
    /// Ring buffer full: an event was lost.
    pub const EVENTS_DROPPED: u32 = 0;
    /// Aggregate map full: a short wait was not counted.
    pub const AGG_DROPPED: u32 = 1;
    /// In-flight map update failed.
    pub const INFLIGHT_DROPPED: u32 = 2;
    /// No user stack id (stack map full or a hash collision).
    pub const STACK_MISSING: u32 = 3;
    /// Waits recorded at switch-out.
    pub const WAITS_STARTED: u32 = 4;
    /// Waits sent as events (over the threshold).
    pub const WAITS_LONG: u32 = 5;
    /// Goroutine parks seen at runtime.gopark.
    pub const GO_PARKS: u32 = 6;
    /// Goroutine short-wait aggregate full.
    pub const GO_AGG_DROPPED: u32 = 7;
    /// Sidecar mode: a new process could not be watched (WATCHED full).
    pub const WATCH_FULL: u32 = 8;
    /// No kernel stack id for an uninterruptible wait (map full or a hash collision).
    pub const KSTACK_MISSING: u32 = 9;
    /// A short-wait stack sample was taken (sent through the ring buffer).
    pub const SHORT_SAMPLES: u32 = 10;
    /// A short-wait stack sample was not sent: the ring buffer was a quarter full or more.
    pub const SHORT_SAMPLES_LOST: u32 = 11;
    pub const COUNT: u32 = 12;
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    unsafe impl aya::Pod for InFlight {}
    unsafe impl aya::Pod for CodePageKey {}
    unsafe impl aya::Pod for CodePageSites {}
    unsafe impl aya::Pod for AggKey {}
    unsafe impl aya::Pod for AggValue {}
    unsafe impl aya::Pod for GoProcess {}
    unsafe impl aya::Pod for GoKey {}
    unsafe impl aya::Pod for GoParked {}
    unsafe impl aya::Pod for GoAggKey {}
    unsafe impl aya::Pod for GoSampleKey {}
}
