//! Small helpers shared by every stage: the monotonic clock, durations and how errors read at
//! the binary's edge.
pub mod clock;
pub mod duration;
pub mod errors;
