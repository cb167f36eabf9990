use super::*;

#[test]
fn glibc_wait_primitives_are_walked_through() {
    for name in [
        "syscall",
        "__futex_abstimed_wait_common",
        "__futex_abstimed_wait64",
        "__futex_abstimed_wait_cancelable64",
        "do_futex_wait.constprop.0",
    ] {
        assert_eq!(role_of(name), Some(Role::Pass), "{name}");
    }
}

#[test]
fn glibc_locks_by_kind() {
    let cases = [
        ("__lll_lock_wait", lock_kind::PTHREAD_MUTEX),
        ("___pthread_mutex_lock", lock_kind::PTHREAD_MUTEX),
        ("___pthread_rwlock_rdlock", lock_kind::PTHREAD_RWLOCK_READ),
        (
            "__pthread_rwlock_rdlock_full64",
            lock_kind::PTHREAD_RWLOCK_READ,
        ),
        (
            "___pthread_rwlock_clockrdlock64",
            lock_kind::PTHREAD_RWLOCK_READ,
        ),
        ("pthread_rwlock_wrlock", lock_kind::PTHREAD_RWLOCK_WRITE),
        (
            "___pthread_rwlock_timedwrlock64",
            lock_kind::PTHREAD_RWLOCK_WRITE,
        ),
        ("__new_sem_wait_slow64.constprop.0", lock_kind::SEMAPHORE),
        ("sem_timedwait", lock_kind::SEMAPHORE),
    ];
    for (name, kind) in cases {
        assert_eq!(role_of(name), Some(Role::Lock(kind)), "{name}");
    }
}

#[test]
fn idle_waits_and_try_locks_have_no_role() {
    for name in [
        "___pthread_cond_wait",
        "__pthread_cond_wait_common",
        "pthread_rwlock_tryrdlock",
        "___pthread_rwlock_trywrlock",
        "sem_trywait",
        "__lll_lock_wait_private",
        "__pthread_clockjoin_ex",
        "<std::sys::sync::condvar::futex::Condvar>::wait",
        "<std::thread::Thread>::park",
        "parking_lot::condvar::Condvar::wait_until_internal",
        "main",
    ] {
        assert_eq!(role_of(name), None, "{name}");
    }
}

#[test]
fn rust_locks_by_demangled_path() {
    let cases = [
        (
            "<std::sys::sync::mutex::futex::Mutex>::lock_contended",
            lock_kind::RUST_MUTEX,
        ),
        (
            "<std::sys::sync::rwlock::futex::RwLock>::read_contended",
            lock_kind::RUST_RWLOCK_READ,
        ),
        (
            "<std::sys::sync::rwlock::futex::RwLock>::write_contended",
            lock_kind::RUST_RWLOCK_WRITE,
        ),
        (
            "<std::sys::sync::once::futex::Once>::call",
            lock_kind::RUST_ONCE,
        ),
        (
            "parking_lot::raw_mutex::RawMutex::lock_slow",
            lock_kind::PARKING_LOT_MUTEX,
        ),
        (
            "parking_lot::raw_rwlock::RawRwLock::lock_shared_slow",
            lock_kind::PARKING_LOT_RWLOCK_READ,
        ),
        (
            "parking_lot::raw_rwlock::RawRwLock::lock_exclusive_slow",
            lock_kind::PARKING_LOT_RWLOCK_WRITE,
        ),
    ];
    for (name, kind) in cases {
        assert_eq!(role_of(name), Some(Role::Lock(kind)), "{name}");
    }
    // Mangled names are demangled before matching: v0 (std) and legacy (crates).
    let v0 = "_RNvMNtNtNtNtCsjrHSEGnQ3l9_3std3sys4sync5mutex5futexNtB2_5Mutex14lock_contended";
    let legacy = "_ZN11parking_lot9raw_mutex8RawMutex9lock_slow17he5c5562c6ac6691fE";
    for raw in [v0, legacy] {
        let name = format!("{:#}", rustc_demangle::demangle(raw));
        assert!(matches!(role_of(&name), Some(Role::Lock(_))), "{name}");
    }
    assert_eq!(
        role_of("parking_lot_core::parking_lot::park"),
        Some(Role::Pass)
    );
    assert_eq!(
        role_of("std::sys::pal::unix::futex::futex_wait"),
        Some(Role::Pass)
    );
}

