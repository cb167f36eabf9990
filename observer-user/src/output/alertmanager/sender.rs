//! The network side: one thread per Alertmanager that posts batches of alerts from a bounded
//! queue, retries what failed with exponential backoff a bounded number of times, and never
//! makes the session wait (the session only pushes onto the queue).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::output::metrics::Metrics;

/// Alerts waiting to be posted at most; past it the oldest is dropped (and counted): an
/// ongoing alert is re-sent anyway, and the newest says most.
pub const QUEUE_MAX: usize = 1000;
/// Alerts per request at most.
const BATCH_MAX: usize = 64;
/// Tries of one batch at most.
pub const ATTEMPTS: u32 = 4;

/// The time limits of the sender.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Connecting, and the whole request (connect, send, answer).
    pub connect: Duration,
    pub request: Duration,
    /// The pause before the second try (doubled before each next one).
    pub first_backoff: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            connect: Duration::from_secs(2),
            request: Duration::from_secs(5),
            first_backoff: Duration::from_millis(250),
        }
    }
}

/// The failure counter's sink label.
const SINK: &str = "alertmanager";

struct State {
    queue: VecDeque<Value>,
    /// Alerts of the batch being posted (taken off the queue, not delivered or given up yet).
    in_flight: usize,
    /// The session has finished and counted what was not delivered by then: the worker stops.
    abandoned: bool,
    /// No more alerts: post what is queued, then stop.
    closing: bool,
    /// Alerts given up on (refused, unreachable, dropped from a full queue).
    failed: u64,
    first_error: Option<String>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The sender of one Alertmanager.
pub struct Sender {
    endpoint: String,
    shared: Arc<Shared>,
    metrics: Option<Arc<Metrics>>,
}

impl Sender {
    /// Starts the thread that posts to `endpoint` (`http://HOST:PORT/.../api/v2/alerts`).
    pub fn start(
        endpoint: String,
        metrics: Option<Arc<Metrics>>,
        quiet: bool,
        timing: Timing,
    ) -> Sender {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                in_flight: 0,
                abandoned: false,
                closing: false,
                failed: 0,
                first_error: None,
            }),
            changed: Condvar::new(),
        });
        let worker = Worker {
            endpoint: endpoint.clone(),
            shared: shared.clone(),
            metrics: metrics.clone(),
            quiet,
            first_backoff: timing.first_backoff,
            agent: ureq::Agent::config_builder()
                .timeout_connect(Some(timing.connect))
                .timeout_global(Some(timing.request))
                .http_status_as_error(false)
                .user_agent(concat!("observer/", env!("CARGO_PKG_VERSION")))
                .build()
                .new_agent(),
        };
        let spawned = thread::Builder::new()
            .name("alertmanager".into())
            .spawn(move || worker.run());
        let sender = Sender {
            endpoint,
            shared,
            metrics,
        };
        if let Err(e) = spawned {
            // Without its thread nothing is ever delivered: everything queued counts as lost.
            sender.shared.lock().first_error = Some(format!("cannot start its thread: {e}"));
            sender.shared.lock().closing = true;
        }
        sender
    }

    /// Alerts waiting now.
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.shared.lock().queue.len()
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Queues alerts; never blocks on the network.
    pub fn push(&self, alerts: impl IntoIterator<Item = Value>) {
        let mut dropped = 0;
        {
            let mut st = self.shared.lock();
            for a in alerts {
                if st.queue.len() >= QUEUE_MAX {
                    st.queue.pop_front();
                    dropped += 1;
                }
                st.queue.push_back(a);
            }
            st.failed += dropped;
        }
        if dropped > 0 {
            if let Some(m) = &self.metrics {
                m.export_failures(SINK, dropped);
            }
        }
        self.shared.changed.notify_all();
    }

    /// Posts what is queued, waiting at most until `deadline`; returns the alerts not
    /// delivered over the whole run and the first reason, if any were lost.
    pub fn finish(&self, deadline: Instant) -> Option<(u64, String)> {
        let mut st = self.shared.lock();
        st.closing = true;
        self.shared.changed.notify_all();
        while !st.queue.is_empty() || st.in_flight > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        // What is still queued now will not be sent before observer exits.
        let unsent = (st.queue.len() + st.in_flight) as u64;
        st.queue.clear();
        st.abandoned = true;
        st.failed += unsent;
        if unsent > 0 {
            st.first_error
                .get_or_insert_with(|| "no answer before observer exited".to_string());
        }
        let lost = st.failed;
        let why = st.first_error.clone();
        drop(st);
        if unsent > 0 {
            if let Some(m) = &self.metrics {
                m.export_failures(SINK, unsent);
            }
        }
        why.filter(|_| lost > 0).map(|w| (lost, w))
    }
}

struct Worker {
    endpoint: String,
    shared: Arc<Shared>,
    metrics: Option<Arc<Metrics>>,
    quiet: bool,
    first_backoff: Duration,
    agent: ureq::Agent,
}

impl Worker {
    fn run(self) {
        loop {
            let batch: Vec<Value> = {
                let mut st = self.shared.lock();
                while st.queue.is_empty() && !st.closing {
                    st = self
                        .shared
                        .changed
                        .wait(st)
                        .unwrap_or_else(|e| e.into_inner());
                }
                if st.queue.is_empty() || st.abandoned {
                    return;
                }
                let n = st.queue.len().min(BATCH_MAX);
                st.in_flight = n;
                st.queue.drain(..n).collect()
            };
            let result = self.deliver(&batch);
            let mut st = self.shared.lock();
            st.in_flight = 0;
            if st.abandoned {
                // Already counted as not delivered by `finish`.
                return;
            }
            if let Err(why) = result {
                st.failed += batch.len() as u64;
                if st.first_error.is_none() && !self.quiet {
                    crate::say!(
                        "observer: alertmanager: cannot post alerts to {}: {why} (observing goes on; \
                         further failures counted in observer_export_failures_total)",
                        self.endpoint
                    );
                }
                st.first_error.get_or_insert(why);
                drop(st);
                if let Some(m) = &self.metrics {
                    m.export_failures(SINK, batch.len() as u64);
                }
            } else {
                drop(st);
            }
            self.shared.changed.notify_all();
        }
    }

    /// Posts one batch, retrying server errors and network failures; a client error (4xx:
    /// Alertmanager refused the alerts themselves) is not retried.
    fn deliver(&self, batch: &[Value]) -> Result<(), String> {
        let body = serde_json::to_vec(batch).map_err(|e| e.to_string())?;
        let mut pause = self.first_backoff;
        let mut attempt = 1;
        loop {
            let why = match self
                .agent
                .post(&self.endpoint)
                .content_type("application/json")
                .send(&body[..])
            {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    if (200..300).contains(&status) {
                        return Ok(());
                    }
                    let text = resp
                        .body_mut()
                        .with_config()
                        .limit(512)
                        .read_to_string()
                        .unwrap_or_default();
                    let why = format!("HTTP {status}: {}", text.trim());
                    let why = crate::util::stderr::escape(&why).into_owned();
                    if (400..500).contains(&status) {
                        return Err(why);
                    }
                    why
                }
                Err(e) => e.to_string(),
            };
            // At shutdown there is no time for backoff: the flush has its own deadline.
            if attempt >= ATTEMPTS || self.shared.lock().closing {
                return Err(why);
            }
            attempt += 1;
            thread::sleep(pause);
            pause *= 2;
        }
    }
}
