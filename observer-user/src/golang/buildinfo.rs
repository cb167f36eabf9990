//! The Go version from `.go.buildinfo` (format of Go's `debug/buildinfo`). Stripping does
//! not remove it; if even the section name is gone, the header is searched for as Go does.

use std::fmt;

use super::elf::{le64, ElfImage};

const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
const HEADER_LEN: usize = 32;
/// Flag bit 2 (Go 1.18+): strings are inline, varint-length-prefixed, after the header.
const FLAG_INLINE_STRINGS: u8 = 2;
const FLAG_BIG_ENDIAN: u8 = 1;
/// Where Go's reader looks for the header when the section name is gone.
const SCAN_LIMIT: u64 = 64 * 1024;

/// A Go release, e.g. `go1.21.5`; `raw` is the string exactly as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GoVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    pub raw: String,
}

impl GoVersion {
    /// Parses `go1.21.5`, `go1.22rc1`, `go1.20 X:boringcrypto`, `devel go1.23-abc +...`.
    pub fn parse(raw: &str) -> Option<GoVersion> {
        let start = raw.find("go1.")?;
        let rest = &raw[start + 2..];
        let mut nums = [0u32; 3];
        let mut count = 0;
        for part in rest.splitn(3, '.') {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            let Ok(n) = digits.parse() else { break };
            nums[count] = n;
            count += 1;
            if digits.len() != part.len() {
                break; // "22rc1": the suffix ends the number
            }
        }
        (count >= 2).then(|| GoVersion {
            major: nums[0],
            minor: nums[1],
            patch: nums[2],
            raw: raw.to_string(),
        })
    }

    /// Whether this is at least `major.minor`.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

impl fmt::Display for GoVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// The raw version string, or `None` when the file carries no Go build information.
pub(crate) fn read_version(elf: &ElfImage) -> Option<String> {
    let header_at = match elf.section(".go.buildinfo") {
        Some(section) => section.file_range.map(|(off, _)| off)?,
        None => scan_for_header(elf)?,
    };
    let header = elf.read_at(header_at, 64).ok()?;
    if !header.starts_with(MAGIC) {
        return None;
    }
    let ptr_size = header[14];
    let flags = header[15];
    if flags & FLAG_INLINE_STRINGS != 0 {
        let tail = elf
            .read_at(header_at + HEADER_LEN as u64, 512)
            .ok()
            .or_else(|| {
                // A buildinfo at the very end of the file: read what is there.
                elf.read_at(header_at + HEADER_LEN as u64, 64).ok()
            })?;
        return inline_string(&tail);
    }
    // Before 1.18: two pointers to Go string headers {ptr, len} (version, modinfo).
    if ptr_size != 8 || flags & FLAG_BIG_ENDIAN != 0 {
        return None;
    }
    let string_header = elf.read_ptr(le64(&header, 16))?;
    pointed_string(elf, string_header)
}

/// A varint length followed by that many bytes.
pub(crate) fn inline_string(bytes: &[u8]) -> Option<String> {
    let (len, used) = uvarint(bytes)?;
    let len = usize::try_from(len).ok()?;
    let body = bytes.get(used..used.checked_add(len)?)?;
    String::from_utf8(body.to_vec()).ok()
}

/// The Go string whose header `{ptr, len}` is at `header_vaddr`.
pub(crate) fn pointed_string(elf: &ElfImage, header_vaddr: u64) -> Option<String> {
    let data = elf.read_ptr(header_vaddr)?;
    let len = elf.read_vaddr(header_vaddr + 8, 8).map(|b| le64(&b, 0))?;
    if len == 0 || len > 256 {
        return None;
    }
    String::from_utf8(elf.read_vaddr(data, len)?).ok()
}

/// Go's fallback: the header sits 16-byte aligned near the start of a data segment.
fn scan_for_header(elf: &ElfImage) -> Option<u64> {
    for seg in &elf.segments {
        let len = seg.filesz.min(SCAN_LIMIT);
        let Ok(bytes) = elf.read_at(seg.offset, len) else {
            continue;
        };
        let found = (0..bytes.len())
            .step_by(16)
            .find(|&i| bytes[i..].starts_with(MAGIC));
        if let Some(i) = found {
            return Some(seg.offset + i as u64);
        }
    }
    None
}

/// Go's `binary.Uvarint`: value and bytes consumed.
pub(crate) fn uvarint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_version_strings() {
        let v = GoVersion::parse("go1.21.5").unwrap();
        assert_eq!((v.major, v.minor, v.patch), (1, 21, 5));
        let v = GoVersion::parse("go1.22rc1").unwrap();
        assert_eq!((v.major, v.minor, v.patch), (1, 22, 0));
        let v = GoVersion::parse("go1.20 X:boringcrypto").unwrap();
        assert_eq!((v.major, v.minor, v.patch), (1, 20, 0));
        let v = GoVersion::parse("devel go1.23-abcdef Tue Jan 1").unwrap();
        assert_eq!((v.minor, v.patch), (23, 0));
        assert!(v.at_least(1, 23) && !v.at_least(1, 24) && v.at_least(1, 9));
        assert_eq!(v.to_string(), "devel go1.23-abcdef Tue Jan 1");
        assert!(GoVersion::parse("rust 1.2").is_none());
        assert!(GoVersion::parse("go1.").is_none());
    }

    #[test]
    fn reads_inline_strings() {
        let mut b = vec![8u8];
        b.extend_from_slice(b"go1.27.3rest");
        assert_eq!(inline_string(&b).as_deref(), Some("go1.27.3"));
        assert_eq!(inline_string(&[9, b'g']), None);
        assert_eq!(inline_string(&[0x80]), None);
        assert_eq!(uvarint(&[0xac, 0x02]), Some((300, 2)));
    }
}
