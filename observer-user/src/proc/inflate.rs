//! Decompression of ELF sections (`SHF_COMPRESSED`, `.zdebug_*`) under a budget.
//!
//! A section header declares the decompressed size, but nothing makes the stream honour it: a
//! 2 MB file can declare 4 KiB and inflate to 2 GiB. Every inflation here stops one byte past
//! the declared size, and the declared sizes of one file together must fit a budget well
//! below the deploy/ memory limit (512 MiB), so a file costs at most that much to read, and a
//! file that lies is refused whole rather than trusted in part.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use object::{CompressionFormat, Object, ObjectSection};

/// What the decompressed sections of one file may declare in total. A symbolizer holds them
/// in memory while it uses the file; big real binaries (a 35 MiB Go compiler: ~40 MiB of
/// DWARF) fit with room to spare.
pub const MAX_DECOMPRESSED_PER_FILE: u64 = 256 << 20;

/// What the inflated sections of all files in use at once may declare together: a symbolizer
/// keeps each file's inflated DWARF while the file is in use, and many honest files add up
/// like one bomb. Measured: a sidecar holding one 200 MiB section peaked at 260 MiB, or at
/// 460 MiB in some runs (blazesym's transient copies); 160 MiB keeps even twice the budget
/// plus the sidecar's own ~60 MiB well below the 512 MiB DaemonSet limit.
pub const MAX_DECOMPRESSED_TOTAL: u64 = 160 << 20;

/// Bytes of [`MAX_DECOMPRESSED_TOTAL`] held by live [`Reservation`]s.
static RESERVED: AtomicU64 = AtomicU64::new(0);

/// A share of [`MAX_DECOMPRESSED_TOTAL`], returned when dropped (when the file is closed).
#[derive(Debug)]
pub struct Reservation(u64);

impl Reservation {
    /// Takes `bytes` of the process-wide budget, or says how much is in use.
    pub fn take(bytes: u64) -> Result<Reservation, InflateError> {
        RESERVED
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes)
                    .filter(|&total| total <= MAX_DECOMPRESSED_TOTAL)
            })
            .map(|_| Reservation(bytes))
            .map_err(|used| InflateError::OverTotalBudget {
                declared: bytes,
                used,
                budget: MAX_DECOMPRESSED_TOTAL,
            })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        RESERVED.fetch_sub(self.0, Ordering::AcqRel);
    }
}

/// Why a compressed section is not trusted.
#[derive(Debug, thiserror::Error)]
pub enum InflateError {
    #[error(
        "{section}: declares {declared} decompressed bytes, over the {budget}-byte budget per file"
    )]
    OverBudget {
        section: String,
        declared: u64,
        budget: u64,
    },
    #[error("its debug sections declare {declared} decompressed bytes and files in use already hold {used} of the {budget}-byte budget")]
    OverTotalBudget {
        declared: u64,
        used: u64,
        budget: u64,
    },
    #[error("{section}: inflates past its declared {declared} bytes (a decompression bomb)")]
    LongerThanDeclared { section: String, declared: u64 },
    #[error("{section}: inflates to {actual} bytes, not the declared {declared}")]
    ShorterThanDeclared {
        section: String,
        declared: u64,
        actual: u64,
    },
    #[error("{section}: {format:?} compression is not supported")]
    Unsupported {
        section: String,
        format: CompressionFormat,
    },
    #[error("{section}: unreadable: {source}")]
    Io { section: String, source: io::Error },
}

/// Inflates the zlib stream `compressed` into `out`, which must receive exactly `declared`
/// bytes. Memory use is constant: `out` decides what is kept.
pub fn inflate_zlib(
    section: &str,
    compressed: impl Read,
    declared: u64,
    mut out: impl Write,
) -> Result<(), InflateError> {
    let mut stream = flate2::read::ZlibDecoder::new(compressed).take(declared.saturating_add(1));
    let actual = io::copy(&mut stream, &mut out).map_err(|source| InflateError::Io {
        section: section.to_string(),
        source,
    })?;
    if actual > declared {
        return Err(InflateError::LongerThanDeclared {
            section: section.to_string(),
            declared,
        });
    }
    if actual < declared {
        return Err(InflateError::ShorterThanDeclared {
            section: section.to_string(),
            declared,
            actual,
        });
    }
    Ok(())
}

/// Tracks the declared sizes of one file's compressed sections against
/// [`MAX_DECOMPRESSED_PER_FILE`].
#[derive(Debug, Default)]
pub struct Budget {
    declared: u64,
}

impl Budget {
    /// Admits a section declaring `declared` decompressed bytes, or says why not.
    pub fn admit(&mut self, section: &str, declared: u64) -> Result<(), InflateError> {
        let total = self.declared.saturating_add(declared);
        if total > MAX_DECOMPRESSED_PER_FILE {
            return Err(InflateError::OverBudget {
                section: section.to_string(),
                declared,
                budget: MAX_DECOMPRESSED_PER_FILE,
            });
        }
        self.declared = total;
        Ok(())
    }
}

