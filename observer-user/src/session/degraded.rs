//! Observer's own degraded modes, made visible: the kernel's loss counters and the userspace
//! limits go through the `degraded` rule on every scan; each transition is a `degraded` alert
//! (a timestamped stderr line, a JSON line in the alerts file and the recording), the metrics
//! count and gauge it, and the summary lists the periods.

use std::time::Duration;

use super::{now_time, wall_time, Session};
use crate::detect::degraded::{DegradedRule, Reason, State, Transition};
use crate::kernel::probes::Counters;
use crate::output::alert::{AlertDetail, Degraded};
use crate::util::{clock::monotonic_ns, duration::human, number::thousands};

impl Session {
    /// Reads the loss counters and reports what started, went on or ended since the last scan.
    pub(super) fn check_degraded(&mut self) {
        let c: Counters = self.probes.counters();
        let values = [
            (Reason::RingBufferFull, c.events_dropped),
            (Reason::SamplesSkipped, c.short_samples_lost),
            (Reason::InFlightFull, c.inflight_dropped),
            (Reason::AggregatesFull, c.agg_dropped + c.go_agg_dropped),
            (Reason::StacksMissing, c.stack_missing),
            (Reason::WatchMapFull, c.watch_full),
            (Reason::HoldersFull, self.holders.refused),
            (Reason::HoldEpisodesFull, self.lock_holds.ungrouped()),
        ];
        let transitions = self.degraded.counters(monotonic_ns(), &values);
        self.report_degraded(transitions);
    }

    /// The session ends: the last losses are reported and the periods still going on closed.
    pub(super) fn finish_degraded(&mut self) {
        self.check_degraded();
        let t = self.degraded.finish(monotonic_ns());
        self.report_degraded(t);
    }

    /// A limit on process `pid` alone (`note`: what happened, e.g. its park rate), in effect
    /// while it is watched.
    pub(super) fn degraded_one_off(&mut self, reason: Reason, pid: u32, note: String) {
        let t = self.degraded.one_off(monotonic_ns(), reason, pid, note);
        self.report_degraded(t.into_iter().collect());
    }

    /// `pid` is no longer watched: the limits on it end with it.
    pub(super) fn degraded_process_gone(&mut self, pid: u32) {
        let t = self.degraded.process_gone(monotonic_ns(), pid);
        self.report_degraded(t);
    }

    fn report_degraded(&mut self, transitions: Vec<Transition>) {
        for t in transitions {
            if let (Some(m), State::Started) = (&self.opts.metrics, t.state) {
                m.degraded_started(t.reason);
            }
            let (pid, comm) = match t.pid {
                Some(pid) => (pid, self.process_name(pid)),
                None => (0, String::new()),
            };
            let detail = AlertDetail::Degraded(Degraded {
                reason: t.reason.label().to_string(),
                state: t.state.label().to_string(),
                count: t.count,
                window_ns: t.window_ns,
                total: t.total,
                since: wall_time(t.since_ns),
                detail: describe(&t, &comm),
            });
            let alert = self.alert_with_comm(now_time(), pid, 0, comm, Vec::new(), detail);
            self.emit(alert);
        }
        if let Some(m) = &self.opts.metrics {
            m.set_degraded(&self.degraded.in_effect());
        }
    }

    /// The summary's lines about degraded periods ("" when there were none).
    pub(super) fn degraded_note(&self) -> String {
        let periods = self.degraded.periods();
        if periods.is_empty() {
            return String::new();
        }
        let mut out =
            String::from("degraded periods (what observer reported then is incomplete):\n");
        for p in periods {
            let since = wall_time(p.since_ns);
            let span = match p.until_ns {
                Some(until) => format!(
                    "from {since} for {}",
                    human(Duration::from_nanos(until.saturating_sub(p.since_ns)))
                ),
                None => format!("from {since} until the end"),
            };
            let what = match p.pid {
                Some(pid) => format!("pid {pid}"),
                None => format!("{} {}", thousands(p.total), p.reason.lost()),
            };
            out.push_str(&format!("  {}: {what}, {span}\n", p.reason.title()));
        }
        if self.degraded.periods_forgotten > 0 {
            out.push_str(&format!(
                "  ({} earlier periods not listed)\n",
                self.degraded.periods_forgotten
            ));
        }
        out
    }
}

/// The words of a transition: "ring buffer full, 1,204 events dropped in the last 5s (alerts
/// may be missing; raise --ring-size)".
fn describe(t: &Transition, comm: &str) -> String {
    let r = t.reason;
    let window = if t.window_ns == 0 {
        "so far".to_string()
    } else {
        format!("in the last {}", human(Duration::from_nanos(t.window_ns)))
    };
    if let Some(pid) = t.pid {
        let who = format!("pid {pid} ({comm})");
        return match t.state {
            State::Ended => format!("{} over: {who} is no longer watched", r.title()),
            _ => format!(
                "{}: {who} {} ({})",
                r.title(),
                t.note.as_deref().unwrap_or("limited"),
                r.meaning()
            ),
        };
    }
    match t.state {
        State::Started => format!(
            "{}, {} {} {window} ({})",
            r.title(),
            thousands(t.count),
            r.lost(),
            r.meaning()
        ),
        State::Continuing => format!(
            "{}, {} {} {window}, {} since {} ({})",
            r.title(),
            thousands(t.count),
            r.lost(),
            thousands(t.total),
            wall_time(t.since_ns),
            r.meaning()
        ),
        State::Ended => format!(
            "{} over: {} {} in {}",
            r.title(),
            thousands(t.total),
            r.lost(),
            human(Duration::from_nanos(t.window_ns))
        ),
    }
}

/// The rule's state lives in the session; a type alias keeps `mod.rs` free of its imports.
pub(super) type Degradation = DegradedRule;
