//! What happened to the waits over the threshold: the counters the summary and the live view
//! print, kept by outcome so that they agree with the alerts ("3 over the threshold" next to
//! "alerts: none" says why none of the three was an alert).

use crate::output::profile::Category;

/// Waits over `--threshold` that ended while observing, by what they were and so by what
/// was made of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LongWaits {
    /// Thread waits for a lock another thread held: grouped into `lock_hold` alerts (one per
    /// hold, however many waited).
    pub lock: u64,
    /// Thread waits in uninterruptible sleep: in the profile; a `stall` alert only when one
    /// lasts `--stall-after`.
    pub kernel: u64,
    /// Thread waits judged idle (condition variables, sleeps, poll, reads, futex waits without
    /// a live owner, every futex wait of a Go process): `idle_wait` alerts with `--report-idle`,
    /// else none.
    pub idle: u64,
    /// Goroutine waits on `sync` primitives and semaphores: in `goroutine_wait` alerts, one per
    /// hold episode.
    pub go_sync: u64,
    /// Goroutine waits on channels, select, I/O, sleeps, the runtime: never alerts.
    pub go_idle: u64,
}

/// What the wording needs besides the counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LongWaitContext {
    /// `lock_hold` alerts raised.
    pub lock_holds: u64,
    /// Long lock waits left out of every hold (too many locks held at once).
    pub lock_waits_ungrouped: u64,
    /// `--report-idle` is on.
    pub report_idle: bool,
}

impl LongWaits {
    /// One thread wait over the threshold, in the profile's category.
    pub fn thread(&mut self, category: Category) {
        let n = match category {
            Category::Lock => &mut self.lock,
            Category::Kernel => &mut self.kernel,
            Category::Idle => &mut self.idle,
        };
        *n = n.saturating_add(1);
    }

    /// One goroutine wait over the threshold; `sync`: on a `sync` primitive (alerted).
    pub fn goroutine(&mut self, sync: bool) {
        let n = if sync {
            &mut self.go_sync
        } else {
            &mut self.go_idle
        };
        *n = n.saturating_add(1);
    }

    pub fn total(&self) -> u64 {
        [
            self.lock,
            self.kernel,
            self.idle,
            self.go_sync,
            self.go_idle,
        ]
        .iter()
        .fold(0u64, |a, n| a.saturating_add(*n))
    }

    /// The waits that are in alerts: lock waits (in `lock_hold`), goroutine sync waits, and
    /// idle waits when they are reported.
    pub fn alerted(&self, report_idle: bool) -> u64 {
        let idle = if report_idle { self.idle } else { 0 };
        self.lock.saturating_add(self.go_sync).saturating_add(idle)
    }

    /// The summary's words: `3 over the threshold: 2 lock waits (in 1 lock_hold alert), 1
    /// idle (not reported without --report-idle)`.
    pub fn describe(&self, ctx: LongWaitContext) -> String {
        let total = self.total();
        let mut parts = Vec::new();
        if self.lock > 0 {
            let none = if ctx.lock_waits_ungrouped > 0 {
                format!("; {} in none", ctx.lock_waits_ungrouped)
            } else {
                String::new()
            };
            parts.push(format!(
                "{} (in {}{none})",
                count(self.lock, "lock wait", "lock waits"),
                count(ctx.lock_holds, "lock_hold alert", "lock_hold alerts")
            ));
        }
        if self.go_sync > 0 {
            parts.push(format!(
                "{} (in goroutine_wait alerts, one per hold)",
                count(self.go_sync, "goroutine sync wait", "goroutine sync waits")
            ));
        }
        if self.kernel > 0 {
            parts.push(format!(
                "{} in the kernel (profile only; a stall alert once one lasts --stall-after)",
                self.kernel
            ));
        }
        if self.idle > 0 {
            let fate = if ctx.report_idle {
                "idle_wait alerts"
            } else {
                "not reported without --report-idle"
            };
            parts.push(format!("{} idle ({fate})", self.idle));
        }
        if self.go_idle > 0 {
            parts.push(format!(
                "{} goroutine idle waits (select, channels, I/O, sleep: not reported)",
                self.go_idle
            ));
        }
        if parts.is_empty() {
            return format!("{total} over the threshold");
        }
        format!("{total} over the threshold: {}", parts.join(", "))
    }

