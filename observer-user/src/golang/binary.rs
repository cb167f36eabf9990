//! [`GoBinary`]: one Go executable, read once when opened.
//!
//! Stripped binaries (`-ldflags="-s -w"`, no `.symtab`, no DWARF): offsets come from the
//! measured table ([`GoBinary::offsets_source`] says `table`, or `table-nearest` for a version
//! without its own row); wait reasons from a data scan (`data-scan`), else the table;
//! functions, their bounds, names at a pc and file:line from `.gopclntab`; `runtime.allgs`
//! from disassembling `runtime.allgadd`. Data symbols other than `runtime.allgs` are not
//! recoverable and [`GoBinary::symbol_addr`] returns `None` for them.

use std::path::{Path, PathBuf};

use super::buildinfo::{read_version, GoVersion};
use super::dwarf::type_shape;
use super::elf::ElfImage;
use super::labels::{self, LabelsLayout};
use super::offsets::{offsets_from_dwarf, table_offsets, GOffsets, TableMatch};
use super::pclntab::{FuncInfo, GoFrame, Pclntab, VaddrReader};
use super::waitreasons::{wait_reasons, ReasonSource};
use super::{disasm, moduledata, GoError};

/// Where a piece of knowledge about the binary came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    Dwarf,
    Symtab,
    /// Found by a heuristic over the binary's own bytes (data scan, disassembly).
    Scan,
    /// The measured table for this exact Go minor version.
    Table,
    /// The measured table of another minor version: may be wrong.
    TableNearest,
    /// Not found at all.
    None,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Dwarf => "dwarf",
            Source::Symtab => "symtab",
            Source::Scan => "data-scan",
            Source::Table => "table",
            Source::TableNearest => "table-nearest",
            Source::None => "none",
        }
    }
}

impl From<ReasonSource> for Source {
    fn from(s: ReasonSource) -> Source {
        match s {
            ReasonSource::Symbol => Source::Symtab,
            ReasonSource::Scan => Source::Scan,
            ReasonSource::Table => Source::Table,
            ReasonSource::TableNearest => Source::TableNearest,
            ReasonSource::None => Source::None,
        }
    }
}

/// A Go executable file.
#[derive(Debug)]
pub struct GoBinary {
    elf: ElfImage,
    version: GoVersion,
    offsets: Option<GOffsets>,
    offsets_source: Source,
    wait_reasons: Vec<String>,
    wait_reasons_source: Source,
    pclntab: Option<Pclntab>,
    allgs: Option<(u64, Source)>,
    inode: (u64, u64),
    /// Why the claimed Go version is not believed (the offsets table is then not used).
    version_conflict: Option<String>,
    /// Where goroutines keep their pprof labels; `None`: labels are not read.
    labels: Option<LabelsLayout>,
}

impl VaddrReader for ElfImage {
    fn read(&self, vaddr: u64, len: u64) -> Option<Vec<u8>> {
        self.read_vaddr(vaddr, len)
    }
}

impl GoBinary {
    /// Opens and reads `path`. [`GoError::NotGo`] when it has no Go build information.
    pub fn open(path: &Path) -> Result<GoBinary, GoError> {
        let (elf, debug) = ElfImage::open(path)?;
        let raw = read_version(&elf).ok_or_else(|| GoError::NotGo {
            path: path.to_path_buf(),
        })?;
        let version = GoVersion::parse(&raw).ok_or_else(|| GoError::Malformed {
            path: path.to_path_buf(),
            reason: format!("unrecognised Go version {raw:?}"),
        })?;
        let inode = elf.file_id().map_err(|source| GoError::Io {
            path: path.to_path_buf(),
            source,
        })?;

        let version_conflict = super::versioncheck::contradiction(&elf, &version);
        let (offsets, offsets_source) = match offsets_from_dwarf(&debug) {
            Some(o) => (Some(o), Source::Dwarf),
            // The table is chosen by the version: a doubtful one must not choose.
            None if version_conflict.is_some() => (None, Source::None),
            None => match table_offsets(&version) {
                Some((o, TableMatch::Exact)) => (Some(o), Source::Table),
                Some((o, TableMatch::Nearest(_))) => (Some(o), Source::TableNearest),
                None => (None, Source::None),
            },
        };
        // Without `g.labels` there is nothing to decode, so the DWARF scan is skipped.
        let labels = offsets
            .as_ref()
            .filter(|o| o.g_labels.is_some())
            .and_then(|o| {
                let shape = type_shape(&debug, "runtime/pprof.labelMap");
                labels::layout(Some(o), shape, &version)
            });
        drop(debug);

        let (wait_reasons, reasons_source) = wait_reasons(&elf, &version);
        let pclntab = load_pclntab(&elf, &version);
        let mut bin = GoBinary {
            elf,
            version,
            offsets,
            offsets_source,
            wait_reasons,
            wait_reasons_source: reasons_source.into(),
            pclntab,
            allgs: None,
            inode,
            version_conflict,
            labels,
        };
        bin.allgs = bin.find_allgs();
        Ok(bin)
    }

