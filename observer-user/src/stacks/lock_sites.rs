//! Where lock waits come from: the per-process table of code ranges the kernel walks at each
//! futex wait to tell a lock wait (and which lock) from an idle one.
//!
//! A futex wait's syscall sits in a wait primitive shared by every kind of wait (glibc's
//! `syscall()` for all of Rust's locks, condvars and thread parking; glibc's
//! `__futex_abstimed_wait_common` for rwlocks, semaphores and condition variables), so the
//! syscall site says nothing. The caller chain does: it is walked up through the wait
//! primitives (`Role::Pass`, with the `.eh_frame` rule that finds each one's return address)
//! until a lock's slow path (`Role::Lock`) is reached. The names are matched once per binary
//! here; the kernel only looks addresses up (`observer-ebpf/src/lock_sites.rs`).
//!
//! Names come from the binary's symbol tables and, for a stripped library such as Debian's
//! libc, from its separate debug file by build id (package `libc6-dbg`): glibc's internal wait
//! primitives are not exported. Without them rwlock and semaphore waits stay idle.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::sync::Arc;

use gimli::{CfaRule, EhFrame, RegisterRule, UnwindSection, X86_64};
use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol, ReadCache};
use observer_common::{
    cfa_reg, lock_kind, site_verdict, CodePageKey, CodePageSites, CodeSite, CODE_PAGE_SHIFT,
    SITES_PER_PAGE,
};

use crate::proc::objectfile::{FileId, ObjectFile};
use crate::proc::procmaps::ProcessMaps;

/// What a function is to the walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A wait primitive: walk through it to its caller.
    Pass,
    /// A lock's slow path: the wait is for a lock of this `lock_kind`.
    Lock(u32),
}

/// The role of a function by its (demangled, hash-free) name; `None` for everything else,
/// which ends the walk as "not a lock".
pub fn role_of(name: &str) -> Option<Role> {
    // C symbols of local copies carry suffixes (`do_futex_wait.constprop.0`).
    let c_name = name.split('.').next().unwrap_or(name);
    match c_name {
        "syscall"
        | "__futex_abstimed_wait_common"
        | "__futex_abstimed_wait_common64"
        | "__futex_abstimed_wait64"
        | "__futex_abstimed_wait_cancelable64"
        | "do_futex_wait" => return Some(Role::Pass),
        "__lll_lock_wait"
        | "pthread_mutex_lock"
        | "__pthread_mutex_lock"
        | "___pthread_mutex_lock"
        | "__pthread_mutex_lock_full"
        | "__pthread_mutex_clocklock_common"
        | "pthread_mutex_timedlock"
        | "___pthread_mutex_timedlock64"
        | "pthread_mutex_clocklock"
        | "___pthread_mutex_clocklock64"
        | "__pthread_mutex_cond_lock"
        | "__pthread_mutex_cond_lock_full" => return Some(Role::Lock(lock_kind::PTHREAD_MUTEX)),
        _ => {}
    }
    if c_name.contains("pthread_rwlock_") && !c_name.contains("try") {
        let verb = c_name.trim_end_matches("64").trim_end_matches("_full");
        if verb.ends_with("rdlock") {
            return Some(Role::Lock(lock_kind::PTHREAD_RWLOCK_READ));
        }
        if verb.ends_with("wrlock") {
            return Some(Role::Lock(lock_kind::PTHREAD_RWLOCK_WRITE));
        }
    }
    if c_name.starts_with("__new_sem_wait")
        || matches!(
            c_name,
            "sem_wait" | "sem_timedwait" | "sem_clockwait" | "___sem_timedwait64"
        )
    {
        return Some(Role::Lock(lock_kind::SEMAPHORE));
    }
    rust_role(name)
}

