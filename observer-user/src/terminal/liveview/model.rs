//! What the live view shows: the snapshot the session fills every second, and its rows.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::output::alert::{Alert, AlertDetail};
use crate::output::long_waits::LongWaits;
use crate::output::profile::TopStack;
use crate::stacks::own_code::own_frames;

/// Everything one screen shows. Lists may be given in any order: [`render`](super::render)
/// sorts what has a natural order (heaviest stacks, longest stalls, newest deaths first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveSnapshot {
    /// `"watch"` or `"sidecar"`.
    pub mode: String,
    /// What is observed: `"pid 4242 (bank)"`, `"host"`, `"12 processes"`.
    pub target: String,
    pub uptime: Duration,
    pub counters: LiveCounters,
    /// Blocked time (lock and kernel waits, not idle) per stack since the start (e.g.
    /// `BlockedProfile::top(50)`).
    pub top_stacks: Vec<TopStack>,
    /// Idle time in the profile since the start (waiting for work or time), not among the
    /// stacks: only its total is shown.
    pub idle_ns: u64,
    /// Threads and goroutines blocked right now for longer than the stall threshold.
    pub stalled: Vec<StalledWaiter>,
    /// Oldest first, as they happened; shown newest first.
    pub recent_deaths: Vec<Death>,
    /// Sidecar only: one row per observed process; the section is hidden when empty.
    pub processes: Vec<ProcessRow>,
    /// One-line alert messages, oldest first, shown with those given to
    /// [`LiveTerminal::note`](super::LiveTerminal::note).
    pub recent_alerts: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveCounters {
    pub waits_seen: u64,
    /// Waits over the alert threshold that ended, by what was made of them (the same count
    /// as the summary's).
    pub long_waits: LongWaits,
    /// `--report-idle` is on (idle long waits are then alerts).
    pub report_idle: bool,
    /// Alert kind (`"lock_hold"`, `"stall"`, ...) to count.
    pub alerts_by_kind: BTreeMap<String, u64>,
    /// Hold episodes reported (`lock_hold` alerts) and the long waits behind them.
    pub lock_holds: u64,
    pub lock_hold_waiters: u64,
    pub events_dropped: u64,
    pub aggregates_dropped: u64,
    pub in_flight_dropped: u64,
}

impl LiveCounters {
    pub fn count_alert(&mut self, kind: &str) {
        *self.alerts_by_kind.entry(kind.to_string()).or_default() += 1;
    }
}

/// Who is blocked: a kernel thread or a goroutine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiter {
    Thread { tid: u32 },
    Goroutine { goid: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StalledWaiter {
    pub pid: u32,
    pub comm: String,
    pub waiter: Waiter,
    pub blocked_ns: u64,
    /// What it waits on: a Go wait reason (`"sync.Mutex.Lock"`) or a lock (`"lock 0x7f3a1c000b20"`).
    pub on: String,
    /// Innermost first; the view shows the innermost frame of the program's own code.
    pub frames: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeathKind {
    ThreadExit,
    ProcessExit,
    GoPanic,
}

impl DeathKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeathKind::ThreadExit => "thread_exit",
            DeathKind::ProcessExit => "process_exit",
            DeathKind::GoPanic => "go_panic",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Death {
    /// RFC 3339 (as in alerts); the view shows the time of day.
    pub time: String,
    pub pid: u32,
    pub comm: String,
    pub tid: u32,
    pub kind: DeathKind,
    /// E.g. `"SIGSEGV; created by start_workers"`.
    pub summary: String,
}

impl Death {
    /// The death an alert reports (thread exit, process exit, Go panic), or `None`.
    pub fn from_alert(a: &Alert) -> Option<Death> {
        let top = |stack: &[String]| own_frames(stack).first().cloned();
        let (kind, summary) = match &a.detail {
            AlertDetail::ThreadExit(t) => {
                let how = t
                    .signal
                    .clone()
                    .unwrap_or_else(|| format!("exit code {}", t.exit_code));
                let by = top(&t.created_by)
                    .map(|f| format!("; created by {f}"))
                    .unwrap_or_default();
                (DeathKind::ThreadExit, format!("{how}{by}"))
            }
            AlertDetail::ProcessExit(p) => {
                let how = p
                    .signal
                    .clone()
                    .or(p.exit_code.map(|c| format!("exit code {c}")))
                    .unwrap_or_else(|| "ended".to_string());
                let msg = p.message.as_ref().map(|m| format!(": {m}"));
                (DeathKind::ProcessExit, how + &msg.unwrap_or_default())
            }
            AlertDetail::GoPanic(g) => {
                let msg = g.message.as_ref().map(|m| format!("{m:?}"));
                let mut s = format!("goroutine {} panicked", g.goid);
                if let Some(m) = msg {
                    s.push_str(&format!(" ({m})"));
                }
                if let Some(f) = top(&a.stack) {
                    s.push_str(&format!(" in {f}"));
                }
                if g.recovered {
                    s.push_str("; recovered");
                }
                (DeathKind::GoPanic, s)
            }
            _ => return None,
        };
        Some(Death {
            time: a.time.clone(),
            pid: a.pid,
            comm: a.comm.clone(),
            tid: a.tid,
            kind,
            summary,
        })
    }
}

/// One observed process in the sidecar table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessRow {
    pub pid: u32,
    pub comm: String,
    /// A Go program (goroutine probes attached).
    pub go: bool,
    /// Blocked nanoseconds per second over the last interval (1s/s = one thread always blocked).
    pub blocked_ns_per_s: u64,
    pub alerts: u64,
}
