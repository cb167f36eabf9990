//! `.gopclntab`: Go's own function table, which survives `-ldflags="-s -w"`.
//!
//! Gives function names and bounds, file:line, the stack-pointer delta at any pc (what the
//! goroutine unwinder needs) and inlined frames (with the `go:func.*` base). Layouts follow
//! `runtime/symtab.go` and `runtime/runtime2.go` of each version; Go 1.16-1.17 tables give
//! names and lines but no inlined frames.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Serialize;

use super::elf::{le32, le64};

const MAGIC_116: u32 = 0xffff_fffa;
const MAGIC_118: u32 = 0xffff_fff0;
const MAGIC_120: u32 = 0xffff_fff1;

/// `_PCDATA_InlTreeIndex` and `_FUNCDATA_InlTree` (stable since Go 1.12).
const PCDATA_INL_TREE_INDEX: u32 = 2;
const FUNCDATA_INL_TREE: u32 = 3;
/// Inlining depth guard against corrupt trees.
const MAX_INLINE_DEPTH: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Go116,
    Go118,
    Go120,
}

/// A function of the table: name and `[entry, end)` as link-time virtual addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FuncInfo {
    pub name: String,
    pub entry: u64,
    pub end: u64,
}

/// One logical frame: a real call frame, or a call inlined into one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GoFrame {
    pub function: String,
    /// Source file as recorded by the compiler (absolute path for most code).
    pub file: String,
    pub line: u32,
    /// Entry of the physical function containing the pc (0 when unknown).
    pub entry: u64,
    /// `pc - entry` of the physical frame; `None` for inlined frames (Go prints no offset).
    pub offset: Option<u64>,
    pub inlined: bool,
    /// Compiler-generated wrapper (method value, `go` statement closure): Go hides these.
    pub wrapper: bool,
}

/// Reads bytes at a link-time virtual address (the inline trees live outside the pclntab).
pub(crate) trait VaddrReader {
    fn read(&self, vaddr: u64, len: u64) -> Option<Vec<u8>>;
}

/// A function as located in the table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Func {
    pub entry: u64,
    pub end: u64,
    /// Offset of its `_func` record in `data`.
    record: usize,
}

pub(crate) struct Pclntab {
    data: Vec<u8>,
    layout: Layout,
    quantum: u64,
    nfunc: usize,
    /// Where function entry offsets count from (moduledata.text). Go 1.26+ no longer stores
    /// it in the header (it needed a relocation): the caller fills it in then.
    pub text_start: u64,
    funcname: usize,
    cutab: usize,
    filetab: usize,
    pctab: usize,
    functab: usize,
    /// Address of `go:func.*`, base of funcdata offsets (1.18+); needed for inlined frames.
    pub gofunc: Option<u64>,
    by_name: OnceLock<HashMap<String, usize>>,
    wrapper_id: OnceLock<u8>,
}

impl std::fmt::Debug for Pclntab {
    // The table is megabytes: show its shape only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pclntab")
            .field("layout", &self.layout)
            .field("bytes", &self.data.len())
            .field("nfunc", &self.nfunc)
            .field("text_start", &format_args!("{:#x}", self.text_start))
            .field("gofunc", &self.gofunc)
            .finish_non_exhaustive()
    }
}

impl Pclntab {
    /// Parses the table. `text_start` is the header field as the loader relocates it, when
    /// known (a PIE has zero in its file bytes).
    pub fn parse(data: Vec<u8>, text_start: Option<u64>) -> Result<Pclntab, String> {
        if data.len() < 8 + 8 * 8 {
            return Err("pclntab too short".into());
        }
        let layout = match le32(&data, 0) {
            MAGIC_116 => Layout::Go116,
            MAGIC_118 => Layout::Go118,
            MAGIC_120 => Layout::Go120,
            magic => return Err(format!("unsupported pclntab magic {magic:#x}")),
        };
        if data[4] != 0 || data[5] != 0 || data[7] != 8 {
            return Err("pclntab is not for a 64-bit little-endian target".into());
        }
        let quantum = u64::from(data[6]);
        let word = |i: usize| le64(&data, 8 + 8 * i);
        let (text, rest) = match layout {
            Layout::Go116 => (0, 2),
            _ => (word(2), 3),
        };
        let field = |i: usize| usize::try_from(word(rest + i)).unwrap_or(usize::MAX);
        let tab = Pclntab {
            layout,
            quantum: quantum.max(1),
            nfunc: usize::try_from(word(0)).map_err(|_| "bad nfunc")?,
            text_start: text_start.filter(|&t| t != 0).unwrap_or(text),
            funcname: field(0),
            cutab: field(1),
            filetab: field(2),
            pctab: field(3),
            functab: field(4),
            gofunc: None,
            by_name: OnceLock::new(),
            wrapper_id: OnceLock::new(),
            data,
        };
        let entry_size = tab.functab_entry_size();
        let functab_end = tab
            .nfunc
            .checked_add(1)
            .and_then(|n| n.checked_mul(entry_size))
            .and_then(|n| n.checked_add(tab.functab));
        if [tab.funcname, tab.cutab, tab.filetab, tab.pctab, tab.functab]
            .iter()
            .any(|&o| o >= tab.data.len())
            || functab_end.is_none_or(|end| end > tab.data.len())
        {
            return Err("pclntab offsets point outside the table".into());
        }
        Ok(tab)
    }

