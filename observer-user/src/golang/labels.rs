//! A goroutine's pprof labels (`pprof.Do`, `pprof.SetGoroutineLabels`), read from its `g` in
//! the live process with `process_vm_readv`, like the rest of this module: never a write,
//! never a stop.
//!
//! `g.labels` points to a `runtime/pprof.labelMap`, whose layout changed between releases:
//! - up to Go 1.20 (and wherever DWARF declares it as a typedef), `labelMap` is a
//!   `map[string]string`: `g.labels` -> map variable -> `hmap`, whose buckets are walked
//!   (bounded) the way the runtime lays them out;
//! - later (DWARF declares it as a struct; Go 1.27 measured), a sorted slice of
//!   `{key, value string}` pairs: `g.labels` -> `{ptr, len, cap}`.
//!
//! A label map is never modified once a goroutine points at it (`WithLabels` builds a new
//! one), and the `g` keeps it alive: so the labels are trusted only when the `g` still holds
//! the same goroutine id and the same `labels` pointer after they were read. Anything that
//! does not check out (a bad pointer, an absurd length, a count that does not match) gives
//! no labels at all, never partial or wrong ones.

use std::collections::BTreeMap;

use super::dwarf::TypeShape;
use super::elf::{le32, le64};
use super::{GOffsets, GoVersion};
use crate::proc::memory::read_process_memory;

/// Labels of one goroutine, by key.
pub type GoLabels = BTreeMap<String, String>;

/// Labels kept per goroutine, at most (the first by key order for a slice, any for a map).
pub const MAX_LABELS: usize = 16;
/// Bytes of a key or value kept; a longer one is cut there and ends with `…`.
pub const MAX_LABEL_BYTES: usize = 128;
/// More labels than this in a set means the pointer was not to a label set.
const ABSURD_LABELS: u64 = 1 << 16;
/// A Go string longer than this is not a label (a misread header).
const ABSURD_STRING: u64 = 1 << 24;

/// How `runtime/pprof.labelMap` is laid out in a binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelMapKind {
    /// `map[string]string` (Go up to 1.20).
    Map,
    /// A sorted slice of `{key, value string}` (later releases).
    Slice,
}

/// Where a goroutine's labels are and how to decode them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelsLayout {
    /// Offset of `g.labels`.
    pub g_labels: u64,
    pub g_goid: u64,
    /// `g.atomicstatus`.
    pub g_status: u64,
    pub kind: LabelMapKind,
}

/// The layout for a binary: `g.labels` from DWARF or the measured table, the map's shape from
/// DWARF, else from the version (measured on 1.19 and 1.27; releases in between need DWARF).
pub(crate) fn layout(
    offsets: Option<&GOffsets>,
    shape: Option<TypeShape>,
    version: &GoVersion,
) -> Option<LabelsLayout> {
    let offsets = offsets?;
    let kind = match shape {
        Some(TypeShape::Struct) => LabelMapKind::Slice,
        Some(TypeShape::Other) => LabelMapKind::Map,
        None if version.major == 1 && version.minor <= 20 => LabelMapKind::Map,
        None if version.at_least(1, 27) => LabelMapKind::Slice,
        None => return None,
    };
    Some(LabelsLayout {
        g_labels: offsets.g_labels?,
        g_goid: offsets.g_goid,
        g_status: offsets.g_atomicstatus,
        kind,
    })
}

/// Reads memory of the target: the process in production, a fake in tests.
pub(crate) trait Memory {
    /// Exactly `len` bytes at `addr`, or `None`.
    fn read(&self, addr: u64, len: usize) -> Option<Vec<u8>>;
}

/// A live process.
pub(crate) struct Process(pub u32);

impl Memory for Process {
    fn read(&self, addr: u64, len: usize) -> Option<Vec<u8>> {
        if addr == 0 {
            return None;
        }
        read_process_memory(self.0, addr, len)
            .ok()
            .filter(|b| b.len() == len)
    }
}

