//! The fuzz targets' inputs without a fuzzer: a seeded generator feeds each harness function
//! random bytes and damaged copies of valid inputs, many thousand times, on stable Rust and in
//! a plain `cargo test`. Reproducible: a failure names the seed and the iteration.

use std::mem::size_of;

use observer_common::{
    event_kind, ExitEvent, ForkEvent, GoPanicEvent, GoWaitEvent, SignalEvent, WaitEvent,
};

const ITERATIONS: u64 = 20_000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Bytes that mean something to text and binary parsers: separators, digits, hex, NUL, high.
const INTERESTING: &[u8] = b" \t\n-:/()[]{}\",0x7f\0\xff9a";

/// A damaged copy of `seed`: bytes changed, cut, duplicated, or spliced with interesting ones.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 if !v.is_empty() => {
                let at = rng.below(v.len());
                v[at] = rng.next() as u8;
            }
            1 if !v.is_empty() => {
                let at = rng.below(v.len());
                v[at] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => v.truncate(rng.below(v.len() + 1)),
            3 if !v.is_empty() => {
                let from = rng.below(v.len());
                let to = (from + 1 + rng.below(16)).min(v.len());
                let chunk = v[from..to].to_vec();
                let at = rng.below(v.len());
                v.splice(at..at, chunk);
            }
            4 => {
                let at = rng.below(v.len() + 1);
                let n = 1 + rng.below(8);
                let junk = rng.bytes(n);
                v.splice(at..at, junk);
            }
            _ => {
                // Numbers are where parsers overflow: write a long run of digits somewhere.
                let at = rng.below(v.len() + 1);
                let digits = b"18446744073709551616999";
                v.splice(
                    at..at,
                    digits[..1 + rng.below(digits.len())].iter().copied(),
                );
            }
        }
    }
    v
}

/// Runs `harness` on random and damaged inputs; a panic fails the test with the seed.
fn drive(name: &str, seed: u64, iterations: u64, seeds: &[Vec<u8>], harness: fn(&[u8])) {
    let mut rng = Rng(seed);
    for i in 0..iterations {
        let input = if seeds.is_empty() || rng.below(4) == 0 {
            let len = rng.below(256);
            rng.bytes(len)
        } else {
            let base = &seeds[rng.below(seeds.len())];
            mutate(&mut rng, base)
        };
        let outcome = std::panic::catch_unwind(|| harness(&input));
        assert!(
            outcome.is_ok(),
            "{name}: panic at iteration {i} (seed {seed:#x}) on input {:?}",
            String::from_utf8_lossy(&input)
        );
    }
}

fn with_selector(selector: u8, text: &str) -> Vec<u8> {
    let mut v = vec![selector];
    v.extend_from_slice(text.as_bytes());
    v
}

const FORMAT: &str = "name: sched_process_exit\nID: 369\nformat:\n\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\
\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\
\tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;\n\
\tfield:bool group_dead;\toffset:32;\tsize:1;\tsigned:0;\n\n\
print fmt: \"comm=%s pid=%d\", REC->comm, REC->pid\n";

#[test]
fn proc_text_parsers() {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let seeds = vec![
        with_selector(0, &maps),
        with_selector(
            0,
            "7f12a000-7f12b000 r-xp 00001000 fd:01 1234   /usr/lib/x (deleted)\n",
        ),
        with_selector(1, &maps),
        with_selector(
            2,
            "202 0x55d0c0 0x80 0x2 0x0 0x0 0x0 0x7ffc1000 0x7f12a010\n",
        ),
        with_selector(2, "-1 0x7ffc1000 0x7f12a010\nrunning\n"),
        with_selector(3, &stat),
        with_selector(3, "12 (a) b) c) S 1 2 3"),
        with_selector(4, FORMAT),
        with_selector(5, &mounts),
        with_selector(5, "tracefs /sys/kernel/trac\\040ing tracefs rw 0 0\n"),
        with_selector(5, &status),
        with_selector(6, "1m30s"),
        with_selector(6, "1.5s"),
        with_selector(6, "250ms 10us 3h"),
        with_selector(7, &std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default()),
        with_selector(
            7,
            "12:pids:/docker/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n\
             0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod8f9b2c4e_1d3a_4b5c_9e7f_0a1b2c3d4e5f.slice/\
             cri-containerd-3b1f6d0c2a7e4f5b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b.scope\n",
        ),
        with_selector(
            7,
            "0::/kubepods/besteffort/pod8f9b2c4e-1d3a-4b5c-9e7f-0a1b2c3d4e5f/crio-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n",
        ),
    ];
    drive(
        "proc_text",
        0x9f0c_0001,
        ITERATIONS,
        &seeds,
        observer_fuzz::proc_text,
    );
}

fn record<T>(kind: u32) -> Vec<u8> {
    let mut v = vec![0u8; size_of::<T>()];
    v[..4].copy_from_slice(&kind.to_ne_bytes());
    v
}

