//! A snapshot laid out as lines of a screen of a given size: sections sharing the height,
//! every line cut to the width, and text from the target stripped of control characters.

use std::borrow::Cow;
use std::time::Duration;

use super::model::{Death, LiveSnapshot, ProcessRow, StalledWaiter, Waiter};
use crate::output::profile::TopStack;
use crate::stacks::own_code::own_frames;
use crate::util::duration::human;
use crate::util::number::thousands;

/// The screen for `snapshot`: at most `height` lines (joined by `\n`, no trailing newline),
/// each at most `width` columns.
pub fn render(snapshot: &LiveSnapshot, width: u16, height: u16) -> String {
    render_lines(snapshot, &[], None, width, height).join("\n")
}

/// Lines of the screen; `notes` are extra alert lines (oldest first), `status` a step in
/// progress shown under the header.
pub(super) fn render_lines(
    s: &LiveSnapshot,
    notes: &[&str],
    status: Option<&str>,
    width: u16,
    height: u16,
) -> Vec<String> {
    let w = usize::from(width);
    let h = usize::from(height);
    if w == 0 || h == 0 {
        return Vec::new();
    }
    let mut lines = header(s, w);
    if let Some(st) = status {
        lines.push(fit_end(&format!("working: {}", clean(st)), w));
    }
    lines.truncate(h);

    let sections = sections(s, notes, w);
    let budget = h - lines.len();
    let wanted: Vec<usize> = sections.iter().map(|sec| sec.rows.len()).collect();
    let alloc = allocate(&wanted, budget);
    for (sec, (show_heading, rows)) in sections.into_iter().zip(alloc) {
        if !show_heading {
            continue;
        }
        lines.push(fit_end(&sec.heading, w));
        let total = sec.rows.len();
        if rows >= total {
            lines.extend(sec.rows);
        } else if rows > 0 {
            let shown = rows - 1;
            lines.extend(sec.rows.into_iter().take(shown));
            lines.push(fit_end(&format!("  … {} more", total - shown), w));
        }
    }
    lines
}

struct Section {
    heading: String,
    rows: Vec<String>,
}

/// Whether each section gets its heading and how many row lines, for `budget` lines in all.
/// Headings first (in order), then rows one per section per round, so every section with
/// something to show gets a share before any one gets more.
pub(super) fn allocate(wanted: &[usize], budget: usize) -> Vec<(bool, usize)> {
    let mut left = budget;
    let mut alloc: Vec<(bool, usize)> = wanted
        .iter()
        .map(|_| {
            let heading = left > 0;
            left = left.saturating_sub(1);
            (heading, 0)
        })
        .collect();
    loop {
        let mut gave = false;
        for (i, a) in alloc.iter_mut().enumerate() {
            if left == 0 {
                return alloc;
            }
            if a.0 && a.1 < wanted[i] {
                a.1 += 1;
                left -= 1;
                gave = true;
            }
        }
        if !gave {
            return alloc;
        }
    }
}

fn header(s: &LiveSnapshot, w: usize) -> Vec<String> {
    let mode = if s.mode.is_empty() {
        "observer".to_string()
    } else {
        format!("observer {}", clean(&s.mode))
    };
    let mut title = mode;
    if !s.target.is_empty() {
        title.push_str(&format!(" · {}", clean(&s.target)));
    }
    title.push_str(&format!(" · up {}", uptime(s.uptime)));
    const HINT: &str = "Ctrl-C to stop";
    let title_w = text_width(&title);
    let title = if title_w + 2 + HINT.len() <= w {
        format!("{title}{}{HINT}", " ".repeat(w - title_w - HINT.len()))
    } else {
        fit_end(&title, w)
    };

    let c = &s.counters;
    let mut parts = vec![
        format!("waits {}", thousands(c.waits_seen)),
        c.long_waits.short(c.report_idle, thousands),
    ];
    let alerts: u64 = c.alerts_by_kind.values().sum();
    if alerts == 0 {
        parts.push("alerts 0".to_string());
    } else {
        let kinds: Vec<String> = c
            .alerts_by_kind
            .iter()
            .filter(|(_, &n)| n > 0)
            .map(|(k, n)| format!("{} {}", clean(k), thousands(*n)))
            .collect();
        parts.push(format!(
            "alerts {} ({})",
            thousands(alerts),
            kinds.join(", ")
        ));
    }
    if c.lock_holds > 0 {
        parts.push(format!(
            "holds {} ({} waiters)",
            thousands(c.lock_holds),
            thousands(c.lock_hold_waiters)
        ));
    }
    let drops = [
        (c.events_dropped, "events"),
        (c.aggregates_dropped, "aggregate updates"),
        (c.in_flight_dropped, "in-flight"),
    ];
    if drops.iter().all(|(n, _)| *n == 0) {
        parts.push("dropped 0".to_string());
    } else {
        let d: Vec<String> = drops
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{} {what}", thousands(*n)))
            .collect();
        parts.push(format!("DROPPED {}", d.join(", ")));
    }
    let mut lines = vec![title];
    lines.extend(flow(&parts, "  ", w, 2));
    lines
}

