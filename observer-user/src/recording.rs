//! The recording file: everything needed to analyse an incident later, elsewhere, after the
//! process (and even its binary) is gone.
//!
//! Layout: an 8-byte magic `OBSREC\r\n`, a little-endian `u16` format version, then framed
//! blocks `[u16 kind][u32 payload length][payload][u32 CRC-32 of kind+length+payload]`. Blocks
//! are appended and flushed as the observation goes (metadata first, then alerts as they
//! happen, then a profile snapshot every few seconds and at the end, then an end marker), so a
//! recording cut short by a killed observer stays readable up to its last whole block. Stacks
//! are stored already symbolized (function, file:line), resolved while the process was alive:
//! that is the symbol data a later report needs, and why it works after the binary is deleted.
//!
//! Readers never panic: a wrong magic, an unknown version, a bad checksum or a truncated block
//! is an error or, at the tail, a `truncated` flag.

use std::{
    fs::File,
    io::{self, BufWriter, Write},
    path::Path,
};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{alert::Alert, folded::TopStack};

pub const MAGIC: &[u8; 8] = b"OBSREC\r\n";
pub const VERSION: u16 = 1;
/// A payload larger than this is corrupt (a profile of 16k stacks is a few MiB).
const MAX_PAYLOAD: u32 = 256 * 1024 * 1024;

mod kind {
    pub const META: u16 = 1;
    pub const ALERT: u16 = 2;
    pub const PROFILE: u16 = 3;
    pub const END: u16 = 4;
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileSnapshot {
    pub elapsed_ns: u64,
    pub stacks: Vec<TopStack>,
    /// Drop counters at that time, so the report can say what was lost.
    pub events_dropped: u64,
    pub agg_dropped: u64,
}

#[derive(Debug, Error)]
pub enum RecordingError {
    #[error("not an observer recording (bad magic)")]
    BadMagic,
    #[error(
        "recording format version {0} is not supported (this observer reads version {VERSION})"
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
    pub meta: Option<Meta>,
    pub alerts: Vec<Alert>,
    pub profile: Option<ProfileSnapshot>,
    /// The writer was cut short: no end marker, or a partial last block.
    pub truncated: bool,
}

/// Appends blocks to a recording file, flushing each.
pub struct Recorder {
    out: BufWriter<File>,
}

impl Recorder {
    pub fn create(path: &Path, meta: &Meta) -> Result<Self, RecordingError> {
        let file = crate::sink::create_output(path)?;
        let mut out = BufWriter::new(file);
        out.write_all(MAGIC)?;
        out.write_all(&VERSION.to_le_bytes())?;
        let mut r = Self { out };
        r.block(kind::META, &json(meta))?;
        Ok(r)
    }

    pub fn alert(&mut self, alert: &Alert) -> Result<(), RecordingError> {
        self.block(kind::ALERT, alert.to_json_line().as_bytes())
    }

    pub fn profile(&mut self, snapshot: &ProfileSnapshot) -> Result<(), RecordingError> {
        self.block(kind::PROFILE, &json(snapshot))
    }

    pub fn finish(mut self) -> Result<(), RecordingError> {
        self.block(kind::END, &[])?;
        self.out.flush()?;
        Ok(())
    }

    fn block(&mut self, kind: u16, payload: &[u8]) -> Result<(), RecordingError> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|&l| l <= MAX_PAYLOAD)
            .ok_or_else(|| RecordingError::Corrupt {
                offset: 0,
                reason: format!("block of {} bytes is too large", payload.len()),
            })?;
        let mut head = [0u8; 6];
        head[..2].copy_from_slice(&kind.to_le_bytes());
        head[2..].copy_from_slice(&len.to_le_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(&head);
        crc.update(payload);
        self.out.write_all(&head)?;
        self.out.write_all(payload)?;
        self.out.write_all(&crc.finalize().to_le_bytes())?;
        self.out.flush()?;
        Ok(())
    }
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    // Plain data with string keys: serde_json cannot fail on it.
    serde_json::to_vec(v).unwrap_or_default()
}

impl Recording {
    pub fn read(path: &Path) -> Result<Recording, RecordingError> {
        Recording::parse(&std::fs::read(path)?)
    }

