use super::*;
use crate::output::profile::Category;
use std::io::Read;
use std::process::Command;

fn frames(f: &[&str]) -> Vec<String> {
    f.iter().map(|s| s.to_string()).collect()
}

type Wait = (&'static str, &'static str, Vec<String>, u64);

fn waits() -> Vec<Wait> {
    let locked = frames(&[
        "[sync.Mutex.Lock]",
        "sync.(*Mutex).Lock (/usr/lib/go/src/sync/mutex.go:90)",
        "main.lockedSection (/tmp/x/main.go:23)",
        "main.main (/tmp/x/main.go:40)",
    ]);
    let c_stack = frames(&[
        "__lll_lock_wait",
        "worker_update (lock_hold.c:45)",
        "libc.so.6+0x8b1a4",
    ]);
    vec![
        ("locker", "goroutines", locked.clone(), 3_000_000_000),
        ("locker", "goroutines", locked, 1_500_000_000),
        ("bank", "worker-1", c_stack, 250_000_000),
        ("bank", "idle", frames(&["[futex]"]), 7),
        (
            "locker",
            "goroutines",
            frames(&["[select]", "main.serve"]),
            60_000_000_000,
        ),
    ]
}

/// The thread `idle` and the `[select]` waits are idle time, the rest lock waits.
fn profile_of<'a>(waits: impl Iterator<Item = &'a Wait>) -> BlockedProfile {
    let mut p = BlockedProfile::new();
    for (process, thread, f, ns) in waits {
        let idle = *thread == "idle" || f[0] == "[select]";
        let category = if idle { Category::Idle } else { Category::Lock };
        let f = crate::stacks::frame::from_names(f);
        p.add_frames(category, *process, thread, &f, *ns);
    }
    p
}

fn sample_profile() -> BlockedProfile {
    profile_of(waits().iter())
}

fn meta() -> PprofMeta {
    PprofMeta {
        main_binary: Some(PathBuf::from("/opt/app/locker")),
        build_id: Some("abc123".into()),
        duration_ns: 10_000_000_000,
        time_nanos: 1_764_000_000_000_000_000,
    }
}

fn read_back(path: &Path) -> proto::Profile {
    let gz = std::fs::read(path).unwrap();
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut raw)
        .unwrap();
    proto::Profile::decode(&raw[..]).unwrap()
}

struct View<'a>(&'a proto::Profile);

impl View<'_> {
    fn s(&self, i: i64) -> &str {
        &self.0.string_table[usize::try_from(i).unwrap()]
    }
    fn labels(&self, sample: &proto::Sample) -> Vec<(String, String)> {
        sample
            .label
            .iter()
            .map(|l| (self.s(l.key).to_string(), self.s(l.str).to_string()))
            .collect()
    }
    fn label(&self, sample: &proto::Sample, key: &str) -> Option<String> {
        self.labels(sample)
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
    /// (function name, file, line), innermost first.
    fn stack(&self, sample: &proto::Sample) -> Vec<(String, String, i64)> {
        sample
            .location_id
            .iter()
            .map(|id| {
                let loc = self.0.location.iter().find(|l| l.id == *id).unwrap();
                let line = loc.line[0];
                let f = self
                    .0
                    .function
                    .iter()
                    .find(|f| f.id == line.function_id)
                    .unwrap();
                (
                    self.s(f.name).to_string(),
                    self.s(f.filename).to_string(),
                    line.line,
                )
            })
            .collect()
    }
}

