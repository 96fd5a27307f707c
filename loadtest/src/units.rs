//! Humane durations (`500ms`, `10s`, `1m30s`) for flags and thresholds, and
//! latency formatting for people.

use std::time::Duration;

/// Parses `250us`, `500ms`, `10s`, `1.5s`, `2m`, `1h` or a sum like `1m30s`.
/// A bare number is refused: `10` could mean seconds or milliseconds.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let s = raw.trim();
    if s.is_empty() {
        return Err("empty duration: write e.g. 500ms, 10s or 2m".into());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let unit_len = rest[num_len..]
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len() - num_len);
        let (num, unit) = (&rest[..num_len], &rest[num_len..num_len + unit_len]);
        let value: f64 = num.parse().map_err(|_| {
            format!("bad duration {raw:?}: expected a number before the unit, e.g. 500ms, 10s, 2m")
        })?;
        let seconds_per_unit = match unit {
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => {
                return Err(format!(
                    "bad duration {raw:?}: add a unit (us, ms, s, m or h), e.g. {raw}s"
                ));
            }
            other => {
                return Err(format!(
                    "bad duration {raw:?}: unknown unit {other:?}; use us, ms, s, m or h"
                ));
            }
        };
        total += value * seconds_per_unit;
        rest = &rest[num_len + unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|e| format!("bad duration {raw:?}: {e}"))
}

/// Formats microseconds with three significant digits: `850µs`, `1.23ms`, `2.50s`.
pub fn format_micros(us: f64) -> String {
    if us < 1_000.0 {
        format!("{us:.0}µs")
    } else if us < 1_000_000.0 {
        format!("{}ms", sig3(us / 1_000.0))
    } else {
        format!("{}s", sig3(us / 1_000_000.0))
    }
}

fn sig3(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sums() {
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
    }

    #[test]
    fn refuses_what_is_ambiguous_or_wrong() {
        assert!(parse_duration("10").unwrap_err().contains("add a unit"));
        assert!(parse_duration("10d").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn formats_latency() {
        assert_eq!(format_micros(850.0), "850µs");
        assert_eq!(format_micros(1_234.0), "1.23ms");
        assert_eq!(format_micros(45_600.0), "45.6ms");
        assert_eq!(format_micros(2_500_000.0), "2.50s");
    }
}
