//! Alerts into Prometheus Alertmanager (`--alertmanager URL`, its v2 API).
//!
//! Alertmanager wants to be told, again and again, what is still firing: an alert posted once
//! resolves itself at its `endsAt`. So the alerts that last (a thread stalled on a lock or in the
//! kernel, a deadlock, a stalled goroutine) are kept here and re-sent every [`RESEND_INTERVAL`]
//! with `endsAt` [`ONGOING_TTL`] ahead, and posted once more with `endsAt` = now when the
//! session sees them end (the wait is over, the process exited; for a stall away from home: its
//! `stall_end` alert). Every other alert is a point event: posted once, `endsAt` [`POINT_TTL`]
//! ahead. When observer stops, the ongoing alerts of processes still alive are left to expire
//! at their last `endsAt` (observer no longer knows); those of processes gone are resolved.
//!
//! The message building (`message.rs`) is pure; the network is a thread per Alertmanager with
//! a bounded queue (`sender.rs`). Failures are counted in
//! `observer_export_failures_total{sink="alertmanager"}` and said once on stderr.

mod message;
mod sender;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value};

use crate::output::alert::Alert;
use crate::output::metrics::Metrics;

pub use message::{alertname, label_value, MAX_ANNOTATION_BYTES, MAX_LABEL_BYTES};

/// How often ongoing alerts are posted again (well under Alertmanager's default
/// `resolve_timeout` of 5 minutes, and under [`ONGOING_TTL`]).
pub const RESEND_INTERVAL: Duration = Duration::from_secs(60);
/// `endsAt` of an ongoing alert, from each posting: if observer stops posting (it stopped, the
/// network is down), Alertmanager resolves the alert this long after the last one.
pub const ONGOING_TTL: Duration = Duration::from_secs(300);
/// `endsAt` of a point event (lock hold, thread or process exit, panic, ...), from its posting.
pub const POINT_TTL: Duration = Duration::from_secs(600);
/// Ongoing alerts tracked at most; past it a new one is posted as a point event.
pub const MAX_ONGOING: usize = 1000;
/// How long the session's end waits for queued alerts to be posted.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest URL accepted.
const MAX_URL_BYTES: usize = 2048;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AlertmanagerError {
    #[error("{url}: https is not supported yet: use a local collector/proxy over http")]
    Https { url: String },
    #[error("{url}: {why} (expected http://HOST:PORT, e.g. http://127.0.0.1:9093)")]
    BadUrl { url: String, why: String },
}

/// The v2 alerts endpoint of an Alertmanager base URL: `http://am:9093` and `http://am:9093/`
/// -> `http://am:9093/api/v2/alerts`; a path prefix (a route behind a proxy) is kept, and a URL
/// that already ends in `/api/v2/alerts` is taken as it is.
pub fn endpoint(url: &str) -> Result<String, AlertmanagerError> {
    let bad = |why: &str| AlertmanagerError::BadUrl {
        url: crate::util::stderr::escape(url).chars().take(200).collect(),
        why: why.to_string(),
    };
    if url.len() > MAX_URL_BYTES {
        return Err(bad("too long"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("spaces or control characters"));
    }
    let uri: ureq::http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
    match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
        Some("http") => {}
        Some("https") => {
            return Err(AlertmanagerError::Https {
                url: url.chars().take(200).collect(),
            })
        }
        Some(_) => return Err(bad("only http:// is supported")),
        None => return Err(bad("no scheme")),
    }
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    if authority.host().is_empty() {
        return Err(bad("no host"));
    }
    if uri.query().is_some() || url.contains('#') {
        return Err(bad("a query or fragment has no place here"));
    }
    let path = uri.path().trim_end_matches('/');
    let path = if path.ends_with("/api/v2/alerts") {
        path.to_string()
    } else {
        format!("{path}/api/v2/alerts")
    };
    Ok(format!("http://{authority}{path}"))
}

/// What ends an ongoing alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    /// The thread's blocking wait (its start learnt at the first look after the alert).
    WaitEnds { tid: u32, start_ns: Option<u64> },
    /// The goroutine is no longer stalled.
    GoroutineWakes { goid: u64 },
    /// Its end alert (`stall_end`) or the process's exit.
    EndAlert,
}

struct Ongoing {
    pid: u32,
    until: Until,
    labels: Map<String, Value>,
    annotations: Map<String, Value>,
    starts_at: String,
}

/// What the session knows now about the ongoing alerts' conditions.
pub trait Liveness {
    /// The lock and uninterruptible waits going on now, as (tid, start).
    fn waits(&self) -> &HashSet<(u32, u64)>;
    /// Whether goroutine `goid` of `pid` is stalled now.
    fn goroutine_stalled(&self, pid: u32, goid: u64) -> bool;
    /// Whether process `pid` is still observed.
    fn process_live(&self, pid: u32) -> bool;
}

/// Which alerts are firing and what to post: pure (time is passed in), for the tests.
pub struct Tracker {
    instance: String,
    ongoing: HashMap<String, Ongoing>,
    last_resend: Option<Instant>,
}

impl Tracker {
    pub fn new(instance: &str) -> Self {
        Tracker {
            instance: instance.to_string(),
            ongoing: HashMap::new(),
            last_resend: None,
        }
    }

