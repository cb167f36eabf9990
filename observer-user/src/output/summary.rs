//! The end-of-run summary printed to stderr: where time was blocked, what was alerted, which
//! threads died, and what was lost.
//!
//! Loss is always stated with its numbers, zero or not: a summary that silently undercounts is
//! worse than none.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::detect::thread_exits::SiteCount;
use crate::output::long_waits::{LongWaitContext, LongWaits};
use crate::output::profile::TopStack;
use crate::stacks::own_code::own_frames;
use crate::util::duration::human;
use crate::util::stderr::escape;

/// Innermost frames shown per blocked stack: enough to get past the futex/mutex plumbing to the
/// caller, short enough for one line.
const FRAMES_SHOWN: usize = 4;

/// Idle stacks listed under the idle line.
const IDLE_SHOWN: usize = 3;

/// At most this many thread-death sites are listed; the rest are totalled.
const MAX_SITES: usize = 10;

#[derive(Debug, Clone, Default)]
pub struct SummaryInput {
    /// How to name the target, e.g. `bank (pid 100)`.
    pub process: String,
    /// Heaviest blocked stacks (lock and kernel waits), heaviest first (e.g.
    /// `BlockedProfile::top`).
    pub top_stacks: Vec<TopStack>,
    /// Idle time in the profile, kept apart from the blocked stacks.
    pub idle: IdleTime,
    /// Alerts emitted, by `kind`, in display order.
    pub alerts_by_kind: Vec<(String, u64)>,
    /// Hold episodes reported (`lock_hold` alerts) and the long waits behind them.
    pub lock_holds: u64,
    pub lock_hold_waiters: u64,
    /// Long lock waits in no episode (too many locks held at once).
    pub lock_waits_ungrouped: u64,
    /// Thread deaths that passed the rule, by creation site (e.g. `ThreadExitTracker::site_counts`).
    pub thread_deaths: Vec<SiteCount>,
    /// Events the kernel could not deliver (ring buffer full).
    pub events_dropped: u64,
    /// In-kernel aggregate updates lost because the map was full.
    pub agg_dropped: u64,
    /// Waits not tracked because the in-flight table was full.
    pub inflight_dropped: u64,
    /// Samples whose stack could not be captured or found.
    pub stacks_missing: u64,
    /// Waits that began while observing.
    pub waits_seen: u64,
    /// Waits longer than the threshold, by what was made of them.
    pub long_waits: LongWaits,
    /// `--report-idle` is on.
    pub report_idle: bool,
    pub folded_path: Option<PathBuf>,
    pub alerts_path: Option<PathBuf>,
    /// Ring-buffer events that arrived but could not be decoded.
    pub undecodable_events: u64,
}

/// Idle time in the profile (waiting for work or time): its total and heaviest stacks.
#[derive(Debug, Clone, Default)]
pub struct IdleTime {
    pub weight_ns: u64,
    pub count: u64,
    /// Heaviest first (e.g. `BlockedProfile::top_idle`).
    pub top: Vec<TopStack>,
}

impl SummaryInput {
    fn lost_anything(&self) -> bool {
        self.events_dropped > 0
            || self.agg_dropped > 0
            || self.inflight_dropped > 0
            || self.undecodable_events > 0
    }
}

/// Renders the summary as text lines, each ending in `'\n'`.
pub fn render(input: &SummaryInput) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_summary(&mut out, input);
    out
}

