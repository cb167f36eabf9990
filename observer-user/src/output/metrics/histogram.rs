//! The buckets of `observer_wait_duration_seconds`, the wait-time histogram per process and
//! wait kind (rendered in `exposition.rs`).
//!
//! Exact, not estimated: a long wait arrives with its duration and lands in its bucket; short
//! waits are summed in the kernel, which also counts them per duration bin
//! (`observer_common::AggValue::bins`, the same bounds). The histogram's
//! `_count` and `_sum` are the same numbers as `observer_waits_total` and
//! `observer_wait_seconds_total`, by construction (one `WaitTotals` feeds both).

use observer_common::{AggValue, AGG_BINS, AGG_BOUNDS_NS};

/// Upper bounds of the buckets in ns, 1 ms to 60 s; `+Inf` follows. The kernel bins short
/// waits by the same bounds.
pub(super) const BOUNDS_NS: [u64; 15] = AGG_BOUNDS_NS;
/// Buckets kept per series: one per bound, and the waits above the last (`+Inf`).
pub(super) const BUCKETS: usize = AGG_BINS;

/// The bucket of a wait of `ns`: the first bound at or above it (`le` is inclusive).
pub(super) fn bucket_of(ns: u64) -> usize {
    BOUNDS_NS.partition_point(|&b| b < ns)
}

/// Kernel-summed waits in buckets: the kernel's bins are the buckets. They add up to the
/// value's count unless a drain raced a program on another CPU; the buckets are then trimmed,
/// or topped up at the bucket of the mean wait, so that they always add up to `count`, the
/// number `observer_waits_total` shows.
pub(super) fn buckets_of(value: &AggValue) -> [u64; BUCKETS] {
    let mut out = [0u64; BUCKETS];
    let mut left = value.count;
    for (o, &n) in out.iter_mut().zip(&value.bins) {
        *o = u64::from(n).min(left);
        left -= *o;
    }
    if left > 0 {
        out[bucket_of(value.total_ns / value.count)] += left;
    }
    out
}

#[cfg(test)]
mod tests {
    use observer_common::agg_bin;

    use super::*;

    #[test]
    fn buckets_are_inclusive_upper_bounds() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1_000_000), 0);
        assert_eq!(bucket_of(1_000_001), 1);
        assert_eq!(bucket_of(300_000_000), 8);
        assert_eq!(bucket_of(60_000_000_000), 14);
        assert_eq!(bucket_of(60_000_000_001), 15);
        assert_eq!(bucket_of(u64::MAX), 15);
    }

    /// The kernel's three-compare bin function agrees with the bounds, at and around each.
    #[test]
    fn kernel_bins_match_the_bounds() {
        for ns in [
            0,
            1,
            999_999,
            1_000_000,
            1_000_001,
            99_999_999,
            100_000_000,
            100_000_001,
        ]
        .into_iter()
        .chain(AGG_BOUNDS_NS.iter().flat_map(|&b| [b - 1, b, b + 1]))
        .chain([u64::MAX])
        {
            let expected = AGG_BOUNDS_NS.partition_point(|&b| b < ns);
            assert_eq!(agg_bin(ns), expected, "{ns} ns");
            assert_eq!(bucket_of(ns), expected, "{ns} ns");
        }
    }

    #[test]
    fn kernel_bins_become_buckets() {
        let mut v = AggValue {
            count: 7,
            total_ns: 7_000_000,
            ..Default::default()
        };
        v.bins[0] = 5;
        v.bins[3] = 2;
        let b = buckets_of(&v);
        assert_eq!(&b[..5], &[5, 0, 0, 2, 0]);
        assert_eq!(b.iter().sum::<u64>(), 7);
        // A racing drain: bins short of count (topped up at the mean), or beyond it (trimmed).
        v.count = 9;
        let b = buckets_of(&v);
        assert_eq!(b.iter().sum::<u64>(), 9);
        assert_eq!(b[0], 7);
        v.count = 6;
        let b = buckets_of(&v);
        assert_eq!(&b[..5], &[5, 0, 0, 1, 0]);
        assert_eq!(b.iter().sum::<u64>(), 6);
    }
}
