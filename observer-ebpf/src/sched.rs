//! Blocking waits from scheduler events: start at switch-out, end at wake-up.
//!
//! The end is taken at `sched_waking` rather than at switch-in: the waker is the current task
//! there (the thread that released the lock), the duration is the wait itself without run-queue
//! latency, and no program is needed on the switch-in side.

use aya_ebpf::{
    bindings::{BPF_F_FAST_STACK_CMP, BPF_F_USER_STACK, BPF_RB_AVAIL_DATA, BPF_RB_RING_SIZE},
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, generated::bpf_probe_read_user},
    macros::{btf_tracepoint, map, tracepoint},
    maps::PerCpuArray,
    programs::{tracing::StackIdContext as _, BtfTracePointContext, TracePointContext},
};
use observer_common::{
    classify_syscall, counter, event_kind, futex_op, is_go_scheduler_wait, lock_kind, lock_owner,
    sysno, task_state, wait_class, watch_flag, AggKey, InFlight, SampleBudget, ShortSampleEvent,
    WaitEvent, PID_MAX_LIMIT, SHORT_SAMPLES_PER_WINDOW, SHORT_SAMPLE_WINDOW_NS,
};

use crate::kernel_log::{diag, site};
use crate::lock_sites;
use crate::{
    agg_side, aggregate_wait, bump, read_global, read_user_u64, stacks, task_is_being_killed,
    task_is_exiting, AGG0, AGG1, AWAY_STALLED, EVENTS, IN_FLIGHT, JOINED, KERNEL_STACKS,
    REPORT_IDLE, STACKS, THRESHOLD_NS, WAKING_COMM_OFFSET, WAKING_PID_OFFSET,
};

const USER_STACK_FLAGS: u64 = (BPF_F_USER_STACK | BPF_F_FAST_STACK_CMP) as u64;

/// This CPU's budget of short-wait stack samples in the current window (see `take_sample`).
#[map]
static SAMPLE_BUDGET: PerCpuArray<SampleBudget> = PerCpuArray::with_max_entries(1, 0);

#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch(ctx: BtfTracePointContext) -> u32 {
    let _ = try_sched_switch(&ctx);
    0
}

