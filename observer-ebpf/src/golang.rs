//! Goroutine-level probes on the Go runtime (uprobes; never uretprobes: Go moves stacks).
//!
//! Registers follow Go's ABIInternal: arguments in RAX, RBX, RCX, RDI, ...; R14 is the current
//! g. Thread-level futex data of a Go process mostly shows idle scheduler threads, so goroutine
//! waits are measured where the goroutine parks (`runtime.gopark`, on its own stack) and where
//! it is made ready (`runtime.ready`, on the waker's system stack).
//!
//! Cost: every park and every ready pays a uprobe trap (about 11 us on this VM, BENCHMARKS.md),
//! whatever the program does, so the programs themselves keep to a few map operations.
//! `gopark` records the goroutine, its wait reason and the time, and takes no stack: most waits
//! are short and nobody looks at their stacks one by one. The stack is walked only when it is
//! wanted, by the waker in `runtime.ready`, from the parked goroutine's saved context
//! (`g.sched`: `mcall` left `gopark`'s pc and frame pointer there, and Go adjusts them if the
//! stack moves while it is parked): for every wait over the threshold (an event), and for the
//! profile, for every short wait of at least `GoProcess::sample_all_ns` (few, and where the
//! blocked time is) and one in `GoProcess::sample_period` of the shorter ones (chosen at random,
//! so that alternating waits cannot alias with the period; counted `sample_period` times).
//! Short waits are summed exactly per wait reason in `GO_AGG0/1`; the walked ones per stack in
//! `GO_SAMPLES0/1` (two copies of each, see `AGG_SIDE`), which userspace scales to those exact totals. Goroutines that stay parked are
//! read from userspace (`GO_PARKED` has their `g`).

use aya_ebpf::{
    bindings::{pt_regs, BPF_F_FAST_STACK_CMP, BPF_F_USER_STACK},
    helpers::{
        bpf_get_current_pid_tgid, bpf_ktime_get_ns,
        generated::{bpf_get_prandom_u32, bpf_probe_read_user},
    },
    macros::{map, uprobe},
    maps::{HashMap, LruHashMap, PerCpuArray, PerCpuHashMap},
    programs::{tracing::StackIdContext as _, ProbeContext},
};
use observer_common::{
    counter, event_kind, AggValue, GoAggKey, GoKey, GoPanicEvent, GoParked, GoProcess, GoSampleKey,
    GoStack, GoWaitEvent, GO_MESSAGE_BYTES, GO_STACK_DEPTH,
};

use crate::kernel_log::{diag, site};
use crate::{
    add_after_lost_race, agg_side, aggregate_wait, bump, read_global, read_user_u64, EVENTS,
    STACKS, THRESHOLD_NS,
};

const USER_STACK_FLAGS: u64 = (BPF_F_USER_STACK | BPF_F_FAST_STACK_CMP) as u64;

/// Go processes being observed, with their runtime layout.
#[map]
static GO_PROCS: HashMap<u32, GoProcess> = HashMap::with_max_entries(1024, 0);

/// Goroutines parked right now (LRU: wake paths that bypass `ready`, e.g. netpoll, leave
/// entries that must not pile up).
#[map]
static GO_PARKED: LruHashMap<GoKey, GoParked> = LruHashMap::with_max_entries(65536, 0);

/// Exact count and blocked time of short waits, per process and wait reason (two copies,
/// see `AGG_SIDE`).
#[map]
static GO_AGG0: PerCpuHashMap<GoAggKey, AggValue> = PerCpuHashMap::with_max_entries(4096, 0);
#[map]
static GO_AGG1: PerCpuHashMap<GoAggKey, AggValue> = PerCpuHashMap::with_max_entries(4096, 0);

/// The sampled short waits, per process, wait reason and stack (two copies).
#[map]
static GO_SAMPLES0: PerCpuHashMap<GoSampleKey, AggValue> = PerCpuHashMap::with_max_entries(8192, 0);
#[map]
static GO_SAMPLES1: PerCpuHashMap<GoSampleKey, AggValue> = PerCpuHashMap::with_max_entries(8192, 0);

/// Room to build a `GoSampleKey` (too large for the 512-byte BPF stack next to the rest).
#[map]
static GO_SCRATCH: PerCpuArray<GoSampleKey> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn regs(ctx: &ProbeContext) -> *const pt_regs {
    ctx.regs as *const pt_regs
}

#[inline(always)]
fn current() -> (u32, u32) {
    let pid_tgid = bpf_get_current_pid_tgid();
    ((pid_tgid >> 32) as u32, pid_tgid as u32)
}