/// Packs `parts` into at most `max_lines` lines of `w` columns, the last one truncated.
fn flow(parts: &[String], sep: &str, w: usize, max_lines: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut cur = String::new();
    for p in parts {
        if cur.is_empty() {
            cur = p.clone();
        } else if text_width(&cur) + sep.len() + text_width(p) <= w || lines.len() + 1 >= max_lines
        {
            cur.push_str(sep);
            cur.push_str(p);
        } else {
            lines.push(fit_end(&cur, w));
            cur = p.clone();
        }
    }
    if !cur.is_empty() {
        lines.push(fit_end(&cur, w));
    }
    lines
}

fn sections(s: &LiveSnapshot, notes: &[&str], w: usize) -> Vec<Section> {
    let mut out = Vec::new();
    if !s.processes.is_empty() {
        out.push(processes_section(&s.processes, w));
    }
    out.push(stacks_section(s, w));
    out.push(stalled_section(&s.stalled, w));
    out.push(deaths_section(&s.recent_deaths, w));
    let all_notes: Vec<&str> = s
        .recent_alerts
        .iter()
        .map(String::as_str)
        .chain(notes.iter().copied())
        .collect();
    if !all_notes.is_empty() {
        out.push(Section {
            heading: format!("RECENT ALERTS ({})", all_notes.len()),
            rows: all_notes
                .iter()
                .rev()
                .map(|n| {
                    fit_end(
                        &format!("  {}", clean(n.trim_start_matches("observer: "))),
                        w,
                    )
                })
                .collect(),
        });
    }
    out
}

fn processes_section(procs: &[ProcessRow], w: usize) -> Section {
    let mut sorted: Vec<&ProcessRow> = procs.iter().collect();
    sorted.sort_by(|a, b| {
        b.blocked_ns_per_s
            .cmp(&a.blocked_ns_per_s)
            .then(b.alerts.cmp(&a.alerts))
            .then(a.pid.cmp(&b.pid))
    });
    let mut rows = vec![fit_end(
        &format!(
            "  {:>7}  {:<16} {:<3} {:>11}  {:>6}",
            "PID", "COMM", "GO", "BLOCKED/s", "ALERTS"
        ),
        w,
    )];
    rows.extend(sorted.iter().map(|p| {
        let comm = pad(&fit_end(&clean(&p.comm), 16), 16);
        let blocked = format!("{}/s", human(Duration::from_nanos(p.blocked_ns_per_s)));
        fit_end(
            &format!(
                "  {:>7}  {comm} {:<3} {:>11}  {:>6}",
                p.pid,
                if p.go { "go" } else { "" },
                blocked,
                thousands(p.alerts)
            ),
            w,
        )
    }));
    Section {
        heading: format!("PROCESSES ({})", procs.len()),
        rows,
    }
}

