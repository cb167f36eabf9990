//! Turning on goroutine-level observation for a Go process: read its binary, hand the runtime
//! layout to the kernel, and put the uprobes in place.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use observer_common::{GoKey, GoParked, GoProcess};
use thiserror::Error;

use crate::{
    golang::{goroutines, GoBinary, GoError},
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
    /// The binary, for naming frames of stripped executables from `.gopclntab`.
    pub binary: std::sync::Arc<GoBinary>,
    pub summary: String,
    pub warnings: Vec<String>,
}

/// `Ok(None)` when `exe` is not a Go program. `exe` may be a program about to be exec'ed by
/// `pid` (`observer run`): uprobes placed on the file follow the process through exec, so the
/// first goroutines are seen too. With `seed`, goroutines already parked (`observer watch`)
/// are read from the process and entered as parked since now.
pub fn attach(
    probes: &mut Probes,
    pid: u32,
    exe: &Path,
    seed: bool,
) -> Result<Option<GoAttached>, GoAttachError> {
    let bin = match GoBinary::open(exe) {
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
            // After the stack-growth check (fires once even when the stack grows) and the
            // frame setup (the stack names the direct caller).
            match bin
                .entry_after_frame_setup(function)
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
    warnings.extend(probes.watch_go(pid, exe, layout, &points)?);
    let mut seeded = HashMap::new();
    if seed {
        match seed_parked(probes, pid, &bin) {
            Ok(s) => seeded = s,
            Err(e) => warnings.push(format!("goroutines parked before attach are not seen: {e}")),
        }
    }
    let mut notes = vec![format!(
        "Go {} (offsets from {}, wait reasons from {})",
        bin.version().raw,
        bin.offsets_source(),
        bin.wait_reasons_source()
    )];
    if bin.is_stripped() {
        notes.push("stripped binary: frames named from .gopclntab".into());
    }
    let watch = GoWatch::new(pid, bin.wait_reasons().to_vec(), LEAK_WINDOW_NS).with_seeded(seeded);
    Ok(Some(GoAttached {
        binary: std::sync::Arc::new(bin),
        watch,
        summary: notes.join("; "),
        warnings,
    }))
}

/// Goroutines that parked before the probes were in place never pass `gopark` again until they
/// wake: read them from `runtime.allgs` and enter them as parked since now (their blocked
/// times are lower bounds). Returns their stacks, which the kernel has no stack id for.
fn seed_parked(
    probes: &mut Probes,
    pid: u32,
    bin: &GoBinary,
) -> Result<HashMap<u64, Vec<u64>>, GoAttachError> {
    let now = crate::session::monotonic_ns();
    let mut stacks = HashMap::new();
    for g in goroutines::dump(pid, bin)? {
        if g.status != goroutines::GStatus::Waiting {
            continue;
        }
        let Some(reason) = g
            .wait_reason
            .as_deref()
            .and_then(|r| bin.wait_reasons().iter().position(|s| s == r))
        else {
            continue;
        };
        let key = GoKey {
            tgid: pid,
            _pad: 0,
            goid: g.goid,
        };
        let parked = GoParked {
            start_ns: now,
            gopc: g.created_by_pc,
            reason: reason as u32,
            stack_id: -1,
        };
        if probes.seed_go_parked(key, parked).is_ok() {
            stacks.insert(g.goid, g.pcs);
        }
    }
    Ok(stacks)
}