fn write_summary(out: &mut String, input: &SummaryInput) -> std::fmt::Result {
    writeln!(out, "observer summary for {}", escape(&input.process))?;
    let ctx = LongWaitContext {
        lock_holds: input.lock_holds,
        lock_waits_ungrouped: input.lock_waits_ungrouped,
        report_idle: input.report_idle,
    };
    writeln!(
        out,
        "waits observed: {}, {}",
        input.waits_seen,
        input.long_waits.describe(ctx)
    )?;

    if input.top_stacks.is_empty() {
        writeln!(out, "top blocked stacks: none recorded")?;
    } else {
        writeln!(
            out,
            "top blocked stacks (total blocked time, waits, stack innermost first):"
        )?;
        for s in &input.top_stacks {
            write_stack(out, s)?;
        }
    }
    let idle = &input.idle;
    if idle.weight_ns > 0 || idle.count > 0 {
        writeln!(
            out,
            "idle (waiting for work or time, not blocked; left out above): {} in {} waits{}",
            human(Duration::from_nanos(idle.weight_ns)),
            idle.count,
            if idle.top.is_empty() {
                ""
            } else {
                ", heaviest:"
            }
        )?;
        for s in idle.top.iter().take(IDLE_SHOWN) {
            write_stack(out, s)?;
        }
    }

    let alerts: Vec<String> = input
        .alerts_by_kind
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect();
    if alerts.is_empty() {
        writeln!(out, "alerts: none")?;
    } else {
        writeln!(out, "alerts: {}", alerts.join(", "))?;
    }
    if input.lock_holds > 0 || input.lock_waits_ungrouped > 0 {
        write!(
            out,
            "lock holds: {} (one alert each), {} waits behind them",
            input.lock_holds, input.lock_hold_waiters
        )?;
        if input.lock_waits_ungrouped > 0 {
            write!(
                out,
                "; {} long lock waits in no hold (too many locks held at once)",
                input.lock_waits_ungrouped
            )?;
        }
        writeln!(out)?;
    }

    write_thread_deaths(out, &input.thread_deaths, FRAMES_SHOWN)?;

    writeln!(
        out,
        "drops: {} events dropped (ring buffer full), {} aggregate updates lost (map full), \
         {} waits untracked (in-flight table full), {} samples without a stack, {} undecodable events",
        input.events_dropped,
        input.agg_dropped,
        input.inflight_dropped,
        input.stacks_missing,
        input.undecodable_events
    )?;
    if input.lost_anything() {
        writeln!(
            out,
            "  data was lost: the counts and times above are lower bounds, and some alerts may be missing"
        )?;
    }

    if let Some(p) = &input.folded_path {
        writeln!(
            out,
            "folded stacks: {} (render: flamegraph.pl --countname=ns {} > blocked.svg)",
            escape(&p.display().to_string()),
            escape(&p.display().to_string())
        )?;
    }
    if let Some(p) = &input.alerts_path {
        writeln!(
            out,
            "alerts (JSON lines): {}",
            escape(&p.display().to_string())
        )?;
    }
    Ok(())
}

fn write_stack(out: &mut String, s: &TopStack) -> std::fmt::Result {
    writeln!(
        out,
        "  {:>8} {:>8}x  {} [{}]: {}",
        human(Duration::from_nanos(s.weight_ns)),
        s.count,
        escape(&s.process),
        escape(&s.thread),
        stack_text(&s.frames)
    )
}

/// The program's own frames, after what the wait was (`[lock: pthread_mutex]`,
/// `[sync.Mutex.Lock]`, `[select]`) when the profile put that innermost.
fn stack_text(frames: &[String]) -> String {
    match frames.split_first() {
        Some((label, rest)) if is_label(label) && !rest.is_empty() => format!(
            "{} {}",
            escape(label),
            frames_text(own_frames(rest), FRAMES_SHOWN)
        ),
        _ => frames_text(own_frames(frames), FRAMES_SHOWN),
    }
}

fn is_label(frame: &str) -> bool {
    frame.starts_with('[') && frame.ends_with(']') && frame != "[unknown]"
}

