//! What the holder of a contended lock did while others waited for it: the facts a
//! `lock_hold` alert reports about the holder's side of a long hold.
//!
//! Filled by the session from the kernel (the holder's own in-flight wait when it was
//! blocked, on-CPU samples when it ran); read by the hold-episode rule. Plain data, so the
//! rule runs without a kernel in unit tests.

use serde::Serialize;

use crate::stacks::frame::Frame;

/// The holder's state while the waiters waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HolderState {
    /// On CPU (or runnable): `stack` is where samples found it.
    Running,
    /// Itself blocked (off CPU) while holding the lock: `syscall` and `stack` say where.
    Blocked,
    /// It exited while holding the lock.
    Exited,
    /// Nothing was observed (not sampled in time, or no recorded owner to look at).
    Unknown,
}

/// The holder's side of one hold episode.
#[derive(Debug, Clone, PartialEq)]
pub struct HolderActivity {
    pub state: HolderState,
    /// The syscall it was blocked in (`Blocked` only), e.g. `read`.
    pub syscall: Option<String>,
    /// Where it was: the blocked wait's stack, or the most frequent sampled stack.
    pub stack: Vec<Frame>,
    /// How many on-CPU samples found it holding the lock (`Running`), 0 otherwise.
    pub samples: u32,
}

impl HolderActivity {
    pub fn unknown() -> Self {
        HolderActivity {
            state: HolderState::Unknown,
            syscall: None,
            stack: Vec::new(),
            samples: 0,
        }
    }
}
