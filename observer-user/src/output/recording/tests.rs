use std::sync::Arc;

use super::*;
use crate::output::alert::{AlertDetail, ProcessExit};
use crate::output::profile::TopStack;
use crate::proc::normaddr::Module;
use crate::stacks::frame::{self, Frame};

fn meta() -> Meta {
    Meta {
        observer_version: "0.1.0".into(),
        pid: 42,
        process: "bank".into(),
        executable: Some("/usr/bin/bank".into()),
        build_id: Some("abcd".into()),
        started: "2026-11-26T20:00:00.000Z".into(),
        threshold_ns: 100_000_000,
        stall_after_ns: 5_000_000_000,
        kernel: "6.18".into(),
    }
}

fn alert() -> Alert {
    Alert {
        time: "2026-11-26T20:00:01.000Z".into(),
        pid: 42,
        tid: 42,
        comm: "bank".into(),
        ns_pid: None,
        ns_tid: None,
        container_id: None,
        pod_uid: None,
        stack: vec!["main (bank.c:3)".into()],
        detail: AlertDetail::ProcessExit(ProcessExit {
            exit_code: Some(1),
            signal: None,
            by_tid: 42,
            message: None,
        }),
        frames: Vec::new(),
    }
}

fn snapshot() -> ProfileSnapshot {
    let exe = Arc::new(Module {
        path: "/usr/bin/bank".into(),
        build_id: Some("abcd".into()),
    });
    let at = |name: &str, off: u64, inlined: bool| Frame::at(name, &exe, off, inlined);
    ProfileSnapshot {
        elapsed_ns: 5,
        stacks: vec![StackEntry {
            process: "bank".into(),
            thread: "worker".into(),
            frames: vec![
                Frame::named("[futex]"),
                at("lock (bank.c:9)", 0x1230, true),
                at("transfer (bank.c:14)", 0x1230, false),
                at("main (bank.c:30)", 0x2000, false),
            ],
            weight_ns: 300,
            count: 2,
            category: crate::output::profile::Category::Lock,
            container: Default::default(),
        }],
        events_dropped: 0,
        agg_dropped: 0,
    }
}

fn write_full(path: &Path) {
    let mut r = Recorder::create(path, &meta()).unwrap();
    r.alert(&alert()).unwrap();
    r.profile(&snapshot()).unwrap();
    r.finish().unwrap();
}

#[test]
fn round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.obsrec");
    write_full(&path);
    let rec = Recording::read(&path).unwrap();
    assert_eq!(rec.version, 2);
    assert_eq!(rec.meta, Some(meta()));
    assert_eq!(rec.alerts, vec![alert()]);
    assert_eq!(rec.profile, Some(snapshot()));
    assert!(!rec.truncated);
}

