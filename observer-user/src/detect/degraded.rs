//! When observer limits itself (a full ring buffer or kernel map, the Go probe budget, a full
//! userspace table), the user must be told when it starts, how much was lost, and when it ends:
//! what observer reported during that time is incomplete. This rule turns the cumulative loss
//! counters, read on every scan, into transitions (started, continuing, ended) with counts,
//! one report per condition per interval however fast the counter grows; and one-off limits
//! (a Go process's probes taken off) into a period that lasts while that process lives.

/// Why observer sees less than it should. Each has a label (`reason` in the alert and the
/// metrics), a consequence and a remedy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// The kernel's event ring buffer was full: waits over the threshold, thread and process
    /// events were dropped.
    RingBufferFull,
    /// Short-wait stack samples skipped because the ring buffer was a quarter full.
    SamplesSkipped,
    /// The kernel's in-flight wait table was full: blocking waits not tracked at all.
    InFlightFull,
    /// The kernel's short-wait aggregate map was full: short waits not summed.
    AggregatesFull,
    /// The kernel's stack table was full (or a stack could not be taken): waits without a stack.
    StacksMissing,
    /// Sidecar: the kernel's watch map was full: new processes not watched.
    WatchMapFull,
    /// More contended-lock holders at once than observer watches: the others' activity is
    /// not followed.
    HoldersFull,
    /// Too many lock hold episodes open at once: long lock waits not grouped into a hold.
    HoldEpisodesFull,
    /// The kernel's lock-site table was full when a process's table was written: some of its
    /// locks are not recognised.
    LockSitesFull,
    /// A Go process parked goroutines faster than `--go-probe-budget` allows: its per-park
    /// goroutine probes are on only part of the time from then on.
    GoProbeBudget,
}

impl Reason {
    /// Every reason, in the order metrics list them (each is exported from 0).
    pub const ALL: [Reason; 10] = [
        Reason::RingBufferFull,
        Reason::SamplesSkipped,
        Reason::InFlightFull,
        Reason::AggregatesFull,
        Reason::StacksMissing,
        Reason::WatchMapFull,
        Reason::HoldersFull,
        Reason::HoldEpisodesFull,
        Reason::LockSitesFull,
        Reason::GoProbeBudget,
    ];

    /// The `reason` label of alerts and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Reason::RingBufferFull => "ring_buffer_full",
            Reason::SamplesSkipped => "stack_samples_skipped",
            Reason::InFlightFull => "in_flight_full",
            Reason::AggregatesFull => "aggregates_full",
            Reason::StacksMissing => "stacks_missing",
            Reason::WatchMapFull => "watch_map_full",
            Reason::HoldersFull => "holders_full",
            Reason::HoldEpisodesFull => "hold_episodes_full",
            Reason::LockSitesFull => "lock_site_table_full",
            Reason::GoProbeBudget => "go_probe_budget",
        }
    }

    /// "ring buffer full", as the stderr line starts.
    pub fn title(self) -> &'static str {
        match self {
            Reason::RingBufferFull => "ring buffer full",
            Reason::SamplesSkipped => "ring buffer busy",
            Reason::InFlightFull => "in-flight table full",
            Reason::AggregatesFull => "aggregate map full",
            Reason::StacksMissing => "stack table full",
            Reason::WatchMapFull => "watch map full",
            Reason::HoldersFull => "lock holder table full",
            Reason::HoldEpisodesFull => "hold episode table full",
            Reason::LockSitesFull => "lock-site table full",
            Reason::GoProbeBudget => "Go probe budget",
        }
    }

    /// What was lost, for a count: "events dropped".
    pub fn lost(self) -> &'static str {
        match self {
            Reason::RingBufferFull => "events dropped",
            Reason::SamplesSkipped => "short-wait stack samples skipped",
            Reason::InFlightFull => "waits not tracked",
            Reason::AggregatesFull => "short waits not summed",
            Reason::StacksMissing => "waits without a stack",
            Reason::WatchMapFull => "new processes not watched",
            Reason::HoldersFull => "holders not watched (per scan)",
            Reason::HoldEpisodesFull => "long lock waits in no hold",
            Reason::LockSitesFull => "processes with lock sites not written",
            Reason::GoProbeBudget => "processes with park probes duty-cycled",
        }
    }

    /// Losses within one [`REPORT_INTERVAL_NS`] that make a period start. A stack id is also
    /// refused when two stacks fall into one bucket of the kernel's table (a handful a minute
    /// on a busy healthy server, the wait still reported, without that stack): only a run of
    /// them says the table is full.
    pub fn min_count(self) -> u64 {
        match self {
            Reason::StacksMissing => 100,
            _ => 1,
        }
    }

    /// What it means for the user, and what to do.
    pub fn meaning(self) -> &'static str {
        match self {
            Reason::RingBufferFull => "alerts may be missing; raise --ring-size",
            Reason::SamplesSkipped => "profile stacks are less precise",
            Reason::InFlightFull => "stalls and long waits may be missed",
            Reason::AggregatesFull => "the profile is incomplete",
            Reason::StacksMissing => "some alerts and profile entries have no stack",
            Reason::WatchMapFull => "narrow the sidecar with --comm or --cgroup",
            Reason::HoldersFull => "their alerts say holder_state \"unknown\"",
            Reason::HoldEpisodesFull => "lock_hold alerts are incomplete",
            Reason::LockSitesFull => {
                "waits on its locks outside the pages written count as idle, never as lock waits"
            }
            Reason::GoProbeBudget => {
                "goroutines followed from memory snapshots meanwhile, without wakers; panics \
                 and fatal errors are always watched; raise --go-probe-budget to keep the \
                 probes on longer"
            }
        }
    }
}