#[test]
fn parses_frame_strings() {
    assert_eq!(
        parse_frame("worker_update (lock_hold.c:45)"),
        ("worker_update", "lock_hold.c", 45)
    );
    assert_eq!(
        parse_frame("main.lockedSection (/tmp/x/main.go:23)"),
        ("main.lockedSection", "/tmp/x/main.go", 23)
    );
    assert_eq!(
        parse_frame("operator() (functional.h:7)"),
        ("operator()", "functional.h", 7)
    );
    assert_eq!(parse_frame("f (bank.c)"), ("f", "bank.c", 0));
    for whole in [
        "__lll_lock_wait",
        "libc.so.6+0x8b1a4",
        "[unknown] 0x7f0012345678",
        "f(int)",
        "g (int)",
        "(anonymous namespace)::h",
        " (x.c:1)",
    ] {
        assert_eq!(parse_frame(whole), (whole, "", 0), "{whole}");
    }
}

#[test]
fn recognizes_wait_reason_frames() {
    assert_eq!(wait_reason("[chan receive]"), Some("chan receive"));
    assert_eq!(wait_reason("[futex]"), Some("futex"));
    assert_eq!(wait_reason("[unknown]"), None);
    assert_eq!(wait_reason("[unknown] 0x10"), None);
    assert_eq!(wait_reason("[vdso]+0x10"), None);
    assert_eq!(wait_reason("[]"), None);
    assert_eq!(wait_reason("main"), None);
}

#[test]
fn round_trips_block_profile_shape() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("block.pb.gz");
    write_pprof(&sample_profile(), &meta(), &path).unwrap();
    let p = read_back(&path);
    let v = View(&p);

    assert_eq!(p.string_table[0], "");
    let types: Vec<(&str, &str)> = p
        .sample_type
        .iter()
        .map(|t| (v.s(t.r#type), v.s(t.unit)))
        .collect();
    assert_eq!(
        types,
        vec![
            ("contentions", "count"),
            ("delay", "nanoseconds"),
            ("idle_waits", "count"),
            ("idle_delay", "nanoseconds")
        ]
    );
    let period = p.period_type.unwrap();
    assert_eq!(
        (v.s(period.r#type), v.s(period.unit)),
        ("contentions", "count")
    );
    assert_eq!(p.period, 1);
    assert_eq!(v.s(p.default_sample_type), "delay");
    assert_eq!(p.duration_nanos, 10_000_000_000);
    assert_eq!(p.time_nanos, 1_764_000_000_000_000_000);

    assert_eq!(p.mapping.len(), 1);
    assert_eq!(v.s(p.mapping[0].filename), "/opt/app/locker");
    assert_eq!(v.s(p.mapping[0].build_id), "abc123");
    assert!(p
        .location
        .iter()
        .all(|l| l.mapping_id == 0 && l.address == l.id));

    assert_eq!(p.sample.len(), 4);
    let go = p
        .sample
        .iter()
        .find(|s| v.label(s, "wait_reason").as_deref() == Some("sync.Mutex.Lock"))
        .unwrap();
    assert_eq!(go.value, vec![2, 4_500_000_000, 0, 0]);
    assert_eq!(v.label(go, "category").as_deref(), Some("lock"));
    assert_eq!(v.label(go, "thread").as_deref(), Some("goroutines"));
    assert_eq!(
        v.label(go, "wait_reason").as_deref(),
        Some("sync.Mutex.Lock")
    );
    assert_eq!(
        v.stack(go),
        vec![
            (
                "sync.(*Mutex).Lock".into(),
                "/usr/lib/go/src/sync/mutex.go".into(),
                90
            ),
            ("main.lockedSection".into(), "/tmp/x/main.go".into(), 23),
            ("main.main".into(), "/tmp/x/main.go".into(), 40),
        ]
    );

    let c = p
        .sample
        .iter()
        .find(|s| v.label(s, "thread").as_deref() == Some("worker-1"))
        .unwrap();
    assert_eq!(c.value, vec![1, 250_000_000, 0, 0]);
    assert_eq!(v.label(c, "wait_reason"), None);
    assert_eq!(
        v.stack(c)[1],
        ("worker_update".into(), "lock_hold.c".into(), 45)
    );
    assert_eq!(
        v.stack(c)[2],
        ("libc.so.6+0x8b1a4".into(), String::new(), 0)
    );

    // Only a wait reason: it stays as the one frame, and is still the label.
    let idle = p
        .sample
        .iter()
        .find(|s| v.label(s, "thread").as_deref() == Some("idle"))
        .unwrap();
    assert_eq!(v.label(idle, "wait_reason").as_deref(), Some("futex"));
    // Idle time is in its own sample types only.
    assert_eq!(idle.value, vec![0, 0, 1, 7]);
    assert_eq!(v.label(idle, "category").as_deref(), Some("idle"));
    let select = p
        .sample
        .iter()
        .find(|s| v.label(s, "wait_reason").as_deref() == Some("select"))
        .unwrap();
    assert_eq!(select.value, vec![0, 0, 1, 60_000_000_000]);
    assert_eq!(v.stack(idle), vec![("[futex]".into(), String::new(), 0)]);

    // Locations and functions are shared: main.go's two functions appear once each.
    let names: Vec<&str> = p.function.iter().map(|f| v.s(f.name)).collect();
    let mut dedup = names.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(names.len(), dedup.len(), "{names:?}");
}

#[test]
fn output_is_deterministic_and_independent_of_insertion_order() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.pb.gz");
    let b = dir.path().join("b.pb.gz");
    let w = waits();
    write_pprof(&profile_of(w.iter()), &meta(), &a).unwrap();
    write_pprof(&profile_of(w.iter().rev()), &meta(), &b).unwrap();
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}

#[test]
fn no_mapping_without_binary_and_empty_profile_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.pb.gz");
    write_pprof(&BlockedProfile::new(), &PprofMeta::default(), &path).unwrap();
    let p = read_back(&path);
    assert!(p.mapping.is_empty());
    assert!(p.sample.is_empty());
    assert_eq!(p.sample_type.len(), 4);
}

#[test]
fn write_error_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("missing-dir").join("x.pb.gz");
    let e = write_pprof(&sample_profile(), &meta(), &bad).unwrap_err();
    assert!(e.to_string().contains("missing-dir"), "{e}");
}

/// Runs the real `go tool pprof`; skipped (loudly) where Go is not installed.
fn go_pprof(args: &[&str], file: &Path) -> Option<String> {
    let out = match Command::new("go")
        .arg("tool")
        .arg("pprof")
        .args(args)
        .arg(file)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            eprintln!("SKIPPED: `go` is not on PATH, cannot check the profile with go tool pprof");
            return None;
        }
        Err(e) => panic!("cannot run go tool pprof: {e}"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "go tool pprof {args:?} failed: {}\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        !stderr.to_lowercase().contains("error"),
        "go tool pprof {args:?} complained: {stderr}"
    );
    Some(stdout)
}

