//! Real executables, damaged: truncated at many offsets, with bytes flipped inside the sections
//! observer parses and with broken header fields. Opening one as a Go binary, unwinding a stack
//! through it and symbolizing that stack must give errors or partial answers, never a panic.
//!
//! The executables are built here: a Go program (debug info and stripped) with the `go` on
//! PATH, else Debian's Go 1.19, and a C program with gcc. Without a Go toolchain the Go part is
//! skipped with a loud line (setup installs one).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use observer::golang::GoBinary;
use observer::stacks::unwind::Regs;
use observer_fuzz::{exercise_go_binary, unwind_and_symbolize};

/// A pid no process can have (above the kernel's PID_MAX_LIMIT): the maps are all made up.
const FAKE_PID: u32 = 4_194_305;
/// Where the made-up process has its executable.
const LOAD_BASE: u64 = 0x5555_5555_4000;
const FAKE_SP: u64 = 0x7ffc_0000_0000;
/// Longer than any honest parse of these small files takes, even unoptimized.
const HANG_SECONDS: u32 = 20;

const GO_PROGRAM: &str = r#"package main

import (
	"fmt"
	"sync"
	"time"
)

var mu sync.Mutex

func work(id int, wg *sync.WaitGroup, ch chan int) {
	defer wg.Done()
	mu.Lock()
	time.Sleep(time.Millisecond)
	mu.Unlock()
	ch <- id
}

func main() {
	var wg sync.WaitGroup
	ch := make(chan int, 4)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go work(i, &wg, ch)
	}
	wg.Wait()
	fmt.Println(len(ch))
}
"#;

const C_PROGRAM: &str = r#"
#include <pthread.h>
#include <stdio.h>
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
__attribute__((noinline)) int inner(int x) { pthread_mutex_lock(&m); x *= 3; pthread_mutex_unlock(&m); return x; }
__attribute__((noinline)) int outer(int x) { return inner(x + 1) + 1; }
int main(int argc, char **argv) { (void)argv; printf("%d\n", outer(argc)); return 0; }
"#;

/// Deterministic xorshift: a failure names the seed and the variant, and reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

#[derive(Debug, Clone)]
struct Section {
    name: String,
    offset: u64,
    size: u64,
    /// File offset of its section header.
    header: u64,
    /// `SHF_COMPRESSED`: the data starts with an `Elf64_Chdr` giving the inflated size.
    compressed: bool,
}

struct ElfLayout {
    sections: Vec<Section>,
    /// (file offset, virtual address, file size) of the executable PT_LOAD segment.
    text: (u64, u64, u64),
    phoff: u64,
    phnum: u64,
}

