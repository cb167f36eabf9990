//! The registry: counters and gauges per process and host-wide, bounded in cardinality.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use observer_common::AggValue;

use super::histogram::{bucket_of, buckets_of, BUCKETS};
use crate::detect::degraded::Reason;
use crate::output::alert::KINDS;

/// Processes with per-process series at most (a host rarely has more processes worth a series).
pub const DEFAULT_MAX_PROCESSES: usize = 2000;
/// How long a dead process's series stay: several scrape intervals, so its last values are stored.
pub const GONE_GRACE: Duration = Duration::from_secs(300);
/// The export sinks of `observer_export_failures_total{sink}`.
pub const EXPORT_SINKS: [&str; 2] = ["alertmanager", "otlp"];
/// Container ids remembered for processes that have no series yet, at most: the kernel watches
/// at most this many processes (its watch map), so a full table means a bug, not a big host.
const MAX_CONTAINER_PIDS: usize = 32_768;
/// Distinct alert kinds per process at most; [`KINDS`] has 11, the rest guards misuse.
const MAX_KINDS: usize = 32;

/// What a thread or goroutine waited for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitKind {
    /// A futex wait on a lock held by another thread.
    Lock,
    /// Any other blocking wait (condition variables, sleeps, poll, reads).
    Idle,
    /// A goroutine parked on a sync primitive.
    Goroutine,
}

impl WaitKind {
    pub(super) const ALL: [WaitKind; 3] = [WaitKind::Lock, WaitKind::Idle, WaitKind::Goroutine];

    pub(super) fn label(self) -> &'static str {
        match self {
            WaitKind::Lock => "lock",
            WaitKind::Idle => "idle",
            WaitKind::Goroutine => "goroutine",
        }
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }
}

/// A metric family drawn from the wait totals: name, help text, and the value it shows.
pub(super) type WaitFamily = (&'static str, &'static str, fn(&WaitTotals) -> String);

#[derive(Clone, Copy, Default)]
pub(super) struct WaitTotals {
    pub(super) count: u64,
    pub(super) total_ns: u64,
    /// Waits per histogram bucket, not cumulative (see `histogram.rs`); they add up to `count`.
    pub(super) buckets: [u64; BUCKETS],
}

pub(super) struct Process {
    pub(super) comm: String,
    /// The `container_id` label; none outside containers.
    pub(super) container_id: Option<String>,
    pub(super) waits: [WaitTotals; 3],
    pub(super) alerts: BTreeMap<String, u64>,
    pub(super) stalled_threads: u64,
    pub(super) stalled_goroutines: u64,
    pub(super) thread_deaths: u64,
    pub(super) go_panics: u64,
    /// Hold episodes (`lock_hold` alerts) and the long waits behind them.
    pub(super) lock_holds: u64,
    pub(super) lock_hold_waiters: u64,
    pub(super) gone_since: Option<Instant>,
}

impl Process {
    fn new(comm: &str, container_id: Option<String>) -> Self {
        Process {
            comm: comm.to_string(),
            container_id,
            waits: [WaitTotals::default(); 3],
            alerts: BTreeMap::new(),
            stalled_threads: 0,
            stalled_goroutines: 0,
            thread_deaths: 0,
            go_panics: 0,
            lock_holds: 0,
            lock_hold_waiters: 0,
            gone_since: None,
        }
    }
}

/// Kernel-side loss counters, cumulative since the probes were loaded.
#[derive(Clone, Copy, Default)]
pub(super) struct Drops {
    pub(super) events: u64,
    pub(super) aggregates: u64,
    pub(super) in_flight: u64,
    pub(super) stacks_missing: u64,
}

pub(super) struct Registry {
    pub(super) processes: BTreeMap<u32, Process>,
    pub(super) max_processes: usize,
    pub(super) series_dropped: u64,
    pub(super) alerts_by_kind: BTreeMap<String, u64>,
    pub(super) drops: Drops,
    pub(super) watched: u64,
    pub(super) go_watched: u64,
    /// Per degraded reason (every one exported from 0): periods begun, and conditions in effect now.
    pub(super) degraded: BTreeMap<&'static str, (u64, u64)>,
    /// Alerts or records an export sink could not deliver, by sink (every one exported from 0).
    pub(super) export_failures: BTreeMap<&'static str, u64>,
    /// The container of each watched process in one ([`Metrics::set_container`]), for the
    /// `container_id` label of the series it may get later.
    pub(super) containers: HashMap<u32, String>,
}