/// Contents of `section`, decompressed within `budget` (empty for `SHT_NOBITS`).
pub fn section_data<'data, S: ObjectSection<'data>>(
    section: &S,
    budget: &mut Budget,
) -> Result<Vec<u8>, InflateError> {
    let name = section.name().unwrap_or("?").to_string();
    let io_err = |source| InflateError::Io {
        section: name.clone(),
        source,
    };
    let compressed = section
        .compressed_data()
        .map_err(|e| io_err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())))?;
    match compressed.format {
        CompressionFormat::None => Ok(compressed.data.to_vec()),
        CompressionFormat::Zlib => {
            budget.admit(&name, compressed.uncompressed_size)?;
            let declared = compressed.uncompressed_size;
            // Admitted above: the capacity is within the budget.
            let mut out = Vec::with_capacity(declared as usize);
            inflate_zlib(&name, compressed.data, declared, &mut out)?;
            Ok(out)
        }
        format => Err(InflateError::Unsupported {
            section: name,
            format,
        }),
    }
}

/// Checks every compressed section of `obj` without keeping its contents: declared sizes fit
/// the budget, and each stream inflates to exactly its declared size. `read_range` gives the
/// file bytes at (offset, len) as a reader, so that nothing is held in memory. Returns the
/// total declared (what a reader of all of them would hold).
pub fn verify_sections<'data, O, R, F>(obj: &O, mut read_range: F) -> Result<u64, InflateError>
where
    O: Object<'data>,
    R: Read,
    F: FnMut(u64, u64) -> io::Result<R>,
{
    let mut budget = Budget::default();
    for section in obj.sections() {
        let name = section.name().unwrap_or("?").to_string();
        let range = section
            .compressed_file_range()
            .map_err(|e| InflateError::Io {
                section: name.clone(),
                source: io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
            })?;
        match range.format {
            CompressionFormat::None => continue,
            CompressionFormat::Zlib => {}
            format => {
                return Err(InflateError::Unsupported {
                    section: name,
                    format,
                })
            }
        }
        budget.admit(&name, range.uncompressed_size)?;
        let reader =
            read_range(range.offset, range.compressed_size).map_err(|source| InflateError::Io {
                section: name.clone(),
                source,
            })?;
        inflate_zlib(&name, reader, range.uncompressed_size, io::sink())?;
    }
    Ok(budget.declared)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(data).expect("compress");
        enc.finish().expect("finish")
    }

    /// Counts what it is given and fails past `limit`, to prove inflation stops early.
    struct Meter {
        seen: u64,
        limit: u64,
    }

    impl Write for Meter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.seen += buf.len() as u64;
            if self.seen > self.limit {
                return Err(io::Error::other("inflated far past the declared size"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn honest_stream_inflates_exactly() {
        let data: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let mut out = Vec::new();
        inflate_zlib(".debug_info", &zlib(&data)[..], data.len() as u64, &mut out).expect("ok");
        assert_eq!(out, data);
    }

    #[test]
    fn bomb_stops_one_byte_past_the_declared_size() {
        // 64 MiB of zeros compress to ~64 KiB; declared 4 KiB.
        let bomb = zlib(&vec![0u8; 64 << 20]);
        let mut meter = Meter {
            seen: 0,
            limit: 4097,
        };
        let err = inflate_zlib(".debug_info", &bomb[..], 4096, &mut meter).expect_err("bomb");
        assert!(
            matches!(err, InflateError::LongerThanDeclared { .. }),
            "{err}"
        );
        assert_eq!(meter.seen, 4097);
        assert!(err.to_string().contains("decompression bomb"), "{err}");
    }

    #[test]
    fn short_and_corrupt_streams_are_refused() {
        let data = zlib(b"hello");
        let err = inflate_zlib("s", &data[..], 6, io::sink()).expect_err("short");
        assert!(matches!(
            err,
            InflateError::ShorterThanDeclared { actual: 5, .. }
        ));
        let err = inflate_zlib("s", &b"not zlib at all"[..], 6, io::sink()).expect_err("bad");
        assert!(matches!(err, InflateError::Io { .. }), "{err}");
    }

    #[test]
    fn process_wide_budget_is_returned_on_drop() {
        // Other tests of this process may hold reservations: work relative to what is free.
        let first = Reservation::take(MAX_DECOMPRESSED_TOTAL / 2).expect("half is free");
        let err = Reservation::take(MAX_DECOMPRESSED_TOTAL / 2 + (64 << 20))
            .expect_err("over what is left");
        assert!(
            err.to_string().contains("files in use already hold"),
            "{err}"
        );
        drop(first);
        let again = Reservation::take(MAX_DECOMPRESSED_TOTAL / 2 + (64 << 20));
        assert!(again.is_ok(), "the dropped reservation came back");
        assert!(Reservation::take(u64::MAX).is_err());
    }

    #[test]
    fn budget_is_per_file_total() {
        let mut b = Budget::default();
        b.admit("a", MAX_DECOMPRESSED_PER_FILE / 2)
            .expect("first half");
        b.admit("b", MAX_DECOMPRESSED_PER_FILE / 2)
            .expect("second half");
        assert!(matches!(
            b.admit("c", 1),
            Err(InflateError::OverBudget { .. })
        ));
        let mut b = Budget::default();
        assert!(b.admit("huge", u64::MAX).is_err());
    }
}
