//! The tracker (what is posted when) with synthetic alerts, and the sender against local HTTP
//! servers this test controls: accepted, 500, 400, a server that never answers, a closed port.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use super::sender::{Sender, Timing, ATTEMPTS, QUEUE_MAX};
use super::*;
use crate::output::alert::{self, AlertDetail};

fn alert(pid: u32, tid: u32, detail: AlertDetail) -> Alert {
    Alert {
        time: "2026-12-05T10:00:00.000Z".into(),
        pid,
        tid,
        comm: "bank".into(),
        ns_pid: None,
        ns_tid: None,
        container_id: None,
        pod_uid: None,
        stack: vec!["transfer (bank.c:14)".into(), "main".into()],
        detail,
        frames: Vec::new(),
    }
}

fn stall(tid: u32, on: &str) -> Alert {
    alert(
        42,
        tid,
        AlertDetail::Stall(alert::Stall {
            stall_on: on.into(),
            blocked_ns: 5_000_000_000,
            syscall: "futex".into(),
            ..Default::default()
        }),
    )
}

struct Facts {
    waits: HashSet<(u32, u64)>,
    goroutines: HashSet<(u32, u64)>,
    processes: HashSet<u32>,
}

impl Liveness for Facts {
    fn waits(&self) -> &HashSet<(u32, u64)> {
        &self.waits
    }
    fn goroutine_stalled(&self, pid: u32, goid: u64) -> bool {
        self.goroutines.contains(&(pid, goid))
    }
    fn process_live(&self, pid: u32) -> bool {
        self.processes.contains(&pid)
    }
}

fn facts(waits: &[(u32, u64)]) -> Facts {
    Facts {
        waits: waits.iter().copied().collect(),
        goroutines: HashSet::new(),
        processes: [42].into_iter().collect(),
    }
}

fn ends_at(v: &Value) -> SystemTime {
    humantime::parse_rfc3339(v["endsAt"].as_str().unwrap()).unwrap()
}

/// A time in whole milliseconds, as RFC 3339 with milliseconds keeps it.
fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + secs(1_800_000_000)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn a_stall_is_resent_while_it_lasts_and_resolved_when_its_wait_ends() {
    let mut t = Tracker::new("host1");
    let t0 = t0();
    let m0 = Instant::now();
    let first = t.alert(&stall(43, "lock"), t0);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["labels"]["alertname"], "ObserverStall");
    assert_eq!(first[0]["labels"]["tid"], "43");
    assert_eq!(first[0]["startsAt"], "2026-12-05T10:00:00.000Z");
    assert_eq!(ends_at(&first[0]), t0 + ONGOING_TTL);
    assert!(first[0]["annotations"]["summary"]
        .as_str()
        .unwrap()
        .starts_with("stall"));
    assert!(first[0]["annotations"]["stacks"]
        .as_str()
        .unwrap()
        .contains("transfer (bank.c:14)"));
    // Its wait (begun at 1000) goes on: nothing until the re-send interval has passed.
    let live = facts(&[(43, 1000), (99, 5)]);
    assert!(t.update(&live, t0 + secs(1), m0).is_empty());
    assert!(t.update(&live, t0 + secs(30), m0 + secs(30)).is_empty());
    let again = t.update(&live, t0 + secs(61), m0 + secs(61));
    assert_eq!(again.len(), 1);
    assert_eq!(again[0]["labels"], first[0]["labels"]);
    assert_eq!(ends_at(&again[0]), t0 + secs(61) + ONGOING_TTL);
    assert!(RESEND_INTERVAL < ONGOING_TTL);
    // The thread waits again (another wait): the stall is over.
    let done = t.update(&facts(&[(43, 2000)]), t0 + secs(70), m0 + secs(70));
    assert_eq!(done.len(), 1);
    assert_eq!(done[0]["labels"], first[0]["labels"]);
    assert_eq!(ends_at(&done[0]), t0 + secs(70));
    assert_eq!(t.ongoing(), 0);
}

#[test]
fn two_stalls_of_one_process_are_two_alerts() {
    let mut t = Tracker::new("h");
    let now = t0();
    let a = t.alert(&stall(43, "lock"), now);
    let b = t.alert(&stall(44, "lock"), now);
    assert_ne!(a[0]["labels"], b[0]["labels"]);
    assert_eq!(t.ongoing(), 2);
    // One ends, the other goes on.
    let m0 = Instant::now();
    t.update(&facts(&[(43, 1), (44, 1)]), now, m0);
    let out = t.update(&facts(&[(44, 1)]), now, m0);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["labels"]["tid"], "43");
    assert_eq!(t.ongoing(), 1);
}

