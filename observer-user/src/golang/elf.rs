//! The parts of an ELF file the Go readers need, kept after parsing so the file can be read
//! on demand (text for disassembly, data for string headers) without holding it in memory.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use object::{
    Object, ObjectSection, ObjectSegment, ObjectSymbol, ReadCache, RelocationFlags,
    RelocationTarget, SectionKind, SymbolKind,
};

use super::GoError;

/// `R_X86_64_RELATIVE`: a PIE's pointers live in these addends, not in the file bytes.
const R_X86_64_RELATIVE: u32 = 8;

#[derive(Debug, Clone)]
pub(crate) struct Section {
    pub name: String,
    pub addr: u64,
    pub size: u64,
    /// File range, `None` for `SHT_NOBITS` (bss).
    pub file_range: Option<(u64, u64)>,
    pub writable: bool,
}

impl Section {
    pub fn contains(&self, addr: u64) -> bool {
        self.addr <= addr && addr < self.addr.saturating_add(self.size)
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Segment {
    pub vaddr: u64,
    pub offset: u64,
    pub filesz: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Symbol {
    pub addr: u64,
    pub size: u64,
    pub text: bool,
}

/// A parsed ELF executable with an open handle to its bytes.
#[derive(Debug)]
pub(crate) struct ElfImage {
    pub path: PathBuf,
    file: File,
    pub is_dyn: bool,
    pub sections: Vec<Section>,
    pub segments: Vec<Segment>,
    pub symbols: HashMap<String, Symbol>,
    /// `R_X86_64_RELATIVE` addends by the address they patch (PIE only).
    relocs: HashMap<u64, u64>,
    pub has_dwarf: bool,
}

/// The sections the DWARF reader wants, decompressed; kept only while a binary is opened.
pub(crate) type DebugSections = HashMap<&'static str, Vec<u8>>;

/// Enough to read DIEs and their names (line programs and ranges are not needed).
const DEBUG_SECTIONS: [&str; 6] = [
    ".debug_info",
    ".debug_abbrev",
    ".debug_str",
    ".debug_line_str",
    ".debug_str_offsets",
    ".debug_addr",
];

impl ElfImage {
    /// Parses `path`, opened once without blocking (it may be a user's file, swapped for a
    /// FIFO). A file that is not ELF is reported as not Go (the caller's question).
    pub fn open(path: &Path) -> Result<(ElfImage, DebugSections), GoError> {
        let io_err = |source| GoError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = crate::proc::binfile::open_regular(path, None).map_err(|e| match e {
            crate::proc::binfile::OpenError::Io { source, .. } => io_err(source),
            other => io_err(io::Error::new(
                io::ErrorKind::InvalidInput,
                other.to_string(),
            )),
        })?;
        let handle = file.try_clone().map_err(io_err)?;
        let cache = ReadCache::new(handle);
        let obj = object::File::parse(&cache).map_err(|_| GoError::NotGo {
            path: path.to_path_buf(),
        })?;
        let is_dyn = matches!(obj.kind(), object::ObjectKind::Dynamic);

        let sections = obj
            .sections()
            .map(|s| Section {
                name: s.name().unwrap_or_default().to_string(),
                addr: s.address(),
                size: s.size(),
                file_range: s.file_range(),
                writable: matches!(s.kind(), SectionKind::Data | SectionKind::UninitializedData)
                    || s.name().is_ok_and(|n| n.starts_with(".data")),
            })
            .collect();
        let segments = obj
            .segments()
            .map(|s| {
                let (offset, filesz) = s.file_range();
                Segment {
                    vaddr: s.address(),
                    offset,
                    filesz,
                }
            })
            .collect();

        let mut symbols = HashMap::new();
        for sym in obj.symbols() {
            let text = match sym.kind() {
                SymbolKind::Text => true,
                SymbolKind::Data | SymbolKind::Unknown => false,
                _ => continue,
            };
            if sym.is_undefined() {
                continue;
            }
            let Ok(name) = sym.name() else { continue };
            if name.is_empty() {
                continue;
            }
            symbols.entry(name.to_string()).or_insert(Symbol {
                addr: sym.address(),
                size: sym.size(),
                text,
            });
        }

        let mut relocs = HashMap::new();
        if is_dyn {
            for (offset, reloc) in obj.dynamic_relocations().into_iter().flatten() {
                let relative = matches!(reloc.flags(), RelocationFlags::Elf { r_type } if r_type == R_X86_64_RELATIVE);
                if relative && matches!(reloc.target(), RelocationTarget::Absolute) {
                    // Addends of RELATIVE relocations are image addresses (non-negative).
                    relocs.insert(offset, reloc.addend() as u64);
                }
            }
        }

        let mut debug = DebugSections::new();
        let mut budget = crate::proc::inflate::Budget::default();
        for name in DEBUG_SECTIONS {
            if let Some(section) = obj.section_by_name(name) {
                match crate::proc::inflate::section_data(&section, &mut budget) {
                    Ok(data) => {
                        debug.insert(name, data);
                    }
                    Err(e) => {
                        // Half the DWARF would give wrong answers: use none of it.
                        log::warn!("{}: DWARF not used: {e}", path.display());
                        debug.clear();
                        break;
                    }
                }
            }
        }
        let has_dwarf = debug.contains_key(".debug_info");

        Ok((
            ElfImage {
                path: path.to_path_buf(),
                file,
                is_dyn,
                sections,
                segments,
                symbols,
                relocs,
                has_dwarf,
            },
            debug,
        ))
    }

    /// `/proc/self/fd/N` of the file parsed here: the kernel resolves it to this very inode
    /// (for uprobes), whatever is renamed over the original path meanwhile.
    pub fn fd_path(&self) -> PathBuf {
        crate::proc::binfile::fd_path(&self.file)
    }

    /// (device, inode) of the file parsed here.
    pub fn file_id(&self) -> io::Result<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        let meta = self.file.metadata()?;
        Ok((meta.dev(), meta.ino()))
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// File bytes of a section (empty for bss).
    pub fn section_bytes(&self, section: &Section) -> io::Result<Vec<u8>> {
        match section.file_range {
            Some((offset, len)) => self.read_at(offset, len),
            None => Ok(Vec::new()),
        }
    }

    pub fn read_at(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        // Lengths come from the file's own headers: a corrupt one must not make us allocate
        // more than the file holds (an allocation failure aborts the process), nor more than
        // the per-file budget (a sparse file can hold terabytes).
        let size = self.file.metadata()?.len();
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        if len > crate::proc::inflate::MAX_DECOMPRESSED_PER_FILE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{len}-byte read over the per-file budget"),
            ));
        }
        let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    /// File offset of the byte at virtual address `vaddr` (what a uprobe needs).
    pub fn vaddr_to_offset(&self, vaddr: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|s| s.vaddr <= vaddr && vaddr < s.vaddr.saturating_add(s.filesz))
            .map(|s| vaddr - s.vaddr + s.offset)
    }

