//! observer's kernel programs.
//!
//! Why scheduler events and not the futex syscall tracepoints: any program on `sys_enter/exit`
//! moves every task on the host to the slow syscall path (measured in BENCHMARKS.md). A thread
//! that blocks always passes through `sched_switch`, where its syscall registers tell what it
//! waits for, and through `sched_waking`, where the current task is whoever woke it.
//!
//! Hot path (every context switch and wake-up on the host): one hash lookup that fails for
//! unwatched tasks. Watched threads pay a register read, a stack id and an in-flight entry per
//! block; waits shorter than the threshold are summed in a per-CPU map. Only rare things go
//! through the ring buffer: long waits (with register + stack copies for `.eh_frame`
//! unwinding), thread creation and death, fatal signals.
#![no_std]
#![no_main]

mod golang;
mod holders;
mod kernel_log;
mod lock_sites;
mod sched;
mod signals;
mod stacks;
mod threads;

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf, StackTrace},
};
use observer_common::{agg_bin, counter, AggKey, AggValue, InFlight, AGG_BINS, MAX_AWAY_STALLED};

/// Waits at least this long are sent as events instead of being summed in `AGG0`/`AGG1`.
#[no_mangle]
static THRESHOLD_NS: u64 = 100_000_000;

/// 1 with `--report-idle`: long idle waits (condvars, sleeps, poll) are sent as events too.
/// Otherwise only waits on a held lock are, and the rest are only summed: idle threads of a
/// busy process would flood the ring buffer with stack copies nobody reads.
#[no_mangle]
static REPORT_IDLE: u32 = 0;

/// 1 for `observer sidecar`: a watched process's child processes are watched from their
/// birth (in the kernel, so none of their first waits is missed), and every exec on the host is
/// sent to userspace, which decides what to watch.
#[no_mangle]
static SIDECAR: u32 = 0;

/// Field offsets of the classic tracepoints, read from tracefs by the loader.
#[no_mangle]
static WAKING_PID_OFFSET: u32 = 24;
#[no_mangle]
static WAKING_COMM_OFFSET: u32 = 8;
#[no_mangle]
static FORK_CHILD_PID_OFFSET: u32 = 20;
#[no_mangle]
static EXIT_GROUP_DEAD_OFFSET: u32 = 32;
#[no_mangle]
static DELIVER_SIG_OFFSET: u32 = 8;
#[no_mangle]
static DELIVER_CODE_OFFSET: u32 = 16;
#[no_mangle]
static DELIVER_HANDLER_OFFSET: u32 = 24;

/// Offsets in `task_struct`, read from the kernel's BTF by the loader (no CO-RE from Rust).
#[no_mangle]
static TASK_FLAGS_OFFSET: u32 = 0;
#[no_mangle]
static TASK_PENDING_SIGNAL_OFFSET: u32 = 0;

/// Processes (tgids) being observed; sized for a whole host in sidecar mode (pid_max is
/// 32768 by default; a full map only means a process is not watched, and is counted).
#[map]
static WATCHED: HashMap<u32, u32> = HashMap::with_max_entries(32768, 0);

/// Threads blocked right now, by tid. LRU: a thread that dies blocked must not leak an entry.
#[map]
static IN_FLIGHT: LruHashMap<u32, InFlight> = LruHashMap::with_max_entries(32768, 0);

/// Which copy of each aggregate map (`AGG0`/`AGG1`, `GO_AGG0`/`GO_AGG1`,
/// `GO_SAMPLES0`/`GO_SAMPLES1`) the programs add to: slot 0 holds 0 or 1. Userspace flips it,
/// waits until no program that read the old value is still running (an RCU grace period),
/// then reads and empties the other copy, which nothing writes any more. With one map, an
/// update landing between userspace's read of a key and its delete was lost without a trace.
#[map]
static AGG_SIDE: Array<u32> = Array::with_max_entries(1, 0);

/// Short waits summed by (process, thread name, stack, class); two copies, see `AGG_SIDE`.
#[map]
static AGG0: PerCpuHashMap<AggKey, AggValue> = PerCpuHashMap::with_max_entries(16384, 0);
#[map]
static AGG1: PerCpuHashMap<AggKey, AggValue> = PerCpuHashMap::with_max_entries(16384, 0);

/// Threads that were waited for by a joiner when they exited (tid -> 1).
/// Threads userspace found stalled away from home (tid -> tgid): when such a thread's idle
/// wait ends, the wait is sent like a long lock wait, so the stall's end names its waker.
#[map]
static AWAY_STALLED: HashMap<u32, u32> = HashMap::with_max_entries(MAX_AWAY_STALLED, 0);

#[map]
static JOINED: LruHashMap<u32, u32> = LruHashMap::with_max_entries(8192, 0);

#[map]
static STACKS: StackTrace = StackTrace::with_max_entries(16384, 0);

/// Kernel stacks of waits in uninterruptible sleep: few distinct ones (the kernel's wait
/// sites), so a small table; a full one or a collision loses the stack, counted.
#[map]
static KERNEL_STACKS: StackTrace = StackTrace::with_max_entries(2048, 0);

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

#[inline(always)]
fn read_global<T: Copy>(g: &'static T) -> T {
    // SAFETY: globals are plain data the loader may rewrite before load; volatile keeps the
    // compiler from folding the default value.
    unsafe { core::ptr::read_volatile(g) }
}

#[inline(always)]
fn bump(index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU while the program runs.
        unsafe { *slot += 1 };
    }
}

