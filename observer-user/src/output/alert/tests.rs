use super::*;
use std::time::{Duration, UNIX_EPOCH};

fn alert(detail: AlertDetail) -> Alert {
    Alert {
        time: "2026-11-26T10:04:05.123Z".into(),
        pid: 100,
        tid: 101,
        comm: "bank".into(),
        ns_pid: None,
        ns_tid: None,
        container_id: None,
        pod_uid: None,
        stack: vec![
            "transfer_a_to_b (bank.c:14)".into(),
            "worker (bank.c:30)".into(),
        ],
        detail,
        frames: Vec::new(),
    }
}

/// One alert of each kind. A new variant stops the match below compiling until it is added
/// here, so that the test below covers it.
fn one_detail_of_each_kind() -> Vec<AlertDetail> {
    let all = vec![
        AlertDetail::LockHold(LockHold::default()),
        AlertDetail::Stall(Stall::default()),
        AlertDetail::StallEnd(StallEnd::default()),
        AlertDetail::Deadlock(Deadlock::default()),
        AlertDetail::ThreadExit(ThreadExit::default()),
        AlertDetail::ProcessExit(ProcessExit::default()),
        AlertDetail::IdleWait(IdleWait::default()),
        AlertDetail::GoroutineWait(GoroutineWait::default()),
        AlertDetail::GoroutineStall(GoroutineStall::default()),
        AlertDetail::GoroutineLeak(GoroutineLeak::default()),
        AlertDetail::GoPanic(GoPanic::default()),
        AlertDetail::Degraded(Degraded::default()),
    ];
    for d in &all {
        match d {
            AlertDetail::LockHold(_)
            | AlertDetail::Stall(_)
            | AlertDetail::StallEnd(_)
            | AlertDetail::Deadlock(_)
            | AlertDetail::ThreadExit(_)
            | AlertDetail::ProcessExit(_)
            | AlertDetail::IdleWait(_)
            | AlertDetail::GoroutineWait(_)
            | AlertDetail::GoroutineStall(_)
            | AlertDetail::GoroutineLeak(_)
            | AlertDetail::GoPanic(_)
            | AlertDetail::Degraded(_) => {}
        }
    }
    all
}

#[test]
fn kinds_lists_every_kind_once_as_json_names_it() {
    let details = one_detail_of_each_kind();
    let kinds: Vec<&str> = details.iter().map(AlertDetail::kind).collect();
    let mut listed = KINDS.to_vec();
    listed.sort_unstable();
    listed.dedup();
    assert_eq!(listed.len(), KINDS.len(), "a kind listed twice: {KINDS:?}");
    let mut named = kinds.clone();
    named.sort_unstable();
    assert_eq!(named, listed, "KINDS and AlertDetail::kind() disagree");
    for d in &details {
        let json = serde_json::to_value(d).unwrap();
        assert_eq!(json["kind"], d.kind(), "the JSON tag differs from kind()");
    }
}

fn roundtrip(a: &Alert, expected_json: &str) {
    let line = a.to_json_line();
    assert_eq!(line, expected_json);
    assert_eq!(&Alert::from_json_line(&line).unwrap(), a);
}

const COMMON: &str = r#""time":"2026-11-26T10:04:05.123Z","pid":100,"tid":101,"comm":"bank","stack":["transfer_a_to_b (bank.c:14)","worker (bank.c:30)"]"#;

#[test]
fn degraded_shape() {
    let mut a = alert(AlertDetail::Degraded(Degraded {
        reason: "go_probe_budget".into(),
        state: "started".into(),
        count: 1,
        window_ns: 0,
        total: 1,
        since: "2026-11-26T10:04:05.123Z".into(),
        detail: "Go probe budget: pid 100 (bank) ...".into(),
    }));
    a.stack.clear();
    roundtrip(
        &a,
        r#"{"kind":"degraded","time":"2026-11-26T10:04:05.123Z","pid":100,"tid":101,"comm":"bank","stack":[],"reason":"go_probe_budget","state":"started","count":1,"window_ns":0,"total":1,"since":"2026-11-26T10:04:05.123Z","detail":"Go probe budget: pid 100 (bank) ..."}"#,
    );
}

