//! The files behind the mappings of a target process.
//!
//! Files are resolved through `/proc/PID/map_files` or `/proc/PID/root` so that binaries inside
//! containers (other mount namespaces) and deleted binaries are found; the path from the maps
//! file is kept for display only and never opened: a local user may swap it (for a FIFO, say)
//! at any moment. Files are opened without blocking and checked to be the mapped inode
//! ([`crate::proc::binfile`]). A file is opened at most once and the handle is kept, which is what
//! lets stacks be unwound and symbolized after the process has exited. Handles are shared by
//! all processes mapping the same file, so watching many processes costs one descriptor per
//! distinct binary, not per process.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use object::{Object, ReadCache};

use crate::proc::debugfile::DebugFile;
use crate::proc::normaddr::{self, Module};

/// Identity of a file's contents on this host, from `fstat` of the opened file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub inode: u64,
    pub size: u64,
    pub mtime_ns: i128,
}

/// An opened file and the path under which other code (blazesym) should open it again.
#[derive(Debug)]
struct Opened {
    file: File,
    id: FileId,
    reopen_path: PathBuf,
    /// Whether its debug information may be used, decided once per file, with the share of
    /// the process-wide inflation budget it holds while open.
    debug_usable: OnceLock<Option<crate::proc::inflate::Reservation>>,
    /// What names its code, read once.
    sources: OnceLock<SymbolSources>,
    /// Its separate debug file found by build id, looked up once and kept open with it.
    debug_file: OnceLock<Option<DebugFile>>,
}

/// What in a binary can name its code.
#[derive(Debug, Default)]
struct SymbolSources {
    /// A non-empty `.symtab` (`.dynsym` names only exported functions: not counted), or a Go
    /// binary's `.gopclntab`, which names every function even when stripped.
    symtab: bool,
    /// `.debug_info` in the file itself.
    dwarf: bool,
    /// The file name in its `.gnu_debuglink`.
    debug_link: Option<String>,
    /// Loadable segments as (file offset, file size, virtual address).
    segments: Vec<(u64, u64, u64)>,
}

/// Whether a file opened for symbolization is still open (its `/proc/self/fd/N` path still
/// names it): caches keyed by that path must be dropped once it is not.
#[derive(Debug, Clone)]
pub struct OpenFileLife(Weak<Opened>);

impl OpenFileLife {
    pub fn is_open(&self) -> bool {
        self.0.strong_count() > 0
    }
}

/// A file mapped into the target process. Opened lazily, at most once.
#[derive(Debug)]
pub struct ObjectFile {
    /// The path as the target process sees it (display only).
    path: PathBuf,
    pid: u32,
    /// One mapping range of this file, for `/proc/PID/map_files/START-END`.
    range: (u64, u64),
    dev: (u32, u32),
    inode: u64,
    deleted: bool,
    opened: OnceLock<Option<Arc<Opened>>>,
    build_id: OnceLock<Option<Vec<u8>>>,
    module: OnceLock<Arc<Module>>,
}

impl ObjectFile {
    /// The file mapped at `range` of process `pid`, as its maps line names it; nothing is
    /// opened yet.
    pub(super) fn new(
        path: PathBuf,
        pid: u32,
        range: (u64, u64),
        dev: (u32, u32),
        inode: u64,
        deleted: bool,
    ) -> ObjectFile {
        ObjectFile {
            path,
            pid,
            range,
            dev,
            inode,
            deleted,
            opened: OnceLock::new(),
            build_id: OnceLock::new(),
            module: OnceLock::new(),
        }
    }