/// Where a degraded period is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Started,
    Continuing,
    Ended,
}

impl State {
    pub fn label(self) -> &'static str {
        match self {
            State::Started => "started",
            State::Continuing => "continuing",
            State::Ended => "ended",
        }
    }
}

/// One report: a condition started, went on, or ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub reason: Reason,
    pub state: State,
    /// The process it is about (the Go probe budget); `None` for the whole session.
    pub pid: Option<u32>,
    /// Losses in the window this report covers (started/continuing); the period's total for
    /// `Ended`.
    pub count: u64,
    /// The window `count` covers, in ns (for `Ended`: the whole period).
    pub window_ns: u64,
    /// Losses since the period began.
    pub total: u64,
    /// When the period began (monotonic ns).
    pub since_ns: u64,
    /// Extra words for one-off limits (e.g. the park rate that tripped the Go budget).
    pub note: Option<String>,
}

/// A degraded period, for the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub reason: Reason,
    pub pid: Option<u32>,
    pub since_ns: u64,
    /// `None` while it goes on.
    pub until_ns: Option<u64>,
    pub total: u64,
}

/// Reports of a continuing condition at most this often.
pub const REPORT_INTERVAL_NS: u64 = 5_000_000_000;
/// A counter condition ends when its counter has not grown for this long.
pub const QUIET_NS: u64 = 5_000_000_000;
/// Periods kept for the summary; older ended ones are forgotten first (counted).
const MAX_PERIODS: usize = 64;

#[derive(Debug, Clone, Default)]
struct Active {
    since_ns: u64,
    total: u64,
    last_report_ns: u64,
    unreported: u64,
    last_growth_ns: u64,
    /// Index in `periods` (None once forgotten).
    period: Option<usize>,
}

#[derive(Debug, Default)]
pub struct DegradedRule {
    /// Per counter reason: the last value seen, and the open period.
    counters: Vec<(Reason, u64, Option<Active>)>,
    /// Per counter reason below its [`Reason::min_count`]: losses since the window began.
    pending: Vec<(Reason, u64, u64)>,
    /// Open one-off periods by (reason, pid).
    one_offs: Vec<(Reason, u32, usize)>,
    periods: Vec<Period>,
    /// Periods forgotten because [`MAX_PERIODS`] were kept.
    pub periods_forgotten: u64,
    last_seen_ns: Option<u64>,
}

