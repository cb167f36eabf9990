//! The budget of the per-park goroutine probes: each `gopark` and `ready` costs the target an
//! uprobe trap (~11 us each on this VM, see BENCHMARKS.md), so a Go service parking 100,000
//! goroutines a second would spend more than a core in them. The probes are duty-cycled
//! instead of all-or-nothing: on while their estimated cost (parks x trap cost) stays within
//! `budget` (a share of one core, as a token bucket that lets a start-up burst through);
//! past it, on at most `budget` of the time (short windows) and off the rest, so the target loses at most about that share of its time even
//! when traps cost more than estimated (measured: a busy HTTP server parks 10x slower while
//! they are on). Goroutines are followed from memory snapshots meanwhile, and the goroutine
//! profile from the probes is scaled by the share of time they were on.

/// What one park and its wake-up cost the target in traps, measured on this VM (two uprobe
/// traps, ~11 us each, plus the programs; BENCHMARKS.md section 4).
pub const TRAP_NS_PER_PARK: u64 = 22_000;
/// Trap time the probes may spend beyond the budget's rate, in a burst (a program's start,
/// a short surge): the budget is a token bucket of this size refilled at `budget` ns per ns,
/// so over any long span the traps stay within the budget plus this.
const BURST_NS: f64 = 20_000_000.0;
/// Shortest on-window once cycling (enough parks to measure the rate again and to see the
/// short waits of the profile), and longest off-window (a new park pattern is noticed).
const MIN_ON_NS: u64 = 10_000_000;
const MAX_OFF_NS: u64 = 30_000_000_000;
/// One on + off cycle lasts about this long when the duty allows.
const CYCLE_NS: u64 = 1_000_000_000;

/// What the session must do to the probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DutyAction {
    Nothing,
    TurnOff,
    TurnOn,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    On {
        since_ns: u64,
        parks_at: u64,
        /// How long this window lasts; `None` while the rate is affordable (always on).
        until_ns: Option<u64>,
    },
    Off {
        until_ns: u64,
    },
}

/// The per-park probes' schedule for one process.
#[derive(Debug, Clone)]
pub struct DutyCycle {
    /// Share of one core the target may spend in probe traps (0.02 = 2%).
    budget: f64,
    phase: Phase,
    /// Share of the time the probes are on, from the last measured rate (1.0: always).
    duty: f64,
    /// Ever turned off: the probes' view is partial, snapshots follow the goroutines.
    cycling: bool,
    /// Trap time the probes may still spend (ns; negative: overspent), and the tick and park
    /// count it was last settled at.
    credit_ns: f64,
    settled_ns: u64,
    settled_parks: u64,
    /// Probe-on time and wall time since the last `take_on_share`.
    on_ns: u64,
    since_ns: u64,
    /// The same, summed over every `take_on_share` (for the summary).
    on_total_ns: u64,
    elapsed_total_ns: u64,
}

impl DutyCycle {
    /// Probes just attached at `now_ns`, with the park counter at `parks`.
    pub fn new(budget: f64, now_ns: u64, parks: u64) -> Self {
        Self {
            budget,
            phase: Phase::On {
                since_ns: now_ns,
                parks_at: parks,
                until_ns: None,
            },
            duty: 1.0,
            cycling: false,
            credit_ns: BURST_NS,
            settled_ns: now_ns,
            settled_parks: parks,
            on_ns: 0,
            since_ns: now_ns,
            on_total_ns: 0,
            elapsed_total_ns: 0,
        }
    }

    /// Share of the time the probes were on, over every drained period so far.
    pub fn lifetime_on_share(&self) -> Option<f64> {
        (self.elapsed_total_ns > 0).then(|| self.on_total_ns as f64 / self.elapsed_total_ns as f64)
    }

    /// Whether the probes are off at times: their view of parked goroutines is partial.
    pub fn cycling(&self) -> bool {
        self.cycling
    }

    pub fn is_on(&self) -> bool {
        matches!(self.phase, Phase::On { .. })
    }

    /// Share of the time the probes are on (1.0: always on).
    pub fn duty(&self) -> f64 {
        self.duty
    }

    /// Looks at the park counter `parks` at `now_ns` and says whether to switch the probes.
    pub fn tick(&mut self, now_ns: u64, parks: u64) -> DutyAction {
        self.settle(now_ns, parks);
        match self.phase {
            Phase::Off { until_ns } => {
                if now_ns < until_ns {
                    return DutyAction::Nothing;
                }
                self.phase = Phase::On {
                    since_ns: now_ns,
                    parks_at: parks,
                    until_ns: Some(now_ns + self.on_window_ns()),
                };
                DutyAction::TurnOn
            }
            Phase::On {
                since_ns,
                parks_at,
                until_ns,
            } => {
                let on_for = now_ns.saturating_sub(since_ns);
                let in_window = parks.saturating_sub(parks_at);
                match until_ns {
                    // Always on: until the bucket is empty.
                    None if self.credit_ns >= 0.0 => DutyAction::Nothing,
                    None => self.turn_off(now_ns, on_for, in_window),
                    Some(end) if now_ns < end => DutyAction::Nothing,
                    Some(_) => {
                        let rate = per_sec(in_window, on_for);
                        if self.credit_ns >= 0.0
                            && rate * TRAP_NS_PER_PARK as f64 / 1e9 <= self.budget
                        {
                            // Calm again: on for good.
                            self.on_ns += on_for;
                            self.duty = 1.0;
                            self.phase = Phase::On {
                                since_ns: now_ns,
                                parks_at: parks,
                                until_ns: None,
                            };
                            return DutyAction::Nothing;
                        }
                        self.turn_off(now_ns, on_for, in_window)
                    }
                }
            }
        }
    }