/// The copy of the aggregate maps to add to now (see `AGG_SIDE`).
#[inline(always)]
fn agg_side() -> u32 {
    AGG_SIDE.get(0).copied().unwrap_or(0) & 1
}

const _: () = assert!(AGG_BINS.is_power_of_two());

/// Adds one wait to a per-CPU (key -> count, total ns, bins) aggregate; a full map is counted in
/// `drop_counter`, never silent.
#[inline(always)]
fn aggregate_wait<K>(
    map: &PerCpuHashMap<K, AggValue>,
    key: &K,
    duration_ns: u64,
    drop_counter: u32,
) {
    // agg_bin is below AGG_BINS by construction; the mask (a power of two) shows the verifier
    // without a branch.
    let bin = agg_bin(duration_ns) & (AGG_BINS - 1);
    match map.get_ptr_mut(key) {
        // SAFETY: this CPU's slot of a per-CPU value.
        Some(v) => unsafe {
            (*v).count += 1;
            (*v).total_ns += duration_ns;
            (*v).bins[bin] += 1;
        },
        None => {
            let mut v = AggValue {
                count: 1,
                total_ns: duration_ns,
                bins: [0; AGG_BINS],
            };
            v.bins[bin] = 1;
            if map
                .insert(key, &v, aya_ebpf::bindings::BPF_NOEXIST as u64)
                .is_err()
            {
                add_after_lost_race(map, key, &v, Some(bin), drop_counter);
            }
        }
    }
}

/// An insert of a new key failed: another CPU may have inserted the same key between our
/// lookup and our insert (EEXIST), in which case the wait is added to it (in duration bin
/// `bin`, if the map keeps bins); only a full map loses it, and that is counted.
#[inline(always)]
fn add_after_lost_race<K>(
    map: &PerCpuHashMap<K, AggValue>,
    key: &K,
    v: &AggValue,
    bin: Option<usize>,
    drop_counter: u32,
) {
    match map.get_ptr_mut(key) {
        // SAFETY: this CPU's slot of a per-CPU value.
        Some(slot) => unsafe {
            (*slot).count += v.count;
            (*slot).total_ns = (*slot).total_ns.saturating_add(v.total_ns);
            if let Some(bin) = bin {
                (*slot).bins[bin & (AGG_BINS - 1)] += v.count as u32;
            }
        },
        None => {
            bump(drop_counter);
            let map = if drop_counter == counter::AGG_DROPPED {
                "AGG"
            } else {
                "GO_AGG/GO_SAMPLES"
            };
            kernel_log::diag!(
                warn,
                kernel_log::site::AGGREGATE_FULL,
                "map {} full: a short wait was not summed ({} suppressed)",
                map
            );
        }
    }
}

/// A u64 of the current task's user memory; `None` when it cannot be read (never faults).
#[inline(always)]
fn read_user_u64(addr: u64) -> Option<u64> {
    let mut v = 0u64;
    // SAFETY: bpf_probe_read_user never faults; target memory is only read.
    let rc = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_user(
            (&mut v as *mut u64).cast(),
            8,
            addr as *const core::ffi::c_void,
        )
    };
    (rc == 0).then_some(v)
}

/// A plain value at a kernel address; `None` when it cannot be read (never faults, also
/// not on a stale pointer).
#[inline(always)]
fn read_kernel<T: Copy + Default>(addr: u64) -> Option<T> {
    let mut v = T::default();
    // SAFETY: bpf_probe_read_kernel never faults; `v` is a plain value of the size passed.
    let rc = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_kernel(
            (&mut v as *mut T).cast(),
            core::mem::size_of::<T>() as u32,
            addr as *const core::ffi::c_void,
        )
    };
    (rc == 0).then_some(v)
}

/// `PF_EXITING` in `task_struct.flags`: the thread is in do_exit. Its remaining switches
/// (the last one after `sched_process_exit` above all) are not waits, and nothing would
/// remove their entries.
const PF_EXITING: u32 = 0x4;

#[inline(always)]
fn task_is_exiting(task: u64) -> bool {
    let off = u64::from(read_global(&TASK_FLAGS_OFFSET));
    read_kernel::<u32>(task.wrapping_add(off)).is_some_and(|f| f & PF_EXITING != 0)
}

/// SIGKILL queued for the thread itself: the kernel's `__fatal_signal_pending`. Every way a
/// process dies with threads still in it (kill -9, a fatal signal's default action,
/// exit_group, a core dump) queues SIGKILL on each of them before waking them.
#[inline(always)]
fn task_is_being_killed(task: u64) -> bool {
    const SIGKILL_BIT: u64 = 1 << (9 - 1);
    if task == 0 {
        return false;
    }
    let off = u64::from(read_global(&TASK_PENDING_SIGNAL_OFFSET));
    read_kernel::<u64>(task.wrapping_add(off)).is_some_and(|s| s & SIGKILL_BIT != 0)
}

#[inline(always)]
fn is_watched(tgid: u32) -> bool {
    // SAFETY: read-only lookup of a plain u32 value.
    unsafe { WATCHED.get(&tgid).is_some() }
}

/// The `watch_flag`s of a watched process, `None` when it is not watched.
#[inline(always)]
fn watch_flags(tgid: u32) -> Option<u32> {
    // SAFETY: read-only lookup of a plain u32 value.
    unsafe { WATCHED.get(&tgid).copied() }
}

#[unsafe(link_section = "license")]
#[no_mangle]
static LICENSE: [u8; 4] = *b"GPL\0";

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