    /// Offset of the function name table inside the pclntab (moduledata points at it).
    pub fn funcname_offset(&self) -> usize {
        self.funcname
    }

    fn functab_entry_size(&self) -> usize {
        match self.layout {
            Layout::Go116 => 16,
            _ => 8,
        }
    }

    /// (entry address, `_func` offset) of functab row `i` (row `nfunc` is the end of text).
    fn row(&self, i: usize) -> (u64, usize) {
        let at = self.functab + i * self.functab_entry_size();
        match self.layout {
            Layout::Go116 => (le64(&self.data, at), le64(&self.data, at + 8) as usize),
            _ => (
                self.text_start + u64::from(le32(&self.data, at)),
                le32(&self.data, at + 4) as usize,
            ),
        }
    }

    fn func_at_row(&self, i: usize) -> Option<Func> {
        let (entry, off) = self.row(i);
        let (end, _) = self.row(i + 1);
        let record = self.functab.checked_add(off)?;
        (record < self.data.len()).then_some(Func { entry, end, record })
    }

    /// The function containing `pc` (link-time address).
    pub fn find(&self, pc: u64) -> Option<Func> {
        if self.nfunc == 0 || pc < self.row(0).0 || pc >= self.row(self.nfunc).0 {
            return None;
        }
        // Last row whose entry <= pc.
        let (mut lo, mut hi) = (0, self.nfunc);
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if self.row(mid).0 <= pc {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        self.func_at_row(lo)
    }

    /// The function named `name` (first one when duplicated).
    pub fn lookup(&self, name: &str) -> Option<Func> {
        let index = self.by_name.get_or_init(|| {
            let mut map = HashMap::with_capacity(self.nfunc);
            for i in 0..self.nfunc {
                if let Some(f) = self.func_at_row(i) {
                    if let Some(n) = self.name_of(&f) {
                        map.entry(n.to_string()).or_insert(i);
                    }
                }
            }
            map
        });
        index.get(name).and_then(|&i| self.func_at_row(i))
    }

    /// All functions, in address order.
    pub fn funcs(&self) -> impl Iterator<Item = FuncInfo> + '_ {
        (0..self.nfunc).filter_map(|i| {
            let f = self.func_at_row(i)?;
            Some(FuncInfo {
                name: self.name_of(&f)?.to_string(),
                entry: f.entry,
                end: f.end,
            })
        })
    }

    fn field(&self, f: &Func, offset: usize) -> u32 {
        le32(&self.data, f.record + offset)
    }

    /// Byte offset of the (1.18+) field layout's first field within `_func`.
    fn base(&self) -> usize {
        match self.layout {
            Layout::Go116 => 8, // entry is a uintptr there
            _ => 4,
        }
    }

    pub fn name_of(&self, f: &Func) -> Option<&str> {
        self.name_at(self.field(f, self.base()) as i32)
    }

    fn name_at(&self, name_off: i32) -> Option<&str> {
        let start = self.funcname.checked_add(usize::try_from(name_off).ok()?)?;
        cstr(&self.data, start)
    }

    fn pcsp(&self, f: &Func) -> u32 {
        self.field(f, self.base() + 12)
    }
    fn pcfile(&self, f: &Func) -> u32 {
        self.field(f, self.base() + 16)
    }
    fn pcln(&self, f: &Func) -> u32 {
        self.field(f, self.base() + 20)
    }
    fn npcdata(&self, f: &Func) -> u32 {
        self.field(f, self.base() + 24)
    }
    fn cu_offset(&self, f: &Func) -> u32 {
        self.field(f, self.base() + 28)
    }

    /// Size of the fixed part of `_func`; then come pcdata and funcdata offsets.
    fn fixed_size(&self) -> usize {
        match self.layout {
            Layout::Go116 | Layout::Go120 => 44,
            Layout::Go118 => 40,
        }
    }

