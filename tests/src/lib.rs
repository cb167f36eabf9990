//! Helpers for the end-to-end tests in `tests/e2e_*.rs`.
//!
//! Those tests run the real, release-built `observer` binary (it loads eBPF programs, so they need
//! root) against small C and C++ programs from `targets/` (compiled here with gcc and g++), Go
//! programs from `goprogs/` and Rust ones from `rustprogs/`, and check the alerts it
//! writes. These helpers panic with a readable message instead of returning errors: a helper that
//! cannot do its job means the test has failed, and the message is what the developer reads.
//!
//! Every process a test starts is killed when its handle is dropped, also when the test panics,
//! so a failing test leaves nothing running behind.

mod alerts;
pub mod bpfmaps;
mod bpfprogs;
pub mod cgroups;
mod gotoolchain;
mod observer;
mod process;
mod rustprogs;
pub mod servers;
pub mod sidecar;
mod target;
mod workspace;

pub use alerts::{
    frame_index, frames, i64_field, parse_alerts, read_alerts, signal_is, stack_mentions,
    str_field, u64_field,
};
pub use bpfprogs::{bpf_prog_ids_of, bpf_prog_name};
pub use gotoolchain::{GoToolchain, GoVersion};
pub use observer::{observer_bin, Observer, ObserverCmd, ObserverRun};
pub use process::{printed_tid, require_root, unused_pid, wait_until};
pub use rustprogs::rust_locks;
pub use serde_json::Value;
pub use target::Target;
pub use workspace::{FramePointers, Workspace};

/// One millisecond in nanoseconds, for comparing `*_ns` fields.
pub const MS: u64 = 1_000_000;