fn write_thread_deaths(
    out: &mut String,
    sites: &[SiteCount],
    frames_shown: usize,
) -> std::fmt::Result {
    let total: u64 = sites.iter().map(|s| s.exits).sum();
    if total == 0 {
        return writeln!(out, "thread deaths: none");
    }
    let site_word = if sites.len() == 1 { "site" } else { "sites" };
    writeln!(
        out,
        "thread deaths: {total} from {} creation {site_word} (first of each alerted):",
        sites.len()
    )?;
    for s in sites.iter().take(MAX_SITES) {
        // Start at the code that asked for the thread, past clone3 / pthread_create.
        let app_frames = own_frames(&s.created_by).to_vec();
        let origin = if app_frames.is_empty() {
            format!(
                "thread {:?}, creator unknown ({})",
                s.comm,
                s.unknown
                    .unwrap_or(crate::detect::thread_exits::UnknownCreator::BeforeAttach)
                    .describe()
            )
        } else {
            format!(
                "thread {:?}, created by {}",
                s.comm,
                frames_text(&app_frames, frames_shown)
            )
        };
        let who = if s.tgid == crate::detect::thread_exits::EXITED_PROCESSES {
            "exited processes".to_string()
        } else {
            format!("pid {}", s.tgid)
        };
        writeln!(out, "  {:>8}x  {who}: {origin}", s.exits)?;
    }
    if sites.len() > MAX_SITES {
        let rest = &sites[MAX_SITES..];
        let rest_exits: u64 = rest.iter().map(|s| s.exits).sum();
        writeln!(
            out,
            "  ... and {rest_exits} more from {} other sites",
            rest.len()
        )?;
    }
    Ok(())
}

