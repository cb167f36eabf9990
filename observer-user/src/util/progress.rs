//! Progress of long steps (symbolizing a large binary, writing a report) on stderr.
//!
//! Silent for steps that end within [`QUIET_FOR`]: most steps are fast, and a progress line that
//! flashes for 50 ms is noise. After that, on a terminal, one line redrawn at most 10 times a
//! second (`observer: symbolizing /usr/bin/foo (120 MiB)... | 45% 3s`); elsewhere (a log file,
//! CI) one line when the step turns out to be long and one when it ends. While the live view
//! owns the terminal (see [`crate::util::tty`]) the line goes into its status line instead of
//! stderr: the live view reads it with [`live_status`].
//!
//! A background thread does the clock checks and the drawing, so [`Progress::inc`] is one
//! relaxed atomic add (cheap in hot loops), and the spinner keeps turning while the step sits
//! in one long call that cannot report progress (blazesym parsing DWARF, inferno drawing).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::util::duration::human;
use crate::util::number::thousands;
use crate::util::tty;

/// Steps shorter than this print nothing.
pub const QUIET_FOR: Duration = Duration::from_millis(300);
/// Minimum time between two redraws on a terminal.
pub const REDRAW_EVERY: Duration = Duration::from_millis(100);

static QUIET: AtomicBool = AtomicBool::new(false);
/// The line of the step in progress while the live view is on (it shows it under its header).
static LIVE_STATUS: Mutex<Option<String>> = Mutex::new(None);

/// `--quiet`: no progress output at all.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// The step in progress, for the live view's status line.
pub fn live_status() -> Option<String> {
    LIVE_STATUS.lock().ok().and_then(|s| s.clone())
}

fn set_live_status(line: Option<String>) {
    if let Ok(mut s) = LIVE_STATUS.lock() {
        *s = line;
    }
}

/// A long step's progress. Drop or [`Progress::finish`] ends it.
pub struct Progress {
    shared: Arc<Shared>,
    ticker: Option<JoinHandle<()>>,
}

struct Shared {
    label: String,
    total: Option<u64>,
    done: AtomicU64,
    started: Instant,
    stop: Mutex<bool>,
    wake: Condvar,
    view: Mutex<View>,
}

impl Progress {
    /// Starts timing a step; `total` (when known) turns the count into a percentage.
    pub fn start(label: &str, total: Option<u64>) -> Progress {
        let mode = if QUIET.load(Ordering::Relaxed) {
            Mode::Silent
        } else if tty::screen_owned() {
            Mode::Live
        } else if tty::stderr_is_capable_terminal() {
            Mode::Tty {
                width: tty::terminal_size(libc::STDERR_FILENO).map_or(80, |s| s.0),
            }
        } else {
            Mode::Plain
        };
        let shared = Arc::new(Shared {
            // Labels name a target's binaries: escaped like everything else on stderr.
            label: crate::util::stderr::escape(label).into_owned(),
            total,
            done: AtomicU64::new(0),
            started: Instant::now(),
            stop: Mutex::new(false),
            wake: Condvar::new(),
            view: Mutex::new(View::new(mode)),
        });
        let ticker = if mode == Mode::Silent {
            None
        } else {
            let s = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("observer-progress".into())
                .spawn(move || tick_until_stopped(&s))
                .ok()
        };
        Progress { shared, ticker }
    }

    /// Counts `n` more units done.
    #[inline]
    pub fn inc(&self, n: u64) {
        self.shared.done.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets the units done.
    #[inline]
    pub fn set(&self, n: u64) {
        self.shared.done.store(n, Ordering::Relaxed);
    }

    /// Ends the step: `... done in 1.2s` if anything was shown.
    pub fn finish(mut self) {
        self.end();
    }

    fn end(&mut self) {
        let Some(ticker) = self.ticker.take() else {
            return;
        };
        if let Ok(mut stop) = self.shared.stop.lock() {
            *stop = true;
        }
        self.shared.wake.notify_all();
        let _ = ticker.join();
        let s = &self.shared;
        let action = match s.view.lock() {
            Ok(mut v) => v.finish(&s.label, s.started.elapsed()),
            Err(_) => Action::Nothing,
        };
        perform(action);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.end();
    }
}

fn tick_until_stopped(s: &Shared) {
    let mut wait = QUIET_FOR;
    loop {
        let Ok(stop) = s.stop.lock() else { return };
        let Ok((stop, _)) = s.wake.wait_timeout_while(stop, wait, |stop| !*stop) else {
            return;
        };
        if *stop {
            return;
        }
        drop(stop);
        let action = match s.view.lock() {
            Ok(mut v) => v.tick(
                &s.label,
                s.total,
                s.done.load(Ordering::Relaxed),
                s.started.elapsed(),
            ),
            Err(_) => return,
        };
        perform(action);
        wait = REDRAW_EVERY;
    }
}

fn perform(action: Action) {
    match action {
        Action::Nothing => {}
        Action::Write(text) => {
            use std::io::Write as _;
            let _ = std::io::stderr().write_all(text.as_bytes());
        }
        Action::Status(line) => set_live_status(line),
    }
}

/// Where the progress goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Silent,
    /// Redrawn in place on a terminal this wide.
    Tty {
        width: u16,
    },
    /// A start line and a done line (a file or a pipe).
    Plain,
    /// The live view's status line.
    Live,
}