#[test]
fn ring_event_records() {
    let seeds = [
        record::<WaitEvent>(event_kind::WAIT),
        record::<ForkEvent>(event_kind::FORK),
        record::<ExitEvent>(event_kind::EXIT),
        record::<SignalEvent>(event_kind::SIGNAL),
        record::<GoWaitEvent>(event_kind::GO_WAIT),
        record::<GoPanicEvent>(event_kind::GO_PANIC),
        record::<GoPanicEvent>(event_kind::GO_RECOVERED),
        record::<GoPanicEvent>(event_kind::GO_FATAL),
    ];
    // The big records (stack copies) are mostly zeros: change their headers, not their tails.
    let heads: Vec<Vec<u8>> = seeds
        .iter()
        .map(|s| s[..s.len().min(512)].to_vec())
        .collect();
    let mut rng = Rng(0x9f0c_0002);
    for i in 0..ITERATIONS {
        let which = rng.below(seeds.len());
        let mut input = seeds[which].clone();
        let head = mutate(&mut rng, &heads[which]);
        let n = head.len().min(input.len());
        input[..n].copy_from_slice(&head[..n]);
        if rng.below(3) == 0 {
            input.truncate(rng.below(input.len() + 1));
        }
        let outcome = std::panic::catch_unwind(|| observer_fuzz::ring_event(&input));
        assert!(
            outcome.is_ok(),
            "ring_event: panic at iteration {i} (kind {which})"
        );
    }
    drive(
        "ring_event",
        0x9f0c_0003,
        ITERATIONS / 4,
        &heads,
        observer_fuzz::ring_event,
    );
}

const ALERTS: &[&str] = &[
    r#"{"kind":"lock_hold","time":"2026-11-26T20:05:18.847Z","pid":14175,"tid":14177,"comm":"worker","stack":["futex_wait (futex-internal.h:146)","worker_update (lock_hold.c:45)"],"uaddr":"0x558a7231b0a0","lock_kind":"pthread_mutex","owner_recorded":true,"hold_ns":296029719,"holder_tid":14178,"holder_comm":"maintenance","holder_known_from":"owner","holder_state":"unknown","holder_syscall":null,"holder_stack":[],"holder_samples":0,"release_tid":14178,"release_comm":"maintenance","release_stack":["maintenance_compact (lock_hold.c:25)"],"waiters":1,"longest_wait_ns":296029719,"total_wait_ns":296029719,"waiter_stacks":[{"stack":["futex_wait (futex-internal.h:146)","worker_update (lock_hold.c:45)"],"count":1,"longest_ns":296029719,"comm":"worker"}],"waiter_stacks_omitted":0}"#,
    r#"{"kind":"thread_exit","time":"2026-11-26T20:07:41.558Z","pid":15806,"tid":15809,"comm":"worker-2","stack":[],"exit_code":0,"signal":null,"lifetime_ns":502801998,"created_by":["start_workers (thread_death.c:93)"],"count":1}"#,
    r#"{"kind":"process_exit","time":"2026-11-26T20:07:45.072Z","pid":15806,"tid":15806,"comm":"thread_death","stack":[],"exit_code":0,"signal":null,"by_tid":15806,"message":null}"#,
    r#"{"kind":"process_exit","time":"2026-11-26T20:07:45.072Z","pid":1,"tid":1,"comm":"x","stack":[],"exit_code":null,"signal":"SIGSEGV","by_tid":1,"message":"panic: boom"}"#,
    r#"{"kind":"go_panic","time":"2026-11-26T20:07:45.072Z","pid":1,"tid":2,"comm":"x","stack":["main.produce (closed_channel.go:11)"],"goid":21,"message":"send on closed channel","recovered":false}"#,
];

#[test]
fn alert_lines() {
    // The examples must parse, or the mutations below test nothing.
    for line in ALERTS {
        observer::output::alert::Alert::from_json_line(line)
            .unwrap_or_else(|e| panic!("{line}: {e}"));
    }
    let seeds: Vec<Vec<u8>> = ALERTS.iter().map(|a| a.as_bytes().to_vec()).collect();
    drive(
        "alert_json",
        0x9f0c_0004,
        ITERATIONS,
        &seeds,
        observer_fuzz::alert_json,
    );
}

#[test]
fn go_binary_files() {
    // Each input is written to a file: fewer of them, and ELF-looking ones among the seeds.
    let mut elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0\x01\0\0\0".to_vec();
    elf.resize(64, 0);
    let seeds = vec![
        elf,
        std::fs::read("/proc/self/exe").unwrap_or_default()[..4096].to_vec(),
    ];
    drive(
        "go_binary",
        0x9f0c_0005,
        2_000,
        &seeds,
        observer_fuzz::go_binary,
    );
}

