//! What the fuzz targets feed to observer, shared with the seeded tests in `tests/`.
//!
//! Every function here takes arbitrary bytes and hands them to a parser of input observer does
//! not control: executables of the target (any file can be a "Go binary"), `/proc` text (a
//! process can name itself and its files almost anything), ring-buffer records (written by the
//! kernel programs, copied from target memory), stack bytes (the target's own memory), alert
//! lines and recordings (files a user points a tool at). None of them may panic. A `panic!`/`assert!` here
//! marks a broken *property* (for example a round trip), which is a bug as well.

use std::fs;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use observer::detect::gowatch::go_message;
use observer::detect::procexit::ProcessExits;
use observer::golang::GoBinary;
use observer::kernel::events::{comm_str, Event};
use observer::output::alert::Alert;
use observer::output::recording::{Meta, Recorder, Recording};
use observer::proc::procmaps::{parse_line, ProcessMaps};
use observer::stacks::resolver::stack_bytes;
use observer::stacks::unwind::{Regs, Unwinder};

/// The bytes as a file, opened with [`GoBinary::open`], then queried like observer does.
pub fn go_binary(data: &[u8]) {
    let path = scratch_file();
    if fs::write(&path, data).is_err() {
        return;
    }
    exercise_go_binary(&path);
}

/// Everything observer asks of a Go binary after opening it (attach, symbolization, dump).
pub fn exercise_go_binary(path: &std::path::Path) {
    let Ok(bin) = GoBinary::open(path) else {
        return;
    };
    let _ = bin.version();
    let _ = (bin.is_pie(), bin.is_stripped(), bin.has_dwarf());
    let _ = bin.offsets().map(|o| o.g_read_len());
    for n in [0u8, 1, 7, 40, 255] {
        let _ = bin.wait_reason(n);
    }
    for name in [
        "runtime.gopark",
        "runtime.ready",
        "runtime.gopanic",
        "runtime.throw",
        "runtime.fatal",
        "runtime.recovery",
        "main.main",
    ] {
        let _ = bin.func_addr(name);
        let _ = bin.func_offset(name);
        let _ = bin.ret_offsets(name);
        let _ = bin.entry_after_stack_check(name);
        let _ = bin.entry_after_frame_setup(name);
        if let Some(info) = bin.func_info(name) {
            for pc in [
                info.entry,
                info.entry.wrapping_add(1),
                info.end.wrapping_sub(1),
            ] {
                let _ = bin.func_name_at(pc);
                let _ = bin.frames_at(pc);
                let _ = bin.call_site(pc);
            }
        }
    }
    let _ = bin.symbol_addr("runtime.allgs");
    let _ = bin.allgs_addr();
    for f in bin.funcs().take(64) {
        let _ = bin.frames_at(f.entry);
    }
}

/// Compressed ELF sections, checked and inflated as observer does before any DWARF reader
/// sees them. The first byte picks the input: `0` a bare zlib stream whose declared size is
/// the next two bytes, anything else a whole ELF file. Property: nothing inflates past what
/// its header declared, nor past the per-file budget.
pub fn compressed_sections(data: &[u8]) {
    use object::{Object, ObjectSection};
    use observer::proc::inflate::{self, Budget, InflateError, MAX_DECOMPRESSED_PER_FILE};
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    if which == 0 {
        let (declared, stream) = match rest {
            [a, b, stream @ ..] => (u64::from(u16::from_le_bytes([*a, *b])), stream),
            _ => return,
        };
        let mut out = Vec::new();
        match inflate::inflate_zlib("fuzz", stream, declared, &mut out) {
            Ok(()) => assert_eq!(out.len() as u64, declared),
            Err(InflateError::LongerThanDeclared { .. }) => {
                assert_eq!(out.len() as u64, declared + 1, "inflated past declared + 1")
            }
            Err(_) => assert!(out.len() as u64 <= declared),
        }
        return;
    }
    let Ok(obj) = object::File::parse(rest) else {
        return;
    };
    let _ = inflate::verify_sections(&obj, |offset, len| {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(rest.len());
        let end = usize::try_from(offset.saturating_add(len))
            .unwrap_or(usize::MAX)
            .min(rest.len());
        Ok(&rest[start..end.max(start)])
    });
    let mut budget = Budget::default();
    let mut total = 0u64;
    for section in obj.sections() {
        let compressed = section
            .compressed_file_range()
            .is_ok_and(|r| r.format != object::CompressionFormat::None);
        if let Ok(bytes) = inflate::section_data(&section, &mut budget) {
            if compressed {
                total += bytes.len() as u64;
            }
        }
    }
    assert!(total <= MAX_DECOMPRESSED_PER_FILE, "{total} bytes inflated");
}