fn stacks_section(s: &LiveSnapshot, w: usize) -> Section {
    let mut stacks: Vec<&TopStack> = s.top_stacks.iter().collect();
    stacks.sort_by(|a, b| {
        b.weight_ns
            .cmp(&a.weight_ns)
            .then(b.count.cmp(&a.count))
            .then_with(|| a.frames.cmp(&b.frames))
    });
    // Idle time is not blocking: its total only, so that it cannot push a lock off the list.
    let idle = if s.idle_ns > 0 {
        format!(
            "; {} idle not shown",
            human(Duration::from_nanos(s.idle_ns))
        )
    } else {
        String::new()
    };
    if stacks.is_empty() {
        let rows = if s.stalled.is_empty() {
            vec![fit_end("  no blocking seen yet", w)]
        } else {
            vec![fit_end("  no ended waits yet", w)]
        };
        let heading = if idle.is_empty() {
            "TOP BLOCKED STACKS".to_string()
        } else {
            format!("TOP BLOCKED STACKS ({})", idle.trim_start_matches("; "))
        };
        return Section { heading, rows };
    }
    // One process: its name on every line says nothing.
    let one_process = stacks.iter().all(|t| t.process == stacks[0].process);
    let who: Vec<String> = stacks
        .iter()
        .map(|t| {
            if one_process {
                clean(&t.thread).into_owned()
            } else {
                format!("{}/{}", clean(&t.process), clean(&t.thread))
            }
        })
        .collect();
    let who_w = who.iter().map(|x| text_width(x)).max().unwrap_or(0).min(24);
    let rows = stacks
        .iter()
        .zip(&who)
        .map(|(t, who)| {
            let head = format!(
                "  {:>7} {:>8}  {}  ",
                human(Duration::from_nanos(t.weight_ns)),
                format!("{}x", thousands(t.count)),
                pad(&fit_end(who, who_w), who_w)
            );
            let room = w.saturating_sub(text_width(&head));
            fit_end(&format!("{head}{}", fit_stack(&t.frames, room)), w)
        })
        .collect();
    let total: u64 = stacks.iter().map(|t| t.weight_ns).sum();
    Section {
        heading: format!(
            "TOP BLOCKED STACKS ({} stacks, {} blocked since start{idle})",
            s.top_stacks.len(),
            human(Duration::from_nanos(total))
        ),
        rows,
    }
}

fn stalled_section(stalled: &[StalledWaiter], w: usize) -> Section {
    if stalled.is_empty() {
        return Section {
            heading: "STALLED NOW: none".to_string(),
            rows: Vec::new(),
        };
    }
    let mut sorted: Vec<&StalledWaiter> = stalled.iter().collect();
    sorted.sort_by(|a, b| b.blocked_ns.cmp(&a.blocked_ns).then(a.pid.cmp(&b.pid)));
    let threads = stalled
        .iter()
        .filter(|s| matches!(s.waiter, Waiter::Thread { .. }))
        .count();
    let goroutines = stalled.len() - threads;
    let rows = sorted
        .iter()
        .map(|st| {
            let id = match st.waiter {
                Waiter::Thread { tid } => format!("{}/{tid}", st.pid),
                Waiter::Goroutine { goid } => format!("{}/g{goid}", st.pid),
            };
            let head = format!(
                "  {:>7}  {:<14} {} {} ",
                human(Duration::from_nanos(st.blocked_ns)),
                id,
                pad(&fit_end(&clean(&st.comm), 15), 15),
                pad(&fit_end(&clean(&st.on), 22), 22),
            );
            let room = w.saturating_sub(text_width(&head));
            fit_end(&format!("{head}{}", fit_stack(&st.frames, room)), w)
        })
        .collect();
    Section {
        heading: format!(
            "STALLED NOW ({threads} threads, {goroutines} goroutines; pid/tid or pid/g<goid>)"
        ),
        rows,
    }
}

fn deaths_section(deaths: &[Death], w: usize) -> Section {
    if deaths.is_empty() {
        return Section {
            heading: "RECENT DEATHS: none".to_string(),
            rows: Vec::new(),
        };
    }
    let rows = deaths
        .iter()
        .rev()
        .map(|d| {
            fit_end(
                &format!(
                    "  {} {:<12} {}/{} {}: {}",
                    time_of_day(&d.time),
                    d.kind.as_str(),
                    d.pid,
                    d.tid,
                    clean(&d.comm),
                    clean(&d.summary)
                ),
                w,
            )
        })
        .collect();
    Section {
        heading: format!("RECENT DEATHS ({})", deaths.len()),
        rows,
    }
}

/// `2026-11-26T20:39:01.123Z` -> `20:39:01`; anything else as it is.
pub(super) fn time_of_day(rfc3339: &str) -> Cow<'_, str> {
    match rfc3339.get(11..19) {
        Some(t) if rfc3339.as_bytes().get(10) == Some(&b'T') => Cow::Borrowed(t),
        _ => clean(rfc3339),
    }
}