fn module(path: &str, build_id: Option<&str>) -> Arc<Module> {
    Arc::new(Module {
        path: path.into(),
        build_id: build_id.map(str::to_string),
    })
}

fn at(name: &str, m: &Arc<Module>, off: u64, inlined: bool) -> Frame {
    Frame::at(name, m, off, inlined)
}

/// Stacks with normalized addresses: an inline chain, two call sites of one function,
/// a module larger than one address-space slot, frames without addresses.
fn addressed_stacks() -> Vec<(&'static str, Vec<Frame>, u64)> {
    let exe = module("/opt/app/locker", Some("abc123"));
    let libc = module("/usr/lib/x86_64-linux-gnu/libc.so.6", Some("c0ffee"));
    let big = module("/opt/app/libbig.so", None);
    let lock = at("__lll_lock_wait", &libc, 0x8b1a4, false);
    vec![
        (
            "worker-1",
            vec![
                Frame::named("[futex]"),
                lock.clone(),
                at("inlined_helper (lock_hold.c:12)", &exe, 0x1234, true),
                at("worker_update (lock_hold.c:45)", &exe, 0x1234, false),
                at("start_big", &big, 0x1800_0000, false),
            ],
            3_000_000_000,
        ),
        (
            "worker-2",
            vec![
                lock,
                at("worker_update (lock_hold.c:45)", &exe, 0x1240, false),
                Frame::named("[unknown] 0x7f0012345678"),
            ],
            1_000_000_000,
        ),
    ]
}

