//! The date formats the emulated services write and read.

/// `2026-11-25T09:30:00.000Z` from milliseconds since the epoch.
pub fn iso8601(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| String::new(), |t| format!("{t:.3}"))
}

/// `2026-11-25` from milliseconds since the epoch.
pub fn date(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| String::new(), |t| t.strftime("%Y-%m-%d").to_string())
}

/// Milliseconds since the epoch from an ISO 8601 time (`Z`, `+02:00` or
/// Salesforce's `+0000`) or a date (midnight UTC).
pub fn parse(text: &str) -> Option<i64> {
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Some(t.as_millisecond());
    }
    let date: jiff::civil::Date = text.parse().ok()?;
    Some(date.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp().as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_the_services_use() {
        assert_eq!(iso8601(1_715_203_101_896), "2024-05-08T21:18:21.896Z");
        assert_eq!(date(1_715_203_101_896), "2024-05-08");
        assert_eq!(parse("2024-05-08T21:18:21.896+0000"), Some(1_715_203_101_896));
        assert_eq!(parse("2024-05-08T23:18:21.896+02:00"), Some(1_715_203_101_896));
        assert_eq!(parse("2024-05-08"), Some(1_715_126_400_000));
        assert_eq!(parse("yesterday"), None);
    }
}
