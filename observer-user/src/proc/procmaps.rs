//! The memory map of a target process (`/proc/PID/maps`): its mappings, parsed, and code
//! addresses normalized to (module, file offset). The files behind the mappings are
//! [`ObjectFile`]s ([`crate::proc::objectfile`]), opened only when first needed.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use object::Object;

use crate::proc::memory::read_process_memory;
use crate::proc::normaddr::{self, Module, NormAddr};
use crate::proc::objectfile::ObjectFile;

/// Why the maps of a process could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum MapsError {
    #[error("cannot read /proc/{pid}/maps: {source}")]
    Read { pid: u32, source: io::Error },
}

/// Why one line of a maps file could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed maps line ({reason}): {line:?}")]
pub struct ParseError {
    pub line: String,
    pub reason: &'static str,
}

/// Access permissions of a mapping (`r-xp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Perms {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    /// `s` (shared) rather than `p` (private, copy-on-write).
    pub shared: bool,
}

/// What backs a mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backing {
    /// No name at all: anonymous memory (heap arenas, thread stacks, JIT code).
    Anonymous,
    /// A kernel-named region such as `[vdso]`, `[stack]`, `[heap]`, `[anon:name]`.
    Pseudo(String),
    /// A file, by the path the process sees (not resolved into our namespace).
    File { path: PathBuf, deleted: bool },
}

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub perms: Perms,
    /// Offset into the file of the byte mapped at `start`.
    pub offset: u64,
    /// Device (major, minor) as the kernel reports it.
    pub dev: (u32, u32),
    pub inode: u64,
    pub backing: Backing,
    /// The file behind the mapping, shared by all mappings of the same file.
    pub object: Option<Arc<ObjectFile>>,
}

impl Mapping {
    pub fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }

    pub fn is_vdso(&self) -> bool {
        matches!(&self.backing, Backing::Pseudo(name) if name == "[vdso]")
    }

    /// Offset in the backing file of `addr` (meaningful for file mappings only).
    pub fn file_offset(&self, addr: u64) -> u64 {
        addr.wrapping_sub(self.start).wrapping_add(self.offset)
    }

    /// The path shown to people: the file path, or the pseudo name.
    pub fn display_name(&self) -> Option<&str> {
        match &self.backing {
            Backing::Anonymous => None,
            Backing::Pseudo(name) => Some(name),
            Backing::File { path, .. } => path.to_str(),
        }
    }
}

/// The parsed memory map of one process, sorted by address.
#[derive(Debug)]
pub struct ProcessMaps {
    pid: u32,
    mappings: Vec<Mapping>,
    vdso: OnceLock<Option<Arc<[u8]>>>,
    vdso_module: OnceLock<Arc<Module>>,
}