/// One file per fuzzing process, rewritten for every input: `GoBinary` reads from a path.
fn scratch_file() -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("observer-fuzz-")
            .tempdir()
            .expect("a temporary directory for the fuzzed file")
    })
    .path()
    .join("input.bin")
}

/// A recording file, as `observer report FILE` reads any file it is given. The first byte
/// picks what the rest is: a whole file, or the payload of a profile block of format version 2
/// or 1 that gets a valid frame and checksum (mutations of a whole file almost never get past
/// the checksum to the profile decoder). What parses is rendered like a report does, then
/// written again as the current format version and read back: it must come back unchanged.
pub fn recording(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let framed;
    let file = match which % 3 {
        0 => rest,
        n => {
            framed = frame_profile(if n == 1 { 2 } else { 1 }, rest);
            &framed
        }
    };
    let Ok(rec) = Recording::parse(file) else {
        return;
    };
    let profile = observer::output::report::profile_of(&rec);
    let _ = (profile.lines(), profile.top(10), profile.total_weight_ns());
    let _ = observer::output::pprof::build(&profile, &observer::output::report::pprof_meta(&rec));

    let meta = rec.meta.clone().unwrap_or_else(|| Meta {
        observer_version: String::new(),
        pid: 0,
        process: String::new(),
        executable: None,
        build_id: None,
        started: String::new(),
        threshold_ns: 0,
        stall_after_ns: 0,
        kernel: String::new(),
    });
    let path = scratch_file().with_file_name("again.obsrec");
    let _ = fs::remove_file(&path);
    let Ok(mut out) = Recorder::create(&path, &meta) else {
        return;
    };
    for alert in &rec.alerts {
        out.alert(alert).expect("writing an alert back");
    }
    if let Some(p) = &rec.profile {
        out.profile(p).expect("writing the profile back");
    }
    out.finish().expect("finishing the recording");
    let again = Recording::read(&path)
        .unwrap_or_else(|e| panic!("observer cannot read back the recording it wrote: {e}"));
    assert_eq!(again.meta.as_ref(), Some(&meta), "metadata changed");
    assert_eq!(again.alerts, rec.alerts, "alerts changed");
    assert_eq!(again.profile, rec.profile, "profile changed");
    assert!(!again.truncated);
}

/// A recording of format `version` holding one profile block with `payload`, then an end
/// marker: the framing of `observer::output::recording` (`[u16 kind][u32 len][payload][u32 crc]`).
pub fn frame_profile(version: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = observer::output::recording::MAGIC.to_vec();
    out.extend_from_slice(&version.to_le_bytes());
    for (kind, body) in [(3u16, payload), (4, &[][..])] {
        let mut block = kind.to_le_bytes().to_vec();
        block.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes());
        block.extend_from_slice(body);
        let crc = crc32fast::hash(&block);
        out.extend_from_slice(&block);
        out.extend_from_slice(&crc.to_le_bytes());
    }
    out
}

/// `/proc` and tracefs text. The first byte picks the parser, the rest is the text.
pub fn proc_text(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match which % 8 {
        0 => {
            for line in text.lines() {
                if let Ok(m) = parse_line(line) {
                    let _ = m.contains(m.start);
                    let _ = m.file_offset(m.end);
                    let _ = m.display_name();
                    let _ = m.is_vdso();
                }
            }
        }
        1 => {
            // No file named in the text is opened unless asked (it stays lazy).
            let maps = ProcessMaps::from_text(1, &text);
            let probes = maps
                .mappings()
                .iter()
                .flat_map(|m| {
                    [
                        m.start,
                        m.end,
                        m.end.wrapping_sub(1),
                        m.start.wrapping_sub(1),
                    ]
                })
                .chain([0, u64::MAX]);
            for addr in probes.collect::<Vec<_>>() {
                if let Some(m) = maps.find(addr) {
                    assert!(
                        m.contains(addr),
                        "find({addr:#x}) returned a mapping without it"
                    );
                    let _ = m.file_offset(addr);
                }
            }
        }
        2 => {
            for line in text.lines() {
                let _ = observer::proc::seed::parse_syscall_line(line);
            }
        }
        3 => {
            let _ = observer::proc::seed::parse_state(&text);
        }
        4 => {
            let fields = observer::kernel::tracefs::parse_format(&text);
            let _ = fields.iter().map(|f| f.offset.wrapping_add(f.size)).max();
        }
        5 => {
            let _ = observer::kernel::tracefs::find_tracefs_mount(&text);
            if let Some(caps) = observer::kernel::privileges::effective_caps(&text) {
                let _ = observer::kernel::privileges::missing_caps(caps);
            }
        }
        6 => {
            let _ = observer::util::duration::parse_duration(&text);
        }
        _ => {
            // Whatever the cgroup paths say, an id given is of the exact shape promised.
            let id = observer::proc::container::parse_cgroup_file(&text);
            if let Some(c) = &id.container_id {
                assert!(observer::proc::container::is_container_id(c), "{c:?}");
            }
            if let Some(u) = &id.pod_uid {
                assert!(observer::proc::container::is_pod_uid(u), "{u:?}");
            }
        }
    }
}