#[test]
fn a_stall_away_from_home_ends_with_its_stall_end() {
    let mut t = Tracker::new("h");
    let now = t0();
    let first = t.alert(&stall(43, "away_from_home"), now);
    // Not a lock wait: the waits going on say nothing about it.
    assert!(t.update(&facts(&[]), now, Instant::now()).is_empty());
    let end = alert(
        42,
        43,
        AlertDetail::StallEnd(alert::StallEnd {
            stall_on: "away_from_home".into(),
            ..Default::default()
        }),
    );
    let later = now + secs(9);
    let out = t.alert(&end, later);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["labels"], first[0]["labels"]);
    assert_eq!(out[0]["startsAt"], first[0]["startsAt"]);
    assert_eq!(ends_at(&out[0]), later);
    assert_eq!(t.ongoing(), 0);
}

#[test]
fn a_deadlock_lasts_until_its_threads_stop_waiting_or_the_process_is_gone() {
    let mut t = Tracker::new("h");
    let now = t0();
    let member = |tid, owner| alert::DeadlockMember {
        tid,
        comm: "t".into(),
        uaddr: 0x10,
        owner_tid: owner,
        stack: vec!["lock_b (deadlock.c:20)".into()],
    };
    let dl = alert(
        42,
        43,
        AlertDetail::Deadlock(alert::Deadlock {
            cycle: vec![member(43, 44), member(44, 43)],
        }),
    );
    let first = t.alert(&dl, now);
    assert_eq!(first[0]["labels"]["alertname"], "ObserverDeadlock");
    assert!(first[0]["annotations"]["stacks"]
        .as_str()
        .unwrap()
        .contains("tid 43 (t) waits for lock 0x10 held by tid 44:\n  lock_b (deadlock.c:20)"));
    let m0 = Instant::now();
    let live = facts(&[(43, 7), (44, 8)]);
    assert!(t.update(&live, now, m0).is_empty());
    // The process is gone: resolved, although the table still had the waits.
    let mut gone = facts(&[(43, 7), (44, 8)]);
    gone.processes.clear();
    let out = t.update(&gone, now + secs(3), m0 + secs(3));
    assert_eq!(out.len(), 1);
    assert_eq!(ends_at(&out[0]), now + secs(3));
}

#[test]
fn a_goroutine_stall_lasts_while_the_goroutine_is_stalled() {
    let mut t = Tracker::new("h");
    let now = t0();
    let gs = alert(
        42,
        0,
        AlertDetail::GoroutineStall(alert::GoroutineStall {
            goid: 17,
            wait_reason: "sync.Mutex.Lock".into(),
            ..Default::default()
        }),
    );
    let first = t.alert(&gs, now);
    assert_eq!(first[0]["labels"]["goid"], "17");
    let mut live = facts(&[]);
    live.goroutines.insert((42, 17));
    assert!(t.update(&live, now, Instant::now()).is_empty());
    live.goroutines.clear();
    assert_eq!(t.update(&live, now, Instant::now()).len(), 1);
}

#[test]
fn point_events_are_sent_once_with_an_end_ahead() {
    let mut t = Tracker::new("h");
    let now = t0();
    let exit = alert(
        42,
        43,
        AlertDetail::ThreadExit(alert::ThreadExit {
            signal: Some("SIGSEGV".into()),
            ..Default::default()
        }),
    );
    let out = t.alert(&exit, now);
    assert_eq!(out[0]["labels"]["alertname"], "ObserverThreadExit");
    assert_eq!(ends_at(&out[0]), now + POINT_TTL);
    assert!(out[0]["annotations"]["description"]
        .as_str()
        .unwrap()
        .contains("signal: SIGSEGV"));
    assert_eq!(t.ongoing(), 0);
}