fn frames_text(frames: &[String], shown: usize) -> String {
    if frames.is_empty() {
        return "[no stack]".to_string();
    }
    let n = if shown == 0 {
        frames.len()
    } else {
        shown.min(frames.len())
    };
    let mut text = frames[..n].join(" <- ");
    if n < frames.len() {
        text.push_str(" <- ...");
    }
    escape(&text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(f: &[&str]) -> Vec<String> {
        f.iter().map(|s| s.to_string()).collect()
    }

    fn base() -> SummaryInput {
        SummaryInput {
            process: "bank (pid 100)".into(),
            ..SummaryInput::default()
        }
    }

    #[test]
    fn empty_run_states_everything_including_zero_drops() {
        let text = render(&base());
        assert_eq!(
            text,
            "observer summary for bank (pid 100)\n\
             waits observed: 0, 0 over the threshold\n\
             top blocked stacks: none recorded\n\
             alerts: none\n\
             thread deaths: none\n\
             drops: 0 events dropped (ring buffer full), 0 aggregate updates lost (map full), \
             0 waits untracked (in-flight table full), 0 samples without a stack, 0 undecodable events\n"
        );
    }

    #[test]
    fn names_from_the_target_stay_on_their_line() {
        let input = SummaryInput {
            process: "evil\u{1b}]0;owned\u{7} (pid 7)".into(),
            top_stacks: vec![TopStack {
                process: "evil".into(),
                thread: "w\nfake line".into(),
                frames: frames(&["f\u{1b}[31m (x.c:1)"]),
                weight_ns: 1,
                count: 1,
            }],
            ..base()
        };
        let text = render(&input);
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text}"
        );
        assert!(text.contains("evil\\x1b]0;owned\\x07 (pid 7)"), "{text}");
        assert!(
            text.contains("[w\\x0afake line]: f\\x1b[31m (x.c:1)"),
            "{text}"
        );
        assert!(!text.lines().any(|l| l.starts_with("fake line")), "{text}");
    }

    #[test]
    fn full_run() {
        let input = SummaryInput {
            waits_seen: 12_034,
            long_waits: LongWaits {
                lock: 9,
                idle: 8,
                ..LongWaits::default()
            },
            top_stacks: vec![
                TopStack {
                    process: "bank".into(),
                    thread: "worker".into(),
                    frames: frames(&[
                        "__futex_abstimed_wait_common",
                        "__lll_lock_wait",
                        "pthread_mutex_lock",
                        "transfer_a_to_b (bank.c:14)",
                        "worker (bank.c:30)",
                    ]),
                    weight_ns: 5_020_000_000,
                    count: 1234,
                },
                TopStack {
                    process: "bank".into(),
                    thread: "main".into(),
                    frames: vec![],
                    weight_ns: 312_000_000,
                    count: 1,
                },
            ],
            alerts_by_kind: vec![
                ("deadlock".into(), 1),
                ("lock_hold".into(), 3),
                ("stall".into(), 0),
            ],
            thread_deaths: vec![
                SiteCount {
                    tgid: 100,
                    created_by: frames(&[
                        "clone3",
                        "pthread_create@@GLIBC_2.34 (pthread_create.c:620)",
                        "spawn_handler (srv.c:40)",
                        "accept_loop (srv.c:80)",
                        "a",
                        "b",
                        "main",
                    ]),
                    unknown: None,
                    comm: "handler".into(),
                    exits: 56,
                },
                SiteCount {
                    tgid: 100,
                    created_by: vec![],
                    unknown: Some(crate::detect::thread_exits::UnknownCreator::BeforeAttach),
                    comm: "io".into(),
                    exits: 1,
                },
            ],
            lock_holds: 3,
            lock_hold_waiters: 8,
            events_dropped: 12,
            stacks_missing: 40,
            folded_path: Some("out.folded".into()),
            alerts_path: Some("alerts.jsonl".into()),
            ..base()
        };
        let text = render(&input);
        let expected = "observer summary for bank (pid 100)\n\
waits observed: 12034, 17 over the threshold: 9 lock waits (in 3 lock_hold alerts), 8 idle \
(not reported without --report-idle)\n\
top blocked stacks (total blocked time, waits, stack innermost first):\n\
\x20    5.02s     1234x  bank [worker]: transfer_a_to_b (bank.c:14) <- worker (bank.c:30)\n\
\x20    312ms        1x  bank [main]: [no stack]\n\
alerts: 1 deadlock, 3 lock_hold\n\
lock holds: 3 (one alert each), 8 waits behind them\n\
thread deaths: 57 from 2 creation sites (first of each alerted):\n\
\x20       56x  pid 100: thread \"handler\", created by spawn_handler (srv.c:40) <- accept_loop (srv.c:80) <- a <- b <- ...\n\
\x20        1x  pid 100: thread \"io\", creator unknown (started before observer attached)\n\
drops: 12 events dropped (ring buffer full), 0 aggregate updates lost (map full), \
0 waits untracked (in-flight table full), 40 samples without a stack, 0 undecodable events\n\
\x20 data was lost: the counts and times above are lower bounds, and some alerts may be missing\n\
folded stacks: out.folded (render: flamegraph.pl --countname=ns out.folded > blocked.svg)\n\
alerts (JSON lines): alerts.jsonl\n";
        assert_eq!(text, expected);
    }

    fn stack(thread: &str, f: &[&str], ms: u64, count: u64) -> TopStack {
        TopStack {
            process: "srv".into(),
            thread: thread.into(),
            frames: frames(f),
            weight_ns: ms * 1_000_000,
            count,
        }
    }

    /// Idle time (a pool waiting for work, Go select) is one line of its own after the
    /// blocked stacks, however much larger it is.
    #[test]
    fn idle_time_is_apart_from_the_blocked_stacks() {
        let input = SummaryInput {
            top_stacks: vec![stack(
                "goroutines",
                &[
                    "[sync.Mutex.Lock]",
                    "runtime.gopark (proc.go:1)",
                    "sync.(*Mutex).Lock (mutex.go:2)",
                    "main.lookupCache (main.go:35)",
                ],
                1400,
                3,
            )],
            idle: IdleTime {
                weight_ns: 95_000_000_000,
                count: 5100,
                top: vec![
                    stack(
                        "goroutines",
                        &["[select]", "main.serve (main.go:9)"],
                        60_000,
                        100,
                    ),
                    stack(
                        "goroutines",
                        &["[IO wait]", "internal/poll.x", "net.Accept"],
                        30_000,
                        5,
                    ),
                    stack(
                        "goroutines",
                        &["[sleep]", "time.Sleep", "main.tick"],
                        4_000,
                        4000,
                    ),
                    stack("goroutines", &["[chan receive]", "main.drain"], 1_000, 995),
                ],
            },
            long_waits: LongWaits {
                go_sync: 3,
                go_idle: 40,
                ..LongWaits::default()
            },
            alerts_by_kind: vec![("goroutine_wait".into(), 3)],
            ..base()
        };
        let text = render(&input);
        let expected = "observer summary for bank (pid 100)\n\
waits observed: 0, 43 over the threshold: 3 goroutine sync waits (in goroutine_wait alerts, one per hold), \
40 goroutine idle waits (select, channels, I/O, sleep: not reported)\n\
top blocked stacks (total blocked time, waits, stack innermost first):\n\
\x20     1.4s        3x  srv [goroutines]: [sync.Mutex.Lock] main.lookupCache (main.go:35)\n\
idle (waiting for work or time, not blocked; left out above): 1m35s in 5100 waits, heaviest:\n\
\x20    1m00s      100x  srv [goroutines]: [select] main.serve (main.go:9)\n\
\x20      30s        5x  srv [goroutines]: [IO wait] net.Accept\n\
\x20       4s     4000x  srv [goroutines]: [sleep] main.tick\n\
alerts: 3 goroutine_wait\n";
        assert!(text.starts_with(expected), "{text}");
        // No idle time, no idle line.
        assert!(!render(&base()).contains("idle"));
    }

    #[test]
    fn any_single_loss_is_flagged() {
        for set in [
            |i: &mut SummaryInput| i.events_dropped = 1,
            |i: &mut SummaryInput| i.agg_dropped = 1,
            |i: &mut SummaryInput| i.inflight_dropped = 1,
            |i: &mut SummaryInput| i.undecodable_events = 1,
        ] {
            let mut input = base();
            set(&mut input);
            assert!(render(&input).contains("data was lost"));
        }
        assert!(!render(&base()).contains("data was lost"));
        // A wait without a stack still has its time counted: not a loss.
        let mut input = base();
        input.stacks_missing = 1;
        assert!(!render(&input).contains("data was lost"));
    }

    #[test]
    fn lock_holds_are_counted_and_ungrouped_waits_stated() {
        assert!(!render(&base()).contains("lock holds"));
        let input = SummaryInput {
            lock_holds: 2,
            lock_hold_waiters: 6,
            lock_waits_ungrouped: 4,
            ..base()
        };
        assert!(render(&input).contains(
            "lock holds: 2 (one alert each), 6 waits behind them; 4 long lock waits in no hold \
             (too many locks held at once)\n"
        ));
    }

    #[test]
    fn many_sites_are_totalled() {
        let input = SummaryInput {
            thread_deaths: (0..13)
                .map(|i| SiteCount {
                    tgid: 1,
                    created_by: frames(&[&format!("site{i}")]),
                    unknown: None,
                    comm: "t".into(),
                    exits: 2,
                })
                .collect(),
            ..base()
        };
        let text = render(&input);
        assert!(
            text.contains("thread deaths: 26 from 13 creation sites"),
            "{text}"
        );
        assert!(text.contains("... and 6 more from 3 other sites"), "{text}");
        assert_eq!(text.matches("created by site").count(), MAX_SITES);
    }

    #[test]
    fn whole_stack_when_frames_shown_is_zero() {
        assert_eq!(frames_text(&frames(&["a", "b", "c"]), 0), "a <- b <- c");
        assert_eq!(frames_text(&frames(&["a", "b"]), 5), "a <- b");
    }
}