#[inline(always)]
fn go_process(tgid: u32) -> Option<GoProcess> {
    // SAFETY: copy of a plain value.
    unsafe { GO_PROCS.get(&tgid).copied() }
}

/// The id of goroutine `g`. A failed read means a wrong `goid_offset` for this runtime, or a
/// register that does not hold a `g`: the wait is lost, which the kernel log says.
#[inline(always)]
fn read_goid(g: u64, goid_offset: u64, tgid: u32) -> Option<u64> {
    let goid = read_user_u64(g.wrapping_add(goid_offset));
    if goid.is_none() {
        diag!(
            info,
            site::GOID_UNREADABLE,
            "pid {}: goroutine id unreadable at g {:x} + {}: wait not measured ({} suppressed)",
            tgid,
            g,
            goid_offset
        );
    }
    goid
}

/// `gopark(unlockf, lock, reason waitReason, traceReason, traceskip)`: R14 = the parking g,
/// RBX = lock, CL = reason.
#[uprobe]
pub fn go_park(ctx: ProbeContext) -> u32 {
    let _ = try_park(&ctx);
    0
}

fn try_park(ctx: &ProbeContext) -> Option<()> {
    let (tgid, _) = current();
    let proc = go_process(tgid)?;
    if let Some(p) = GO_PROCS.get_ptr_mut(&tgid) {
        // SAFETY: a valid map value pointer; a racing increment may be lost, which the rate
        // guard that reads it tolerates.
        unsafe { (*p).parks = (*p).parks.wrapping_add(1) };
    }
    let r = regs(ctx);
    // SAFETY: ctx.regs points at the probed task's saved registers.
    let (g, reason, lock) = unsafe { ((*r).r14, (*r).rcx & 0xff, (*r).rbx) };
    let goid = read_goid(g, proc.goid_offset, tgid)?;
    let gopc = read_user_u64(g.wrapping_add(proc.gopc_offset)).unwrap_or(0);
    let key = GoKey {
        tgid,
        _pad: 0,
        goid,
    };
    let parked = GoParked {
        // SAFETY: no preconditions.
        start_ns: unsafe { bpf_ktime_get_ns() },
        gopc,
        g,
        reason: reason as u32,
        _pad: 0,
        lock,
    };
    let _ = GO_PARKED.insert(&key, &parked, 0);
    bump(counter::GO_PARKS);
    Some(())
}

/// `ready(gp *g, traceskip int, next bool)` runs on the system stack: RAX = the goroutine being
/// woken; the waker is `g0.m.curg`. The frame-pointer chain continues from the system stack into
/// the waker's goroutine stack (systemstack keeps BP), so the stack names who unlocked / sent.
#[uprobe]
pub fn go_ready(ctx: ProbeContext) -> u32 {
    let _ = try_ready(&ctx);
    0
}

fn try_ready(ctx: &ProbeContext) -> Option<()> {
    let (tgid, tid) = current();
    let proc = go_process(tgid)?;
    let r = regs(ctx);
    // SAFETY: ctx.regs points at the probed task's saved registers.
    let (gp, g0) = unsafe { ((*r).rax, (*r).r14) };
    let goid = read_goid(gp, proc.goid_offset, tgid)?;
    let key = GoKey {
        tgid,
        _pad: 0,
        goid,
    };
    // SAFETY: copied before removal.
    let parked = unsafe { GO_PARKED.get(&key).copied() }?;
    let _ = GO_PARKED.remove(&key);
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let duration_ns = now.saturating_sub(parked.start_ns);
    if duration_ns < read_global(&THRESHOLD_NS) {
        let agg_key = GoAggKey {
            tgid,
            reason: parked.reason,
        };
        let side = agg_side();
        // One call per map: the verifier keeps each helper call's map a constant.
        if side == 0 {
            aggregate_wait(&GO_AGG0, &agg_key, duration_ns, counter::GO_AGG_DROPPED);
        } else {
            aggregate_wait(&GO_AGG1, &agg_key, duration_ns, counter::GO_AGG_DROPPED);
        }
        let weight = if duration_ns >= proc.sample_all_ns {
            1
        } else if sampled(proc.sample_period) {
            u64::from(proc.sample_period)
        } else {
            0
        };
        if weight != 0 {
            let samples = if side == 0 {
                &GO_SAMPLES0
            } else {
                &GO_SAMPLES1
            };
            sample_stack(samples, gp, &proc, tgid, parked.reason, duration_ns, weight);
        }
        return Some(());
    }
    let waker_goid = read_user_u64(g0.wrapping_add(proc.m_offset))
        .and_then(|m| read_user_u64(m.wrapping_add(proc.m_curg_offset)))
        .and_then(|curg| read_user_u64(curg.wrapping_add(proc.goid_offset)))
        .unwrap_or(0);
    let waker_stack_id = ctx
        .get_stackid(&STACKS, USER_STACK_FLAGS)
        .map(|id| id as i32)
        .unwrap_or(-1);
    let Some(mut slot) = EVENTS.reserve::<GoWaitEvent>(0) else {
        bump(counter::EVENTS_DROPPED);
        return None;
    };
    let ev = slot.as_mut_ptr();
    // SAFETY: scalar writes into a GoWaitEvent-sized reservation; the walk writes only inside
    // its stack array.
    unsafe {
        (*ev).kind = event_kind::GO_WAIT;
        (*ev).tgid = tgid;
        (*ev).tid = tid;
        (*ev).reason = parked.reason;
        (*ev).goid = goid;
        (*ev).waker_goid = waker_goid;
        (*ev).gopc = parked.gopc;
        (*ev).waker_stack_id = waker_stack_id;
        (*ev)._pad = 0;
        (*ev).start_ns = parked.start_ns;
        (*ev).duration_ns = duration_ns;
        (*ev).lock = parked.lock;
        (*ev).g = gp;
        (*ev).labels = goroutine_labels(gp, &proc);
        walk_parked(gp, &proc, &mut (*ev).stack);
    }
    slot.submit(0);
    Some(())
}

