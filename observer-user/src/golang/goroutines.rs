//! A goroutine dump of a live Go process, read from outside with `process_vm_readv` only: no
//! ptrace stop, no write, no cooperation from the target.
//!
//! `runtime.allgs` is read, then every `g` (batched, up to 1024 per vectored read), then the
//! live part of every parked goroutine's stack (batched again), and each stack is unwound
//! in memory with the pcsp tables of `.gopclntab`, exactly as Go's own traceback does
//! (frame pointers are the fallback where pcsp is unknown). The process keeps running, so
//! this is a snapshot of moving data: a goroutine that changes state or moves its stack while
//! it is read can come out with a short or stale stack; running goroutines get no stack
//! (Go's dump says "stack unavailable" for them too).
//!
//! Stripped binaries: the dump needs `runtime.allgs` (recovered by disassembly) and the
//! offsets table for the version; without either it fails with a clear error.

use std::collections::HashMap;
use std::io;

use serde::Serialize;

use super::binary::GoBinary;
use super::elf::{le32, le64};
use super::GoError;
use crate::proc::memory::{read_process_memory, read_process_memory_into};
use crate::proc::procmaps::{Backing, ProcessMaps};

/// Frames kept per goroutine.
pub const MAX_FRAMES: usize = 64;
/// Bytes of stack read per goroutine up front, from its saved stack pointer upwards (a
/// typical parked stack fits); deeper frames extend the copy in steps of the same size.
const STACK_READ: u64 = 8 * 1024;
/// `IOV_MAX` on Linux.
const IOV_MAX: usize = 1024;
/// More goroutines than this means the slice header was misread.
const MAX_GOROUTINES: u64 = 10_000_000;
const SCAN_BIT: u32 = 0x1000;
/// Functions at the bottom of a goroutine stack: the unwinder stops after them.
const STACK_TOPS: [&str; 4] = [
    "runtime.goexit",
    "runtime.mstart",
    "runtime.mstart0",
    "runtime.rt0_go",
];

/// A goroutine's state (`g.atomicstatus` without the `_Gscan` bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GStatus {
    Idle,
    Runnable,
    Running,
    Syscall,
    Waiting,
    MoribundUnused,
    Dead,
    EnqueueUnused,
    Copystack,
    Preempted,
    /// Go 1.27+ (`_Gleaked`): a leaked goroutine found by the GC.
    Leaked,
    /// Go 1.27+ (`_Gdeadextra`): a dead g kept for cgo callbacks.
    DeadExtra,
    Unknown(u32),
}

impl GStatus {
    /// Decodes a raw `atomicstatus`: the state and whether the `_Gscan` bit was set.
    pub fn from_raw(raw: u32) -> (GStatus, bool) {
        let status = match raw & !SCAN_BIT {
            0 => GStatus::Idle,
            1 => GStatus::Runnable,
            2 => GStatus::Running,
            3 => GStatus::Syscall,
            4 => GStatus::Waiting,
            5 => GStatus::MoribundUnused,
            6 => GStatus::Dead,
            7 => GStatus::EnqueueUnused,
            8 => GStatus::Copystack,
            9 => GStatus::Preempted,
            10 => GStatus::Leaked,
            11 => GStatus::DeadExtra,
            other => GStatus::Unknown(other),
        };
        (status, raw & SCAN_BIT != 0)
    }

    /// The name Go prints in a goroutine header.
    pub fn name(self) -> &'static str {
        match self {
            GStatus::Idle => "idle",
            GStatus::Runnable => "runnable",
            GStatus::Running => "running",
            GStatus::Syscall => "syscall",
            GStatus::Waiting => "waiting",
            GStatus::MoribundUnused => "moribund_unused",
            GStatus::Dead => "dead",
            GStatus::EnqueueUnused => "enqueue_unused",
            GStatus::Copystack => "copystack",
            GStatus::Preempted => "preempted",
            GStatus::Leaked => "leaked",
            GStatus::DeadExtra => "waiting for cgo callback",
            GStatus::Unknown(_) => "???",
        }
    }

    fn is_dead(self) -> bool {
        matches!(self, GStatus::Dead | GStatus::DeadExtra)
    }

    /// Whether the goroutine's saved registers describe a stack that is not changing.
    fn has_saved_stack(self) -> bool {
        matches!(
            self,
            GStatus::Runnable
                | GStatus::Syscall
                | GStatus::Waiting
                | GStatus::Preempted
                | GStatus::Leaked
        )
    }
}

