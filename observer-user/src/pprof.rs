//! Blocked-time profiles in pprof's `profile.proto` format (gzipped), for `go tool pprof`.
//!
//! The shape copies Go's own block and mutex profiles, so the usual pprof habits carry over:
//! sample types `contentions/count` and `delay/nanoseconds` (`delay` is the default;
//! `-sample_index=contentions` switches), period type `contentions/count`, period 1.
//!
//! One sample per merged stack of the [`FoldedProfile`]. Process and thread become the labels
//! `process` and `thread` instead of root frames (`pprof -tagroot=process,thread` puts them back
//! on top of the stacks); an innermost pseudo-frame such as `[chan receive]` or `[futex]` becomes
//! the label `wait_reason` and is dropped from the stack.
//!
//! Frames are already symbolized strings (`name (file:line)`), so functions, files and lines are
//! parsed back out of them. The folded model keeps no addresses: each Location gets a synthetic
//! address (its own id), and no Location points at a Mapping, so pprof never tries to
//! re-symbolize or disassemble the real binary at made-up addresses. The one Mapping only names
//! the main executable and its build id, which pprof prints as `File:` and `Build ID:`.
//!
//! Output is deterministic: the same profile gives the same bytes (ids follow the sorted order of
//! the stacks, and the gzip header carries no timestamp).

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use prost::Message;

use crate::folded::FoldedProfile;