/// An alert with its stacks' frames, as the session emits it.
/// Alerts of a process in a container keep its container and pod; `observer report` shows them
/// (the replayed JSON lines carry the keys, the text summary the short id).
#[test]
fn container_identity_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.obsrec");
    let id = "3b1f6d0c2a7e4f5b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b";
    let uid = "8f9b2c4e-1d3a-4b5c-9e7f-0a1b2c3d4e5f";
    let mut a = alert();
    a.container_id = Some(id.into());
    a.pod_uid = Some(uid.into());
    let mut r = Recorder::create(&path, &meta()).unwrap();
    r.alert(&alert()).unwrap();
    r.alert(&a).unwrap();
    r.finish().unwrap();
    let rec = Recording::read(&path).unwrap();
    assert_eq!(rec.alerts, vec![alert(), a.clone()]);
    let line = rec.alerts[1].to_json_line();
    assert!(line.contains(&format!(r#""container_id":"{id}","pod_uid":"{uid}""#)));
    assert!(!rec.alerts[0].to_json_line().contains("container_id"));
    assert!(crate::output::alert_text::one_line(&rec.alerts[1]).contains("container 3b1f6d0c2a7e"));
}

fn alert_with_frames() -> Alert {
    let exe = Arc::new(Module {
        path: "/usr/bin/bank".into(),
        build_id: Some("abcd".into()),
    });
    let libc = Arc::new(Module {
        path: "/usr/lib/libc.so.6".into(),
        build_id: None,
    });
    let at =
        |m: &Arc<Module>, name: &str, off: u64, inlined: bool| Frame::at(name, m, off, inlined);
    let mut a = alert();
    a.keep_frames(
        "stack",
        vec![
            at(&libc, "__lll_lock_wait", 0x8b1a4, false),
            at(&exe, "lock (bank.c:9)", 0x1230, true),
            at(&exe, "transfer (bank.c:14)", 0x1230, false),
            Frame::named("[unknown]"),
        ],
    );
    a.keep_frames(
        "waker_stack",
        vec![at(&exe, "main (bank.c:3)", 0x2000, false)],
    );
    a
}

#[test]
fn alert_frames_round_trip_with_their_alert() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.obsrec");
    let mut r = Recorder::create(&path, &meta()).unwrap();
    r.alert(&alert()).unwrap();
    r.alert(&alert_with_frames()).unwrap();
    r.finish().unwrap();
    let rec = Recording::read(&path).unwrap();
    assert_eq!(rec.alerts, vec![alert(), alert_with_frames()]);
    assert!(rec.alerts[0].frames.is_empty());
    assert_eq!(rec.alerts[1].frames.len(), 2);
}

#[test]
fn alert_frames_without_their_alert_are_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.obsrec");
    let mut r = Recorder::create(&path, &meta()).unwrap();
    r.block(
        kind::ALERT_FRAMES,
        &v2::encode_alert_frames(3, &alert_with_frames().frames),
    )
    .unwrap();
    r.finish().unwrap();
    let err = Recording::read(&path).unwrap_err().to_string();
    assert!(err.contains("alert frames for alert 3"), "{err}");
}

#[test]
fn the_last_profile_wins() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.obsrec");
    let mut r = Recorder::create(&path, &meta()).unwrap();
    let mut early = snapshot();
    early.elapsed_ns = 1;
    early.stacks.clear();
    r.profile(&early).unwrap();
    r.profile(&snapshot()).unwrap();
    r.finish().unwrap();
    assert_eq!(Recording::read(&path).unwrap().profile, Some(snapshot()));
}

/// The stacks of [`v1_fixture`], as names.
fn v1_stacks() -> Vec<TopStack> {
    let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        TopStack {
            process: "bank".into(),
            thread: "worker".into(),
            frames: names(&["transfer (bank.c:14)"]),
            weight_ns: 300,
            count: 2,
        },
        TopStack {
            process: "bank".into(),
            thread: "main".into(),
            frames: names(&["[futex]", "pthread_mutex_lock", "main (bank.c:3)"]),
            weight_ns: 7,
            count: 1,
        },
    ]
}

fn check_v1(rec: &Recording) {
    assert_eq!(rec.version, 1);
    assert_eq!(rec.meta, Some(meta()));
    assert_eq!(rec.alerts, vec![alert()]);
    assert!(!rec.truncated);
    let profile = rec.profile.as_ref().expect("profile");
    assert_eq!(profile.elapsed_ns, 5);
    let got: Vec<TopStack> = profile
        .stacks
        .iter()
        .map(|s| {
            assert!(s.frames.iter().all(|f| f.addr.is_none() && !f.inlined));
            TopStack {
                process: s.process.clone(),
                thread: s.thread.clone(),
                frames: frame::names(&s.frames),
                weight_ns: s.weight_ns,
                count: s.count,
            }
        })
        .collect();
    assert_eq!(got, v1_stacks());
}

/// Written by the version 1 `Recorder` of observer 0.1 (commit 37ac5ed): meta, one alert, a
/// profile of one stack, then one of two stacks, end.
#[test]
fn reads_a_version_1_file_written_by_the_old_observer() {
    let bytes = include_bytes!("testdata/v1.obsrec");
    assert_eq!(&bytes[8..10], &1u16.to_le_bytes());
    check_v1(&Recording::parse(bytes).unwrap());
}