impl Registry {
    /// The entry of `pid`, created if there is room. A pid seen again under another name is a new
    /// process (the pid was reused, or the process exec'd): its counters start over.
    fn process(&mut self, pid: u32, comm: &str) -> Option<&mut Process> {
        let fresh = match self.processes.get(&pid) {
            Some(p) => p.comm != comm,
            None => {
                if self.processes.len() >= self.max_processes && !self.evict_one_gone() {
                    self.series_dropped += 1;
                    return None;
                }
                true
            }
        };
        if fresh {
            let container = self.containers.get(&pid).cloned();
            self.processes.insert(pid, Process::new(comm, container));
        }
        let p = self.processes.get_mut(&pid)?;
        // A report after `process_gone` is a late event of it (or the pid lives again): keep it.
        p.gone_since = None;
        Some(p)
    }

    /// Makes room by dropping the process that has been gone longest; false if none is gone.
    fn evict_one_gone(&mut self) -> bool {
        let oldest = self
            .processes
            .iter()
            .filter_map(|(pid, p)| p.gone_since.map(|t| (t, *pid)))
            .min();
        match oldest {
            Some((_, pid)) => {
                self.processes.remove(&pid);
                true
            }
            None => false,
        }
    }

    pub(super) fn expire(&mut self, now: Instant, grace: Duration) {
        self.processes.retain(|_, p| {
            p.gone_since
                .is_none_or(|t| now.saturating_duration_since(t) < grace)
        });
    }

    fn count_alert_kind(&mut self, kind: &str) {
        if let Some(n) = self.alerts_by_kind.get_mut(kind) {
            *n += 1;
        } else if self.alerts_by_kind.len() < MAX_KINDS {
            self.alerts_by_kind.insert(kind.to_string(), 1);
        } else {
            self.series_dropped += 1;
        }
    }
}