fn u16_at(b: &[u8], at: u64) -> u64 {
    let at = at as usize;
    u64::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn u32_at(b: &[u8], at: u64) -> u64 {
    let at = at as usize;
    u64::from(u32::from_le_bytes(b[at..at + 4].try_into().unwrap()))
}

fn u64_at(b: &[u8], at: u64) -> u64 {
    let at = at as usize;
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Section and segment layout of an intact little-endian ELF64 file (ours, built above).
fn layout(b: &[u8]) -> ElfLayout {
    assert_eq!(&b[..4], b"\x7fELF", "not an ELF file");
    let (shoff, shentsize, shnum, shstrndx) = (
        u64_at(b, 0x28),
        u16_at(b, 0x3a),
        u16_at(b, 0x3c),
        u16_at(b, 0x3e),
    );
    let (phoff, phentsize, phnum) = (u64_at(b, 0x20), u16_at(b, 0x36), u16_at(b, 0x38));
    let strtab = shoff + shstrndx * shentsize;
    let (str_off, str_size) = (u64_at(b, strtab + 24), u64_at(b, strtab + 32));
    let names = &b[str_off as usize..(str_off + str_size) as usize];
    let sections = (0..shnum)
        .map(|i| {
            let header = shoff + i * shentsize;
            let name_at = u32_at(b, header) as usize;
            let end = names[name_at..].iter().position(|&c| c == 0).unwrap_or(0);
            Section {
                name: String::from_utf8_lossy(&names[name_at..name_at + end]).into_owned(),
                offset: u64_at(b, header + 24),
                size: u64_at(b, header + 32),
                header,
                compressed: u64_at(b, header + 8) & 0x800 != 0,
            }
        })
        .collect();
    let text = (0..phnum)
        .map(|i| phoff + i * phentsize)
        .find(|&ph| u32_at(b, ph) == 1 && u32_at(b, ph + 4) & 1 != 0)
        .map(|ph| (u64_at(b, ph + 8), u64_at(b, ph + 16), u64_at(b, ph + 32)))
        .expect("no executable PT_LOAD segment");
    ElfLayout {
        sections,
        text,
        phoff,
        phnum,
    }
}

/// The sections observer (or the libraries it uses) reads from an executable.
const WANTED: &[&str] = &[
    ".go.buildinfo",
    ".gopclntab",
    ".noptrdata",
    ".data",
    ".rodata",
    ".typelink",
    ".symtab",
    ".strtab",
    ".debug_info",
    ".debug_abbrev",
    ".debug_line",
    ".debug_str",
    ".zdebug_info",
    ".eh_frame",
    ".eh_frame_hdr",
    ".dynsym",
    ".dynstr",
    ".note.gnu.build-id",
    ".note.go.buildid",
    ".text",
];

/// Damaged copies of `orig`: name and bytes.
fn variants(
    orig: &[u8],
    lay: &ElfLayout,
    seed: u64,
    flips_per_section: u64,
) -> Vec<(String, Vec<u8>)> {
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    let len = orig.len() as u64;

    // Truncations: every 128 bytes through the headers, then spread over the file, plus the
    // edges of the sections read (where a reader crosses from one structure into the next).
    let mut cuts: Vec<u64> = (0..4096.min(len)).step_by(128).collect();
    cuts.extend((1..24).map(|i| len * i / 24));
    for s in lay
        .sections
        .iter()
        .filter(|s| WANTED.contains(&s.name.as_str()))
    {
        for c in [
            s.offset,
            s.offset + s.size / 2,
            s.offset + s.size.saturating_sub(1),
        ] {
            if c < len {
                cuts.push(c);
            }
        }
    }
    cuts.sort_unstable();
    cuts.dedup();
    for c in cuts {
        out.push((format!("truncated at {c}"), orig[..c as usize].to_vec()));
    }

    // Random bytes inside the sections observer reads.
    for s in lay
        .sections
        .iter()
        .filter(|s| WANTED.contains(&s.name.as_str()))
    {
        if s.size == 0 || s.offset + s.size > len {
            continue;
        }
        for _ in 0..flips_per_section {
            let mut v = orig.to_vec();
            // Near the start of a section sit its headers and tables: aim there half the time.
            let span = if rng.below(2) == 0 {
                s.size.min(256)
            } else {
                s.size
            };
            let n = 1 + rng.below(8);
            let mut spots = Vec::new();
            for _ in 0..n {
                let at = s.offset + rng.below(span);
                v[at as usize] = rng.next() as u8;
                spots.push(at);
            }
            out.push((format!("{} bytes changed at {spots:?} ({})", n, s.name), v));
        }
    }

    // Header fields that say where things are: section offsets and sizes, counts, segment
    // fields, set to values past the end, huge, or zero.
    let evil = [
        0,
        1,
        len - 1,
        len,
        len + 1,
        u64::MAX,
        u64::MAX / 2,
        0x8000_0000,
    ];
    for s in lay
        .sections
        .iter()
        .filter(|s| WANTED.contains(&s.name.as_str()))
    {
        for (field, at) in [("offset", s.header + 24), ("size", s.header + 32)] {
            let value = evil[rng.below(evil.len() as u64) as usize];
            let mut v = orig.to_vec();
            v[at as usize..at as usize + 8].copy_from_slice(&value.to_le_bytes());
            out.push((format!("{} section {field} set to {value:#x}", s.name), v));
        }
    }
    // A compressed section's header names the inflated size, which a reader may allocate.
    for s in lay.sections.iter().filter(|s| s.compressed && s.size >= 24) {
        for value in [0u64, 1 << 31, 1 << 40, u64::MAX] {
            let mut v = orig.to_vec();
            let at = (s.offset + 8) as usize;
            v[at..at + 8].copy_from_slice(&value.to_le_bytes());
            out.push((
                format!("{} compressed size (ch_size) set to {value:#x}", s.name),
                v,
            ));
        }
    }
    for (field, at, width) in [
        ("e_shoff", 0x28u64, 8usize),
        ("e_phoff", 0x20, 8),
        ("e_shnum", 0x3c, 2),
        ("e_shstrndx", 0x3e, 2),
        ("e_phnum", 0x38, 2),
        ("e_shentsize", 0x3a, 2),
    ] {
        for value in [0u64, 1, 0xffff, u64::MAX] {
            let mut v = orig.to_vec();
            v[at as usize..at as usize + width].copy_from_slice(&value.to_le_bytes()[..width]);
            out.push((format!("{field} set to {value:#x}"), v));
        }
    }
    for i in 0..lay.phnum {
        let ph = lay.phoff + i * 56;
        for (field, off) in [("p_offset", 8u64), ("p_vaddr", 16), ("p_filesz", 32)] {
            let mut v = orig.to_vec();
            let value = evil[rng.below(evil.len() as u64) as usize];
            let at = (ph + off) as usize;
            v[at..at + 8].copy_from_slice(&value.to_le_bytes());
            out.push((format!("program header {i} {field} set to {value:#x}"), v));
        }
    }
    // Seeded shuffle: if a slow machine hits the time budget, what ran is still a sample of
    // every kind of damage, not only the first kind.
    for i in (1..out.len()).rev() {
        out.swap(i, rng.below(i as u64 + 1) as usize);
    }
    out
}

/// Maps text of a process that has `path` (with the intact file's layout) as its executable.
fn maps_for(path: &Path, text: (u64, u64, u64)) -> (String, u64, u64) {
    let meta = fs::metadata(path).unwrap();
    let (major, minor) = (libc::major(meta.dev()), libc::minor(meta.dev()));
    let (offset, vaddr, filesz) = text;
    let start = LOAD_BASE + (vaddr & !0xfff);
    let end = (LOAD_BASE + vaddr + filesz + 0xfff) & !0xfff;
    let line = format!(
        "{start:x}-{end:x} r-xp {:08x} {major:02x}:{minor:02x} {} {}\n\
         7ffbfff00000-7ffc00100000 rw-p 00000000 00:00 0 [stack]\n",
        offset & !0xfff,
        meta.ino(),
        path.display()
    );
    (line, LOAD_BASE + vaddr, LOAD_BASE + vaddr + filesz)
}

/// A stack whose words point into the text, so that the unwinder walks through the file.
fn stack_into(text_start: u64, text_end: u64, rng: &mut Rng) -> Vec<u8> {
    (0..512)
        .flat_map(|_| {
            let word = if rng.below(3) == 0 {
                FAKE_SP + rng.below(4096) * 8
            } else {
                text_start + rng.below(text_end - text_start)
            };
            word.to_le_bytes()
        })
        .collect()
}

/// How one damaged file went, run in a child process so that an abort (allocation failure),
/// a stack overflow or a hang is caught and reported like a panic, and the next file still runs.
fn run_isolated(work: impl FnOnce()) -> Result<(), String> {
    // SAFETY: the child only runs `work` and leaves with _exit; the parent only waits for it.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // A hang is a failure too: SIGALRM ends the child after this long.
        unsafe { libc::alarm(HANG_SECONDS) };
        let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
            Ok(()) => 0,
            Err(_) => 101,
        };
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for the child forked above.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid, "waitpid failed");
    if libc::WIFEXITED(status) {
        match libc::WEXITSTATUS(status) {
            0 => Ok(()),
            101 => Err("panicked (message above)".to_string()),
            other => Err(format!("exited with {other}")),
        }
    } else if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        Err(match sig {
            libc::SIGALRM => format!("hung for more than {HANG_SECONDS}s"),
            libc::SIGABRT => "aborted (SIGABRT: allocation failure or abort)".to_string(),
            _ => format!("killed by signal {sig}"),
        })
    } else {
        Err(format!("wait status {status:#x}"))
    }
}