/// The stack from its innermost own frame outwards, in at most `room` columns:
/// `leaf <- caller <- caller <- … +3`, the leaf cut from the left if even it is too long
/// (the end of a name, the method and its file:line, is what tells frames apart).
pub(super) fn fit_stack(frames: &[String], room: usize) -> String {
    // What the wait was (`[lock: KIND]`, `[sync.Mutex.Lock]`) is not the program's code: it
    // goes before the program's own frames while the leaf still fits whole after it.
    if let Some((label, rest)) = frames.split_first() {
        let is_label = label.starts_with('[') && label.ends_with(']') && label != "[unknown]";
        if is_label && !rest.is_empty() {
            let label = clean(label);
            let leaf_w = own_frames(rest)
                .first()
                .map_or(0, |f| text_width(&clean(f)));
            let label_w = text_width(&label) + 1;
            if label_w + leaf_w <= room {
                return format!("{label} {}", fit_frames(rest, room - label_w));
            }
            return fit_frames(rest, room);
        }
    }
    fit_frames(frames, room)
}

/// The program's own frames, innermost first, as many as fit, then how many more.
fn fit_frames(frames: &[String], room: usize) -> String {
    const SEP: &str = " <- ";
    let own = own_frames(frames);
    let Some(leaf) = own.first() else {
        return fit_end("?", room);
    };
    let leaf = clean(leaf);
    if text_width(&leaf) > room {
        return fit_start(&leaf, room);
    }
    let mut out = leaf.into_owned();
    for (i, f) in own.iter().enumerate().skip(1) {
        let f = clean(f);
        let rest = own.len() - i - 1;
        let tail = if rest > 0 {
            text_width(SEP) + 2 + digits(rest as u64) // " <- …+N"
        } else {
            0
        };
        if text_width(&out) + text_width(SEP) + text_width(&f) + tail <= room {
            out.push_str(SEP);
            out.push_str(&f);
            continue;
        }
        let more = format!("{SEP}…+{}", own.len() - i);
        if text_width(&out) + text_width(&more) <= room {
            out.push_str(&more);
        }
        break;
    }
    out
}

fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

pub(super) fn uptime(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        format!("{secs}s")
    } else {
        human(Duration::from_secs(secs))
    }
}

/// Text from the target with control characters (escape sequences, newlines, tabs) replaced.
pub(super) fn clean(s: &str) -> Cow<'_, str> {
    if s.chars().any(char::is_control) {
        Cow::Owned(
            s.chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(s)
    }
}

/// Terminal columns of a character: 2 for East Asian wide and emoji ranges, 1 otherwise
/// (never less than its count of chars, so a line of `w` columns has at most `w` chars).
fn char_width(c: char) -> usize {
    let c = c as u32;
    let wide = matches!(c,
        0x1100..=0x115F
        | 0x2E80..=0x303E
        | 0x3041..=0x33FF
        | 0x3400..=0x4DBF
        | 0x4E00..=0x9FFF
        | 0xA000..=0xA4CF
        | 0xAC00..=0xD7A3
        | 0xF900..=0xFAFF
        | 0xFE30..=0xFE4F
        | 0xFF00..=0xFF60
        | 0xFFE0..=0xFFE6
        | 0x1F300..=0x1F64F
        | 0x1F900..=0x1F9FF
        | 0x20000..=0x3FFFD);
    if wide {
        2
    } else {
        1
    }
}

pub(super) fn text_width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

/// At most `w` columns, cut at the end with `…`.
pub(super) fn fit_end(s: &str, w: usize) -> String {
    if text_width(s) <= w {
        return s.to_string();
    }
    if w == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let cw = char_width(c);
        if used + cw > w - 1 {
            break;
        }
        out.push(c);
        used += cw;
    }
    out.push('…');
    out
}

/// At most `w` columns, cut at the start with `…`.
pub(super) fn fit_start(s: &str, w: usize) -> String {
    if text_width(s) <= w {
        return s.to_string();
    }
    if w == 0 {
        return String::new();
    }
    let mut kept: Vec<char> = Vec::new();
    let mut used = 0;
    for c in s.chars().rev() {
        let cw = char_width(c);
        if used + cw > w - 1 {
            break;
        }
        kept.push(c);
        used += cw;
    }
    let mut out = String::from("…");
    out.extend(kept.into_iter().rev());
    out
}

pub(super) fn pad(s: &str, w: usize) -> String {
    let tw = text_width(s);
    if tw >= w {
        s.to_string()
    } else {
        format!("{s}{}", " ".repeat(w - tw))
    }
}
