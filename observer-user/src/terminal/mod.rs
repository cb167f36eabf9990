//! The admin's terminal: the live view, progress lines, and stderr (the `say!` macro).
pub mod liveview;
pub mod progress;
pub mod stderr;