#[derive(Debug, PartialEq, Eq)]
enum Action {
    Nothing,
    Write(String),
    Status(Option<String>),
}

/// What to print when: pure, driven by the elapsed time passed in (tests inject it).
#[derive(Debug)]
struct View {
    mode: Mode,
    shown: bool,
    last_draw: Option<Duration>,
    spin: usize,
}

const SPINNER: [char; 4] = ['|', '/', '-', '\\'];

impl View {
    fn new(mode: Mode) -> View {
        View {
            mode,
            shown: false,
            last_draw: None,
            spin: 0,
        }
    }

    fn tick(&mut self, label: &str, total: Option<u64>, done: u64, elapsed: Duration) -> Action {
        if elapsed < QUIET_FOR || self.mode == Mode::Silent {
            return Action::Nothing;
        }
        if self
            .last_draw
            .is_some_and(|t| elapsed.saturating_sub(t) < REDRAW_EVERY)
        {
            return Action::Nothing;
        }
        let first = !self.shown;
        self.shown = true;
        self.last_draw = Some(elapsed);
        let spin = SPINNER[self.spin % SPINNER.len()];
        self.spin = self.spin.wrapping_add(1);
        match self.mode {
            Mode::Silent => Action::Nothing,
            Mode::Plain if first => Action::Write(format!("observer: {label}...\n")),
            Mode::Plain => Action::Nothing,
            Mode::Tty { width } => {
                let line = format!(
                    "observer: {label}... {spin}{} {}s",
                    amount(total, done),
                    elapsed.as_secs()
                );
                // One column short of the width: a full line would wrap and `\r` would then
                // redraw only its second half.
                let max = usize::from(width).saturating_sub(1).max(1);
                Action::Write(format!("\r\x1b[2K{}", cut(&line, max)))
            }
            Mode::Live => Action::Status(Some(format!("{label}... {spin}{}", amount(total, done)))),
        }
    }

    fn finish(&mut self, label: &str, elapsed: Duration) -> Action {
        if !self.shown {
            return Action::Nothing;
        }
        let done_line = format!("observer: {label}... done in {}", human(elapsed));
        match self.mode {
            Mode::Silent => Action::Nothing,
            Mode::Plain => Action::Write(format!("{done_line}\n")),
            Mode::Tty { .. } => Action::Write(format!("\r\x1b[2K{done_line}\n")),
            Mode::Live => Action::Status(None),
        }
    }
}

/// ` 45%`, ` 1,234` or nothing.
fn amount(total: Option<u64>, done: u64) -> String {
    match total {
        Some(t) if t > 0 => {
            let pct = (u128::from(done) * 100 / u128::from(t)).min(100);
            format!(" {pct}%")
        }
        _ if done > 0 => format!(" {}", thousands(done)),
        _ => String::new(),
    }
}

