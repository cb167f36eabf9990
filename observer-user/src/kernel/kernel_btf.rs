//! Offsets of the few kernel struct fields the programs read, from the kernel's own BTF.
//!
//! The eBPF programs are built without CO-RE relocations (none from Rust), so the loader
//! finds each field in `/sys/kernel/btf/vmlinux` and passes its offset in as a global: the
//! layout of `task_struct` changes with every kernel version and configuration.

use std::path::Path;

use thiserror::Error;

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;

#[derive(Debug, Error)]
pub enum BtfError {
    #[error("reading {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error(
        "not BTF data (bad magic or header); is this kernel built with CONFIG_DEBUG_INFO_BTF?"
    )]
    Header,
    #[error("truncated or malformed BTF type section at type {0}")]
    Malformed(u32),
    #[error("kernel BTF has no field `{member}` in `struct {structure}`")]
    NoField {
        structure: &'static str,
        member: &'static str,
    },
}

/// Byte offsets in `struct task_struct` that the scheduler programs read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskOffsets {
    /// `task_struct.flags` (PF_EXITING: the thread is in do_exit).
    pub flags: u32,
    /// `task_struct.pending.signal`: the thread's own pending signals (SIGKILL is queued
    /// there for every thread of a dying process).
    pub pending_signal: u32,
}

impl TaskOffsets {
    pub fn from_sys_fs() -> Result<Self, BtfError> {
        Self::from_file(Path::new("/sys/kernel/btf/vmlinux"))
    }

    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data = std::fs::read(path).map_err(|error| BtfError::Read {
            path: path.display().to_string(),
            error,
        })?;
        Self::parse(&data)
    }

    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        let btf = Btf::parse(data)?;
        let field = |structure, member| {
            btf.member_offset(structure, member)?
                .ok_or(BtfError::NoField { structure, member })
        };
        Ok(Self {
            flags: field("task_struct", "flags")?,
            pending_signal: field("task_struct", "pending")? + field("sigpending", "signal")?,
        })
    }
}

/// Just enough of the BTF format (kernel Documentation/bpf/btf.rst) to find struct members.
struct Btf<'a> {
    types: &'a [u8],
    strings: &'a [u8],
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let bytes = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

impl<'a> Btf<'a> {
    fn parse(data: &'a [u8]) -> Result<Self, BtfError> {
        let magic = data.get(0..2).map(|m| u16::from_le_bytes([m[0], m[1]]));
        if magic != Some(BTF_MAGIC) {
            return Err(BtfError::Header);
        }
        let field = |at| u32_at(data, at).map(|v| v as usize).ok_or(BtfError::Header);
        let hdr_len = field(4)?;
        let (type_off, type_len) = (field(8)?, field(12)?);
        let (str_off, str_len) = (field(16)?, field(20)?);
        let section = |off: usize, len: usize| {
            let start = hdr_len.checked_add(off)?;
            data.get(start..start.checked_add(len)?)
        };
        Ok(Self {
            types: section(type_off, type_len).ok_or(BtfError::Header)?,
            strings: section(str_off, str_len).ok_or(BtfError::Header)?,
        })
    }

    fn name(&self, off: u32) -> &[u8] {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        &rest[..rest.iter().position(|&c| c == 0).unwrap_or(rest.len())]
    }