/// One goroutine of a dump. Addresses are the process's (load bias included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Goroutine {
    pub goid: u64,
    pub status: GStatus,
    /// The GC was scanning its stack (`_Gscan`).
    pub scan: bool,
    /// `waitReasonStrings[g.waitreason]` when waiting (or leaked) with a reason.
    pub wait_reason: Option<String>,
    /// Whole minutes since it blocked, as Go computes them: `waitsince` is only set by the
    /// GC, so this is approximate and `None` until a GC ran during the wait.
    pub wait_minutes: Option<u64>,
    /// `g.gopc`: the pc of the `go` statement that created it (0 for the main goroutine).
    pub created_by_pc: u64,
    /// `g.parentGoid` (Go 1.21+).
    pub created_by_goid: Option<u64>,
    /// `g.startpc`: its function.
    pub start_pc: u64,
    /// Stack, innermost first: a saved pc, then return addresses; empty when running.
    pub pcs: Vec<u64>,
    /// The stack went on past `MAX_FRAMES` frames: the outer callers are not in `pcs`.
    pub stack_truncated: bool,
    /// `g.lockedm != 0` (`runtime.LockOSThread`).
    pub locked_to_thread: bool,
    /// Runtime-internal goroutine (Go hides these from dumps unless GOTRACEBACK=system).
    pub system: bool,
    /// Address of its `g` (what probes see in R14).
    pub g_addr: u64,
}

/// Difference between run-time and link-time addresses of the executable in `pid`: 0 for a
/// non-PIE binary, the mapping base for a PIE.
pub fn load_bias(pid: u32, bin: &GoBinary) -> Result<u64, GoError> {
    let maps = ProcessMaps::load(pid)?;
    let (_, inode) = bin.file_id();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    let ours =
        |path: &std::path::Path, map_inode: u64| map_inode == inode || exe.as_deref() == Some(path);
    let first = maps
        .mappings()
        .iter()
        .filter(|m| matches!(&m.backing, Backing::File { path, .. } if ours(path, m.inode)))
        .min_by_key(|m| m.offset);
    let Some(mapping) = first else {
        if bin.is_pie() {
            return Err(GoError::NotMapped {
                pid,
                path: bin.path().to_path_buf(),
            });
        }
        return Ok(0);
    };
    if !bin.is_pie() {
        return Ok(0);
    }
    let page = |a: u64| a & !0xfff;
    let segment = bin
        .elf()
        .segments
        .iter()
        .find(|s| s.filesz > 0 && page(s.offset) == mapping.offset)
        .ok_or_else(|| GoError::NotMapped {
            pid,
            path: bin.path().to_path_buf(),
        })?;
    Ok(mapping.start.wrapping_sub(page(segment.vaddr)))
}

/// Reads many small ranges with as few `process_vm_readv` calls as possible. A range that
/// cannot be read (unmapped) gives `None`; the others are unaffected.
pub(crate) fn read_many(pid: u32, ranges: &[(u64, usize)]) -> Vec<Option<Vec<u8>>> {
    let mut out: Vec<Option<Vec<u8>>> = vec![None; ranges.len()];
    let mut start = 0;
    while start < ranges.len() {
        let end = (start + IOV_MAX).min(ranges.len());
        let chunk = &ranges[start..end];
        let mut bufs: Vec<Vec<u8>> = chunk.iter().map(|&(_, len)| vec![0u8; len]).collect();
        let got = read_process_memory_into(pid, chunk, &mut bufs).unwrap_or(0);
        // The kernel stops at the first range it cannot read: keep those before it, skip
        // it after one retry on its own, and carry on with the rest.
        let mut done = 0usize;
        let mut consumed = 0usize;
        for (i, buf) in bufs.into_iter().enumerate() {
            if consumed + buf.len() <= got {
                consumed += buf.len();
                out[start + i] = Some(buf);
                done = i + 1;
            } else {
                break;
            }
        }
        if done < chunk.len() {
            let (addr, len) = chunk[done];
            out[start + done] = read_process_memory(pid, addr, len)
                .ok()
                .filter(|b| b.len() == len);
            start += done + 1;
        } else {
            start = end;
        }
    }
    out
}