    /// The path as the target process sees it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last path component, e.g. `libc.so.6`.
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.path.to_string_lossy().into_owned())
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted
    }

    /// The open file, opening it on first use; `None` when it cannot be found. The handle is
    /// shared between threads and processes: read it with positional reads only (`read_at`,
    /// [`Self::reader`]), never seek it.
    pub fn file(&self) -> Option<&File> {
        self.opened().map(|o| &o.file)
    }

    /// A reader over the file with its own position, safe to use while other threads read the
    /// shared handle. Wrap it in [`object::ReadCache`] to parse the ELF lazily.
    pub fn reader(&self) -> Option<PositionalReader<'_>> {
        self.file().map(|file| PositionalReader { file, pos: 0 })
    }

    /// The identity of the opened file's contents.
    pub fn file_id(&self) -> Option<FileId> {
        self.opened().map(|o| o.id)
    }

    /// A path that opens this very file from our process: `/proc/self/fd/N` of the handle we
    /// hold, which no rename on disk can redirect, and which stays valid after the target
    /// exits and for deleted files.
    pub fn reopen_path(&self) -> Option<&Path> {
        self.opened().map(|o| o.reopen_path.as_path())
    }

    /// The GNU build id, read once.
    pub fn build_id(&self) -> Option<&[u8]> {
        self.build_id
            .get_or_init(|| {
                let cache = ReadCache::new(self.reader()?);
                let obj = object::File::parse(&cache).ok()?;
                obj.build_id().ok().flatten().map(<[u8]>::to_vec)
            })
            .as_deref()
    }

    /// The file as a module of normalized addresses: its path and build id, built once.
    pub fn module(&self) -> Arc<Module> {
        Arc::clone(self.module.get_or_init(|| {
            Arc::new(Module {
                path: self.path.to_string_lossy().into_owned(),
                build_id: self.build_id().map(normaddr::hex),
            })
        }))
    }

    /// Whether a symbolizer may read this file's debug information (DWARF, debug links) or
    /// must stick to its symbol table. Decided once per file, and logged when refused: every
    /// compressed section must inflate to exactly its declared size within the per-file
    /// budget ([`crate::proc::inflate`]), and a file naming companion debug files must be one only
    /// root can change, since those are looked up by path next to it.
    pub fn debug_info_usable(&self) -> bool {
        let Some(opened) = self.opened() else {
            return false;
        };
        opened
            .debug_usable
            .get_or_init(|| {
                let verdict = check_debug_info(&opened.file).and_then(|declared| {
                    crate::proc::inflate::Reservation::take(declared).map_err(|e| e.to_string())
                });
                match verdict {
                    Ok(reservation) => Some(reservation),
                    Err(reason) => {
                        log::warn!(
                            "{}: symbolized from its symbol table only: {reason}",
                            self.path.display()
                        );
                        None
                    }
                }
            })
            .is_some()
    }

    /// The separate debug file to symbolize this binary from, found by build id under
    /// `/usr/lib/debug` ([`crate::proc::debugfile`]) when the binary has no DWARF of its own
    /// and no debug link blazesym would follow. Looked up once; a refused file is logged.
    pub fn separate_debug_file(&self) -> Option<&DebugFile> {
        let opened = self.opened()?;
        opened
            .debug_file
            .get_or_init(|| {
                let sources = self.sources()?;
                let link_followed = sources.debug_link.is_some() && self.debug_info_usable();
                if sources.dwarf || link_followed {
                    return None;
                }
                match crate::proc::debugfile::find_by_build_id(self.build_id()?) {
                    Ok(found) => found,
                    Err(reason) => {
                        log::warn!("{}: separate debug file: {reason}", self.path.display());
                        None
                    }
                }
            })
            .as_ref()
    }

    /// Whether nothing names this binary's functions: no `.symtab`, no DWARF, no separate debug
    /// file by build id, and no debug link target in the places it is looked up.
    pub fn lacks_symbols(&self) -> bool {
        let Some(sources) = self.sources() else {
            return false;
        };
        if sources.symtab || sources.dwarf || self.separate_debug_file().is_some() {
            return false;
        }
        let Some(link) = &sources.debug_link else {
            return true;
        };
        !(self.debug_info_usable() && self.debug_link_target_exists(link))
    }

    /// The places blazesym looks for a `.gnu_debuglink` target, existence only.
    fn debug_link_target_exists(&self, link: &str) -> bool {
        let debug = Path::new(crate::proc::debugfile::DEBUG_DIR);
        let mut candidates: Vec<PathBuf> = self
            .build_id()
            .and_then(|id| crate::proc::debugfile::build_id_path(debug, id))
            .into_iter()
            .collect();
        candidates.push(debug.join(link));
        if let Some(real) = self.reopen_path().and_then(|p| std::fs::read_link(p).ok()) {
            if let Some(dir) = real.parent() {
                candidates.push(dir.join(link));
                candidates.push(dir.join(".debug").join(link));
                if let Ok(rel) = dir.strip_prefix("/") {
                    candidates.push(debug.join(rel).join(link));
                }
            }
        }
        candidates
            .iter()
            .any(|c| std::fs::symlink_metadata(c).is_ok())
    }

    /// The virtual address (as in the ELF file and its debug file) of `file_offset`.
    pub fn virt_offset(&self, file_offset: u64) -> Option<u64> {
        self.sources()?
            .segments
            .iter()
            .find(|&&(off, size, _)| off <= file_offset && file_offset - off < size)
            .map(|&(off, _, vaddr)| file_offset - off + vaddr)
    }

    fn sources(&self) -> Option<&SymbolSources> {
        let opened = self.opened()?;
        Some(opened.sources.get_or_init(|| {
            read_sources(&opened.file).unwrap_or_else(|| SymbolSources {
                // Unreadable: claim a symbol table, so that no hint is given about it.
                symtab: true,
                ..SymbolSources::default()
            })
        }))
    }

    /// Tells whether the handle opened for this file is still open.
    pub fn life(&self) -> Option<OpenFileLife> {
        self.opened
            .get()?
            .as_ref()
            .map(|o| OpenFileLife(Arc::downgrade(o)))
    }

    fn opened(&self) -> Option<&Opened> {
        self.opened.get_or_init(|| self.open_shared()).as_deref()
    }

    /// Reuses the handle another process's maps already opened for this (device, inode): a
    /// mapped inode cannot be reused while mapped, and we hold it open, so the key is exact.
    fn open_shared(&self) -> Option<Arc<Opened>> {
        type Registry = Mutex<HashMap<((u32, u32), u64), Weak<Opened>>>;
        static OPEN_FILES: OnceLock<Registry> = OnceLock::new();
        let key = (self.dev, self.inode);
        let registry = OPEN_FILES.get_or_init(Default::default);
        // Anonymous-inode or pseudo files can report inode 0: never share those.
        if self.inode != 0 {
            let files = registry.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(opened) = files.get(&key).and_then(Weak::upgrade) {
                return Some(opened);
            }
        }
        let opened = Arc::new(self.open()?);
        if self.inode != 0 {
            let mut files = registry.lock().unwrap_or_else(PoisonError::into_inner);
            if files.len() >= 1024 && files.len().is_power_of_two() {
                files.retain(|_, f| f.strong_count() > 0);
            }
            files.insert(key, Arc::downgrade(&opened));
        }
        Some(opened)
    }

    /// Where the file may be opened from, best first.
    pub(super) fn candidates(&self) -> Vec<PathBuf> {
        // map_files names exactly the mapped file, even deleted or replaced on disk, but needs
        // CAP_SYS_ADMIN (or CAP_CHECKPOINT_RESTORE); the root-relative path works for everybody
        // allowed to read the maps, and is only accepted when it still holds the mapped inode.
        let mut paths = vec![PathBuf::from(format!(
            "/proc/{}/map_files/{:x}-{:x}",
            self.pid, self.range.0, self.range.1
        ))];
        if let Ok(rel) = self.path.strip_prefix("/") {
            paths.push(Path::new(&format!("/proc/{}/root", self.pid)).join(rel));
        }
        paths
    }

    fn open(&self) -> Option<Opened> {
        for candidate in self.candidates() {
            let file = match crate::proc::binfile::open_regular(&candidate, Some(self.inode)) {
                Ok(file) => file,
                Err(err) => {
                    log::debug!("pid {}: {err}", self.pid);
                    continue;
                }
            };
            let Ok(meta) = file.metadata() else { continue };
            let id = FileId {
                dev: meta.dev(),
                inode: meta.ino(),
                size: meta.size(),
                mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            };
            return Some(Opened {
                reopen_path: crate::proc::binfile::fd_path(&file),
                file,
                id,
                debug_usable: OnceLock::new(),
                sources: OnceLock::new(),
                debug_file: OnceLock::new(),
            });
        }
        log::debug!("cannot open {} of pid {}", self.path.display(), self.pid);
        None
    }
}