#[test]
fn lock_hold_shape() {
    let a = alert(AlertDetail::LockHold(LockHold {
        uaddr: 0x7f3a_1c00_0b20,
        lock_kind: "pthread_mutex".into(),
        owner_recorded: true,
        hold_ns: 301_000_000,
        holder_tid: Some(102),
        holder_comm: Some("maint".into()),
        holder_known_from: Some("owner".into()),
        holder_state: "blocked".into(),
        holder_syscall: Some("read".into()),
        holder_stack: vec!["refresh_from_disk (bank.c:40)".into()],
        holder_samples: 0,
        release_tid: Some(102),
        release_comm: Some("maint".into()),
        release_stack: vec!["compact (bank.c:44)".into()],
        waiters: 3,
        longest_wait_ns: 300_000_000,
        total_wait_ns: 890_000_000,
        waiter_stacks: vec![
            WaiterStack {
                stack: vec!["transfer_a_to_b (bank.c:14)".into()],
                count: 2,
                longest_ns: 300_000_000,
                comm: "bank".into(),
            },
            WaiterStack {
                stack: vec!["audit (bank.c:60)".into()],
                count: 1,
                longest_ns: 290_000_000,
                comm: "auditor".into(),
            },
        ],
        waiter_stacks_omitted: 0,
    }));
    roundtrip(
        &a,
        &format!(
            r#"{{"kind":"lock_hold",{COMMON},"uaddr":"0x7f3a1c000b20","lock_kind":"pthread_mutex","owner_recorded":true,"hold_ns":301000000,"holder_tid":102,"holder_comm":"maint","holder_known_from":"owner","holder_state":"blocked","holder_syscall":"read","holder_stack":["refresh_from_disk (bank.c:40)"],"holder_samples":0,"release_tid":102,"release_comm":"maint","release_stack":["compact (bank.c:44)"],"waiters":3,"longest_wait_ns":300000000,"total_wait_ns":890000000,"waiter_stacks":[{{"stack":["transfer_a_to_b (bank.c:14)"],"count":2,"longest_ns":300000000,"comm":"bank"}},{{"stack":["audit (bank.c:60)"],"count":1,"longest_ns":290000000,"comm":"auditor"}}],"waiter_stacks_omitted":0}}"#
        ),
    );
}

#[test]
fn lock_hold_without_holder_uses_nulls() {
    let a = alert(AlertDetail::LockHold(LockHold {
        uaddr: 0x10,
        lock_kind: "lock".into(),
        holder_state: "unknown".into(),
        waiters: 1,
        ..LockHold::default()
    }));
    roundtrip(
        &a,
        &format!(
            r#"{{"kind":"lock_hold",{COMMON},"uaddr":"0x10","lock_kind":"lock","owner_recorded":false,"hold_ns":0,"holder_tid":null,"holder_comm":null,"holder_known_from":null,"holder_state":"unknown","holder_syscall":null,"holder_stack":[],"holder_samples":0,"release_tid":null,"release_comm":null,"release_stack":[],"waiters":1,"longest_wait_ns":0,"total_wait_ns":0,"waiter_stacks":[],"waiter_stacks_omitted":0}}"#
        ),
    );
}