fn read_exact(pid: u32, addr: u64, len: usize) -> Result<Vec<u8>, GoError> {
    let mem_err = |source| GoError::Memory { pid, addr, source };
    let bytes = read_process_memory(pid, addr, len).map_err(mem_err)?;
    if bytes.len() != len {
        return Err(mem_err(io::Error::from(io::ErrorKind::UnexpectedEof)));
    }
    Ok(bytes)
}

/// Registers a parked goroutine resumes with: where its stack walk starts.
#[derive(Debug, Clone, Copy)]
struct Saved {
    pc: u64,
    sp: u64,
    bp: u64,
    stack_hi: u64,
}

/// Fields of one `g` as read.
struct RawG {
    goroutine: Goroutine,
    saved: Option<Saved>,
    reason_code: u8,
}

/// One goroutine parked in a snapshot: what following its waits across snapshots needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParkedG {
    pub goid: u64,
    pub g_addr: u64,
    /// `g.gopc`: its creation site.
    pub gopc: u64,
    /// `g.waitreason`, the runtime's number (index into the binary's reason strings).
    pub reason: u32,
    /// Saved stack pointer: a goroutine that woke and parked again from elsewhere moves it.
    pub sched_sp: u64,
}

/// The goroutines of one snapshot that are parked, and how many goroutines there were.
#[derive(Debug, Default)]
pub struct ParkedSnapshot {
    pub parked: Vec<ParkedG>,
    pub goroutines: usize,
}

/// Reads which goroutines of `pid` are parked right now, and on what: `allgs` and every `g`,
/// no stacks (a stack is read only for a goroutine that turns out to matter). `bias` is the
/// executable's load bias in `pid`.
pub fn parked_snapshot(pid: u32, bin: &GoBinary, bias: u64) -> Result<ParkedSnapshot, GoError> {
    let raws = read_gs(pid, bin, bias)?;
    let goroutines = raws.len();
    let parked = raws
        .into_iter()
        .filter(|r| matches!(r.goroutine.status, GStatus::Waiting | GStatus::Leaked))
        .map(|r| ParkedG {
            goid: r.goroutine.goid,
            g_addr: r.goroutine.g_addr,
            gopc: r.goroutine.created_by_pc,
            reason: u32::from(r.reason_code),
            sched_sp: r.saved.map_or(0, |s| s.sp),
        })
        .collect();
    Ok(ParkedSnapshot { parked, goroutines })
}

/// Every live `g` of `pid`, decoded (no stacks yet).
fn read_gs(pid: u32, bin: &GoBinary, bias: u64) -> Result<Vec<RawG>, GoError> {
    let offsets = *bin.offsets().ok_or_else(|| GoError::NoOffsets {
        version: bin.version().raw.clone(),
    })?;
    let (allgs, _) = bin.allgs_addr()?;
    let header = read_exact(pid, allgs.wrapping_add(bias), 24)?;
    let (ptr, len, cap) = (le64(&header, 0), le64(&header, 8), le64(&header, 16));
    if len > cap || len > MAX_GOROUTINES || (len > 0 && ptr == 0) {
        return Err(GoError::BadAllgs {
            pid,
            reason: format!("ptr={ptr:#x} len={len} cap={cap}"),
        });
    }
    let gptrs = read_exact(pid, ptr, len as usize * 8)?;
    let addrs: Vec<u64> = (0..len as usize)
        .map(|i| le64(&gptrs, i * 8))
        .filter(|&a| a != 0)
        .collect();

    let glen = offsets.g_read_len();
    // Go's `nanotime()` on Linux is CLOCK_MONOTONIC.
    let now = i64::try_from(crate::util::clock::monotonic_ns()).ok();
    Ok(addrs
        .iter()
        .zip(read_coalesced(pid, &addrs, glen))
        .filter_map(|(&addr, bytes)| decode_g(bin, &offsets, addr, &bytes?, now))
        .collect())
}

/// Longest read that serves several neighbouring `g`s, and the widest gap it spans.
const SPAN_MAX: u64 = 64 * 1024;
const SPAN_GAP: u64 = 1024;