#[test]
fn compressed_sections() {
    use std::io::Write;
    let zlib = |data: &[u8]| {
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(data).expect("compress");
        enc.finish().expect("finish")
    };
    // Honest, short and bomb-like streams (1 MiB of zeros declared as 4 KiB).
    let mut honest = vec![0u8, 16, 0];
    honest.extend(zlib(b"0123456789abcdef"));
    let mut bomb = vec![0u8, 0, 16];
    bomb.extend(zlib(&vec![0u8; 1 << 20]));
    let mut seeds = vec![honest, bomb];
    // A real ELF file with zlib-compressed DWARF (`-gz=zlib`), when gcc is there.
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("p.c");
    std::fs::write(&src, "int main(void) { return 0; }\n").expect("write");
    let bin = dir.path().join("p");
    let built = std::process::Command::new("gcc")
        .args(["-g", "-gz=zlib", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .is_ok_and(|s| s.success());
    if built {
        let mut elf = vec![1u8];
        elf.extend(std::fs::read(&bin).expect("read"));
        seeds.push(elf);
    } else {
        eprintln!("!!! compressed_sections: no gcc, no ELF seed");
    }
    drive(
        "compressed_sections",
        0x9f0c_000a,
        3_000,
        &seeds,
        observer_fuzz::compressed_sections,
    );
}

#[test]
fn stack_unwinding() {
    let mut rng = Rng(0x9f0c_0006);
    // Real stack words (return addresses into this test binary) are the interesting seeds.
    let seed: Vec<u8> = (0..64)
        .flat_map(|_| {
            (stack_unwinding as *const () as usize as u64 + rng.below(1 << 16) as u64).to_le_bytes()
        })
        .collect();
    drive(
        "stack_unwind",
        0x9f0c_0007,
        5_000,
        &[seed],
        observer_fuzz::stack_unwind,
    );
}

/// A version 2 recording with addresses, inline chains and names, and the version 1 fixture.
fn recording_seeds() -> Vec<Vec<u8>> {
    use observer::output::profile::StackEntry;
    use observer::output::recording::{Meta, ProfileSnapshot, Recorder};
    use observer::proc::normaddr::{Module, NormAddr};
    use observer::stacks::frame::Frame;
    use std::sync::Arc;

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("seed.obsrec");
    let meta = Meta {
        observer_version: "0.1.0".into(),
        pid: 7,
        process: "bank".into(),
        executable: Some("/usr/bin/bank".into()),
        build_id: Some("abcd".into()),
        started: "2026-11-26T20:00:00.000Z".into(),
        threshold_ns: 1,
        stall_after_ns: 2,
        kernel: "6.18".into(),
    };
    let exe = Arc::new(Module {
        path: "/usr/bin/bank".into(),
        build_id: Some("abcd".into()),
    });
    let at = |name: &str, off: u64, inlined: bool| Frame {
        name: name.into(),
        addr: Some(NormAddr {
            module: Arc::clone(&exe),
            file_offset: off,
        }),
        inlined,
    };
    let snapshot = ProfileSnapshot {
        elapsed_ns: 9,
        stacks: vec![StackEntry {
            process: "bank".into(),
            thread: "worker".into(),
            frames: vec![
                Frame::named("[futex]"),
                at("lock (bank.c:9)", 0x10, true),
                at("transfer (bank.c:14)", 0x10, false),
                at("main (bank.c:30)", 0x20, false),
            ],
            weight_ns: 5,
            count: 1,
            category: observer::output::profile::Category::Idle,
            container: Default::default(),
        }],
        events_dropped: 0,
        agg_dropped: 0,
    };
    let mut r = Recorder::create(&path, &meta).expect("recorder");
    let alert = observer::output::alert::Alert::from_json_line(ALERTS[2]).expect("alert");
    r.alert(&alert).expect("alert");
    r.profile(&snapshot).expect("profile");
    r.finish().expect("finish");
    let v2 = std::fs::read(&path).expect("seed recording");
    let v1 = include_bytes!("../../observer-user/src/output/recording/testdata/v1.obsrec").to_vec();
    let mut seeds = Vec::new();
    for (selector, file) in [(1u8, &v2), (2, &v1)] {
        let mut whole = vec![0u8];
        whole.extend_from_slice(file);
        seeds.push(whole);
        // The profile payloads alone, for the selector that frames them again.
        for payload in profile_payloads(file) {
            let mut v = vec![selector];
            v.extend_from_slice(payload);
            seeds.push(v);
        }
    }
    seeds
}

/// The payloads of the profile blocks (kind 3) of a well-formed recording.
fn profile_payloads(file: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut pos = 10;
    while pos + 6 <= file.len() {
        let kind = u16::from_le_bytes([file[pos], file[pos + 1]]);
        let len = u32::from_le_bytes(file[pos + 2..pos + 6].try_into().unwrap()) as usize;
        if kind == 3 {
            out.push(&file[pos + 6..pos + 6 + len]);
        }
        pos += 6 + len + 4;
    }
    out
}

#[test]
fn recordings() {
    let seeds = recording_seeds();
    // The seeds must parse, or the mutations below test nothing.
    assert_eq!(seeds.len(), 5);
    for seed in &seeds {
        let file = match seed[0] {
            0 => seed[1..].to_vec(),
            n => observer_fuzz::frame_profile(if n == 1 { 2 } else { 1 }, &seed[1..]),
        };
        let rec = observer::output::recording::Recording::parse(&file).expect("seed parses");
        assert!(rec.profile.is_some_and(|p| !p.stacks.is_empty()));
        observer_fuzz::recording(seed);
    }
    drive(
        "recording",
        0x9f0c_0008,
        ITERATIONS,
        &seeds,
        observer_fuzz::recording,
    );
}