#[test]
fn stall_shape() {
    let a = alert(AlertDetail::Stall(Stall {
        blocked_ns: 2_000_000_000,
        stall_on: "lock".into(),
        uaddr: Some(0x5555_0000_1000),
        syscall: "futex".into(),
        owner_tid: Some(103),
        owner_stack: vec![],
        kernel_stack: vec![],
        holder_state: Some("blocked".into()),
        holder_syscall: Some("read".into()),
        holder_stack: vec!["refresh_from_disk (c.c:25)".into()],
        holder_samples: 0,
        lock_kind: Some("pthread_mutex".into()),
        owner_recorded: Some(true),
        home_stack: vec![],
    }));
    roundtrip(
        &a,
        &format!(
            r#"{{"kind":"stall",{COMMON},"blocked_ns":2000000000,"stall_on":"lock","uaddr":"0x555500001000","syscall":"futex","owner_tid":103,"owner_stack":[],"kernel_stack":[],"holder_state":"blocked","holder_syscall":"read","holder_stack":["refresh_from_disk (c.c:25)"],"holder_samples":0,"lock_kind":"pthread_mutex","owner_recorded":true,"home_stack":[]}}"#
        ),
    );
    // A thread in uninterruptible sleep: no lock, no owner, its kernel stack.
    let b = alert(AlertDetail::Stall(Stall {
        blocked_ns: 1,
        stall_on: "kernel".into(),
        uaddr: None,
        syscall: "none (page fault)".into(),
        owner_tid: None,
        owner_stack: vec![],
        kernel_stack: vec!["down_read_killable".into(), "lock_mm_and_find_vma".into()],
        ..Stall::default()
    }));
    roundtrip(
        &b,
        &format!(
            r#"{{"kind":"stall",{COMMON},"blocked_ns":1,"stall_on":"kernel","uaddr":null,"syscall":"none (page fault)","owner_tid":null,"owner_stack":[],"kernel_stack":["down_read_killable","lock_mm_and_find_vma"],"holder_state":null,"holder_syscall":null,"holder_stack":[],"holder_samples":0,"lock_kind":null,"owner_recorded":null,"home_stack":[]}}"#
        ),
    );
    // Away from home: the home's frames; and its end, with who woke it.
    let c = alert(AlertDetail::Stall(Stall {
        blocked_ns: 1,
        stall_on: "away_from_home".into(),
        syscall: "futex".into(),
        home_stack: vec!["next_job (q.c:7)".into()],
        ..Stall::default()
    }));
    roundtrip(
        &c,
        &format!(
            r#"{{"kind":"stall",{COMMON},"blocked_ns":1,"stall_on":"away_from_home","uaddr":null,"syscall":"futex","owner_tid":null,"owner_stack":[],"kernel_stack":[],"holder_state":null,"holder_syscall":null,"holder_stack":[],"holder_samples":0,"lock_kind":null,"owner_recorded":null,"home_stack":["next_job (q.c:7)"]}}"#
        ),
    );
    let d = alert(AlertDetail::StallEnd(StallEnd {
        blocked_ns: 3,
        stall_on: "away_from_home".into(),
        syscall: "futex".into(),
        waker_tid: Some(7),
        waker_comm: Some("main".into()),
        waker_stack: vec!["app_lock_release (q.c:9)".into()],
        woken_by: "thread".into(),
    }));
    roundtrip(
        &d,
        &format!(
            r#"{{"kind":"stall_end",{COMMON},"blocked_ns":3,"stall_on":"away_from_home","syscall":"futex","waker_tid":7,"waker_comm":"main","waker_stack":["app_lock_release (q.c:9)"],"woken_by":"thread"}}"#
        ),
    );
    // Recorded before kernel_stack existed: still read.
    let old: Alert = serde_json::from_str(&format!(
        r#"{{"kind":"stall",{COMMON},"blocked_ns":1,"uaddr":null,"syscall":"futex","owner_tid":null,"owner_stack":[]}}"#
    ))
    .unwrap();
    assert!(matches!(old.detail, AlertDetail::Stall(s)
        if s.kernel_stack.is_empty() && s.holder_state.is_none()));
}

#[test]
fn deadlock_shape() {
    let a = alert(AlertDetail::Deadlock(Deadlock {
        cycle: vec![
            DeadlockMember {
                tid: 101,
                comm: "bank".into(),
                uaddr: 0xa0,
                owner_tid: 102,
                stack: vec!["transfer_a_to_b (bank.c:14)".into()],
            },
            DeadlockMember {
                tid: 102,
                comm: "bank".into(),
                uaddr: 0xb0,
                owner_tid: 101,
                stack: vec!["transfer_b_to_a (bank.c:22)".into()],
            },
        ],
    }));
    roundtrip(
        &a,
        &format!(
            r#"{{"kind":"deadlock",{COMMON},"cycle":[{{"tid":101,"comm":"bank","uaddr":"0xa0","owner_tid":102,"stack":["transfer_a_to_b (bank.c:14)"]}},{{"tid":102,"comm":"bank","uaddr":"0xb0","owner_tid":101,"stack":["transfer_b_to_a (bank.c:22)"]}}]}}"#
        ),
    );
}

