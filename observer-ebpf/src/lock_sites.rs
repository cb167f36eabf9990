//! Which lock a futex wait is for, from where it was made: the waiter's call chain is walked
//! up from the syscall through the wait primitives (glibc's `syscall()`,
//! `__futex_abstimed_wait_common`, ...) until a lock's slow path is reached, using a
//! per-process table userspace built once from the process's symbols and `.eh_frame`.
//!
//! The table holds only the few functions that matter, so the walk is a handful of lookups
//! and user-memory reads; a wait whose chain leaves the table before reaching a lock is not a
//! lock wait (condition variables, thread parking, custom futexes: idle, never guessed).
//! Rows are found by (process, code page): a hash lookup and a short scan, which the
//! verifier accepts where a binary search over a sorted table multiplied its paths.

use aya_ebpf::{bindings::BPF_F_NO_PREALLOC, macros::map, maps::HashMap};
use observer_common::{
    cfa_reg, site_verdict, CodePageKey, CodePageSites, CodeSite, CODE_PAGE_SHIFT, MAX_SITE_DEPTH,
    SITES_PER_PAGE,
};

use crate::read_user_u64;

/// (process, code page) -> the table rows in that page, written by userspace when it takes a
/// process on and when its code mappings change. Not preallocated: most of a host's
/// processes never get rows.
#[map]
static CODE_SITES: HashMap<CodePageKey, CodePageSites> =
    HashMap::with_max_entries(65536, BPF_F_NO_PREALLOC);

/// The lock kind of a wait made at `ip` with user stack `sp` / frame pointer `bp` (the
/// registers at syscall entry), or `None` when no lock's slow path is on its call chain.
#[inline(always)]
pub fn lock_kind_at(tgid: u32, ip: u64, sp: u64, bp: u64) -> Option<u32> {
    let (mut pc, mut sp, mut bp) = (ip, sp, bp);
    for _ in 0..MAX_SITE_DEPTH {
        // A return address (and the address after the syscall) is one past the call: look
        // up the instruction before it, whose CFA rule is the one in force.
        let site = find(tgid, pc.wrapping_sub(1))?;
        match site.verdict {
            site_verdict::LOCK => return Some(u32::from(site.lock_kind)),
            site_verdict::PASS => {
                let base = if site.cfa_reg == cfa_reg::BP { bp } else { sp };
                let cfa = base.wrapping_add(site.cfa_offset as i64 as u64);
                let ret = read_user_u64(cfa.wrapping_sub(8))?;
                if site.rbp_offset != 0 {
                    bp = read_user_u64(cfa.wrapping_add(site.rbp_offset as i64 as u64))?;
                }
                sp = cfa;
                pc = ret;
            }
            _ => return None,
        }
    }
    None
}

/// The row whose range holds `pc`.
#[inline(always)]
fn find(tgid: u32, pc: u64) -> Option<CodeSite> {
    let key = CodePageKey {
        tgid,
        _pad: 0,
        page: pc >> CODE_PAGE_SHIFT,
    };
    // SAFETY: read-only view of a map value; userspace replaces whole values.
    let rows = unsafe { &*CODE_SITES.get_ptr(&key)? };
    let len = rows.len as usize;
    for i in 0..SITES_PER_PAGE {
        if i >= len {
            break;
        }
        let site = rows.sites[i];
        if pc.wrapping_sub(site.start) < u64::from(site.len) {
            return Some(site);
        }
    }
    None
}