    /// Opens the executable of a running process (through `/proc/PID/exe`, which works for
    /// deleted binaries and other mount namespaces). `NotGo` names the process's own path.
    pub fn for_pid(pid: u32) -> Result<GoBinary, GoError> {
        let exe = PathBuf::from(format!("/proc/{pid}/exe"));
        GoBinary::open(&exe).map_err(|err| match err {
            GoError::NotGo { .. } => GoError::NotGo {
                path: std::fs::read_link(&exe).unwrap_or(exe),
            },
            other => other,
        })
    }

    pub fn path(&self) -> &Path {
        &self.elf.path
    }

    /// A path to exactly the file read here (`/proc/self/fd/N`), for attaching uprobes: the
    /// offsets computed from this file must land in this file, not in whatever was renamed
    /// over its path since.
    pub fn probe_path(&self) -> PathBuf {
        self.elf.fd_path()
    }

    /// (device, inode) of the file, to find its mappings in a process.
    pub fn file_id(&self) -> (u64, u64) {
        self.inode
    }

    pub fn version(&self) -> &GoVersion {
        &self.version
    }

    /// Whether the file is position independent (its addresses move by a load bias).
    pub fn is_pie(&self) -> bool {
        self.elf.is_dyn
    }

    /// Whether `.symtab` is gone (`-ldflags=-s`).
    pub fn is_stripped(&self) -> bool {
        !self.elf.symbols.values().any(|s| s.text)
    }

    pub fn has_dwarf(&self) -> bool {
        self.elf.has_dwarf
    }

    /// Field offsets of `runtime.g` / `runtime.m`; `None` only for an unknown major version
    /// without DWARF.
    /// Where its goroutines' pprof labels are, when known for this binary.
    pub fn labels_layout(&self) -> Option<&LabelsLayout> {
        self.labels.as_ref()
    }

    pub fn offsets(&self) -> Option<&GOffsets> {
        self.offsets.as_ref()
    }

    /// Why the Go version claimed by `.go.buildinfo` contradicts the rest of the binary; the
    /// offsets are then known only from DWARF.
    pub fn version_conflict(&self) -> Option<&str> {
        self.version_conflict.as_deref()
    }

