//! Keeps each watched process's code-site table in the kernel (which lock a futex wait is
//! for, see `stacks::lock_sites`) in step with the code the process has mapped: built when
//! the process is taken on, rebuilt when its executable mappings change (the dynamic loader
//! right after exec, dlopen), removed when it is let go.
//!
//! Mappings are re-read with a backoff (200 ms doubling to 30 s, back to the start after a
//! change): a new process maps its libraries within milliseconds, a running one rarely.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use observer_common::CodePageKey;

use super::Session;
use crate::proc::procmaps::{Backing, ProcessMaps};
use crate::stacks::lock_sites::ProcessSites;

const FIRST_INTERVAL: Duration = Duration::from_millis(200);
const MAX_INTERVAL: Duration = Duration::from_secs(30);

/// One process's table as the kernel holds it.
pub(super) struct CodeSitesState {
    /// Pages written to the kernel, to remove them later.
    keys: Vec<CodePageKey>,
    /// Of the executable mappings the table was built from.
    signature: Option<u64>,
    next_check: Instant,
    interval: Duration,
}

impl Default for CodeSitesState {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            signature: None,
            next_check: Instant::now(),
            interval: FIRST_INTERVAL,
        }
    }
}

impl Session {
    /// Re-checks the processes whose check is due (on the scan tick).
    pub(super) fn refresh_code_sites(&mut self) {
        let now = Instant::now();
        let due: Vec<u32> = self
            .watched
            .iter()
            .filter(|(_, t)| t.code_sites.next_check <= now)
            .map(|(&pid, _)| pid)
            .collect();
        for pid in due {
            let _ = self.refresh_code_sites_of(pid);
        }
    }

    /// Rebuilds `pid`'s table when its executable mappings changed since the last build;
    /// returns the new table.
    pub(super) fn refresh_code_sites_of(&mut self, pid: u32) -> Option<ProcessSites> {
        let Ok(maps) = ProcessMaps::load(pid) else {
            return None; // it ended: its exit removes the table
        };
        let signature = code_signature(&maps);
        let t = self.watched.get_mut(&pid)?;
        let state = &mut t.code_sites;
        let now = Instant::now();
        if state.signature == Some(signature) {
            state.interval = (state.interval * 2).min(MAX_INTERVAL);
            state.next_check = now + state.interval;
            return None;
        }
        state.signature = Some(signature);
        state.interval = FIRST_INTERVAL;
        state.next_check = now + FIRST_INTERVAL;
        let table = self.lock_sites.for_process(&maps);
        let new_keys: HashSet<CodePageKey> = table.pages.iter().map(|(k, _)| *k).collect();
        let stale: Vec<CodePageKey> = state
            .keys
            .iter()
            .filter(|k| !new_keys.contains(k))
            .copied()
            .collect();
        if table.dropped_rows > 0 {
            log::warn!(
                "pid {pid}: {} code ranges did not fit the per-page table: waits there are not recognised as lock waits",
                table.dropped_rows
            );
        }
        let written = match self.probes.set_code_sites(&table.pages, &stale) {
            Ok(n) => n,
            Err(e) => {
                log::warn!("pid {pid}: lock recognition table not written: {e}");
                0
            }
        };
        if written < table.pages.len() {
            crate::say!(
                "observer: pid {pid}: the kernel's lock-site table is full: some of its locks are not recognised ({} of {} pages written)",
                written,
                table.pages.len()
            );
        }
        log::debug!(
            "pid {pid}: lock-site table: {} pages, {} lock slow paths",
            written,
            table.lock_rows
        );
        state.keys = table.pages[..written].iter().map(|(k, _)| *k).collect();
        Some(table)
    }

    /// Takes `pid`'s table out of the kernel (it exited or is let go).
    pub(super) fn forget_code_sites(&mut self, keys: &[CodePageKey]) {
        if !keys.is_empty() {
            let _ = self.probes.set_code_sites(&[], keys);
        }
    }
}

impl CodeSitesState {
    /// Asks for a rebuild at the next check (the process ran a new program).
    pub(super) fn invalidate(&mut self) {
        self.signature = None;
        self.interval = FIRST_INTERVAL;
        self.next_check = Instant::now();
    }

    pub(super) fn take_keys(&mut self) -> Vec<CodePageKey> {
        std::mem::take(&mut self.keys)
    }
}

/// Identifies the set of executable file mappings (where, which file, which part).
fn code_signature(maps: &ProcessMaps) -> u64 {
    let mut h = DefaultHasher::new();
    for m in maps.mappings().iter().filter(|m| m.perms.exec) {
        if let Backing::File { path, .. } = &m.backing {
            (m.start, m.end, m.offset, m.inode, m.dev, path).hash(&mut h);
        }
    }
    h.finish()
}