/// Reads `len` bytes at each of `addrs`. The runtime allocates `g`s side by side in its heap
/// spans, so neighbours are read as one range: a tenth of the ranges (and of the kernel's page
/// walks) of one read per `g`. A span that cannot be read is retried `g` by `g`.
fn read_coalesced(pid: u32, addrs: &[u64], len: usize) -> Vec<Option<Vec<u8>>> {
    let mut order: Vec<usize> = (0..addrs.len()).collect();
    order.sort_by_key(|&i| addrs[i]);
    // (start, end, members in `order`)
    let mut spans: Vec<(u64, u64, std::ops::Range<usize>)> = Vec::new();
    for (pos, &i) in order.iter().enumerate() {
        let (a, end) = (addrs[i], addrs[i].saturating_add(len as u64));
        match spans.last_mut() {
            Some((start, stop, members))
                if a <= stop.saturating_add(SPAN_GAP) && end - *start <= SPAN_MAX =>
            {
                *stop = (*stop).max(end);
                members.end = pos + 1;
            }
            _ => spans.push((a, end, pos..pos + 1)),
        }
    }
    let ranges: Vec<(u64, usize)> = spans
        .iter()
        .map(|(start, stop, _)| (*start, (stop - start) as usize))
        .collect();
    let mut out: Vec<Option<Vec<u8>>> = vec![None; addrs.len()];
    for ((start, _, members), bytes) in spans.iter().zip(read_many(pid, &ranges)) {
        let members = &order[members.clone()];
        match bytes {
            Some(bytes) => {
                for &i in members {
                    let off = (addrs[i] - start) as usize;
                    out[i] = bytes.get(off..off + len).map(<[u8]>::to_vec);
                }
            }
            None => {
                let singles: Vec<(u64, usize)> = members.iter().map(|&i| (addrs[i], len)).collect();
                for (&i, b) in members.iter().zip(read_many(pid, &singles)) {
                    out[i] = b;
                }
            }
        }
    }
    out
}

/// Reads the goroutines of `pid`, whose executable is `bin`. Dead goroutines are skipped.
pub fn dump(pid: u32, bin: &GoBinary) -> Result<Vec<Goroutine>, GoError> {
    let bias = load_bias(pid, bin)?;
    let mut raws = read_gs(pid, bin, bias)?;

    // Stacks are read a batch at a time, so memory stays bounded with 100k goroutines.
    for batch in raws.chunks_mut(IOV_MAX) {
        let ranges: Vec<(u64, usize)> = batch
            .iter()
            .map(|r| match r.saved {
                Some(s) if s.stack_hi > s.sp => {
                    (s.sp, (s.stack_hi - s.sp).min(STACK_READ) as usize)
                }
                _ => (0, 0),
            })
            .collect();
        let wanted: Vec<usize> = (0..batch.len()).filter(|&i| ranges[i].1 > 0).collect();
        let reads = read_many(pid, &wanted.iter().map(|&i| ranges[i]).collect::<Vec<_>>());
        let mut stacks: HashMap<usize, Vec<u8>> = wanted
            .into_iter()
            .zip(reads)
            .filter_map(|(i, bytes)| Some((i, bytes?)))
            .collect();
        for (i, raw) in batch.iter_mut().enumerate() {
            raw.goroutine.system = is_system(bin, raw.goroutine.start_pc.wrapping_sub(bias));
            if let Some(saved) = raw.saved {
                let mut view = StackView {
                    pid,
                    base: saved.sp,
                    hi: saved.stack_hi,
                    bytes: stacks.remove(&i).unwrap_or_default(),
                };
                let walked = unwind(bin, bias, saved, &mut view);
                (raw.goroutine.pcs, raw.goroutine.stack_truncated) = capped(walked);
            }
        }
    }
    Ok(raws.into_iter().map(|r| r.goroutine).collect())
}