/// Sections through which a DWARF reader goes looking for other files by path.
const DEBUG_LINK_SECTIONS: [&str; 3] = [".gnu_debuglink", ".gnu_debugaltlink", ".debug_sup"];

/// Why the debug information of `file` must not be used, if it must not; else what its
/// compressed sections declare in total.
fn check_debug_info(file: &File) -> Result<u64, String> {
    use object::ObjectSection as _;
    let cache = ReadCache::new(PositionalReader { file, pos: 0 });
    let obj = object::File::parse(&cache).map_err(|e| format!("not a readable ELF file: {e}"))?;
    let declared = crate::proc::inflate::verify_sections(&obj, |offset, len| {
        Ok(io::Read::take(PositionalReader { file, pos: offset }, len))
    })
    .map_err(|e| e.to_string())?;
    let links = obj.sections().find(|s| {
        s.name()
            .is_ok_and(|name| DEBUG_LINK_SECTIONS.contains(&name))
    });
    if let Some(section) = links {
        // blazesym resolves the link from the file's real path: the directory it lives in must
        // be one nobody else can plant a file (a FIFO, a huge file) in.
        let real = std::fs::read_link(crate::proc::binfile::fd_path(file)).unwrap_or_default();
        if !crate::proc::binfile::root_controlled(file, &real) {
            return Err(format!(
                "it names companion debug files ({}) and {} can be changed by non-root users",
                section.name().unwrap_or("?"),
                real.display()
            ));
        }
    }
    Ok(declared)
}

