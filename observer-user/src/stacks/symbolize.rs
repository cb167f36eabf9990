//! Turns stack addresses of a target process into function names with source lines.
//!
//! Addresses are translated to (file, file offset) through the process's cached maps and
//! symbolized from the ELF file (blazesym, with DWARF and `/usr/lib/debug` when present).
//! Working from files rather than from the live process is what keeps stacks of a process that
//! has exited symbolizable, and lets results be cached per file across processes.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use blazesym::symbolize::source::{Elf, Source};
use blazesym::symbolize::{CodeInfo, Input, Sym, Symbolized};
use object::{Object, ObjectSegment, ObjectSymbol};

use crate::proc::normaddr::NormAddr;
use crate::proc::objectfile::{FileId, ObjectFile, OpenFileLife};
use crate::proc::procmaps::{Mapping, ProcessMaps};
use crate::stacks::frame::Frame;

/// Symbolized frames kept before the cache is dropped wholesale (bounds memory on long runs).
const MAX_CACHED: usize = 200_000;

/// Minimum time between two reloads of one process's maps on an unknown address.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_millis(10);

/// Which file contents a cached result belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum FileKey {
    BuildId(Arc<[u8]>),
    File(FileId),
}

struct KnownProcess {
    maps: Arc<ProcessMaps>,
    loaded_at: Instant,
}

/// Symbolizes stacks of target processes. Not `Send` (blazesym's symbolizer is not): keep it
/// on one thread.
pub struct Symbolizer {
    blaze: blazesym::symbolize::Symbolizer,
    processes: HashMap<u32, KnownProcess>,
    /// Frames (innermost first, inlined ones included) per (file, file offset of lookup addr).
    cache: HashMap<(FileKey, u64), Arc<[String]>>,
    /// Files symbolized at least once: the first use of a big binary's debug information is
    /// the slow step (decompressing and indexing DWARF) that gets a progress line.
    opened: std::cell::RefCell<std::collections::HashSet<std::path::PathBuf>>,
    /// Files handed to blazesym, by the `/proc/self/fd/N` path it caches them under: once a
    /// file is closed its cache (inflated DWARF included) is evicted, since the descriptor
    /// number will name another file and the memory budget was returned.
    handed: HashMap<std::path::PathBuf, OpenFileLife>,
    /// Binaries already checked for symbols, and the lines said about those without.
    symbol_notes: crate::stacks::symbol_notes::SymbolNotes<FileKey>,
}

/// Where separate debug files are looked up by build id or debug link: root-owned system
/// directories only (blazesym's default list has no others here, but says so nowhere stable).
const DEBUG_DIRS: [&str; 1] = [crate::proc::debugfile::DEBUG_DIR];

/// Files larger than this get a progress line on their first symbolization (compressed
/// DWARF of a 35 MiB Go compiler took 0.9 s here; see progress.rs for what is shown when).
const BIG_BINARY_BYTES: u64 = 32 << 20;

impl Default for Symbolizer {
    fn default() -> Self {
        Self::new()
    }
}

/// What one address of a stack resolved to.
#[derive(Debug, Clone)]
pub struct AddrSymbols {
    /// Function names, innermost (inlined) first; never empty.
    pub names: Arc<[String]>,
    /// The looked-up address as (module, file offset), when it lies in a file or the vDSO.
    pub addr: Option<NormAddr>,
}

/// One address to symbolize inside a file.
struct Pending {
    index: usize,
    offset: u64,
    key: FileKey,
}

impl Symbolizer {
    pub fn new() -> Self {
        let blaze = blazesym::symbolize::Symbolizer::builder()
            .enable_code_info(true)
            .enable_inlined_fns(true)
            .enable_demangling(true)
            .set_debug_dirs(Some(DEBUG_DIRS))
            .build();
        Symbolizer {
            blaze,
            processes: HashMap::new(),
            cache: HashMap::new(),
            opened: Default::default(),
            handed: HashMap::new(),
            symbol_notes: Default::default(),
        }
    }