/// The stack of one goroutine that is parked right now, read from the live process like the
/// dump reads it (saved registers in its `g`, then its stack, unwound with pcsp). The `g` at
/// `g_addr` must still be goroutine `goid` and still waiting: `Ok(None)` when it woke, exited or
/// its `g` was reused since, so a stack is never pinned on the wrong goroutine. The flag says
/// the stack was cut at `MAX_FRAMES`.
pub fn parked_stack(
    pid: u32,
    bin: &GoBinary,
    bias: u64,
    g_addr: u64,
    goid: u64,
) -> Result<Option<(Vec<u64>, bool)>, GoError> {
    let offsets = *bin.offsets().ok_or_else(|| GoError::NoOffsets {
        version: bin.version().raw.clone(),
    })?;
    let bytes = read_exact(pid, g_addr, offsets.g_read_len())?;
    let Some(raw) = decode_g(bin, &offsets, g_addr, &bytes, None) else {
        return Ok(None);
    };
    let still_parked = raw.goroutine.goid == goid
        && matches!(raw.goroutine.status, GStatus::Waiting | GStatus::Leaked);
    let Some(saved) = raw.saved.filter(|_| still_parked) else {
        return Ok(None);
    };
    let mut view = StackView {
        pid,
        base: saved.sp,
        hi: saved.stack_hi,
        bytes: Vec::new(),
    };
    Ok(Some(capped(unwind(bin, bias, saved, &mut view))))
}

/// The first `MAX_FRAMES` of a walk that may hold one more, and whether there was more.
fn capped(mut pcs: Vec<u64>) -> (Vec<u64>, bool) {
    let truncated = pcs.len() > MAX_FRAMES;
    pcs.truncate(MAX_FRAMES);
    (pcs, truncated)
}

fn decode_g(
    bin: &GoBinary,
    o: &super::GOffsets,
    addr: u64,
    b: &[u8],
    now: Option<i64>,
) -> Option<RawG> {
    let at = |off: u64| off as usize;
    let (status, scan) = GStatus::from_raw(le32(b, at(o.g_atomicstatus)));
    if status.is_dead() {
        return None;
    }
    let goid = le64(b, at(o.g_goid));
    let reason_code = b.get(at(o.g_waitreason)).copied().unwrap_or(0);
    let wait_reason = matches!(status, GStatus::Waiting | GStatus::Leaked)
        .then(|| bin.wait_reason(reason_code))
        .flatten()
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let wait_minutes = wait_minutes(status, le64(b, at(o.g_waitsince)) as i64, now);
    let sched = |field: u64| le64(b, at(o.g_sched + field));
    let mut saved = Saved {
        pc: sched(o.gobuf_pc),
        sp: sched(o.gobuf_sp),
        bp: sched(o.gobuf_bp),
        stack_hi: le64(b, at(o.g_stack_hi)),
    };
    let syscallsp = le64(b, at(o.g_syscallsp));
    if status == GStatus::Syscall && syscallsp != 0 {
        saved.sp = syscallsp;
        saved.pc = le64(b, at(o.g_syscallpc));
        saved.bp = o.g_syscallbp.map_or(saved.bp, |off| le64(b, at(off)));
    }
    let usable = status.has_saved_stack() && saved.pc != 0 && saved.sp != 0;
    Some(RawG {
        goroutine: Goroutine {
            goid,
            status,
            scan,
            wait_reason,
            wait_minutes,
            created_by_pc: le64(b, at(o.g_gopc)),
            created_by_goid: o.g_parent_goid.map(|off| le64(b, at(off))),
            start_pc: le64(b, at(o.g_startpc)),
            pcs: Vec::new(),
            stack_truncated: false,
            locked_to_thread: o.g_lockedm.is_some_and(|off| le64(b, at(off)) != 0),
            system: false,
            g_addr: addr,
        },
        saved: usable.then_some(saved),
        reason_code,
    })
}

/// Go's `goroutineheader`: whole minutes since `waitsince`, for waiting and syscall states,
/// once the GC has stamped it (0 means not yet).
fn wait_minutes(status: GStatus, waitsince: i64, now: Option<i64>) -> Option<u64> {
    let now = now?;
    let blocked = matches!(status, GStatus::Waiting | GStatus::Syscall);
    (blocked && waitsince != 0 && now >= waitsince)
        .then(|| ((now - waitsince) / 60_000_000_000) as u64)
}