    /// Refills the bucket for the time since the last tick and takes out the traps of the
    /// parks seen meanwhile (all of them happened while on: the counter only moves then).
    fn settle(&mut self, now_ns: u64, parks: u64) {
        let elapsed = now_ns.saturating_sub(self.settled_ns) as f64;
        let traps = parks.saturating_sub(self.settled_parks) as f64 * TRAP_NS_PER_PARK as f64;
        self.credit_ns = (self.credit_ns + elapsed * self.budget).min(BURST_NS) - traps;
        self.settled_ns = now_ns;
        self.settled_parks = parks;
    }

    /// Off after `on_for` of probes on with `parks` parks: long enough that the probes are on
    /// at most the budget's share of the time (however much more than estimated a trap costs,
    /// the target loses at most about that share) and the bucket is refilled.
    fn turn_off(&mut self, now_ns: u64, on_for: u64, parks: u64) -> DutyAction {
        let share_if_always_on = per_sec(parks, on_for) * TRAP_NS_PER_PARK as f64 / 1e9;
        self.duty = if share_if_always_on <= self.budget {
            self.budget.clamp(0.0, 1.0)
        } else {
            (self.budget / share_if_always_on)
                .min(self.budget)
                .clamp(0.0, 1.0)
        };
        // An always-on stretch may be long: its last cycle's worth is what the duty weighs.
        let window = on_for.min(CYCLE_NS) as f64;
        let for_duty = window * (1.0 - self.duty) / self.duty.max(1e-9);
        let for_credit = if self.budget > 0.0 {
            -self.credit_ns.min(0.0) / self.budget
        } else {
            f64::INFINITY
        };
        let off = for_duty.max(for_credit).min(MAX_OFF_NS as f64) as u64;
        self.on_ns += on_for;
        self.phase = Phase::Off {
            until_ns: now_ns + off,
        };
        self.cycling = true;
        DutyAction::TurnOff
    }

    fn on_window_ns(&self) -> u64 {
        ((self.duty * CYCLE_NS as f64) as u64).max(MIN_ON_NS)
    }

    /// The share of the time since the last call the probes were on (what the probes' profile
    /// must be scaled up by, inverted), counting an on-window still open.
    pub fn take_on_share(&mut self, now_ns: u64) -> f64 {
        let mut on = self.on_ns;
        if let Phase::On { since_ns, .. } = &mut self.phase {
            let open_since = (*since_ns).max(self.since_ns);
            on += now_ns.saturating_sub(open_since);
        }
        let elapsed = now_ns.saturating_sub(self.since_ns);
        self.on_ns = 0;
        self.since_ns = now_ns;
        let on = on.min(elapsed);
        self.on_total_ns += on;
        self.elapsed_total_ns += elapsed;
        if elapsed == 0 {
            return 1.0;
        }
        (on as f64 / elapsed as f64).clamp(0.0, 1.0)
    }
}

