//! Keeps each watched process's code-site table in the kernel (which lock a futex wait is
//! for, see `stacks::lock_sites`) in step with the code the process has mapped: built when
//! the process is taken on, rebuilt when its executable mappings change (the dynamic loader
//! right after exec, dlopen), removed when it is let go.
//!
//! Mappings are re-read with a backoff (200 ms doubling to 30 s, back to the start after a
//! change): a new process maps its libraries within milliseconds, a running one rarely.
//!
//! Building a table reads the symbol tables of every mapped binary (tens of milliseconds for a
//! process with big libraries, once per binary): that is done by a worker thread under
//! `SCHED_IDLE`, so it only ever takes CPU the observed programs leave idle. Only taking a
//! process on, whose already-blocked threads are classified at once, builds in the session.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use observer_common::{futex_op, wait_class, CodePageKey, InFlight};

use super::Session;
use crate::proc::procmaps::{Backing, ProcessMaps};
use crate::proc::seed;
use crate::stacks::lock_sites::{LockSites, ProcessSites};

const FIRST_INTERVAL: Duration = Duration::from_millis(200);
const MAX_INTERVAL: Duration = Duration::from_secs(30);

/// A table to build in the background.
struct Request {
    pid: u32,
    signature: u64,
    maps: ProcessMaps,
}

/// A table built in the background.
struct Built {
    pid: u32,
    signature: u64,
    table: ProcessSites,
    took: Duration,
}

/// Builds tables: in a `SCHED_IDLE` worker thread, or at once for a process being taken on.
pub(super) struct SiteBuilder {
    /// Shared with the worker: each binary is read once, whoever builds.
    sites: Arc<Mutex<LockSites>>,
    requests: mpsc::Sender<Request>,
    built: mpsc::Receiver<Built>,
}

impl SiteBuilder {
    pub(super) fn start() -> Self {
        let sites = Arc::new(Mutex::new(LockSites::new()));
        let (requests, inbox) = mpsc::channel::<Request>();
        let (outbox, built) = mpsc::channel();
        let worker_sites = Arc::clone(&sites);
        let spawned = std::thread::Builder::new()
            .name("lock-sites".into())
            .spawn(move || {
                run_idle();
                for r in inbox {
                    let started = Instant::now();
                    let table = lock(&worker_sites).for_process(&r.maps);
                    let done = Built {
                        pid: r.pid,
                        signature: r.signature,
                        table,
                        took: started.elapsed(),
                    };
                    if outbox.send(done).is_err() {
                        return;
                    }
                }
            });
        if let Err(e) = spawned {
            log::warn!("no lock-site worker thread ({e}): tables are built in the session");
        }
        Self {
            sites,
            requests,
            built,
        }
    }

    /// Builds now, in the calling thread.
    fn build_now(&self, maps: &ProcessMaps) -> ProcessSites {
        lock(&self.sites).for_process(maps)
    }
}

