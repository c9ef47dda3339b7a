//! The date formats the providers use.

use jiff::Timestamp;

fn timestamp(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 { Timestamp::MIN } else { Timestamp::MAX })
}

/// `2026-11-25T09:30:00.000Z` from milliseconds since the epoch.
pub fn iso8601(ms: i64) -> String {
    format!("{:.3}", timestamp(ms))
}

/// `2026-11-25T09:30:00Z` (seconds precision, for SOQL literals).
pub fn soql_datetime(ms: i64) -> String {
    timestamp(ms).strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `2026-11-25` from milliseconds since the epoch.
pub fn date(ms: i64) -> String {
    timestamp(ms).strftime("%Y-%m-%d").to_string()
}

/// Parses an ISO 8601 time with an offset (`Z`, `+02:00`, or Salesforce's
/// `+0000`) or a date (`YYYY-MM-DD`, midnight UTC) to milliseconds since
/// the epoch.
pub fn parse(text: &str) -> Option<i64> {
    if let Ok(t) = text.parse::<Timestamp>() {
        return Some(t.as_millisecond());
    }
    let date: jiff::civil::Date = text.parse().ok()?;
    Some(date.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp().as_millisecond())
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
