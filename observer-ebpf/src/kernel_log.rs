//! Diagnostics of the probes themselves (`observer --kernel-log`): a lock word that could not
//! be read, a futex call that blocks in an unexpected way, a map that is full.
//!
//! Off by default, and then free: every site is behind `KERNEL_LOG_LEVEL`, a read-only global
//! the loader sets before load. aya freezes `.rodata`, so the verifier knows the value and
//! removes the branch with the log call in it; the hot path does not even load the global.
//! Records go through aya-log's own ring buffer (`AYA_LOGS`), formatted in userspace.
//!
//! Rate-limited in the kernel, because the values come from the target: at most one message
//! per site every `MIN_INTERVAL_NS` (shared by all CPUs; two CPUs racing may both pass once),
//! with the number of messages suppressed since the last one.

use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::map, maps::Array};

use crate::read_global;

/// 0: off. Otherwise the most verbose level logged, as aya-log numbers them (1 error ... 5
/// trace); the loader sets `AYA_LOG_LEVEL` to the same value.
#[no_mangle]
static KERNEL_LOG_LEVEL: u32 = 0;

pub const WARN: u32 = 2;
pub const INFO: u32 = 3;

/// One slot per log call site (several inlined copies of one site share it).
pub mod site {
    pub const FUTEX_WORDS_UNREADABLE: u32 = 0;
    pub const FUTEX_UNEXPECTED_OP: u32 = 1;
    pub const AGGREGATE_FULL: u32 = 2;
    pub const WATCH_FULL: u32 = 3;
    pub const GOID_UNREADABLE: u32 = 4;
    pub const COUNT: u32 = 5;
}

/// At most five messages a second per site.
const MIN_INTERVAL_NS: u64 = 200_000_000;

/// When each site last logged.
#[map]
static LOG_LAST_NS: Array<u64> = Array::with_max_entries(site::COUNT, 0);

/// Messages each site did not log since it last did (racy increments: approximate).
#[map]
static LOG_SUPPRESSED: Array<u64> = Array::with_max_entries(site::COUNT, 0);

/// Whether messages of `level` are wanted. A constant for the verifier (see the module doc).
#[inline(always)]
pub fn enabled(level: u32) -> bool {
    read_global(&KERNEL_LOG_LEVEL) >= level
}

/// `Some(suppressed)` when `site` may log now (and the messages it was denied since it last
/// did), `None` when it logged less than `MIN_INTERVAL_NS` ago. Only called when logging is on.
#[inline(always)]
pub fn allowed(site: u32) -> Option<u64> {
    let last = LOG_LAST_NS.get_ptr_mut(site)?;
    let suppressed = LOG_SUPPRESSED.get_ptr_mut(site)?;
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: valid map value pointers; a lost update between CPUs only lets one extra
    // message through or miscounts the suppressed ones.
    unsafe {
        if *last != 0 && now.wrapping_sub(*last) < MIN_INTERVAL_NS {
            *suppressed = (*suppressed).wrapping_add(1);
            return None;
        }
        *last = now;
        let n = *suppressed;
        *suppressed = 0;
        Some(n)
    }
}

/// `diag!(warn | info, site, "format", args...)`: logs when the level is on and `site` is
/// within its rate. The format ends with a `{}` for the count of suppressed messages.
macro_rules! diag {
    (warn, $site:expr, $fmt:literal $(, $arg:expr)*) => {
        if $crate::kernel_log::enabled($crate::kernel_log::WARN) {
            if let Some(suppressed) = $crate::kernel_log::allowed($site) {
                aya_log_ebpf::warn!(&(), target: "observer_ebpf", $fmt $(, $arg)*, suppressed);
            }
        }
    };
    (info, $site:expr, $fmt:literal $(, $arg:expr)*) => {
        if $crate::kernel_log::enabled($crate::kernel_log::INFO) {
            if let Some(suppressed) = $crate::kernel_log::allowed($site) {
                aya_log_ebpf::info!(&(), target: "observer_ebpf", $fmt $(, $arg)*, suppressed);
            }
        }
    };
}
pub(crate) use diag;
