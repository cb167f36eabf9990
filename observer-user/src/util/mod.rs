//! Small helpers shared by every stage (leaves: nothing else of the crate): the monotonic clock,
//! the --config file,
//! human durations, numbers, how errors read at the binary's edge, stderr (the `say!` macro),
//! progress of long steps, and the facts about the admin's terminal.
pub mod clock;
pub mod config_file;
pub mod duration;
pub mod errors;
pub mod number;
pub mod progress;
pub mod stderr;
pub mod tty;
