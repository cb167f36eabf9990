//! What the tests of long-running observers (sidecar, exports) share: a free port, a target
//! under a name of its own, the alerts written so far, whether observer still runs.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::{FramePointers, Observer, Workspace};

/// A port nobody listens on right now (the kernel picks it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("could not find a free port")
        .port()
}

/// `targets/<name>.c` built and copied under a name no other process on the host has, so that
/// `--comm ^NAME$` selects this one process. Returns the binary and its comm.
pub fn unique_target(ws: &Workspace, name: &str) -> (PathBuf, String) {
    let built = ws.build_target(name, FramePointers::Omit);
    // comm keeps 15 bytes: 6 of the name and the test process's pid fit.
    let comm = format!("{}{}", &name[..name.len().min(6)], std::process::id());
    let copy = ws.path(&comm);
    fs::copy(&built, &copy).expect("could not copy the target");
    (copy, comm)
}

/// Whether observer is still running (an exited child stays a zombie until the test reaps it).
pub fn running(observer: &Observer) -> bool {
    fs::read_to_string(format!("/proc/{}/stat", observer.pid()))
        .ok()
        .and_then(|stat| {
            let after = &stat[stat.rfind(')')? + 1..];
            after.split_whitespace().next().map(|state| state != "Z")
        })
        .unwrap_or(false)
}

/// The complete lines of an alerts file that observer may be writing to right now.
pub fn alerts_so_far(path: &Path) -> Vec<Value> {
    let text = fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}
