//! The admin's terminal: the live view of `watch` and `sidecar`.
pub mod liveview;
