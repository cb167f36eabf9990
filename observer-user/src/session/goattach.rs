//! Turning on goroutine-level observation for a Go process: read its binary, hand the runtime
//! layout to the kernel, and put the uprobes in place.

use std::path::{Path, PathBuf};

use observer_common::{GoKey, GoParked, GoProcess};
use thiserror::Error;

use crate::{
    detect::gowatch::{self, GoWatch, INITIAL_SAMPLE_PERIOD},
    golang::{goroutines, GoBinary, GoError},
    kernel::probes::{GoAttachPoint, ProbeError, Probes, GO_PROBES},
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

/// What the user reads when a binary's claimed Go version is contradicted and it has no
/// DWARF: goroutine probes would read `runtime.g` at the offsets of another version.
pub fn refusal(conflict: &str) -> String {
    format!(
        "{conflict}: goroutine probes refused (their runtime.g offsets would be guessed from a \
         version that may be fake); rebuild without stripping DWARF (no -ldflags=-w) to get them"
    )
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
    let off = bin.offsets().ok_or_else(|| match bin.version_conflict() {
        Some(conflict) => unsupported(&refusal(conflict)),
        None => unsupported("runtime.g layout unknown (no DWARF, no table entry)"),
    })?;
    let layout = GoProcess {
        goid_offset: off.g_goid,
        gopc_offset: off.g_gopc,
        m_offset: off.g_m,
        m_curg_offset: off.m_curg,
        sched_pc_offset: off.g_sched + off.gobuf_pc,
        sched_bp_offset: off.g_sched + off.gobuf_bp,
        sample_all_ns: gowatch::SAMPLE_ALL_NS,
        sample_period: INITIAL_SAMPLE_PERIOD,
        _pad: 0,
        parks: 0,
        labels_offset: bin.labels_layout().map_or(0, |l| l.g_labels),
    };
    let mut points = Vec::new();
    let mut warnings = Vec::new();
    for (program, functions) in GO_PROBES {
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
    probes.watch_go(pid, &bin.probe_path(), layout, &points)?;
    if seed {
        if let Err(e) = seed_parked(probes, pid, &bin) {
            warnings.push(format!("goroutines parked before attach are not seen: {e}"));
        }
    }
    let mut notes = vec![format!(
        "Go {} (offsets from {}, wait reasons from {}); profile stacks of short waits: all from \
         {} ms, about {} a second of the shorter ones",
        bin.version().raw,
        bin.offsets_source(),
        bin.wait_reasons_source(),
        gowatch::SAMPLE_ALL_NS / 1_000_000,
        gowatch::SAMPLES_PER_SEC
    )];
    if bin.is_stripped() {
        notes.push("stripped binary: frames named from .gopclntab".into());
    }
    let binary = std::sync::Arc::new(bin);
    let watch = GoWatch::new(pid, binary.wait_reasons().to_vec(), LEAK_WINDOW_NS)
        .with_binary(binary.clone());
    Ok(Some(GoAttached {
        binary,
        watch,
        summary: notes.join("; "),
        warnings,
    }))
}

/// Goroutines that parked before the probes were in place never pass `gopark` again until they
/// wake: read them from `runtime.allgs` and enter them as parked since now (their blocked
/// times are lower bounds). Their stacks are read like any parked goroutine's, from their `g`.
fn seed_parked(probes: &mut Probes, pid: u32, bin: &GoBinary) -> Result<(), GoAttachError> {
    let now = crate::util::clock::monotonic_ns();
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
            g: g.g_addr,
            reason: reason as u32,
            _pad: 0,
            lock: 0,
        };
        // Already there: the kernel saw it park since the dump, and knows better.
        let _ = probes.seed_go_parked(key, parked);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_quotes_the_conflict_on_one_line() {
        // The wording of golang/versioncheck.rs for a stripped binary whose claim is faked.
        let conflict = ".go.buildinfo says go1.19.8 but .gopclntab is in the format of Go 1.20";
        let message = refusal(conflict);
        assert!(
            message.starts_with(conflict)
                && message.contains("goroutine probes refused")
                && !message.contains('\n'),
            "{message}"
        );
    }
}