#[test]
fn ongoing_alerts_are_bounded_and_finish_resolves_those_of_dead_processes() {
    let mut t = Tracker::new("h");
    let now = t0();
    for tid in 0..MAX_ONGOING as u32 + 10 {
        let out = t.alert(&stall(tid + 1, "lock"), now);
        assert_eq!(out.len(), 1);
    }
    assert_eq!(t.ongoing(), MAX_ONGOING);
    // Past the bound, a stall is a point event.
    let out = t.alert(&stall(5_000_000, "lock"), now);
    assert_eq!(ends_at(&out[0]), now + POINT_TTL);
    let out = t.finish(&|pid| pid != 42, now);
    assert_eq!(out.len(), MAX_ONGOING);
    assert!(out.iter().all(|v| ends_at(v) == now));
    let mut t = Tracker::new("h");
    t.alert(&stall(43, "lock"), now);
    assert!(t.finish(&|_| true, now).is_empty());
}

#[test]
fn urls() {
    assert_eq!(
        endpoint("http://127.0.0.1:9093").unwrap(),
        "http://127.0.0.1:9093/api/v2/alerts"
    );
    assert_eq!(
        endpoint("http://am:9093/").unwrap(),
        "http://am:9093/api/v2/alerts"
    );
    assert_eq!(
        endpoint("HTTP://am/prefix/").unwrap(),
        "http://am/prefix/api/v2/alerts"
    );
    assert_eq!(
        endpoint("http://am:9093/api/v2/alerts").unwrap(),
        "http://am:9093/api/v2/alerts"
    );
    let https = endpoint("https://am:9093").unwrap_err();
    assert!(
        https.to_string().contains("https is not supported yet"),
        "{https}"
    );
    for bad in [
        "ftp://am",
        "am:9093",
        "127.0.0.1:9093",
        "http://",
        "http:///x",
        "http://am:9093/?x=1",
        "http://a m",
        "http://am\n",
        "",
    ] {
        assert!(
            matches!(endpoint(bad), Err(AlertmanagerError::BadUrl { .. })),
            "{bad:?}: {:?}",
            endpoint(bad)
        );
    }
    assert!(endpoint(&format!("http://am/{}", "a".repeat(3000))).is_err());
}

/// How the test server answers.
#[derive(Clone, Copy)]
enum Answer {
    Status(u16),
    /// Reads the request and never answers (the connection stays open).
    Hang,
}

/// A local HTTP server: the request bodies it got, and how many requests.
struct Server {
    port: u16,
    bodies: Arc<Mutex<Vec<Value>>>,
    requests: Arc<AtomicUsize>,
}

fn server(answer: Answer) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let requests = Arc::new(AtomicUsize::new(0));
    let (b, r) = (bodies.clone(), requests.clone());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            let Some(body) = read_request(&stream) else {
                continue;
            };
            r.fetch_add(1, Ordering::SeqCst);
            b.lock().unwrap().push(body);
            match answer {
                Answer::Status(code) => {
                    let mut s = stream;
                    let _ = write!(
                        s,
                        "HTTP/1.1 {code} X\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope"
                    );
                }
                Answer::Hang => held.push(stream),
            }
        }
    });
    Server {
        port,
        bodies,
        requests,
    }
}