/// The sidecar's metrics. Updates take a std mutex for a few map operations; rendering holds it
/// while formatting (well under a millisecond for hundreds of processes).
pub struct Metrics {
    pub(super) registry: Mutex<Registry>,
    pub(super) grace: Duration,
    pub(super) version: &'static str,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Self::with_limits(DEFAULT_MAX_PROCESSES, GONE_GRACE))
    }

    /// A registry keeping at most `max_processes` processes, and dead ones for `grace`.
    pub fn with_limits(max_processes: usize, grace: Duration) -> Metrics {
        let alerts_by_kind = KINDS.iter().map(|k| (k.to_string(), 0)).collect();
        Metrics {
            registry: Mutex::new(Registry {
                processes: BTreeMap::new(),
                max_processes,
                series_dropped: 0,
                alerts_by_kind,
                drops: Drops::default(),
                watched: 0,
                go_watched: 0,
                degraded: Reason::ALL.iter().map(|r| (r.label(), (0, 0))).collect(),
                export_failures: EXPORT_SINKS.iter().map(|s| (*s, 0)).collect(),
                containers: HashMap::new(),
            }),
            grace,
            version: env!("CARGO_PKG_VERSION"),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic elsewhere while holding the lock leaves plain counters behind: still usable.
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `n` items (requests, or alerts or profiles dropped) a sink could not deliver.
    pub fn export_failures(&self, sink: &'static str, n: u64) {
        let mut reg = self.lock();
        if let Some(v) = reg.export_failures.get_mut(sink) {
            *v = v.saturating_add(n);
        }
    }

    /// One wait of `duration_ns` (a long wait, reported as it ended).
    pub fn wait(&self, pid: u32, comm: &str, kind: WaitKind, duration_ns: u64) {
        let mut buckets = [0; BUCKETS];
        buckets[bucket_of(duration_ns)] = 1;
        self.add_waits(pid, comm, kind, duration_ns, &buckets);
    }

    /// Waits summed in the kernel (one drain of an aggregate key), binned by duration there.
    pub fn waits_summed(&self, pid: u32, comm: &str, kind: WaitKind, value: &AggValue) {
        self.add_waits(pid, comm, kind, value.total_ns, &buckets_of(value));
    }

    fn add_waits(
        &self,
        pid: u32,
        comm: &str,
        kind: WaitKind,
        total_ns: u64,
        buckets: &[u64; BUCKETS],
    ) {
        let count = buckets.iter().fold(0u64, |a, b| a.saturating_add(*b));
        if count == 0 && total_ns == 0 {
            return;
        }
        let mut reg = self.lock();
        if let Some(p) = reg.process(pid, comm) {
            let w = &mut p.waits[kind.index()];
            w.count = w.count.saturating_add(count);
            w.total_ns = w.total_ns.saturating_add(total_ns);
            for (b, n) in w.buckets.iter_mut().zip(buckets) {
                *b = b.saturating_add(*n);
            }
        }
    }

    /// Counts one alert of `kind` (`Alert::kind()`); `thread_exit` also counts a thread death and
    /// `go_panic` a panic.
    pub fn alert(&self, pid: u32, comm: &str, kind: &str) {
        let mut reg = self.lock();
        reg.count_alert_kind(kind);
        if pid == 0 {
            // About observer itself (a degraded mode of the whole session), not a process.
            return;
        }
        let Some(p) = reg.process(pid, comm) else {
            return;
        };
        match kind {
            "thread_exit" => p.thread_deaths += 1,
            "go_panic" => p.go_panics += 1,
            _ => {}
        }
        if let Some(n) = p.alerts.get_mut(kind) {
            *n += 1;
        } else if p.alerts.len() < MAX_KINDS {
            p.alerts.insert(kind.to_string(), 1);
        } else {
            reg.series_dropped += 1;
        }
    }

    /// One hold episode with `waiters` long waits behind it (its `lock_hold` alert is counted
    /// by [`Metrics::alert`]).
    pub fn lock_hold(&self, pid: u32, comm: &str, waiters: u64) {
        let mut reg = self.lock();
        if let Some(p) = reg.process(pid, comm) {
            p.lock_holds = p.lock_holds.saturating_add(1);
            p.lock_hold_waiters = p.lock_hold_waiters.saturating_add(waiters);
        }
    }

    /// Thread deaths that raised no alert (their creation site had already alerted).
    pub fn thread_deaths(&self, pid: u32, comm: &str, count: u64) {
        if count == 0 {
            return;
        }
        let mut reg = self.lock();
        if let Some(p) = reg.process(pid, comm) {
            p.thread_deaths = p.thread_deaths.saturating_add(count);
        }
    }

    /// Threads and goroutines blocked past `--stall-after` right now.
    pub fn set_blocked(&self, pid: u32, comm: &str, stalled_threads: u64, stalled_goroutines: u64) {
        let mut reg = self.lock();
        let known = reg.processes.contains_key(&pid);
        if !known && stalled_threads == 0 && stalled_goroutines == 0 {
            return;
        }
        if let Some(p) = reg.process(pid, comm) {
            p.stalled_threads = stalled_threads;
            p.stalled_goroutines = stalled_goroutines;
        }
    }

    /// The kernel's loss counters (cumulative totals, not deltas).
    pub fn set_drops(&self, events: u64, aggregates: u64, in_flight: u64, stacks_missing: u64) {
        self.lock().drops = Drops {
            events,
            aggregates,
            in_flight,
            stacks_missing,
        };
    }

    /// A degraded period of `reason` began (`observer_degraded_total`).
    pub fn degraded_started(&self, reason: Reason) {
        if let Some(d) = self.lock().degraded.get_mut(reason.label()) {
            d.0 = d.0.saturating_add(1);
        }
    }

    /// Conditions of each reason in effect now (`observer_degraded`).
    pub fn set_degraded(&self, in_effect: &[(Reason, u64)]) {
        let mut reg = self.lock();
        for (reason, n) in in_effect {
            if let Some(d) = reg.degraded.get_mut(reason.label()) {
                d.1 = *n;
            }
        }
    }

    pub fn set_watched(&self, processes: u64, go_processes: u64) {
        let mut reg = self.lock();
        reg.watched = processes;
        reg.go_watched = go_processes;
    }

    /// Process `pid` runs in container `container_id` (`None`: in none): its series carry it as
    /// the `container_id` label. Told when the session takes the process on and when it runs a
    /// new program; forgotten when it is gone.
    pub fn set_container(&self, pid: u32, container_id: Option<&str>) {
        let mut reg = self.lock();
        match container_id {
            Some(id)
                if reg.containers.len() < MAX_CONTAINER_PIDS
                    || reg.containers.contains_key(&pid) =>
            {
                reg.containers.insert(pid, id.to_string());
            }
            Some(_) => {}
            None => {
                reg.containers.remove(&pid);
            }
        }
        if let Some(p) = reg.processes.get_mut(&pid) {
            p.container_id = container_id.map(str::to_string);
        }
    }

    /// The process ended: its gauges drop to 0 and its series go after [`GONE_GRACE`].
    pub fn process_gone(&self, pid: u32) {
        self.process_gone_at(pid, Instant::now());
    }

    pub(super) fn process_gone_at(&self, pid: u32, now: Instant) {
        let mut reg = self.lock();
        reg.containers.remove(&pid);
        if let Some(p) = reg.processes.get_mut(&pid) {
            p.stalled_threads = 0;
            p.stalled_goroutines = 0;
            p.gone_since.get_or_insert(now);
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::output::metrics) fn sample_lines(text: &str, name: &str) -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn cardinality_is_capped_and_refusals_counted() {
        let m = Metrics::with_limits(3, GONE_GRACE);
        for pid in 1..=5 {
            m.alert(pid, "p", "stall");
        }
        let text = m.render();
        assert_eq!(sample_lines(&text, "observer_stalled_threads").len(), 3);
        assert!(
            text.contains("observer_metrics_series_dropped_total 2\n"),
            "{text}"
        );
        // The host-wide count still saw all five.
        assert!(text.contains("observer_alerts_by_kind_total{kind=\"stall\"} 5\n"));
        // Known processes keep being updated at the cap.
        m.alert(1, "p", "stall");
        assert!(m
            .render()
            .contains("observer_alerts_total{pid=\"1\",comm=\"p\",kind=\"stall\"} 2\n"));
        // A gone process makes room at once when the table is full.
        m.process_gone(2);
        m.alert(9, "q", "deadlock");
        let text = m.render();
        assert!(text.contains("pid=\"9\""), "{text}");
        assert!(!text.contains("pid=\"2\""), "{text}");
        assert!(text.contains("observer_metrics_series_dropped_total 2\n"));
    }

    #[test]
    fn alert_kinds_per_process_are_capped() {
        let m = Metrics::with_limits(10, GONE_GRACE);
        for i in 0..MAX_KINDS + 5 {
            m.alert(1, "p", &format!("kind{i}"));
        }
        let text = m.render();
        assert_eq!(
            sample_lines(&text, "observer_alerts_total").len(),
            MAX_KINDS
        );
        assert!(
            !text.contains("observer_metrics_series_dropped_total 0\n"),
            "{text}"
        );
    }

    #[test]
    fn gone_processes_expire_after_the_grace() {
        let grace = Duration::from_secs(60);
        let m = Metrics::with_limits(10, grace);
        m.set_blocked(5, "p", 3, 1);
        m.alert(5, "p", "stall");
        let t0 = Instant::now();
        m.process_gone_at(5, t0);
        let text = m.render_at(t0 + Duration::from_secs(59));
        assert!(text.contains("observer_stalled_threads{pid=\"5\",comm=\"p\"} 0\n"));
        assert!(text.contains("observer_alerts_total{pid=\"5\",comm=\"p\",kind=\"stall\"} 1\n"));
        let text = m.render_at(t0 + Duration::from_secs(61));
        assert!(!text.contains("pid=\"5\""), "{text}");
    }

    #[test]
    fn zero_reports_create_no_series_and_a_new_comm_starts_over() {
        let m = Metrics::with_limits(10, GONE_GRACE);
        m.set_blocked(1, "idle", 0, 0);
        m.waits_summed(1, "idle", WaitKind::Lock, &AggValue::default());
        m.thread_deaths(1, "idle", 0);
        assert!(!m.render().contains("pid=\"1\""));
        m.thread_deaths(1, "idle", 4);
        m.alert(1, "idle", "thread_exit");
        assert!(m
            .render()
            .contains("observer_thread_deaths_total{pid=\"1\",comm=\"idle\"} 5\n"));
        // The pid now names another program.
        m.alert(1, "other", "stall");
        let text = m.render();
        assert!(!text.contains("comm=\"idle\""), "{text}");
        assert!(text.contains("observer_thread_deaths_total{pid=\"1\",comm=\"other\"} 0\n"));
    }

    #[test]
    fn series_of_processes_in_containers_carry_the_container_id() {
        let id = "3b1f6d0c2a7e4f5b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b";
        let m = Metrics::with_limits(10, GONE_GRACE);
        // Told before the process has series, and after.
        m.set_container(1, Some(id));
        m.alert(1, "db", "stall");
        m.alert(2, "web", "stall");
        m.set_container(2, Some(&id.replace('3', "4")));
        m.alert(3, "host", "stall");
        m.set_container(3, None);
        let text = m.render();
        let l1 = format!("pid=\"1\",comm=\"db\",container_id=\"{id}\"");
        assert!(
            text.contains(&format!("observer_alerts_total{{{l1},kind=\"stall\"}} 1\n")),
            "{text}"
        );
        assert!(text.contains(&format!("observer_stalled_threads{{{l1}}} 0\n")));
        assert!(text.contains("pid=\"2\",comm=\"web\",container_id=\"4b1f"));
        assert!(text.contains("observer_stalled_threads{pid=\"3\",comm=\"host\"} 0\n"));
        // One entry per process as before: no series multiply.
        assert_eq!(sample_lines(&text, "observer_stalled_threads").len(), 3);
        // Gone: forgotten, a new process under that pid starts without it.
        m.process_gone(1);
        assert!(!m.lock().containers.contains_key(&1));
        m.alert(1, "other", "stall");
        assert!(m
            .render()
            .contains("observer_stalled_threads{pid=\"1\",comm=\"other\"} 0\n"));
    }
}