    /// Uses `maps` for `maps.pid()`, e.g. those the unwinder (`Unwinder`) read while the
    /// process was alive.
    pub fn insert_maps(&mut self, maps: Arc<ProcessMaps>) {
        maps.open_code_files();
        self.processes.insert(
            maps.pid(),
            KnownProcess {
                maps,
                loaded_at: Instant::now(),
            },
        );
    }

    /// Drops the maps of `pid` (cached symbols of its files stay), and blazesym's data of
    /// the files no process uses any more.
    pub fn forget(&mut self, pid: u32) {
        self.processes.remove(&pid);
        let closed: Vec<std::path::PathBuf> = self
            .handed
            .iter()
            .filter(|(_, life)| !life.is_open())
            .map(|(path, _)| path.clone())
            .collect();
        for path in closed {
            self.evict(&path);
        }
    }

    fn evict(&mut self, path: &Path) {
        self.handed.remove(path);
        self.opened.borrow_mut().remove(path);
        let evict =
            blazesym::symbolize::evict::Evict::from(blazesym::symbolize::evict::Elf::new(path));
        if let Err(err) = self.blaze.evict(&evict) {
            log::debug!("evicting {}: {err}", path.display());
        }
    }

    /// Records that blazesym caches `object` under `path`, evicting what it cached under the
    /// same path for a file closed since.
    fn hand_over(&mut self, object: &ObjectFile, path: &Path) {
        let Some(life) = object.life() else { return };
        match self.handed.get(path) {
            Some(known) if known.is_open() => {}
            Some(_) => {
                self.evict(path);
                self.handed.insert(path.to_path_buf(), life);
            }
            None => {
                self.handed.insert(path.to_path_buf(), life);
            }
        }
    }

    /// Symbolizes a stack, innermost first: `addrs[0]` is an exact pc, the others are return
    /// addresses. Each address gives one string, or several when functions were inlined at
    /// it (innermost first), e.g. `"worker (bank.c:30)"`, `"pthread_mutex_lock"`,
    /// `"libfoo.so+0x1234"`, `"[unknown] 0x7f0012345678"`.
    pub fn symbolize(&mut self, pid: u32, addrs: &[u64]) -> Vec<String> {
        self.symbolize_each(pid, addrs)
            .into_iter()
            .flat_map(|frames| frames.to_vec())
            .collect()
    }

    /// Like [`Self::symbolize`], grouped by input address: one non-empty list per address.
    pub fn symbolize_each(&mut self, pid: u32, addrs: &[u64]) -> Vec<Arc<[String]>> {
        self.symbolize_addrs(pid, addrs)
            .into_iter()
            .map(|s| s.names)
            .collect()
    }

    /// Like [`Self::symbolize`], as frames that keep their normalized addresses; the functions
    /// inlined at one address share it.
    pub fn symbolize_frames(&mut self, pid: u32, addrs: &[u64]) -> Vec<Frame> {
        self.symbolize_addrs(pid, addrs)
            .iter()
            .flat_map(|s| frames_of(&s.names, s.addr.as_ref()))
            .collect()
    }

