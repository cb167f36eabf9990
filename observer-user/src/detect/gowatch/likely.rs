//! Snapshots name the likely holder of a lock that long waiters queue on (see `golikely`):
//! nothing saw the release while the park probes were off, so the goroutines parked at the
//! same moment are searched, within a bounded number of stack reads per snapshot.

use std::{collections::HashMap, sync::Arc};

use observer_common::GoParked;

use super::GoWatch;
use crate::detect::gohold::LikelyHolder;
use crate::detect::golikely::{holder_basis, lock_waited, HolderBasis, LockCode};
use crate::golang::{goroutines, lockrefs::FuncLocks, GoBinary};
use crate::stacks::resolver::StackResolver;

/// Goroutine stacks read per snapshot for holder searches, at most: each is a few reads of
/// the target's memory (~10 us), so a search costs at most about a millisecond.
const MAX_READS_PER_SNAPSHOT: usize = 64;
/// Functions whose code was decoded, remembered by pc, at most.
const MAX_CODE_CACHE: usize = 4096;

#[derive(Default)]
pub(super) struct LikelyHolders {
    code: HashMap<u64, Option<Arc<FuncLocks>>>,
    /// What was found for each long waiter, by (goid, first seen).
    pub(super) by_wait: HashMap<(u64, u64), LikelyHolder>,
    /// This snapshot's searches, by lock (`LockWaited::key`).
    searched: HashMap<u64, Option<LikelyHolder>>,
    reads_left: usize,
}

/// The executable's code, decoded on demand.
struct BinaryCode<'a> {
    bin: &'a GoBinary,
    cache: &'a mut HashMap<u64, Option<Arc<FuncLocks>>>,
}

impl LockCode for BinaryCode<'_> {
    fn func_locks(&mut self, pc: u64) -> Option<Arc<FuncLocks>> {
        if let Some(known) = self.cache.get(&pc) {
            return known.clone();
        }
        if self.cache.len() >= MAX_CODE_CACHE {
            self.cache.clear();
        }
        let decoded = self.bin.func_locks_at(pc).map(Arc::new);
        self.cache.insert(pc, decoded.clone());
        decoded
    }

    fn line(&mut self, pc: u64) -> Option<u32> {
        // The physical function's line: the outermost of the inlined frames at `pc`.
        self.bin.frames_at(pc).last().map(|f| f.line)
    }
}

fn describe(basis: &HolderBasis, bin: &GoBinary) -> String {
    match basis {
        HolderBasis::SameMutex { func, mutex } => format!(
            "inside {func}, which locks the same mutex ({})",
            bin.data_symbol_at(*mutex)
                .map(str::to_string)
                .unwrap_or_else(|| format!("{mutex:#x}"))
        ),
        HolderBasis::PastSameCall { func, lock_line } => {
            format!("past the waiters' own Lock() call (line {lock_line}) in {func}")
        }
    }
}

impl GoWatch {
    /// A new snapshot: a new budget of stack reads, searches start over.
    pub(super) fn likely_new_snapshot(&mut self) {
        self.likely.searched.clear();
        self.likely.reads_left = MAX_READS_PER_SNAPSHOT;
    }

    /// Searches the likely holder of the lock goroutine `waiter` (parked as `w`, a long sync
    /// wait first seen at `key.1`) waits for, among the goroutines `parked` now.
    pub(super) fn search_likely_holder(
        &mut self,
        key: (u64, u64),
        w: &GoParked,
        parked: &[(u64, GoParked)],
        stacks: &mut StackResolver,
    ) {
        let (Some(bin), Some(bias)) = (self.binary.clone(), self.bias) else {
            return;
        };
        let pid = self.pid;
        let waiter_reason = w.reason;
        let LikelyHolders {
            code,
            by_wait,
            searched,
            reads_left,
        } = &mut self.likely;
        let mut code = BinaryCode {
            bin: &bin,
            cache: code,
        };
        let link = |pcs: &[u64]| -> Vec<u64> { pcs.iter().map(|p| p.wrapping_sub(bias)).collect() };
        if *reads_left == 0 {
            return;
        }
        *reads_left -= 1;
        let Ok(Some((waiter_pcs, _))) = goroutines::parked_stack(pid, &bin, bias, w.g, key.0)
        else {
            return;
        };
        let Some(waited) = lock_waited(&link(&waiter_pcs), &mut code) else {
            return;
        };
        if let Some(found) = searched.get(&waited.key()) {
            if let Some(h) = found {
                by_wait.insert(key, h.clone());
            }
            return;
        }
        // Goroutines started by the same `go` statement first (a handler holding the lock
        // others handlers want), waits of the same reason last (mostly fellow waiters).
        let mut order: Vec<&(u64, GoParked)> =
            parked.iter().filter(|(goid, _)| *goid != key.0).collect();
        order.sort_by_key(|(_, p)| (p.reason == waiter_reason, p.gopc != w.gopc));
        let mut found = None;
        for (goid, p) in order {
            if *reads_left == 0 {
                break;
            }
            *reads_left -= 1;
            let Ok(Some((pcs, _))) = goroutines::parked_stack(pid, &bin, bias, p.g, *goid) else {
                continue;
            };
            if let Some(basis) = holder_basis(&waited, &link(&pcs), &mut code) {
                found = Some(LikelyHolder {
                    goid: *goid,
                    stack: stacks.resolve_addrs_frames(pid, &pcs),
                    why: describe(&basis, &bin),
                });
                break;
            }
        }
        if let Some(h) = &found {
            by_wait.insert(key, h.clone());
        }
        searched.insert(waited.key(), found);
    }
}
