//! The live, top-style view of `watch` and `sidecar` on a terminal.
//!
//! [`LiveSnapshot`] is plain data the session fills every second; [`render`] turns it into a
//! screen (pure: no terminal, testable); [`LiveTerminal`] owns the terminal while the view is on:
//! alternate screen, hidden cursor, flicker-free redraws, and a guaranteed restore (drop, panic
//! hook, or [`emergency_restore`] from a signal handler).
//!
//! Everything shown comes from the observed processes (thread names, symbol names, panic text),
//! so every piece of text is stripped of control characters before it reaches the terminal: a
//! thread named `"\x1b[2J"` must not be able to drive it.

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use crate::output::alert::{Alert, AlertDetail};
use crate::output::folded::TopStack;
use crate::stacks::frames::own_frames;
use crate::util::duration::human;

/// Everything one screen shows. Lists may be given in any order: [`render`] sorts what has a
/// natural order (heaviest stacks, longest stalls, newest deaths first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveSnapshot {
    /// `"watch"` or `"sidecar"`.
    pub mode: String,
    /// What is observed: `"pid 4242 (bank)"`, `"host"`, `"12 processes"`.
    pub target: String,
    pub uptime: Duration,
    pub counters: LiveCounters,
    /// Blocked time per stack since the start (e.g. `FoldedProfile::top(50)`).
    pub top_stacks: Vec<TopStack>,
    /// Threads and goroutines blocked right now for longer than the stall threshold.
    pub stalled: Vec<StalledWaiter>,
    /// Oldest first, as they happened; shown newest first.
    pub recent_deaths: Vec<Death>,
    /// Sidecar only: one row per observed process; the section is hidden when empty.
    pub processes: Vec<ProcessRow>,
    /// One-line alert messages, oldest first, shown with those given to [`LiveTerminal::note`].
    pub recent_alerts: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveCounters {
    pub waits_seen: u64,
    /// Waits over the alert threshold.
    pub long_waits: u64,
    /// Alert kind (`"lock_wait"`, `"stall"`, ...) to count.
    pub alerts_by_kind: BTreeMap<String, u64>,
    pub events_dropped: u64,
    pub aggregates_dropped: u64,
    pub in_flight_dropped: u64,
}

impl LiveCounters {
    pub fn count_alert(&mut self, kind: &str) {
        *self.alerts_by_kind.entry(kind.to_string()).or_default() += 1;
    }
}

