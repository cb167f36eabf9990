//! Goroutine leak rule: goroutines created at one site pile up parked on channels or `select`
//! and never come back.
//!
//! Every scan samples, per (creation pc, wait reason), how many goroutines are parked right
//! now. A site is reported when, over the last `window`, its count never went down and grew by
//! at least `min_growth`. It is reported again only once its count has doubled since the last
//! report, so a steady leak gives a few alerts, not one per scan. A pool of workers parked on a
//! channel waiting for work does not grow, and never alerts.

use std::collections::{HashMap, VecDeque};

/// One site's parked goroutines: (creation pc, wait reason).
pub type SiteKey = (u64, String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeakFinding {
    pub gopc: u64,
    pub wait_reason: String,
    pub count: u64,
    pub growth: u64,
    pub window_ns: u64,
}

#[derive(Debug)]
pub struct LeakDetector {
    window_ns: u64,
    min_growth: u64,
    samples: VecDeque<(u64, HashMap<SiteKey, u64>)>,
    reported_at: HashMap<SiteKey, u64>,
}

impl LeakDetector {
    pub fn new(window_ns: u64, min_growth: u64) -> Self {
        Self {
            window_ns,
            min_growth,
            samples: VecDeque::new(),
            reported_at: HashMap::new(),
        }
    }

    /// Adds a sample taken at `now_ns` and returns the sites that leak.
    pub fn sample(&mut self, now_ns: u64, counts: HashMap<SiteKey, u64>) -> Vec<LeakFinding> {
        self.samples.push_back((now_ns, counts));
        // Keep the newest sample at or before the window start, as the baseline.
        while self.samples.len() > 2 && self.samples[1].0 <= now_ns.saturating_sub(self.window_ns) {
            self.samples.pop_front();
        }
        let Some((oldest_ns, _)) = self.samples.front() else {
            return Vec::new();
        };
        let span = now_ns.saturating_sub(*oldest_ns);
        if span < self.window_ns {
            return Vec::new(); // not enough history yet
        }
        let Some((_, newest)) = self.samples.back() else {
            return Vec::new();
        };
        let mut findings = Vec::new();
        for (key, &count) in newest {
            let series: Vec<u64> = self
                .samples
                .iter()
                .map(|(_, c)| c.get(key).copied().unwrap_or(0))
                .collect();
            let never_down = series.windows(2).all(|w| w[1] >= w[0]);
            let growth = count.saturating_sub(series[0]);
            if !never_down || growth < self.min_growth {
                continue;
            }
            if let Some(&at) = self.reported_at.get(key) {
                if count < at.saturating_mul(2) {
                    continue;
                }
            }
            self.reported_at.insert(key.clone(), count);
            findings.push(LeakFinding {
                gopc: key.0,
                wait_reason: key.1.clone(),
                count,
                growth,
                window_ns: span,
            });
        }
        findings.sort_by_key(|f| std::cmp::Reverse(f.count));
        findings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn counts(pairs: &[(u64, &str, u64)]) -> HashMap<SiteKey, u64> {
        pairs
            .iter()
            .map(|&(pc, r, n)| ((pc, r.to_string()), n))
            .collect()
    }

    #[test]
    fn steady_growth_is_a_leak_once() {
        let mut d = LeakDetector::new(5 * S, 10);
        let mut found = Vec::new();
        for i in 0..=6u64 {
            found.extend(d.sample(i * S, counts(&[(0x10, "chan receive", 10 + i * 5)])));
        }
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].gopc, 0x10);
        assert!(found[0].growth >= 10);
    }

    #[test]
    fn idle_pool_never_alerts() {
        let mut d = LeakDetector::new(5 * S, 10);
        for i in 0..20u64 {
            assert!(d
                .sample(i * S, counts(&[(0x20, "chan receive", 64)]))
                .is_empty());
        }
    }

    #[test]
    fn growth_that_drains_is_not_a_leak() {
        let mut d = LeakDetector::new(4 * S, 10);
        let series = [10, 30, 50, 20, 40, 60];
        let mut all = Vec::new();
        for (i, n) in series.iter().enumerate() {
            all.extend(d.sample(i as u64 * S, counts(&[(0x30, "select", *n)])));
        }
        assert!(all.is_empty(), "{all:?}");
    }

    #[test]
    fn realerts_after_doubling() {
        let mut d = LeakDetector::new(2 * S, 10);
        let mut alerts = 0;
        for i in 0..40u64 {
            alerts += d.sample(i * S, counts(&[(0x40, "select", 20 * i)])).len();
        }
        // 20*i from ~40 to 780: doublings, not one alert per sample
        assert!((2..=8).contains(&alerts), "{alerts}");
    }

    #[test]
    fn needs_a_full_window_of_history() {
        let mut d = LeakDetector::new(5 * S, 10);
        assert!(d.sample(0, counts(&[(1, "select", 0)])).is_empty());
        assert!(d.sample(S, counts(&[(1, "select", 100)])).is_empty());
    }
}