#[test]
fn thread_exit_shape() {
    let a = alert(AlertDetail::ThreadExit(ThreadExit {
        exit_code: 0,
        signal: Some(signal_name(11)),
        lifetime_ns: None,
        created_by: vec!["start_workers (pool.c:40)".into()],
        count: 1,
    }));
    roundtrip(
        &a,
        &format!(
            r#"{{"kind":"thread_exit",{COMMON},"exit_code":0,"signal":"SIGSEGV","lifetime_ns":null,"created_by":["start_workers (pool.c:40)"],"count":1}}"#
        ),
    );
}

#[test]
fn go_shapes() {
    let p = alert(AlertDetail::GoPanic(GoPanic {
        goid: 7,
        message: Some("send on closed channel".into()),
        recovered: false,
        labels: [("request_id".to_string(), "r-42".to_string())].into(),
    }));
    roundtrip(
        &p,
        &format!(
            r#"{{"kind":"go_panic",{COMMON},"goid":7,"message":"send on closed channel","recovered":false,"labels":{{"request_id":"r-42"}}}}"#
        ),
    );
    let s = alert(AlertDetail::GoroutineStall(GoroutineStall {
        goid: 9,
        wait_reason: "sync.WaitGroup.Wait".into(),
        blocked_ns: 6_000_000_000,
        created_by: vec!["main.main (main.go:20)".into()],
        ..Default::default()
    }));
    roundtrip(
        &s,
        &format!(
            r#"{{"kind":"goroutine_stall",{COMMON},"goid":9,"wait_reason":"sync.WaitGroup.Wait","blocked_ns":6000000000,"created_by":["main.main (main.go:20)"]}}"#
        ),
    );
    let l = alert(AlertDetail::GoroutineLeak(GoroutineLeak {
        created_by: vec!["main.serve (main.go:30)".into()],
        wait_reason: "select".into(),
        count: 120,
        growth: 100,
        window_ns: 5_000_000_000,
        labels: Default::default(),
    }));
    roundtrip(
        &l,
        &format!(
            r#"{{"kind":"goroutine_leak",{COMMON},"created_by":["main.serve (main.go:30)"],"wait_reason":"select","count":120,"growth":100,"window_ns":5000000000}}"#
        ),
    );
}

#[test]
fn process_exit_shape() {
    let a = alert(AlertDetail::ProcessExit(ProcessExit {
        exit_code: None,
        signal: Some("SIGKILL".into()),
        by_tid: 101,
        message: None,
    }));
    roundtrip(
        &a,
        &format!(
            r#"{{"kind":"process_exit",{COMMON},"exit_code":null,"signal":"SIGKILL","by_tid":101,"message":null}}"#
        ),
    );
    let b = alert(AlertDetail::ProcessExit(ProcessExit {
        exit_code: Some(2),
        signal: None,
        by_tid: 100,
        message: Some("all goroutines are asleep - deadlock!".into()),
    }));
    roundtrip(
        &b,
        &format!(
            r#"{{"kind":"process_exit",{COMMON},"exit_code":2,"signal":null,"by_tid":100,"message":"all goroutines are asleep - deadlock!"}}"#
        ),
    );
}

#[test]
fn parses_keys_in_any_order_and_rejects_bad_input() {
    let line = r#"{"pid":1,"by_tid":1,"tid":1,"kind":"process_exit","comm":"x","stack":[],"time":"t","exit_code":0,"signal":null}"#;
    let a = Alert::from_json_line(line).unwrap();
    assert_eq!(a.kind(), "process_exit");

    let unknown_kind = r#"{"kind":"nope","time":"t","pid":1,"tid":1,"comm":"x","stack":[]}"#;
    assert!(Alert::from_json_line(unknown_kind).is_err());
    let bad_addr = format!(
        r#"{{"kind":"deadlock",{COMMON},"cycle":[{{"tid":1,"comm":"x","uaddr":"12","owner_tid":1,"stack":[]}}]}}"#
    );
    assert!(Alert::from_json_line(&bad_addr).is_err());
}

#[test]
fn time_format_is_rfc3339_millis_utc() {
    let t = UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
    assert_eq!(format_time(t), "2026-11-18T11:06:40.123Z");
}