    fn func_id(&self, f: &Func) -> u8 {
        self.data
            .get(f.record + self.fixed_size() - 4)
            .copied()
            .unwrap_or(0)
    }

    /// `FuncIDWrapper`, whose number changes between versions but which is always the last
    /// (highest) funcID, and every binary has wrappers.
    fn wrapper_id(&self) -> u8 {
        *self.wrapper_id.get_or_init(|| {
            (0..self.nfunc)
                .filter_map(|i| self.func_at_row(i))
                .map(|f| self.func_id(&f))
                .max()
                .unwrap_or(0)
        })
    }

    fn is_wrapper_id(&self, id: u8) -> bool {
        id != 0 && id == self.wrapper_id()
    }

    fn nfuncdata(&self, f: &Func) -> u8 {
        self.data
            .get(f.record + self.fixed_size() - 1)
            .copied()
            .unwrap_or(0)
    }

    fn pcdata_table(&self, f: &Func, table: u32) -> Option<u32> {
        if table >= self.npcdata(f) {
            return None;
        }
        let off = self.field(f, self.fixed_size() + 4 * table as usize);
        (off != 0).then_some(off)
    }

    /// Address of funcdata `i` (1.18+ only: offsets from `go:func.*`).
    fn funcdata(&self, f: &Func, i: u32) -> Option<u64> {
        if self.layout == Layout::Go116 || i >= u32::from(self.nfuncdata(f)) {
            return None;
        }
        let at = self.fixed_size() + 4 * (self.npcdata(f) as usize + i as usize);
        let off = self.field(f, at);
        (off != u32::MAX).then(|| self.gofunc.map(|base| base + u64::from(off)))?
    }

    /// Go's `pcvalue`: the value of table `off` at `target`, or `None`.
    fn pcvalue(&self, f: &Func, off: u32, target: u64) -> Option<i32> {
        if off == 0 {
            return None;
        }
        let mut p = self.pctab.checked_add(off as usize)?;
        let mut pc = f.entry;
        let mut val: i32 = -1;
        let mut first = true;
        loop {
            let (uvdelta, n) = varint32(&self.data, p)?;
            if uvdelta == 0 && !first {
                return None;
            }
            first = false;
            p += n;
            let delta = -((uvdelta & 1) as i32) ^ ((uvdelta >> 1) as i32);
            val = val.wrapping_add(delta);
            let (pcdelta, n) = varint32(&self.data, p)?;
            p += n;
            pc = pc.checked_add(u64::from(pcdelta) * self.quantum)?;
            if target < pc {
                return Some(val);
            }
        }
    }

    /// Stack bytes the function has allocated at `pc` (Go's `funcspdelta`).
    pub fn sp_delta(&self, f: &Func, pc: u64) -> Option<i32> {
        self.pcvalue(f, self.pcsp(f), pc)
    }

    /// Source position of `pc` in `f` (the innermost inlined call's position).
    pub fn line(&self, f: &Func, pc: u64) -> Option<(String, u32)> {
        let fileno = self.pcvalue(f, self.pcfile(f), pc)?;
        let line = self.pcvalue(f, self.pcln(f), pc)?;
        let file = self.file_name(f, u32::try_from(fileno).ok()?)?;
        Some((file.to_string(), u32::try_from(line).ok()?))
    }

    fn file_name(&self, f: &Func, fileno: u32) -> Option<&str> {
        let cu_entry = self.cu_offset(f).checked_add(fileno)? as usize;
        let file_off = le32(&self.data, self.cutab.checked_add(cu_entry * 4)?);
        if file_off == u32::MAX {
            return None;
        }
        cstr(&self.data, self.filetab.checked_add(file_off as usize)?)
    }

