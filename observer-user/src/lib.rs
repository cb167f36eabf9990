//! observer: an external stall observer for Linux processes (library side of the `observer` binary).
//!
//! The folders read as the pipeline (README "Architecture"; `tests/layout.rs` keeps the arrows
//! pointing one way): [`kernel`] (eBPF probes, the event ring) -> [`session`] (one observation
//! run: the watched processes' state, the only place that connects kernel, rules and outputs) ->
//! [`detect`] (the rules: observations in, findings out) -> [`stacks`] (frames named) ->
//! [`output`] (alerts, profiles, metrics) / [`terminal`] (live view). Below them: [`golang`] (Go
//! binaries and runtimes), [`proc`] (the processes as /proc shows them), [`util`] (leaves);
//! [`cli`] is the command line.
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