/// A damaged file that made observer's code panic, abort or hang.
struct Failure {
    variant: usize,
    what: String,
    how: String,
    kept: PathBuf,
}

fn check_file(
    label: &str,
    orig: &[u8],
    seed: u64,
    flips_per_section: u64,
    budget: Duration,
) -> (usize, Vec<Failure>) {
    let lay = layout(orig);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed ^ 0x9e37_79b9_7f4a_7c15);
    let all = variants(orig, &lay, seed, flips_per_section);
    let started = Instant::now();
    let mut checked = 0;
    let mut failures = Vec::new();
    for (i, (what, bytes)) in all.iter().enumerate() {
        // A new file each time: caches keyed by (device, inode) must not serve the last one.
        let path = dir.path().join(format!("v{i}"));
        fs::write(&path, bytes).unwrap();
        let (maps, text_start, text_end) = maps_for(&path, lay.text);
        let stack = stack_into(text_start, text_end, &mut rng);
        let ip = text_start + rng.below(text_end - text_start);
        let outcome = run_isolated(|| {
            exercise_go_binary(&path);
            unwind_and_symbolize(
                FAKE_PID,
                &maps,
                Regs {
                    ip,
                    sp: FAKE_SP,
                    bp: 0,
                },
                &stack,
            );
        });
        if let Err(how) = outcome {
            let kept = std::env::temp_dir().join(format!("observer-corrupt-{label}-{i}"));
            let _ = fs::write(&kept, bytes);
            eprintln!(
                "{label}: variant {i} ({what}) {how}; kept as {}",
                kept.display()
            );
            failures.push(Failure {
                variant: i,
                what: what.clone(),
                how,
                kept,
            });
        }
        let _ = fs::remove_file(&path);
        checked += 1;
        if started.elapsed() > budget {
            eprintln!(
                "{label}: time budget reached after {checked} of {} variants",
                all.len()
            );
            break;
        }
    }
    eprintln!(
        "{label}: {checked} damaged variants, {} failures ({:?})",
        failures.len(),
        started.elapsed()
    );
    (checked, failures)
}

