//! Small helpers shared by every stage: human durations and how errors read at the binary's edge.
pub mod duration;
pub mod errors;
