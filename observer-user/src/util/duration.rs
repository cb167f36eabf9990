//! Human durations: parsing for the command line, formatting for reports.
//!
//! [`parse_duration`] reads one or more `<number><unit>` parts (`250ms`, `1.5s`, `1m30s`), with units
//! `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`. A unit is always required: a bare `5` is ambiguous on a
//! command line that mixes thresholds in milliseconds and intervals in seconds. Arithmetic is exact
//! integer nanoseconds (no floating point), so `0.1s` is exactly 100 ms.
//!
//! [`human`] prints about three significant digits in the largest fitting unit (`850us`, `312ms`,
//! `5.02s`), and minutes/hours with zero-padded parts (`1m02s`, `2h05m00s`).

use std::time::Duration;

/// A duration in nanoseconds, saturating at `u64::MAX` (585 years): the unit of the kernel's
/// timestamps and of every `*_ns` field.
pub fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Why a duration string was rejected; its `Display` is what a user sees from clap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration: expected a number with a unit, e.g. 250ms, 2s, 1m30s")]
    Empty,
    #[error("invalid duration {input:?}: negative durations are not allowed")]
    Negative { input: String },
    #[error(
        "invalid duration {input:?}: {number:?} has no unit (use ns, us, ms, s, m or h, e.g. {number}ms)"
    )]
    MissingUnit { input: String, number: String },
    #[error("invalid duration {input:?}: unknown unit {unit:?} (use ns, us, ms, s, m or h)")]
    UnknownUnit { input: String, unit: String },
    #[error("invalid duration {input:?}: expected a number at {rest:?} (e.g. 250ms, 1.5s, 1m30s)")]
    ExpectedNumber { input: String, rest: String },
    #[error("invalid duration {input:?}: too large (at most {MAX_HOURS}h, a year)")]
    Overflow { input: String },
}

/// The longest duration accepted. A deadline is a point on the monotonic clock (`now + d`):
/// `--duration 18446744073709551615s` overflowed it and panicked. A year is longer than any
/// observation anyone schedules; to run until stopped, leave `--duration` out.
const MAX_HOURS: u64 = 365 * 24;

const NS_PER_US: u128 = 1_000;
const NS_PER_MS: u128 = 1_000_000;
const NS_PER_S: u128 = 1_000_000_000;

fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => NS_PER_US,
        "ms" => NS_PER_MS,
        "s" => NS_PER_S,
        "m" => 60 * NS_PER_S,
        "h" => 3600 * NS_PER_S,
        _ => return None,
    })
}

/// Parses `100ns`, `500us`, `250ms`, `2s`, `1.5s`, `1m`, `1h`, `1m30s` (also `1m 30s`).
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let input = s.trim();
    if input.is_empty() {
        return Err(DurationError::Empty);
    }
    if input.starts_with('-') {
        return Err(DurationError::Negative {
            input: input.to_string(),
        });
    }
    let overflow = || DurationError::Overflow {
        input: input.to_string(),
    };

    let mut total: u128 = 0;
    let mut rest = input;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..num_len];
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        let has_digits = !int_part.is_empty() || !frac_part.is_empty();
        let valid_number = has_digits && !frac_part.contains('.');
        if !valid_number {
            return Err(DurationError::ExpectedNumber {
                input: input.to_string(),
                rest: rest.to_string(),
            });
        }
        rest = &rest[num_len..];

        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = rest[unit_len..].trim_start();
        if unit.is_empty() {
            return Err(DurationError::MissingUnit {
                input: input.to_string(),
                number: number.to_string(),
            });
        }
        let scale = unit_nanos(unit).ok_or_else(|| DurationError::UnknownUnit {
            input: input.to_string(),
            unit: unit.to_string(),
        })?;

        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| overflow())?
        };
        let mut part = int.checked_mul(scale).ok_or_else(overflow)?;
        // Digits beyond 18 cannot matter below 1 ns even for hours, and would overflow the divisor.
        let frac_digits = &frac_part[..frac_part.len().min(18)];
        if !frac_digits.is_empty() {
            let frac: u128 = frac_digits.parse().map_err(|_| overflow())?;
            let denom = 10u128.pow(frac_digits.len() as u32);
            part = part
                .checked_add(frac * scale / denom)
                .ok_or_else(overflow)?;
        }
        total = total.checked_add(part).ok_or_else(overflow)?;
    }

    if total > u128::from(MAX_HOURS) * 3600 * NS_PER_S {
        return Err(overflow());
    }
    let secs = u64::try_from(total / NS_PER_S).map_err(|_| overflow())?;
    Ok(Duration::new(secs, (total % NS_PER_S) as u32))
}

/// Formats a duration for people: `850us`, `312ms`, `5.02s`, `1m02s`, `2h05m00s`.
pub fn human(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos < NS_PER_US {
        return format!("{nanos}ns");
    }
    let units: [(u128, &str); 3] = [(NS_PER_US, "us"), (NS_PER_MS, "ms"), (NS_PER_S, "s")];
    for (i, &(scale, name)) in units.iter().enumerate() {
        let next = units.get(i + 1).map_or(60 * NS_PER_S, |u| u.0);
        if nanos >= next {
            continue;
        }
        let text = three_digits(nanos as f64 / scale as f64);
        let rounded: f64 = text.parse().unwrap_or(0.0);
        // 999.7ms rounds to "1000"; show it in the next unit instead.
        let limit = if name == "s" { 60.0 } else { 1000.0 };
        if rounded < limit {
            return format!("{text}{name}");
        }
    }
    let total_secs = (nanos + NS_PER_S / 2) / NS_PER_S;
    let (h, m, s) = (total_secs / 3600, (total_secs / 60) % 60, total_secs % 60);
    if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else {
        format!("{m}m{s:02}s")
    }
}