fn lock(sites: &Mutex<LockSites>) -> std::sync::MutexGuard<'_, LockSites> {
    sites
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Lowers the calling thread to `SCHED_IDLE`: it runs only when a CPU has nothing else to do.
fn run_idle() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc != 0 {
        log::debug!(
            "lock-site worker stays at normal priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// One process's table as the kernel holds it.
pub(super) struct CodeSitesState {
    /// Pages written to the kernel, to remove them later.
    keys: Vec<CodePageKey>,
    /// Of the executable mappings the table was built from (or is being built from).
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
        while let Ok(b) = self.site_builder.built.try_recv() {
            let current = self
                .watched
                .get(&b.pid)
                .is_some_and(|t| t.code_sites.signature == Some(b.signature));
            if current {
                self.install_code_sites(b.pid, b.table, b.took);
            }
        }
        let now = Instant::now();
        let due: Vec<u32> = self
            .watched
            .iter()
            .filter(|(_, t)| t.code_sites.next_check <= now)
            .map(|(&pid, _)| pid)
            .collect();
        for pid in due {
            self.refresh_code_sites_of(pid, false);
        }
    }

    /// Rebuilds `pid`'s table when its executable mappings changed since the last build: in
    /// the worker, or with `now` in this thread, returning the table.
    pub(super) fn refresh_code_sites_of(&mut self, pid: u32, now: bool) -> Option<ProcessSites> {
        let Ok(maps) = ProcessMaps::load(pid) else {
            return None; // it ended: its exit removes the table
        };
        let signature = code_signature(&maps);
        let t = self.watched.get_mut(&pid)?;
        let state = &mut t.code_sites;
        let at = Instant::now();
        if state.signature == Some(signature) {
            state.interval = (state.interval * 2).min(MAX_INTERVAL);
            state.next_check = at + state.interval;
            return None;
        }
        state.signature = Some(signature);
        state.interval = FIRST_INTERVAL;
        state.next_check = at + FIRST_INTERVAL;
        if !now {
            let request = Request {
                pid,
                signature,
                maps,
            };
            match self.site_builder.requests.send(request) {
                Ok(()) => return None,
                // No worker: build here.
                Err(mpsc::SendError(r)) => {
                    let table = self.site_builder.build_now(&r.maps);
                    self.install_code_sites(pid, table, at.elapsed());
                    return None;
                }
            }
        }
        let table = self.site_builder.build_now(&maps);
        let copy = table.clone();
        self.install_code_sites(pid, table, at.elapsed());
        Some(copy)
    }

    /// Writes a built table to the kernel in place of the process's previous one.
    fn install_code_sites(&mut self, pid: u32, table: ProcessSites, took: Duration) {
        let Some(t) = self.watched.get_mut(&pid) else {
            return;
        };
        let state = &mut t.code_sites;
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
            let note = format!(
                "{written} of {} code pages written: some of its locks are not recognised",
                table.pages.len()
            );
            self.degraded_one_off(crate::detect::degraded::Reason::LockSitesFull, pid, note);
        }
        log::debug!(
            "pid {pid}: lock-site table: {} pages, {} lock slow paths, built in {took:?}",
            written,
            table.lock_rows
        );
        if let Some(t) = self.watched.get_mut(&pid) {
            t.code_sites.keys = table.pages[..written].iter().map(|(k, _)| *k).collect();
        }
        self.reclassify_blocked(pid, &table);
    }

    /// Waits of `pid` that began before its table was there (a command's first waits under
    /// `observer run`, code loaded by `dlopen`) were judged by the owner rule only: judged
    /// again now with the table, while they still go on.
    fn reclassify_blocked(&mut self, pid: u32, table: &ProcessSites) {
        let Ok(in_flight) = self.probes.in_flight() else {
            return;
        };
        for (tid, mut e) in in_flight {
            if e.tgid != pid || e.class != wait_class::FUTEX {
                continue;
            }
            if classify_blocked(table, tid, &mut e) && !self.probes.reclassify_in_flight(tid, &e) {
                log::debug!("pid {pid} tid {tid}: its wait ended before it could be reclassified");
            }
        }
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

/// Classifies a wait the kernel did not see begin with the table (the kernel's walk, done
/// here on its saved registers and the target's memory): true when it is a lock wait, with
/// `entry` updated (class, kind, owner as the lock records it).
pub(super) fn classify_blocked(table: &ProcessSites, tid: u32, entry: &mut InFlight) -> bool {
    if entry.uaddr == 0 || !futex_op::is_wait(entry.op) {
        return false;
    }
    let pid = entry.tgid;
    let read = |addr| {
        let b = crate::proc::memory::read_process_memory(pid, addr, 8).ok()?;
        Some(u64::from_ne_bytes(b.get(..8)?.try_into().ok()?))
    };
    let Some(kind) = table.lock_kind_at(entry.ip, entry.sp, entry.bp, read) else {
        return false;
    };
    entry.class = wait_class::LOCK;
    entry.lock_kind = kind;
    entry.owner = seed::owner_for_kind(pid, kind, entry.op, entry.uaddr, tid).unwrap_or(0);
    true
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
