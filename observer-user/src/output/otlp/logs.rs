//! Alerts as OTLP log records: one `ResourceLogs` per process (resource attributes `host.name`,
//! `process.pid`, `process.executable.name`, and `container.id` / `k8s.pod.uid` when the alert
//! carries them), scope `observer`, severity by kind, body = the one-line text, attributes = the
//! alert's JSON fields flattened (`holder.tid`, `cycle.0.stack`), time = the alert's time.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, ArrayValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use serde_json::Value;

use super::{kv, resource, scope, str_value, ProcessIdentity, MAX_STRING};

/// At most this many attributes per record (the rest counted in `dropped_attributes_count`).
const MAX_ATTRIBUTES: usize = 128;
/// At most this many elements of one array (a stack's frames), the rest cut.
const MAX_ARRAY: usize = 64;

/// One alert, ready to encode: what the session knows when it raises it.
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// The alert as JSON (`serde_json::to_value(&alert)`).
    pub json: Value,
    /// Its one-line text (`alert_text::one_line`).
    pub text: String,
    /// Its time, nanoseconds since the Unix epoch.
    pub time_unix_nano: u64,
    /// The process's name (its main thread's comm), for `process.executable.name`.
    pub process: String,
}

/// The OTLP severity of an alert kind, as (SeverityNumber, SeverityText). README has the table.
pub fn severity(kind: &str) -> (i32, &'static str) {
    const INFO: (i32, &str) = (9, "INFO");
    const WARN: (i32, &str) = (13, "WARN");
    const ERROR: (i32, &str) = (17, "ERROR");
    const FATAL: (i32, &str) = (21, "FATAL");
    match kind {
        "go_panic" => FATAL,
        "deadlock" | "thread_exit" | "process_exit" => ERROR,
        "stall" | "goroutine_stall" | "lock_hold" | "goroutine_leak" | "degraded" => WARN,
        _ => INFO,
    }
}

/// The export request for `entries` (grouped by process, in the order first seen).
pub fn request(entries: &[LogEntry], host: &str) -> ExportLogsServiceRequest {
    let mut groups: BTreeMap<ProcessIdentity, Vec<LogRecord>> = BTreeMap::new();
    let mut order: Vec<ProcessIdentity> = Vec::new();
    for e in entries {
        let id = identity(e);
        if !groups.contains_key(&id) {
            order.push(id.clone());
        }
        groups.entry(id).or_default().push(record(e));
    }
    let resource_logs = order
        .into_iter()
        .map(|id| {
            let log_records = groups.remove(&id).unwrap_or_default();
            ResourceLogs {
                resource: Some(resource(host, &id)),
                scope_logs: vec![ScopeLogs {
                    scope: Some(scope()),
                    log_records,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }
        })
        .collect();
    ExportLogsServiceRequest { resource_logs }
}

fn identity(e: &LogEntry) -> ProcessIdentity {
    let text = |key: &str| e.json.get(key).and_then(Value::as_str).map(bounded);
    ProcessIdentity {
        pid: e.json.get("pid").and_then(Value::as_u64).unwrap_or(0) as u32,
        executable: bounded(&e.process),
        container_id: text("container_id"),
        pod_uid: text("pod_uid"),
    }
}

fn record(e: &LogEntry) -> LogRecord {
    let kind = e.json.get("kind").and_then(Value::as_str).unwrap_or("");
    let (severity_number, severity_text) = severity(kind);
    let mut attributes = Vec::new();
    let mut dropped = 0u32;
    flatten("", &e.json, &mut attributes, &mut dropped);
    LogRecord {
        time_unix_nano: e.time_unix_nano,
        observed_time_unix_nano: e.time_unix_nano,
        severity_number,
        severity_text: severity_text.to_string(),
        body: Some(str_value(&e.text)),
        attributes,
        dropped_attributes_count: dropped,
        event_name: format!("observer.{}", bounded(kind)),
        ..Default::default()
    }
}

/// Scalars become typed attributes; objects are flattened with dotted keys; arrays of scalars
/// (stacks) become array values; arrays of objects are flattened with their index.
fn flatten(prefix: &str, value: &Value, out: &mut Vec<KeyValue>, dropped: &mut u32) {
    let key = |k: &str| {
        if prefix.is_empty() {
            bounded(k)
        } else {
            bounded(&format!("{prefix}.{k}"))
        }
    };
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                flatten(&key(k), v, out, dropped);
            }
        }
        Value::Array(items) if items.iter().any(Value::is_object) => {
            for (i, v) in items.iter().enumerate().take(MAX_ARRAY) {
                flatten(&key(&i.to_string()), v, out, dropped);
            }
        }
        Value::Null => {}
        other => {
            if out.len() >= MAX_ATTRIBUTES {
                *dropped = dropped.saturating_add(1);
                return;
            }
            if let Some(v) = scalar_or_array(other) {
                out.push(kv(prefix, v));
            }
        }
    }
}

fn scalar_or_array(value: &Value) -> Option<AnyValue> {
    let v = match value {
        Value::Bool(b) => any_value::Value::BoolValue(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => any_value::Value::IntValue(i),
            None => any_value::Value::DoubleValue(n.as_f64()?),
        },
        Value::String(s) => return Some(str_value(s)),
        Value::Array(items) => any_value::Value::ArrayValue(ArrayValue {
            values: items
                .iter()
                .take(MAX_ARRAY)
                .filter_map(scalar_or_array)
                .collect(),
        }),
        Value::Null | Value::Object(_) => return None,
    };
    Some(AnyValue { value: Some(v) })
}