    /// Names and normalized address of every input address, in order: `addrs[0]` is an exact
    /// pc, the others are return addresses (looked up, and normalized, one byte earlier).
    pub fn symbolize_addrs(&mut self, pid: u32, addrs: &[u64]) -> Vec<AddrSymbols> {
        let lookups: Vec<u64> = addrs
            .iter()
            .enumerate()
            .map(|(i, &a)| if i == 0 { a } else { a.saturating_sub(1) })
            .collect();
        let mut maps = self.maps_for(pid);
        let needs_refresh = lookups
            .iter()
            .any(|&a| maps.as_ref().is_none_or(|m| m.find(a).is_none()));
        if needs_refresh && self.refresh(pid) {
            maps = self.maps_for(pid);
        }
        let code_len = maps
            .as_deref()
            .map_or(addrs.len(), |m| code_prefix_len(m, &lookups));
        let truncated = code_len < addrs.len();
        let (addrs, lookups) = (&addrs[..code_len], &lookups[..code_len]);

        let mut out: Vec<Option<Arc<[String]>>> = vec![None; addrs.len()];
        let mut pending: HashMap<*const ObjectFile, (Arc<ObjectFile>, Vec<Pending>)> =
            HashMap::new();
        for (index, &lookup) in lookups.iter().enumerate() {
            let Some(mapping) = maps.as_ref().and_then(|m| m.find(lookup)) else {
                out[index] = Some(unknown(addrs[index]));
                continue;
            };
            if mapping.is_vdso() {
                let image = maps.as_ref().and_then(|m| m.vdso_image());
                out[index] = Some(Arc::from([vdso_symbol(image.as_deref(), mapping, lookup)]));
                continue;
            }
            let Some(object) = &mapping.object else {
                out[index] = Some(unknown(addrs[index]));
                continue;
            };
            let offset = mapping.file_offset(lookup);
            let Some(key) = file_key(object) else {
                out[index] = Some(Arc::from([offset_name(object, offset)]));
                continue;
            };
            if let Some(hit) = self.cache.get(&(key.clone(), offset)) {
                out[index] = Some(Arc::clone(hit));
                continue;
            }
            pending
                .entry(Arc::as_ptr(object))
                .or_insert_with(|| (Arc::clone(object), Vec::new()))
                .1
                .push(Pending { index, offset, key });
        }

        if self.cache.len() > MAX_CACHED {
            self.cache.clear();
        }
        for (object, items) in pending.into_values() {
            let results = self.symbolize_in_file(&object, &items);
            for (item, frames) in items.into_iter().zip(results) {
                self.cache
                    .insert((item.key, item.offset), Arc::clone(&frames));
                out[item.index] = Some(frames);
            }
        }
        let mut symbols: Vec<AddrSymbols> = out
            .into_iter()
            .zip(addrs)
            .zip(lookups)
            .map(|((frames, &addr), &lookup)| AddrSymbols {
                names: frames.unwrap_or_else(|| unknown(addr)),
                addr: maps.as_ref().and_then(|m| m.normalize(lookup)),
            })
            .collect();
        if truncated {
            symbols.push(AddrSymbols {
                names: Arc::from([NOT_CODE_MARKER.to_string()]),
                addr: None,
            });
        }
        symbols
    }

    /// One result per item, in order.
    fn symbolize_in_file(&mut self, object: &ObjectFile, items: &[Pending]) -> Vec<Arc<[String]>> {
        let fallback =
            |item: &Pending| -> Arc<[String]> { Arc::from([offset_name(object, item.offset)]) };
        let Some(path) = object.reopen_path() else {
            return items.iter().map(fallback).collect();
        };
        if let Some(key) = items.first().map(|i| i.key.clone()) {
            self.symbol_notes.check(key, object);
        }
        if let Some(debug) = object.separate_debug_file() {
            return self.symbolize_in_debug_file(object, debug, items);
        }
        self.hand_over(object, path);
        let mut elf = Elf::new(path);
        elf.debug_syms = object.debug_info_usable();
        let src = Source::Elf(elf);
        let offsets: Vec<u64> = items.iter().map(|i| i.offset).collect();
        let progress = self.first_use_of_big_file(object, path);
        let result = self.blaze.symbolize(&src, Input::FileOffset(&offsets));
        drop(progress);
        let syms = match result {
            Ok(syms) => syms,
            Err(err) => {
                log::debug!("symbolizing in {}: {err}", object.path().display());
                return items.iter().map(fallback).collect();
            }
        };
        items
            .iter()
            .zip(syms.iter().map(Some).chain(std::iter::repeat(None)))
            .map(|(item, sym)| match sym {
                Some(Symbolized::Sym(sym)) => format_sym(sym),
                _ => fallback(item),
            })
            .collect()
    }