/// Rust std (futex-based on Linux) and parking_lot, by demangled path.
fn rust_role(name: &str) -> Option<Role> {
    const LOCKS: &[(&str, u32)] = &[
        ("futex::Mutex>::lock_contended", lock_kind::RUST_MUTEX),
        (
            "futex::RwLock>::read_contended",
            lock_kind::RUST_RWLOCK_READ,
        ),
        (
            "futex::RwLock>::write_contended",
            lock_kind::RUST_RWLOCK_WRITE,
        ),
        ("futex::Once>::call", lock_kind::RUST_ONCE),
        (
            "parking_lot::raw_mutex::RawMutex::lock_slow",
            lock_kind::PARKING_LOT_MUTEX,
        ),
        (
            "parking_lot::raw_rwlock::RawRwLock::lock_shared_slow",
            lock_kind::PARKING_LOT_RWLOCK_READ,
        ),
        (
            "parking_lot::raw_rwlock::RawRwLock::lock_upgradable_slow",
            lock_kind::PARKING_LOT_RWLOCK_READ,
        ),
        (
            "parking_lot::raw_rwlock::RawRwLock::lock_exclusive_slow",
            lock_kind::PARKING_LOT_RWLOCK_WRITE,
        ),
        (
            "parking_lot::raw_rwlock::RawRwLock::upgrade_slow",
            lock_kind::PARKING_LOT_RWLOCK_WRITE,
        ),
        (
            "parking_lot::raw_rwlock::RawRwLock::wait_for_readers",
            lock_kind::PARKING_LOT_RWLOCK_WRITE,
        ),
    ];
    let path = name.trim_start_matches('<');
    if let Some((_, kind)) = LOCKS.iter().find(|(p, _)| name.contains(p)) {
        return Some(Role::Lock(*kind));
    }
    // std's futex_wait when not inlined, and parking_lot's parking (inlined in release
    // builds, separate frames in debug ones).
    if name.ends_with("::futex::futex_wait") || path.starts_with("parking_lot_core::") {
        return Some(Role::Pass);
    }
    None
}

/// One row relative to the binary (its own virtual addresses), before it is placed in a
/// process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ModuleRow {
    svma: u64,
    len: u32,
    site: CodeSite,
}

/// What one binary contributes to the table, and why it may be incomplete.
#[derive(Debug, Default)]
struct ModuleSites {
    rows: Vec<ModuleRow>,
    /// Executable PT_LOAD segments as (file offset, virtual address, file size).
    exec_segments: Vec<(u64, u64, u64)>,
}

impl ModuleSites {
    /// What to add to the binary's addresses to get the process's, given the executable
    /// mapping at `start` of file offset `offset`. From the executable segment it maps: the
    /// read-only segment before it often covers the same page-aligned offset (lld pads
    /// virtual addresses, not file offsets), and picking it would shift every row.
    fn bias(&self, start: u64, offset: u64) -> Option<u64> {
        const PAGE: u64 = 4096;
        let &(off, vaddr, _) = self.exec_segments.iter().find(|&&(off, _, size)| {
            off - off % PAGE <= offset && offset < off.saturating_add(size.max(1))
        })?;
        let svma = (vaddr - vaddr % PAGE) + (offset - (off - off % PAGE));
        Some(start.wrapping_sub(svma))
    }
}

/// Caps on what a binary may cost us: a local user controls the binaries we read.
const MAX_SYMBOLS: usize = 4_000_000;
const MAX_FDES: usize = 2_000_000;
const MAX_ROWS_PER_FUNCTION: usize = 64;
const MAX_CACHED_MODULES: usize = 512;

/// Builds the tables, reading each binary once (libc is in every process).
#[derive(Default)]
pub struct LockSites {
    modules: HashMap<FileId, Arc<ModuleSites>>,
}

/// One process's table, by code page, ready for the kernel.
#[derive(Debug, Default, Clone)]
pub struct ProcessSites {
    pub pages: Vec<(CodePageKey, CodePageSites)>,
    /// Rows that did not fit in their page (`SITES_PER_PAGE`): those code ranges are not
    /// recognised.
    pub dropped_rows: usize,
    /// How many lock slow paths were found (0: no lock library with symbols is mapped).
    pub lock_rows: usize,
}

