//! A stack frame as observer keeps it: the name people read, and where the code is in terms
//! that outlive the process, (module, file offset) ([`NormAddr`]).
//!
//! Inlining puts several functions at one machine address. A stack is kept flat (one [`Frame`]
//! per function, innermost first) because that is what people and folded stacks read; the
//! frames of one machine frame share one address, and all but the outermost of them are marked
//! `inlined`. [`machine_frames`] regroups them.

use std::sync::Arc;

use crate::proc::normaddr::{Module, NormAddr};

/// One function of a stack.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Frame {
    /// What people read, e.g. `worker_update (lock_hold.c:45)`, `libc.so.6+0x8b1a4`, `[futex]`.
    pub name: Arc<str>,
    /// `None` for frames that are not code: wait reasons, unknown addresses.
    pub addr: Option<NormAddr>,
    /// Inlined into the next (outer) frame, which has the same address.
    pub inlined: bool,
}

impl Frame {
    /// A function at file offset `file_offset` of `module`.
    pub fn at(name: &str, module: &Arc<Module>, file_offset: u64, inlined: bool) -> Frame {
        Frame {
            name: name.into(),
            addr: Some(NormAddr {
                module: Arc::clone(module),
                file_offset,
            }),
            inlined,
        }
    }

    /// A frame without an address (a wait reason, a name read back from an old recording).
    pub fn named(name: impl Into<Arc<str>>) -> Frame {
        Frame {
            name: name.into(),
            addr: None,
            inlined: false,
        }
    }
}

/// The names of `frames`, in order.
pub fn names(frames: &[Frame]) -> Vec<String> {
    frames.iter().map(|f| f.name.to_string()).collect()
}

/// Frames without addresses for already-symbolized `names`.
pub fn from_names(names: &[String]) -> Vec<Frame> {
    names.iter().map(|n| Frame::named(n.as_str())).collect()
}

/// The machine frames of a stack: runs of frames at one address, innermost function first in
/// each run. A run ends at a frame not marked `inlined`, at an address change (a stack cut
/// inside a run, or frames edited by hand), or at the end.
pub fn machine_frames(frames: &[Frame]) -> MachineFrames<'_> {
    MachineFrames { rest: frames }
}

pub struct MachineFrames<'a> {
    rest: &'a [Frame],
}

impl<'a> Iterator for MachineFrames<'a> {
    type Item = &'a [Frame];

    fn next(&mut self) -> Option<&'a [Frame]> {
        let first = self.rest.first()?;
        let mut len = 1;
        let mut prev = first;
        while let Some(next) = self.rest.get(len) {
            if !prev.inlined || prev.addr.is_none() || next.addr != prev.addr {
                break;
            }
            prev = next;
            len += 1;
        }
        let (run, rest) = self.rest.split_at(len);
        self.rest = rest;
        Some(run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(name: &str, module: &Arc<Module>, off: u64, inlined: bool) -> Frame {
        Frame::at(name, module, off, inlined)
    }

    #[test]
    fn groups_inlined_frames_by_address() {
        let m = Arc::new(Module {
            path: "/bin/app".into(),
            build_id: Some("ab".into()),
        });
        let stack = vec![
            Frame::named("[futex]"),
            at("inner", &m, 0x10, true),
            at("middle", &m, 0x10, true),
            at("outer", &m, 0x10, false),
            // Recursion: two machine frames at one address, not an inline chain.
            at("rec", &m, 0x20, false),
            at("rec", &m, 0x20, false),
            // Cut inside a run: the last run ends with the stack.
            at("cut", &m, 0x30, true),
        ];
        let runs: Vec<Vec<&str>> = machine_frames(&stack)
            .map(|r| r.iter().map(|f| &*f.name).collect())
            .collect();
        assert_eq!(
            runs,
            vec![
                vec!["[futex]"],
                vec!["inner", "middle", "outer"],
                vec!["rec"],
                vec!["rec"],
                vec!["cut"],
            ]
        );
        assert_eq!(machine_frames(&[]).count(), 0);
    }

    #[test]
    fn inlined_flag_without_same_address_does_not_merge() {
        let m = Arc::new(Module {
            path: "/bin/app".into(),
            build_id: None,
        });
        let mut odd = Frame::named("no address");
        odd.inlined = true;
        let stack = vec![
            odd,
            Frame::named("x"),
            at("a", &m, 1, true),
            at("b", &m, 2, false),
        ];
        assert_eq!(machine_frames(&stack).count(), 4);
    }

    #[test]
    fn names_round_trip() {
        let names_in = vec!["a".to_string(), "b (x.c:1)".to_string()];
        let frames = from_names(&names_in);
        assert!(frames.iter().all(|f| f.addr.is_none() && !f.inlined));
        assert_eq!(names(&frames), names_in);
    }
}