    /// [`Self::symbolize_in_file`] from the binary's separate debug file: the file offsets are
    /// turned into virtual addresses with the binary's segments (the debug file keeps the
    /// addresses, not the code).
    fn symbolize_in_debug_file(
        &mut self,
        object: &ObjectFile,
        debug: &crate::proc::debugfile::DebugFile,
        items: &[Pending],
    ) -> Vec<Arc<[String]>> {
        let fallback =
            |item: &Pending| -> Arc<[String]> { Arc::from([offset_name(object, item.offset)]) };
        let path = debug.reopen_path();
        // The debug file is held open by the binary's handle: it closes with it.
        self.hand_over(object, path);
        let virts: Vec<Option<u64>> = items.iter().map(|i| object.virt_offset(i.offset)).collect();
        let known: Vec<u64> = virts.iter().flatten().copied().collect();
        let src = Source::Elf(Elf::new(path));
        let syms = match self.blaze.symbolize(&src, Input::VirtOffset(&known)) {
            Ok(syms) => syms,
            Err(err) => {
                log::debug!("symbolizing in {}: {err}", debug.path().display());
                return items.iter().map(fallback).collect();
            }
        };
        let mut syms = syms.iter();
        items
            .iter()
            .zip(&virts)
            .map(|(item, virt)| match virt.and_then(|_| syms.next()) {
                Some(Symbolized::Sym(sym)) => format_sym(sym),
                _ => fallback(item),
            })
            .collect()
    }

    /// A progress line for the first symbolization in a big file with debug information
    /// (silent unless it takes long).
    fn first_use_of_big_file(
        &self,
        object: &ObjectFile,
        path: &std::path::Path,
    ) -> Option<crate::util::progress::Progress> {
        if !object.debug_info_usable() || !self.opened.borrow_mut().insert(path.to_path_buf()) {
            return None;
        }
        let size = object.file_id().map_or(0, |id| id.size);
        (size >= BIG_BINARY_BYTES).then(|| {
            crate::util::progress::Progress::start(
                &format!(
                    "symbolizing {} ({})",
                    object.path().display(),
                    crate::util::number::size_label(size)
                ),
                None,
            )
        })
    }

    fn maps_for(&mut self, pid: u32) -> Option<Arc<ProcessMaps>> {
        if !self.processes.contains_key(&pid) {
            self.load(pid);
        }
        self.processes.get(&pid).map(|p| Arc::clone(&p.maps))
    }

    fn refresh(&mut self, pid: u32) -> bool {
        let fresh_enough = self
            .processes
            .get(&pid)
            .is_some_and(|p| p.loaded_at.elapsed() < MIN_REFRESH_INTERVAL);
        !fresh_enough && self.load(pid)
    }

    fn load(&mut self, pid: u32) -> bool {
        match ProcessMaps::load(pid) {
            Ok(maps) => {
                self.insert_maps(Arc::new(maps));
                true
            }
            Err(err) => {
                log::debug!("{err}");
                false
            }
        }
    }
}

/// The frame that ends a stack cut at a return address that is not code (see
/// [`code_prefix_len`]).
pub const NOT_CODE_MARKER: &str = "[truncated: not code]";

/// How many of `lookups` (a pc, then return addresses minus one) to keep: all up to the first
/// return address that lies outside every executable mapping and the vDSO. A frame-pointer walk
/// through code built without frame pointers reads whatever `%rbp` held (a counter, a pointer
/// to text) as the next frame; once one "return address" is not code, every frame above it
/// was read through the same bad pointer and is junk too. The pc itself is always kept: the
/// CPU was executing it, so it was code when the stack was taken (maps read later may no
/// longer show it, after a `dlclose`).
pub fn code_prefix_len(maps: &ProcessMaps, lookups: &[u64]) -> usize {
    let is_code = |addr: u64| maps.find(addr).is_some_and(|m| m.perms.exec || m.is_vdso());
    lookups
        .iter()
        .enumerate()
        .skip(1)
        .find(|&(_, &addr)| !is_code(addr))
        .map_or(lookups.len(), |(i, _)| i)
}