/// The pprof labels of goroutine `goid`, whose `g` is at `g_addr` in `pid`. `Some(empty)`
/// when it has none; `None` when they cannot be read with certainty (it exited, its `g` was
/// reused, the memory does not look like a label set).
///
/// `held`: the `g.labels` pointer a probe saw at the moment the alert is about (a wait's wake,
/// a panic). The labels are then read only if the goroutine still holds that very set: one it
/// set since (a later request's) or one it dropped (whose memory the GC may have reused) gives
/// `None`, never labels it did not have then. Without it, the labels of a goroutine parked now
/// (it must be parked, before and after the read, so that they are those of its wait).
pub fn goroutine_labels(
    pid: u32,
    layout: &LabelsLayout,
    g_addr: u64,
    goid: u64,
    held: Option<u64>,
) -> Option<GoLabels> {
    read_labels(&Process(pid), layout, g_addr, goid, held)
}

pub(crate) fn read_labels(
    mem: &dyn Memory,
    layout: &LabelsLayout,
    g_addr: u64,
    goid: u64,
    held: Option<u64>,
) -> Option<GoLabels> {
    if held == Some(0) {
        return Some(GoLabels::new());
    }
    // The fields in one read (they are a few hundred bytes apart in every version).
    let fields = [layout.g_goid, layout.g_labels, layout.g_status];
    let lo = fields.into_iter().min().unwrap_or(0);
    let hi = fields.into_iter().max().unwrap_or(0);
    let head = || -> Option<(u64, u64)> {
        let bytes = mem.read(g_addr.checked_add(lo)?, (hi - lo) as usize + 8)?;
        let at = |off: u64| le64(&bytes, (off - lo) as usize);
        let status = le32(&bytes, (layout.g_status - lo) as usize) & !SCAN_BIT;
        if held.is_none() && status != WAITING && status != LEAKED {
            return None;
        }
        Some((at(layout.g_goid), at(layout.g_labels)))
    };
    let (id, ptr) = head()?;
    if id != goid || held.is_some_and(|h| h != ptr) {
        return None;
    }
    if ptr == 0 {
        return Some(GoLabels::new());
    }
    let labels = match layout.kind {
        LabelMapKind::Slice => read_slice(mem, ptr)?,
        LabelMapKind::Map => read_map(mem, ptr)?,
    };
    // Same goroutine, same (immutable) label set: what was read is its labels.
    (head()? == (id, ptr)).then_some(labels)
}

/// `_Gscan`, and the parked states `_Gwaiting` and (Go 1.27+) `_Gleaked`.
const SCAN_BIT: u32 = 0x1000;
const WAITING: u32 = 4;
const LEAKED: u32 = 10;

/// A Go string header `{ptr, len}` at `at` in `bytes`, read and cut to `MAX_LABEL_BYTES`.
fn string_at(mem: &dyn Memory, bytes: &[u8], at: usize) -> Option<String> {
    let (ptr, len) = (le64(bytes, at), le64(bytes, at + 8));
    if len == 0 {
        return Some(String::new());
    }
    if len > ABSURD_STRING {
        return None;
    }
    let take = (len as usize).min(MAX_LABEL_BYTES);
    let raw = mem.read(ptr, take)?;
    Some(bounded_text(&raw, take < len as usize))
}

/// Text of a label's bytes: invalid UTF-8 replaced, a cut one marked (at a char boundary).
fn bounded_text(raw: &[u8], cut: bool) -> String {
    let mut text = String::from_utf8_lossy(raw).into_owned();
    if cut {
        // A multi-byte character split by the cut became U+FFFD: drop it.
        if text.ends_with('\u{fffd}') {
            text.pop();
        }
        text.push('…');
    }
    text
}

/// Size of one `{key, value string}`.
const PAIR: usize = 32;

