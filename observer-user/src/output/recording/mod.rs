//! The recording file: everything needed to analyse an incident later, elsewhere, after the
//! process (and even its binary) is gone.
//!
//! Layout: an 8-byte magic `OBSREC\r\n`, a little-endian `u16` format version, then framed
//! blocks `[u16 kind][u32 payload length][payload][u32 CRC-32 of kind+length+payload]`. Blocks
//! are appended and flushed as the observation goes (metadata first, then alerts as they
//! happen, then a profile snapshot every few seconds and at the end, then an end marker), so a
//! recording cut short by a killed observer stays readable up to its last whole block.
//!
//! Version 2 (written now) stores profile stacks as code addresses normalized to (module,
//! file offset), with a module table (path, build id) and a symbol table naming each address
//! (its inline chain), resolved while the process was alive: that is the symbol data a later
//! report needs, and why it works after the binary is deleted (see [`v2`]). Version 1 stored
//! names only; it is still read. An alert is its JSON line (as `--alerts` writes it, names
//! only), followed in version 2 by a block with the normalized frames behind its stacks.
//!
//! Readers never panic: a wrong magic, an unknown version, a bad checksum, a dangling table
//! reference or a truncated block is an error or, at the tail, a `truncated` flag.

mod framing;
mod v1;
mod v2;

use std::{
    fs::File,
    io::{self, BufWriter, Write},
    path::Path,
};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{output::alert::Alert, output::profile::StackEntry};

pub const MAGIC: &[u8; 8] = b"OBSREC\r\n";
/// The version written.
pub const VERSION: u16 = 2;

mod kind {
    pub const META: u16 = 1;
    pub const ALERT: u16 = 2;
    pub const PROFILE: u16 = 3;
    pub const END: u16 = 4;
    /// The normalized frames behind the alert before it (added within version 2: readers
    /// that predate it skip it, as they skip every kind they do not know).
    pub const ALERT_FRAMES: u16 = 5;
}

/// What was observed, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub observer_version: String,
    pub pid: u32,
    pub process: String,
    pub executable: Option<String>,
    pub build_id: Option<String>,
    /// RFC 3339.
    pub started: String,
    pub threshold_ns: u64,
    pub stall_after_ns: u64,
    pub kernel: String,
}

/// A profile snapshot (the last one in a file is the complete one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileSnapshot {
    pub elapsed_ns: u64,
    /// Frames with their normalized addresses (none when read from a version 1 file).
    pub stacks: Vec<StackEntry>,
    /// Drop counters at that time, so the report can say what was lost.
    pub events_dropped: u64,
    pub agg_dropped: u64,
}

#[derive(Debug, Error)]
pub enum RecordingError {
    #[error("not an observer recording (bad magic)")]
    BadMagic,
    #[error(
        "recording format version {0} is not supported (this observer reads versions 1 to {VERSION})"
    )]
    UnsupportedVersion(u16),
    #[error("corrupt recording: block at byte {offset}: {reason}")]
    Corrupt { offset: usize, reason: String },
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A recording read back.
#[derive(Debug, Default)]
pub struct Recording {
    /// The format version of the file.
    pub version: u16,
    pub meta: Option<Meta>,
    pub alerts: Vec<Alert>,
    pub profile: Option<ProfileSnapshot>,
    /// The writer was cut short: no end marker, or a partial last block.
    pub truncated: bool,
}

/// Appends blocks to a recording file, flushing each.
pub struct Recorder {
    out: BufWriter<File>,
    /// Alerts written so far (the index of the next one).
    alerts: usize,
    /// The first write that failed (a full disk): returned once, then by `finish`, so that a
    /// failing recording is reported without repeating it at every alert.
    failed: Option<String>,
}

impl Recorder {
    pub fn create(path: &Path, meta: &Meta) -> Result<Self, RecordingError> {
        let file = crate::output::output_file::create(path)?;
        let mut out = BufWriter::new(file);
        out.write_all(MAGIC)?;
        out.write_all(&VERSION.to_le_bytes())?;
        let mut r = Self {
            out,
            alerts: 0,
            failed: None,
        };
        r.block(kind::META, &json(meta))?;
        Ok(r)
    }

