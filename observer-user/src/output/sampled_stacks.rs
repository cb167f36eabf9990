//! Full stacks for short waits: the kernel sums short waits exactly per key (process, thread
//! name, frame-pointer stack id, class, lock kind), but a frame-pointer stack stops inside code
//! built without frame pointers (Debian's glibc, Rust release binaries). It also sends a sample
//! of those waits with a copy of the waiter's stack, which userspace unwinds with `.eh_frame`.
//! Here each key's exact count and time are shared among the full stacks sampled for that key,
//! in proportion to the samples (waits for the count, blocked time for the time), so the
//! profile's totals stay the kernel's sums.
//!
//! A key sampled in an earlier drain but not in this one keeps the shares of its last samples
//! (a wait site's callers change slowly; a rare wait may be sampled once). Samples of a key
//! with nothing to share yet wait one more drain (the samples and the sums cross from the
//! kernel by different paths), then are dropped.

use std::collections::HashMap;
use std::hash::Hash;

/// Keys with samples kept, and distinct stacks kept per key: memory stays bounded whatever
/// the targets do. Past them samples are counted in `ignored` and not kept.
pub const MAX_KEYS: usize = 4096;
pub const MAX_STACKS_PER_KEY: usize = 64;

/// Sampled waits under one stack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Weight {
    pub waits: u64,
    pub ns: u64,
}

/// One stack's share of a key's exact sums.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Share<S> {
    pub stack: S,
    pub count: u64,
    pub ns: u64,
}

struct Pending<S> {
    stacks: HashMap<S, Weight>,
    /// Drains this key's samples have waited through without a sum to share.
    age: u8,
}

pub struct SampledStacks<K, S> {
    pending: HashMap<K, Pending<S>>,
    last: HashMap<K, Vec<(S, Weight)>>,
    /// Samples not kept (a table full).
    pub ignored: u64,
    /// Samples dropped because their key had nothing to share two drains running.
    pub unused: u64,
}

impl<K: Eq + Hash + Clone, S: Eq + Hash + Clone + Ord> Default for SampledStacks<K, S> {
    fn default() -> Self {
        Self {
            pending: HashMap::new(),
            last: HashMap::new(),
            ignored: 0,
            unused: 0,
        }
    }
}

impl<K: Eq + Hash + Clone, S: Eq + Hash + Clone + Ord> SampledStacks<K, S> {
    /// One sampled wait of `key`, unwound to `stack`.
    pub fn add(&mut self, key: K, stack: S, duration_ns: u64) {
        if !self.pending.contains_key(&key) && self.pending.len() >= MAX_KEYS {
            self.ignored += 1;
            return;
        }
        let p = self.pending.entry(key).or_insert_with(|| Pending {
            stacks: HashMap::new(),
            age: 0,
        });
        if !p.stacks.contains_key(&stack) && p.stacks.len() >= MAX_STACKS_PER_KEY {
            self.ignored += 1;
            return;
        }
        let w = p.stacks.entry(stack).or_default();
        w.waits += 1;
        w.ns = w.ns.saturating_add(duration_ns);
    }

    /// `key`'s exact `count` waits and `total_ns` shared among its sampled stacks, or `None`
    /// when it was never sampled.
    pub fn split(&mut self, key: &K, count: u64, total_ns: u64) -> Option<Vec<Share<S>>> {
        if let Some(p) = self.pending.remove(key) {
            let mut dist: Vec<(S, Weight)> = p.stacks.into_iter().collect();
            dist.sort_by(|a, b| a.0.cmp(&b.0));
            if !self.last.contains_key(key) && self.last.len() >= MAX_KEYS {
                // Forget an arbitrary old distribution rather than grow.
                if let Some(old) = self.last.keys().next().cloned() {
                    self.last.remove(&old);
                }
            }
            self.last.insert(key.clone(), dist);
        }
        let dist = self.last.get(key)?;
        let counts = apportion(
            count,
            &dist.iter().map(|(_, w)| w.waits).collect::<Vec<_>>(),
        );
        let ns_weights: Vec<u64> = dist.iter().map(|(_, w)| w.ns).collect();
        let ns_weights = if ns_weights.iter().all(|&w| w == 0) {
            dist.iter().map(|(_, w)| w.waits).collect()
        } else {
            ns_weights
        };
        let ns = apportion(total_ns, &ns_weights);
        Some(
            dist.iter()
                .zip(counts.into_iter().zip(ns))
                .filter(|(_, (c, n))| *c != 0 || *n != 0)
                .map(|((stack, _), (count, ns))| Share {
                    stack: stack.clone(),
                    count,
                    ns,
                })
                .collect(),
        )
    }

    /// After a drain: samples whose key had no sum wait one more drain, then are dropped.
    pub fn end_drain(&mut self) {
        let mut unused = 0;
        self.pending.retain(|_, p| {
            p.age += 1;
            if p.age >= 2 {
                unused += p.stacks.values().map(|w| w.waits).sum::<u64>();
                return false;
            }
            true
        });
        self.unused += unused;
    }