/// Who is blocked: a kernel thread or a goroutine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiter {
    Thread { tid: u32 },
    Goroutine { goid: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StalledWaiter {
    pub pid: u32,
    pub comm: String,
    pub waiter: Waiter,
    pub blocked_ns: u64,
    /// What it waits on: a Go wait reason (`"sync.Mutex.Lock"`) or a lock (`"lock 0x7f3a1c000b20"`).
    pub on: String,
    /// Innermost first; the view shows the innermost frame of the program's own code.
    pub frames: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeathKind {
    ThreadExit,
    ProcessExit,
    GoPanic,
}

impl DeathKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeathKind::ThreadExit => "thread_exit",
            DeathKind::ProcessExit => "process_exit",
            DeathKind::GoPanic => "go_panic",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Death {
    /// RFC 3339 (as in alerts); the view shows the time of day.
    pub time: String,
    pub pid: u32,
    pub comm: String,
    pub tid: u32,
    pub kind: DeathKind,
    /// E.g. `"SIGSEGV; created by start_workers"`.
    pub summary: String,
}

impl Death {
    /// The death an alert reports (thread exit, process exit, Go panic), or `None`.
    pub fn from_alert(a: &Alert) -> Option<Death> {
        let top = |stack: &[String]| own_frames(stack).first().cloned();
        let (kind, summary) = match &a.detail {
            AlertDetail::ThreadExit(t) => {
                let how = t
                    .signal
                    .clone()
                    .unwrap_or_else(|| format!("exit code {}", t.exit_code));
                let by = top(&t.created_by)
                    .map(|f| format!("; created by {f}"))
                    .unwrap_or_default();
                (DeathKind::ThreadExit, format!("{how}{by}"))
            }
            AlertDetail::ProcessExit(p) => {
                let how = p
                    .signal
                    .clone()
                    .or(p.exit_code.map(|c| format!("exit code {c}")))
                    .unwrap_or_else(|| "ended".to_string());
                let msg = p.message.as_ref().map(|m| format!(": {m}"));
                (DeathKind::ProcessExit, how + &msg.unwrap_or_default())
            }
            AlertDetail::GoPanic(g) => {
                let msg = g.message.as_ref().map(|m| format!("{m:?}"));
                let mut s = format!("goroutine {} panicked", g.goid);
                if let Some(m) = msg {
                    s.push_str(&format!(" ({m})"));
                }
                if let Some(f) = top(&a.stack) {
                    s.push_str(&format!(" in {f}"));
                }
                if g.recovered {
                    s.push_str("; recovered");
                }
                (DeathKind::GoPanic, s)
            }
            _ => return None,
        };
        Some(Death {
            time: a.time.clone(),
            pid: a.pid,
            comm: a.comm.clone(),
            tid: a.tid,
            kind,
            summary,
        })
    }
}

/// One observed process in the sidecar table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessRow {
    pub pid: u32,
    pub comm: String,
    /// A Go program (goroutine probes attached).
    pub go: bool,
    /// Blocked nanoseconds per second over the last interval (1s/s = one thread always blocked).
    pub blocked_ns_per_s: u64,
    pub alerts: u64,
}

/// The screen for `snapshot`: at most `height` lines (joined by `\n`, no trailing newline),
/// each at most `width` columns.
pub fn render(snapshot: &LiveSnapshot, width: u16, height: u16) -> String {
    render_lines(snapshot, &[], None, width, height).join("\n")
}

/// Lines of the screen; `notes` are extra alert lines (oldest first), `status` a step in
/// progress shown under the header.
fn render_lines(
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
fn allocate(wanted: &[usize], budget: usize) -> Vec<(bool, usize)> {
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
        format!("long {}", thousands(c.long_waits)),
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
    if stacks.is_empty() {
        let rows = if s.stalled.is_empty() {
            vec![fit_end("  no blocking seen yet", w)]
        } else {
            vec![fit_end("  no ended waits yet", w)]
        };
        return Section {
            heading: "TOP BLOCKED STACKS".to_string(),
            rows,
        };
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
            "TOP BLOCKED STACKS ({} stacks, {} blocked since start)",
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
fn time_of_day(rfc3339: &str) -> Cow<'_, str> {
    match rfc3339.get(11..19) {
        Some(t) if rfc3339.as_bytes().get(10) == Some(&b'T') => Cow::Borrowed(t),
        _ => clean(rfc3339),
    }
}

/// The stack from its innermost own frame outwards, in at most `room` columns:
/// `leaf <- caller <- caller <- … +3`, the leaf cut from the left if even it is too long
/// (the end of a name, the method and its file:line, is what tells frames apart).
fn fit_stack(frames: &[String], room: usize) -> String {
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

fn uptime(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        format!("{secs}s")
    } else {
        human(Duration::from_secs(secs))
    }
}

/// `1234567` -> `1,234,567`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Text from the target with control characters (escape sequences, newlines, tabs) replaced.
fn clean(s: &str) -> Cow<'_, str> {
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

fn text_width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

/// At most `w` columns, cut at the end with `…`.
fn fit_end(s: &str, w: usize) -> String {
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
fn fit_start(s: &str, w: usize) -> String {
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

fn pad(s: &str, w: usize) -> String {
    let tw = text_width(s);
    if tw >= w {
        s.to_string()
    } else {
        format!("{s}{}", " ".repeat(w - tw))
    }
}

// ---------------------------------------------------------------------------------------------
// The terminal.

/// The fd the live view drew on and has not restored yet, or -1: lets [`emergency_restore`]
/// (panic hook, signal handler) leave the alternate screen without the `LiveTerminal`.
static ACTIVE_FD: AtomicI32 = AtomicI32::new(-1);

const ENTER: &str = "\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J";
const LEAVE: &[u8] = b"\x1b[0m\x1b[?25h\x1b[?1049l";
/// Synchronized output (terminals that know it show the frame at once; others ignore it).
const BEGIN_FRAME: &str = "\x1b[?2026h";
const END_FRAME: &str = "\x1b[?2026l";
/// Alert lines kept for the "recent alerts" section.
const MAX_NOTES: usize = 50;
const FALLBACK_SIZE: (u16, u16) = (80, 24);

/// Whether the live view should run: asked for, a terminal, and one that understands escapes.
pub fn should_run(enabled: bool, is_tty: bool, term: Option<&str>) -> bool {
    enabled && is_tty && !matches!(term, None | Some("") | Some("dumb"))
}

/// True while a live view owns the terminal (then other stderr output would scribble on it).
pub fn is_active() -> bool {
    ACTIVE_FD.load(Ordering::SeqCst) >= 0
}

/// Columns and rows of the terminal on `fd`, or `None` if it is not one or has no size.
pub fn terminal_size(fd: RawFd) -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct we pass; fd validity is checked by
    // the kernel (EBADF/ENOTTY come back as -1).
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_col > 0 && ws.ws_row > 0).then_some((ws.ws_col, ws.ws_row))
}

/// Leaves the alternate screen and shows the cursor if a live view is on. Async-signal-safe
/// (one atomic swap, one write(2)): callable from a signal handler or a panic hook.
pub fn emergency_restore() {
    let fd = ACTIVE_FD.swap(-1, Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: writes a static buffer to a descriptor; a failure leaves nothing else to do.
        unsafe {
            libc::write(fd, LEAVE.as_ptr().cast(), LEAVE.len());
        }
    }
}

/// The terminal while the live view is on. Dropping it restores the terminal.
pub struct LiveTerminal {
    fd: RawFd,
    notes: VecDeque<String>,
    last_size: Option<(u16, u16)>,
}

impl LiveTerminal {
    /// Takes over stderr's terminal if `enabled`, stderr is a terminal and `TERM` is not dumb;
    /// `None` otherwise (and when another live view is already on).
    pub fn new_if_tty(enabled: bool) -> Option<LiveTerminal> {
        let term = std::env::var("TERM").ok();
        Self::on_fd(libc::STDERR_FILENO, enabled, term.as_deref())
    }

    fn on_fd(fd: RawFd, enabled: bool, term: Option<&str>) -> Option<LiveTerminal> {
        // SAFETY: isatty only inspects the descriptor.
        let is_tty = unsafe { libc::isatty(fd) } == 1;
        if !should_run(enabled, is_tty, term) {
            return None;
        }
        if ACTIVE_FD
            .compare_exchange(-1, fd, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return None;
        }
        install_panic_hook();
        let t = LiveTerminal {
            fd,
            notes: VecDeque::new(),
            last_size: None,
        };
        if write_all_fd(fd, ENTER.as_bytes()).is_err() {
            ACTIVE_FD.store(-1, Ordering::SeqCst);
            return None;
        }
        Some(t)
    }

    /// Columns and rows now (80x24 when the terminal does not say).
    pub fn size(&self) -> (u16, u16) {
        terminal_size(self.fd).unwrap_or(FALLBACK_SIZE)
    }

    /// Keeps a one-line message (an alert) for the "recent alerts" section instead of printing it.
    pub fn note(&mut self, line: String) {
        if self.notes.len() == MAX_NOTES {
            self.notes.pop_front();
        }
        self.notes.push_back(line);
    }

    /// Redraws the screen. Skips the frame (returns Ok) when the terminal cannot take output
    /// now (scroll lock, a stalled ssh link): the observer must never block on its own view.
    pub fn draw(&mut self, snapshot: &LiveSnapshot) -> io::Result<()> {
        if ACTIVE_FD.load(Ordering::SeqCst) != self.fd {
            return Ok(()); // restored already
        }
        if !writable_now(self.fd) {
            return Ok(());
        }
        let (w, h) = self.size();
        let notes: Vec<&str> = self.notes.iter().map(String::as_str).collect();
        let status = crate::terminal::progress::live_status();
        let lines = render_lines(snapshot, &notes, status.as_deref(), w, h);
        let resized = self.last_size != Some((w, h));
        self.last_size = Some((w, h));
        let frame = frame_bytes(&lines, w, h, resized);
        write_all_fd(self.fd, frame.as_bytes())
    }

    /// Shows the cursor and leaves the alternate screen; idempotent.
    pub fn restore(&mut self) {
        if ACTIVE_FD
            .compare_exchange(self.fd, -1, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            let _ = write_all_fd(self.fd, LEAVE);
        }
    }
}

impl Drop for LiveTerminal {
    fn drop(&mut self) {
        self.restore();
    }
}

/// The bytes of one redraw: each line cleared and rewritten in place (no full-screen clear, so
/// no flicker), the title in reverse video, and the rest of the screen cleared below.
fn frame_bytes(lines: &[String], w: u16, h: u16, resized: bool) -> String {
    let mut out = String::with_capacity(lines.iter().map(|l| l.len() + 8).sum::<usize>() + 32);
    out.push_str(BEGIN_FRAME);
    if resized {
        out.push_str("\x1b[2J");
    }
    out.push_str("\x1b[H");
    let n = lines.len().min(usize::from(h));
    for (i, line) in lines.iter().take(n).enumerate() {
        out.push_str("\x1b[2K");
        if i == 0 {
            let _ = write!(out, "\x1b[7m{}\x1b[0m", pad(line, usize::from(w)));
        } else {
            out.push_str(line);
        }
        if i + 1 < n {
            out.push_str("\r\n");
        }
    }
    // Never a newline after the bottom line: it would scroll the screen.
    if n < usize::from(h) {
        out.push_str("\r\n\x1b[J");
    }
    out.push_str(END_FRAME);
    out
}

fn writable_now(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one pollfd, zero timeout.
    let rc = unsafe { libc::poll(&mut p, 1, 0) };
    rc == 1 && p.revents & libc::POLLOUT != 0
}

fn write_all_fd(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: writes from a live slice.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// A panic message printed on the alternate screen would vanish with it: restore first.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            emergency_restore();
            previous(info);
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(f: &[&str]) -> Vec<String> {
        f.iter().map(|s| s.to_string()).collect()
    }

    fn stack(thread: &str, frames: &[&str], ms: u64, count: u64) -> TopStack {
        TopStack {
            process: "bank".into(),
            thread: thread.into(),
            frames: strs(frames),
            weight_ns: ms * 1_000_000,
            count,
        }
    }

    fn busy() -> LiveSnapshot {
        let mut counters = LiveCounters {
            waits_seen: 123_456,
            long_waits: 17,
            ..Default::default()
        };
        counters.count_alert("lock_wait");
        counters.count_alert("lock_wait");
        counters.count_alert("thread_exit");
        LiveSnapshot {
            mode: "watch".into(),
            target: "pid 4242 (bank)".into(),
            uptime: Duration::from_secs(62),
            counters,
            top_stacks: vec![
                stack(
                    "worker-2",
                    &[
                        "futex_wait (futex-internal.h:146)",
                        "main.small (main.go:3)",
                    ],
                    5,
                    2,
                ),
                stack(
                    "worker-1",
                    &[
                        "futex_wait (futex-internal.h:146)",
                        "__GI___lll_lock_wait (lowlevellock.c:49)",
                        "___pthread_mutex_lock (pthread_mutex_lock.c:93)",
                        "worker_update (lock_hold.c:45)",
                        "run_worker (lock_hold.c:80)",
                        "start_thread (pthread_create.c:442)",
                    ],
                    1250,
                    420,
                ),
            ],
            stalled: vec![
                StalledWaiter {
                    pid: 4242,
                    comm: "worker-3".into(),
                    waiter: Waiter::Thread { tid: 4250 },
                    blocked_ns: 3_000_000_000,
                    on: "lock 0x7f3a1c000b20".into(),
                    frames: strs(&["__lll_lock_wait", "transfer (bank.c:14)"]),
                },
                StalledWaiter {
                    pid: 4242,
                    comm: "bank".into(),
                    waiter: Waiter::Goroutine { goid: 17 },
                    blocked_ns: 12_300_000_000,
                    on: "sync.Mutex.Lock".into(),
                    frames: strs(&[
                        "runtime.gopark (proc.go:457)",
                        "sync.(*Mutex).Lock (mutex.go:46)",
                        "main.waiter (main.go:19)",
                    ]),
                },
            ],
            recent_deaths: vec![
                Death {
                    time: "2026-11-26T20:39:01.123Z".into(),
                    pid: 4242,
                    comm: "worker-9".into(),
                    tid: 4251,
                    kind: DeathKind::ThreadExit,
                    summary: "SIGSEGV; created by start_workers".into(),
                },
                Death {
                    time: "2026-11-26T20:40:02.000Z".into(),
                    pid: 4242,
                    comm: "bank".into(),
                    tid: 4242,
                    kind: DeathKind::GoPanic,
                    summary: "goroutine 9 panicked (\"boom\"); recovered".into(),
                },
            ],
            processes: Vec::new(),
            recent_alerts: vec!["observer: lock_wait  tid 4250 (worker-3) waited 1.2s".into()],
        }
    }

    fn check_bounds(screen: &str, w: u16, h: u16) {
        let lines: Vec<&str> = if screen.is_empty() {
            Vec::new()
        } else {
            screen.split('\n').collect()
        };
        assert!(
            lines.len() <= usize::from(h),
            "{} lines > {h}:\n{screen}",
            lines.len()
        );
        for l in &lines {
            assert!(
                l.chars().count() <= usize::from(w),
                "{} chars > {w}: {l:?}",
                l.chars().count()
            );
            assert!(text_width(l) <= usize::from(w), "{l:?}");
            assert!(!l.chars().any(char::is_control), "control char in {l:?}");
        }
    }

    #[test]
    fn empty_snapshot_is_friendly() {
        let s = LiveSnapshot {
            mode: "watch".into(),
            target: "host".into(),
            uptime: Duration::from_millis(1500),
            ..Default::default()
        };
        let screen = render(&s, 80, 24);
        check_bounds(&screen, 80, 24);
        let lines: Vec<&str> = screen.lines().collect();
        assert!(
            lines[0].starts_with("observer watch · host · up 1s"),
            "{screen}"
        );
        assert!(lines[0].ends_with("Ctrl-C to stop"));
        assert!(screen.contains("no blocking seen yet"), "{screen}");
        assert!(screen.contains("STALLED NOW: none"));
        assert!(screen.contains("RECENT DEATHS: none"));
        assert!(
            screen.contains("waits 0  long 0  alerts 0  dropped 0"),
            "{screen}"
        );
        // Even a default (all empty) snapshot renders.
        check_bounds(&render(&LiveSnapshot::default(), 80, 24), 80, 24);
    }

    #[test]
    fn busy_snapshot_shows_what_matters() {
        let screen = render(&busy(), 120, 40);
        check_bounds(&screen, 120, 40);
        let lines: Vec<&str> = screen.lines().collect();
        assert!(lines[0].starts_with("observer watch · pid 4242 (bank) · up 1m02s"));
        assert!(
            lines[1].contains(
                "waits 123,456  long 17  alerts 3 (lock_wait 2, thread_exit 1)  dropped 0"
            ),
            "{screen}"
        );
        let top = lines
            .iter()
            .position(|l| l.starts_with("TOP BLOCKED STACKS (2 stacks, 1.25s"))
            .expect(&screen);
        // Heaviest first, plumbing skipped, callers after the own frame, single process not repeated.
        assert!(lines[top + 1].contains("1.25s"), "{screen}");
        assert!(lines[top + 1].contains("420x"));
        assert!(lines[top + 1].contains("worker-1"));
        assert!(!lines[top + 1].contains("bank/"));
        assert!(
            lines[top + 1]
                .ends_with("worker_update (lock_hold.c:45) <- run_worker (lock_hold.c:80) <- …+1"),
            "{}",
            lines[top + 1]
        );
        let wide = render(&busy(), 140, 40);
        assert!(
            wide.contains("  worker_update (lock_hold.c:45) <- run_worker (lock_hold.c:80) <- start_thread (pthread_create.c:442)\n"),
            "{wide}"
        );
        assert!(!lines[top + 1].contains("futex_wait"));
        assert!(lines[top + 2].contains("main.small (main.go:3)"));

        let st = lines
            .iter()
            .position(|l| l.starts_with("STALLED NOW (1 threads, 1 goroutines"))
            .expect(&screen);
        // Longest first: the goroutine (12.3s) then the thread (3s).
        assert!(
            lines[st + 1].contains("12.3s") && lines[st + 1].contains("4242/g17"),
            "{screen}"
        );
        assert!(
            lines[st + 1].contains("sync.Mutex.Lock")
                && lines[st + 1].contains("main.waiter (main.go:19)")
        );
        assert!(lines[st + 2].contains("3s") && lines[st + 2].contains("4242/4250"));
        assert!(
            lines[st + 2].contains("lock 0x7f3a1c000b20")
                && lines[st + 2].contains("transfer (bank.c:14)")
        );

        let d = lines
            .iter()
            .position(|l| l.starts_with("RECENT DEATHS (2)"))
            .expect(&screen);
        // Newest first, time of day only.
        assert!(lines[d + 1].starts_with("  20:40:02 go_panic"), "{screen}");
        assert!(
            lines[d + 2].starts_with(
                "  20:39:01 thread_exit  4242/4251 worker-9: SIGSEGV; created by start_workers"
            ),
            "{}",
            lines[d + 2]
        );

        let a = lines
            .iter()
            .position(|l| l.starts_with("RECENT ALERTS (1)"))
            .expect(&screen);
        assert_eq!(lines[a + 1], "  lock_wait  tid 4250 (worker-3) waited 1.2s");
        assert!(
            !screen.contains("PROCESSES"),
            "no sidecar table in watch mode"
        );
    }

    #[test]
    fn sidecar_table_and_process_names() {
        let mut s = busy();
        s.mode = "sidecar".into();
        s.target = "3 processes".into();
        s.top_stacks[0].process = "api".into();
        s.processes = vec![
            ProcessRow {
                pid: 10,
                comm: "idle".into(),
                go: false,
                blocked_ns_per_s: 0,
                alerts: 0,
            },
            ProcessRow {
                pid: 20,
                comm: "api".into(),
                go: true,
                blocked_ns_per_s: 1_500_000_000,
                alerts: 1234,
            },
            ProcessRow {
                pid: 30,
                comm: "bank".into(),
                go: false,
                blocked_ns_per_s: 250_000_000,
                alerts: 2,
            },
        ];
        let screen = render(&s, 100, 40);
        check_bounds(&screen, 100, 40);
        let lines: Vec<&str> = screen.lines().collect();
        let p = lines
            .iter()
            .position(|l| l.starts_with("PROCESSES (3)"))
            .expect(&screen);
        assert!(lines[p + 1].contains("PID") && lines[p + 1].contains("BLOCKED/s"));
        assert!(
            lines[p + 2].contains("20")
                && lines[p + 2].contains("api")
                && lines[p + 2].contains("go")
        );
        assert!(
            lines[p + 2].contains("1.5s/s") && lines[p + 2].contains("1,234"),
            "{screen}"
        );
        assert!(lines[p + 3].contains("bank") && lines[p + 3].contains("250ms/s"));
        assert!(lines[p + 4].contains("idle"));
        // Several processes: each stack names its process.
        assert!(screen.contains("bank/worker-1"), "{screen}");
        assert!(screen.contains("api/worker-2"), "{screen}");
    }

    #[test]
    fn never_exceeds_the_screen() {
        let mut s = busy();
        for i in 0..60 {
            let frames: Vec<String> = (0..40)
                .map(|d| format!("std::collections::hash::map::HashMap<K,V,S>::very_long_function_name_{i}_{d} (/some/long/path/file_{d}.rs:{i})"))
                .collect();
            s.top_stacks.push(TopStack {
                process: format!("proc-{i}-名前"),
                thread: format!("thread\x1b[2J-{i}"),
                frames,
                weight_ns: i * 7_000_000,
                count: i,
            });
            s.stalled.push(StalledWaiter {
                pid: i as u32,
                comm: "\x1b]0;pwned\x07".into(),
                waiter: Waiter::Goroutine { goid: i },
                blocked_ns: i * 1_000_000_000,
                on: "chan receive (nil chan)".repeat(3),
                frames: Vec::new(),
            });
            s.recent_alerts
                .push(format!("alert\r\n{i} 🔥🔥 {}", "x".repeat(i as usize * 5)));
        }
        for w in [1u16, 2, 5, 10, 20, 33, 40, 60, 80, 81, 100, 132, 200, 400] {
            for h in [1u16, 2, 3, 4, 5, 7, 10, 15, 24, 50, 100] {
                check_bounds(&render(&s, w, h), w, h);
            }
        }
        assert_eq!(render(&s, 0, 10), "");
        assert_eq!(render(&s, 10, 0), "");
    }

    #[test]
    fn sections_share_the_height_and_say_how_many_more() {
        let mut s = busy();
        for i in 0..30 {
            s.top_stacks
                .push(stack(&format!("t{i}"), &["f (a.c:1)"], 1, 1));
        }
        let screen = render(&s, 100, 16);
        check_bounds(&screen, 100, 16);
        assert_eq!(screen.lines().count(), 16, "{screen}");
        // 32 stacks do not fit: the rest is counted, and the other sections still show.
        let more = screen
            .lines()
            .find(|l| l.starts_with("  … "))
            .expect(&screen);
        let n: usize = more
            .trim_start_matches("  … ")
            .trim_end_matches(" more")
            .parse()
            .unwrap();
        let shown = screen
            .lines()
            .filter(|l| l.contains("x  t") || l.contains("x  worker"))
            .count();
        assert_eq!(n + shown, 32, "{screen}");
        assert!(
            screen.contains("12.3s"),
            "stalled section kept a row:\n{screen}"
        );
        assert!(screen.contains("20:40:02"), "deaths kept a row:\n{screen}");
        assert!(screen.contains("RECENT ALERTS"), "{screen}");
    }

    #[test]
    fn allocation_is_fair_and_exact() {
        assert_eq!(
            allocate(&[10, 1, 0, 5], 4),
            vec![(true, 0), (true, 0), (true, 0), (true, 0)]
        );
        assert_eq!(
            allocate(&[10, 1, 0, 5], 9),
            vec![(true, 2), (true, 1), (true, 0), (true, 2)]
        );
        assert_eq!(allocate(&[10, 1], 100), vec![(true, 10), (true, 1)]);
        assert_eq!(
            allocate(&[3, 3, 3], 2),
            vec![(true, 0), (true, 0), (false, 0)]
        );
        for budget in 0..40 {
            let a = allocate(&[10, 1, 0, 5, 7], budget);
            let used: usize = a.iter().map(|(h, r)| usize::from(*h) + r).sum();
            assert_eq!(used, budget.min(5 + 23));
        }
    }

    #[test]
    fn stacks_fit_sensibly() {
        let frames = strs(&[
            "__lll_lock_wait",
            "worker_update (lock_hold.c:45)",
            "run_worker (lock_hold.c:80)",
            "start_thread (pthread_create.c:442)",
        ]);
        assert_eq!(
            fit_stack(&frames, 200),
            "worker_update (lock_hold.c:45) <- run_worker (lock_hold.c:80) <- start_thread (pthread_create.c:442)"
        );
        assert_eq!(
            fit_stack(&frames, 68),
            "worker_update (lock_hold.c:45) <- run_worker (lock_hold.c:80) <- …+1"
        );
        assert_eq!(
            fit_stack(&frames, 67),
            "worker_update (lock_hold.c:45) <- …+2"
        );
        assert_eq!(
            fit_stack(&frames, 40),
            "worker_update (lock_hold.c:45) <- …+2"
        );
        assert_eq!(fit_stack(&frames, 30), "worker_update (lock_hold.c:45)");
        // A leaf too long for the room keeps its end: the method name and its line.
        assert_eq!(fit_stack(&frames, 20), "…te (lock_hold.c:45)");
        assert_eq!(fit_stack(&[], 10), "?");
        for room in 0..120 {
            assert!(
                text_width(&fit_stack(&frames, room)) <= room.max(1),
                "{room}"
            );
        }
    }

    #[test]
    fn text_helpers() {
        assert_eq!(fit_end("abcdef", 4), "abc…");
        assert_eq!(fit_end("abc", 3), "abc");
        assert_eq!(fit_start("abcdef", 4), "…def");
        assert_eq!(fit_end("名前名前", 5), "名前…");
        assert_eq!(text_width("名前"), 4);
        assert_eq!(clean("a\x1b[2Jb\n"), "a?[2Jb?");
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(time_of_day("2026-11-26T20:39:01.123Z"), "20:39:01");
        assert_eq!(time_of_day("yesterday"), "yesterday");
        assert_eq!(uptime(Duration::from_secs(7530)), "2h05m30s");
    }

    #[test]
    fn deaths_from_alerts() {
        // Built from the JSON contract, so the test does not depend on the struct's field list.
        let alert = |kind_fields: &str| {
            Alert::from_json_line(&format!(
                r#"{{"kind":{kind_fields},"time":"2026-11-26T20:39:01.123Z","pid":7,"tid":8,"comm":"w","stack":["runtime.gopanic (panic.go:1)","main.handler (main.go:42)"]}}"#
            ))
            .unwrap()
        };
        let d = Death::from_alert(&alert(
            r#""thread_exit","exit_code":0,"signal":"SIGSEGV","lifetime_ns":null,"created_by":["clone3","start_workers (t.c:9)"],"count":1"#,
        ))
        .unwrap();
        assert_eq!((d.kind, d.pid, d.tid), (DeathKind::ThreadExit, 7, 8));
        assert_eq!(d.time, "2026-11-26T20:39:01.123Z");
        assert_eq!(d.summary, "SIGSEGV; created by start_workers (t.c:9)");
        let d = Death::from_alert(&alert(
            r#""process_exit","exit_code":2,"signal":null,"by_tid":8,"message":"all goroutines are asleep - deadlock!""#,
        ))
        .unwrap();
        assert_eq!(d.kind, DeathKind::ProcessExit);
        assert_eq!(
            d.summary,
            "exit code 2: all goroutines are asleep - deadlock!"
        );
        let d = Death::from_alert(&alert(
            r#""go_panic","goid":9,"message":"boom","recovered":true"#,
        ))
        .unwrap();
        assert_eq!(d.kind, DeathKind::GoPanic);
        assert_eq!(
            d.summary,
            "goroutine 9 panicked (\"boom\") in main.handler (main.go:42); recovered"
        );
        let wait = alert(
            r#""lock_wait","duration_ns":1,"uaddr":"0x10","owner_tid":null,"waker_tid":null,"waker_comm":null,"waker_stack":[]"#,
        );
        assert!(Death::from_alert(&wait).is_none());
    }

    #[test]
    fn status_line_under_the_header() {
        let lines = render_lines(
            &busy(),
            &["observer: stall tid 1"],
            Some("symbolizing x... | 45%"),
            80,
            30,
        );
        // Title, one line of counters at 80 columns, then the status.
        assert_eq!(lines[2], "working: symbolizing x... | 45%");
        assert!(lines.iter().any(|l| l == "  stall tid 1"), "{lines:?}");
    }

    #[test]
    fn frames_never_scroll_the_screen() {
        let lines = strs(&["title", "a", "b"]);
        let full = frame_bytes(&lines, 10, 3, false);
        assert!(full.starts_with(BEGIN_FRAME) && full.ends_with(END_FRAME));
        assert!(
            !full.contains("\x1b[2J"),
            "no full clear when the size did not change"
        );
        assert_eq!(full.matches("\r\n").count(), 2, "{full:?}");
        assert!(full.contains("\x1b[7mtitle     \x1b[0m"));
        assert!(!full.contains("\x1b[J"));
        let short = frame_bytes(&lines, 10, 5, true);
        assert!(short.contains("\x1b[2J"));
        assert!(short.contains("b\r\n\x1b[J"), "{short:?}");
    }

    #[test]
    fn render_is_fast() {
        let mut s = busy();
        for i in 0..50 {
            let frames: Vec<String> = (0..30)
                .map(|d| format!("crate::module::function_{d} (file_{d}.rs:{i})"))
                .collect();
            s.top_stacks.push(stack(
                &format!("worker-{i}"),
                &frames.iter().map(String::as_str).collect::<Vec<_>>(),
                i,
                i,
            ));
        }
        let t0 = std::time::Instant::now();
        let n = 200;
        for _ in 0..n {
            std::hint::black_box(render(&s, 160, 50));
        }
        let per = t0.elapsed() / n;
        eprintln!("render of 52 stacks x 30 frames at 160x50: {per:?}");
        // Generous for an unoptimized test build; release measures far below 1 ms.
        assert!(per < Duration::from_millis(20), "{per:?}");
    }

    #[test]
    fn should_run_rules() {
        assert!(should_run(true, true, Some("xterm-256color")));
        assert!(!should_run(false, true, Some("xterm")));
        assert!(!should_run(true, false, Some("xterm")));
        assert!(!should_run(true, true, Some("dumb")));
        assert!(!should_run(true, true, None));
    }

    // ---- the real terminal path, on a pseudo-terminal ----

    /// The live view is one per process (`ACTIVE_FD`): terminal tests take turns.
    static TERMINAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    struct Pty {
        master: RawFd,
        slave: RawFd,
    }

    impl Pty {
        fn open(cols: u16, rows: u16, ixon: bool) -> Pty {
            let (mut master, mut slave) = (-1, -1);
            let ws = libc::winsize {
                ws_row: rows,
                ws_col: cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            // SAFETY: out-parameters for two fds; null name and termios, our winsize.
            let rc = unsafe {
                libc::openpty(
                    &mut master,
                    &mut slave,
                    std::ptr::null_mut(),
                    std::ptr::null(),
                    &ws,
                )
            };
            assert_eq!(rc, 0, "openpty: {}", io::Error::last_os_error());
            // Raw: the bytes read on the master are exactly the bytes written.
            unsafe {
                let mut t: libc::termios = std::mem::zeroed();
                assert_eq!(libc::tcgetattr(slave, &mut t), 0);
                libc::cfmakeraw(&mut t);
                if ixon {
                    t.c_iflag |= libc::IXON;
                }
                assert_eq!(libc::tcsetattr(slave, libc::TCSANOW, &t), 0);
            }
            Pty { master, slave }
        }

        /// Everything readable on the master within `quiet` of the last byte.
        fn read_all(&self, quiet: Duration) -> String {
            let mut out = Vec::new();
            let mut buf = [0u8; 65536];
            loop {
                let mut p = libc::pollfd {
                    fd: self.master,
                    events: libc::POLLIN,
                    revents: 0,
                };
                let rc = unsafe { libc::poll(&mut p, 1, quiet.as_millis() as i32) };
                if rc <= 0 {
                    break;
                }
                let n = unsafe { libc::read(self.master, buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n as usize]);
            }
            String::from_utf8_lossy(&out).into_owned()
        }
    }

    impl Drop for Pty {
        fn drop(&mut self) {
            unsafe {
                libc::close(self.slave);
                libc::close(self.master);
            }
        }
    }

    #[test]
    fn draws_on_a_real_terminal_and_restores_it() {
        let _turn = TERMINAL.lock().unwrap_or_else(|e| e.into_inner());
        let pty = Pty::open(70, 20, false);
        assert_eq!(terminal_size(pty.slave), Some((70, 20)));
        assert!(LiveTerminal::on_fd(pty.slave, true, Some("dumb")).is_none());
        assert!(LiveTerminal::on_fd(pty.slave, false, Some("xterm")).is_none());
        assert!(!is_active());

        let mut term =
            LiveTerminal::on_fd(pty.slave, true, Some("xterm")).expect("a pty is a terminal");
        assert!(is_active());
        assert!(
            LiveTerminal::on_fd(pty.slave, true, Some("xterm")).is_none(),
            "one live view at a time"
        );
        assert_eq!(term.size(), (70, 20));
        term.note("observer: stall      tid 9 (w) blocked 2s".into());
        term.draw(&busy()).unwrap();
        term.draw(&busy()).unwrap();
        let drawn = pty.read_all(Duration::from_millis(100));
        assert!(drawn.starts_with(ENTER), "{drawn:?}");
        assert!(drawn.contains("observer watch · pid 4242 (bank)"));
        assert!(drawn.contains("stall      tid 9 (w) blocked 2s"));
        assert_eq!(drawn.matches(BEGIN_FRAME).count(), 2);
        assert_eq!(
            drawn.matches("\x1b[2J").count(),
            2,
            "entry clear + first frame only: {drawn:?}"
        );
        // Each frame: at most 19 line breaks on a 20-row screen.
        for frame in drawn.split(BEGIN_FRAME).skip(1) {
            assert!(frame.matches("\r\n").count() <= 19);
            for line in frame.split("\r\n") {
                let visible: String = line
                    .replace("\x1b[2K", "")
                    .replace("\x1b[7m", "")
                    .replace("\x1b[0m", "")
                    .replace("\x1b[H", "")
                    .replace("\x1b[J", "")
                    .replace("\x1b[2J", "")
                    .replace(END_FRAME, "");
                assert!(visible.chars().count() <= 70, "{visible:?}");
            }
        }
        assert!(!drawn.contains(std::str::from_utf8(LEAVE).unwrap()));

        term.restore();
        assert!(!is_active());
        term.restore();
        term.draw(&busy()).unwrap();
        drop(term);
        let after = pty.read_all(Duration::from_millis(100));
        assert_eq!(
            after.as_bytes(),
            LEAVE,
            "restored exactly once, nothing drawn after"
        );
    }

    #[test]
    fn emergency_restore_then_drop_restores_once() {
        let _turn = TERMINAL.lock().unwrap_or_else(|e| e.into_inner());
        let pty = Pty::open(40, 10, false);
        let term = LiveTerminal::on_fd(pty.slave, true, Some("xterm")).unwrap();
        let _ = pty.read_all(Duration::from_millis(50));
        emergency_restore();
        drop(term);
        assert_eq!(pty.read_all(Duration::from_millis(100)).as_bytes(), LEAVE);
    }

    #[test]
    fn never_blocks_on_a_stopped_terminal() {
        let _turn = TERMINAL.lock().unwrap_or_else(|e| e.into_inner());
        let pty = Pty::open(200, 60, true);
        let mut term = LiveTerminal::on_fd(pty.slave, true, Some("xterm")).unwrap();
        // Ctrl-S from the keyboard: the terminal stops taking output.
        assert_eq!(
            unsafe { libc::write(pty.master, b"\x13".as_ptr().cast(), 1) },
            1
        );
        std::thread::sleep(Duration::from_millis(50));
        let _ = pty.read_all(Duration::from_millis(50));
        let mut big = busy();
        for i in 0..200 {
            big.top_stacks
                .push(stack(&format!("t{i}"), &["f (a.c:1)"], 1, 1));
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = std::thread::spawn(move || {
            for _ in 0..50 {
                let _ = term.draw(&big);
            }
            let _ = tx.send(());
            term
        });
        let returned = rx.recv_timeout(Duration::from_secs(5));
        // Ctrl-Q lets output flow again, whatever happened, so the thread can end.
        assert_eq!(
            unsafe { libc::write(pty.master, b"\x11".as_ptr().cast(), 1) },
            1
        );
        let drained = pty.read_all(Duration::from_millis(200));
        let term = handle.join().unwrap();
        assert!(returned.is_ok(), "draw blocked on a stopped terminal");
        assert!(
            drained.len() < 50 * 2000,
            "frames were skipped, not queued: {} bytes",
            drained.len()
        );
        drop(term);
    }
}
