//! The block framing shared by every format version:
//! `[u16 kind][u32 payload length][payload][u32 CRC-32 of kind+length+payload]`, little-endian.

use std::io::{Read, Write};

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
#[cfg(test)]
pub(super) fn read_blocks(
    bytes: &[u8],
    pos: usize,
    each: impl FnMut(usize, u16, &[u8]) -> Result<(), RecordingError>,
) -> Result<bool, RecordingError> {
    read_blocks_from(&mut bytes.get(pos..).unwrap_or_default(), pos, each)
}

/// Like [`read_blocks`], from a reader positioned at byte `pos` of the file: one block is held
/// in memory at a time (a recording of gigabytes is read in the memory of its largest block),
/// and a block's buffer grows only as its bytes actually arrive (a cut file whose last header
/// claims 256 MiB allocates what is there).
pub(super) fn read_blocks_from(
    input: &mut impl Read,
    mut pos: usize,
    mut each: impl FnMut(usize, u16, &[u8]) -> Result<(), RecordingError>,
) -> Result<bool, RecordingError> {
    let mut block = Vec::new();
    loop {
        let corrupt = |reason: &str| RecordingError::Corrupt {
            offset: pos,
            reason: reason.to_string(),
        };
        let mut head = [0u8; HEAD];
        match read_full(input, &mut head)? {
            0 => return Ok(false),
            HEAD => {}
            _ => return Ok(true),
        }
        let kind = u16::from_le_bytes([head[0], head[1]]);
        let len = u32::from_le_bytes([head[2], head[3], head[4], head[5]]);
        if len > MAX_PAYLOAD {
            return Err(corrupt("impossible block length"));
        }
        let want = len as usize + CRC;
        block.clear();
        input.by_ref().take(want as u64).read_to_end(&mut block)?;
        if block.len() < want {
            return Ok(true);
        }
        let (payload, crc_bytes) = block.split_at(len as usize);
        let mut crc = crc32fast::Hasher::new();
        crc.update(&head);
        crc.update(payload);
        let stored = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
        if crc.finalize() != stored {
            return Err(corrupt("checksum mismatch"));
        }
        each(pos, kind, payload)?;
        pos += HEAD + want;
        // A block's buffer is not kept at the size of the largest one seen.
        if block.capacity() > 1 << 20 {
            block = Vec::new();
        }
    }
}

/// Reads until `buf` is full or the input ends; returns how many bytes were read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
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