    /// Forgets everything about keys `keep` rejects (a process that ended).
    pub fn retain(&mut self, keep: impl Fn(&K) -> bool) {
        self.pending.retain(|k, _| keep(k));
        self.last.retain(|k, _| keep(k));
    }
}

/// `total` split in proportion to `weights` (equal shares when all are 0), in whole units that
/// add up to `total` exactly: each gets the floor of its share, and the units left go to the
/// largest remainders (the first of equal ones).
pub fn apportion(total: u64, weights: &[u64]) -> Vec<u64> {
    if weights.is_empty() {
        return Vec::new();
    }
    let equal = weights.iter().all(|&w| w == 0);
    let weight = |w: u64| -> u128 {
        if equal {
            1
        } else {
            u128::from(w)
        }
    };
    let sum: u128 = weights.iter().map(|&w| weight(w)).sum();
    let mut out = Vec::with_capacity(weights.len());
    let mut remainders = Vec::with_capacity(weights.len());
    for (i, &w) in weights.iter().enumerate() {
        let share = u128::from(total) * weight(w);
        out.push((share / sum) as u64);
        remainders.push((share % sum, i));
    }
    let given: u64 = out.iter().sum();
    let left = total - given;
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, i) in remainders.iter().take(left as usize) {
        out[i] += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apportion_is_exact_and_proportional() {
        assert_eq!(apportion(10, &[1, 1]), vec![5, 5]);
        assert_eq!(apportion(10, &[3, 1]), vec![8, 2]); // 7.5 / 2.5: first of equal remainders
        assert_eq!(apportion(7, &[1, 1, 1]), vec![3, 2, 2]);
        assert_eq!(apportion(0, &[5, 9]), vec![0, 0]);
        assert_eq!(apportion(5, &[0, 0]), vec![3, 2]);
        assert_eq!(apportion(5, &[]), Vec::<u64>::new());
        let big = apportion(u64::MAX, &[u64::MAX, u64::MAX, 1]);
        assert_eq!(
            big.iter().map(|&x| u128::from(x)).sum::<u128>(),
            u128::from(u64::MAX)
        );
        // Largest remainder: 100 * 1/3 = 33.3 each, the extra unit goes to the first.
        assert_eq!(apportion(100, &[1, 1, 1]), vec![34, 33, 33]);
    }

    #[test]
    fn apportion_sums_to_total_for_many_shapes() {
        for total in [1u64, 2, 3, 99, 1000, 123_456_789] {
            for weights in [vec![1u64], vec![2, 3, 5], vec![7, 0, 1, 1], vec![1; 64]] {
                let out = apportion(total, &weights);
                assert_eq!(out.iter().sum::<u64>(), total, "{total} {weights:?}");
                for (o, w) in out.iter().zip(&weights) {
                    if *w == 0 {
                        assert_eq!(*o, 0);
                    }
                }
            }
        }
    }

    #[test]
    fn a_key_is_shared_among_its_samples_exactly() {
        let mut s: SampledStacks<u32, &str> = SampledStacks::default();
        // Three samples under "a" (short waits), one long one under "b".
        for _ in 0..3 {
            s.add(1, "a", 10);
        }
        s.add(1, "b", 70);
        let shares = s.split(&1, 1000, 1_000_000).unwrap();
        assert_eq!(
            shares,
            vec![
                Share {
                    stack: "a",
                    count: 750,
                    ns: 300_000
                },
                Share {
                    stack: "b",
                    count: 250,
                    ns: 700_000
                },
            ]
        );
        // Not sampled this time: the last shares stand.
        let again = s.split(&1, 4, 100).unwrap();
        assert_eq!(again.iter().map(|x| x.count).sum::<u64>(), 4);
        assert_eq!(again.iter().map(|x| x.ns).sum::<u64>(), 100);
        // Never sampled: none, the caller keeps the frame-pointer stack.
        assert!(s.split(&2, 5, 50).is_none());
    }

    #[test]
    fn samples_without_a_sum_wait_one_drain_then_go() {
        let mut s: SampledStacks<u32, &str> = SampledStacks::default();
        s.add(7, "x", 5);
        s.end_drain();
        s.add(7, "y", 5);
        let shares = s.split(&7, 2, 10).unwrap();
        assert_eq!(shares.len(), 2);
        s.add(8, "z", 5);
        s.end_drain();
        s.end_drain();
        assert_eq!(s.unused, 1);
        assert!(s.split(&8, 1, 1).is_none());
    }

    #[test]
    fn tables_are_bounded() {
        let mut s: SampledStacks<usize, usize> = SampledStacks::default();
        for k in 0..MAX_KEYS + 10 {
            s.add(k, 0, 1);
        }
        assert_eq!(s.ignored, 10);
        for st in 0..MAX_STACKS_PER_KEY + 3 {
            s.add(0, st, 1);
        }
        assert_eq!(s.ignored, 13);
        s.retain(|&k| k < 5);
        assert!(s.split(&6, 1, 1).is_none());
        assert!(s.split(&4, 1, 1).is_some());
    }
}