    /// The alert's JSON line, then the normalized frames behind its stacks (when it has any).
    pub fn alert(&mut self, alert: &Alert) -> Result<(), RecordingError> {
        let index = self.alerts;
        self.block(kind::ALERT, alert.to_json_line().as_bytes())?;
        self.alerts += 1;
        if !alert.frames.is_empty() {
            self.block(
                kind::ALERT_FRAMES,
                &v2::encode_alert_frames(index, &alert.frames),
            )?;
        }
        Ok(())
    }

    pub fn profile(&mut self, snapshot: &ProfileSnapshot) -> Result<(), RecordingError> {
        self.block(kind::PROFILE, &v2::encode_profile(snapshot))
    }

    pub fn finish(mut self) -> Result<(), RecordingError> {
        let _ = self.block(kind::END, &[]);
        match self.failed.take() {
            Some(e) => Err(RecordingError::Io(io::Error::other(e))),
            None => Ok(()),
        }
    }

    fn block(&mut self, kind: u16, payload: &[u8]) -> Result<(), RecordingError> {
        let written = framing::write_block(&mut self.out, kind, payload)
            .and_then(|()| self.out.flush().map_err(RecordingError::from));
        match written {
            Err(e) if self.failed.is_none() => {
                self.failed = Some(e.to_string());
                Err(e)
            }
            _ => Ok(()),
        }
    }
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    // Plain data with string keys: serde_json cannot fail on it.
    serde_json::to_vec(v).unwrap_or_default()
}

impl Recording {
    /// Reads the recording at `path`, streamed: memory holds what is decoded, not the file.
    pub fn read(path: &Path) -> Result<Recording, RecordingError> {
        let file = File::open(path)?;
        Recording::read_from(&mut std::io::BufReader::with_capacity(1 << 16, file))
    }

    /// Parses a whole recording held in memory (the same reader as [`Recording::read`]).
    pub fn parse(bytes: &[u8]) -> Result<Recording, RecordingError> {
        Recording::read_from(&mut &bytes[..])
    }

    /// Reads a recording. A partial last block (the writer was killed mid-write) ends the
    /// recording with `truncated` set; a damaged block before that is an error.
    pub fn read_from(input: &mut impl std::io::Read) -> Result<Recording, RecordingError> {
        let mut start = [0u8; MAGIC.len() + 2];
        let mut got = 0;
        while got < start.len() {
            match input.read(&mut start[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        if got < start.len() || &start[..MAGIC.len()] != MAGIC {
            return Err(RecordingError::BadMagic);
        }
        let version = u16::from_le_bytes([start[8], start[9]]);
        if !(1..=VERSION).contains(&version) {
            return Err(RecordingError::UnsupportedVersion(version));
        }
        let mut rec = Recording {
            version,
            ..Recording::default()
        };
        let mut ended = false;
        let cut = framing::read_blocks_from(input, MAGIC.len() + 2, |offset, kind, payload| {
            let corrupt = |reason: String| RecordingError::Corrupt { offset, reason };
            match kind {
                kind::META => {
                    rec.meta = Some(
                        serde_json::from_slice(payload)
                            .map_err(|e| corrupt(format!("metadata: {e}")))?,
                    )
                }
                kind::ALERT => rec.alerts.push(
                    serde_json::from_slice(payload).map_err(|e| corrupt(format!("alert: {e}")))?,
                ),
                kind::PROFILE => {
                    let profile = match version {
                        1 => v1::decode_profile(payload),
                        _ => v2::decode_profile(payload),
                    };
                    rec.profile = Some(profile.map_err(|e| corrupt(format!("profile: {e}")))?);
                }
                kind::ALERT_FRAMES => {
                    let (index, frames) = v2::decode_alert_frames(payload)
                        .map_err(|e| corrupt(format!("alert frames: {e}")))?;
                    let before = rec.alerts.len();
                    let alert = rec.alerts.get_mut(index).ok_or_else(|| {
                        corrupt(format!(
                            "alert frames for alert {index}, but the file has {before} alerts before them"
                        ))
                    })?;
                    alert.frames = frames;
                }
                kind::END => ended = true,
                // Blocks of later minor additions are skipped, not fatal.
                _ => {}
            }
            Ok(())
        })?;
        rec.truncated = cut || !ended;
        Ok(rec)
    }
}

#[cfg(test)]
mod tests;
