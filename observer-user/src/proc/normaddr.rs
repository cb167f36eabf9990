//! Where code is in terms that outlive the process: (module, file offset).
//!
//! A process address means nothing once the process is gone (ASLR, other hosts); the offset
//! into an ELF file identified by its build id means the same thing everywhere, so it is what
//! recordings and pprof profiles carry, next to the names resolved while the file was at hand.

use std::sync::Arc;

/// A code file mapped into a process: an executable, a shared library, or the vDSO.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Module {
    /// The path as the target process saw it (`[vdso]` for the vDSO).
    pub path: String,
    /// GNU build id in lowercase hex; `None` when the file has none or could not be read.
    pub build_id: Option<String>,
}

/// A code address normalized to its module.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NormAddr {
    pub module: Arc<Module>,
    /// Offset in the module's file of the instruction that was looked up: the pc itself for
    /// the innermost frame, the return address minus one (inside the call instruction) for its
    /// callers, so that the offset alone names the right function and line.
    pub file_offset: u64,
}

/// Lowercase hex of a build id.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_ids_in_lowercase_hex() {
        assert_eq!(hex(&[0x00, 0xab, 0x0f]), "00ab0f");
        assert_eq!(hex(&[]), "");
    }
}