impl DegradedRule {
    /// The cumulative loss counters at `now_ns` (monotonic). Counters start at 0 when the
    /// session starts, so losses before the first call count too.
    pub fn counters(&mut self, now_ns: u64, values: &[(Reason, u64)]) -> Vec<Transition> {
        let previous_ns = self.last_seen_ns.replace(now_ns).unwrap_or(now_ns);
        let mut out = Vec::new();
        for &(reason, value) in values {
            let idx = match self.counters.iter().position(|c| c.0 == reason) {
                Some(i) => i,
                None => {
                    self.counters.push((reason, 0, None));
                    self.counters.len() - 1
                }
            };
            let mut delta = value.saturating_sub(self.counters[idx].1);
            self.counters[idx].1 = value.max(self.counters[idx].1);
            if self.counters[idx].2.is_none() && reason.min_count() > 1 {
                delta = self.below_minimum(reason, now_ns, delta);
            }
            match self.counters[idx].2.take() {
                None if delta > 0 => {
                    let period = self.open_period(reason, None, now_ns, delta);
                    out.push(Transition {
                        reason,
                        state: State::Started,
                        pid: None,
                        count: delta,
                        window_ns: now_ns.saturating_sub(previous_ns),
                        total: delta,
                        since_ns: now_ns,
                        note: None,
                    });
                    self.counters[idx].2 = Some(Active {
                        since_ns: now_ns,
                        total: delta,
                        last_report_ns: now_ns,
                        unreported: 0,
                        last_growth_ns: now_ns,
                        period,
                    });
                }
                None => {}
                Some(mut a) => {
                    if delta > 0 {
                        a.total += delta;
                        a.unreported += delta;
                        a.last_growth_ns = now_ns;
                        self.set_total(a.period, a.total);
                    }
                    let due = now_ns.saturating_sub(a.last_report_ns) >= REPORT_INTERVAL_NS;
                    if a.unreported > 0 && due {
                        out.push(Transition {
                            reason,
                            state: State::Continuing,
                            pid: None,
                            count: a.unreported,
                            window_ns: now_ns - a.last_report_ns,
                            total: a.total,
                            since_ns: a.since_ns,
                            note: None,
                        });
                        a.unreported = 0;
                        a.last_report_ns = now_ns;
                    }
                    if a.unreported == 0 && now_ns.saturating_sub(a.last_growth_ns) >= QUIET_NS {
                        out.push(self.end(reason, None, a.period, a.since_ns, a.total, now_ns));
                    } else {
                        self.counters[idx].2 = Some(a);
                    }
                }
            }
        }
        out
    }

    /// Losses of a reason with a minimum, summed over one window: the sum once it reaches the
    /// minimum (a period starts with it), else 0.
    fn below_minimum(&mut self, reason: Reason, now_ns: u64, delta: u64) -> u64 {
        let i = match self.pending.iter().position(|p| p.0 == reason) {
            Some(i) => i,
            None => {
                self.pending.push((reason, now_ns, 0));
                self.pending.len() - 1
            }
        };
        let p = &mut self.pending[i];
        if now_ns.saturating_sub(p.1) >= REPORT_INTERVAL_NS {
            *p = (reason, now_ns, 0);
        }
        p.2 += delta;
        if p.2 >= reason.min_count() {
            let sum = p.2;
            *p = (reason, now_ns, 0);
            sum
        } else {
            0
        }
    }

    /// The session ends: every counter condition still in effect ends now, with its total,
    /// so that no loss goes unreported. One-off limits stay open (in effect until the end).
    pub fn finish(&mut self, now_ns: u64) -> Vec<Transition> {
        let mut out = Vec::new();
        for i in 0..self.counters.len() {
            if let Some(a) = self.counters[i].2.take() {
                let reason = self.counters[i].0;
                out.push(self.end(reason, None, a.period, a.since_ns, a.total, now_ns));
            }
        }
        out
    }

    /// A one-off limit on process `pid` (e.g. its Go probes taken off): in effect until
    /// [`DegradedRule::process_gone`]. A second one for the same process and reason while the
    /// first is in effect is not news: `None`.
    pub fn one_off(
        &mut self,
        now_ns: u64,
        reason: Reason,
        pid: u32,
        note: String,
    ) -> Option<Transition> {
        if self.one_offs.iter().any(|o| o.0 == reason && o.1 == pid) {
            return None;
        }
        if let Some(period) = self.open_period(reason, Some(pid), now_ns, 1) {
            self.one_offs.push((reason, pid, period));
        } else {
            self.one_offs.push((reason, pid, usize::MAX));
        }
        Some(Transition {
            reason,
            state: State::Started,
            pid: Some(pid),
            count: 1,
            window_ns: 0,
            total: 1,
            since_ns: now_ns,
            note: Some(note),
        })
    }

    /// Process `pid` ended: the one-off limits on it end too.
    pub fn process_gone(&mut self, now_ns: u64, pid: u32) -> Vec<Transition> {
        let (gone, kept): (Vec<_>, Vec<_>) = self.one_offs.drain(..).partition(|o| o.1 == pid);
        self.one_offs = kept;
        gone.into_iter()
            .map(|(reason, pid, period)| {
                let since = self.periods.get(period).map_or(now_ns, |p| p.since_ns);
                let period = (period != usize::MAX).then_some(period);
                self.end(reason, Some(pid), period, since, 1, now_ns)
            })
            .collect()
    }