impl ProcessSites {
    /// The kernel's walk (`observer-ebpf/src/lock_sites.rs`) done here, for waits the kernel
    /// did not see begin (threads already blocked when observation started): the lock kind
    /// of a wait made at `ip` with stack `sp` / frame pointer `bp` (0: unknown), reading the
    /// target's stack with `read_u64`.
    pub fn lock_kind_at(
        &self,
        ip: u64,
        sp: u64,
        bp: u64,
        mut read_u64: impl FnMut(u64) -> Option<u64>,
    ) -> Option<u32> {
        let (mut pc, mut sp, mut bp) = (ip, sp, bp);
        for _ in 0..observer_common::MAX_SITE_DEPTH {
            let site = self.find(pc.wrapping_sub(1))?;
            match site.verdict {
                site_verdict::LOCK => return Some(u32::from(site.lock_kind)),
                site_verdict::PASS => {
                    let base = if site.cfa_reg == cfa_reg::BP { bp } else { sp };
                    if base == 0 {
                        return None;
                    }
                    let cfa = base.wrapping_add(site.cfa_offset as i64 as u64);
                    let ret = read_u64(cfa.wrapping_sub(8))?;
                    if site.rbp_offset != 0 {
                        bp = read_u64(cfa.wrapping_add(site.rbp_offset as i64 as u64))?;
                    }
                    sp = cfa;
                    pc = ret;
                }
                _ => return None,
            }
        }
        None
    }

    fn find(&self, pc: u64) -> Option<CodeSite> {
        let page = pc >> CODE_PAGE_SHIFT;
        let i = self
            .pages
            .binary_search_by_key(&page, |(k, _)| k.page)
            .ok()?;
        let rows = &self.pages[i].1;
        rows.sites[..(rows.len as usize).min(SITES_PER_PAGE)]
            .iter()
            .find(|s| pc.wrapping_sub(s.start) < u64::from(s.len))
            .copied()
    }
}

impl LockSites {
    pub fn new() -> Self {
        Self::default()
    }

    /// The table for the process whose maps are `maps`.
    pub fn for_process(&mut self, maps: &ProcessMaps) -> ProcessSites {
        let pid = maps.pid();
        let mut rows: Vec<CodeSite> = Vec::new();
        let mut seen: Vec<*const ObjectFile> = Vec::new();
        for m in maps.mappings().iter().filter(|m| m.perms.exec) {
            let Some(object) = &m.object else { continue };
            let Some(module) = self.module(object) else {
                continue;
            };
            let Some(bias) = module.bias(m.start, m.offset) else {
                continue;
            };
            if !seen.contains(&Arc::as_ptr(object)) {
                seen.push(Arc::as_ptr(object));
            }
            for row in &module.rows {
                let start = row.svma.wrapping_add(bias);
                // Only the part of the binary this mapping holds.
                if start < m.start || start >= m.end {
                    continue;
                }
                let mut site = row.site;
                site.start = start;
                site.len = row
                    .len
                    .min(u32::try_from(m.end - start).unwrap_or(u32::MAX));
                rows.push(site);
            }
        }
        if log::log_enabled!(log::Level::Trace) {
            for r in &rows {
                log::trace!("pid {pid}: code site {:#x}+{:#x} {:?}", r.start, r.len, r);
            }
        }
        log::debug!("pid {pid}: {} code-site rows", rows.len());
        pages_of(pid, rows)
    }

    fn module(&mut self, object: &ObjectFile) -> Option<Arc<ModuleSites>> {
        let id = object.file_id()?;
        if let Some(m) = self.modules.get(&id) {
            return Some(Arc::clone(m));
        }
        let file = object.file()?;
        let debug = object
            .build_id()
            .and_then(|id| crate::proc::debugfile::find_by_build_id(id).ok().flatten());
        let sites = Arc::new(module_sites(file, debug.as_ref().map(|d| d.file())));
        if self.modules.len() >= MAX_CACHED_MODULES {
            self.modules.clear();
        }
        self.modules.insert(id, Arc::clone(&sites));
        Some(sites)
    }
}

