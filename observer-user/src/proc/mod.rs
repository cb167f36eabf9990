//! The observed processes as /proc shows them: pid checks, launching a command, memory maps,
//! binaries on disk, seeding already-blocked threads, and the scope filter.
pub mod binfile;
pub mod procinfo;
pub mod procmaps;
pub mod scope;
pub mod seed;
pub mod target;
