//! Format version 1: profile stacks stored as symbolized names only (no addresses). Read for
//! recordings made by earlier observers.

use serde::{Deserialize, Serialize};

use super::ProfileSnapshot;
use crate::{
    output::profile::{Category, StackEntry, TopStack},
    stacks::frame,
};

/// The profile block of version 1, as it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ProfileV1 {
    pub elapsed_ns: u64,
    pub stacks: Vec<TopStack>,
    pub events_dropped: u64,
    pub agg_dropped: u64,
}

pub(super) fn decode_profile(payload: &[u8]) -> Result<ProfileSnapshot, String> {
    let p: ProfileV1 = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    Ok(ProfileSnapshot {
        elapsed_ns: p.elapsed_ns,
        stacks: p
            .stacks
            .into_iter()
            .map(|s| StackEntry {
                frames: frame::from_names(&s.frames),
                process: s.process,
                thread: s.thread,
                weight_ns: s.weight_ns,
                // Version 1 kept no category: every stack reads as blocked time.
                category: Category::Lock,
                count: s.count,
                container: Default::default(),
            })
            .collect(),
        events_dropped: p.events_dropped,
        agg_dropped: p.agg_dropped,
    })
}

/// The version 1 writer (observer 0.1 up to the address normalization), kept to produce
/// version 1 files in tests.
#[cfg(test)]
pub(super) fn write(
    path: &std::path::Path,
    meta: &super::Meta,
    alerts: &[crate::output::alert::Alert],
    profiles: &[ProfileV1],
) -> Result<(), super::RecordingError> {
    use super::{framing::write_block, kind, MAGIC};
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    out.write_all(MAGIC)?;
    out.write_all(&1u16.to_le_bytes())?;
    write_block(
        &mut out,
        kind::META,
        &serde_json::to_vec(meta).unwrap_or_default(),
    )?;
    for alert in alerts {
        write_block(&mut out, kind::ALERT, alert.to_json_line().as_bytes())?;
    }
    for p in profiles {
        write_block(
            &mut out,
            kind::PROFILE,
            &serde_json::to_vec(p).unwrap_or_default(),
        )?;
    }
    write_block(&mut out, kind::END, &[])?;
    out.flush()?;
    Ok(())
}