/// About three significant digits, trailing zeros trimmed: 5.0234 -> "5.02", 1.0 -> "1", 312.4 -> "312".
fn three_digits(v: f64) -> String {
    let decimals = if v < 10.0 {
        2
    } else if v < 100.0 {
        1
    } else {
        0
    };
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Duration {
        parse_duration(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_each_unit() {
        assert_eq!(ok("100ns"), Duration::from_nanos(100));
        assert_eq!(ok("500us"), Duration::from_micros(500));
        assert_eq!(ok("500µs"), Duration::from_micros(500));
        assert_eq!(ok("250ms"), Duration::from_millis(250));
        assert_eq!(ok("2s"), Duration::from_secs(2));
        assert_eq!(ok("1m"), Duration::from_secs(60));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
    }

    #[test]
    fn parses_fractions_exactly() {
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("0.1s"), Duration::from_millis(100));
        assert_eq!(ok(".5ms"), Duration::from_micros(500));
        assert_eq!(ok("2.ms"), Duration::from_millis(2));
        assert_eq!(ok("1.0000000000000000000001s"), Duration::from_secs(1));
    }

    #[test]
    fn parses_compound_and_whitespace() {
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1m 30s"), Duration::from_secs(90));
        assert_eq!(ok(" 1h2m3s "), Duration::from_secs(3723));
        assert_eq!(ok("1s500ms"), Duration::from_millis(1500));
        assert_eq!(ok("0s"), Duration::ZERO);
    }

    #[test]
    fn rejects_bad_input_with_clear_messages() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(parse_duration("   "), Err(DurationError::Empty));

        let e = parse_duration("-5ms").unwrap_err();
        assert!(matches!(e, DurationError::Negative { .. }));
        assert!(e.to_string().contains("negative"), "{e}");

        let e = parse_duration("5").unwrap_err();
        assert!(matches!(e, DurationError::MissingUnit { .. }));
        assert!(e.to_string().contains("has no unit"), "{e}");
        assert!(e.to_string().contains("5ms"), "{e}");
        assert!(matches!(
            parse_duration("1m30").unwrap_err(),
            DurationError::MissingUnit { .. }
        ));

        let e = parse_duration("5sec").unwrap_err();
        assert_eq!(
            e,
            DurationError::UnknownUnit {
                input: "5sec".into(),
                unit: "sec".into()
            }
        );
        assert!(e.to_string().contains("unknown unit \"sec\""), "{e}");

        for bad in ["ms", "1..5s", "1.2.3s", "1s x", "."] {
            assert!(parse_duration(bad).is_err(), "{bad} accepted");
        }
        assert!(matches!(
            parse_duration("99999999999999999999999h").unwrap_err(),
            DurationError::Overflow { .. }
        ));
    }

    #[test]
    fn durations_past_a_year_are_refused_with_the_bound() {
        // u64::MAX seconds parsed, then overflowed the deadline `now + d` and panicked.
        let e = parse_duration("18446744073709551615s").unwrap_err();
        assert!(matches!(e, DurationError::Overflow { .. }));
        assert!(e.to_string().contains("at most 8760h"), "{e}");
        assert!(parse_duration("8761h").is_err());
        assert_eq!(ok("8760h"), Duration::from_secs(8760 * 3600));
        // Every accepted duration can be added to the monotonic clock.
        let _ = std::time::Instant::now() + ok("8760h");
    }

    #[test]
    fn formats_for_humans() {
        assert_eq!(human(Duration::from_nanos(0)), "0ns");
        assert_eq!(human(Duration::from_nanos(999)), "999ns");
        assert_eq!(human(Duration::from_micros(850)), "850us");
        assert_eq!(human(Duration::from_nanos(1_500)), "1.5us");
        assert_eq!(human(Duration::from_millis(312)), "312ms");
        assert_eq!(human(Duration::from_micros(312_400)), "312ms");
        assert_eq!(human(Duration::from_millis(5_020)), "5.02s");
        assert_eq!(human(Duration::from_millis(5_023)), "5.02s");
        assert_eq!(human(Duration::from_secs(1)), "1s");
        assert_eq!(human(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(human(Duration::from_secs(62)), "1m02s");
        assert_eq!(human(Duration::from_secs(7500)), "2h05m00s");
    }

    #[test]
    fn rounding_moves_to_the_next_unit() {
        assert_eq!(human(Duration::from_nanos(999_700)), "1ms");
        assert_eq!(human(Duration::from_micros(999_700)), "1s");
        assert_eq!(human(Duration::from_millis(59_990)), "1m00s");
        assert_eq!(human(Duration::from_millis(59_940)), "59.9s");
    }

    #[test]
    fn nanoseconds_saturate() {
        assert_eq!(duration_ns(Duration::from_millis(1500)), 1_500_000_000);
        assert_eq!(duration_ns(Duration::MAX), u64::MAX);
    }

    #[test]
    fn human_output_parses_back() {
        for d in [
            Duration::from_micros(850),
            Duration::from_millis(312),
            Duration::from_secs(62),
            Duration::from_secs(7500),
        ] {
            assert_eq!(ok(&human(d)), d);
        }
    }
}