/// `g.labels` of `g` (0 when the offset is unknown or the read fails). Events only, never per
/// park.
#[inline(always)]
fn goroutine_labels(g: u64, proc: &GoProcess) -> u64 {
    if proc.labels_offset == 0 {
        return 0;
    }
    read_user_u64(g.wrapping_add(proc.labels_offset)).unwrap_or(0)
}

/// One call in `period`, at random (0: never).
#[inline(always)]
fn sampled(period: u32) -> bool {
    // SAFETY: no preconditions.
    period != 0 && unsafe { bpf_get_prandom_u32() } % period == 0
}

/// Adds one short wait, counted `weight` times, under the parked goroutine's stack.
#[inline(always)]
fn sample_stack(
    samples: &PerCpuHashMap<GoSampleKey, AggValue>,
    gp: u64,
    proc: &GoProcess,
    tgid: u32,
    reason: u32,
    duration_ns: u64,
    weight: u64,
) {
    let Some(key) = GO_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's scratch slot and this CPU's slot of a per-CPU value; nothing else runs
    // on this CPU while the program does.
    unsafe {
        (*key).tgid = tgid;
        (*key).reason = reason;
        walk_parked(gp, proc, &mut (*key).stack);
        // No overflow: below the threshold times at most 1024 (saturating_mul needs 128 bits).
        let ns = duration_ns.wrapping_mul(weight);
        match samples.get_ptr_mut(&*key) {
            Some(v) => {
                (*v).count += weight;
                (*v).total_ns = (*v).total_ns.saturating_add(ns);
            }
            None => {
                let v = AggValue {
                    count: weight,
                    total_ns: ns,
                    bins: [0; observer_common::AGG_BINS],
                };
                if samples
                    .insert(&*key, &v, aya_ebpf::bindings::BPF_NOEXIST as u64)
                    .is_err()
                {
                    add_after_lost_race(samples, &*key, &v, None, counter::GO_AGG_DROPPED);
                }
            }
        }
    }
}

/// Walks the frame-pointer chain of parked goroutine `gp` from its saved context: `g.sched.pc`
/// (in `gopark`), then from `g.sched.bp` (`gopark`'s frame) each frame's return address at
/// `bp + 8` and the caller's frame at `[bp]`. Frames are at rising addresses; anything else
/// ends the walk. Unused slots are zeroed, so equal stacks make equal map keys. A chain still
/// going when the array is full is marked `truncated`, so that nobody reads the outermost
/// frame kept as the goroutine's root.
#[inline(always)]
fn walk_parked(gp: u64, proc: &GoProcess, out: &mut GoStack) {
    let pc = read_user_u64(gp.wrapping_add(proc.sched_pc_offset)).unwrap_or(0);
    let mut bp = if pc != 0 {
        read_user_u64(gp.wrapping_add(proc.sched_bp_offset)).unwrap_or(0)
    } else {
        0
    };
    out.pcs[0] = pc;
    let mut len = u64::from(pc != 0);
    for i in 1..GO_STACK_DEPTH {
        if bp == 0 {
            break;
        }
        let mut frame = [0u64; 2];
        // SAFETY: bpf_probe_read_user never faults; 16 bytes into a 16-byte local.
        let rc = unsafe {
            bpf_probe_read_user(
                frame.as_mut_ptr().cast(),
                16,
                bp as *const core::ffi::c_void,
            )
        };
        let (next, ret) = (frame[0], frame[1]);
        if rc != 0 || ret == 0 {
            break;
        }
        out.pcs[i] = ret;
        len = i as u64 + 1;
        bp = if next > bp { next } else { 0 };
    }
    for i in 1..GO_STACK_DEPTH {
        if i as u64 >= len {
            out.pcs[i] = 0;
        }
    }
    out.len = len as u32;
    out.truncated = u32::from(len == GO_STACK_DEPTH as u64 && bp != 0);
}