fn site(start: u64, len: u32, verdict: u8) -> CodeSite {
    CodeSite {
        start,
        len,
        verdict,
        ..CodeSite::default()
    }
}

#[test]
fn rows_land_in_every_page_they_overlap() {
    let rows = vec![
        site(0x1ff0, 0x20, site_verdict::PASS),
        site(0x1000, 0x10, site_verdict::LOCK),
    ];
    let t = pages_of(7, rows);
    let pages: Vec<u64> = t.pages.iter().map(|(k, _)| k.page).collect();
    assert_eq!(pages, vec![1, 2]);
    assert_eq!(t.pages[0].1.len, 2);
    assert_eq!(
        t.pages[0].1.sites[0].verdict,
        site_verdict::LOCK,
        "lock rows first"
    );
    assert_eq!(t.pages[1].1.len, 1);
    assert_eq!(t.pages[1].1.sites[0].start, 0x1ff0);
    assert!(t.pages.iter().all(|(k, _)| k.tgid == 7));
    assert_eq!(t.lock_rows, 1);
    assert_eq!(t.dropped_rows, 0);
}

#[test]
fn a_crowded_page_keeps_its_longest_rows_and_counts_the_rest() {
    let mut rows: Vec<CodeSite> = (0..SITES_PER_PAGE as u64)
        .map(|i| site(0x4000 + i * 16, 8, site_verdict::PASS))
        .collect();
    // Three one-byte push rows between them.
    rows.extend((0..3).map(|i| site(0x4008 + i * 16, 1, site_verdict::PASS)));
    let t = pages_of(1, rows);
    assert_eq!(t.pages.len(), 1);
    let kept = &t.pages[0].1;
    assert_eq!(kept.len as usize, SITES_PER_PAGE);
    assert!(kept.sites.iter().all(|s| s.len == 8));
    assert_eq!(t.dropped_rows, 3);
}

/// This test process maps libc, whose `syscall()` every Rust lock waits in: the table must
/// walk through it (with a CFA rule) when libc can be read.
#[test]
fn this_process_gets_a_pass_row_for_syscall() {
    let maps = ProcessMaps::load(std::process::id()).expect("own maps");
    let table = LockSites::new().for_process(&maps);
    let libc_syscall = libc::syscall as *const () as u64;
    let found = table
        .pages
        .iter()
        .flat_map(|(_, p)| &p.sites[..p.len as usize])
        .find(|s| {
            s.verdict == site_verdict::PASS && libc_syscall.wrapping_sub(s.start) < u64::from(s.len)
        });
    let row = found.expect("a pass row covering libc's syscall()");
    assert_eq!(row.cfa_reg, cfa_reg::SP);
    assert!(row.cfa_offset >= 8, "{row:?}");
}

#[test]
fn the_walk_passes_through_wait_primitives_to_the_lock() {
    // syscall() at 0x1000 (CFA = rsp + 8), its caller a wrapper at 0x2000 (CFA = rsp + 24),
    // whose caller is a lock's slow path at 0x3000.
    let pass = |start, cfa_offset| CodeSite {
        start,
        len: 0x40,
        verdict: site_verdict::PASS,
        cfa_reg: cfa_reg::SP,
        cfa_offset,
        ..CodeSite::default()
    };
    let lock = CodeSite {
        start: 0x3000,
        len: 0x100,
        verdict: site_verdict::LOCK,
        lock_kind: lock_kind::RUST_MUTEX as u8,
        ..CodeSite::default()
    };
    let t = pages_of(1, vec![pass(0x1000, 8), pass(0x2000, 24), lock]);
    let stack = |addr: u64| match addr {
        0x7000 => Some(0x2010), // return address into the wrapper, at sp
        0x7018 => Some(0x3050), // return address into the lock, at sp + 8 + 16
        _ => None,
    };
    assert_eq!(
        t.lock_kind_at(0x1010, 0x7000, 0, stack),
        Some(lock_kind::RUST_MUTEX)
    );
    // A caller outside the table ends the walk: not a lock.
    let idle = |addr: u64| (addr == 0x7000).then_some(0x9000);
    assert_eq!(t.lock_kind_at(0x1010, 0x7000, 0, idle), None);
    // Unreadable stack: not a lock.
    assert_eq!(t.lock_kind_at(0x1010, 0x7000, 0, |_| None), None);
}
