//! Human durations for flags ("90s", "30m", "24h", "7d", or plain seconds)
//! and for tables ("3s", "5m12s", "2h", "3d").

use std::time::Duration;

/// Parse "90s", "30m", "24h", "7d", "1h30m" or a plain number of seconds.
pub(crate) fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => {
                return Err(format!(
                    "bad duration {s:?}: unknown unit {c:?} (use s, m, h, d)"
                ))
            }
        };
        let n: u64 = num
            .parse()
            .map_err(|_| format!("bad duration {s:?}: a unit without a number"))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("bad duration {s:?}: too large"))?;
        num.clear();
    }
    if !num.is_empty() {
        return Err(format!(
            "bad duration {s:?}: {num} has no unit (use s, m, h, d)"
        ));
    }
    Ok(Duration::from_secs(total))
}

/// Short human form of a duration: "3s", "5m12s", "2h5m", "3d4h".
pub(crate) fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!(parse("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("7d").unwrap(), Duration::from_secs(7 * 86400));
        assert!(parse("").is_err());
        assert!(parse("5x").unwrap_err().contains("unknown unit"));
        assert!(parse("h").unwrap_err().contains("without a number"));
        assert!(parse("5h3").unwrap_err().contains("has no unit"));
    }

    #[test]
    fn human_forms() {
        assert_eq!(human(Duration::from_secs(3)), "3s");
        assert_eq!(human(Duration::from_secs(312)), "5m12s");
        assert_eq!(human(Duration::from_secs(7500)), "2h5m");
        assert_eq!(human(Duration::from_secs(3 * 86400 + 3600)), "3d1h");
    }
}