    /// `"dwarf"`, `"table"`, `"table-nearest"` (another version's row) or `"none"`.
    pub fn offsets_source(&self) -> &'static str {
        self.offsets_source.as_str()
    }

    /// `runtime.waitReasonStrings`, indexed by `g.waitreason`.
    pub fn wait_reasons(&self) -> &[String] {
        &self.wait_reasons
    }

    /// `"symtab"`, `"data-scan"`, `"table"`, `"table-nearest"` or `"none"`.
    pub fn wait_reasons_source(&self) -> &'static str {
        self.wait_reasons_source.as_str()
    }

    pub fn wait_reason(&self, n: u8) -> Option<&str> {
        self.wait_reasons.get(usize::from(n)).map(String::as_str)
    }

    /// Link-time virtual address of a function (`.symtab`, else `.gopclntab`).
    pub fn func_addr(&self, name: &str) -> Option<u64> {
        if let Some(sym) = self.elf.symbols.get(name).filter(|s| s.text) {
            return Some(sym.addr);
        }
        self.pclntab.as_ref()?.lookup(name).map(|f| f.entry)
    }

    /// File offset of a function's entry: what a uprobe is attached at.
    pub fn func_offset(&self, name: &str) -> Option<u64> {
        self.elf.vaddr_to_offset(self.func_addr(name)?)
    }

    /// Name and `[entry, end)` of a function.
    pub fn func_info(&self, name: &str) -> Option<FuncInfo> {
        if let Some(f) = self.pclntab.as_ref().and_then(|t| t.lookup(name)) {
            return Some(FuncInfo {
                name: name.to_string(),
                entry: f.entry,
                end: f.end,
            });
        }
        let sym = self
            .elf
            .symbols
            .get(name)
            .filter(|s| s.text && s.size > 0)?;
        Some(FuncInfo {
            name: name.to_string(),
            entry: sym.addr,
            end: sym.addr + sym.size,
        })
    }

    /// Every function of `.gopclntab`, in address order.
    pub fn funcs(&self) -> impl Iterator<Item = FuncInfo> + '_ {
        self.pclntab.iter().flat_map(Pclntab::funcs)
    }

    /// The function containing link-time address `pc`.
    pub fn func_name_at(&self, pc: u64) -> Option<String> {
        let tab = self.pclntab.as_ref()?;
        let f = tab.find(pc)?;
        tab.name_of(&f).map(str::to_string)
    }

    /// Logical frames (inlined calls expanded, innermost first) with file:line at link-time
    /// address `pc`, looked up like Go's traceback does (`pc - 1` unless at a function entry).
    pub fn frames_at(&self, pc: u64) -> Vec<GoFrame> {
        match &self.pclntab {
            Some(tab) => tab.frames(pc, &self.elf),
            None => Vec::new(),
        }
    }

    /// (function, file, line, entry) of a `go` statement at `pc` (`g.gopc`).
    pub fn call_site(&self, pc: u64) -> Option<(String, String, u32, u64)> {
        self.pclntab.as_ref()?.call_site(pc)
    }

    /// For unwinding at link-time `pc`: the stack bytes its function has allocated there
    /// (pcsp), and whether that function is the bottom of a goroutine stack.
    pub(crate) fn frame_step(&self, pc: u64, tops: &[&str]) -> Option<(i32, bool)> {
        let tab = self.pclntab.as_ref()?;
        let f = tab.find(pc)?;
        let top = tab.name_of(&f).is_some_and(|n| tops.contains(&n));
        Some((tab.sp_delta(&f, pc)?, top))
    }

    /// Whether link-time `pc` is inside a known Go function.
    pub(crate) fn is_go_code(&self, pc: u64) -> bool {
        self.pclntab.as_ref().is_some_and(|t| t.find(pc).is_some())
    }

    fn code(&self, name: &str) -> Option<(Vec<u8>, u64)> {
        let f = self.func_info(name)?;
        let code = self.elf.read_vaddr(f.entry, f.end.checked_sub(f.entry)?)?;
        Some((code, f.entry))
    }

    /// The locking done by the function containing link-time `pc` (see `lockrefs`).
    pub fn func_locks_at(&self, pc: u64) -> Option<super::lockrefs::FuncLocks> {
        let tab = self.pclntab.as_ref()?;
        let f = tab.find(pc)?;
        let name = tab.name_of(&f)?.to_string();
        let code = self.elf.read_vaddr(f.entry, f.end.checked_sub(f.entry)?)?;
        Some(super::lockrefs::func_locks(
            &code,
            f.entry,
            &name,
            |target| self.func_name_at(target),
        ))
    }

    /// The package variable at link-time `addr` (`.symtab`; `None` when stripped).
    pub fn data_symbol_at(&self, addr: u64) -> Option<&str> {
        self.elf
            .symbols
            .iter()
            .find(|(_, s)| !s.text && s.addr <= addr && addr < s.addr.saturating_add(s.size.max(1)))
            .map(|(name, _)| name.as_str())
    }

    /// File offsets of every RET of a function: where to put uprobes instead of a uretprobe
    /// (which corrupts Go stacks when they move).
    pub fn ret_offsets(&self, name: &str) -> Vec<u64> {
        let Some((code, entry)) = self.code(name) else {
            return Vec::new();
        };
        disasm::ret_addrs(&code, entry)
            .into_iter()
            .filter_map(|a| self.elf.vaddr_to_offset(a))
            .collect()
    }

    /// File offset of the first instruction after the stack-growth check: the frame setup
    /// (`PUSHQ BP` since about Go 1.21, `SUBQ $n, SP` before). A uprobe there fires once per
    /// call even when the stack grows, and still has the return address at `[SP]`. The entry
    /// itself for functions without the check (NOSPLIT: their entry fires once anyway).
    pub fn entry_after_stack_check(&self, name: &str) -> Option<u64> {
        let (code, entry) = self.code(name)?;
        self.elf
            .vaddr_to_offset(disasm::after_stack_check(&code, entry))
    }

    /// File offset of the first instruction after the frame-pointer setup that follows the
    /// stack check: a uprobe there fires once per call and a frame-pointer stack taken in it
    /// names the direct caller (see `disasm::after_frame_setup`).
    pub fn entry_after_frame_setup(&self, name: &str) -> Option<u64> {
        let (code, entry) = self.code(name)?;
        self.elf
            .vaddr_to_offset(disasm::after_frame_setup(&code, entry))
    }

    /// Link-time address of a symbol (data or text) from `.symtab`; `runtime.allgs` is also
    /// recovered in stripped binaries.
    pub fn symbol_addr(&self, name: &str) -> Option<u64> {
        if let Some(sym) = self.elf.symbols.get(name) {
            return Some(sym.addr);
        }
        match name {
            "runtime.allgs" => self.allgs.map(|(a, _)| a),
            _ => None,
        }
    }

    /// Link-time address of `runtime.allgs` (a `[]*g` slice header), and how it was found.
    pub fn allgs_addr(&self) -> Result<(u64, &'static str), GoError> {
        self.allgs
            .map(|(a, s)| (a, s.as_str()))
            .ok_or_else(|| GoError::MissingSymbol {
                path: self.path().to_path_buf(),
                name: "runtime.allgs".into(),
                hint: "no .symtab and runtime.allgadd could not be decoded; the goroutine dump \
                       needs an unstripped binary"
                    .into(),
            })
    }

    fn find_allgs(&self) -> Option<(u64, Source)> {
        if let Some(sym) = self.elf.symbols.get("runtime.allgs") {
            return Some((sym.addr, Source::Symtab));
        }
        self.allgs_from_code().map(|a| (a, Source::Scan))
    }

    /// `runtime.allgs` as `runtime.allgadd` addresses it: the slice header whose ptr, len
    /// and cap words it all touches.
    pub(crate) fn allgs_from_code(&self) -> Option<u64> {
        let (code, entry) = self.code("runtime.allgadd")?;
        let writable = |a: u64| {
            self.elf
                .sections
                .iter()
                .any(|s| s.writable && s.contains(a) && s.contains(a + 23))
        };
        disasm::slice_header_target(&code, entry, writable)
    }

    pub(crate) fn elf(&self) -> &ElfImage {
        &self.elf
    }
}

