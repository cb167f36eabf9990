//! Stall detectors fed by the session: the wait graph (deadlocks), thread exits, Go goroutine
//! leaks and watches, and process exits.
pub mod goleak;
pub mod gowatch;
pub mod lockwait;
pub mod procexit;
pub mod stall;
pub mod thread_exits;
pub mod waitgraph;