fn read_sources(file: &File) -> Option<SymbolSources> {
    use object::ObjectSection as _;
    use object::ObjectSegment as _;
    let cache = ReadCache::new(PositionalReader { file, pos: 0 });
    let obj = object::File::parse(&cache).ok()?;
    let present = |name: &str| {
        obj.section_by_name(name)
            .is_some_and(|s| s.size() > 0 && s.kind() != object::SectionKind::UninitializedData)
    };
    Some(SymbolSources {
        symtab: (obj.symbol_table().is_some() && obj.symbols().next().is_some())
            || obj.section_by_name(".gopclntab").is_some()
            || obj.section_by_name(".go.buildinfo").is_some(),
        dwarf: present(".debug_info") || present(".zdebug_info"),
        debug_link: obj
            .gnu_debuglink()
            .ok()
            .flatten()
            .map(|(name, _)| String::from_utf8_lossy(name).into_owned()),
        segments: obj
            .segments()
            .map(|s| {
                let (off, size) = s.file_range();
                (off, size, s.address())
            })
            .collect(),
    })
}

/// `Read + Seek` over a shared [`File`] through `pread`, keeping the position here rather
/// than in the file description that all users of the handle share.
#[derive(Debug)]
pub struct PositionalReader<'a> {
    file: &'a File,
    pos: u64,
}

impl io::Read for PositionalReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl io::Seek for PositionalReader<'_> {
    fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
        let invalid = || io::Error::from(io::ErrorKind::InvalidInput);
        self.pos = match to {
            io::SeekFrom::Start(p) => p,
            io::SeekFrom::Current(d) => self.pos.checked_add_signed(d).ok_or_else(invalid)?,
            io::SeekFrom::End(d) => self
                .file
                .metadata()?
                .len()
                .checked_add_signed(d)
                .ok_or_else(invalid)?,
        };
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_links_are_followed_only_in_root_controlled_places() {
        // Debian's libc names its debug file in /usr/lib/debug: root's, so it is used.
        let libc_path = Path::new("/usr/lib/x86_64-linux-gnu/libc.so.6");
        let Ok(libc_file) = crate::proc::binfile::open_regular(libc_path, None) else {
            return;
        };
        assert!(check_debug_info(&libc_file).is_ok());
        // The same bytes in a directory others can write to are not followed.
        let dir = tempfile::tempdir_in("/tmp").expect("tempdir");
        let copy = dir.path().join("libc.so.6");
        std::fs::copy(libc_path, &copy).expect("copy");
        let file = crate::proc::binfile::open_regular(&copy, None).expect("open copy");
        let err = check_debug_info(&file).expect_err("a debug link next to a user's file");
        assert!(err.contains(".gnu_debuglink"), "{err}");
    }

    #[test]
    fn positional_reader_keeps_its_own_position() {
        use std::io::{Read, Seek, SeekFrom};
        let mut tmp = tempfile::tempfile().expect("tempfile");
        std::io::Write::write_all(&mut tmp, b"0123456789").expect("write");
        let mut a = PositionalReader { file: &tmp, pos: 0 };
        let mut b = PositionalReader { file: &tmp, pos: 0 };
        let mut buf = [0u8; 3];
        a.seek(SeekFrom::Start(5)).expect("seek");
        b.read_exact(&mut buf).expect("read b");
        assert_eq!(&buf, b"012");
        a.read_exact(&mut buf).expect("read a");
        assert_eq!(&buf, b"567");
        assert_eq!(a.seek(SeekFrom::End(-1)).expect("seek end"), 9);
        assert_eq!(a.seek(SeekFrom::Current(-9)).expect("seek back"), 0);
        assert!(a.seek(SeekFrom::Current(-1)).is_err());
    }
}
