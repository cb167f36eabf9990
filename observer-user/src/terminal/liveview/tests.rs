//! Tests of the live view: layout on snapshots, and the screen on a pseudo-terminal.

use super::layout::*;
use super::screen::*;
use super::*;
use crate::output::alert::Alert;
use crate::output::long_waits::LongWaits;
use crate::output::profile::TopStack;
use crate::util::number::thousands;
use crate::util::tty::{screen_owned, terminal_size};
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

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
        long_waits: LongWaits {
            lock: 7,
            idle: 10,
            ..LongWaits::default()
        },
        ..Default::default()
    };
    counters.count_alert("lock_hold");
    counters.count_alert("lock_hold");
    counters.lock_holds = 2;
    counters.lock_hold_waiters = 7;
    counters.count_alert("thread_exit");
    LiveSnapshot {
        mode: "watch".into(),
        target: "pid 4242 (bank)".into(),
        uptime: Duration::from_secs(62),
        counters,
        idle_ns: 0,
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
        recent_alerts: vec![
            "observer: lock_hold  tid 4251 (maint) held pthread_mutex 0x10 1.2s".into(),
        ],
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
        lines[1]
            .contains("waits 123,456  long 17 (7 alerted, 10 idle)  alerts 3 (lock_hold 2, thread_exit 1)  holds 2 (7 waiters)  dropped 0"),
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
    assert_eq!(
        lines[a + 1],
        "  lock_hold  tid 4251 (maint) held pthread_mutex 0x10 1.2s"
    );
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
        lines[p + 2].contains("20") && lines[p + 2].contains("api") && lines[p + 2].contains("go")
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
    // The wait's label leads while the program's leaf still fits whole after it.
    let go = strs(&[
        "[sync.Mutex.Lock]",
        "runtime.gopark (proc.go:475)",
        "sync.(*Mutex).Lock (mutex.go:46)",
        "main.handleRequest (idle_pool_mutex.go:66)",
        "main.main (idle_pool_mutex.go:93)",
    ]);
    assert_eq!(
        fit_stack(&go, 70),
        "[sync.Mutex.Lock] main.handleRequest (idle_pool_mutex.go:66) <- …+1"
    );
    assert_eq!(
        fit_stack(&go, 50),
        "main.handleRequest (idle_pool_mutex.go:66) <- …+1"
    );
    assert_eq!(fit_stack(&strs(&["[select]"]), 20), "[select]");
    for room in 0..120 {
        assert!(text_width(&fit_stack(&go, room)) <= room.max(1), "{room}");
    }
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
    let a = alert(
        r#""thread_exit","exit_code":0,"signal":"SIGSEGV","lifetime_ns":null,"created_by":["clone3","start_workers (t.c:9)"],"count":1"#,
    );
    let d = Death::from_alert(&a).unwrap();
    assert_eq!(
        d.kind.as_str(),
        a.kind(),
        "the view names deaths as alerts do"
    );
    assert_eq!((d.kind, d.pid, d.tid), (DeathKind::ThreadExit, 7, 8));
    assert_eq!(d.time, "2026-11-26T20:39:01.123Z");
    assert_eq!(d.summary, "SIGSEGV; created by start_workers (t.c:9)");
    let a = alert(
        r#""process_exit","exit_code":2,"signal":null,"by_tid":8,"message":"all goroutines are asleep - deadlock!""#,
    );
    let d = Death::from_alert(&a).unwrap();
    assert_eq!(
        d.kind.as_str(),
        a.kind(),
        "the view names deaths as alerts do"
    );
    assert_eq!(d.kind, DeathKind::ProcessExit);
    assert_eq!(
        d.summary,
        "exit code 2: all goroutines are asleep - deadlock!"
    );
    let a = alert(r#""go_panic","goid":9,"message":"boom","recovered":true"#);
    let d = Death::from_alert(&a).unwrap();
    assert_eq!(
        d.kind.as_str(),
        a.kind(),
        "the view names deaths as alerts do"
    );
    assert_eq!(d.kind, DeathKind::GoPanic);
    assert_eq!(
        d.summary,
        "goroutine 9 panicked (\"boom\") in main.handler (main.go:42); recovered"
    );
    let wait = alert(
        r#""lock_hold","uaddr":"0x10","lock_kind":"lock","owner_recorded":false,"hold_ns":1,"holder_tid":null,"holder_comm":null,"holder_known_from":null,"holder_state":"unknown","holder_syscall":null,"holder_stack":[],"holder_samples":0,"release_tid":null,"release_comm":null,"release_stack":[],"waiters":1,"longest_wait_ns":1,"total_wait_ns":1,"waiter_stacks":[],"waiter_stacks_omitted":0"#,
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
    // Title, the counters (two lines at 80 columns), then the status.
    assert!(lines[1].starts_with("waits "), "{lines:?}");
    assert!(lines[2].starts_with("alerts 3 (lock_hold 2"), "{lines:?}");
    assert_eq!(lines[3], "working: symbolizing x... | 45%");
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

/// The live view is one per process (`crate::util::tty` keeps its fd): terminal tests take turns.
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
    assert!(!screen_owned());

    let mut term =
        LiveTerminal::on_fd(pty.slave, true, Some("xterm")).expect("a pty is a terminal");
    assert!(screen_owned());
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
    assert!(!screen_owned());
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

/// Idle time is only a total in the heading: it never takes a row from a blocked stack.
#[test]
fn idle_time_is_a_total_apart_from_the_stacks() {
    let mut s = busy();
    s.idle_ns = 36_500_000_000;
    let screen = render(&s, 120, 40);
    assert!(
        screen.contains(
            "TOP BLOCKED STACKS (2 stacks, 1.25s blocked since start; 36.5s idle not shown)"
        ),
        "{screen}"
    );
    let mut quiet = LiveSnapshot {
        idle_ns: 2_000_000_000,
        ..LiveSnapshot::default()
    };
    let screen = render(&quiet, 80, 24);
    assert!(
        screen.contains("TOP BLOCKED STACKS (2s idle not shown)"),
        "{screen}"
    );
    assert!(screen.contains("no blocking seen yet"), "{screen}");
    quiet.idle_ns = 0;
    assert!(!render(&quiet, 80, 24).contains("idle"));
}
