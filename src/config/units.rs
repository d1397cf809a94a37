//! Human-friendly sizes and durations for flags and `-o` options.
//!
//! Sizes: a number with an optional unit. Binary units (`K`, `M`, `G`, `T` and the explicit
//! `KiB`, `MiB`, `GiB`, `TiB`) are powers of 1024, decimal units (`KB`, `MB`, `GB`, `TB`)
//! powers of 1000, so `512MiB`, `512M` and `1G` mean what mount tools usually mean while
//! `1GB` keeps its SI meaning. Fractions are allowed (`1.5G`); the result is rounded down
//! to whole bytes. Case does not matter; a space between number and unit is tolerated.
//!
//! Durations: a bare number is seconds (`30`, `0.5`); otherwise `ms`, `s`, `m`/`min`,
//! `h`. Both parsers return a message meant to be shown to the user as is.

use std::time::Duration;

/// Parses `512MiB`, `1G`, `100k`, `4096`, `1.5GB` into bytes.
pub(crate) fn parse_size(input: &str) -> Result<u64, String> {
    let s = input.trim();
    let (number, unit) = split_number(s).ok_or_else(|| {
        format!(
            "invalid size '{input}': expected a number with an optional unit, e.g. 512MiB, 1G, 64k"
        )
    })?;
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "invalid size '{input}': unknown unit '{unit}' (use K, M, G, T, KiB…TiB or KB…TB)"
            ));
        }
    };
    scale(number, multiplier as f64)
        .map(|v| v.floor() as u64)
        .ok_or_else(|| format!("invalid size '{input}': too large"))
}

/// Parses `30`, `1s`, `500ms`, `2m`, `1h`, `0.5` (seconds) into a duration.
pub(crate) fn parse_duration(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    let (number, unit) = split_number(s).ok_or_else(|| {
        format!("invalid duration '{input}': expected a number with an optional unit, e.g. 30, 1s, 500ms, 5m")
    })?;
    let seconds_per_unit = match unit.to_ascii_lowercase().as_str() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 0.001,
        "m" | "min" | "mins" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(format!(
                "invalid duration '{input}': unknown unit '{unit}' (use ms, s, m or h)"
            ));
        }
    };
    let secs = scale(number, seconds_per_unit)
        .ok_or_else(|| format!("invalid duration '{input}': too large"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("invalid duration '{input}': too large"))
}

/// The metadata TTL `indefinite` stands for (about a century): cached metadata is
/// never revalidated.
pub(crate) const INDEFINITE_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A metadata TTL: a duration ([`parse_duration`]) or `indefinite` ([`INDEFINITE_TTL`]).
pub(crate) fn parse_ttl(input: &str) -> Result<Duration, String> {
    if input.trim().eq_ignore_ascii_case("indefinite") {
        return Ok(INDEFINITE_TTL);
    }
    parse_duration(input).map_err(|e| format!("{e}, or 'indefinite'"))
}

/// Formats bytes the way [`parse_size`] reads them back (`512MiB`, `1GiB`, `1000B`).
pub(crate) fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (name, size) in UNITS {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{name}", bytes / size);
        }
    }
    for (name, size) in UNITS {
        if bytes >= size {
            return format!("{:.1}{name}", bytes as f64 / size as f64);
        }
    }
    format!("{bytes}B")
}

/// Formats a duration compactly (`500ms`, `30s`, `1.5s`).
pub(crate) fn format_duration(d: Duration) -> String {
    if d == INDEFINITE_TTL {
        return "indefinite".into();
    }
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) && d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// Splits `"1.5GiB"` into `(1.5, "GiB")`; None when there is no leading number.
fn split_number(s: &str) -> Option<(f64, &str)> {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, rest) = s.split_at(end);
    if num.is_empty() || num.starts_with('.') && num.len() == 1 {
        return None;
    }
    let value: f64 = num.parse().ok()?;
    Some((value, rest.trim()))
}

fn scale(number: f64, multiplier: f64) -> Option<f64> {
    let v = number * multiplier;
    (v.is_finite() && v >= 0.0 && v <= u64::MAX as f64 / 2.0).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_binary_and_decimal_units() {
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("100k"), Ok(102_400));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size(" 8 MiB "), Ok(8 << 20));
        assert_eq!(parse_size("0"), Ok(0));
    }

    #[test]
    fn bad_sizes_have_clear_messages() {
        let e = parse_size("lots").unwrap_err();
        assert!(e.contains("invalid size 'lots'"), "{e}");
        let e = parse_size("5 parsecs").unwrap_err();
        assert!(e.contains("unknown unit 'parsecs'"), "{e}");
        assert!(parse_size("-1G").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size(".").is_err());
        assert!(parse_size("1.2.3M").is_err());
        assert!(
            parse_size("99999999999T")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .contains("invalid duration 'soon'")
        );
        assert!(
            parse_duration("3 days")
                .unwrap_err()
                .contains("unknown unit")
        );
    }

    #[test]
    fn formatting_round_trips() {
        for v in [0u64, 1, 1023, 1024, 512 << 20, 1 << 30, 3 << 29] {
            let text = format_size(v);
            if !text.contains('.') {
                assert_eq!(parse_size(&text), Ok(v), "{text}");
            }
        }
        assert_eq!(format_size(512 << 20), "512MiB");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::from_secs(30)), "30s");
    }
}
