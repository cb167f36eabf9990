//! Alerts as Alertmanager's v2 API wants them (`POST /api/v2/alerts`, a JSON array of
//! "postable alerts": `labels`, `annotations`, `startsAt`, `endsAt`). Pure: no network.
//!
//! Alertmanager tells alerts apart by their label set alone (its fingerprint): two alerts with
//! the same labels are one alert, updated. So the labels name the process and, where one
//! process can have several at once, the episode (`tid` of a stalled thread, `goid` of a
//! goroutine, `lock` of a contended lock); everything that changes from one report to the next
//! (durations, stacks, the summary) is in the annotations.

use std::time::SystemTime;

use serde_json::{json, Map, Value};

use crate::output::alert::{format_time, Alert};
use crate::output::alert_text::one_line;

/// Longest label value kept (bytes); longer ones are cut at a character boundary and end in
/// `…`. Alertmanager accepts any UTF-8, but every label value is stored, grouped on and shown.
pub const MAX_LABEL_BYTES: usize = 128;
/// Longest annotation kept (bytes).
pub const MAX_ANNOTATION_BYTES: usize = 4096;
/// Frames shown per stack in the `stacks` annotation, and stacks shown at most.
const FRAMES_PER_STACK: usize = 12;
const MAX_STACKS: usize = 6;

/// `lock_hold` -> `ObserverLockHold`: one alert name per kind, for routing rules.
pub fn alertname(kind: &str) -> String {
    let mut name = String::from("Observer");
    for word in kind.split('_').filter(|w| !w.is_empty()) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            name.extend(first.to_uppercase());
            name.push_str(chars.as_str());
        }
    }
    name
}

/// A label value as Alertmanager gets it: control characters escaped like on stderr, at most
/// [`MAX_LABEL_BYTES`].
pub fn label_value(text: &str) -> String {
    cap(&crate::util::stderr::escape(text), MAX_LABEL_BYTES)
}

/// `text` cut to at most `max` bytes at a character boundary, `…` marking the cut.
fn cap(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The label that keeps apart the alerts of one kind that a process can have at the same time
/// (and the fields it comes from), or `None` where one per process and kind is right.
fn episode_label(kind: &str) -> Option<(&'static str, &'static str)> {
    match kind {
        "stall" | "stall_end" | "deadlock" | "thread_exit" | "idle_wait" => Some(("tid", "tid")),
        "goroutine_wait" | "goroutine_stall" | "go_panic" => Some(("goid", "goid")),
        // Holds of the same lock are one alert, updated; different locks are different alerts.
        "lock_hold" => Some(("lock", "uaddr")),
        "degraded" => Some(("reason", "reason")),
        // One leak per creation site.
        "goroutine_leak" => Some(("created_by", "created_by")),
        _ => None,
    }
}

/// A JSON value as label text: strings as they are, numbers as digits, the first element of an
/// array (a stack's innermost frame).
fn as_label_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(a) => a.first().and_then(as_label_text),
        _ => None,
    }
}

/// The label set of an alert (its identity in Alertmanager). `stall_end` gets the labels of
/// the stall it ends, so that posting it resolves that stall.
pub fn labels(alert: &Value, instance: &str) -> Map<String, Value> {
    let kind = alert
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let kind = if kind == "stall_end" { "stall" } else { kind };
    let mut labels = Map::new();
    let mut put = |name: &str, value: String| {
        labels.insert(name.to_string(), Value::String(label_value(&value)));
    };
    put("alertname", alertname(kind));
    put("kind", kind.to_string());
    put("instance", instance.to_string());
    let pid = alert.get("pid").and_then(Value::as_u64).unwrap_or(0);
    // pid 0: about observer itself (a degraded mode), not a process.
    if pid != 0 {
        put("pid", pid.to_string());
        for name in ["comm", "container_id", "pod_uid"] {
            if let Some(v) = alert.get(name).and_then(Value::as_str) {
                if !v.is_empty() {
                    put(name, v.to_string());
                }
            }
        }
    }
    if let Some((label, field)) = episode_label(kind) {
        if let Some(v) = alert.get(field).and_then(as_label_text) {
            put(label, v);
        }
    }
    labels
}