fn read_slice(mem: &dyn Memory, set: u64) -> Option<GoLabels> {
    let header = mem.read(set, 24)?;
    let (ptr, len, cap) = (le64(&header, 0), le64(&header, 8), le64(&header, 16));
    if len > cap || len > ABSURD_LABELS {
        return None;
    }
    let n = (len as usize).min(MAX_LABELS);
    if n == 0 {
        return Some(GoLabels::new());
    }
    let pairs = mem.read(ptr, n * PAIR)?;
    let mut labels = GoLabels::new();
    for i in 0..n {
        let key = string_at(mem, &pairs, i * PAIR)?;
        let value = string_at(mem, &pairs, i * PAIR + 16)?;
        labels.insert(key, value);
    }
    Some(labels)
}

/// `runtime.hmap` fields read (Go 1.19's `map.go`).
const HMAP_LEN: usize = 48;
const HMAP_COUNT: usize = 0;
const HMAP_FLAGS: usize = 8;
const HMAP_B: usize = 9;
const HMAP_BUCKETS: usize = 16;
const HMAP_OLDBUCKETS: usize = 24;
/// `sameSizeGrow`: the old buckets are as many as the new.
const SAME_SIZE_GROW: u8 = 8;
/// A `map[string]string` bucket: 8 tophash bytes, 8 keys, 8 values, the overflow pointer.
const BUCKET_SLOTS: usize = 8;
const BUCKET_LEN: usize = 8 + BUCKET_SLOTS * 16 * 2 + 8;
const BUCKET_KEYS: usize = 8;
const BUCKET_VALUES: usize = 8 + BUCKET_SLOTS * 16;
const BUCKET_OVERFLOW: usize = BUCKET_LEN - 8;
/// Tophash values below this mark empty or evacuated slots.
const MIN_TOP_HASH: u8 = 5;
/// A label map this big is not one (2^5 buckets hold ~200 labels).
const MAX_B: u8 = 5;
/// Overflow buckets followed per bucket.
const MAX_OVERFLOW: usize = 4;

fn read_map(mem: &dyn Memory, map_var: u64) -> Option<GoLabels> {
    let hmap = le64(&mem.read(map_var, 8)?, 0);
    if hmap == 0 {
        return Some(GoLabels::new());
    }
    let h = mem.read(hmap, HMAP_LEN)?;
    let count = le64(&h, HMAP_COUNT);
    let b = h[HMAP_B];
    if count > ABSURD_LABELS || b > MAX_B {
        return None;
    }
    let mut labels = GoLabels::new();
    let mut slots = 0u64;
    let buckets = le64(&h, HMAP_BUCKETS);
    let old = le64(&h, HMAP_OLDBUCKETS);
    // Entries of a map still growing are in the old buckets until moved (moved ones are marked).
    let old_b = if h[HMAP_FLAGS] & SAME_SIZE_GROW != 0 {
        b
    } else {
        b.saturating_sub(1)
    };
    for (array, bits) in [(buckets, b), (old, old_b)] {
        if array == 0 {
            continue;
        }
        for i in 0..(1u64 << bits) {
            let mut bucket = array.checked_add(i * BUCKET_LEN as u64)?;
            for _ in 0..=MAX_OVERFLOW {
                let bytes = mem.read(bucket, BUCKET_LEN)?;
                for slot in 0..BUCKET_SLOTS {
                    if bytes[slot] < MIN_TOP_HASH {
                        continue;
                    }
                    slots += 1;
                    if labels.len() < MAX_LABELS {
                        let key = string_at(mem, &bytes, BUCKET_KEYS + slot * 16)?;
                        let value = string_at(mem, &bytes, BUCKET_VALUES + slot * 16)?;
                        labels.insert(key, value);
                    }
                }
                bucket = le64(&bytes, BUCKET_OVERFLOW);
                if bucket == 0 {
                    break;
                }
            }
        }
    }
    // Every live slot found, no more: otherwise this was not (or no longer) the map.
    (slots == count).then_some(labels)
}

#[cfg(test)]
mod tests;