fn cut(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max_chars.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn fast_steps_print_nothing() {
        for mode in [Mode::Tty { width: 80 }, Mode::Plain, Mode::Live] {
            let mut v = View::new(mode);
            assert_eq!(v.tick("x", None, 0, ms(100)), Action::Nothing);
            assert_eq!(v.tick("x", None, 0, ms(299)), Action::Nothing);
            assert_eq!(v.finish("x", ms(299)), Action::Nothing, "{mode:?}");
        }
    }

    #[test]
    fn terminal_redraws_at_most_ten_times_a_second() {
        let mut v = View::new(Mode::Tty { width: 80 });
        let mut draws = 0;
        // Ticks every 10 ms for 2 s (faster than the ticker ever runs).
        for t in (0..2000).step_by(10) {
            if let Action::Write(s) = v.tick(
                "symbolizing /usr/bin/foo (120 MiB)",
                Some(200),
                t / 10,
                ms(t),
            ) {
                draws += 1;
                assert!(s.starts_with("\r\x1b[2K"), "{s:?}");
                assert!(!s.contains('\n'), "{s:?}");
            }
        }
        // 300 ms quiet, then one draw per 100 ms: 17 draws in [300, 2000).
        assert_eq!(draws, 17);
    }

    #[test]
    fn terminal_line_shows_label_percentage_and_elapsed() {
        let mut v = View::new(Mode::Tty { width: 80 });
        let Action::Write(s) = v.tick(
            "symbolizing /usr/bin/foo (120 MiB)",
            Some(1000),
            450,
            ms(1500),
        ) else {
            panic!("expected a line");
        };
        assert_eq!(
            s,
            "\r\x1b[2Kobserver: symbolizing /usr/bin/foo (120 MiB)... | 45% 1s"
        );
        let Action::Write(s) = v.tick("writing", None, 1234, ms(1600)) else {
            panic!("expected a line");
        };
        assert!(s.ends_with("writing... / 1,234 1s"), "{s:?}");
        let Action::Write(done) = v.finish("writing", ms(2345)) else {
            panic!("expected the done line");
        };
        assert_eq!(done, "\r\x1b[2Kobserver: writing... done in 2.35s\n");
    }

    #[test]
    fn terminal_line_never_wraps() {
        let mut v = View::new(Mode::Tty { width: 30 });
        let label = "symbolizing /usr/lib/x86_64-linux-gnu/libLLVM.so.22.1 (143 MiB)";
        let Action::Write(s) = v.tick(label, Some(10), 5, ms(400)) else {
            panic!("expected a line");
        };
        let visible = s.trim_start_matches("\r\x1b[2K");
        assert_eq!(visible.chars().count(), 29, "{visible:?}");
        assert!(visible.ends_with('…'));
    }

    #[test]
    fn plain_output_is_one_start_and_one_done_line() {
        let mut v = View::new(Mode::Plain);
        let mut out = String::new();
        for t in (0..3000).step_by(100) {
            if let Action::Write(s) = v.tick("writing report", Some(10), 5, ms(t)) {
                out.push_str(&s);
            }
        }
        if let Action::Write(s) = v.finish("writing report", ms(3000)) {
            out.push_str(&s);
        }
        assert_eq!(
            out,
            "observer: writing report...\nobserver: writing report... done in 3s\n"
        );
    }

    #[test]
    fn live_view_gets_a_status_then_none() {
        let mut v = View::new(Mode::Live);
        assert_eq!(
            v.tick("symbolizing x", Some(4), 1, ms(500)),
            Action::Status(Some("symbolizing x... | 25%".into()))
        );
        assert_eq!(v.finish("symbolizing x", ms(900)), Action::Status(None));
    }

    #[test]
    fn silent_prints_nothing() {
        let mut v = View::new(Mode::Silent);
        assert_eq!(v.tick("x", Some(1), 0, ms(5000)), Action::Nothing);
        assert_eq!(v.finish("x", ms(6000)), Action::Nothing);
    }

    #[test]
    fn percentage_is_clamped_and_overflow_safe() {
        assert_eq!(amount(Some(10), 25), " 100%");
        assert_eq!(amount(Some(u64::MAX), u64::MAX / 2), " 49%");
        assert_eq!(amount(Some(0), 3), " 3");
        assert_eq!(amount(None, 12345), " 12,345");
        assert_eq!(amount(None, 0), "");
    }

    #[test]
    fn quick_step_end_to_end_is_silent_and_fast() {
        // Not a terminal under the test harness: Plain mode, and nothing to print in 1 ms.
        let t0 = Instant::now();
        let p = Progress::start("quick", Some(100));
        for _ in 0..100 {
            p.inc(1);
        }
        assert_eq!(p.shared.done.load(Ordering::Relaxed), 100);
        p.finish();
        assert!(
            t0.elapsed() < QUIET_FOR,
            "finish must wake the ticker at once"
        );
    }

    #[test]
    fn inc_is_cheap() {
        let p = Progress::start("hot loop", None);
        let t0 = Instant::now();
        for _ in 0..1_000_000 {
            p.inc(std::hint::black_box(1));
        }
        let per_call = t0.elapsed() / 1_000_000;
        assert_eq!(p.shared.done.load(Ordering::Relaxed), 1_000_000);
        // A relaxed atomic add is a few ns; the bound only catches a clock read or a lock per call.
        assert!(per_call < Duration::from_nanos(200), "{per_call:?} per inc");
        drop(p);
    }
}
