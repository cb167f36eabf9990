//! Thread creation and death.

use aya_ebpf::{
    bindings::{BPF_F_FAST_STACK_CMP, BPF_F_USER_STACK},
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::tracepoint,
    programs::{tracing::StackIdContext as _, TracePointContext},
};
use observer_common::{counter, event_kind, ExecEvent, ExitEvent, ForkEvent};

use crate::kernel_log::{diag, site};
use crate::{
    bump, is_watched, read_global, read_user_u64, stacks, EVENTS, EXIT_GROUP_DEAD_OFFSET,
    FORK_CHILD_PID_OFFSET, IN_FLIGHT, SIDECAR, STACKS, WATCHED,
};

const CLONE_THREAD: u64 = 0x0001_0000;
const SYS_CLONE: u64 = 56;
const SYS_CLONE3: u64 = 435;

/// `sched_process_fork` runs in the parent: its stack is the creation site (pthread_create).
#[tracepoint(category = "sched", name = "sched_process_fork")]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    let _ = try_fork(&ctx);
    0
}

fn try_fork(ctx: &TracePointContext) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let (tgid, parent_tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    if !is_watched(tgid) {
        return Ok(());
    }
    let regs = stacks::current_user_regs().ok_or(-1i64)?;
    // Only threads of the watched process: clone(CLONE_THREAD) / clone3 with it in the flags.
    let flags = match regs.orig_rax {
        SYS_CLONE => regs.rdi,
        // clone_args.flags is the first field of clone3's argument.
        SYS_CLONE3 => read_user_u64(regs.rdi).unwrap_or(0),
        _ => 0,
    };
    let off = read_global(&FORK_CHILD_PID_OFFSET) as usize;
    // SAFETY: offset of `child_pid` from the tracefs format.
    let child_tid: u32 = unsafe { ctx.read_at(off) }.map_err(|e| e as i64)?;
    if flags & CLONE_THREAD == 0 {
        if read_global(&SIDECAR) != 0 {
            // A new process of a watched one (a worker, a shell's child): watched from birth.
            if WATCHED.insert(&child_tid, &1, 0).is_err() {
                bump(counter::WATCH_FULL);
                diag!(
                    warn,
                    site::WATCH_FULL,
                    "map WATCHED full: new process {} (child of {}) not watched ({} suppressed)",
                    child_tid,
                    tgid
                );
            }
        }
        return Ok(());
    }
    let Some(mut slot) = EVENTS.reserve::<ForkEvent>(0) else {
        bump(counter::EVENTS_DROPPED);
        return Ok(());
    };
    let stack_id = ctx
        .get_stackid(&STACKS, (BPF_F_USER_STACK | BPF_F_FAST_STACK_CMP) as u64)
        .map(|id| id as i32)
        .unwrap_or(-1);
    let ev = slot.as_mut_ptr();
    // SAFETY: scalar writes into a WaitEvent-sized reservation; bounded stack copy.
    unsafe {
        (*ev).kind = event_kind::FORK;
        (*ev).tgid = tgid;
        (*ev).parent_tid = parent_tid;
        (*ev).child_tid = child_tid;
        (*ev).time_ns = bpf_ktime_get_ns();
        (*ev).stack_id = stack_id;
        (*ev)._pad = 0;
        (*ev).comm = bpf_get_current_comm().unwrap_or([0; 16]);
        stacks::copy_user_stack(&raw mut (*ev).creator, regs.rip, regs.rsp, regs.rbp);
    }
    slot.submit(0);
    Ok(())
}

/// `sched_process_exit` runs in the dying thread.
#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let _ = try_exit(&ctx);
    0
}

fn try_exit(ctx: &TracePointContext) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let (tgid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    // Before the watch check: the last thread of a process may already have taken it out of
    // WATCHED, and a dead thread's entry must go whoever it belonged to (tids are host-wide).
    let _ = IN_FLIGHT.remove(&tid);
    if !is_watched(tgid) {
        return Ok(());
    }
    let off = read_global(&EXIT_GROUP_DEAD_OFFSET) as usize;
    // SAFETY: offset of `group_dead` from the tracefs format.
    let group_dead: u8 = unsafe { ctx.read_at(off) }.unwrap_or(0);
    if group_dead != 0 {
        // The pid may be reused by an unrelated process: stop watching it now, in the kernel,
        // before userspace even reads this event.
        let _ = WATCHED.remove(&tgid);
    }
    let regs = stacks::current_user_regs();
    let Some(mut slot) = EVENTS.reserve::<ExitEvent>(0) else {
        bump(counter::EVENTS_DROPPED);
        return Ok(());
    };
    let ev = slot.as_mut_ptr();
    // SAFETY: scalar writes into an ExitEvent-sized reservation.
    unsafe {
        (*ev).kind = event_kind::EXIT;
        (*ev).tgid = tgid;
        (*ev).tid = tid;
        (*ev).group_dead = group_dead as u32;
        (*ev).time_ns = bpf_ktime_get_ns();
        (*ev).syscall = regs.map(|r| r.orig_rax as i64).unwrap_or(-1);
        (*ev).arg0 = regs.map(|r| r.rdi).unwrap_or(0);
        (*ev).comm = bpf_get_current_comm().unwrap_or([0; 16]);
    }
    slot.submit(0);
    Ok(())
}

/// `sched_process_exec` runs in the process that has just loaded a new program: userspace
/// decides whether it is a Go program (its goroutine probes were on the old file) and, in
/// sidecar mode, whether it is watched at all (`--comm`). Outside sidecar mode only the
/// watched process's execs matter.
#[tracepoint(category = "sched", name = "sched_process_exec")]
pub fn sched_process_exec(_ctx: TracePointContext) -> u32 {
    if read_global(&SIDECAR) == 0 && !is_watched((bpf_get_current_pid_tgid() >> 32) as u32) {
        return 0;
    }
    let Some(mut slot) = EVENTS.reserve::<ExecEvent>(0) else {
        bump(counter::EVENTS_DROPPED);
        return 0;
    };
    let ev = slot.as_mut_ptr();
    // SAFETY: scalar writes into an ExecEvent-sized reservation.
    unsafe {
        (*ev).kind = event_kind::EXEC;
        (*ev).tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
        (*ev).time_ns = bpf_ktime_get_ns();
        (*ev).comm = bpf_get_current_comm().unwrap_or([0; 16]);
    }
    slot.submit(0);
    0
}
