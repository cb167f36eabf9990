//! Go executables and live Go processes, inspected from outside.
//!
//! [`GoBinary`] reads everything observer needs from the executable file: the Go version
//! (`.go.buildinfo`), the layout of `runtime.g` / `runtime.m` (DWARF, else a per-version table),
//! the wait-reason strings, function addresses and uprobe offsets (`.symtab`, else `.gopclntab`),
//! RET sites and the instruction after the stack-growth check (disassembly). [`dump`] reads the
//! goroutines of a running process with `process_vm_readv` only (never ptrace, never a write),
//! and [`render_debug2`] / [`render_debug1`] / [`render_json`] print them the way
//! `/debug/pprof/goroutine?debug=2` and `?debug=1` do.
//!
//! What degrades on a stripped binary (`-ldflags="-s -w"`): struct offsets come from a table
//! measured on real toolchains (1.19, 1.21-1.27; other versions borrow the nearest and say so);
//! the wait-reason array is found by a data scan, else a table; `runtime.allgs` is found by
//! disassembling `runtime.allgadd`. Function names, file:line and inlined frames come from
//! `.gopclntab`, which the Go linker never strips, so stacks stay fully named.

mod buildinfo;
mod disasm;
mod dwarf;
mod elf;
pub mod labels;
pub mod lockrefs;
mod moduledata;
mod offsets;
mod pclntab;
mod render;
mod versioncheck;
mod waitreasons;

pub mod binary;
pub mod goroutines;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use binary::{GoBinary, Source};
pub use buildinfo::GoVersion;
pub use goroutines::{dump, load_bias, GStatus, Goroutine};
pub use labels::{goroutine_labels, GoLabels, LabelsLayout};
pub use offsets::GOffsets;
pub use pclntab::{FuncInfo, GoFrame};
pub use render::{
    render_debug1, render_debug2, render_json, GoSymbolize, PclntabSymbolizer, RenderOptions,
};

/// Why a Go binary or process could not be inspected.
#[derive(Debug, thiserror::Error)]
pub enum GoError {
    /// The file has no Go build information: not a Go program (or not an ELF file at all).
    #[error("{} is not a Go program", path.display())]
    NotGo { path: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is a Go program but a structure in it could not be understood.
    #[error("{}: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
    /// Neither DWARF nor a table knows where this field is for this Go version.
    #[error("no offsets for {version}: the binary has no DWARF and no table entry matches")]
    NoOffsets { version: String },
    /// A symbol the operation needs is missing and could not be recovered otherwise.
    #[error("{name} not found in {}: {hint}", path.display())]
    MissingSymbol {
        path: PathBuf,
        name: String,
        hint: String,
    },
    #[error("cannot read memory of pid {pid} at {addr:#x}: {source}")]
    Memory {
        pid: u32,
        addr: u64,
        source: std::io::Error,
    },
    #[error(transparent)]
    Maps(#[from] crate::proc::procmaps::MapsError),
    /// The executable is not mapped in the process (wrong binary for this pid?).
    #[error("{} is not mapped in pid {pid}", path.display())]
    NotMapped { pid: u32, path: PathBuf },
    /// The process's goroutine list does not look like one (wrong binary or offsets).
    #[error("pid {pid}: implausible runtime.allgs ({reason})")]
    BadAllgs { pid: u32, reason: String },
    /// Goroutines are followed but the executable could not be opened at attach.
    #[error("pid {pid}: its Go executable was not opened: goroutines cannot be read")]
    NoBinary { pid: u32 },
}