    /// Logical frames at `pc`, innermost first, inlined calls expanded like Go's traceback.
    /// `pc` is a return address or a saved pc: like Go, look up `pc - 1` unless at entry.
    pub fn frames(&self, pc: u64, reader: &dyn VaddrReader) -> Vec<GoFrame> {
        let Some(f) = self.find(pc) else {
            return Vec::new();
        };
        let Some(outer_name) = self.name_of(&f) else {
            return Vec::new();
        };
        let lookup_pc = if pc > f.entry { pc - 1 } else { pc };
        let tree = self.funcdata(&f, FUNCDATA_INL_TREE);
        let tree_index = self.pcdata_table(&f, PCDATA_INL_TREE_INDEX);
        let mut frames = Vec::new();
        let mut upc = lookup_pc;
        for _ in 0..MAX_INLINE_DEPTH {
            let (file, line) = self.line(&f, upc).unwrap_or_else(|| ("?".into(), 0));
            let index = match (tree, tree_index) {
                (Some(_), Some(t)) => self.pcvalue(&f, t, upc).unwrap_or(-1),
                _ => -1,
            };
            let call = (index >= 0)
                .then(|| self.inlined_call(tree?, index as u64, reader))
                .flatten();
            match call {
                Some((name_off, parent_pc, func_id)) => {
                    frames.push(GoFrame {
                        function: self.name_at(name_off).unwrap_or("?").to_string(),
                        file,
                        line,
                        entry: f.entry,
                        offset: None,
                        inlined: true,
                        wrapper: self.is_wrapper_id(func_id),
                    });
                    upc = f.entry + u64::from(parent_pc);
                }
                None => {
                    frames.push(GoFrame {
                        function: outer_name.to_string(),
                        file,
                        line,
                        entry: f.entry,
                        offset: Some(pc - f.entry),
                        inlined: false,
                        wrapper: self.is_wrapper_id(self.func_id(&f)),
                    });
                    break;
                }
            }
        }
        frames
    }

    /// (nameOff, parentPc, funcID) of inline tree entry `index`.
    fn inlined_call(
        &self,
        tree: u64,
        index: u64,
        reader: &dyn VaddrReader,
    ) -> Option<(i32, u32, u8)> {
        let (size, id_at, name_at, parent_at) = match self.layout {
            Layout::Go120 => (16u64, 0, 4, 8),
            Layout::Go118 => (20u64, 2, 12, 16),
            Layout::Go116 => return None,
        };
        let bytes = reader.read(tree.checked_add(index.checked_mul(size)?)?, size)?;
        Some((
            le32(&bytes, name_at) as i32,
            le32(&bytes, parent_at),
            bytes[id_at],
        ))
    }

    /// File and line for `pc` as Go prints a "created by" location (`pc - 1` unless at entry).
    pub fn call_site(&self, pc: u64) -> Option<(String, String, u32, u64)> {
        let f = self.find(pc)?;
        let name = self.name_of(&f)?.to_string();
        let lookup = if pc > f.entry { pc - 1 } else { pc };
        let (file, line) = self.line(&f, lookup)?;
        Some((name, file, line, f.entry))
    }
}

/// A NUL-terminated UTF-8 string at `start`.
fn cstr(data: &[u8], start: usize) -> Option<&str> {
    let bytes = data.get(start..)?;
    let end = bytes.iter().position(|&b| b == 0)?;
    std::str::from_utf8(&bytes[..end]).ok()
}