/// Annotations: `summary` (the one-line text of stderr), `description` (the scalar fields of
/// the alert, one `key: value` a line) and `stacks` (the top stacks, innermost frame first).
pub fn annotations(alert: &Alert, json: &Value) -> Map<String, Value> {
    let summary = one_line(alert);
    let summary = summary.strip_prefix("observer: ").unwrap_or(&summary);
    let mut out = Map::new();
    out.insert(
        "summary".into(),
        Value::String(cap(summary, MAX_ANNOTATION_BYTES)),
    );
    let description = describe(json);
    if !description.is_empty() {
        out.insert(
            "description".into(),
            Value::String(cap(&description, MAX_ANNOTATION_BYTES)),
        );
    }
    let stacks = stacks_text(json);
    if !stacks.is_empty() {
        out.insert(
            "stacks".into(),
            Value::String(cap(&stacks, MAX_ANNOTATION_BYTES)),
        );
    }
    out
}

/// The alert's own scalar fields (not the labels, not the stacks), e.g. `blocked_ns: 5200000000`.
fn describe(json: &Value) -> String {
    let Some(fields) = json.as_object() else {
        return String::new();
    };
    let mut text = String::new();
    for (key, v) in fields {
        let shown = match v {
            Value::String(s) => crate::util::stderr::escape(s).into_owned(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => continue,
        };
        if matches!(key.as_str(), "kind" | "pid" | "comm" | "time") {
            continue;
        }
        text.push_str(&format!("{key}: {}\n", cap(&shown, 256)));
    }
    text
}

/// The stacks of an alert, each under a heading: the alert's own `stack`, the other `*_stack`
/// fields, and those of deadlock members and grouped waiters.
fn stacks_text(json: &Value) -> String {
    let mut stacks: Vec<(String, &Vec<Value>)> = Vec::new();
    let Some(fields) = json.as_object() else {
        return String::new();
    };
    if let Some(Value::Array(members)) = fields.get("cycle") {
        for m in members {
            if let Some(Value::Array(s)) = m.get("stack") {
                let heading = format!(
                    "tid {} ({}) waits for lock {} held by tid {}",
                    m.get("tid").and_then(as_label_text).unwrap_or_default(),
                    m.get("comm").and_then(as_label_text).unwrap_or_default(),
                    m.get("uaddr").and_then(as_label_text).unwrap_or_default(),
                    m.get("owner_tid")
                        .and_then(as_label_text)
                        .unwrap_or_default(),
                );
                stacks.push((heading, s));
            }
        }
    } else if let Some(Value::Array(s)) = fields.get("stack") {
        stacks.push(("stack".to_string(), s));
    }
    for (key, v) in fields {
        if key != "stack" && (key.ends_with("_stack") || key == "created_by") {
            if let Value::Array(s) = v {
                stacks.push((key.clone(), s));
            }
        }
    }
    for list in ["waiter_stacks"] {
        if let Some(Value::Array(groups)) = fields.get(list) {
            for g in groups {
                if let Some(Value::Array(s)) = g.get("stack") {
                    let count = g.get("count").and_then(as_label_text).unwrap_or_default();
                    stacks.push((format!("{count} waiter(s)"), s));
                }
            }
        }
    }
    let mut text = String::new();
    for (heading, frames) in stacks
        .iter()
        .filter(|(_, f)| !f.is_empty())
        .take(MAX_STACKS)
    {
        text.push_str(&format!("{heading}:\n"));
        for f in frames.iter().take(FRAMES_PER_STACK) {
            let name = f.as_str().unwrap_or("?");
            text.push_str(&format!(
                "  {}\n",
                cap(&crate::util::stderr::escape(name), 256)
            ));
        }
        if frames.len() > FRAMES_PER_STACK {
            text.push_str(&format!(
                "  ... {} more frames\n",
                frames.len() - FRAMES_PER_STACK
            ));
        }
    }
    text
}

/// One postable alert: `labels`, `annotations`, `startsAt` (the alert's time), `endsAt`.
pub fn postable(
    labels: &Map<String, Value>,
    annotations: &Map<String, Value>,
    starts_at: &str,
    ends_at: SystemTime,
) -> Value {
    json!({
        "labels": labels,
        "annotations": annotations,
        "startsAt": starts_at,
        "endsAt": format_time(ends_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::alert::KINDS;

    #[test]
    fn every_kind_has_its_own_alertname() {
        let names: std::collections::HashSet<String> = KINDS.iter().map(|k| alertname(k)).collect();
        assert_eq!(names.len(), KINDS.len());
        for name in &names {
            assert!(name.starts_with("Observer"), "{name}");
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric()), "{name}");
            assert!(name.len() > "Observer".len(), "{name}");
        }
        assert_eq!(alertname("deadlock"), "ObserverDeadlock");
        assert_eq!(alertname("lock_hold"), "ObserverLockHold");
        assert_eq!(alertname("stall"), "ObserverStall");
        assert_eq!(alertname("thread_exit"), "ObserverThreadExit");
        assert_eq!(alertname("goroutine_stall"), "ObserverGoroutineStall");
        assert_eq!(alertname("go_panic"), "ObserverGoPanic");
    }

    #[test]
    fn label_values_are_escaped_and_bounded() {
        assert_eq!(label_value("bank"), "bank");
        assert_eq!(label_value("a\nb"), "a\\x0ab");
        let long = "é".repeat(200);
        let v = label_value(&long);
        assert!(v.len() <= MAX_LABEL_BYTES, "{}", v.len());
        assert!(v.ends_with('…'));
        assert_eq!(cap("abc", 3), "abc");
    }

    #[test]
    fn labels_carry_identity_and_episode() {
        let stall = json!({"kind": "stall", "pid": 42, "tid": 43, "comm": "bank",
            "container_id": "ab".repeat(32), "pod_uid": "1234-5678", "blocked_ns": 5});
        let l = labels(&stall, "host1");
        assert_eq!(l["alertname"], "ObserverStall");
        assert_eq!(l["kind"], "stall");
        assert_eq!(l["instance"], "host1");
        assert_eq!(l["pid"], "42");
        assert_eq!(l["tid"], "43");
        assert_eq!(l["comm"], "bank");
        assert_eq!(l["container_id"], "ab".repeat(32));
        assert_eq!(l["pod_uid"], "1234-5678");
        assert!(!l.contains_key("blocked_ns"));
        // Outside containers the identity labels are absent, not empty.
        let l = labels(
            &json!({"kind": "stall", "pid": 42, "tid": 44, "comm": "bank"}),
            "h",
        );
        assert!(!l.contains_key("container_id") && !l.contains_key("pod_uid"));
        // The end of a stall has the labels of that stall: posting it resolves it.
        let end = json!({"kind": "stall_end", "pid": 42, "tid": 43, "comm": "bank",
            "container_id": "ab".repeat(32), "pod_uid": "1234-5678"});
        assert_eq!(labels(&end, "host1"), labels(&stall, "host1"));
        // Two stalled threads of one process are two alerts.
        let other = json!({"kind": "stall", "pid": 42, "tid": 45, "comm": "bank"});
        assert_ne!(labels(&other, "h")["tid"], labels(&stall, "h")["tid"]);
        let hold = json!({"kind": "lock_hold", "pid": 1, "tid": 2, "comm": "x", "uaddr": "0x10"});
        assert_eq!(labels(&hold, "h")["lock"], "0x10");
        let leak = json!({"kind": "goroutine_leak", "pid": 1, "tid": 0, "comm": "x",
            "created_by": ["main.spawn (main.go:3)", "main.main"]});
        assert_eq!(labels(&leak, "h")["created_by"], "main.spawn (main.go:3)");
        let degraded = json!({"kind": "degraded", "pid": 0, "tid": 0, "comm": "",
            "reason": "ring_buffer_full"});
        let l = labels(&degraded, "h");
        assert!(!l.contains_key("pid"));
        assert_eq!(l["reason"], "ring_buffer_full");
    }

    #[test]
    fn stacks_and_description_are_bounded() {
        let frames: Vec<String> = (0..100).map(|i| format!("f{i}")).collect();
        let member = json!({"tid": 5, "comm": "t", "uaddr": "0x1", "owner_tid": 6,
            "stack": frames});
        let dl = json!({"kind": "deadlock", "pid": 1, "tid": 5, "comm": "x",
            "stack": ["ignored"], "cycle": vec![member; 50], "note": "y".repeat(10_000)});
        let text = stacks_text(&dl);
        assert!(text.starts_with("tid 5 (t) waits for lock 0x1 held by tid 6:\n  f0\n"));
        assert!(text.contains("... 88 more frames"));
        assert_eq!(text.matches("waits for lock").count(), MAX_STACKS);
        let d = describe(&dl);
        assert!(!d.contains("kind:") && d.contains("note: yyy"));
        assert!(d.len() < 400, "{}", d.len());
    }
}