fn per_sec(count: u64, ns: u64) -> f64 {
    if ns == 0 {
        return 0.0;
    }
    count as f64 * 1e9 / ns as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const SEC: u64 = 1_000 * MS;
    const TICK: u64 = 10 * MS;

    /// Runs `d` from `from` to `to` (ns) with ticks every 10 ms, the process parking
    /// `rate(t)` goroutines a second (counted only while the probes are on, as the kernel
    /// does). Returns the probe-on time and the number of switches off.
    struct Sim {
        d: DutyCycle,
        parks: f64,
        on_ns: u64,
        offs: u32,
    }

    impl Sim {
        fn new(budget: f64) -> Self {
            Sim {
                d: DutyCycle::new(budget, 0, 0),
                parks: 0.0,
                on_ns: 0,
                offs: 0,
            }
        }

        fn run(&mut self, from: u64, to: u64, rate: impl Fn(u64) -> f64) {
            let mut t = from;
            while t < to {
                let on = self.d.is_on();
                t += TICK;
                if on {
                    self.parks += rate(t) * TICK as f64 / 1e9;
                    self.on_ns += TICK;
                }
                if self.d.tick(t, self.parks as u64) == DutyAction::TurnOff {
                    self.offs += 1;
                }
            }
        }

        /// Trap time the target paid (estimated like the budget does).
        fn trap_ns(&self) -> f64 {
            self.parks * TRAP_NS_PER_PARK as f64
        }
    }

    #[test]
    fn an_affordable_park_rate_keeps_the_probes_on() {
        // 500 parks/s * 22 us = 1.1% of a core, under a 2% budget.
        let mut s = Sim::new(0.02);
        s.run(0, 60 * SEC, |_| 500.0);
        assert_eq!(s.offs, 0);
        assert!(s.d.is_on() && !s.d.cycling());
        assert_eq!(s.d.duty(), 1.0);
    }

    #[test]
    fn a_burst_at_start_up_fits_the_bucket() {
        // A program's start parks 500 goroutines in 20 ms (11 ms of traps), then idles: a
        // 20 ms measure of the rate would have turned the probes off for good.
        let mut s = Sim::new(0.005);
        s.run(0, 60 * SEC, |t| if t <= 20 * MS { 25_000.0 } else { 5.0 });
        assert_eq!(s.offs, 0, "a start-up burst must not cost the probes");
        assert!(s.d.is_on() && !s.d.cycling());
    }

    #[test]
    fn a_sustained_rate_over_the_budget_is_cut_once_the_burst_is_spent() {
        // 1,000 parks/s = 2.2% of a core against 0.5%: the 20 ms bucket lasts ~1.2 s.
        let mut s = Sim::new(0.005);
        s.run(0, 1_000 * MS, |_| 1_000.0);
        assert_eq!(s.offs, 0);
        s.run(1_000 * MS, 1_400 * MS, |_| 1_000.0);
        assert_eq!(s.offs, 1);
        assert!(s.d.cycling() && !s.d.is_on());
    }

    #[test]
    fn a_busy_process_pays_at_most_the_budget_and_is_still_sampled() {
        // (Past ~1M parks/s one shortest window alone costs more than 30 s of budget: the
        // cap on off-time wins there, so that the probes still sample.)
        for (budget, rate) in [(0.005, 12_000.0), (0.02, 10_000.0), (0.005, 100_000.0)] {
            let mut s = Sim::new(budget);
            let span = 120 * SEC;
            s.run(0, span, |_| rate);
            let allowed = budget * span as f64 + BURST_NS;
            assert!(
                s.trap_ns() <= allowed * 1.05,
                "{rate}/s at {budget}: traps {} ms > {} ms",
                s.trap_ns() / 1e6,
                allowed / 1e6
            );
            let share = s.on_ns as f64 / span as f64;
            assert!(share <= budget + 0.01, "{rate}/s at {budget}: on {share}");
            assert!(
                s.offs >= 3,
                "{rate}/s at {budget}: it keeps sampling ({} offs)",
                s.offs
            );
        }
    }

    #[test]
    fn a_very_busy_process_is_never_left_off_for_long() {
        let mut d = DutyCycle::new(0.02, 0, 0);
        // 1M parks/s: far over at the first tick; the off time is capped.
        assert_eq!(d.tick(10 * MS, 10_000), DutyAction::TurnOff);
        match d.phase {
            Phase::Off { until_ns } => assert!(until_ns - 10 * MS <= MAX_OFF_NS),
            _ => unreachable!(),
        }
        assert_eq!(d.tick(10 * MS + MAX_OFF_NS, 10_000), DutyAction::TurnOn);
        assert_eq!(
            d.tick(10 * MS + MAX_OFF_NS + MIN_ON_NS, 20_000),
            DutyAction::TurnOff
        );
    }

    #[test]
    fn a_process_that_calms_down_gets_its_probes_back_for_good() {
        let mut s = Sim::new(0.02);
        s.run(0, 10 * SEC, |_| 10_000.0);
        assert!(s.d.cycling());
        // Quiet now: the next on-window finds an affordable rate and stays on.
        s.run(10 * SEC, 60 * SEC, |_| 10.0);
        assert!(s.d.is_on());
        assert_eq!(s.d.duty(), 1.0);
        let offs = s.offs;
        s.run(60 * SEC, 70 * SEC, |_| 10.0);
        assert_eq!(s.offs, offs);
    }

    #[test]
    fn the_on_share_counts_closed_and_open_windows() {
        let mut d = DutyCycle::new(0.02, 0, 0);
        // 100,000 parks in 100 ms: off at 100 ms.
        assert_eq!(d.tick(100 * MS, 100_000), DutyAction::TurnOff);
        let until = match d.phase {
            Phase::Off { until_ns } => until_ns,
            _ => unreachable!(),
        };
        assert_eq!(d.tick(until, 100_000), DutyAction::TurnOn);
        let share = d.take_on_share(until + 10 * MS);
        let want = 110.0 * MS as f64 / (until + 10 * MS) as f64;
        assert!((share - want).abs() < 1e-9, "{share} vs {want}");
        // The open window is counted from the last call on.
        let share = d.take_on_share(until + 15 * MS);
        assert!((share - 1.0).abs() < 1e-9, "{share}");
    }

    #[test]
    fn a_zero_budget_turns_the_probes_off_once_the_burst_is_spent() {
        let mut d = DutyCycle::new(0.0, 0, 0);
        assert_eq!(d.tick(10 * MS, 10), DutyAction::Nothing);
        assert_eq!(d.tick(20 * MS, 2_000), DutyAction::TurnOff);
    }
}
