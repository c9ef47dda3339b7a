//! The few date formats the providers use, without a calendar library.

/// Days since 1970-01-01 → (year, month, day). Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-11-25T09:30:00.000Z` from milliseconds since the epoch.
pub fn iso8601(ms: i64) -> String {
    let (days, rest) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    let (h, min, s, milli) = (rest / 3_600_000, rest / 60_000 % 60, rest / 1000 % 60, rest % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}Z")
}

/// `2026-11-25T09:30:00Z` (seconds precision, for SOQL literals).
pub fn soql_datetime(ms: i64) -> String {
    let full = iso8601(ms);
    format!("{}Z", &full[..19])
}

/// `2026-11-25` from milliseconds since the epoch.
pub fn date(ms: i64) -> String {
    iso8601(ms)[..10].to_string()
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff](Z|+HHMM|+HH:MM)` or `YYYY-MM-DD` to
/// milliseconds since the epoch.
pub fn parse(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> { text.get(range)?.parse().ok() };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)? as u32, num(8..10)? as u32);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let mut ms = days_from_civil(y, mo, d) * 86_400_000;
    if b.len() == 10 {
        return Some(ms);
    }
    if b.len() < 19 || b[10] != b'T' {
        return None;
    }
    ms += num(11..13)? * 3_600_000 + num(14..16)? * 60_000 + num(17..19)? * 1000;
    let mut rest = &text[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.chars().take_while(char::is_ascii_digit).count();
        let mut millis: String = frac[..digits].chars().take(3).collect();
        while millis.len() < 3 {
            millis.push('0');
        }
        ms += millis.parse::<i64>().ok()?;
        rest = &frac[digits..];
    }
    match rest {
        "Z" | "" => Some(ms),
        offset => {
            let sign = match offset.as_bytes()[0] {
                b'+' => -1,
                b'-' => 1,
                _ => return None,
            };
            let digits: String = offset[1..].chars().filter(char::is_ascii_digit).collect();
            if digits.len() != 4 {
                return None;
            }
            let minutes = digits[..2].parse::<i64>().ok()? * 60 + digits[2..].parse::<i64>().ok()?;
            Some(ms + sign * minutes * 60_000)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for ms in [0, 1_715_203_101_896, 951_782_400_000, 4_107_542_400_123] {
            assert_eq!(parse(&iso8601(ms)), Some(ms), "{}", iso8601(ms));
        }
        assert_eq!(iso8601(1_715_203_101_896), "2024-05-08T21:18:21.896Z");
        assert_eq!(date(1_715_203_101_896), "2024-05-08");
        assert_eq!(soql_datetime(1_715_203_101_896), "2024-05-08T21:18:21Z");
    }

    #[test]
    fn salesforce_offsets_and_dates() {
        assert_eq!(parse("2024-05-08T21:18:21.896+0000"), Some(1_715_203_101_896));
        assert_eq!(parse("2024-05-08T23:18:21.896+02:00"), Some(1_715_203_101_896));
        assert_eq!(parse("2024-05-08"), Some(1_715_126_400_000));
        assert_eq!(parse("2024-13-08"), None);
        assert_eq!(parse("yesterday"), None);
    }
}