/// The rows of one binary: its functions with a role, from its symbols and those of its
/// separate debug file, with `.eh_frame` rules for the wait primitives.
fn module_sites(file: &File, debug: Option<&File>) -> ModuleSites {
    let cache = ReadCache::new(file);
    let Ok(obj) = object::File::parse(&cache) else {
        return ModuleSites::default();
    };
    let exec_segments = obj
        .segments()
        .filter(|seg| matches!(seg.flags(), object::SegmentFlags::Elf { p_flags } if p_flags & object::elf::PF_X != 0))
        .map(|seg| {
            let (off, size) = seg.file_range();
            (off, seg.address(), size)
        })
        .collect();
    let mut functions: BTreeMap<u64, (u64, Role)> = BTreeMap::new();
    collect_functions(&obj, &mut functions);
    if let Some(debug) = debug {
        let debug_cache = ReadCache::new(debug);
        if let Ok(debug_obj) = object::File::parse(&debug_cache) {
            collect_functions(&debug_obj, &mut functions);
        }
    }
    if functions.is_empty() {
        return ModuleSites::default();
    }
    let mut sites = ModuleSites {
        rows: Vec::new(),
        exec_segments,
    };
    let mut rows = Vec::new();
    let passes: Vec<(u64, u64)> = functions
        .iter()
        .filter(|(_, (_, role))| *role == Role::Pass)
        .map(|(&start, &(size, _))| (start, size))
        .collect();
    for (&start, &(size, role)) in &functions {
        if let Role::Lock(kind) = role {
            rows.push(ModuleRow {
                svma: start,
                len: u32::try_from(size).unwrap_or(u32::MAX),
                site: CodeSite {
                    verdict: site_verdict::LOCK,
                    lock_kind: kind as u8,
                    ..CodeSite::default()
                },
            });
        }
    }
    if !passes.is_empty() {
        rows.extend(pass_rows(&obj, &passes));
    }
    rows.sort_by_key(|r| r.svma);
    sites.rows = rows;
    sites
}

/// Every name with a role contains one of these, mangled or not.
const RAW_HINTS: &[&str] = &[
    "syscall",
    "futex",
    "lock",
    "contended",
    "sem_",
    "parking_lot",
    "Once",
];

/// Functions with a role by start address -> (size, role); a lock role wins over a pass role
/// for aliases of one address.
fn collect_functions<'d, R: object::ReadRef<'d>>(
    obj: &object::File<'d, R>,
    out: &mut BTreeMap<u64, (u64, Role)>,
) {
    for sym in obj.symbols().chain(obj.dynamic_symbols()).take(MAX_SYMBOLS) {
        if sym.kind() != object::SymbolKind::Text || sym.size() == 0 || sym.address() == 0 {
            continue;
        }
        let Ok(raw) = sym.name() else { continue };
        // Demangling every symbol of a large binary costs more than all the rest.
        if !RAW_HINTS.iter().any(|h| raw.contains(h)) {
            continue;
        }
        let name = format!("{:#}", rustc_demangle::demangle(raw));
        let Some(role) = role_of(&name) else { continue };
        let entry = out.entry(sym.address()).or_insert((sym.size(), role));
        if matches!(role, Role::Lock(_)) {
            *entry = (sym.size(), role);
        }
    }
}

/// The `.eh_frame` rows covering the wait primitives: where each one's caller's return
/// address is, at every instruction of it.
fn pass_rows<'d, R: object::ReadRef<'d>>(
    obj: &object::File<'d, R>,
    passes: &[(u64, u64)],
) -> Vec<ModuleRow> {
    let Some(section) = obj.section_by_name(".eh_frame") else {
        return Vec::new();
    };
    // The size is the binary's word: a sparse file can claim gigabytes of unwind tables.
    if section.size() > crate::proc::inflate::MAX_DECOMPRESSED_PER_FILE {
        log::warn!(
            ".eh_frame of {} bytes is over the per-file budget: its wait primitives are not walked",
            section.size()
        );
        return Vec::new();
    }
    let Ok(data) = section.data() else {
        return Vec::new();
    };
    let eh_frame = EhFrame::new(data, gimli::LittleEndian);
    let mut bases = gimli::BaseAddresses::default().set_eh_frame(section.address());
    if let Some(text) = obj.section_by_name(".text") {
        bases = bases.set_text(text.address());
    }
    if let Some(got) = obj.section_by_name(".got") {
        bases = bases.set_got(got.address());
    }
    let covers = |addr: u64| {
        let i = passes.partition_point(|&(s, _)| s <= addr);
        i > 0 && addr - passes[i - 1].0 < passes[i - 1].1
    };
    let mut rows = Vec::new();
    let mut ctx = gimli::UnwindContext::new();
    let mut entries = eh_frame.entries(&bases);
    let mut fdes = 0usize;
    while let Ok(Some(entry)) = entries.next() {
        let gimli::CieOrFde::Fde(partial) = entry else {
            continue;
        };
        fdes += 1;
        if fdes > MAX_FDES {
            break;
        }
        let Ok(fde) = partial.parse(EhFrame::cie_from_offset) else {
            continue;
        };
        if !covers(fde.initial_address()) {
            continue;
        }
        let Ok(mut table) = fde.rows(&eh_frame, &bases, &mut ctx) else {
            continue;
        };
        let mut n = 0;
        while let Ok(Some(row)) = table.next_row() {
            n += 1;
            if n > MAX_ROWS_PER_FUNCTION {
                break;
            }
            if let Some(site) = pass_site(row) {
                let len = row.end_address().saturating_sub(row.start_address());
                rows.push(ModuleRow {
                    svma: row.start_address(),
                    len: u32::try_from(len).unwrap_or(u32::MAX),
                    site,
                });
            }
        }
    }
    rows
}

