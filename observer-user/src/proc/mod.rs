//! The observed processes as /proc shows them: pid checks, launching a command, memory maps
//! and the files behind them (with their separate debug files), reading their memory, binaries
//! on disk and the bounded decompression of their sections, seeding already-blocked threads,
//! the scope filter, and the container or pod a process runs in.
pub mod binfile;
pub mod container;
pub mod debugfile;
pub mod inflate;
pub mod memory;
pub mod normaddr;
pub mod objectfile;
pub mod procinfo;
pub mod procmaps;
pub mod scope;
pub mod seed;
pub mod target;
