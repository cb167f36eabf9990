//! Is the Go version in `.go.buildinfo` the one the binary was built with?
//!
//! Without DWARF, the offsets of `runtime.g` come from a table chosen by that version, and
//! the version is a string in a file the program's owner controls. A faked one would make
//! observer read goroutine ids, states and stacks at wrong offsets and report garbage, so it
//! is checked against what the toolchain wrote elsewhere and a rewrite of one string does not
//! change: the runtime's own copy (`runtime.buildVersion`) and the format of `.gopclntab`,
//! which changed with 1.16, 1.18 and 1.20.

use super::buildinfo::{pointed_string, GoVersion};
use super::elf::{le32, ElfImage};

/// `.gopclntab` magic numbers and the Go releases that write them.
const PCLNTAB_ERAS: [(u32, (u32, u32), &str); 4] = [
    (0xffff_fffb, (1, 2), "1.2-1.15"),
    (0xffff_fffa, (1, 16), "1.16-1.17"),
    (0xffff_fff0, (1, 18), "1.18-1.19"),
    (0xffff_fff1, (1, 20), "1.20 or later"),
];

/// Why the claimed version cannot be believed, or `None` when nothing contradicts it.
pub(crate) fn contradiction(elf: &ElfImage, claimed: &GoVersion) -> Option<String> {
    if let Some(runtime) = runtime_build_version(elf) {
        if (runtime.major, runtime.minor) != (claimed.major, claimed.minor) {
            return Some(format!(
                ".go.buildinfo says {claimed} but runtime.buildVersion says {runtime}"
            ));
        }
    }
    let magic = pclntab_magic(elf)?;
    let era = |v: &GoVersion| {
        PCLNTAB_ERAS
            .iter()
            .rev()
            .find(|(_, (major, minor), _)| v.at_least(*major, *minor))
    };
    let Some(written) = PCLNTAB_ERAS.iter().find(|(m, _, _)| *m == magic) else {
        return Some(format!("unknown .gopclntab magic {magic:#x}"));
    };
    match era(claimed) {
        Some(expected) if expected.0 == magic => None,
        _ => Some(format!(
            ".go.buildinfo says {claimed} but .gopclntab is in the format of Go {}",
            written.2
        )),
    }
}

/// The runtime's copy of the version (`runtime.buildVersion`, a Go string), when the symbol
/// table is there.
fn runtime_build_version(elf: &ElfImage) -> Option<GoVersion> {
    let sym = elf.symbols.get("runtime.buildVersion")?;
    GoVersion::parse(&pointed_string(elf, sym.addr)?)
}

fn pclntab_magic(elf: &ElfImage) -> Option<u32> {
    let section = [".gopclntab", ".data.rel.ro.gopclntab"]
        .iter()
        .find_map(|n| elf.section(n))
        .or_else(|| {
            let sym = elf.symbols.get("runtime.pclntab")?;
            elf.sections.iter().find(|s| s.contains(sym.addr))
        })?;
    let (offset, _) = section.file_range?;
    elf.read_at(offset, 4).ok().map(|b| le32(&b, 0))
}
