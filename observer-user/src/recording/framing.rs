//! The block framing shared by every format version:
//! `[u16 kind][u32 payload length][payload][u32 CRC-32 of kind+length+payload]`, little-endian.

use std::io::Write;

use super::RecordingError;

/// A payload larger than this is corrupt (a profile of 16k stacks is a few MiB).
pub(super) const MAX_PAYLOAD: u32 = 256 * 1024 * 1024;

const HEAD: usize = 6;
const CRC: usize = 4;

/// Writes one framed block (not flushed).
pub(super) fn write_block(
    out: &mut impl Write,
    kind: u16,
    payload: &[u8],
) -> Result<(), RecordingError> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&l| l <= MAX_PAYLOAD)
        .ok_or_else(|| RecordingError::Corrupt {
            offset: 0,
            reason: format!("block of {} bytes is too large", payload.len()),
        })?;
    let mut head = [0u8; HEAD];
    head[..2].copy_from_slice(&kind.to_le_bytes());
    head[2..].copy_from_slice(&len.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head);
    crc.update(payload);
    out.write_all(&head)?;
    out.write_all(payload)?;
    out.write_all(&crc.finalize().to_le_bytes())?;
    Ok(())
}

/// Calls `each(offset, kind, payload)` for every whole block of `bytes` from `pos` on. Returns
/// whether the data ends inside a block (the writer was cut short); a block that is whole but
/// damaged is an error.
pub(super) fn read_blocks(
    bytes: &[u8],
    mut pos: usize,
    mut each: impl FnMut(usize, u16, &[u8]) -> Result<(), RecordingError>,
) -> Result<bool, RecordingError> {
    while pos < bytes.len() {
        let corrupt = |reason: &str| RecordingError::Corrupt {
            offset: pos,
            reason: reason.to_string(),
        };
        let Some(head) = bytes.get(pos..pos.saturating_add(HEAD)) else {
            return Ok(true);
        };
        let kind = u16::from_le_bytes([head[0], head[1]]);
        let len = u32::from_le_bytes([head[2], head[3], head[4], head[5]]);
        if len > MAX_PAYLOAD {
            return Err(corrupt("impossible block length"));
        }
        let start = pos + HEAD;
        let end = start + len as usize;
        let (Some(payload), Some(crc_bytes)) = (bytes.get(start..end), bytes.get(end..end + CRC))
        else {
            return Ok(true);
        };
        let mut crc = crc32fast::Hasher::new();
        crc.update(head);
        crc.update(payload);
        let stored = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
        if crc.finalize() != stored {
            return Err(corrupt("checksum mismatch"));
        }
        each(pos, kind, payload)?;
        pos = end + CRC;
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_and_cuts_are_truncation() {
        let mut buf = Vec::new();
        write_block(&mut buf, 7, b"hello").unwrap();
        write_block(&mut buf, 9, b"").unwrap();
        let mut seen = Vec::new();
        let cut = read_blocks(&buf, 0, |off, kind, p| {
            seen.push((off, kind, p.to_vec()));
            Ok(())
        })
        .unwrap();
        assert!(!cut);
        assert_eq!(seen, vec![(0, 7, b"hello".to_vec()), (15, 9, vec![])]);
        for len in 1..buf.len() {
            let mut n = 0;
            let cut = read_blocks(&buf[..len], 0, |_, _, _| {
                n += 1;
                Ok(())
            })
            .unwrap();
            // At 15 the first block is whole: the framing sees no cut (the missing end marker
            // tells the reader).
            assert_eq!(cut, len != 15, "cut at {len}");
            assert_eq!(n, usize::from(len >= 15));
        }
    }

    #[test]
    fn damage_is_an_error() {
        let mut buf = Vec::new();
        write_block(&mut buf, 7, b"hello").unwrap();
        buf[8] ^= 1;
        let err = read_blocks(&buf, 0, |_, _, _| Ok(())).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        let mut huge = vec![1, 0];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        let err = read_blocks(&huge, 0, |_, _, _| Ok(())).unwrap_err();
        assert!(err.to_string().contains("length"), "{err}");
    }
}
