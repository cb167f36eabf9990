//! Turning on goroutine-level observation for a Go process: read its binary, hand the runtime
//! layout to the kernel, and put the uprobes in place.

use std::path::PathBuf;

use observer_common::GoProcess;
use thiserror::Error;

use crate::{
    golang::{GoBinary, GoError},
    gowatch::GoWatch,
    probes::{GoAttachPoint, ProbeError, Probes},
};

#[derive(Debug, Error)]
pub enum GoAttachError {
    #[error(transparent)]
    Go(#[from] GoError),
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error("{path}: Go {version}: {reason}")]
    Unsupported {
        path: PathBuf,
        version: String,
        reason: String,
    },
}

/// Which program goes on which runtime functions.
const PROBES: [(&str, &[&str]); 5] = [
    ("go_park", &["runtime.gopark"]),
    // goready is inlined into its callers in recent Go; ready() is what they call.
    ("go_ready", &["runtime.ready"]),
    ("go_panic", &["runtime.gopanic"]),
    ("go_throw", &["runtime.throw", "runtime.fatal"]),
    ("go_recovery", &["runtime.recovery"]),
];

/// How long the leak rule looks back.
const LEAK_WINDOW_NS: u64 = 5_000_000_000;

/// A running Go program being watched at goroutine level, and what the user should know.
pub struct GoAttached {
    pub watch: GoWatch,
    pub summary: String,
    pub warnings: Vec<String>,
}

/// `Ok(None)` when `pid` is not a Go program.
pub fn attach(probes: &mut Probes, pid: u32) -> Result<Option<GoAttached>, GoAttachError> {
    let bin = match GoBinary::for_pid(pid) {
        Ok(b) => b,
        Err(GoError::NotGo { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let unsupported = |reason: &str| GoAttachError::Unsupported {
        path: bin.path().to_path_buf(),
        version: bin.version().raw.clone(),
        reason: reason.to_string(),
    };
    let off = bin
        .offsets()
        .ok_or_else(|| unsupported("runtime.g layout unknown (no DWARF, no table entry)"))?;
    let layout = GoProcess {
        goid_offset: off.g_goid,
        gopc_offset: off.g_gopc,
        m_offset: off.g_m,
        m_curg_offset: off.m_curg,
    };
    let mut points = Vec::new();
    let mut warnings = Vec::new();
    for (program, functions) in PROBES {
        for &function in functions {
            // After the stack-growth check: fires once even when the stack grows.
            match bin
                .entry_after_stack_check(function)
                .or_else(|| bin.func_offset(function))
            {
                Some(file_offset) => points.push(GoAttachPoint {
                    program,
                    function: function.to_string(),
                    file_offset,
                }),
                None => warnings.push(format!("{function} not found: its events are missing")),
            }
        }
    }
    let exe = PathBuf::from(format!("/proc/{pid}/exe"));
    warnings.extend(probes.watch_go(pid, &exe, layout, &points)?);
    let mut notes = vec![format!(
        "Go {} (offsets from {}, wait reasons from {})",
        bin.version().raw,
        bin.offsets_source(),
        bin.wait_reasons_source()
    )];
    if bin.is_stripped() {
        notes.push("stripped binary: function names from .gopclntab, no file:line".into());
    }
    Ok(Some(GoAttached {
        watch: GoWatch::new(pid, bin.wait_reasons().to_vec(), LEAK_WINDOW_NS),
        summary: notes.join("; "),
        warnings,
    }))
}