/// Go's `isSystemGoroutine`, by the name of the goroutine's function (finalizer and cleanup
/// goroutines count as system: whether they run user code right now is not visible here).
fn is_system(bin: &GoBinary, start_pc: u64) -> bool {
    let Some(name) = bin.func_name_at(start_pc) else {
        return false;
    };
    name.starts_with("runtime.")
        && !matches!(
            name.as_str(),
            "runtime.main" | "runtime.corostart" | "runtime.handleAsyncEvent"
        )
}

/// A copy of a goroutine stack from `base` up, extended on demand up to `hi`.
struct StackView {
    pid: u32,
    base: u64,
    hi: u64,
    bytes: Vec<u8>,
}

impl StackView {
    fn word(&mut self, addr: u64) -> Option<u64> {
        let off = usize::try_from(addr.checked_sub(self.base)?).ok()?;
        if addr.checked_add(8)? > self.hi {
            return None;
        }
        if off + 8 > self.bytes.len() {
            let end = self.base + self.bytes.len() as u64;
            let want = (addr + 8).max(end + STACK_READ).min(self.hi);
            let more = read_process_memory(self.pid, end, (want - end) as usize).ok()?;
            self.bytes.extend_from_slice(&more);
        }
        (off + 8 <= self.bytes.len()).then(|| le64(&self.bytes, off))
    }
}

/// Walks the stack with pcsp frame sizes, as Go's unwinder does; frame pointers when the
/// first pc has no pcsp (outside Go code).
/// Walks one frame past `MAX_FRAMES` when there is one, so that [`capped`] can tell a cut.
fn unwind(bin: &GoBinary, bias: u64, saved: Saved, stack: &mut StackView) -> Vec<u64> {
    let mut pcs = vec![saved.pc];
    let mut pc = saved.pc;
    let mut sp = saved.sp;
    while pcs.len() <= MAX_FRAMES {
        let Some((delta, top)) = bin.frame_step(pc.wrapping_sub(bias), &STACK_TOPS) else {
            if pcs.len() == 1 {
                return unwind_fp(saved, &mut |a| stack.word(a));
            }
            break;
        };
        let Ok(delta) = u64::try_from(delta) else {
            break;
        };
        if top {
            break;
        }
        let slot = sp + delta;
        let Some(ret) = stack.word(slot) else { break };
        if ret == 0 || !bin.is_go_code(ret.wrapping_sub(bias)) {
            break;
        }
        pcs.push(ret);
        pc = ret;
        sp = slot + 8;
    }
    pcs
}