/// A ring-buffer record as the kernel would hand it over, then the helpers and the process-exit
/// rule that consume its fields.
pub fn ring_event(data: &[u8]) {
    let Ok(event) = Event::parse(data) else {
        return;
    };
    let mut exits = ProcessExits::default();
    match event {
        Event::Wait(w) => {
            let _ = stack_bytes(&w.waiter);
            let _ = stack_bytes(&w.waker);
            let _ = observer_common::classify_syscall(w.syscall);
            let _ = observer_common::lock_owner(w.op, [w.futex_val, w.owner, w.class], w.tid);
        }
        Event::Fork(f) => {
            let _ = comm_str(&f.comm);
            let _ = stack_bytes(&f.creator);
        }
        Event::Exit(e) => {
            let _ = comm_str(&e.comm);
            exits.thread_exited(e.tgid, e.tid, e.syscall, e.arg0);
            let _ = exits.process_ended(e.tgid, e.tid, e.syscall, e.arg0);
        }
        Event::Signal(s) => {
            exits.fatal_signal(s.tgid, s.tid, s.sig);
            let _ = exits.process_ended(s.tgid, s.tid, -1, 0);
            let _ = observer::output::alert::signal_name(s.sig);
        }
        Event::GoWait(_) => {}
        Event::GoPanic(p) | Event::GoRecovered(p) | Event::GoFatal(p) => {
            let _ = go_message(&p);
        }
        Event::Exec(e) => {
            let _ = comm_str(&e.comm);
        }
        Event::ShortSample(s) => {
            let _ = stack_bytes(&s.waiter);
            let _ = comm_str(&s.key.comm);
        }
        Event::HolderSample(h) => {
            let _ = stack_bytes(&h.stack);
        }
    }
}

/// An alert line. One that parses must survive a write and a re-read unchanged.
pub fn alert_json(data: &[u8]) {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(alert) = Alert::from_json_line(line) else {
        return;
    };
    let written = alert.to_json_line();
    let again = Alert::from_json_line(&written)
        .unwrap_or_else(|e| panic!("observer cannot read back its own line {written}: {e}"));
    assert_eq!(
        alert, again,
        "alert changed in a write/read round trip: {written}"
    );
}

/// Registers and stack bytes from the input, unwound against this very process (real
/// executable, real libc): what observer does with the stacks the kernel copies out of a
/// target, whose contents the target controls. The first 8 bytes steer `ip` into real code.
pub fn stack_unwind(data: &[u8]) {
    static UNWINDER: OnceLock<Mutex<Unwinder>> = OnceLock::new();
    if data.len() < 16 {
        return;
    }
    let word = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().unwrap_or([0; 8]));
    let stack = &data[16..];
    let anchors = [
        stack_unwind as *const () as usize as u64,
        libc::getpid as *const () as usize as u64,
        libc::malloc as *const () as usize as u64,
    ];
    let pick = word(0);
    let ip = anchors[(pick % 3) as usize].wrapping_add((pick >> 8) % (1 << 20));
    let sp = word(8);
    let mut unwinder = UNWINDER
        .get_or_init(|| Mutex::new(Unwinder::new()))
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let frames = unwinder.unwind(std::process::id(), Regs { ip, sp, bp: sp }, stack);
    assert!(
        !frames.is_empty() && frames[0] == ip,
        "the first frame must be ip"
    );
}

/// A made-up process `pid` (one that does not exist) whose maps are `maps_text`: unwinds a
/// stack through the files it names and symbolizes the frames, as observer does for a target
/// whose executable or libraries are those files.
pub fn unwind_and_symbolize(pid: u32, maps_text: &str, regs: Regs, stack: &[u8]) -> Vec<String> {
    let maps = std::sync::Arc::new(ProcessMaps::from_text(pid, maps_text));
    let mut unwinder = Unwinder::new();
    unwinder.insert_maps(std::sync::Arc::clone(&maps));
    let frames = unwinder.unwind(pid, regs, stack);
    let mut symbolizer = observer::stacks::symbolize::Symbolizer::new();
    symbolizer.insert_maps(maps);
    symbolizer.symbolize(pid, &frames)
}
