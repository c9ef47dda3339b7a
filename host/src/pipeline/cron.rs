//! Cron expressions for `schedule` triggers: five fields (minute, hour, day
//! of month, month, day of week), read in an IANA time zone.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    /// Day of month and day of week both restricted: either may match.
    either_day: bool,
}

impl Cron {
    /// Parses `minute hour day-of-month month day-of-week` (numbers, `*`,
    /// ranges `a-b`, lists `a,b`, steps `*/n` and `a-b/n`; day of week 0-7,
    /// both 0 and 7 Sunday).
    ///
    /// # Errors
    ///
    /// What is wrong, naming the field.
    pub fn parse(text: &str) -> Result<Cron, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!("{} fields, expected 5", fields.len()));
        }
        let minutes = bits(fields[0], "minute", 0, 59)?;
        let hours = bits(fields[1], "hour", 0, 23)?;
        let days = bits(fields[2], "day of month", 1, 31)?;
        let months = bits(fields[3], "month", 1, 12)?;
        let mut weekdays = bits(fields[4], "day of week", 0, 7)?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1; // 7 is Sunday too
        }
        Ok(Cron {
            minutes,
            hours: u32::try_from(hours).unwrap_or(u32::MAX),
            days: u32::try_from(days).unwrap_or(u32::MAX),
            months: u16::try_from(months).unwrap_or(u16::MAX),
            weekdays: u8::try_from(weekdays & 0x7f).unwrap_or(u8::MAX),
            either_day: fields[2] != "*" && fields[4] != "*",
        })
    }

    fn day_matches(&self, at: DateTime) -> bool {
        let day = self.days & (1 << at.day()) != 0;
        let weekday = self.weekdays & (1 << at.weekday().to_sunday_zero_offset()) != 0;
        if self.either_day { day || weekday } else { day && weekday }
    }

    /// The first slot strictly after `after_ms`, in `zone`; none within
    /// five years (an expression like `0 0 30 2 *` never matches).
    pub fn next_after(&self, zone: &TimeZone, after_ms: i64) -> Option<i64> {
        let after = jiff::Timestamp::from_millisecond(after_ms).ok()?;
        let local = after.to_zoned(zone.clone()).datetime();
        let mut at =
            local.with().second(0).subsec_nanosecond(0).build().ok()?.checked_add(jiff::Span::new().minutes(1)).ok()?;
        let limit = local.checked_add(jiff::Span::new().years(5)).ok()?;
        while at < limit {
            if self.months & (1 << at.month()) == 0 {
                at = at
                    .first_of_month()
                    .checked_add(jiff::Span::new().months(1))
                    .ok()?
                    .with()
                    .hour(0)
                    .minute(0)
                    .build()
                    .ok()?;
                continue;
            }
            if !self.day_matches(at) {
                at = at.date().tomorrow().ok()?.to_datetime(jiff::civil::Time::midnight());
                continue;
            }
            if self.hours & (1 << at.hour()) == 0 {
                at = at.with().minute(0).build().ok()?.checked_add(jiff::Span::new().hours(1)).ok()?;
                continue;
            }
            if self.minutes & (1 << at.minute()) == 0 {
                at = at.checked_add(jiff::Span::new().minutes(1)).ok()?;
                continue;
            }
            let slot = at.to_zoned(zone.clone()).ok()?.timestamp().as_millisecond();
            if slot > after_ms {
                return Some(slot);
            }
            at = at.checked_add(jiff::Span::new().minutes(1)).ok()?;
        }
        None
    }
}

/// The values a field allows, as bits.
fn bits(field: &str, name: &str, min: u32, max: u32) -> Result<u64, String> {
    let mut set = 0u64;
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or(format!("{name}: step '{step}' is not a positive number"))?;
                (range, step)
            }
            None => (part, 1),
        };
        let (low, high) = if range == "*" {
            (min, max)
        } else {
            let number = |b: &str| -> Result<u32, String> {
                let value: u32 = b.parse().map_err(|_| format!("{name}: '{b}' is not a number"))?;
                if value < min || value > max {
                    return Err(format!("{name}: {value} is outside {min}-{max}"));
                }
                Ok(value)
            };
            match range.split_once('-') {
                Some((a, b)) => (number(a)?, number(b)?),
                None if step > 1 => (number(range)?, max),
                None => {
                    let v = number(range)?;
                    (v, v)
                }
            }
        };
        if low > high {
            return Err(format!("{name}: range {low}-{high} runs backwards"));
        }
        for value in (low..=high).step_by(step as usize) {
            set |= 1 << value;
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(iso: &str) -> i64 {
        iso.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn monday_nine_in_berlin() {
        let cron = Cron::parse("0 9 * * 1").unwrap();
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        // Wednesday 2026-11-25 15:00 UTC → Monday 2026-11-30 09:00 Berlin (08:00 UTC).
        assert_eq!(cron.next_after(&berlin, ms("2026-11-25T15:00:00Z")), Some(ms("2026-11-30T08:00:00Z")));
        // Exactly at a slot: the next one, a week later.
        assert_eq!(cron.next_after(&berlin, ms("2026-11-30T08:00:00Z")), Some(ms("2026-12-07T08:00:00Z")));
    }

    #[test]
    fn steps_lists_ranges_and_either_day() {
        let utc = TimeZone::UTC;
        let every_five = Cron::parse("*/5 * * * *").unwrap();
        assert_eq!(every_five.next_after(&utc, ms("2026-11-25T15:02:10Z")), Some(ms("2026-11-25T15:05:00Z")));
        let first_or_friday = Cron::parse("30 8 1 * 5").unwrap();
        assert_eq!(first_or_friday.next_after(&utc, ms("2026-11-25T15:00:00Z")), Some(ms("2026-11-27T08:30:00Z")));
        assert_eq!(first_or_friday.next_after(&utc, ms("2026-11-28T00:00:00Z")), Some(ms("2026-12-01T08:30:00Z")));
        assert_eq!(Cron::parse("0 0 30 2 *").unwrap().next_after(&utc, 0), None);
        assert!(Cron::parse("61 * * * *").unwrap_err().contains("minute"));
        assert!(Cron::parse("* * *").is_err());
        assert!(Cron::parse("5-1 * * * *").unwrap_err().contains("backwards"));
    }
}