/// `s` cut to [`MAX_STRING`] bytes on a character boundary.
pub(super) fn bounded(s: &str) -> String {
    if s.len() <= MAX_STRING {
        return s.to_string();
    }
    let mut end = MAX_STRING;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attr<'a>(r: &'a LogRecord, key: &str) -> Option<&'a any_value::Value> {
        r.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    fn res_attr(r: &ResourceLogs, key: &str) -> Option<any_value::Value> {
        r.resource
            .as_ref()?
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone()?.value)
    }

    fn deadlock(pid: u32, container: bool) -> LogEntry {
        let mut json = json!({
            "kind": "deadlock", "time": "2026-12-05T14:00:00.123Z", "pid": pid, "tid": pid + 1,
            "comm": "bank", "stack": ["__lll_lock_wait", "transfer (bank.c:14)", "main"],
            "cycle": [{"tid": 11, "stack": ["a"]}, {"tid": 12, "stack": ["b"]}],
            "ratio": 0.5, "held": true, "nothing": null
        });
        if container {
            json["container_id"] = json!("ab".repeat(32));
            json["pod_uid"] = json!("0f1e2d3c-aaaa-bbbb-cccc-0123456789ab");
        }
        LogEntry {
            json,
            text: "deadlock in bank".into(),
            time_unix_nano: 1_765_000_000_123_000_000,
            process: "bank".into(),
        }
    }

    #[test]
    fn alert_becomes_a_typed_record_under_its_process() {
        let req = request(
            &[deadlock(42, true), deadlock(7, false), deadlock(42, true)],
            "h1",
        );
        assert_eq!(req.resource_logs.len(), 2);
        let first = &req.resource_logs[0];
        assert_eq!(
            res_attr(first, "process.pid"),
            Some(any_value::Value::IntValue(42))
        );
        assert_eq!(
            res_attr(first, "host.name"),
            Some(any_value::Value::StringValue("h1".into()))
        );
        assert_eq!(
            res_attr(first, "container.id"),
            Some(any_value::Value::StringValue("ab".repeat(32)))
        );
        assert!(res_attr(first, "k8s.pod.uid").is_some());
        assert_eq!(
            res_attr(first, "process.executable.name"),
            Some(any_value::Value::StringValue("bank".into()))
        );
        // Outside containers the keys are absent, never empty.
        assert!(res_attr(&req.resource_logs[1], "container.id").is_none());
        assert!(res_attr(&req.resource_logs[1], "k8s.pod.uid").is_none());

        let scope = &first.scope_logs[0];
        assert_eq!(scope.scope.as_ref().unwrap().name, "observer");
        assert_eq!(scope.log_records.len(), 2);
        let r = &scope.log_records[0];
        assert_eq!((r.severity_number, r.severity_text.as_str()), (17, "ERROR"));
        assert_eq!(r.time_unix_nano, 1_765_000_000_123_000_000);
        assert_eq!(
            r.body.as_ref().unwrap().value,
            Some(any_value::Value::StringValue("deadlock in bank".into()))
        );
        assert_eq!(attr(r, "pid"), Some(&any_value::Value::IntValue(42)));
        assert_eq!(attr(r, "ratio"), Some(&any_value::Value::DoubleValue(0.5)));
        assert_eq!(attr(r, "held"), Some(&any_value::Value::BoolValue(true)));
        assert_eq!(
            attr(r, "cycle.1.tid"),
            Some(&any_value::Value::IntValue(12))
        );
        assert!(attr(r, "nothing").is_none());
        let Some(any_value::Value::ArrayValue(stack)) = attr(r, "stack") else {
            panic!("stack is an array: {:?}", attr(r, "stack"));
        };
        assert_eq!(stack.values.len(), 3);
        assert_eq!(
            stack.values[1].value,
            Some(any_value::Value::StringValue("transfer (bank.c:14)".into()))
        );
    }

    #[test]
    fn severities_by_kind() {
        assert_eq!(severity("go_panic").0, 21);
        assert_eq!(severity("deadlock").0, 17);
        assert_eq!(severity("thread_exit").0, 17);
        assert_eq!(severity("stall").0, 13);
        assert_eq!(severity("lock_hold").0, 13);
        assert_eq!(severity("idle_wait").0, 9);
        assert_eq!(severity("something new").0, 9);
    }

    #[test]
    fn attributes_and_strings_are_bounded() {
        let mut e = deadlock(1, false);
        let long: Vec<String> = (0..500).map(|i| format!("f{i}")).collect();
        e.json["stack"] = json!(long);
        e.json["big"] = json!("é".repeat(MAX_STRING));
        for i in 0..300 {
            e.json[format!("k{i}")] = json!(i);
        }
        let req = request(&[e], "h");
        let r = &req.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(r.attributes.len(), MAX_ATTRIBUTES);
        assert!(r.dropped_attributes_count > 0);
        if let Some(any_value::Value::ArrayValue(a)) = attr(r, "stack") {
            assert_eq!(a.values.len(), MAX_ARRAY);
        }
        if let Some(any_value::Value::StringValue(s)) = attr(r, "big") {
            assert!(s.len() <= MAX_STRING);
        }
    }
}