#[test]
fn reads_version_1_written_by_the_old_code_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.obsrec");
    let first = v1::ProfileV1 {
        elapsed_ns: 5,
        stacks: v1_stacks()[..1].to_vec(),
        events_dropped: 0,
        agg_dropped: 0,
    };
    let last = v1::ProfileV1 {
        elapsed_ns: 5,
        stacks: v1_stacks(),
        events_dropped: 0,
        agg_dropped: 0,
    };
    v1::write(&path, &meta(), &[alert()], &[first, last]).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    check_v1(&Recording::parse(&bytes).unwrap());
    // The kept writer is the old one: same input, same bytes as the committed fixture.
    assert_eq!(bytes, include_bytes!("testdata/v1.obsrec"));
}

#[test]
fn every_truncation_is_readable_up_to_the_last_whole_block() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.obsrec");
    write_full(&path);
    let bytes = std::fs::read(&path).unwrap();
    for cut in 10..bytes.len() {
        let rec = Recording::parse(&bytes[..cut]).unwrap();
        assert!(rec.truncated, "cut at {cut}");
    }
    assert!(matches!(
        Recording::parse(&bytes[..5]),
        Err(RecordingError::BadMagic)
    ));
}

#[test]
fn corruption_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.obsrec");
    write_full(&path);
    let bytes = std::fs::read(&path).unwrap();
    for i in 10..bytes.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[i] ^= flip;
            // Any outcome but a panic is fine; a flipped payload byte must not be accepted.
            let _ = Recording::parse(&b);
        }
    }
    let mut b = bytes.clone();
    let mid = b.len() / 2;
    b[mid] ^= 0x55;
    assert!(Recording::parse(&b).is_err());
}

/// Damage the checksum cannot see: a writer bug or a hand-edited file with valid framing.
#[test]
fn well_framed_nonsense_is_an_error() {
    let payloads: [&[u8]; 4] = [
        b"not json",
        br#"{"elapsed_ns":1,"events_dropped":0,"agg_dropped":0,"modules":[],
            "symbols":[{"module":0,"offset":1,"names":["f"]}],"stacks":[]}"#,
        br#"{"elapsed_ns":1,"events_dropped":0,"agg_dropped":0,"modules":[],"symbols":[],
            "stacks":[{"process":"p","thread":"t","weight_ns":1,"count":1,"frames":[3]}]}"#,
        // A version 1 profile in a version 2 file.
        br#"{"elapsed_ns":1,"stacks":[],"events_dropped":0,"agg_dropped":0}"#,
    ];
    for payload in payloads {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&VERSION.to_le_bytes());
        framing::write_block(&mut b, kind::PROFILE, payload).unwrap();
        let err = Recording::parse(&b).unwrap_err();
        assert!(
            matches!(err, RecordingError::Corrupt { offset: 10, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("profile"), "{err}");
    }
}

#[test]
fn other_versions_are_refused() {
    for v in [0u16, 3, 7] {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&v.to_le_bytes());
        assert!(
            matches!(Recording::parse(&b), Err(RecordingError::UnsupportedVersion(x)) if x == v)
        );
    }
}

/// A reader that hands out at most `step` bytes per call, as pipes and slow disks do.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[test]
fn short_reads_give_the_same_recording() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.obsrec");
    write_full(&path);
    let bytes = std::fs::read(&path).unwrap();
    let whole = Recording::parse(&bytes).unwrap();
    for step in [1, 3, 7, 4096] {
        for cut in [bytes.len(), bytes.len() - 3, 40] {
            let mut input = Trickle {
                data: &bytes[..cut],
                step,
            };
            let rec = Recording::read_from(&mut input).unwrap();
            let expected = Recording::parse(&bytes[..cut]).unwrap();
            assert_eq!(rec.alerts, expected.alerts, "step {step} cut {cut}");
            assert_eq!(rec.profile, expected.profile, "step {step} cut {cut}");
            assert_eq!(rec.truncated, expected.truncated, "step {step} cut {cut}");
        }
    }
    assert!(!whole.truncated);
}
