//! `runtime.firstmoduledata`, found without symbols, and the `go:func.*` base it records.
//!
//! Only needed when symbols are gone (stripped binaries), and for Go 1.26+, whose pclntab
//! header no longer records where the text starts.
//!
//! The moduledata starts with a pointer to the pclntab header followed by the `funcnametab`
//! slice, which points into the same table: two words nothing else in the data has.

use super::buildinfo::GoVersion;
use super::elf::ElfImage;

/// Where moduledata keeps `gofunc`, in words, by version (from `runtime/symtab.go`):
/// 32 words of tables and section bounds, [covctrs, ecovctrs] (1.20+), end, gcdata, gcbss,
/// types, [typedesclen] (1.27+), etypes, [itaboffset, itabsize] (1.27+), rodata, gofunc.
fn gofunc_word(version: &GoVersion) -> usize {
    if version.at_least(1, 27) {
        43
    } else if version.at_least(1, 20) {
        40
    } else {
        38
    }
}

/// Address of the module data: symbol, `.go.module` section (1.26+), else a scan.
pub(crate) fn find(elf: &ElfImage, pclntab: u64, funcnametab: u64) -> Option<u64> {
    let valid = |addr: u64| {
        elf.read_ptr(addr) == Some(pclntab) && elf.read_ptr(addr + 8) == Some(funcnametab)
    };
    if let Some(sym) = elf.symbols.get("runtime.firstmoduledata") {
        if valid(sym.addr) {
            return Some(sym.addr);
        }
    }
    for name in [".go.module", ".data.rel.ro.go.module"] {
        if let Some(section) = elf.section(name) {
            if valid(section.addr) {
                return Some(section.addr);
            }
        }
    }
    for section in elf.sections.iter().filter(|s| s.writable) {
        let Ok(bytes) = elf.section_bytes(section) else {
            continue;
        };
        let words = bytes.len() / 8;
        for i in 0..words.saturating_sub(1) {
            if elf.ptr_word(&bytes, section.addr, i) == pclntab
                && elf.ptr_word(&bytes, section.addr, i + 1) == funcnametab
            {
                return Some(section.addr + 8 * i as u64);
            }
        }
    }
    None
}

/// `moduledata.text`: the base of function entry offsets (word 22 in every version: after
/// pcHeader, six slices, findfunctab, minpc and maxpc).
pub(crate) fn text(elf: &ElfImage, addr: u64) -> Option<u64> {
    elf.read_ptr(addr + 8 * 22).filter(|&t| t != 0)
}

/// `go:func.*` from the moduledata at `addr`, if it points at file-backed data.
pub(crate) fn gofunc(elf: &ElfImage, addr: u64, version: &GoVersion) -> Option<u64> {
    let value = elf.read_ptr(addr + 8 * gofunc_word(version) as u64)?;
    elf.vaddr_to_offset(value).map(|_| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gofunc_word_by_version() {
        let v = |minor| GoVersion {
            major: 1,
            minor,
            patch: 0,
            raw: String::new(),
        };
        assert_eq!(gofunc_word(&v(19)), 38);
        assert_eq!(gofunc_word(&v(20)), 40);
        assert_eq!(gofunc_word(&v(26)), 40);
        assert_eq!(gofunc_word(&v(27)), 43);
    }
}