    /// The live view's words: `long 560 (558 alerted, 2 idle)`.
    pub fn short(&self, report_idle: bool, thousands: impl Fn(u64) -> String) -> String {
        let total = self.total();
        let mut text = format!("long {}", thousands(total));
        if total == 0 {
            return text;
        }
        let mut parts = vec![format!("{} alerted", thousands(self.alerted(report_idle)))];
        if self.kernel > 0 {
            parts.push(format!("{} kernel", thousands(self.kernel)));
        }
        let idle = self
            .go_idle
            .saturating_add(if report_idle { 0 } else { self.idle });
        if idle > 0 {
            parts.push(format!("{} idle", thousands(idle)));
        }
        text.push_str(&format!(" ({})", parts.join(", ")));
        text
    }
}

fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(n: u64) -> String {
        n.to_string()
    }

    #[test]
    fn counts_by_category() {
        let mut w = LongWaits::default();
        w.thread(Category::Lock);
        w.thread(Category::Lock);
        w.thread(Category::Kernel);
        w.thread(Category::Idle);
        w.goroutine(true);
        w.goroutine(false);
        w.goroutine(false);
        assert_eq!(
            w,
            LongWaits {
                lock: 2,
                kernel: 1,
                idle: 1,
                go_sync: 1,
                go_idle: 2
            }
        );
        assert_eq!(w.total(), 7);
        assert_eq!(w.alerted(false), 3);
        assert_eq!(w.alerted(true), 4);
    }

    /// The user's case: "3 over the threshold" next to "alerts: none" now says why.
    #[test]
    fn idle_waits_say_they_were_not_reported() {
        let w = LongWaits {
            idle: 3,
            ..LongWaits::default()
        };
        assert_eq!(
            w.describe(LongWaitContext::default()),
            "3 over the threshold: 3 idle (not reported without --report-idle)"
        );
        let ctx = LongWaitContext {
            report_idle: true,
            ..LongWaitContext::default()
        };
        assert_eq!(
            w.describe(ctx),
            "3 over the threshold: 3 idle (idle_wait alerts)"
        );
    }

    #[test]
    fn every_outcome_is_named() {
        let w = LongWaits {
            lock: 3,
            kernel: 1,
            idle: 2,
            go_sync: 1,
            go_idle: 4,
        };
        let ctx = LongWaitContext {
            lock_holds: 1,
            report_idle: false,
            lock_waits_ungrouped: 0,
        };
        assert_eq!(
            w.describe(ctx),
            "11 over the threshold: 3 lock waits (in 1 lock_hold alert), 1 goroutine sync wait \
             (in goroutine_wait alerts, one per hold), 1 in the kernel (profile only; a stall alert once \
             one lasts --stall-after), 2 idle (not reported without --report-idle), 4 goroutine \
             idle waits (select, channels, I/O, sleep: not reported)"
        );
        assert_eq!(LongWaits::default().describe(ctx), "0 over the threshold");
    }

    /// The user's case: "long 0" next to 558 alerts; goroutine waits count now.
    #[test]
    fn live_words_count_what_the_alerts_count() {
        let w = LongWaits {
            go_sync: 558,
            go_idle: 2,
            ..LongWaits::default()
        };
        assert_eq!(w.short(false, plain), "long 560 (558 alerted, 2 idle)");
        let w = LongWaits {
            lock: 2,
            kernel: 1,
            idle: 5,
            ..LongWaits::default()
        };
        assert_eq!(
            w.short(false, plain),
            "long 8 (2 alerted, 1 kernel, 5 idle)"
        );
        assert_eq!(w.short(true, plain), "long 8 (7 alerted, 1 kernel)");
        assert_eq!(LongWaits::default().short(false, plain), "long 0");
    }
}