/// What the profile says about where it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PprofMeta {
    /// The observed program's executable, as pprof's `File:` line.
    pub main_binary: Option<PathBuf>,
    /// GNU build id of that executable (hex) or Go build id.
    pub build_id: Option<String>,
    /// How long the observation ran.
    pub duration_ns: u64,
    /// Wall-clock start of the observation, nanoseconds since the Unix epoch.
    pub time_nanos: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PprofError {
    #[error("cannot write pprof profile to {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Writes `profile` as a gzipped `profile.proto` to `path`.
pub fn write_pprof(
    profile: &FoldedProfile,
    meta: &PprofMeta,
    path: &Path,
) -> Result<(), PprofError> {
    let err = |source| PprofError::Write {
        path: path.to_path_buf(),
        source,
    };
    let bytes = gzip(&build(profile, meta).encode_to_vec()).map_err(err)?;
    use std::io::Write as _;
    crate::sink::create_output(path)
        .and_then(|mut f| f.write_all(&bytes))
        .map_err(err)
}

/// The `profile.proto` message for `profile` (not yet encoded).
pub fn build(profile: &FoldedProfile, meta: &PprofMeta) -> proto::Profile {
    let mut b = Builder::default();
    // Index 0 must be the empty string.
    b.string("");
    let contentions = b.string("contentions");
    let count = b.string("count");
    let delay = b.string("delay");
    let nanoseconds = b.string("nanoseconds");
    let process_key = b.string("process");
    let thread_key = b.string("thread");
    let reason_key = b.string("wait_reason");

    let mut samples = Vec::new();
    for entry in profile.entries() {
        let mut frames: &[String] = &entry.frames;
        let mut label = vec![
            b.label(process_key, &entry.process),
            b.label(thread_key, &entry.thread),
        ];
        if let Some(reason) = frames.first().and_then(|f| wait_reason(f)) {
            label.push(b.label(reason_key, reason));
            // A stack that is nothing but its wait reason keeps it as a frame, so its delay still
            // shows up under some function in `pprof -top`.
            if frames.len() > 1 {
                frames = &frames[1..];
            }
        }
        let location_id = if frames.is_empty() {
            vec![b.location("[unknown]")]
        } else {
            frames.iter().map(|f| b.location(f)).collect()
        };
        samples.push(proto::Sample {
            location_id,
            value: vec![to_i64(entry.count), to_i64(entry.weight_ns)],
            label,
        });
    }

    let mut mapping = Vec::new();
    if meta.main_binary.is_some() || meta.build_id.is_some() {
        let filename = meta
            .main_binary
            .as_ref()
            .map_or(0, |p| b.string(&p.to_string_lossy()));
        let build_id = meta.build_id.as_deref().map_or(0, |id| b.string(id));
        mapping.push(proto::Mapping {
            id: 1,
            filename,
            build_id,
            has_functions: true,
            has_filenames: true,
            has_line_numbers: true,
            ..Default::default()
        });
    }
    let comment = vec![b.string(
        "observer: blocked time per stack; location addresses are synthetic, not code addresses",
    )];

    proto::Profile {
        sample_type: vec![
            proto::ValueType {
                r#type: contentions,
                unit: count,
            },
            proto::ValueType {
                r#type: delay,
                unit: nanoseconds,
            },
        ],
        sample: samples,
        mapping,
        location: b.locations,
        function: b.functions,
        string_table: b.strings,
        time_nanos: to_i64(meta.time_nanos),
        duration_nanos: to_i64(meta.duration_ns),
        period_type: Some(proto::ValueType {
            r#type: contentions,
            unit: count,
        }),
        period: 1,
        comment,
        default_sample_type: delay,
        ..Default::default()
    }
}

fn gzip(bytes: &[u8]) -> io::Result<Vec<u8>> {
    // GzEncoder writes mtime 0 and no file name: the output depends on the input only.
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes)?;
    enc.finish()
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The wait reason of a pseudo-frame like `[chan receive]`; `[unknown]` is a missing frame, not
/// a reason.
fn wait_reason(frame: &str) -> Option<&str> {
    let inner = frame.strip_prefix('[')?.strip_suffix(']')?;
    let nested = inner.contains('[') || inner.contains(']');
    (!inner.is_empty() && !nested && inner != "unknown").then_some(inner)
}

/// Splits `name (file:line)` or `name (file)`; anything else is all name.
fn parse_frame(frame: &str) -> (&str, &str, i64) {
    let whole = (frame, "", 0);
    let Some(body) = frame.strip_suffix(')') else {
        return whole;
    };
    let Some((name, loc)) = body.rsplit_once(" (") else {
        return whole;
    };
    if name.is_empty() || loc.is_empty() {
        return whole;
    }
    let with_line = loc
        .rsplit_once(':')
        .and_then(|(file, line)| Some((file, line.parse::<i64>().ok()?)))
        .filter(|(file, _)| !file.is_empty());
    if let Some((file, line)) = with_line {
        return (name, file, line);
    }
    // `f (int)` is a signature, `f (bank.c)` a location without a line number.
    if loc.contains('.') || loc.contains('/') {
        (name, loc, 0)
    } else {
        whole
    }
}

#[derive(Default)]
struct Builder {
    strings: Vec<String>,
    string_ids: HashMap<String, i64>,
    functions: Vec<proto::Function>,
    function_ids: HashMap<(i64, i64), u64>,
    locations: Vec<proto::Location>,
    location_ids: HashMap<String, u64>,
}

impl Builder {
    fn string(&mut self, s: &str) -> i64 {
        if let Some(&id) = self.string_ids.get(s) {
            return id;
        }
        let id = to_i64(self.strings.len() as u64);
        self.strings.push(s.to_string());
        self.string_ids.insert(s.to_string(), id);
        id
    }

    fn label(&mut self, key: i64, value: &str) -> proto::Label {
        proto::Label {
            key,
            str: self.string(value),
            ..Default::default()
        }
    }

    fn function(&mut self, name: &str, file: &str) -> u64 {
        let key = (self.string(name), self.string(file));
        if let Some(&id) = self.function_ids.get(&key) {
            return id;
        }
        let id = self.functions.len() as u64 + 1;
        self.functions.push(proto::Function {
            id,
            name: key.0,
            system_name: key.0,
            filename: key.1,
            start_line: 0,
        });
        self.function_ids.insert(key, id);
        id
    }

    fn location(&mut self, frame: &str) -> u64 {
        if let Some(&id) = self.location_ids.get(frame) {
            return id;
        }
        let (name, file, line) = parse_frame(frame);
        let function_id = self.function(name, file);
        let id = self.locations.len() as u64 + 1;
        self.locations.push(proto::Location {
            id,
            mapping_id: 0,
            address: id,
            line: vec![proto::Line {
                function_id,
                line,
                column: 0,
            }],
            is_folded: false,
        });
        self.location_ids.insert(frame.to_string(), id);
        id
    }
}

/// The messages of pprof's `profile.proto`
/// (<https://github.com/google/pprof/blob/main/proto/profile.proto>), written out by hand so the
/// build needs no `protoc`. Field numbers must match that file exactly.
pub mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Profile {
        #[prost(message, repeated, tag = "1")]
        pub sample_type: Vec<ValueType>,
        #[prost(message, repeated, tag = "2")]
        pub sample: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub mapping: Vec<Mapping>,
        #[prost(message, repeated, tag = "4")]
        pub location: Vec<Location>,
        #[prost(message, repeated, tag = "5")]
        pub function: Vec<Function>,
        #[prost(string, repeated, tag = "6")]
        pub string_table: Vec<String>,
        #[prost(int64, tag = "7")]
        pub drop_frames: i64,
        #[prost(int64, tag = "8")]
        pub keep_frames: i64,
        #[prost(int64, tag = "9")]
        pub time_nanos: i64,
        #[prost(int64, tag = "10")]
        pub duration_nanos: i64,
        #[prost(message, optional, tag = "11")]
        pub period_type: Option<ValueType>,
        #[prost(int64, tag = "12")]
        pub period: i64,
        #[prost(int64, repeated, tag = "13")]
        pub comment: Vec<i64>,
        #[prost(int64, tag = "14")]
        pub default_sample_type: i64,
    }

    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct ValueType {
        #[prost(int64, tag = "1")]
        pub r#type: i64,
        #[prost(int64, tag = "2")]
        pub unit: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        /// Innermost first.
        #[prost(uint64, repeated, tag = "1")]
        pub location_id: Vec<u64>,
        #[prost(int64, repeated, tag = "2")]
        pub value: Vec<i64>,
        #[prost(message, repeated, tag = "3")]
        pub label: Vec<Label>,
    }

    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(int64, tag = "1")]
        pub key: i64,
        #[prost(int64, tag = "2")]
        pub str: i64,
        #[prost(int64, tag = "3")]
        pub num: i64,
        #[prost(int64, tag = "4")]
        pub num_unit: i64,
    }

    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct Mapping {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub memory_start: u64,
        #[prost(uint64, tag = "3")]
        pub memory_limit: u64,
        #[prost(uint64, tag = "4")]
        pub file_offset: u64,
        #[prost(int64, tag = "5")]
        pub filename: i64,
        #[prost(int64, tag = "6")]
        pub build_id: i64,
        #[prost(bool, tag = "7")]
        pub has_functions: bool,
        #[prost(bool, tag = "8")]
        pub has_filenames: bool,
        #[prost(bool, tag = "9")]
        pub has_line_numbers: bool,
        #[prost(bool, tag = "10")]
        pub has_inline_frames: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Location {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub mapping_id: u64,
        #[prost(uint64, tag = "3")]
        pub address: u64,
        #[prost(message, repeated, tag = "4")]
        pub line: Vec<Line>,
        #[prost(bool, tag = "5")]
        pub is_folded: bool,
    }

    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct Line {
        #[prost(uint64, tag = "1")]
        pub function_id: u64,
        #[prost(int64, tag = "2")]
        pub line: i64,
        #[prost(int64, tag = "3")]
        pub column: i64,
    }

    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct Function {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(int64, tag = "2")]
        pub name: i64,
        #[prost(int64, tag = "3")]
        pub system_name: i64,
        #[prost(int64, tag = "4")]
        pub filename: i64,
        #[prost(int64, tag = "5")]
        pub start_line: i64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        ]
    }

    fn profile_of<'a>(waits: impl Iterator<Item = &'a Wait>) -> FoldedProfile {
        let mut p = FoldedProfile::new();
        for (process, thread, f, ns) in waits {
            p.add(process, thread, f, *ns);
        }
        p
    }

    fn sample_profile() -> FoldedProfile {
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
            vec![("contentions", "count"), ("delay", "nanoseconds")]
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

        assert_eq!(p.sample.len(), 3);
        let go = p
            .sample
            .iter()
            .find(|s| v.label(s, "process").as_deref() == Some("locker"))
            .unwrap();
        assert_eq!(go.value, vec![2, 4_500_000_000]);
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
        assert_eq!(c.value, vec![1, 250_000_000]);
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
        write_pprof(&FoldedProfile::new(), &PprofMeta::default(), &path).unwrap();
        let p = read_back(&path);
        assert!(p.mapping.is_empty());
        assert!(p.sample.is_empty());
        assert_eq!(p.sample_type.len(), 2);
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
                eprintln!(
                    "SKIPPED: `go` is not on PATH, cannot check the profile with go tool pprof"
                );
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
        // 4.5s of the 4.75s total sits in sync.(*Mutex).Lock.
        assert!(top.contains("of 4750ms total"), "{top}");
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
        // 2 + 1 + 1 waits.
        assert!(counts.contains("of 4 total"), "{counts}");

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
}