fn addressed_profile<'a>(
    stacks: impl Iterator<Item = &'a (&'static str, Vec<Frame>, u64)>,
) -> BlockedProfile {
    let mut p = BlockedProfile::new();
    for (thread, frames, ns) in stacks {
        p.add_frames(Category::Lock, "locker", thread, frames, *ns);
    }
    p
}

#[test]
fn mappings_and_addresses_follow_the_synthetic_layout() {
    let stacks = addressed_stacks();
    let p = build(&addressed_profile(stacks.iter()), &meta());
    let v = View(&p);
    let maps: Vec<(u64, u64, u64, u64, &str, &str)> = p
        .mapping
        .iter()
        .map(|m| {
            (
                m.id,
                m.memory_start,
                m.memory_limit,
                m.file_offset,
                v.s(m.filename),
                v.s(m.build_id),
            )
        })
        .collect();
    assert_eq!(
        maps,
        vec![
            // The main executable first, then by path.
            (1, 0x1000_0000, 0x1000_2000, 0, "/opt/app/locker", "abc123"),
            (2, 0x2000_0000, 0x3800_1000, 0, "/opt/app/libbig.so", ""),
            (
                3,
                0x4000_0000,
                0x4008_c000,
                0,
                "/usr/lib/x86_64-linux-gnu/libc.so.6",
                "c0ffee"
            ),
        ]
    );
    assert!(p
        .mapping
        .iter()
        .all(|m| m.has_functions && m.has_inline_frames));

    // Every mapped location lies in its mapping, at base + file offset.
    let offset_of = |l: &proto::Location| {
        let m = p.mapping.iter().find(|m| m.id == l.mapping_id).unwrap();
        assert!(m.memory_start <= l.address && l.address < m.memory_limit);
        l.address - m.memory_start + m.file_offset
    };
    let lines_of = |l: &proto::Location| -> Vec<String> {
        l.line
            .iter()
            .map(|line| {
                let f = p
                    .function
                    .iter()
                    .find(|f| f.id == line.function_id)
                    .unwrap();
                format!("{}:{}", v.s(f.name), line.line)
            })
            .collect()
    };
    let w1 = p
        .sample
        .iter()
        .find(|s| v.label(s, "thread").as_deref() == Some("worker-1"))
        .unwrap();
    assert_eq!(v.label(w1, "wait_reason").as_deref(), Some("futex"));
    let locs: Vec<&proto::Location> = w1
        .location_id
        .iter()
        .map(|id| p.location.iter().find(|l| l.id == *id).unwrap())
        .collect();
    assert_eq!(
        locs.len(),
        3,
        "the wait reason is a label, the inline chain one location"
    );
    assert_eq!(
        locs.iter()
            .map(|l| (l.mapping_id, offset_of(l)))
            .collect::<Vec<_>>(),
        vec![(3, 0x8b1a4), (1, 0x1234), (2, 0x1800_0000)]
    );
    assert_eq!(
        lines_of(locs[1]),
        vec!["inlined_helper:12", "worker_update:45"],
        "inlined functions innermost first"
    );

    let w2 = p
        .sample
        .iter()
        .find(|s| v.label(s, "thread").as_deref() == Some("worker-2"))
        .unwrap();
    // libc's frame is shared with worker-1; the other call site is its own location.
    assert_eq!(w2.location_id[0], w1.location_id[0]);
    let site = p
        .location
        .iter()
        .find(|l| l.id == w2.location_id[1])
        .unwrap();
    assert_eq!((site.mapping_id, offset_of(site)), (1, 0x1240));
    let unknown = p
        .location
        .iter()
        .find(|l| l.id == w2.location_id[2])
        .unwrap();
    assert_eq!((unknown.mapping_id, unknown.address), (0, unknown.id));
    assert!(unknown.address < 0x1000_0000);
}

