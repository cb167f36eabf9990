//! On-CPU samples of the threads that hold a contended lock, so a long hold by a thread that
//! computes (not blocked, so with no in-flight wait to read) still says where it ran.
//!
//! A `perf_event` program on the software `cpu-clock` event of every CPU. Userspace puts the
//! holders it wants sampled in `HOLDERS` (tid -> tgid) while waiters wait for them, and takes
//! them out when the waits end; while there are none a tick costs one array load, and while
//! there are, every other thread costs one failed hash lookup per tick.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::{map, perf_event},
    maps::{Array, HashMap},
    programs::PerfEventContext,
};
use observer_common::{counter, event_kind, HolderSampleEvent, MAX_SAMPLED_HOLDERS};

use crate::{bump, stacks, EVENTS};

/// Lock holders to sample now: tid -> tgid (a tid reused by another process is not sampled).
#[map]
static HOLDERS: HashMap<u32, u32> = HashMap::with_max_entries(MAX_SAMPLED_HOLDERS, 0);

/// Slot 0 is nonzero while `HOLDERS` has entries: with no holder (nearly always) a tick costs
/// one load from an array the verifier inlines, instead of hashing the tid into a cold map.
#[map]
static HOLDERS_ON: Array<u32> = Array::with_max_entries(1, 0);

#[perf_event]
pub fn holder_sample(_ctx: PerfEventContext) -> u32 {
    let _ = try_holder_sample();
    0
}

fn try_holder_sample() -> Result<(), i64> {
    if HOLDERS_ON.get(0).copied().unwrap_or(0) == 0 {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let (tgid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    // SAFETY: read-only lookup of a plain u32 value.
    let wanted = unsafe { HOLDERS.get(&tid) }.copied();
    if wanted != Some(tgid) || tid == 0 {
        return Ok(());
    }
    // The registers it last entered the kernel with: where the tick interrupted it in user
    // code, or the call into the kernel it is in now.
    let regs = stacks::current_user_regs().ok_or(-1i64)?;
    let Some(mut slot) = EVENTS.reserve::<HolderSampleEvent>(0) else {
        bump(counter::EVENTS_DROPPED);
        return Ok(());
    };
    let ev = slot.as_mut_ptr();
    // SAFETY: `ev` points at a reservation the size of HolderSampleEvent; the stack copy is
    // bounded by its array.
    unsafe {
        (*ev).kind = event_kind::HOLDER_SAMPLE;
        (*ev).tgid = tgid;
        (*ev).tid = tid;
        (*ev)._pad = 0;
        (*ev).time_ns = bpf_ktime_get_ns();
        stacks::copy_user_stack(&raw mut (*ev).stack, regs.rip, regs.rsp, regs.rbp);
    }
    slot.submit(0);
    Ok(())
}