fn read_request(stream: &TcpStream) -> Option<Value> {
    let mut reader = BufReader::new(stream);
    let mut length = 0;
    let mut line = String::new();
    let mut first = true;
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if first {
            assert!(line.starts_with("POST /api/v2/alerts HTTP/1.1"), "{line}");
            first = false;
        }
        let l = line.to_ascii_lowercase();
        if let Some(v) = l.strip_prefix("content-length:") {
            length = v.trim().parse().ok()?;
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

fn fast() -> Timing {
    Timing {
        connect: Duration::from_millis(300),
        request: Duration::from_millis(300),
        first_backoff: Duration::from_millis(10),
    }
}

fn failures(m: &Metrics) -> String {
    m.render()
        .lines()
        .find(|l| l.starts_with("observer_export_failures_total{sink=\"alertmanager\"}"))
        .unwrap()
        .to_string()
}

fn sender_to(port: u16, m: &Arc<Metrics>) -> Sender {
    let url = endpoint(&format!("http://127.0.0.1:{port}/")).unwrap();
    Sender::start(url, Some(m.clone()), true, fast())
}

#[test]
fn alerts_are_posted_as_a_json_array() {
    let s = server(Answer::Status(200));
    let m = Metrics::new();
    let sender = sender_to(s.port, &m);
    sender.push([
        json!({"labels": {"alertname": "A"}}),
        json!({"labels": {"alertname": "B"}}),
    ]);
    assert!(sender
        .finish(Instant::now() + Duration::from_secs(5))
        .is_none());
    let bodies = s.bodies.lock().unwrap();
    let posted: Vec<&Value> = bodies.iter().flat_map(|b| b.as_array().unwrap()).collect();
    assert_eq!(posted.len(), 2);
    assert_eq!(posted[1]["labels"]["alertname"], "B");
    assert!(failures(&m).ends_with(" 0"));
}

#[test]
fn server_errors_are_retried_a_bounded_number_of_times_and_counted() {
    let s = server(Answer::Status(500));
    let m = Metrics::new();
    let sender = sender_to(s.port, &m);
    sender.push([json!({"a": 1})]);
    let (lost, why) = sender
        .finish(Instant::now() + Duration::from_secs(5))
        .expect("a failure");
    assert_eq!(lost, 1);
    assert!(why.contains("500"), "{why}");
    // finish() stops retries, so between 1 and ATTEMPTS tries were made.
    let n = s.requests.load(Ordering::SeqCst);
    assert!((1..=ATTEMPTS as usize).contains(&n), "{n}");
    assert!(failures(&m).ends_with(" 1"), "{}", failures(&m));

    // Left alone, a batch is tried exactly ATTEMPTS times.
    let s = server(Answer::Status(503));
    let sender = sender_to(s.port, &m);
    sender.push([json!({"a": 1})]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while failures(&m).ends_with(" 1") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(s.requests.load(Ordering::SeqCst), ATTEMPTS as usize);
    assert!(failures(&m).ends_with(" 2"), "{}", failures(&m));
}

#[test]
fn client_errors_are_not_retried() {
    let s = server(Answer::Status(400));
    let m = Metrics::new();
    let sender = sender_to(s.port, &m);
    sender.push([json!({"a": 1}), json!({"b": 2})]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while failures(&m).ends_with(" 0") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(s.requests.load(Ordering::SeqCst), 1);
    assert!(failures(&m).ends_with(" 2"), "{}", failures(&m));
    let (lost, why) = sender.finish(Instant::now()).unwrap();
    assert_eq!(lost, 2);
    assert!(why.contains("HTTP 400: nope"), "{why}");
}

#[test]
fn a_server_that_never_answers_blocks_nothing_and_memory_stays_bounded() {
    let s = server(Answer::Hang);
    let m = Metrics::new();
    let sender = sender_to(s.port, &m);
    let started = Instant::now();
    for i in 0..3 * QUEUE_MAX {
        sender.push([json!({"n": i})]);
    }
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(sender.queued() <= QUEUE_MAX);
    let finish_started = Instant::now();
    let (lost, why) = sender
        .finish(Instant::now() + Duration::from_secs(1))
        .unwrap();
    // Everything is lost one way or another, and finishing kept to its deadline (plus at
    // most one request's timeout).
    assert_eq!(lost, 3 * QUEUE_MAX as u64);
    assert!(finish_started.elapsed() < Duration::from_secs(2));
    assert!(!why.is_empty());
    assert!(s.requests.load(Ordering::SeqCst) >= 1);
    assert!(failures(&m).ends_with(&format!(" {}", 3 * QUEUE_MAX)));
}

#[test]
fn a_closed_port_is_a_counted_failure() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let m = Metrics::new();
    let sender = sender_to(port, &m);
    sender.push([json!({"a": 1})]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while failures(&m).ends_with(" 0") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(failures(&m).ends_with(" 1"), "{}", failures(&m));
    let (_, why) = sender.finish(Instant::now()).unwrap();
    assert!(!why.is_empty());
}

#[test]
fn a_new_ongoing_alert_is_not_resent_at_once_after_a_quiet_time() {
    let mut t = Tracker::new("h");
    let now = t0();
    let m0 = Instant::now();
    assert!(t.update(&facts(&[]), now, m0).is_empty());
    let first = t.alert(&stall(43, "lock"), now);
    assert_eq!(first.len(), 1);
    let live = facts(&[(43, 1)]);
    // Long after the last look: the clock starts now, nothing is posted twice.
    assert!(t.update(&live, now, m0 + secs(600)).is_empty());
    assert!(t.update(&live, now, m0 + secs(630)).is_empty());
    assert_eq!(t.update(&live, now, m0 + secs(661)).len(), 1);
}