/// `gopanic(e any)`: RAX = type, RBX = data. String-like panic values (string, plainError,
/// errors.New, fmt.Errorf) all start with a string header at `data`: copy its text.
#[uprobe]
pub fn go_panic(ctx: ProbeContext) -> u32 {
    // SAFETY: ctx.regs points at the probed task's saved registers.
    let data = unsafe { (*regs(&ctx)).rbx };
    let _ = send_message(&ctx, event_kind::GO_PANIC, MessageSource::Header(data));
    0
}

/// `throw(s string)` / `fatal(s string)`: RAX = ptr, RBX = len. The process is about to die.
#[uprobe]
pub fn go_throw(ctx: ProbeContext) -> u32 {
    // SAFETY: ctx.regs points at the probed task's saved registers.
    let (ptr, len) = unsafe { ((*regs(&ctx)).rax, (*regs(&ctx)).rbx) };
    let _ = send_message(&ctx, event_kind::GO_FATAL, MessageSource::Text(ptr, len));
    0
}

/// `recovery(gp *g)`: a deferred call recovered gp's panic (called via mcall: RAX = gp).
#[uprobe]
pub fn go_recovery(ctx: ProbeContext) -> u32 {
    // SAFETY: ctx.regs points at the probed task's saved registers.
    let gp = unsafe { (*regs(&ctx)).rax };
    let _ = send_message(&ctx, event_kind::GO_RECOVERED, MessageSource::Goroutine(gp));
    0
}

enum MessageSource {
    /// A pointer to a Go string header.
    Header(u64),
    /// A Go string's pointer and length.
    Text(u64, u64),
    /// No text; the goroutine is `g`, not the current one.
    Goroutine(u64),
}

fn send_message(ctx: &ProbeContext, kind: u32, source: MessageSource) -> Option<()> {
    let (tgid, tid) = current();
    let proc = go_process(tgid)?;
    // SAFETY: ctx.regs points at the probed task's saved registers.
    let g = match source {
        MessageSource::Goroutine(gp) => gp,
        _ => unsafe { (*regs(ctx)).r14 },
    };
    let goid = read_user_u64(g.wrapping_add(proc.goid_offset)).unwrap_or(0);
    let (ptr, len) = match source {
        MessageSource::Header(h) => (
            read_user_u64(h).unwrap_or(0),
            read_user_u64(h.wrapping_add(8)).unwrap_or(0),
        ),
        MessageSource::Text(p, l) => (p, l),
        MessageSource::Goroutine(_) => (0, 0),
    };
    let Some(mut slot) = EVENTS.reserve::<GoPanicEvent>(0) else {
        bump(counter::EVENTS_DROPPED);
        return None;
    };
    let ev = slot.as_mut_ptr();
    let stack_id = ctx
        .get_stackid(&STACKS, USER_STACK_FLAGS)
        .map(|id| id as i32)
        .unwrap_or(-1);
    // SAFETY: scalar writes into a GoPanicEvent-sized reservation; the text copy is bounded by
    // the message array.
    unsafe {
        (*ev).kind = kind;
        (*ev).tgid = tgid;
        (*ev).tid = tid;
        (*ev).stack_id = stack_id;
        (*ev).goid = goid;
        (*ev).time_ns = bpf_ktime_get_ns();
        (*ev).g = g;
        (*ev).labels = goroutine_labels(g, &proc);
        (*ev).message_len = 0;
        // A length beyond the buffer is cut; an absurd one means this was no string.
        if ptr != 0 && len > 0 && len < (1 << 20) {
            let n = (len as u32).min(GO_MESSAGE_BYTES as u32 - 1) & (GO_MESSAGE_BYTES as u32 - 1);
            if n > 0
                && bpf_probe_read_user(
                    (*ev).message.as_mut_ptr().cast(),
                    n,
                    ptr as *const core::ffi::c_void,
                ) == 0
            {
                (*ev).message_len = n as u64;
            }
        }
    }
    slot.submit(0);
    Some(())
}