fn try_sched_switch(ctx: &BtfTracePointContext) -> Result<(), i64> {
    // sched_switch(bool preempt, prev, next, unsigned int prev_state); current == prev.
    let preempt: u64 = ctx.arg(0);
    let prev_state: u64 = ctx.arg(3);
    if preempt & 1 != 0 || prev_state & 0xffff_ffff == 0 {
        return Ok(()); // preempted or yielding: runnable, not waiting
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let (tgid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    if tid == 0 {
        return Ok(());
    }
    let Some(flags) = crate::watch_flags(tgid) else {
        return Ok(());
    };
    let task: u64 = ctx.arg(1);
    if task_is_exiting(task) {
        return Ok(());
    }
    let regs = stacks::current_user_regs().ok_or(-1i64)?;
    let syscall = regs.orig_rax;
    // A Go runtime's scheduler waits are most of a busy Go service's context switches and
    // are never lock waits (userspace judges them idle): skipped here, they cost no map
    // update at switch-out and a miss at wake-up. Sleeps in the kernel (D state) still count.
    if flags & watch_flag::GO_RUNTIME != 0
        && is_go_scheduler_wait(syscall)
        && !task_state::is_uninterruptible_wait(prev_state)
        && read_global(&REPORT_IDLE) == 0
    {
        return Ok(());
    }
    let mut entry = InFlight {
        start_ns: 0,
        uaddr: 0,
        ip: regs.rip,
        sp: regs.rsp,
        bp: regs.rbp,
        syscall,
        op: 0,
        task,
        tgid,
        futex_val: 0,
        owner: 0,
        class: classify_syscall(syscall),
        stack_id: -1,
        kstack_id: -1,
        lock_kind: lock_kind::UNKNOWN,
        _pad: 0,
    };
    // Uninterruptible sleep is a wait in the kernel whatever the syscall (or a page fault):
    // its kernel stack says on what. Futex waits sleep interruptibly, so no lock is lost here.
    if task_state::is_uninterruptible_wait(prev_state) {
        entry.class = wait_class::UNINTERRUPTIBLE;
        entry.kstack_id = match ctx.get_stackid(&KERNEL_STACKS, 0) {
            Ok(id) => id as i32,
            Err(_) => {
                bump(counter::KSTACK_MISSING);
                -1
            }
        };
    } else {
        classify_futex(&mut entry, &regs, tid);
    }
    // A frame-pointer stack id costs about as much as the rest of this program (measured:
    // 918 -> 464 ns per run under a contended mutex), so only uninterruptible waits (few, and
    // their stack id is their profile key) and idle waits under --report-idle take one. Lock
    // waits are many and short: the profile gets their full stacks from the sampled short
    // waits (`send_sample`, unwound with .eh_frame), long ones carry a copy of the stack, and
    // stalls and deadlocks unwind from the saved registers. Idle waits without --report-idle
    // are only counted.
    let wants_stack_id = entry.class == wait_class::UNINTERRUPTIBLE
        || (entry.class != wait_class::LOCK && read_global(&REPORT_IDLE) != 0);
    entry.stack_id = if wants_stack_id {
        match ctx.get_stackid(&STACKS, USER_STACK_FLAGS) {
            Ok(id) => id as i32,
            Err(_) => {
                bump(counter::STACK_MISSING);
                -1
            }
        }
    } else {
        -1
    };
    // SAFETY: no preconditions.
    entry.start_ns = unsafe { bpf_ktime_get_ns() };
    if IN_FLIGHT.insert(&tid, &entry, 0).is_err() {
        bump(counter::INFLIGHT_DROPPED);
    }
    bump(counter::WAITS_STARTED);
    Ok(())
}

/// A futex wait: its word, and for a lock, who holds it.
#[inline(always)]
fn classify_futex(entry: &mut InFlight, regs: &aya_ebpf::bindings::pt_regs, tid: u32) {
    let syscall = entry.syscall;
    let tgid = entry.tgid;
    match syscall {
        sysno::FUTEX | sysno::FUTEX_WAIT => {
            entry.uaddr = regs.rdi;
            entry.op = if syscall == sysno::FUTEX {
                regs.rsi & futex_op::CMD_MASK
            } else {
                futex_op::WAIT
            };
            if futex_op::is_wait(entry.op) {
                find_owner(entry, regs, tid);
            } else {
                diag!(
                    info,
                    site::FUTEX_UNEXPECTED_OP,
                    "pid {} tid {}: blocked in futex op {}, not a wait: not classified ({} suppressed)",
                    tgid,
                    tid,
                    entry.op
                );
            }
        }
        sysno::FUTEX_WAITV => {
            // struct futex_waitv { u64 val; u64 uaddr; u32 flags; u32 reserved; }[]: first uaddr.
            entry.uaddr = read_user_u64(regs.rdi.wrapping_add(8)).unwrap_or(0);
        }
        _ => {}
    }
}

/// Reads the futex word and decides whether the wait is for a lock: from the waiter's call
/// chain when the process has a code-site table (the lock's kind, then its owner where that
/// kind records one), else from an owner recorded in the word's neighbours (glibc mutex, PI).
/// The waiter is the current task here, so its memory is the current address space.
#[inline(always)]
fn find_owner(entry: &mut InFlight, regs: &aya_ebpf::bindings::pt_regs, self_tid: u32) {
    let mut words = [0u32; 3];
    // SAFETY: bpf_probe_read_user never faults; failure leaves the wait unclassified.
    let rc = unsafe {
        bpf_probe_read_user(
            words.as_mut_ptr().cast(),
            core::mem::size_of_val(&words) as u32,
            entry.uaddr as *const core::ffi::c_void,
        )
    };
    if rc == 0 {
        entry.futex_val = words[0];
    }
    if let Some(kind) = lock_sites::lock_kind_at(entry.tgid, regs.rip, regs.rsp, regs.rbp) {
        entry.class = wait_class::LOCK;
        entry.lock_kind = kind;
        let owner = match kind {
            lock_kind::PTHREAD_MUTEX if rc == 0 => lock_owner(entry.op, words, self_tid),
            // glibc rwlock: readers wait on `__wrphase_futex` (lock + 8), writers on
            // `__writers_futex` (lock + 12); `__cur_writer` is at lock + 24. A writer waiting
            // for readers waits at + 8 and reads `__pad4` here, 0: no owner, as is true.
            lock_kind::PTHREAD_RWLOCK_READ => read_user_u32(entry.uaddr.wrapping_add(16)),
            lock_kind::PTHREAD_RWLOCK_WRITE => read_user_u32(entry.uaddr.wrapping_add(12)),
            _ => None,
        };
        if let Some(owner) = owner.filter(|&o| o != self_tid && o != 0 && o < PID_MAX_LIMIT) {
            entry.owner = owner;
        }
        return;
    }
    if rc != 0 {
        diag!(
            info,
            site::FUTEX_WORDS_UNREADABLE,
            "pid {} tid {}: futex words at {:x} unreadable (error {}): lock owner unknown ({} suppressed)",
            entry.tgid,
            self_tid,
            entry.uaddr,
            rc
        );
        return;
    }
    if let Some(owner) = lock_owner(entry.op, words, self_tid) {
        entry.owner = owner;
        entry.class = wait_class::LOCK;
    }
}

#[inline(always)]
fn read_user_u32(addr: u64) -> Option<u32> {
    let mut v = 0u32;
    // SAFETY: bpf_probe_read_user never faults; target memory is only read.
    let rc = unsafe {
        bpf_probe_read_user(
            (&mut v as *mut u32).cast(),
            4,
            addr as *const core::ffi::c_void,
        )
    };
    (rc == 0).then_some(v)
}

#[tracepoint(category = "sched", name = "sched_waking")]
pub fn sched_waking(ctx: TracePointContext) -> u32 {
    let _ = try_sched_waking(&ctx);
    0
}

fn try_sched_waking(ctx: &TracePointContext) -> Result<(), i64> {
    let off = read_global(&WAKING_PID_OFFSET) as usize;
    // SAFETY: offset of `pid` in this tracepoint's record, read from its tracefs format.
    let tid: u32 = unsafe { ctx.read_at(off) }.map_err(|e| e as i64)?;
    // SAFETY: the value is copied out before the entry is removed.
    let entry = match unsafe { IN_FLIGHT.get(&tid) } {
        Some(e) => *e,
        None => return Ok(()), // not a watched thread, or not blocked
    };
    let _ = IN_FLIGHT.remove(&tid);
    // Woken to die, not granted anything: neither a lock wait nor its time in the profile.
    if task_is_being_killed(entry.task) {
        return Ok(());
    }
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let duration_ns = now.saturating_sub(entry.start_ns);
    let pid_tgid = bpf_get_current_pid_tgid();
    let (waker_tgid, waker_tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);

    // pthread_join waits on the joined thread's tid word; the exiting thread wakes it.
    if entry.class == wait_class::FUTEX && entry.futex_val == waker_tid && waker_tgid == entry.tgid
    {
        let _ = JOINED.insert(&waker_tid, &1, 0);
    }

    let wanted = entry.class == wait_class::LOCK
        || entry.class == wait_class::UNINTERRUPTIBLE
        || read_global(&REPORT_IDLE) != 0;
    // A thread stalled away from home (marked by userspace) has its wait's end sent whatever
    // its class and length: the stall's end names who woke it. One lookup, only here.
    if (duration_ns < read_global(&THRESHOLD_NS) || !wanted)
        // SAFETY: read-only lookup of a plain u32 value.
        && unsafe { AWAY_STALLED.get(&tid) }.copied() != Some(entry.tgid)
    {
        let key = aggregate(ctx, &entry, duration_ns);
        // The waiter's stack can be copied only from its own address space; a wait ended by
        // a timer or another process is counted but never sampled.
        if wanted && waker_tgid == entry.tgid && take_sample(now) {
            send_sample(&key, &entry, duration_ns);
        }
        return Ok(());
    }
    bump(counter::WAITS_LONG);
    let Some(mut slot) = EVENTS.reserve::<WaitEvent>(0) else {
        bump(counter::EVENTS_DROPPED);
        let _ = aggregate(ctx, &entry, duration_ns); // keep its time in the profile
        return Ok(());
    };
    let ev = slot.as_mut_ptr();
    let waker_regs = stacks::current_user_regs();
    let waker_syscall = waker_regs.map(|r| r.orig_rax as i64).unwrap_or(-1);
    // The releaser's stack only means something when it is in a futex call (unlock / wake);
    // otherwise the wake came from a timer, a signal or an interrupt.
    let waker_in_futex = waker_syscall == sysno::FUTEX as i64;
    let waker_stack_id = if waker_in_futex {
        ctx.get_stackid(&STACKS, USER_STACK_FLAGS)
            .map(|id| id as i32)
            .unwrap_or(-1)
    } else {
        -1
    };
    // SAFETY: `ev` points at a reservation the size of WaitEvent; only scalar fields are
    // written here and the stack copies are bounded by their arrays.
    unsafe {
        (*ev).kind = event_kind::WAIT;
        (*ev).tgid = entry.tgid;
        (*ev).tid = tid;
        (*ev).waker_tgid = waker_tgid;
        (*ev).waker_tid = waker_tid;
        (*ev).futex_val = entry.futex_val;
        (*ev).owner = entry.owner;
        (*ev).class = entry.class;
        (*ev).stack_id = entry.stack_id;
        (*ev).waker_stack_id = waker_stack_id;
        (*ev).waker_syscall = waker_syscall;
        (*ev).syscall = entry.syscall;
        (*ev).op = entry.op;
        (*ev).uaddr = entry.uaddr;
        (*ev).start_ns = entry.start_ns;
        (*ev).duration_ns = duration_ns;
        (*ev).kstack_id = entry.kstack_id;
        (*ev).lock_kind = entry.lock_kind;
        // Threads share one address space: the waiter's stack is readable from the waker.
        if waker_tgid == entry.tgid {
            stacks::copy_user_stack(&raw mut (*ev).waiter, entry.ip, entry.sp, entry.bp);
        } else {
            stacks::copy_user_stack(&raw mut (*ev).waiter, entry.ip, 0, entry.bp);
        }
        match (waker_in_futex, waker_regs) {
            (true, Some(r)) => stacks::copy_user_stack(&raw mut (*ev).waker, r.rip, r.rsp, r.rbp),
            _ => stacks::copy_user_stack(&raw mut (*ev).waker, 0, 0, 0),
        }
    }
    slot.submit(0);
    Ok(())
}

/// Whether to copy this short wait's stack: the first `SHORT_SAMPLES_PER_WINDOW` short waits
/// of each `SHORT_SAMPLE_WINDOW_NS` window on this CPU. A lookup and a decrement; a contended
/// lock at a million waits a second costs at most 80 stack copies a second per CPU, and a rare
/// wait is always sampled, so its stack is known exactly.
#[inline(always)]
fn take_sample(now: u64) -> bool {
    let Some(b) = SAMPLE_BUDGET.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's slot; nothing else runs on this CPU while the program does.
    unsafe {
        if now >= (*b).window_end_ns {
            (*b).window_end_ns = now + SHORT_SAMPLE_WINDOW_NS;
            (*b).left = SHORT_SAMPLES_PER_WINDOW;
        }
        if (*b).left == 0 {
            return false;
        }
        (*b).left -= 1;
    }
    true
}

/// Sends one short wait with a copy of the waiter's stack (the current address space is its
/// own: the waker is in the same process), for userspace to unwind and weigh.
#[inline(always)]
fn send_sample(key: &AggKey, entry: &InFlight, duration_ns: u64) {
    // Samples only ever take the first quarter of the ring: when userspace falls behind (a big
    // binary being symbolized), long waits and thread events still find room.
    let pending = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    if pending > EVENTS.query(BPF_RB_RING_SIZE as u64) / 4 {
        bump(counter::SHORT_SAMPLES_LOST);
        return;
    }
    let Some(mut slot) = EVENTS.reserve::<ShortSampleEvent>(0) else {
        bump(counter::SHORT_SAMPLES_LOST);
        return;
    };
    let ev = slot.as_mut_ptr();
    // SAFETY: scalar writes into a ShortSampleEvent-sized reservation; the stack copy is
    // bounded by its array.
    unsafe {
        (*ev).kind = event_kind::SHORT_SAMPLE;
        (*ev)._pad = 0;
        (*ev).key = *key;
        (*ev).duration_ns = duration_ns;
        stacks::copy_user_stack(&raw mut (*ev).waiter, entry.ip, entry.sp, entry.bp);
    }
    slot.submit(0);
    bump(counter::SHORT_SAMPLES);
}

#[inline(always)]
fn aggregate(ctx: &TracePointContext, entry: &InFlight, duration_ns: u64) -> AggKey {
    let off = read_global(&WAKING_COMM_OFFSET) as usize;
    // SAFETY: offset of the woken task's `comm` in this tracepoint's record (tracefs format).
    let comm: [u8; 16] = unsafe { ctx.read_at(off) }.unwrap_or([0; 16]);
    let key = AggKey {
        tgid: entry.tgid,
        stack_id: entry.stack_id,
        class: entry.class,
        lock_kind: entry.lock_kind,
        comm,
    };
    // One call per map: the verifier keeps each helper call's map a constant.
    if agg_side() == 0 {
        aggregate_wait(&AGG0, &key, duration_ns, counter::AGG_DROPPED);
    } else {
        aggregate_wait(&AGG1, &key, duration_ns, counter::AGG_DROPPED);
    }
    key
}
