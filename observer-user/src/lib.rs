//! observer: an external stall observer for Linux processes (library side of the `observer` binary).
//!
//! The folders read as the pipeline:
//! [`kernel`] (eBPF probes, ring-buffer records) -> [`proc`] (the target processes as /proc shows
//! them) -> [`session`] (one observation run) -> [`detect`] (stall, deadlock and leak detectors) ->
//! [`stacks`] (unwinding, symbolization) -> [`output`] (alerts, files, reports) / [`terminal`] (live
//! view). [`golang`] models Go binaries and runtimes; [`util`] holds shared helpers and
//! [`cli`] the command line.
// Tests report to the test harness's stderr; observer itself goes through `say!` (clippy.toml).
#![cfg_attr(test, allow(clippy::disallowed_macros))]
pub mod cli;
pub mod detect;
pub mod golang;
pub mod kernel;
pub mod output;
pub mod proc;
pub mod session;
pub mod stacks;
pub mod terminal;
pub mod util;