    /// Parses a whole recording. A partial last block (the writer was killed mid-write) ends
    /// the recording with `truncated` set; a damaged block before that is an error.
    pub fn parse(bytes: &[u8]) -> Result<Recording, RecordingError> {
        if bytes.len() < MAGIC.len() + 2 || &bytes[..MAGIC.len()] != MAGIC {
            return Err(RecordingError::BadMagic);
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version != VERSION {
            return Err(RecordingError::UnsupportedVersion(version));
        }
        let mut rec = Recording::default();
        let mut pos = MAGIC.len() + 2;
        let mut ended = false;
        while pos < bytes.len() {
            let corrupt = |reason: &str| RecordingError::Corrupt {
                offset: pos,
                reason: reason.to_string(),
            };
            let Some(head) = bytes.get(pos..pos + 6) else {
                rec.truncated = true;
                break;
            };
            let kind = u16::from_le_bytes([head[0], head[1]]);
            let len = u32::from_le_bytes([head[2], head[3], head[4], head[5]]);
            if len > MAX_PAYLOAD {
                return Err(corrupt("impossible block length"));
            }
            let end = pos + 6 + len as usize;
            let (Some(payload), Some(crc_bytes)) =
                (bytes.get(pos + 6..end), bytes.get(end..end + 4))
            else {
                rec.truncated = true;
                break;
            };
            let mut crc = crc32fast::Hasher::new();
            crc.update(head);
            crc.update(payload);
            let stored =
                u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
            if crc.finalize() != stored {
                return Err(corrupt("checksum mismatch"));
            }
            match kind {
                kind::META => {
                    rec.meta = Some(
                        serde_json::from_slice(payload)
                            .map_err(|e| corrupt(&format!("metadata: {e}")))?,
                    )
                }
                kind::ALERT => rec.alerts.push(
                    serde_json::from_slice(payload).map_err(|e| corrupt(&format!("alert: {e}")))?,
                ),
                kind::PROFILE => {
                    rec.profile = Some(
                        serde_json::from_slice(payload)
                            .map_err(|e| corrupt(&format!("profile: {e}")))?,
                    )
                }
                kind::END => ended = true,
                // Blocks of later minor additions are skipped, not fatal.
                _ => {}
            }
            pos = end + 4;
        }
        rec.truncated |= !ended;
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{AlertDetail, ProcessExit};

    fn meta() -> Meta {
        Meta {
            observer_version: "0.1.0".into(),
            pid: 42,
            process: "bank".into(),
            executable: Some("/usr/bin/bank".into()),
            build_id: Some("abcd".into()),
            started: "2026-11-26T20:00:00.000Z".into(),
            threshold_ns: 100_000_000,
            stall_after_ns: 5_000_000_000,
            kernel: "6.18".into(),
        }
    }

    fn alert() -> Alert {
        Alert {
            time: "2026-11-26T20:00:01.000Z".into(),
            pid: 42,
            tid: 42,
            comm: "bank".into(),
            stack: vec!["main (bank.c:3)".into()],
            detail: AlertDetail::ProcessExit(ProcessExit {
                exit_code: Some(1),
                signal: None,
                by_tid: 42,
                message: None,
            }),
        }
    }

    fn snapshot() -> ProfileSnapshot {
        ProfileSnapshot {
            elapsed_ns: 5,
            stacks: vec![TopStack {
                process: "bank".into(),
                thread: "worker".into(),
                frames: vec!["transfer (bank.c:14)".into()],
                weight_ns: 300,
                count: 2,
            }],
            events_dropped: 0,
            agg_dropped: 0,
        }
    }

    fn write_full(path: &Path) {
        let mut r = Recorder::create(path, &meta()).unwrap();
        r.alert(&alert()).unwrap();
        r.profile(&snapshot()).unwrap();
        r.finish().unwrap();
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.obsrec");
        write_full(&path);
        let rec = Recording::read(&path).unwrap();
        assert_eq!(rec.meta, Some(meta()));
        assert_eq!(rec.alerts, vec![alert()]);
        assert_eq!(rec.profile, Some(snapshot()));
        assert!(!rec.truncated);
    }

    #[test]
    fn every_truncation_is_readable_up_to_the_last_whole_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.obsrec");
        write_full(&path);
        let bytes = std::fs::read(&path).unwrap();
        for cut in 10..bytes.len() {
            let rec = Recording::parse(&bytes[..cut]).unwrap();
            assert!(rec.truncated, "cut at {cut}");
        }
        assert!(matches!(
            Recording::parse(&bytes[..5]),
            Err(RecordingError::BadMagic)
        ));
    }

    #[test]
    fn corruption_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.obsrec");
        write_full(&path);
        let bytes = std::fs::read(&path).unwrap();
        for i in 10..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= flip;
                // Any outcome but a panic is fine; a flipped payload byte must not be accepted.
                let _ = Recording::parse(&b);
            }
        }
        let mut b = bytes.clone();
        let mid = b.len() / 2;
        b[mid] ^= 0x55;
        assert!(Recording::parse(&b).is_err());
    }

    #[test]
    fn other_versions_are_refused() {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&7u16.to_le_bytes());
        assert!(matches!(
            Recording::parse(&b),
            Err(RecordingError::UnsupportedVersion(7))
        ));
    }
}