/// One frame per name, all at `addr`, the outermost one not marked inlined.
pub fn frames_of<'a>(
    names: &'a [String],
    addr: Option<&'a NormAddr>,
) -> impl Iterator<Item = Frame> + 'a {
    let last = names.len().saturating_sub(1);
    names.iter().enumerate().map(move |(i, name)| Frame {
        name: Arc::from(name.as_str()),
        addr: addr.cloned(),
        inlined: i < last,
    })
}

fn file_key(object: &ObjectFile) -> Option<FileKey> {
    match object.build_id() {
        Some(id) => Some(FileKey::BuildId(Arc::from(id))),
        None => object.file_id().map(FileKey::File),
    }
}

fn unknown(addr: u64) -> Arc<[String]> {
    Arc::from([format!("[unknown] {addr:#x}")])
}

fn offset_name(object: &ObjectFile, offset: u64) -> String {
    format!("{}+{offset:#x}", object.file_name())
}

/// Innermost first: blazesym lists inlined calls outermost first, after the containing
/// function, each with the source location inside that function.
fn format_sym(sym: &Sym<'_>) -> Arc<[String]> {
    let mut frames: Vec<String> = sym
        .inlined
        .iter()
        .rev()
        .map(|f| format_frame(&f.name, f.code_info.as_ref()))
        .collect();
    frames.push(format_frame(&sym.name, sym.code_info.as_deref()));
    Arc::from(frames)
}

fn format_frame(name: &str, code: Option<&CodeInfo<'_>>) -> String {
    let Some(code) = code else {
        return name.to_string();
    };
    let path = Path::new(&code.file);
    let file = path
        .file_name()
        .unwrap_or(path.as_os_str())
        .to_string_lossy();
    match code.line {
        Some(line) => format!("{name} ({file}:{line})"),
        None => format!("{name} ({file})"),
    }
}