/// Go's 32-bit varint: value and bytes consumed.
fn varint32(data: &[u8], at: usize) -> Option<(u32, usize)> {
    let mut value = 0u32;
    let mut shift = 0;
    for (i, &b) in data.get(at..)?.iter().enumerate().take(5) {
        value |= u32::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
        shift += 7;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoReader;
    impl VaddrReader for NoReader {
        fn read(&self, _: u64, _: u64) -> Option<Vec<u8>> {
            None
        }
    }

    fn push_varint(out: &mut Vec<u8>, mut v: u32) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn zigzag(v: i32) -> u32 {
        ((v << 1) ^ (v >> 31)) as u32
    }

    /// A pc-value table: (value, pc delta) steps, as Go's linker writes them.
    fn pctable(steps: &[(i32, u32)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut prev = -1;
        for &(val, pcdelta) in steps {
            push_varint(&mut out, zigzag(val - prev));
            push_varint(&mut out, pcdelta);
            prev = val;
        }
        out.push(0);
        out
    }

    /// A Go 1.20 table with two functions: main.a [0x1000,0x1010), main.b [0x1010,0x1040).
    fn synthetic() -> Pclntab {
        let text = 0x1000u64;
        let funcname = b"\0main.a\0main.b\0".to_vec();
        let cutab: Vec<u8> = [1u32, 9].iter().flat_map(|v| v.to_le_bytes()).collect();
        let filetab = b"\0/x/a.go\0/y/b.go\0".to_vec();
        let mut pctab = vec![0u8]; // offset 0 means "no table"
        let sp_off = pctab.len() as u32;
        pctab.extend(pctable(&[(0, 4), (8, 0x2c)]));
        let file_off = pctab.len() as u32;
        pctab.extend(pctable(&[(1, 0x30)]));
        let line_off = pctab.len() as u32;
        pctab.extend(pctable(&[(10, 0x10), (12, 0x20)]));

        // functab: 2 functions + end row, then two _func records (44 bytes each, 1.20).
        let mut functab = Vec::new();
        let rec = |entry: u32, name: i32| {
            let mut r = Vec::new();
            for v in [
                entry,
                name as u32,
                0,
                0,
                sp_off,
                file_off,
                line_off,
                0,
                0,
                5,
            ] {
                r.extend_from_slice(&v.to_le_bytes());
            }
            r.extend_from_slice(&[0, 0, 0, 0]); // funcID, flag, pad, nfuncdata
            r
        };
        let rows_len = 3 * 8;
        let recs = [rec(0, 1), rec(0x10, 8)];
        let offs = [rows_len, rows_len + recs[0].len()];
        for (entry, off) in [(0u32, offs[0]), (0x10, offs[1]), (0x40, 0)] {
            functab.extend_from_slice(&entry.to_le_bytes());
            functab.extend_from_slice(&(off as u32).to_le_bytes());
        }
        for r in recs {
            functab.extend(r);
        }

        let header_len = 8 + 8 * 8;
        let mut data = Vec::new();
        data.extend_from_slice(&MAGIC_120.to_le_bytes());
        data.extend_from_slice(&[0, 0, 1, 8]);
        let funcname_off = header_len;
        let cutab_off = funcname_off + funcname.len();
        let filetab_off = cutab_off + cutab.len();
        let pctab_off = filetab_off + filetab.len();
        let functab_off = pctab_off + pctab.len();
        for w in [
            2u64,
            2,
            text,
            funcname_off as u64,
            cutab_off as u64,
            filetab_off as u64,
            pctab_off as u64,
            functab_off as u64,
        ] {
            data.extend_from_slice(&w.to_le_bytes());
        }
        for part in [funcname, cutab, filetab, pctab, functab] {
            data.extend(part);
        }
        Pclntab::parse(data, None).expect("synthetic table parses")
    }

    #[test]
    fn finds_functions_and_names() {
        let t = synthetic();
        assert_eq!(t.nfunc, 2);
        let f = t.find(0x1012).unwrap();
        assert_eq!((f.entry, f.end), (0x1010, 0x1040));
        assert_eq!(t.name_of(&f), Some("main.b"));
        assert_eq!(t.name_of(&t.find(0x1000).unwrap()), Some("main.a"));
        assert!(t.find(0x0fff).is_none());
        assert!(t.find(0x1040).is_none());
        assert_eq!(t.lookup("main.b").unwrap().entry, 0x1010);
        assert!(t.lookup("main.c").is_none());
        let names: Vec<String> = t.funcs().map(|f| f.name).collect();
        assert_eq!(names, ["main.a", "main.b"]);
    }

    #[test]
    fn decodes_pc_value_tables() {
        let t = synthetic();
        let f = t.find(0x1010).unwrap();
        assert_eq!(t.sp_delta(&f, 0x1010), Some(0));
        assert_eq!(t.sp_delta(&f, 0x1013), Some(0));
        assert_eq!(t.sp_delta(&f, 0x1014), Some(8));
        assert_eq!(t.line(&f, 0x1010), Some(("/y/b.go".into(), 10)));
        assert_eq!(t.line(&f, 0x1020), Some(("/y/b.go".into(), 12)));
        assert_eq!(t.line(&f, 0x1050), None);
    }

    #[test]
    fn frames_look_up_the_call_instruction() {
        let t = synthetic();
        // A return address at 0x1020 belongs to the call before it (line 10).
        let frames = t.frames(0x1020, &NoReader);
        assert_eq!(
            frames,
            vec![GoFrame {
                function: "main.b".into(),
                file: "/y/b.go".into(),
                line: 10,
                entry: 0x1010,
                offset: Some(0x10),
                inlined: false,
                wrapper: false,
            }]
        );
        assert!(t.frames(0x5000, &NoReader).is_empty());
        assert_eq!(t.call_site(0x1021).map(|c| c.2), Some(12));
    }

    #[test]
    fn rejects_garbage() {
        assert!(Pclntab::parse(vec![0; 10], None).is_err());
        assert!(Pclntab::parse(vec![0xff; 200], None).is_err());
        let mut bad = synthetic().data.clone();
        bad[8 + 8 * 7..8 + 8 * 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(Pclntab::parse(bad, None).is_err());
    }

    #[test]
    fn varints() {
        assert_eq!(varint32(&[0x05], 0), Some((5, 1)));
        assert_eq!(varint32(&[0x80, 0x01], 0), Some((128, 2)));
        assert_eq!(varint32(&[0x80], 0), None);
        assert_eq!(cstr(b"ab\0c", 0), Some("ab"));
        assert_eq!(cstr(b"ab", 0), None);
    }
}