#[test]
fn main_binary_without_frames_is_named_first() {
    let stacks = addressed_stacks();
    let mut m = meta();
    m.main_binary = Some(PathBuf::from("/opt/other/server"));
    m.build_id = Some("feed".into());
    let p = build(&addressed_profile(stacks.iter()), &m);
    let v = View(&p);
    assert_eq!(p.mapping.len(), 4);
    assert_eq!(
        (
            p.mapping[0].id,
            v.s(p.mapping[0].filename),
            v.s(p.mapping[0].build_id)
        ),
        (1, "/opt/other/server", "feed")
    );
    assert_eq!(
        (p.mapping[0].memory_start, p.mapping[0].memory_limit),
        (0, 0)
    );
    assert_eq!(p.mapping[1].memory_start, 0x1000_0000);
    assert!(p.location.iter().all(|l| l.mapping_id != 1));
    // Found by build id when the paths differ (a container path, say).
    m.build_id = Some("c0ffee".into());
    let p = build(&addressed_profile(stacks.iter()), &m);
    assert_eq!(
        View(&p).s(p.mapping[0].filename),
        "/usr/lib/x86_64-linux-gnu/libc.so.6"
    );
    assert_eq!(p.mapping.len(), 3);
}

#[test]
fn addressed_output_is_deterministic() {
    let stacks = addressed_stacks();
    let a = build(&addressed_profile(stacks.iter()), &meta()).encode_to_vec();
    let b = build(&addressed_profile(stacks.iter().rev()), &meta()).encode_to_vec();
    assert_eq!(a, b);
}

#[test]
fn go_tool_pprof_reads_mappings_and_inline_frames() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mapped.pb.gz");
    let stacks = addressed_stacks();
    write_pprof(&addressed_profile(stacks.iter()), &meta(), &path).unwrap();
    let Some(top) = go_pprof(&["-top"], &path) else {
        return;
    };
    eprintln!("{top}");
    assert!(top.contains("File: locker"), "{top}");
    assert!(top.contains("Build ID: abc123"), "{top}");
    assert!(top.contains("of 4s total"), "{top}");
    assert!(
        top.lines()
            .any(|l| l.trim_start().starts_with("4s") && l.ends_with("__lll_lock_wait")),
        "{top}"
    );
    // pprof knows the Line was inlined.
    assert!(top.contains("inlined_helper (inline)"), "{top}");
    let Some(traces) = go_pprof(&["-traces"], &path) else {
        return;
    };
    eprintln!("{traces}");
    let frames: Vec<&str> = traces.lines().map(str::trim).collect();
    let at = frames
        .iter()
        .position(|l| *l == "inlined_helper (inline)")
        .unwrap_or_else(|| panic!("no inlined frame in {traces}"));
    assert_eq!(frames[at + 1], "worker_update", "{traces}");
    let Some(raw) = go_pprof(&["-raw"], &path) else {
        return;
    };
    eprintln!("{raw}");
    let mappings = raw.split("Mappings").nth(1).expect("a Mappings section");
    for want in [
        "0x10000000/0x10002000/0x0 /opt/app/locker abc123",
        "0x40000000/0x4008c000/0x0 /usr/lib/x86_64-linux-gnu/libc.so.6 c0ffee",
        "/opt/app/libbig.so",
    ] {
        assert!(mappings.contains(want), "{want}: {mappings}");
    }
}