fn load_pclntab(elf: &ElfImage, version: &GoVersion) -> Option<Pclntab> {
    let section = [".gopclntab", ".data.rel.ro.gopclntab"]
        .iter()
        .find_map(|n| elf.section(n))
        .cloned()
        .or_else(|| {
            let sym = elf.symbols.get("runtime.pclntab")?;
            elf.sections.iter().find(|s| s.contains(sym.addr)).cloned()
        })?;
    let data = elf.section_bytes(&section).ok()?;
    // A PIE's header words are relocated: read them the way the loader would.
    let header_text = elf.read_ptr(section.addr + 8 + 2 * 8);
    let mut tab = match Pclntab::parse(data, header_text) {
        Ok(t) => t,
        Err(reason) => {
            log::debug!("{}: {reason}", elf.path.display());
            return None;
        }
    };
    let funcnametab = section.addr + tab.funcname_offset() as u64;
    let md = moduledata::find(elf, section.addr, funcnametab);
    if tab.text_start == 0 {
        tab.text_start = md
            .and_then(|md| moduledata::text(elf, md))
            .or_else(|| elf.symbols.get("runtime.text").map(|s| s.addr))
            .or_else(|| elf.section(".text").map(|s| s.addr))?;
    }
    tab.gofunc = gofunc(elf, md, version);
    Some(tab)
}

/// `go:func.*`: the symbol, else moduledata (the `.go.func` section of 1.27 is not it).
fn gofunc(elf: &ElfImage, moduledata: Option<u64>, version: &GoVersion) -> Option<u64> {
    for name in ["go:func.*", "go.func.*"] {
        if let Some(sym) = elf.symbols.get(name) {
            return Some(sym.addr);
        }
    }
    moduledata::gofunc(elf, moduledata?, version)
}