    /// Reasons in effect now, each with how many conditions of it are open (metrics gauge).
    pub fn in_effect(&self) -> Vec<(Reason, u64)> {
        Reason::ALL
            .iter()
            .map(|&r| {
                let counters = self
                    .counters
                    .iter()
                    .filter(|c| c.0 == r && c.2.is_some())
                    .count();
                let one_offs = self.one_offs.iter().filter(|o| o.0 == r).count();
                (r, (counters + one_offs) as u64)
            })
            .collect()
    }

    /// Every period kept, oldest first (for the summary).
    pub fn periods(&self) -> &[Period] {
        &self.periods
    }

    fn open_period(
        &mut self,
        reason: Reason,
        pid: Option<u32>,
        now_ns: u64,
        total: u64,
    ) -> Option<usize> {
        if self.periods.len() >= MAX_PERIODS {
            // Forget the oldest ended period; with none ended, the new one is not kept.
            let oldest = self.periods.iter().position(|p| p.until_ns.is_some())?;
            self.periods.remove(oldest);
            self.periods_forgotten += 1;
            self.reindex_after_removal(oldest);
        }
        self.periods.push(Period {
            reason,
            pid,
            since_ns: now_ns,
            until_ns: None,
            total,
        });
        Some(self.periods.len() - 1)
    }

    fn reindex_after_removal(&mut self, removed: usize) {
        for c in self.counters.iter_mut() {
            if let Some(a) = c.2.as_mut() {
                a.period = a.period.map(|i| if i > removed { i - 1 } else { i });
            }
        }
        for o in self.one_offs.iter_mut() {
            if o.2 != usize::MAX && o.2 > removed {
                o.2 -= 1;
            }
        }
    }

    fn set_total(&mut self, period: Option<usize>, total: u64) {
        if let Some(p) = period.and_then(|i| self.periods.get_mut(i)) {
            p.total = total;
        }
    }

    fn end(
        &mut self,
        reason: Reason,
        pid: Option<u32>,
        period: Option<usize>,
        since_ns: u64,
        total: u64,
        now_ns: u64,
    ) -> Transition {
        if let Some(p) = period.and_then(|i| self.periods.get_mut(i)) {
            p.until_ns = Some(now_ns);
        }
        Transition {
            reason,
            state: State::Ended,
            pid,
            count: total,
            window_ns: now_ns.saturating_sub(since_ns),
            total,
            since_ns,
            note: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    const TICK: u64 = 200_000_000;

    fn ring(rule: &mut DegradedRule, now: u64, value: u64) -> Vec<Transition> {
        rule.counters(now, &[(Reason::RingBufferFull, value)])
    }

    #[test]
    fn no_loss_no_report() {
        let mut rule = DegradedRule::default();
        for i in 0..100 {
            assert!(ring(&mut rule, i * TICK, 0).is_empty());
        }
        assert!(rule.periods().is_empty());
        assert!(rule.in_effect().iter().all(|(_, n)| *n == 0));
    }

    #[test]
    fn a_flood_is_one_start_then_one_report_per_interval_then_an_end() {
        let mut rule = DegradedRule::default();
        assert!(ring(&mut rule, 0, 0).is_empty());
        let start = ring(&mut rule, TICK, 10);
        assert_eq!(start.len(), 1);
        assert_eq!(start[0].state, State::Started);
        assert_eq!((start[0].count, start[0].window_ns), (10, TICK));
        // 100 per tick for 12 s: 2 continuing reports, not 60.
        let mut reports = Vec::new();
        let mut value = 10;
        for i in 2..=61 {
            value += 100;
            reports.extend(ring(&mut rule, i * TICK, value));
        }
        assert_eq!(reports.len(), 2, "{reports:?}");
        assert!(reports.iter().all(|t| t.state == State::Continuing));
        assert_eq!(reports[0].count, 25 * 100);
        assert_eq!(reports[0].window_ns, 5 * S);
        assert_eq!(rule.in_effect()[0], (Reason::RingBufferFull, 1));
        // Quiet: the rest is reported, then the end after QUIET_NS without growth.
        let mut tail = Vec::new();
        for i in 62..=120 {
            tail.extend(ring(&mut rule, i * TICK, value));
        }
        assert_eq!(tail.len(), 2, "{tail:?}");
        assert_eq!(tail[0].state, State::Continuing);
        assert_eq!(tail[1].state, State::Ended);
        assert_eq!(tail[1].total, value);
        assert_eq!(tail[1].since_ns, TICK);
        let p = &rule.periods()[0];
        assert_eq!((p.since_ns, p.total), (TICK, value));
        assert!(p.until_ns.is_some());
        assert_eq!(rule.in_effect()[0], (Reason::RingBufferFull, 0));
        // A new loss is a new period.
        let again = ring(&mut rule, 200 * TICK, value + 1);
        assert_eq!(again[0].state, State::Started);
        assert_eq!(rule.periods().len(), 2);
    }

    #[test]
    fn the_end_of_the_session_ends_every_period_with_its_total() {
        let mut rule = DegradedRule::default();
        ring(&mut rule, 0, 5);
        ring(&mut rule, TICK, 900);
        rule.one_off(TICK, Reason::GoProbeBudget, 9, String::new());
        let end = rule.finish(2 * TICK);
        assert_eq!(end.len(), 1, "{end:?}");
        assert_eq!((end[0].state, end[0].total), (State::Ended, 900));
        assert_eq!(rule.periods()[0].until_ns, Some(2 * TICK));
        assert_eq!(rule.periods()[1].until_ns, None);
        assert!(rule.finish(3 * TICK).is_empty());
    }

    #[test]
    fn losses_before_the_first_look_count() {
        let mut rule = DegradedRule::default();
        let t = ring(&mut rule, 5 * S, 7);
        assert_eq!(t[0].count, 7);
    }

    #[test]
    fn reasons_are_independent() {
        let mut rule = DegradedRule::default();
        let t = rule.counters(0, &[(Reason::RingBufferFull, 0), (Reason::InFlightFull, 3)]);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].reason, Reason::InFlightFull);
    }

