//! The one-line human text of an alert, as stderr and the live view show it.

use crate::output::alert::{Alert, AlertDetail};
use crate::stacks::own_code::own_frames;
use crate::util::duration::human;

/// "likely held by goroutine N in F (why)", when a likely holder was named.
fn likely_held(h: &crate::output::alert::LikelyHolder) -> Option<String> {
    h.likely_holder_goid.map(|goid| {
        format!(
            "likely held by goroutine {goid} in {} ({})",
            top(&h.likely_holder_stack),
            h.likely_holder_why.as_deref().unwrap_or("")
        )
    })
}

fn top(stack: &[String]) -> String {
    own_frames(stack)
        .first()
        .cloned()
        .unwrap_or_else(|| "?".to_string())
}

/// What a stall's lock holder did meanwhile, e.g. " (blocked in read in refresh_from_disk)".
fn holder_doing(s: &crate::output::alert::Stall) -> String {
    match s.holder_state.as_deref() {
        Some("blocked") => format!(
            " (blocked in {} in {})",
            s.holder_syscall.as_deref().unwrap_or("?"),
            top(&s.holder_stack)
        ),
        Some("running") => format!(
            " (running in {}, {} samples)",
            top(&s.holder_stack),
            s.holder_samples
        ),
        Some("exited") => " (exited)".to_string(),
        _ => String::new(),
    }
}

/// A human summary of one alert for the terminal.
pub fn one_line(a: &Alert) -> String {
    // Names, frames and messages come from the target: one escaped line (see crate::util::stderr).
    crate::util::stderr::escape(&(one_line_raw(a) + &container_suffix(a))).into_owned()
}

/// ` [container 3b1f6d0c2a7e]`, ` [pod <uid>, container 3b1f6d0c2a7e]`: where the process runs,
/// with the short id `docker ps` and `crictl ps` show; nothing outside containers.
fn container_suffix(a: &Alert) -> String {
    let short = a
        .container_id
        .as_deref()
        .map(|id| format!("container {}", id.get(..12).unwrap_or(id)));
    match (a.pod_uid.as_deref(), short) {
        (Some(pod), Some(c)) => format!(" [pod {pod}, {c}]"),
        (Some(pod), None) => format!(" [pod {pod}]"),
        (None, Some(c)) => format!(" [{c}]"),
        (None, None) => String::new(),
    }
}