#[test]
fn go_tool_pprof_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("block.pb.gz");
    write_pprof(&sample_profile(), &meta(), &path).unwrap();

    let Some(top) = go_pprof(&["-top"], &path) else {
        return;
    };
    eprintln!("{top}");
    assert!(top.contains("Type: delay"), "{top}");
    assert!(top.contains("File: locker"), "{top}");
    assert!(top.contains("Build ID: abc123"), "{top}");
    assert!(top.contains("main.lockedSection"), "{top}");
    assert!(top.contains("worker_update"), "{top}");
    // 4.5s of the 4.75s total sits in sync.(*Mutex).Lock; the minute of idle `select` is
    // not in the default view.
    assert!(top.contains("of 4750ms total"), "{top}");
    assert!(!top.contains("main.serve"), "{top}");
    assert!(
        top.lines()
            .any(|l| l.contains("4500ms") && l.ends_with("sync.(*Mutex).Lock")),
        "{top}"
    );

    let Some(traces) = go_pprof(&["-traces"], &path) else {
        return;
    };
    eprintln!("{traces}");
    assert!(traces.contains("main.lockedSection"), "{traces}");
    let has_line = |want: &[&str]| {
        traces
            .lines()
            .any(|l| want == l.split_whitespace().collect::<Vec<_>>().as_slice())
    };
    assert!(has_line(&["4.50s", "sync.(*Mutex).Lock"]), "{traces}");
    assert!(has_line(&["250ms", "__lll_lock_wait"]), "{traces}");
    assert!(has_line(&["wait_reason:", "sync.Mutex.Lock"]), "{traces}");
    assert!(has_line(&["thread:", "worker-1"]), "{traces}");
    assert!(has_line(&["process:", "bank"]), "{traces}");

    let Some(counts) = go_pprof(&["-top", "-sample_index=contentions"], &path) else {
        return;
    };
    eprintln!("{counts}");
    assert!(counts.contains("Type: contentions"), "{counts}");
    assert!(counts.contains("main.lockedSection"), "{counts}");
    // 2 + 1 lock waits (the idle ones are not contentions).
    assert!(counts.contains("of 3 total"), "{counts}");

    let Some(idle) = go_pprof(&["-top", "-sample_index=idle_delay"], &path) else {
        return;
    };
    eprintln!("{idle}");
    assert!(idle.contains("Type: idle_delay"), "{idle}");
    assert!(idle.contains("main.serve"), "{idle}");
    assert!(!idle.contains("main.lockedSection"), "{idle}");

    // What the module doc promises: process and thread can go back on top of the stacks.
    let Some(rooted) = go_pprof(&["-traces", "-tagroot=process,thread"], &path) else {
        return;
    };
    eprintln!("{rooted}");
    let frames: Vec<&str> = rooted.lines().map(str::trim).collect();
    let main_at = frames.iter().position(|l| *l == "main.main").unwrap();
    assert_eq!(
        frames[main_at + 1..main_at + 3],
        ["goroutines", "locker"],
        "{rooted}"
    );

    // `-raw` walks every location and mapping: a structural check of the whole profile.
    let Some(raw) = go_pprof(&["-raw"], &path) else {
        return;
    };
    assert!(raw.contains("PeriodType: contentions count"), "{raw}");
}