    #[test]
    fn a_one_off_lasts_while_its_process_lives() {
        let mut rule = DegradedRule::default();
        let t = rule.one_off(S, Reason::GoProbeBudget, 42, "parks 90000/s".into());
        assert_eq!(t.as_ref().map(|t| t.state), Some(State::Started));
        assert_eq!(t.unwrap().pid, Some(42));
        assert!(rule
            .one_off(2 * S, Reason::GoProbeBudget, 42, String::new())
            .is_none());
        assert!(rule.process_gone(3 * S, 7).is_empty());
        assert!(rule.in_effect().contains(&(Reason::GoProbeBudget, 1)));
        let end = rule.process_gone(4 * S, 42);
        assert_eq!(end.len(), 1);
        assert_eq!(end[0].state, State::Ended);
        assert_eq!(end[0].window_ns, 3 * S);
        assert!(rule.in_effect().contains(&(Reason::GoProbeBudget, 0)));
    }

    #[test]
    fn periods_are_bounded() {
        let mut rule = DegradedRule::default();
        let mut value = 0;
        for i in 0..(MAX_PERIODS as u64 + 10) {
            value += 1;
            let at = i * 20 * S;
            ring(&mut rule, at, value);
            ring(&mut rule, at + 10 * S, value);
        }
        assert_eq!(rule.periods().len(), MAX_PERIODS);
        assert_eq!(rule.periods_forgotten, 10);
        assert!(rule.periods().iter().all(|p| p.until_ns.is_some()));
    }

    #[test]
    fn a_few_missing_stacks_are_not_a_full_table() {
        let mut rule = DegradedRule::default();
        let mut missing = 0;
        // 3 every 5 s for a minute: bucket collisions of a healthy server.
        for i in 0..12 {
            missing += 3;
            let t = rule.counters(i * 5 * S, &[(Reason::StacksMissing, missing)]);
            assert!(t.is_empty(), "{t:?}");
        }
        // A full table: every wait in a second lacks its stack.
        let mut t = Vec::new();
        for i in 0..5 {
            missing += 40;
            t.extend(rule.counters(60 * S + i * TICK, &[(Reason::StacksMissing, missing)]));
        }
        assert_eq!(t.len(), 1, "{t:?}");
        assert_eq!((t[0].state, t[0].count), (State::Started, 120));
    }

    #[test]
    fn a_counter_that_goes_back_does_not_underflow() {
        let mut rule = DegradedRule::default();
        ring(&mut rule, 0, 10);
        assert!(ring(&mut rule, TICK, 3).is_empty());
    }
}