fn assert_no_failures(label: &str, checked: usize, failures: &[Failure]) {
    assert!(checked > 100, "{label}: only {checked} variants checked");
    let listed: Vec<String> = failures
        .iter()
        .map(|f| {
            format!(
                "  variant {} ({}): {}; file kept as {}",
                f.variant,
                f.what,
                f.how,
                f.kept.display()
            )
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{label}: {} of {checked} damaged files made observer's parsers fail hard:\n{}",
        failures.len(),
        listed.join("\n")
    );
}

/// The C program, with its debug sections zlib-compressed when `compressed` (`-gz`).
fn build_c(dir: &Path, compressed: bool) -> PathBuf {
    let src = dir.join("prog.c");
    fs::write(&src, C_PROGRAM).unwrap();
    let bin = dir.join(if compressed { "prog-c-gz" } else { "prog-c" });
    let debug = if compressed { "-gz=zlib" } else { "-g" };
    let out = Command::new("gcc")
        .args(["-O1", "-g", debug, "-pthread", "-fomit-frame-pointer", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("gcc (run `cargo xtask setup`)");
    assert!(
        out.status.success(),
        "gcc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

fn go_toolchain() -> Option<PathBuf> {
    let candidates = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("go"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/lib/go-1.19/bin/go")]);
    candidates.into_iter().find(|go| go.is_file())
}

fn build_go(go: &Path, dir: &Path, stripped: bool) -> PathBuf {
    let src = dir.join("prog.go");
    fs::write(&src, GO_PROGRAM).unwrap();
    let bin = dir.join(if stripped {
        "prog-go-stripped"
    } else {
        "prog-go"
    });
    let mut cmd = Command::new(go);
    cmd.arg("build").arg("-o").arg(&bin);
    if stripped {
        cmd.arg("-ldflags=-s -w");
    }
    let out = cmd
        .arg(&src)
        .current_dir(dir)
        .env("GOCACHE", "/tmp/observer-go-cache/cache")
        .env("GOPATH", "/tmp/observer-go-cache/gopath")
        .env("GOTOOLCHAIN", "local")
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "")
        .env("GOENV", "off")
        .output()
        .expect("go build");
    assert!(
        out.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

#[test]
fn damaged_c_binary_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let mut all_failures = Vec::new();
    for compressed in [false, true] {
        let bin = build_c(dir.path(), compressed);
        assert!(matches!(
            GoBinary::open(&bin),
            Err(observer::golang::GoError::NotGo { .. })
        ));
        let orig = fs::read(&bin).unwrap();
        let label = if compressed { "c-gz" } else { "c" };
        let (checked, failures) = check_file(
            label,
            &orig,
            0x5eed_c0de + u64::from(compressed),
            24,
            Duration::from_secs(20),
        );
        all_failures.push((label, checked, failures));
    }
    for (label, checked, failures) in &all_failures {
        assert_no_failures(label, *checked, failures);
    }
}

#[test]
fn damaged_go_binaries_never_panic() {
    let Some(go) = go_toolchain() else {
        eprintln!(
            "SKIPPED damaged_go_binaries_never_panic: no Go toolchain (run `cargo xtask setup`)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut all_failures = Vec::new();
    for stripped in [false, true] {
        let bin = build_go(&go, dir.path(), stripped);
        let intact = GoBinary::open(&bin).expect("the intact Go binary opens");
        assert!(intact.func_addr("runtime.gopark").is_some());
        drop(intact);
        let orig = fs::read(&bin).unwrap();
        let label = if stripped { "go-stripped" } else { "go" };
        let (checked, failures) = check_file(
            label,
            &orig,
            0x60_b1a5 + u64::from(stripped),
            6,
            Duration::from_secs(45),
        );
        all_failures.push((label, checked, failures));
    }
    for (label, checked, failures) in &all_failures {
        assert_no_failures(label, *checked, failures);
    }
}