    /// The postable alerts for one new alert.
    pub fn alert(&mut self, alert: &Alert, now: SystemTime) -> Vec<Value> {
        // The JSON of the alert, not its struct: fields added later (container identity) are
        // picked up as they appear.
        let json = serde_json::to_value(alert).unwrap_or(Value::Null);
        let labels = message::labels(&json, &self.instance);
        let annotations = message::annotations(alert, &json);
        let key = Value::Object(labels.clone()).to_string();
        let until = match &json["kind"] {
            k if k == "stall" && json["stall_on"] == "away_from_home" => Some(Until::EndAlert),
            k if k == "stall" || k == "deadlock" => Some(Until::WaitEnds {
                tid: alert.tid,
                start_ns: None,
            }),
            k if k == "goroutine_stall" => json["goid"]
                .as_u64()
                .map(|goid| Until::GoroutineWakes { goid }),
            k if k == "stall_end" => {
                // Resolves the stall it ends (same labels), known here or not.
                let (annotations, starts_at) = match self.ongoing.remove(&key) {
                    Some(o) => (o.annotations, o.starts_at),
                    None => (annotations, alert.time.clone()),
                };
                return vec![message::postable(&labels, &annotations, &starts_at, now)];
            }
            _ => None,
        };
        match until {
            Some(until) if self.ongoing.len() < MAX_ONGOING || self.ongoing.contains_key(&key) => {
                if self.ongoing.is_empty() {
                    // Just posted: the re-send clock starts at the next look.
                    self.last_resend = None;
                }
                let posted =
                    message::postable(&labels, &annotations, &alert.time, now + ONGOING_TTL);
                self.ongoing.insert(
                    key,
                    Ongoing {
                        pid: alert.pid,
                        until,
                        labels,
                        annotations,
                        starts_at: alert.time.clone(),
                    },
                );
                vec![posted]
            }
            _ => vec![message::postable(
                &labels,
                &annotations,
                &alert.time,
                now + POINT_TTL,
            )],
        }
    }

    /// Resolves the ongoing alerts whose condition is over; every [`RESEND_INTERVAL`], re-posts
    /// the others.
    pub fn update(&mut self, live: &dyn Liveness, now: SystemTime, mono: Instant) -> Vec<Value> {
        if self.ongoing.is_empty() {
            return Vec::new();
        }
        let mut waits: HashMap<u32, HashSet<u64>> = HashMap::new();
        for &(tid, start) in live.waits() {
            waits.entry(tid).or_default().insert(start);
        }
        let mut out = Vec::new();
        self.ongoing.retain(|_, o| {
            let going_on = live.process_live(o.pid)
                && match &mut o.until {
                    Until::WaitEnds { tid, start_ns } => match (*start_ns, waits.get(tid)) {
                        (Some(s), Some(starts)) => starts.contains(&s),
                        (None, Some(starts)) => {
                            // The wait of the alert is the oldest going on for the thread now.
                            *start_ns = starts.iter().min().copied();
                            true
                        }
                        (_, None) => false,
                    },
                    Until::GoroutineWakes { goid } => live.goroutine_stalled(o.pid, *goid),
                    Until::EndAlert => true,
                };
            if !going_on {
                out.push(message::postable(
                    &o.labels,
                    &o.annotations,
                    &o.starts_at,
                    now,
                ));
            }
            going_on
        });
        let due = self
            .last_resend
            .is_none_or(|t| mono.saturating_duration_since(t) >= RESEND_INTERVAL);
        if due {
            // The first look only starts the clock: everything was just posted.
            if self.last_resend.is_some() {
                out.extend(self.ongoing.values().map(|o| {
                    message::postable(&o.labels, &o.annotations, &o.starts_at, now + ONGOING_TTL)
                }));
            }
            self.last_resend = Some(mono);
        }
        out
    }

    /// At the end of observation: resolves the ongoing alerts of processes that are gone (the
    /// others expire at their last `endsAt`).
    pub fn finish(&mut self, alive: &dyn Fn(u32) -> bool, now: SystemTime) -> Vec<Value> {
        let gone = self.ongoing.drain().filter(|(_, o)| !alive(o.pid));
        gone.map(|(_, o)| message::postable(&o.labels, &o.annotations, &o.starts_at, now))
            .collect()
    }

    pub fn ongoing(&self) -> usize {
        self.ongoing.len()
    }
}

/// The `--alertmanager` sink: the tracker and one sender per Alertmanager.
pub struct Alertmanager {
    tracker: Tracker,
    senders: Vec<sender::Sender>,
}

impl Alertmanager {
    /// `endpoints` from [`endpoint`]. Starts the sender threads.
    pub fn start(endpoints: &[String], metrics: Option<Arc<Metrics>>, quiet: bool) -> Self {
        let instance = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        Alertmanager {
            tracker: Tracker::new(&instance),
            senders: endpoints
                .iter()
                .map(|e| {
                    sender::Sender::start(e.clone(), metrics.clone(), quiet, Default::default())
                })
                .collect(),
        }
    }

    fn post(&self, alerts: Vec<Value>) {
        if alerts.is_empty() {
            return;
        }
        for s in &self.senders {
            s.push(alerts.iter().cloned());
        }
    }

    pub fn alert(&mut self, alert: &Alert) {
        let posted = self.tracker.alert(alert, SystemTime::now());
        self.post(posted);
    }

    /// See [`Tracker::update`]; cheap when nothing is ongoing.
    pub fn update(&mut self, live: &dyn Liveness) {
        let posted = self.tracker.update(live, SystemTime::now(), Instant::now());
        self.post(posted);
    }

    /// Posts the last alerts and what is queued, for at most [`FLUSH_TIMEOUT`]; returns a note
    /// for each Alertmanager that did not get everything.
    pub fn finish(&mut self) -> Vec<String> {
        let last = self
            .tracker
            .finish(&crate::proc::target::is_alive, SystemTime::now());
        self.post(last);
        let deadline = Instant::now() + FLUSH_TIMEOUT;
        self.senders
            .iter()
            .filter_map(|s| {
                s.finish(deadline).map(|(n, why)| {
                    format!(
                        "alertmanager {}: {n} alert postings not delivered (first: {why})",
                        s.endpoint()
                    )
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
