//! OTLP export (`--otlp-endpoint`): alerts as log records to `BASE/v1/logs` within about a second
//! of being raised, and the blocked time gathered since the last export as profiles to
//! `BASE/v1development/profiles` every `--export-interval` and once more at the end. OTLP/HTTP
//! with protobuf bodies, gzipped. Messages are the official protos (crate `opentelemetry-proto`).
//!
//! The session only hands items to a bounded queue; a thread of its own encodes and posts them
//! ([`sender`]), so an unreachable, slow or failing collector never holds observation up.

pub mod logs;
pub mod profiles;
mod sender;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::output::alert::Alert;
use crate::output::metrics::Metrics;
use crate::output::profile::{Category, PidDeltas};
use crate::proc::container::ContainerIdentity;
use crate::stacks::frame::Frame;

pub use logs::LogEntry;

/// The longest string attribute sent (longer ones are cut).
pub const MAX_STRING: usize = 4096;
/// At most this many distinct stacks gathered per interval (further ones dropped, counted).
const MAX_DELTA_STACKS: usize = 20_000;
/// The label of this sink in `observer_export_failures_total`.
pub const SINK: &str = "otlp";

#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error(
        "--otlp-endpoint {0:?}: https is not supported yet: use a local collector/proxy over http"
    )]
    Https(String),
    #[error("--otlp-endpoint {0:?}: expected http://HOST:PORT (e.g. http://127.0.0.1:4318)")]
    BadUrl(String),
    #[error("--export-interval must be at least 1s")]
    Interval,
    #[error("cannot start the OTLP export thread: {0}")]
    Thread(std::io::Error),
}

/// What `--otlp-endpoint` and `--export-interval` ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpConfig {
    /// `http://host:port` plus an optional path prefix, without a trailing `/`.
    pub base: String,
    pub interval: Duration,
}

impl OtlpConfig {
    /// Checks the URL: plain http with a host, no query or fragment, printable ASCII only.
    pub fn new(endpoint: &str, interval: Duration) -> Result<Self, OtlpError> {
        let bad = || OtlpError::BadUrl(endpoint.chars().take(200).collect());
        if interval < Duration::from_secs(1) {
            return Err(OtlpError::Interval);
        }
        let lower = endpoint.to_ascii_lowercase();
        if lower.starts_with("https://") {
            return Err(OtlpError::Https(endpoint.chars().take(200).collect()));
        }
        let rest = lower.strip_prefix("http://").ok_or_else(bad)?;
        let host = rest.split('/').next().unwrap_or("");
        let clean = endpoint.len() <= 1024
            && endpoint.bytes().all(|b| b.is_ascii_graphic())
            && !endpoint.contains(['?', '#', '@']);
        if host.is_empty() || host.starts_with(':') || !clean {
            return Err(bad());
        }
        Ok(Self {
            base: endpoint.trim_end_matches('/').to_string(),
            interval,
        })
    }

    pub fn logs_url(&self) -> String {
        format!("{}/v1/logs", self.base)
    }

    pub fn profiles_url(&self) -> String {
        format!("{}/v1development/profiles", self.base)
    }
}

/// The session's handle on the export: cheap calls that never block.
pub struct OtlpExporter {
    config: OtlpConfig,
    deltas: PidDeltas,
    /// Container identity of the processes with blocked time in the current interval.
    identities: std::collections::HashMap<u32, ContainerIdentity>,
    window_start: SystemTime,
    sender: sender::Sender,
}

impl OtlpExporter {
    pub fn start(config: OtlpConfig, metrics: Option<Arc<Metrics>>) -> Result<Self, OtlpError> {
        let sender = sender::Sender::start(&config, hostname(), metrics)?;
        Ok(Self {
            config,
            deltas: PidDeltas::new(MAX_DELTA_STACKS),
            identities: std::collections::HashMap::new(),
            window_start: SystemTime::now(),
            sender,
        })
    }

    pub fn interval(&self) -> Duration {
        self.config.interval
    }

    /// Queues `alert` (of process `process`) for the next logs request (within about a second).
    pub fn alert(&mut self, alert: &Alert, process: &str) {
        let time_unix_nano = humantime::parse_rfc3339(&alert.time)
            .unwrap_or_else(|_| SystemTime::now())
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let entry = LogEntry {
            json: serde_json::to_value(alert).unwrap_or_default(),
            text: crate::output::alert_text::one_line(alert),
            time_unix_nano,
            process: process.to_string(),
        };
        self.sender.send(sender::Item::Log(Box::new(entry)));
    }