/// A pass row from one CFI row, when its rules are ones the kernel can follow: CFA = rsp or
/// rbp + offset, return address at CFA - 8, rbp saved at a CFA offset or left alone.
fn pass_site<T: gimli::ReaderOffset>(row: &gimli::UnwindTableRow<T>) -> Option<CodeSite> {
    let (reg, offset) = match row.cfa() {
        CfaRule::RegisterAndOffset { register, offset } => (*register, *offset),
        CfaRule::Expression(_) => return None,
    };
    let cfa = match reg {
        X86_64::RSP => cfa_reg::SP,
        X86_64::RBP => cfa_reg::BP,
        _ => return None,
    };
    let rbp_offset = match row.register(X86_64::RBP) {
        None | Some(RegisterRule::Undefined | RegisterRule::SameValue) => 0,
        Some(RegisterRule::Offset(o)) => i16::try_from(o).ok().filter(|&o| o != 0)?,
        _ => return None,
    };
    match row.register(X86_64::RA) {
        Some(RegisterRule::Offset(-8)) => {}
        _ => return None,
    }
    Some(CodeSite {
        verdict: site_verdict::PASS,
        cfa_reg: cfa,
        cfa_offset: i16::try_from(offset).ok()?,
        rbp_offset,
        ..CodeSite::default()
    })
}

/// Groups rows by code page, each row in every page it overlaps.
fn pages_of(pid: u32, mut rows: Vec<CodeSite>) -> ProcessSites {
    rows.sort_by_key(|r| r.start);
    rows.dedup();
    let mut out = ProcessSites {
        lock_rows: rows
            .iter()
            .filter(|r| r.verdict == site_verdict::LOCK)
            .count(),
        ..ProcessSites::default()
    };
    let mut by_page: BTreeMap<u64, Vec<CodeSite>> = BTreeMap::new();
    for row in rows {
        let first = row.start >> CODE_PAGE_SHIFT;
        let last = (row.start + u64::from(row.len.max(1)) - 1) >> CODE_PAGE_SHIFT;
        for page in first..=last.min(first + 1024) {
            by_page.entry(page).or_default().push(row);
        }
    }
    let mut pages: BTreeMap<u64, CodePageSites> = BTreeMap::new();
    for (page, mut rows) in by_page {
        // The kernel scans a page's rows in order: lock slow paths first (a glibc mutex wait
        // matches at once), then pass rows longest first (a call site is in a long row; the
        // one-instruction rows of pushes and pops in prologues and epilogues hold no call
        // or syscall, so no wait ever looks there, and they are the ones dropped from a
        // crowded page).
        rows.sort_by_key(|r| {
            (
                r.verdict != site_verdict::LOCK,
                std::cmp::Reverse(r.len),
                r.start,
            )
        });
        if rows.len() > SITES_PER_PAGE {
            out.dropped_rows += rows.len() - SITES_PER_PAGE;
            rows.truncate(SITES_PER_PAGE);
        }
        let mut slot = CodePageSites {
            len: rows.len() as u32,
            _pad: 0,
            sites: [CodeSite::default(); SITES_PER_PAGE],
        };
        slot.sites[..rows.len()].copy_from_slice(&rows);
        pages.insert(page, slot);
    }
    out.pages = pages
        .into_iter()
        .map(|(page, sites)| {
            (
                CodePageKey {
                    tgid: pid,
                    _pad: 0,
                    page,
                },
                sites,
            )
        })
        .collect();
    out
}

#[cfg(test)]
mod tests;
