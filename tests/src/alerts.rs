//! Reading the alerts observer writes (JSON lines) and the fields tests check.

use std::path::Path;

use serde_json::Value;

use crate::process::read_lossy;

/// Parses a JSON-lines alerts file; a line that is not a JSON object fails the test.
pub fn read_alerts(path: &Path) -> Vec<Value> {
    parse_alerts(&read_lossy(path), &path.display().to_string())
}

/// Parses JSON lines from text (for `--alerts -`); blank lines are ignored.
pub fn parse_alerts(text: &str, origin: &str) -> Vec<Value> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| match serde_json::from_str::<Value>(line) {
            Ok(v) if v.is_object() => v,
            Ok(_) => panic!("{origin}: alert line is not a JSON object: {line}"),
            Err(e) => panic!("{origin}: alert line is not JSON ({e}): {line}"),
        })
        .collect()
}

pub fn str_field<'a>(alert: &'a Value, field: &str) -> Option<&'a str> {
    alert.get(field).and_then(Value::as_str)
}

/// An unsigned integer field; also accepts a numeric string, as some JSON writers quote u64s.
pub fn u64_field(alert: &Value, field: &str) -> Option<u64> {
    match alert.get(field)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

pub fn i64_field(alert: &Value, field: &str) -> Option<i64> {
    match alert.get(field)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The frames of a stack field (an array of strings), innermost first.
pub fn frames<'a>(alert: &'a Value, field: &str) -> Vec<&'a str> {
    alert
        .get(field)
        .and_then(Value::as_array)
        .map(|frames| frames.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Index of the first frame naming `function` (as a whole symbol, not as part of a longer one).
pub fn frame_index(alert: &Value, field: &str, function: &str) -> Option<usize> {
    frames(alert, field)
        .iter()
        .position(|frame| names_function(frame, function))
}

pub fn stack_mentions(alert: &Value, field: &str, function: &str) -> bool {
    frame_index(alert, field, function).is_some()
}

/// Whether a frame like "worker_update (lock_hold.c:42)" or "0x1234 worker_update+0x10" names
/// `function`: the name must not be part of a longer identifier ("main" is not "worker_main").
fn names_function(frame: &str, function: &str) -> bool {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    frame.match_indices(function).any(|(at, _)| {
        let before = frame[..at].chars().next_back();
        let after = frame[at + function.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

/// Whether a `signal` field means `number` (also accepted as "SIGSEGV" or "SEGV").
pub fn signal_is(alert: &Value, number: i64, name: &str) -> bool {
    match alert.get("signal") {
        Some(Value::Number(n)) => n.as_i64() == Some(number),
        Some(Value::String(s)) => {
            s.eq_ignore_ascii_case(name)
                || s.eq_ignore_ascii_case(name.trim_start_matches("SIG"))
                || s.parse::<i64>().ok() == Some(number)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names_match_whole_identifiers() {
        assert!(names_function(
            "worker_update (lock_hold.c:42)",
            "worker_update"
        ));
        assert!(names_function("main", "main"));
        assert!(names_function("0x401136 main+0x16", "main"));
        assert!(!names_function("worker_main (lock_hold.c:60)", "main"));
        assert!(!names_function("mainly", "main"));
        assert!(!names_function("", "main"));
    }

    #[test]
    fn go_closures_name_their_function() {
        // Go names a closure after its function plus a suffix that differs between versions.
        assert!(names_function(
            "main.refreshCache.func1 (mutex_slow_io.go:27)",
            "main.refreshCache"
        ));
        assert!(names_function(
            "main.refreshCache.deferwrap1 (mutex_slow_io.go:27)",
            "main.refreshCache"
        ));
        assert!(!names_function(
            "main.refreshCacheAll (x.go:1)",
            "main.refreshCache"
        ));
    }

    #[test]
    fn stack_fields() {
        let alert: Value = serde_json::json!({
            "kind": "lock_hold",
            "duration_ns": 300000000u64,
            "owner_tid": "42",
            "stack": ["__lll_lock_wait", "worker_update (lock_hold.c:42)", "worker_main"],
        });
        assert_eq!(frame_index(&alert, "stack", "worker_update"), Some(1));
        assert!(stack_mentions(&alert, "stack", "worker_main"));
        assert!(!stack_mentions(&alert, "waker_stack", "worker_main"));
        assert_eq!(u64_field(&alert, "duration_ns"), Some(300_000_000));
        assert_eq!(u64_field(&alert, "owner_tid"), Some(42));
        assert_eq!(u64_field(&alert, "missing"), None);
    }

    #[test]
    fn signals() {
        let num = serde_json::json!({ "signal": 11 });
        let name = serde_json::json!({ "signal": "SIGSEGV" });
        let short = serde_json::json!({ "signal": "segv" });
        let none = serde_json::json!({ "signal": null });
        assert!(signal_is(&num, 11, "SIGSEGV"));
        assert!(signal_is(&name, 11, "SIGSEGV"));
        assert!(signal_is(&short, 11, "SIGSEGV"));
        assert!(!signal_is(&none, 11, "SIGSEGV"));
        assert!(!signal_is(&num, 6, "SIGABRT"));
    }

    #[test]
    fn alert_lines() {
        let alerts = parse_alerts("{\"kind\":\"stall\"}\n\n{\"kind\":\"deadlock\"}\n", "test");
        assert_eq!(alerts.len(), 2);
        assert_eq!(str_field(&alerts[1], "kind"), Some("deadlock"));
    }

    #[test]
    #[should_panic(expected = "not JSON")]
    fn broken_alert_line_fails() {
        parse_alerts("{\"kind\":\"stall\"}\n{oops\n", "test");
    }
}