/// Frame-pointer walk: each frame holds the caller's BP at [bp] and its return address above.
fn unwind_fp(saved: Saved, word: &mut dyn FnMut(u64) -> Option<u64>) -> Vec<u64> {
    let mut pcs = vec![saved.pc];
    let mut bp = saved.bp;
    while pcs.len() <= MAX_FRAMES && bp != 0 && bp < saved.stack_hi {
        let (Some(next), Some(ret)) = (word(bp), word(bp + 8)) else {
            break;
        };
        if ret == 0 {
            break;
        }
        pcs.push(ret);
        if next <= bp {
            break;
        }
        bp = next;
    }
    pcs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Neighbouring `g`s are read as one range and each gets exactly its own bytes, in the
    /// caller's order; an unreadable address gets `None` and spoils nobody else's read.
    #[test]
    fn coalesced_reads_give_each_address_its_own_bytes() {
        let heap: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let base = heap.as_ptr() as u64;
        let offsets = [150_000u64, 0, 480, 960, 5_000, 70_000, 70_480, 199_000];
        let mut addrs: Vec<u64> = offsets.iter().map(|o| base + o).collect();
        addrs.push(8); // never mapped
        let len = 400;
        let got = read_coalesced(std::process::id(), &addrs, len);
        assert_eq!(got.len(), addrs.len());
        for (o, bytes) in offsets.iter().zip(&got) {
            let want = &heap[*o as usize..*o as usize + len];
            assert_eq!(bytes.as_deref(), Some(want), "offset {o}");
        }
        assert_eq!(got[addrs.len() - 1], None);
    }

    #[test]
    fn a_walk_past_the_cap_is_cut_and_flagged() {
        let (pcs, cut) = capped((0..=MAX_FRAMES as u64).collect());
        assert_eq!((pcs.len(), cut), (MAX_FRAMES, true));
        let (pcs, cut) = capped((0..MAX_FRAMES as u64).collect());
        assert_eq!((pcs.len(), cut), (MAX_FRAMES, false));
    }

    #[test]
    fn statuses_decode_with_scan_bit() {
        assert_eq!(GStatus::from_raw(4), (GStatus::Waiting, false));
        assert_eq!(GStatus::from_raw(0x1004), (GStatus::Waiting, true));
        assert_eq!(GStatus::from_raw(0x1002), (GStatus::Running, true));
        assert_eq!(GStatus::from_raw(42), (GStatus::Unknown(42), false));
        assert_eq!(GStatus::from_raw(9).0.name(), "preempted");
        assert_eq!(GStatus::from_raw(5).0.name(), "moribund_unused");
        assert!(GStatus::from_raw(6).0.is_dead());
        assert!(GStatus::from_raw(11).0.is_dead());
        assert!(!GStatus::Running.has_saved_stack());
        assert!(GStatus::Waiting.has_saved_stack());
    }

    #[test]
    fn wait_minutes_like_go() {
        let min = 60_000_000_000;
        let now = Some(10 * min + 5);
        assert_eq!(wait_minutes(GStatus::Waiting, 3 * min, now), Some(7));
        assert_eq!(wait_minutes(GStatus::Syscall, 10 * min, now), Some(0));
        assert_eq!(wait_minutes(GStatus::Waiting, 0, now), None);
        assert_eq!(wait_minutes(GStatus::Runnable, 3 * min, now), None);
        assert_eq!(wait_minutes(GStatus::Waiting, 11 * min, now), None);
        assert_eq!(wait_minutes(GStatus::Waiting, 3 * min, None), None);
    }

    #[test]
    fn frame_pointer_walk_stops_at_bad_links() {
        // Stack at 0x1000: frame A at 0x1000 -> frame B at 0x1020 -> 0 (end).
        let mut stack = vec![0u8; 0x40];
        stack[0..8].copy_from_slice(&0x1020u64.to_le_bytes());
        stack[8..16].copy_from_slice(&0xaaaau64.to_le_bytes());
        stack[0x20..0x28].copy_from_slice(&0u64.to_le_bytes());
        stack[0x28..0x30].copy_from_slice(&0xbbbbu64.to_le_bytes());
        let saved = Saved {
            pc: 0x9999,
            sp: 0x1000,
            bp: 0x1000,
            stack_hi: 0x1040,
        };
        let mut word = |addr: u64| -> Option<u64> {
            let off = addr.checked_sub(0x1000)? as usize;
            (off + 8 <= stack.len()).then(|| le64(&stack, off))
        };
        assert_eq!(unwind_fp(saved, &mut word), vec![0x9999, 0xaaaa, 0xbbbb]);
    }

    #[test]
    fn stack_view_extends_from_the_process() {
        let data: Vec<u64> = (0..4096).collect();
        let base = data.as_ptr() as u64;
        let mut view = StackView {
            pid: std::process::id(),
            base,
            hi: base + 8 * 4096,
            bytes: Vec::new(),
        };
        assert_eq!(view.word(base + 8 * 3), Some(3));
        assert_eq!(view.bytes.len() as u64, STACK_READ);
        assert_eq!(view.word(base + 8 * 4000), Some(4000));
        assert_eq!(view.word(base + 8 * 4096), None);
        assert_eq!(view.word(base - 8), None);
    }

    #[test]
    fn vectored_reads_of_own_memory() {
        let a = [1u8; 100];
        let b = [2u8; 3000];
        let me = std::process::id();
        let ranges = vec![
            (a.as_ptr() as u64, a.len()),
            (8, 16), // unmapped
            (b.as_ptr() as u64, b.len()),
        ];
        let got = read_many(me, &ranges);
        assert_eq!(got[0].as_deref(), Some(&a[..]));
        assert_eq!(got[1], None);
        assert_eq!(got[2].as_deref(), Some(&b[..]));
        // More ranges than one call takes.
        let many: Vec<(u64, usize)> = (0..2500).map(|_| (b.as_ptr() as u64, 8)).collect();
        assert!(read_many(me, &many)
            .iter()
            .all(|r| r.as_deref() == Some(&[2u8; 8][..])));
    }
}