impl ProcessMaps {
    /// Reads and parses `/proc/PID/maps`. Malformed lines are skipped (and logged).
    pub fn load(pid: u32) -> Result<ProcessMaps, MapsError> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .map_err(|source| MapsError::Read { pid, source })?;
        Ok(Self::from_text(pid, &text))
    }

    /// Builds the maps from the text of a maps file; no file is touched until it is needed.
    pub fn from_text(pid: u32, text: &str) -> ProcessMaps {
        let mut objects: HashMap<(PathBuf, (u32, u32), u64), Arc<ObjectFile>> = HashMap::new();
        let mut mappings = Vec::new();
        for line in text.lines() {
            if line.trim().is_empty() {
                continue;
            }
            let mut mapping = match parse_line(line) {
                Ok(m) => m,
                Err(err) => {
                    log::warn!("pid {pid}: {err}");
                    continue;
                }
            };
            if let Backing::File { path, deleted } = &mapping.backing {
                let key = (path.clone(), mapping.dev, mapping.inode);
                let object = objects.entry(key).or_insert_with(|| {
                    Arc::new(ObjectFile::new(
                        path.clone(),
                        pid,
                        (mapping.start, mapping.end),
                        mapping.dev,
                        mapping.inode,
                        *deleted,
                    ))
                });
                mapping.object = Some(Arc::clone(object));
            }
            mappings.push(mapping);
        }
        mappings.sort_by_key(|m| m.start);
        ProcessMaps {
            pid,
            mappings,
            vdso: OnceLock::new(),
            vdso_module: OnceLock::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn mappings(&self) -> &[Mapping] {
        &self.mappings
    }

    /// The mapping containing `addr`.
    pub fn find(&self, addr: u64) -> Option<&Mapping> {
        let idx = self.mappings.partition_point(|m| m.start <= addr);
        let candidate = self.mappings.get(idx.checked_sub(1)?)?;
        candidate.contains(addr).then_some(candidate)
    }

    /// The bytes of the `[vdso]` image, copied from the process once (read-only access).
    pub fn vdso_image(&self) -> Option<Arc<[u8]>> {
        self.vdso
            .get_or_init(|| {
                let m = self.mappings.iter().find(|m| m.is_vdso())?;
                let len = usize::try_from(m.end - m.start).ok()?;
                read_process_memory(self.pid, m.start, len)
                    .ok()
                    .map(Arc::from)
            })
            .clone()
    }

    /// `addr` as (module, file offset), for addresses in file mappings and the vDSO; `None` for
    /// anonymous memory (JIT code) and addresses outside every mapping. `addr` is the address
    /// that is looked up: the pc, or a return address minus one.
    pub fn normalize(&self, addr: u64) -> Option<NormAddr> {
        let mapping = self.find(addr)?;
        let module = if mapping.is_vdso() {
            self.vdso_module()
        } else {
            mapping.object.as_ref()?.module()
        };
        Some(NormAddr {
            module,
            file_offset: mapping.file_offset(addr),
        })
    }

    /// The vDSO as a module: it is an ELF image with its own build id, identical in every
    /// process of one kernel.
    fn vdso_module(&self) -> Arc<Module> {
        Arc::clone(self.vdso_module.get_or_init(|| {
            let build_id = self.vdso_image().and_then(|image| {
                let obj = object::File::parse(&*image).ok()?;
                obj.build_id().ok().flatten().map(normaddr::hex)
            });
            Arc::new(Module {
                path: "[vdso]".to_string(),
                build_id,
            })
        }))
    }

    /// Opens every file behind an executable mapping now, while the process is alive, so that
    /// its stacks can still be symbolized after it exits.
    pub fn open_code_files(&self) {
        for m in self.mappings.iter().filter(|m| m.perms.exec) {
            if let Some(object) = &m.object {
                let _ = object.file();
            }
        }
    }
}

/// Parses one line of `/proc/PID/maps`.
pub fn parse_line(line: &str) -> Result<Mapping, ParseError> {
    let err = |reason| ParseError {
        line: line.to_string(),
        reason,
    };
    let mut rest = line;
    let mut field = || -> Option<&str> {
        let trimmed = rest.trim_start_matches(' ');
        let (f, r) = trimmed.split_once(' ').unwrap_or((trimmed, ""));
        rest = r;
        (!f.is_empty()).then_some(f)
    };
    let range = field().ok_or_else(|| err("no address range"))?;
    let perms = field().ok_or_else(|| err("no permissions"))?;
    let offset = field().ok_or_else(|| err("no offset"))?;
    let dev = field().ok_or_else(|| err("no device"))?;
    let inode = field().ok_or_else(|| err("no inode"))?;
    // The name is everything after the padding; it may contain spaces.
    let name = rest.trim_start_matches(' ');

    let (start, end) = range.split_once('-').ok_or_else(|| err("bad range"))?;
    let start = u64::from_str_radix(start, 16).map_err(|_| err("bad start"))?;
    let end = u64::from_str_radix(end, 16).map_err(|_| err("bad end"))?;
    if end < start {
        return Err(err("end before start"));
    }
    let perms = parse_perms(perms).ok_or_else(|| err("bad permissions"))?;
    let offset = u64::from_str_radix(offset, 16).map_err(|_| err("bad offset"))?;
    let (major, minor) = dev.split_once(':').ok_or_else(|| err("bad device"))?;
    let dev = (
        u32::from_str_radix(major, 16).map_err(|_| err("bad device"))?,
        u32::from_str_radix(minor, 16).map_err(|_| err("bad device"))?,
    );
    let inode = inode.parse::<u64>().map_err(|_| err("bad inode"))?;

    let backing = if name.trim().is_empty() {
        Backing::Anonymous
    } else if name.starts_with('/') {
        let unescaped = name.replace("\\012", "\n");
        let (path, deleted) = match unescaped.strip_suffix(" (deleted)") {
            Some(p) => (p.to_string(), true),
            None => (unescaped, false),
        };
        Backing::File {
            path: PathBuf::from(path),
            deleted,
        }
    } else {
        Backing::Pseudo(name.trim_end().to_string())
    };
    Ok(Mapping {
        start,
        end,
        perms,
        offset,
        dev,
        inode,
        backing,
        object: None,
    })
}

fn parse_perms(s: &str) -> Option<Perms> {
    let b = s.as_bytes();
    if b.len() != 4 {
        return None;
    }
    let flag = |i: usize, set: u8| match b[i] {
        c if c == set => Some(true),
        b'-' => Some(false),
        _ => None,
    };
    Some(Perms {
        read: flag(0, b'r')?,
        write: flag(1, b'w')?,
        exec: flag(2, b'x')?,
        shared: match b[3] {
            b's' => true,
            b'p' => false,
            _ => return None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::io::AsRawFd;

    const MAPS: &str = "\
55d0c8a00000-55d0c8a01000 r--p 00000000 fd:01 131090                     /usr/bin/bank app
55d0c8a01000-55d0c8a02000 r-xp 00001000 fd:01 131090                     /usr/bin/bank app
55d0c9b3e000-55d0c9b5f000 rw-p 00000000 00:00 0                          [heap]
7f3a1c000000-7f3a1c021000 rw-p 00000000 00:00 0 
7f3a1e228000-7f3a1e24e000 r--p 00000000 fd:01 1312                       /usr/lib/x86_64-linux-gnu/libc.so.6
7f3a1e24e000-7f3a1e3a3000 r-xp 00026000 fd:01 1312                       /usr/lib/x86_64-linux-gnu/libc.so.6
7f3a1e400000-7f3a1e401000 r-xp 00002000 00:1f 99                         /tmp/gone.so (deleted)
7f3a1e402000-7f3a1e403000 rw-s 00000000 00:05 7                          /memfd:shm (deleted)
7f3a1e500000-7f3a1e501000 rw-p 00000000 00:00 0                          [anon:glibc malloc]
7ffd5b7e1000-7ffd5b802000 rw-p 00000000 00:00 0                          [stack]
7ffd5b9d2000-7ffd5b9d6000 r--p 00000000 00:00 0                          [vvar]
7ffd5b9d6000-7ffd5b9d8000 r-xp 00000000 00:00 0                          [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";

    fn maps() -> ProcessMaps {
        ProcessMaps::from_text(42, MAPS)
    }

    #[test]
    fn parses_file_mapping_with_spaces() {
        let m = maps();
        let exe = m.find(0x55d0c8a01234).expect("exe mapping");
        assert_eq!(exe.start, 0x55d0c8a01000);
        assert_eq!(exe.end, 0x55d0c8a02000);
        assert_eq!(exe.offset, 0x1000);
        assert_eq!(exe.dev, (0xfd, 1));
        assert_eq!(exe.inode, 131090);
        assert!(exe.perms.read && exe.perms.exec && !exe.perms.write && !exe.perms.shared);
        assert_eq!(
            exe.backing,
            Backing::File {
                path: PathBuf::from("/usr/bin/bank app"),
                deleted: false
            }
        );
        assert_eq!(exe.file_offset(0x55d0c8a01234), 0x1234);
        let obj = exe.object.as_ref().expect("object");
        assert_eq!(obj.file_name(), "bank app");
    }

    #[test]
    fn mappings_of_one_file_share_the_object() {
        let m = maps();
        let a = m.find(0x7f3a1e228000).and_then(|m| m.object.clone());
        let b = m.find(0x7f3a1e300000).and_then(|m| m.object.clone());
        assert!(Arc::ptr_eq(&a.expect("a"), &b.expect("b")));
    }

    #[test]
    fn parses_pseudo_and_anonymous() {
        let m = maps();
        let anon = m.find(0x7f3a1c000010).expect("anon");
        assert_eq!(anon.backing, Backing::Anonymous);
        assert!(anon.object.is_none());
        assert_eq!(
            m.find(0x7ffd5b9d6100).map(|m| m.is_vdso()),
            Some(true),
            "vdso"
        );
        assert_eq!(
            m.find(0x7ffd5b7e1000).map(|m| m.backing.clone()),
            Some(Backing::Pseudo("[stack]".into()))
        );
        assert_eq!(
            m.find(0x7f3a1e500000).map(|m| m.backing.clone()),
            Some(Backing::Pseudo("[anon:glibc malloc]".into()))
        );
        assert_eq!(
            m.find(0xffffffffff600000).map(|m| m.perms.read),
            Some(false)
        );
    }

    #[test]
    fn parses_deleted_files() {
        let m = maps();
        let gone = m.find(0x7f3a1e400000).expect("deleted mapping");
        assert_eq!(
            gone.backing,
            Backing::File {
                path: PathBuf::from("/tmp/gone.so"),
                deleted: true
            }
        );
        assert!(gone.object.as_ref().is_some_and(|o| o.is_deleted()));
        let shm = m.find(0x7f3a1e402000).expect("memfd");
        assert!(shm.perms.shared);
    }

    #[test]
    fn find_outside_and_between_mappings() {
        let m = maps();
        assert!(m.find(0).is_none());
        assert!(m.find(0x55d0c8a02000).is_none(), "end is exclusive");
        assert!(m.find(0x7f3a1e401800).is_none(), "gap");
        assert!(m.find(u64::MAX).is_none());
        assert_eq!(m.mappings().len(), 13);
    }

    #[test]
    fn rejects_malformed_lines() {
        for bad in [
            "",
            "zzzz-1000 r-xp 00000000 fd:01 1 /x",
            "2000-1000 r-xp 00000000 fd:01 1 /x",
            "1000-2000 rwxq 00000000 fd:01 1 /x",
            "1000-2000 r-xp 0000000g fd:01 1 /x",
            "1000-2000 r-xp 00000000 fd01 1 /x",
            "1000-2000 r-xp 00000000 fd:01 x /x",
            "1000-2000 r-xp",
        ] {
            assert!(parse_line(bad).is_err(), "{bad:?}");
        }
        // Bad lines are skipped, good ones kept.
        let m = ProcessMaps::from_text(1, "garbage\n1000-2000 r-xp 00000000 00:00 0\n");
        assert_eq!(m.mappings().len(), 1);
    }

    #[test]
    fn unescapes_newlines_in_paths() {
        let m = parse_line("1000-2000 r-xp 00000000 fd:01 5 /tmp/a\\012b").expect("line");
        assert_eq!(
            m.backing,
            Backing::File {
                path: PathBuf::from("/tmp/a\nb"),
                deleted: false
            }
        );
    }

    #[test]
    fn loads_own_maps_and_build_id() {
        let m = ProcessMaps::load(std::process::id()).expect("own maps");
        let here = loads_own_maps_and_build_id as *const () as usize as u64;
        let mapping = m.find(here).expect("code mapping");
        assert!(mapping.perms.exec);
        let obj = mapping.object.as_ref().expect("test binary is a file");
        assert!(obj.file().is_some());
        assert!(obj.reopen_path().is_some());
        // Rust test binaries are linked with a build id by default on Linux.
        assert!(obj.build_id().is_some_and(|id| !id.is_empty()));
        assert!(m.vdso_image().is_some_and(|v| v.starts_with(b"\x7fELF")));
    }

    #[test]
    fn processes_share_open_files() {
        let here = processes_share_open_files as *const () as usize as u64;
        let a = ProcessMaps::load(std::process::id()).expect("maps");
        let b = ProcessMaps::load(std::process::id()).expect("maps");
        let fd = |m: &ProcessMaps| {
            m.find(here)
                .and_then(|m| m.object.as_ref())
                .and_then(|o| o.file())
                .map(|f| f.as_raw_fd())
        };
        assert!(fd(&a).is_some());
        assert_eq!(fd(&a), fd(&b));
    }

    #[test]
    fn opens_files_through_proc_root_for_other_namespaces() {
        let pid = std::process::id();
        let text = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
        let m = ProcessMaps::from_text(pid, &text);
        let here = opens_files_through_proc_root_for_other_namespaces as *const () as usize as u64;
        let obj = m.find(here).and_then(|m| m.object.clone()).expect("object");
        assert!(obj
            .candidates()
            .iter()
            .any(|p| p.starts_with(format!("/proc/{pid}/root/"))));
        assert!(!obj.candidates().contains(&obj.path().to_path_buf()));
        assert!(obj.file().is_some() && obj.reopen_path().is_some());
    }

    #[test]
    fn normalizes_addresses_to_file_offsets() {
        let m = maps();
        let exe = m.normalize(0x55d0c8a01234).expect("exe address");
        assert_eq!(exe.module.path, "/usr/bin/bank app");
        // Not a real file here: no build id, but the offset is still exact.
        assert_eq!(exe.module.build_id, None);
        assert_eq!(exe.file_offset, 0x1234);
        let libc = m.normalize(0x7f3a1e24e000 + 0x10).expect("libc address");
        assert_eq!(libc.module.path, "/usr/lib/x86_64-linux-gnu/libc.so.6");
        assert_eq!(libc.file_offset, 0x26010);
        // Both mappings of libc give the same module, built once.
        let first = m.normalize(0x7f3a1e228000).expect("libc r--");
        assert!(Arc::ptr_eq(&first.module, &libc.module));
        let gone = m.normalize(0x7f3a1e400010).expect("deleted file");
        assert_eq!(
            (gone.module.path.as_str(), gone.file_offset),
            ("/tmp/gone.so", 0x2010)
        );
        assert_eq!(
            m.normalize(0x7ffd5b9d6010)
                .map(|a| (a.module.path.clone(), a.file_offset)),
            Some(("[vdso]".to_string(), 0x10))
        );
        for unmapped in [0x7f3a1c000010, 0x7f3a1e401800, 0, u64::MAX] {
            assert!(m.normalize(unmapped).is_none(), "{unmapped:#x}");
        }
    }

    #[test]
    fn normalizes_own_code_with_build_id() {
        let m = ProcessMaps::load(std::process::id()).expect("own maps");
        let here = normalizes_own_code_with_build_id as *const () as usize as u64;
        let addr = m.normalize(here).expect("own code");
        let mapping = m.find(here).expect("mapping");
        assert_eq!(addr.file_offset, here - mapping.start + mapping.offset);
        let id = addr
            .module
            .build_id
            .clone()
            .expect("test binaries have a build id");
        assert!(
            id.len() >= 16 && id.chars().all(|c| c.is_ascii_hexdigit()),
            "{id}"
        );
        let exe = std::fs::read_link("/proc/self/exe").expect("exe");
        assert_eq!(addr.module.path, exe.to_string_lossy());
    }

    #[test]
    fn unknown_pid_is_an_error() {
        assert!(ProcessMaps::load(u32::MAX - 1).is_err());
    }
}
