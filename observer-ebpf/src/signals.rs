//! Fatal signals: the cause of a process death that `sched_process_exit` does not carry.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::tracepoint,
    programs::TracePointContext,
};
use observer_common::{counter, event_kind, SignalEvent};

use crate::{
    bump, is_watched, read_global, DELIVER_CODE_OFFSET, DELIVER_HANDLER_OFFSET, DELIVER_SIG_OFFSET,
    EVENTS,
};

/// Signals whose default action terminates the process (signal(7)).
const FATAL_BY_DEFAULT: u64 = (1 << 1)
    | (1 << 2)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 6)
    | (1 << 7)
    | (1 << 8)
    | (1 << 9)
    | (1 << 10)
    | (1 << 11)
    | (1 << 12)
    | (1 << 13)
    | (1 << 14)
    | (1 << 15)
    | (1 << 16)
    | (1 << 24)
    | (1 << 25)
    | (1 << 26)
    | (1 << 27)
    | (1 << 29)
    | (1 << 30)
    | (1 << 31);
const SIG_DFL: u64 = 0;

/// `signal_deliver` runs in the receiving thread, before the default action (death) happens.
#[tracepoint(category = "signal", name = "signal_deliver")]
pub fn signal_deliver(ctx: TracePointContext) -> u32 {
    let _ = try_deliver(&ctx);
    0
}

fn try_deliver(ctx: &TracePointContext) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let (tgid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    if !is_watched(tgid) {
        return Ok(());
    }
    // SAFETY: offsets from the tracefs format of signal_deliver.
    let (sig, code, handler) = unsafe {
        let sig: i32 = ctx
            .read_at(read_global(&DELIVER_SIG_OFFSET) as usize)
            .map_err(|e| e as i64)?;
        let code: i32 = ctx
            .read_at(read_global(&DELIVER_CODE_OFFSET) as usize)
            .unwrap_or(0);
        let handler: u64 = ctx
            .read_at(read_global(&DELIVER_HANDLER_OFFSET) as usize)
            .map_err(|e| e as i64)?;
        (sig, code, handler)
    };
    if !(1..32).contains(&sig) || handler != SIG_DFL || FATAL_BY_DEFAULT & (1u64 << sig) == 0 {
        return Ok(());
    }
    let Some(mut slot) = EVENTS.reserve::<SignalEvent>(0) else {
        bump(counter::EVENTS_DROPPED);
        return Ok(());
    };
    let ev = slot.as_mut_ptr();
    // SAFETY: scalar writes into a SignalEvent-sized reservation.
    unsafe {
        (*ev).kind = event_kind::SIGNAL;
        (*ev).tgid = tgid;
        (*ev).tid = tid;
        (*ev).sig = sig;
        (*ev).code = code;
        (*ev)._pad = 0;
        (*ev).time_ns = bpf_ktime_get_ns();
    }
    slot.submit(0);
    Ok(())
}