#[test]
fn idle_wait_shape() {
    let a = alert(AlertDetail::IdleWait(IdleWait {
        duration_ns: 2_000_000_000,
        syscall: "futex".into(),
        wait_class: "condvar".into(),
        waker_tid: None,
    }));
    roundtrip(
        &a,
        &format!(
            r#"{{"kind":"idle_wait",{COMMON},"duration_ns":2000000000,"syscall":"futex","wait_class":"condvar","waker_tid":null}}"#
        ),
    );
}

#[test]
fn signal_names() {
    assert_eq!(signal_name(6), "SIGABRT");
    assert_eq!(signal_name(9), "SIGKILL");
    assert_eq!(signal_name(11), "SIGSEGV");
    assert_eq!(signal_name(31), "SIGSYS");
    assert_eq!(signal_name(34), "SIGRTMIN");
    assert_eq!(signal_name(37), "SIGRTMIN+3");
    assert_eq!(signal_name(64), "SIGRTMAX");
    assert_eq!(signal_name(32), "SIG32");
    assert_eq!(signal_name(0), "SIG0");
    assert_eq!(signal_name(-1), "SIG-1");
}

#[test]
fn container_and_pod_only_in_containers() {
    let id = "3b1f6d0c2a7e4f5b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b";
    let uid = "8f9b2c4e-1d3a-4b5c-9e7f-0a1b2c3d4e5f";
    let mut a = alert(AlertDetail::GoPanic(GoPanic {
        goid: 7,
        message: Some("boom".into()),
        recovered: false,
        labels: Default::default(),
    }));
    a.ns_pid = Some(1);
    a.ns_tid = Some(1);
    a.container_id = Some(id.into());
    a.pod_uid = Some(uid.into());
    roundtrip(
        &a,
        &format!(
            r#"{{"kind":"go_panic","time":"2026-11-26T10:04:05.123Z","pid":100,"tid":101,"comm":"bank","ns_pid":1,"ns_tid":1,"container_id":"{id}","pod_uid":"{uid}","stack":["transfer_a_to_b (bank.c:14)","worker (bank.c:30)"],"goid":7,"message":"boom","recovered":false}}"#
        ),
    );
    // A container outside Kubernetes: no pod_uid key at all.
    a.pod_uid = None;
    let line = a.to_json_line();
    assert!(line.contains(&format!(r#""container_id":"{id}""#)) && !line.contains("pod_uid"));
    assert_eq!(Alert::from_json_line(&line).unwrap(), a);
    // Outside containers neither key (lines of older versions parse the same way).
    a.container_id = None;
    let line = a.to_json_line();
    assert!(
        !line.contains("container_id") && !line.contains("null"),
        "{line}"
    );
    assert_eq!(Alert::from_json_line(&line).unwrap().container_id, None);
}

/// A likely holder's three fields sit at the top level of the alert (flattened), and are
/// absent when none was named.
#[test]
fn a_likely_holder_round_trips_flat() {
    let mut s = alert(AlertDetail::GoroutineStall(GoroutineStall {
        goid: 9,
        wait_reason: "sync.Mutex.Lock".into(),
        blocked_ns: 6_000_000_000,
        created_by: vec![],
        likely_holder: LikelyHolder::from(Some((
            25,
            vec!["main.rebuild (m.go:44)".to_string()],
            "inside main.rebuild, which locks the same mutex (main.indexLock)".to_string(),
        ))),
        ..Default::default()
    }));
    roundtrip(
        &s,
        &format!(
            r#"{{"kind":"goroutine_stall",{COMMON},"goid":9,"wait_reason":"sync.Mutex.Lock","blocked_ns":6000000000,"created_by":[],"likely_holder_goid":25,"likely_holder_stack":["main.rebuild (m.go:44)"],"likely_holder_why":"inside main.rebuild, which locks the same mutex (main.indexLock)"}}"#
        ),
    );
    if let AlertDetail::GoroutineStall(g) = &mut s.detail {
        g.likely_holder = LikelyHolder::default();
    }
    assert!(!s.to_json_line().contains("likely_holder"));
}