fn one_line_raw(a: &Alert) -> String {
    let who = format!("tid {} ({})", a.tid, a.comm);
    match &a.detail {
        AlertDetail::LockHold(h) => {
            let holder = h
                .holder_tid
                .map(|t| format!("tid {t} ({})", h.holder_comm.clone().unwrap_or_default()))
                .unwrap_or_else(|| "an unknown thread".into());
            let doing = match (h.holder_state.as_str(), h.holder_syscall.as_deref()) {
                ("blocked", Some(sys)) if !h.holder_stack.is_empty() => {
                    format!(", blocked in {sys}() in {}", top(&h.holder_stack))
                }
                ("running", _) if !h.holder_stack.is_empty() => {
                    format!(", running in {}", top(&h.holder_stack))
                }
                ("exited", _) => ", and exited".to_string(),
                _ => String::new(),
            };
            let released = if h.release_stack.is_empty() {
                String::new()
            } else {
                format!(", released in {}", top(&h.release_stack))
            };
            format!(
                "observer: lock_hold  {holder} held {} {:#x} {}{doing}{released}; {} waiter{}, longest {who} waited {} in {}",
                h.lock_kind,
                h.uaddr,
                human(std::time::Duration::from_nanos(h.hold_ns)),
                h.waiters,
                if h.waiters == 1 { "" } else { "s" },
                human(std::time::Duration::from_nanos(h.longest_wait_ns)),
                top(&a.stack)
            )
        }
        AlertDetail::Stall(s) if s.stall_on == "away_from_home" => format!(
            "observer: stall      {who} waited {} away from home in {} ({}){}",
            human(std::time::Duration::from_nanos(s.blocked_ns)),
            top(&a.stack),
            s.syscall,
            if s.home_stack.is_empty() {
                String::new()
            } else {
                format!("; home: {}", top(&s.home_stack))
            }
        ),
        AlertDetail::StallEnd(e) => format!(
            "observer: stall_end  {who} in {} waited {} in all; woken by {}",
            top(&a.stack),
            human(std::time::Duration::from_nanos(e.blocked_ns)),
            match e.waker_tid {
                Some(t) => format!(
                    "tid {t} ({}) in {}",
                    e.waker_comm.as_deref().unwrap_or("?"),
                    top(&e.waker_stack)
                ),
                None => e.woken_by.replace('_', " "),
            }
        ),
        AlertDetail::Stall(s) if s.owner_tid.is_none() && !s.kernel_stack.is_empty() => format!(
            "observer: stall      {who} blocked {} in {} in the kernel ({}: uninterruptible sleep in {})",
            human(std::time::Duration::from_nanos(s.blocked_ns)),
            top(&a.stack),
            s.syscall,
            s.kernel_stack[..s.kernel_stack.len().min(2)].join(" <- ")
        ),
        AlertDetail::Stall(s) if s.owner_recorded == Some(false) => format!(
            "observer: stall      {who} blocked {} in {} on a {} (owner not recorded by this lock type)",
            human(std::time::Duration::from_nanos(s.blocked_ns)),
            top(&a.stack),
            s.lock_kind.as_deref().unwrap_or("lock"),
        ),
        AlertDetail::Stall(s) => format!(
            "observer: stall      {who} blocked {} in {} on a {} held by tid {}{}",
            human(std::time::Duration::from_nanos(s.blocked_ns)),
            top(&a.stack),
            s.lock_kind.as_deref().unwrap_or("lock"),
            s.owner_tid
                .map(|t| t.to_string())
                .unwrap_or_else(|| "?".into()),
            holder_doing(s)
        ),
        AlertDetail::Deadlock(d) => format!(
            "observer: deadlock   {}",
            d.cycle
                .iter()
                .map(|m| format!(
                    "tid {} ({}) in {} waits for tid {}",
                    m.tid,
                    m.comm,
                    top(&m.stack),
                    m.owner_tid
                ))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        AlertDetail::ThreadExit(t) => format!(
            "observer: thread_exit {who} ended ({}) while its process lives on; created by {}{}",
            t.signal
                .clone()
                .unwrap_or_else(|| format!("exit code {}", t.exit_code)),
            top(&t.created_by),
            if t.count > 1 {
                format!(" ({} so far from this site)", t.count)
            } else {
                String::new()
            }
        ),
        AlertDetail::ProcessExit(p) => format!(
            "observer: process_exit pid {} ended: {} by {who}{}",
            a.pid,
            p.signal
                .clone()
                .or(p.exit_code.map(|c| format!("exit code {c}")))
                .unwrap_or_default(),
            p.message.as_ref().map(|m| format!(": {m}")).unwrap_or_default()
        ),
        AlertDetail::GoroutineWait(g) => format!(
            "observer: goroutine_wait goroutine {}{} waited {} on {} in {}{}; {}",
            g.goid,
            labels_text(&g.labels),
            human(std::time::Duration::from_nanos(g.duration_ns)),
            g.wait_reason,
            top(&a.stack),
            if g.waiters > 1 {
                format!(" ({} goroutines waited behind this hold)", g.waiters)
            } else {
                String::new()
            },
            match (g.waker_goid, likely_held(&g.likely_holder)) {
                (None, Some(h)) => h,
                (w, _) => format!(
                    "released by goroutine {} in {}",
                    w.map(|w| w.to_string()).unwrap_or_else(|| "?".into()),
                    top(&g.waker_stack)
                ),
            }
        ),
        AlertDetail::GoroutineStall(g) => format!(
            "observer: goroutine_stall goroutine {}{} blocked {} on {} in {}{}",
            g.goid,
            labels_text(&g.labels),
            human(std::time::Duration::from_nanos(g.blocked_ns)),
            g.wait_reason,
            top(&a.stack),
            likely_held(&g.likely_holder)
                .map(|h| format!("; {h}"))
                .unwrap_or_default()
        ),
        AlertDetail::GoroutineLeak(g) => format!(
            "observer: goroutine_leak {} goroutines (+{} in {}) parked on {} created by {}{}",
            g.count,
            g.growth,
            human(std::time::Duration::from_nanos(g.window_ns)),
            g.wait_reason,
            top(&g.created_by),
            labels_text(&g.labels)
        ),
        AlertDetail::GoPanic(g) => format!(
            "observer: go_panic   goroutine {}{} panicked{} in {}{}",
            g.goid,
            labels_text(&g.labels),
            g.message.as_ref().map(|m| format!(" ({m:?})")).unwrap_or_default(),
            top(&a.stack),
            if g.recovered { "; recovered and swallowed" } else { "" }
        ),
        AlertDetail::IdleWait(i) => format!(
            "observer: idle_wait  {who} waited {} in {} ({})",
            human(std::time::Duration::from_nanos(i.duration_ns)),
            top(&a.stack),
            i.syscall
        ),
        // Timestamped: a degraded period is read later against what happened meanwhile.
        AlertDetail::Degraded(d) => format!("{} observer: degraded: {}", a.time, d.detail),
    }
}

/// A goroutine's pprof labels in a text line: ` {"key":"value"}` (JSON-quoted: the values
/// are the target's), nothing when it has none.
fn labels_text(labels: &std::collections::BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return String::new();
    }
    format!(" {}", serde_json::to_string(labels).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_lines_escape_what_the_target_named() {
        let json = r#"{"kind":"process_exit","time":"2026-11-26T20:07:45.072Z","pid":1,"tid":1,"comm":"x\u001b]0;owned\u0007\nfake","stack":[],"exit_code":0,"signal":null,"by_tid":1,"message":"m\r"}"#;
        let line = one_line(&Alert::from_json_line(json).unwrap());
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(line.contains("(x\\x1b]0;owned\\x07\\x0afake)"), "{line}");
    }

    #[test]
    fn container_and_pod_end_the_line() {
        let id = "3b1f6d0c2a7e4f5b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b";
        let uid = "8f9b2c4e-1d3a-4b5c-9e7f-0a1b2c3d4e5f";
        let json = format!(
            r#"{{"kind":"process_exit","time":"2026-11-26T20:07:45.072Z","pid":1,"tid":1,"comm":"x","container_id":"{id}","pod_uid":"{uid}","stack":[],"exit_code":3,"signal":null,"by_tid":1,"message":null}}"#
        );
        let mut a = Alert::from_json_line(&json).unwrap();
        assert!(
            one_line(&a).ends_with(&format!(" [pod {uid}, container 3b1f6d0c2a7e]")),
            "{}",
            one_line(&a)
        );
        a.pod_uid = None;
        assert!(one_line(&a).ends_with(" [container 3b1f6d0c2a7e]"));
        a.container_id = None;
        assert!(!one_line(&a).contains('['), "{}", one_line(&a));
    }

    #[test]
    fn a_likely_holder_ends_the_goroutine_lines() {
        let json = r#"{"kind":"goroutine_stall","time":"2026-11-26T20:07:45.072Z","pid":1,"tid":0,"comm":"svc","stack":["main.lookup (m.go:3)"],"goid":7,"wait_reason":"sync.Mutex.Lock","blocked_ns":1200000000,"created_by":[],"likely_holder_goid":25,"likely_holder_stack":["main.rebuild (m.go:44)"],"likely_holder_why":"inside main.rebuild, which locks the same mutex (main.indexLock)"}"#;
        let line = one_line(&Alert::from_json_line(json).unwrap());
        assert!(
            line.ends_with("; likely held by goroutine 25 in main.rebuild (m.go:44) (inside main.rebuild, which locks the same mutex (main.indexLock))"),
            "{line}"
        );
    }

    /// Goroutine labels are the target's text: JSON-quoted, and the line stays one line.
    #[test]
    fn goroutine_labels_are_quoted_and_escaped() {
        let json = r#"{"kind":"goroutine_stall","time":"2026-11-26T20:07:45.072Z","pid":1,"tid":0,"comm":"svc","stack":["main.lookup (m.go:3)"],"goid":7,"wait_reason":"sync.Mutex.Lock","blocked_ns":1200000000,"created_by":[],"labels":{"request_id":"r-42\n\u001b[2J","route":"/a\"b"}}"#;
        let line = one_line(&Alert::from_json_line(json).unwrap());
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert_eq!(
            line,
            r#"observer: goroutine_stall goroutine 7 {"request_id":"r-42\n\u001b[2J","route":"/a\"b"} blocked 1.2s on sync.Mutex.Lock in main.lookup (m.go:3)"#
        );
        let unlabeled = json.replace(
            r#","labels":{"request_id":"r-42\n\u001b[2J","route":"/a\"b"}"#,
            "",
        );
        let line = one_line(&Alert::from_json_line(&unlabeled).unwrap());
        assert!(line.contains("goroutine 7 blocked"), "{line}");
    }

    /// A degraded line carries its time first: it is read later against what happened then.
    #[test]
    fn a_degraded_line_is_timestamped_and_escaped() {
        let json = r#"{"kind":"degraded","time":"2026-12-05T11:32:04.210Z","pid":0,"tid":0,"comm":"","stack":[],"reason":"ring_buffer_full","state":"started","count":1204,"window_ns":200000000,"total":1204,"since":"2026-12-05T11:32:04.210Z","detail":"ring buffer full, 1,204 events dropped in the last 200ms (alerts may be missing; raise --ring-size)\nx"}"#;
        let line = one_line(&Alert::from_json_line(json).unwrap());
        assert_eq!(
            line,
            "2026-12-05T11:32:04.210Z observer: degraded: ring buffer full, 1,204 events dropped \
             in the last 200ms (alerts may be missing; raise --ring-size)\\x0ax"
        );
    }

    #[test]
    fn a_lock_hold_names_holder_release_and_waiters() {
        let json = r#"{"kind":"lock_hold","time":"2026-11-26T20:07:45.072Z","pid":1,"tid":2,"comm":"worker","stack":["__lll_lock_wait","worker_update (lock_hold.c:45)"],"uaddr":"0x10","lock_kind":"pthread_mutex","owner_recorded":true,"hold_ns":296000000,"holder_tid":3,"holder_comm":"maintenance","holder_known_from":"owner","holder_state":"unknown","holder_syscall":null,"holder_stack":[],"holder_samples":0,"release_tid":3,"release_comm":"maintenance","release_stack":["maintenance_compact (lock_hold.c:25)"],"waiters":3,"longest_wait_ns":295000000,"total_wait_ns":800000000,"waiter_stacks":[],"waiter_stacks_omitted":0}"#;
        let line = one_line(&Alert::from_json_line(json).unwrap());
        assert_eq!(
            line,
            "observer: lock_hold  tid 3 (maintenance) held pthread_mutex 0x10 296ms, released in \
             maintenance_compact (lock_hold.c:25); 3 waiters, longest tid 2 (worker) waited 295ms \
             in worker_update (lock_hold.c:45)"
        );
        // Blocked while holding it: where.
        let json = json
            .replace(r#""holder_state":"unknown","holder_syscall":null,"holder_stack":[]"#,
                r#""holder_state":"blocked","holder_syscall":"read","holder_stack":["refresh (x.c:9)"]"#);
        let line = one_line(&Alert::from_json_line(&json).unwrap());
        assert!(
            line.contains(
                "held pthread_mutex 0x10 296ms, blocked in read() in refresh (x.c:9), released in"
            ),
            "{line}"
        );
    }

    #[test]
    fn a_stall_in_the_kernel_says_where_it_sleeps() {
        let json = r#"{"kind":"stall","time":"2026-11-26T20:07:45.072Z","pid":1,"tid":2,"comm":"forker","stack":["forker_waits (k.c:31)"],"blocked_ns":2100000000,"uaddr":null,"syscall":"vfork","owner_tid":null,"owner_stack":[],"kernel_stack":["wait_for_completion_state","kernel_clone","__do_sys_vfork"]}"#;
        let line = one_line(&Alert::from_json_line(json).unwrap());
        assert!(
            line.contains("in the kernel (vfork: uninterruptible sleep in wait_for_completion_state <- kernel_clone)"),
            "{line}"
        );
        // A lock stall reads as before.
        let json = r#"{"kind":"stall","time":"2026-11-26T20:07:45.072Z","pid":1,"tid":2,"comm":"w","stack":[],"blocked_ns":1,"uaddr":"0x10","syscall":"futex","owner_tid":7,"owner_stack":[]}"#;
        let line = one_line(&Alert::from_json_line(json).unwrap());
        assert!(line.ends_with("on a lock held by tid 7"), "{line}");
        // With what the holder did meanwhile.
        let json = r#"{"kind":"stall","time":"2026-11-26T20:07:45.072Z","pid":1,"tid":2,"comm":"w","stack":[],"blocked_ns":1,"uaddr":"0x10","syscall":"futex","owner_tid":7,"owner_stack":[],"holder_state":"blocked","holder_syscall":"read","holder_stack":["refresh_from_disk (c.c:25)"],"holder_samples":0}"#;
        let line = one_line(&Alert::from_json_line(json).unwrap());
        assert!(
            line.contains("held by tid 7 (blocked in read in refresh_from_disk (c.c:25))"),
            "{line}"
        );
    }
}
