//! Prometheus metrics of the sidecar: a bounded registry (`registry.rs`), the text exposition
//! format 0.0.4 (`exposition.rs`), and a minimal HTTP endpoint (`GET /metrics`) on tokio
//! (`server.rs`).
//!
//! Per-process series carry `pid` and `comm` labels, where `comm` is the process's name (its main
//! thread's comm), never a thread name: thread names would multiply the series; a process in a
//! container also carries `container_id` (one label on its one entry: no more series). Cardinality stays
//! bounded three ways: a process gets series only once something non-zero is reported for it; at
//! most `max_processes` processes are kept (further ones are refused and counted in
//! `observer_metrics_series_dropped_total`); and a process reported gone keeps its series for
//! [`GONE_GRACE`] (so that the last values are scraped) and then loses them.
//!
//! `observer_alerts_by_kind_total{kind}` exists next to the per-process `observer_alerts_total`
//! because a counter series that first appears with value 1 is invisible to `increase()`: the
//! host-wide one starts at 0 for every kind, so an alert rule on it fires on the first deadlock.

mod exposition;
mod histogram;
mod registry;
mod server;

pub use exposition::escape_label;
pub use registry::{Metrics, WaitKind, DEFAULT_MAX_PROCESSES, EXPORT_SINKS, GONE_GRACE};
pub use server::{bind, serve, MetricsError};

/// Where `--metrics-addr` listens by default: loopback only, so nothing leaves the host unless the
/// operator asks for it.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9464";