    /// Byte offset of `member` in the first struct named `structure`; `Ok(None)` when there
    /// is no such struct or member.
    fn member_offset(&self, structure: &str, member: &str) -> Result<Option<u32>, BtfError> {
        let mut at = 0usize;
        let mut id = 1u32;
        while at < self.types.len() {
            let bad = BtfError::Malformed(id);
            let name_off = u32_at(self.types, at).ok_or(BtfError::Malformed(id))?;
            let info = u32_at(self.types, at + 4).ok_or(bad)?;
            let (kind, vlen, kflag) = ((info >> 24) & 0x1f, info & 0xffff, info >> 31);
            let body = at + 12;
            if kind == KIND_STRUCT && self.name(name_off) == structure.as_bytes() {
                for i in 0..vlen as usize {
                    let m = body + i * 12;
                    let m_name = u32_at(self.types, m).ok_or(BtfError::Malformed(id))?;
                    let m_off = u32_at(self.types, m + 8).ok_or(BtfError::Malformed(id))?;
                    if self.name(m_name) == member.as_bytes() {
                        // With kind_flag set the low 24 bits are the bit offset.
                        let bits = if kflag == 1 { m_off & 0xff_ffff } else { m_off };
                        return Ok(Some(bits / 8));
                    }
                }
                return Ok(None);
            }
            at = body
                + match kind {
                    1 | 14 | 17 => 4, // int, var, decl_tag
                    3 => 12,          // array
                    KIND_STRUCT | KIND_UNION => 12 * vlen as usize,
                    6 | 13 => 8 * vlen as usize,   // enum, func_proto
                    15 | 19 => 12 * vlen as usize, // datasec, enum64
                    2 | 7..=12 | 16 | 18 => 0,
                    _ => return Err(BtfError::Malformed(id)),
                };
            id += 1;
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob with: int, struct sigpending { list_head-ish u64 list[2]; u64 signal; },
    /// and struct task_struct { u32 __state; u32 flags (bitfield-style, kflag); sigpending pending; }.
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0sigpending\0list\0signal\0task_struct\0__state\0flags\0pending\0";
        let s = |name: &str| {
            let needle = [b"\0", name.as_bytes(), b"\0"].concat();
            (strings
                .windows(needle.len())
                .position(|w| w == needle)
                .unwrap()
                + 1) as u32
        };
        let mut types = Vec::new();
        let mut push = |words: &[u32]| {
            for w in words {
                types.extend_from_slice(&w.to_le_bytes());
            }
        };
        // [1] int: size 8, encoding word
        push(&[s("int"), 1 << 24, 8, 64]);
        // [2] array of 2 ints: elem type, index type, nelems
        push(&[0, 3 << 24, 0, 1, 1, 2]);
        // [3] enum with one value (skipped correctly?)
        push(&[0, (6 << 24) | 1, 4, s("list"), 0]);
        // [4] struct sigpending, 2 members
        push(&[
            s("sigpending"),
            (4 << 24) | 2,
            24,
            s("list"),
            2,
            0,
            s("signal"),
            1,
            128,
        ]);
        // [5] struct task_struct with kind_flag: bitfield size in the high byte
        push(&[
            s("task_struct"),
            (1 << 31) | (4 << 24) | 3,
            64,
            s("__state"),
            1,
            0,
            s("flags"),
            1,
            (32 << 24) | 352,
            s("pending"),
            4,
            1536,
        ]);
        let mut out = Vec::new();
        out.extend_from_slice(&BTF_MAGIC.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        for w in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(&types);
        out.extend_from_slice(strings);
        out
    }

    #[test]
    fn finds_task_offsets_past_other_kinds() {
        let offsets = TaskOffsets::parse(&blob()).unwrap();
        assert_eq!(
            offsets,
            TaskOffsets {
                flags: 44,
                pending_signal: 192 + 16,
            }
        );
    }

    #[test]
    fn missing_field_and_garbage_are_errors_not_panics() {
        let mut b = blob();
        let at = b.windows(8).position(|w| w == b"\0pending").unwrap();
        b[at + 1] = b'x';
        assert!(matches!(
            TaskOffsets::parse(&b),
            Err(BtfError::NoField {
                member: "pending",
                ..
            })
        ));
        assert!(matches!(TaskOffsets::parse(b"nope"), Err(BtfError::Header)));
        let b = blob();
        for cut in 0..b.len() {
            let _ = TaskOffsets::parse(&b[..cut]);
        }
    }

    #[test]
    fn this_kernel_has_the_fields() {
        if !Path::new("/sys/kernel/btf/vmlinux").exists() {
            return;
        }
        let o = TaskOffsets::from_sys_fs().unwrap();
        assert!(o.flags > 0 && o.flags < o.pending_signal, "{o:?}");
    }
}