/// The vDSO is not a file: look its symbols up in the image copied from the process.
fn vdso_symbol(image: Option<&[u8]>, mapping: &Mapping, addr: u64) -> String {
    let offset = mapping.file_offset(addr);
    let fallback = || format!("[vdso]+{offset:#x}");
    let Some(obj) = image.and_then(|i| object::File::parse(i).ok()) else {
        return fallback();
    };
    let Some(svma) = obj.segments().find_map(|s| {
        let (off, size) = s.file_range();
        (off <= offset && offset < off + size).then(|| offset - off + s.address())
    }) else {
        return fallback();
    };
    obj.dynamic_symbols()
        .chain(obj.symbols())
        .find(|s| {
            s.kind() == object::SymbolKind::Text
                && s.address() <= svma
                && svma < s.address().saturating_add(s.size().max(1))
        })
        .and_then(|s| s.name().ok().map(str::to_string))
        .unwrap_or_else(fallback)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_file_name_only() {
        let code = CodeInfo {
            dir: Some(Path::new("/src/app").into()),
            file: std::ffi::OsStr::new("sub/bank.c").into(),
            line: Some(14),
            column: None,
            _non_exhaustive: (),
        };
        assert_eq!(
            format_frame("transfer", Some(&code)),
            "transfer (bank.c:14)"
        );
        let no_line = CodeInfo {
            line: None,
            ..code.clone()
        };
        assert_eq!(format_frame("f", Some(&no_line)), "f (bank.c)");
        assert_eq!(format_frame("f", None), "f");
    }

    #[test]
    fn unknown_addresses_without_maps() {
        let mut s = Symbolizer::new();
        let out = s.symbolize(u32::MAX - 1, &[0x7f00_1234_5678, 0x10]);
        assert_eq!(out, vec!["[unknown] 0x7f0012345678", "[unknown] 0x10"]);
    }

    #[inline(never)]
    fn marker_function_for_symbolize_test() -> u64 {
        std::hint::black_box(marker_function_for_symbolize_test as *const () as usize as u64)
    }

    #[test]
    fn symbolizes_own_function_with_line() {
        let addr = marker_function_for_symbolize_test();
        let mut s = Symbolizer::new();
        let out = s.symbolize(std::process::id(), &[addr]);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(
            out[0].contains("marker_function_for_symbolize_test (symbolize.rs:"),
            "{out:?}"
        );
        // Cached on the second call, same answer.
        assert_eq!(s.symbolize(std::process::id(), &[addr]), out);
        assert_eq!(s.cache.len(), 1);
    }

    #[test]
    fn frames_carry_normalized_addresses() {
        let addr = marker_function_for_symbolize_test();
        let pid = std::process::id();
        let maps = ProcessMaps::load(pid).expect("own maps");
        let mapping = maps.find(addr).expect("own code");
        let mut s = Symbolizer::new();
        // A return address is normalized like it is looked up: one byte earlier.
        let frames = s.symbolize_frames(pid, &[addr, addr + 1, 0x10]);
        assert_eq!(frames.len(), 3, "{frames:?}");
        let want = addr - mapping.start + mapping.offset;
        for f in &frames[..2] {
            let a = f.addr.as_ref().expect("normalized");
            assert_eq!(a.file_offset, want);
            assert!(a.module.build_id.is_some());
            assert!(f.name.contains("marker_function_for_symbolize_test"));
            assert!(!f.inlined);
        }
        // 0x10 is no code: the stack ends there, with the marker.
        assert_eq!(frames[2].addr, None);
        assert_eq!(&*frames[2].name, NOT_CODE_MARKER);
    }

    /// A process's maps as `/proc/PID/maps` shows them: an executable (code at 0x1000-0x2000),
    /// its data, a heap, a library's code, an anonymous executable region (JIT), a stack, the vDSO.
    const MAPS: &str = "\
00001000-00002000 r-xp 00001000 08:01 100 /srv/app
00002000-00003000 rw-p 00002000 08:01 100 /srv/app
00010000-00020000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000010000 r-xp 00000000 08:01 200 /lib/libc.so.6
7f0000100000-7f0000101000 rwxp 00000000 00:00 0
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0 [stack]
7ffc00100000-7ffc00102000 r-xp 00000000 00:00 0 [vdso]
";

    #[test]
    fn stacks_stop_at_the_first_return_address_that_is_not_code() {
        let maps = ProcessMaps::from_text(1, MAPS);
        let code = [0x1010, 0x7f00_0000_0100, 0x7f00_0010_0010, 0x7ffc_0010_0010];
        assert_eq!(code_prefix_len(&maps, &code), 4, "code, library, JIT, vDSO");
        // Text read as a return address ("rver 127"), a small integer, data, the heap, the stack.
        for junk in [
            0x3732_3120_7265_7672,
            0x4a,
            0x2010,
            0x10_0010,
            0x7ffc_0000_1000,
        ] {
            assert_eq!(code_prefix_len(&maps, &[0x1010, 0x1020, junk, 0x1030]), 2);
        }
        // The pc is kept even when the maps no longer show it.
        assert_eq!(code_prefix_len(&maps, &[0x4a, 0x1010, 0x4b]), 2);
        assert_eq!(code_prefix_len(&maps, &[0x4a]), 1);
        assert_eq!(code_prefix_len(&maps, &[]), 0);
    }

    #[test]
    fn a_cut_stack_ends_with_one_marker_and_unsymbolized_code_keeps_its_name() {
        // A pid with no such process: the maps given are all there is (files cannot be opened,
        // so code is named module+offset).
        let pid = u32::MAX - 2;
        let mut s = Symbolizer::new();
        s.insert_maps(Arc::new(ProcessMaps::from_text(pid, MAPS)));
        let names = s.symbolize(
            pid,
            &[
                0x1010,
                0x7f00_0000_0101,
                0x7f00_0010_0011,
                0x3732_3120_7265_7672,
                0x1020,
                0x4a,
            ],
        );
        assert_eq!(
            names,
            vec![
                "app+0x1010",
                "libc.so.6+0x100",
                "[unknown] 0x7f0000100011",
                NOT_CODE_MARKER,
            ]
        );
        let frames = s.symbolize_frames(pid, &[0x1010, 0x2020]);
        assert_eq!(
            crate::stacks::frame::names(&frames),
            ["app+0x1010", NOT_CODE_MARKER]
        );
        assert_eq!(frames[1].addr, None);
        // Nothing cut, no marker.
        assert_eq!(
            s.symbolize(pid, &[0x1010, 0x1021]),
            ["app+0x1010", "app+0x1020"]
        );
    }

    /// The shared symbolizer names the functions of a Go program from its symbols, as the
    /// goroutine dump names them from `.gopclntab` (golang/tests.rs compares those with Go's own
    /// dump).
    #[test]
    fn names_go_functions_of_a_live_go_program() {
        use std::io::BufRead as _;
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().expect("tempdir");
        let exe = dir.path().join("goroutines");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/goprogs/goroutines/main.go");
        let mut build = Command::new("go");
        build
            .arg("build")
            .arg("-o")
            .arg(&exe)
            .arg(src)
            .env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", "")
            .env("CGO_ENABLED", "0");
        if std::env::var_os("GOCACHE").is_none() && std::env::var_os("HOME").is_none() {
            build.env("GOCACHE", dir.path().join("gocache"));
        }
        match build.output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!("go build: {}", String::from_utf8_lossy(&o.stderr)),
            Err(e) => {
                eprintln!("!!! SKIPPED names_go_functions_of_a_live_go_program: no go ({e})");
                return;
            }
        }
        let bytes = std::fs::read(&exe).expect("read the Go binary");
        let elf = object::File::parse(&*bytes).expect("ELF");
        assert_eq!(elf.kind(), object::ObjectKind::Executable, "not relocated");
        let entry = object::Object::symbols(&elf)
            .find(|s| object::ObjectSymbol::name(s) == Ok("main.lockedSection"))
            .map(|s| object::ObjectSymbol::address(&s))
            .expect("main.lockedSection in .symtab");
        let mut child = Command::new(&exe)
            .arg("10")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the Go program");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read its first line");
        let mut s = Symbolizer::new();
        let names = s.symbolize_each(child.id(), &[entry, entry + 8]);
        let _ = child.kill();
        let _ = child.wait();
        assert!(line.starts_with("listening"), "{line:?}");
        assert_eq!(names.len(), 2, "{names:?}");
        for names in &names {
            assert!(
                names
                    .iter()
                    .any(|n| n.starts_with("main.lockedSection (main.go:")),
                "{names:?}"
            );
        }
    }

    #[test]
    fn inline_chains_share_one_address() {
        let module = Arc::new(crate::proc::normaddr::Module {
            path: "/bin/x".into(),
            build_id: None,
        });
        let addr = NormAddr {
            module,
            file_offset: 7,
        };
        let names = ["inner".to_string(), "outer".to_string()];
        let frames: Vec<Frame> = frames_of(&names, Some(&addr)).collect();
        assert_eq!(frames.len(), 2);
        assert!(frames[0].inlined && !frames[1].inlined);
        assert!(frames.iter().all(|f| f.addr.as_ref() == Some(&addr)));
        let runs: Vec<usize> = crate::stacks::frame::machine_frames(&frames)
            .map(<[Frame]>::len)
            .collect();
        assert_eq!(runs, vec![2]);
    }

    #[test]
    fn symbolizes_vdso() {
        let maps = ProcessMaps::load(std::process::id()).expect("own maps");
        let Some(vdso) = maps.mappings().iter().find(|m| m.is_vdso()) else {
            return; // vDSO disabled on this kernel
        };
        let image = maps.vdso_image();
        let names: Vec<String> = (vdso.start..vdso.end)
            .step_by(16)
            .map(|a| vdso_symbol(image.as_deref(), vdso, a))
            .collect();
        assert!(
            names.iter().any(|n| n.contains("clock_gettime")),
            "{names:?}"
        );
    }
}
