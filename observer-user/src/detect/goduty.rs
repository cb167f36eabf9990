//! The budget of the per-park goroutine probes: each `gopark` and `ready` costs the target an
//! uprobe trap (~11 us each on this VM, see BENCHMARKS.md), so a Go service parking 100,000
//! goroutines a second would spend more than a core in them. The probes are duty-cycled
//! instead of all-or-nothing: on while their estimated cost (park rate x trap cost) stays
//! under `budget` (a share of one core); past it, on at most `budget` of the time (short
//! windows) and off the rest, so the target loses at most about that share of its time even
//! when traps cost more than estimated (measured: a busy HTTP server parks 10x slower while
//! they are on). Goroutines are followed from memory snapshots meanwhile, and the goroutine
//! profile from the probes is scaled by the share of time they were on.

/// What one park and its wake-up cost the target in traps, measured on this VM (two uprobe
/// traps, ~11 us each, plus the programs; BENCHMARKS.md section 4).
pub const TRAP_NS_PER_PARK: u64 = 22_000;
/// The first measurement of a process's park rate, probes on.
const MEASURE_NS: u64 = 20_000_000;
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
                until_ns: Some(now_ns + MEASURE_NS),
            },
            duty: 1.0,
            cycling: false,
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
                // Always on: the rate of the last `MEASURE_NS`, so a surge of load costs at
                // most that long at full price; on a window: at its end.
                let due = until_ns.unwrap_or(since_ns + MEASURE_NS);
                if now_ns < due || on_for == 0 {
                    return DutyAction::Nothing;
                }
                let rate = parks.saturating_sub(parks_at) as f64 * 1e9 / on_for as f64;
                let share_if_always_on = rate * TRAP_NS_PER_PARK as f64 / 1e9;
                // Past the budget, the probes are on at most `budget` of the time: however
                // much more a trap costs than measured (a loaded host, lock contention in the
                // uprobe path), the target loses at most that share of its time to them.
                self.duty = if share_if_always_on <= self.budget {
                    1.0
                } else {
                    (self.budget / share_if_always_on)
                        .min(self.budget)
                        .clamp(0.0, 1.0)
                };
                self.on_ns += on_for;
                if self.duty >= 1.0 {
                    self.phase = Phase::On {
                        since_ns: now_ns,
                        parks_at: parks,
                        until_ns: None,
                    };
                    return DutyAction::Nothing;
                }
                // Off long enough that on-time / cycle = duty.
                let off = (on_for as f64 * (1.0 - self.duty) / self.duty.max(1e-9)) as u64;
                self.phase = Phase::Off {
                    until_ns: now_ns + off.min(MAX_OFF_NS),
                };
                self.cycling = true;
                DutyAction::TurnOff
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn an_affordable_park_rate_keeps_the_probes_on() {
        // 500 parks/s * 22 us = 1.1% of a core, under a 2% budget.
        let mut d = DutyCycle::new(0.02, 0, 0);
        assert_eq!(d.tick(50 * MS, 25), DutyAction::Nothing);
        assert_eq!(d.tick(100 * MS, 50), DutyAction::Nothing);
        assert!(d.is_on() && !d.cycling());
        assert_eq!(d.duty(), 1.0);
        assert_eq!(d.tick(200 * MS, 100), DutyAction::Nothing);
        assert!(d.is_on());
    }

    #[test]
    fn a_surge_of_parks_is_noticed_within_one_measure() {
        let mut d = DutyCycle::new(0.02, 0, 0);
        assert_eq!(d.tick(100 * MS, 10), DutyAction::Nothing);
        assert_eq!(d.tick(200 * MS, 20), DutyAction::Nothing);
        // Load starts: 10,000 parks/s from 200 ms on; off at the first tick a measure later.
        assert_eq!(d.tick(210 * MS, 120), DutyAction::Nothing);
        assert_eq!(d.tick(230 * MS, 320), DutyAction::TurnOff);
    }

    #[test]
    fn a_busy_process_gets_its_probes_for_the_budgeted_share_of_the_time() {
        // 10,000 parks/s while on: 22% of a core; a 2% budget allows 1/11 of the time.
        let mut d = DutyCycle::new(0.02, 0, 0);
        assert_eq!(d.tick(100 * MS, 1_000), DutyAction::TurnOff);
        assert!(d.cycling() && !d.is_on());
        let duty = d.duty();
        assert!((duty - 0.02).abs() < 1e-9, "at most the budget: {duty}");
        // Off for 100 ms * (1 - d) / d = 4.9 s, then on for the shortest window.
        assert_eq!(d.tick(4_999 * MS, 1_000), DutyAction::Nothing);
        assert_eq!(d.tick(5_000 * MS, 1_000), DutyAction::TurnOn);
        let window = ((duty * CYCLE_NS as f64) as u64).max(MIN_ON_NS);
        assert_eq!(d.tick(5_000 * MS + window - 1, 1_100), DutyAction::Nothing);
        assert_eq!(d.tick(5_000 * MS + window, 1_200), DutyAction::TurnOff);
        // Over a whole cycle the probes were on about `duty` of the time.
        let off_until = match d.phase {
            Phase::Off { until_ns } => until_ns,
            _ => unreachable!(),
        };
        let cycle = off_until - 5_000 * MS;
        let share = window as f64 / cycle as f64;
        assert!((share - d.duty()).abs() < 0.01, "{share} vs {}", d.duty());
    }

    #[test]
    fn a_very_busy_process_is_still_sampled_and_never_left_off_for_long() {
        let mut d = DutyCycle::new(0.02, 0, 0);
        // 1M parks/s: far over; the window is the minimum, the off time capped.
        assert_eq!(d.tick(100 * MS, 100_000), DutyAction::TurnOff);
        match d.phase {
            Phase::Off { until_ns } => assert!(until_ns - 100 * MS <= MAX_OFF_NS),
            _ => unreachable!(),
        }
        assert_eq!(d.tick(100 * MS + MAX_OFF_NS, 100_000), DutyAction::TurnOn);
        assert_eq!(
            d.tick(100 * MS + MAX_OFF_NS + MIN_ON_NS, 120_000),
            DutyAction::TurnOff
        );
    }

    #[test]
    fn a_process_that_calms_down_gets_its_probes_back_for_good() {
        let mut d = DutyCycle::new(0.02, 0, 0);
        assert_eq!(d.tick(100 * MS, 1_000), DutyAction::TurnOff);
        let t = 100 * MS + 4_900 * MS;
        assert_eq!(d.tick(t, 1_000), DutyAction::TurnOn);
        // Quiet now: 10 parks in the window.
        assert_eq!(d.tick(t + 200 * MS, 1_010), DutyAction::Nothing);
        assert!(d.is_on());
        assert_eq!(d.duty(), 1.0);
    }

    #[test]
    fn the_on_share_counts_closed_and_open_windows() {
        let mut d = DutyCycle::new(0.02, 0, 0);
        assert_eq!(d.tick(100 * MS, 1_000), DutyAction::TurnOff);
        // On 0..100 ms, off until 5,000 ms, on from there; asked at 5,010 ms.
        d.tick(5_000 * MS, 1_000);
        let share = d.take_on_share(5_010 * MS);
        assert!((share - 110.0 / 5_010.0).abs() < 1e-9, "{share}");
        // The open window is counted from the last call on.
        let share = d.take_on_share(5_015 * MS);
        assert!((share - 1.0).abs() < 1e-9, "{share}");
    }

    #[test]
    fn a_zero_budget_turns_the_probes_off_after_the_first_measure() {
        let mut d = DutyCycle::new(0.0, 0, 0);
        assert_eq!(d.tick(100 * MS, 10), DutyAction::TurnOff);
    }
}