/// Samples of a process in a container carry `container_id` (and `pod_uid` in a pod); two
/// containers running the same program stay two samples; a process outside has neither label.
#[test]
fn container_and_pod_labels() {
    use crate::proc::container::ContainerIdentity;
    let id = "3b1f6d0c2a7e4f5b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b";
    let uid = "8f9b2c4e-1d3a-4b5c-9e7f-0a1b2c3d4e5f";
    let in_pod = ContainerIdentity {
        container_id: Some(id.into()),
        pod_uid: Some(uid.into()),
    };
    let in_docker = ContainerIdentity {
        container_id: Some(id.replace('3', "4")),
        pod_uid: None,
    };
    let f = crate::stacks::frame::from_names(&frames(&["[futex]", "lock", "main"]));
    let mut p = BlockedProfile::new();
    p.add_frames(Category::Lock, ("nginx", &in_pod), "w", &f, 10);
    p.add_frames(Category::Lock, ("nginx", &in_docker), "w", &f, 20);
    p.add_frames(Category::Lock, "nginx", "w", &f, 40);
    let profile = build(&p, &meta());
    let v = View(&profile);
    assert_eq!(profile.sample.len(), 3);
    let by_delay = |ns: i64| {
        profile
            .sample
            .iter()
            .find(|s| s.value[1] == ns)
            .unwrap_or_else(|| panic!("no sample of {ns} ns"))
    };
    let pod = by_delay(10);
    assert_eq!(v.label(pod, "container_id").as_deref(), Some(id));
    assert_eq!(v.label(pod, "pod_uid").as_deref(), Some(uid));
    assert_eq!(v.label(pod, "process").as_deref(), Some("nginx"));
    let docker = by_delay(20);
    assert_eq!(
        v.label(docker, "container_id"),
        in_docker.container_id.clone()
    );
    assert_eq!(v.label(docker, "pod_uid"), None);
    let host = by_delay(40);
    assert_eq!(v.label(host, "container_id"), None);
    assert_eq!(v.label(host, "pod_uid"), None);
    // The folded text stays by name: the three are one line.
    assert_eq!(p.lines(), vec!["nginx;w;main;lock;[futex] 70".to_string()]);
}

/// Goroutine waits with pprof labels: one sample per label set, each carrying the labels
/// under their own keys (a label named like observer's own is left out); other outputs
/// (folded, entries) merge them.
#[test]
fn goroutine_labels_become_sample_labels() {
    let mut p = BlockedProfile::new();
    let f = crate::stacks::frame::from_names(&frames(&["[sync.Mutex.Lock]", "main.lookup"]));
    let tagged = |id: &str| -> crate::golang::GoLabels {
        [
            ("request_id".to_string(), id.to_string()),
            ("process".to_string(), "spoof".to_string()),
        ]
        .into()
    };
    let none = crate::golang::GoLabels::new();
    for (labels, ns) in [(tagged("r-42"), 300), (tagged("r-43"), 200), (none, 100)] {
        p.add_labeled_frames(Category::Lock, "svc", "goroutines", &f, (ns, 1), &labels);
    }
    assert_eq!(p.entries().len(), 1);
    assert_eq!(p.entries()[0].weight_ns, 600);
    assert_eq!(p.lines().len(), 1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.pb.gz");
    write_pprof(&p, &meta(), &path).unwrap();
    let prof = read_back(&path);
    let v = View(&prof);
    let mut by_id: Vec<(Option<String>, i64)> = prof
        .sample
        .iter()
        .map(|s| (v.label(s, "request_id"), s.value[1]))
        .collect();
    by_id.sort();
    assert_eq!(
        by_id,
        vec![
            (None, 100),
            (Some("r-42".into()), 300),
            (Some("r-43".into()), 200)
        ]
    );
    for s in &prof.sample {
        assert_eq!(v.label(s, "process").as_deref(), Some("svc"));
        assert_eq!(
            v.labels(s).iter().filter(|(k, _)| k == "process").count(),
            1
        );
    }
}

#[test]
fn labeled_stacks_are_bounded() {
    let mut p = BlockedProfile::new();
    let f = crate::stacks::frame::from_names(&frames(&["[sync.Mutex.Lock]", "main.lookup"]));
    let n = crate::output::profile::MAX_LABELED_STACKS + 50;
    for i in 0..n {
        let labels: crate::golang::GoLabels = [("request_id".to_string(), format!("r-{i}"))].into();
        p.add_labeled_frames(Category::Lock, "svc", "goroutines", &f, (1, 1), &labels);
    }
    assert_eq!(p.len(), crate::output::profile::MAX_LABELED_STACKS + 1);
    assert_eq!(p.total_weight_ns(), n as u64);
}