    /// Adds blocked time of process `pid` to the current interval (the session's profile gets
    /// the same sample).
    #[allow(clippy::too_many_arguments)]
    pub fn profile_sample(
        &mut self,
        pid: u32,
        container: &ContainerIdentity,
        category: Category,
        process: &str,
        thread: &str,
        frames: &[Frame],
        ns: u64,
        count: u64,
    ) {
        if !self.identities.contains_key(&pid) && container.container_id.is_some() {
            self.identities.insert(pid, container.clone());
        }
        self.deltas
            .add_many_frames(pid, category, process, thread, frames, ns, count);
    }

    /// Ends the current interval: its profiles go to the queue.
    pub fn export_profiles(&mut self) {
        let now = SystemTime::now();
        let (deltas, dropped) = self.deltas.take();
        if dropped > 0 {
            self.sender
                .failed_items(dropped, "profile stacks over the per-interval bound");
        }
        let window = profiles::Window {
            start_unix_nano: unix_nanos(self.window_start),
            duration_nano: now
                .duration_since(self.window_start)
                .map_or(0, |d| d.as_nanos() as u64),
        };
        self.window_start = now;
        let mut identities = std::mem::take(&mut self.identities);
        if deltas.is_empty() {
            return;
        }
        let processes = deltas
            .into_iter()
            .map(|delta| {
                let ContainerIdentity {
                    container_id,
                    pod_uid,
                } = identities.remove(&delta.pid).unwrap_or_default();
                profiles::ProcessProfile {
                    delta,
                    container_id,
                    pod_uid,
                }
            })
            .collect();
        self.sender.send(sender::Item::Profiles(processes, window));
    }

    /// The last profiles, then what is queued is sent for at most [`sender::FLUSH_LIMIT`].
    pub fn finish(mut self) {
        self.export_profiles();
        self.sender.close();
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| logs::bounded(s.trim()))
        .unwrap_or_default()
}

/// The process a resource describes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ProcessIdentity {
    pub pid: u32,
    pub executable: String,
    pub container_id: Option<String>,
    pub pod_uid: Option<String>,
}

pub(crate) fn str_value(s: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(logs::bounded(s))),
    }
}

pub(crate) fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(value),
        ..Default::default()
    }
}

pub(crate) fn resource(host: &str, id: &ProcessIdentity) -> Resource {
    let mut attributes = vec![
        kv("host.name", str_value(host)),
        kv(
            "process.pid",
            AnyValue {
                value: Some(any_value::Value::IntValue(i64::from(id.pid))),
            },
        ),
        kv("process.executable.name", str_value(&id.executable)),
    ];
    if let Some(c) = &id.container_id {
        attributes.push(kv("container.id", str_value(c)));
    }
    if let Some(p) = &id.pod_uid {
        attributes.push(kv("k8s.pod.uid", str_value(p)));
    }
    Resource {
        attributes,
        ..Default::default()
    }
}

pub(crate) fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "observer".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_checked() {
        let s = Duration::from_secs(60);
        let c = OtlpConfig::new("http://127.0.0.1:4318/", s).unwrap();
        assert_eq!(c.logs_url(), "http://127.0.0.1:4318/v1/logs");
        assert_eq!(
            c.profiles_url(),
            "http://127.0.0.1:4318/v1development/profiles"
        );
        let c = OtlpConfig::new("http://collector/otlp", s).unwrap();
        assert_eq!(c.logs_url(), "http://collector/otlp/v1/logs");
        let https = OtlpConfig::new("https://collector:4318", s).unwrap_err();
        assert!(https.to_string().contains("https is not supported yet"));
        for bad in [
            "ftp://x",
            "collector:4318",
            "http://",
            "http:///v1",
            "http://:4318",
            "http://a b",
            "http://x/?q=1",
            "http://user@x",
        ] {
            assert!(
                matches!(OtlpConfig::new(bad, s), Err(OtlpError::BadUrl(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            OtlpConfig::new("http://x", Duration::from_millis(10)),
            Err(OtlpError::Interval)
        ));
    }
}