    /// `len` bytes at `vaddr`, if they are all backed by the file.
    pub fn read_vaddr(&self, vaddr: u64, len: u64) -> Option<Vec<u8>> {
        let seg = self.segments.iter().find(|s| {
            s.vaddr <= vaddr && vaddr.saturating_add(len) <= s.vaddr.saturating_add(s.filesz)
        })?;
        self.read_at(vaddr - seg.vaddr + seg.offset, len).ok()
    }

    /// The pointer stored at `vaddr`, with a PIE's relocation applied.
    pub fn read_ptr(&self, vaddr: u64) -> Option<u64> {
        if let Some(&addend) = self.relocs.get(&vaddr) {
            return Some(addend);
        }
        self.read_vaddr(vaddr, 8).map(|b| le64(&b, 0))
    }

    /// Pointer words of `bytes` (the file contents at `base`), relocations applied.
    pub fn ptr_word(&self, bytes: &[u8], base: u64, index: usize) -> u64 {
        let addr = base + (index as u64) * 8;
        self.relocs
            .get(&addr)
            .copied()
            .unwrap_or_else(|| le64(bytes, index * 8))
    }
}

/// Little-endian u64 at `at`; 0 past the end (callers validate what they read).
pub(crate) fn le64(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..at.saturating_add(8))
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

pub(crate) fn le32(bytes: &[u8], at: usize) -> u32 {
    bytes
        .get(at..at.saturating_add(4))
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn little_endian_reads_stop_at_end() {
        let b = [1u8, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0];
        assert_eq!(le64(&b, 0), 1);
        assert_eq!(le64(&b, 8), 0);
        assert_eq!(le32(&b, 8), 0);
        assert_eq!(le32(&b, 4), 0);
        assert_eq!(le32(&b, 7), 0x200);
        assert_eq!(le64(&b, usize::MAX), 0);
    }
}
