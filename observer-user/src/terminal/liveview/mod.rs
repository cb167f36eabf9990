//! The live, top-style view of `watch` and `sidecar` on a terminal.
//!
//! [`LiveSnapshot`] is plain data the session fills every second (`model.rs`); [`render`] turns
//! it into a screen (`layout.rs`: pure, no terminal, testable); [`LiveTerminal`] owns the terminal
//! while the view is on (`screen.rs`): alternate screen, hidden cursor, flicker-free redraws, and
//! a guaranteed restore (drop, panic hook, or [`emergency_restore`] from a signal handler).
//!
//! Everything shown comes from the observed processes (thread names, symbol names, panic text),
//! so every piece of text is stripped of control characters before it reaches the terminal: a
//! thread named `"\x1b[2J"` must not be able to drive it.

mod layout;
mod model;
mod screen;
#[cfg(test)]
mod tests;

pub use layout::render;
pub use model::{Death, DeathKind, LiveCounters, LiveSnapshot, ProcessRow, StalledWaiter, Waiter};
pub use screen::{emergency_restore, LiveTerminal};
