//! Helpers the standard plugins share. Plain Rust over `serde_json`, no WIT:
//! each plugin keeps its own bindings.

use serde_json::Value;

/// A HubSpot contact property from an item (`item.properties[name]`),
/// trimmed, `None` when unset or blank.
pub fn prop<'a>(item: &'a Value, name: &str) -> Option<&'a str> {
    item.get("properties")?.get(name)?.as_str().map(str::trim).filter(|s| !s.is_empty())
}

/// A property parsed as a number.
pub fn prop_number(item: &Value, name: &str) -> Option<f64> {
    prop(item, name)?.parse().ok()
}

/// The contact's full name, or its email.
pub fn full_name(item: &Value) -> String {
    let name = [prop(item, "firstname"), prop(item, "lastname")].into_iter().flatten().collect::<Vec<_>>().join(" ");
    if name.is_empty() { prop(item, "email").unwrap_or("(unnamed contact)").to_string() } else { name }
}

/// Parses `250ms`, `30s`, `30m`, `4h`, `2d` to milliseconds.
pub fn duration_ms(text: &str) -> Option<i64> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = text.split_at(split);
    let n: i64 = n.parse().ok()?;
    Some(match unit {
        "ms" => n,
        "s" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        "d" => n * 86_400_000,
        _ => return None,
    })
}

/// `YYYY-MM-DD` (UTC) of a millisecond timestamp.
pub fn utc_date(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The sales region of a country (HubSpot's `country` property), for
/// territory rules: `NA`, `LATAM`, `EMEA` or `APAC`.
pub fn region(country: &str) -> Option<&'static str> {
    let c = country.trim().to_ascii_lowercase();
    const NA: &[&str] = &["united states", "usa", "us", "canada"];
    const LATAM: &[&str] = &["mexico", "brazil", "argentina", "chile", "colombia", "peru"];
    const APAC: &[&str] = &[
        "japan",
        "china",
        "india",
        "singapore",
        "australia",
        "new zealand",
        "south korea",
        "korea",
        "hong kong",
        "taiwan",
        "indonesia",
        "malaysia",
        "philippines",
        "thailand",
        "vietnam",
    ];
    const EMEA: &[&str] = &[
        "united kingdom",
        "uk",
        "ireland",
        "germany",
        "france",
        "spain",
        "italy",
        "netherlands",
        "belgium",
        "luxembourg",
        "switzerland",
        "austria",
        "sweden",
        "norway",
        "denmark",
        "finland",
        "poland",
        "portugal",
        "czech republic",
        "israel",
        "united arab emirates",
        "saudi arabia",
        "south africa",
        "nigeria",
        "kenya",
        "egypt",
        "turkey",
    ];
    [(NA, "NA"), (LATAM, "LATAM"), (APAC, "APAC"), (EMEA, "EMEA")]
        .into_iter()
        .find(|(list, _)| list.contains(&c.as_str()))
        .map(|(_, r)| r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_properties() {
        let item =
            json!({"properties": {"firstname": " Ann ", "lastname": "Lee", "numemployees": "1200", "company": ""}});
        assert_eq!(prop(&item, "firstname"), Some("Ann"));
        assert_eq!(prop(&item, "company"), None);
        assert_eq!(prop_number(&item, "numemployees"), Some(1200.0));
        assert_eq!(full_name(&item), "Ann Lee");
    }

    #[test]
    fn durations_dates_regions() {
        assert_eq!(duration_ms("30m"), Some(1_800_000));
        assert_eq!(duration_ms("4h"), Some(14_400_000));
        assert_eq!(duration_ms("4 h"), None);
        assert_eq!(utc_date(1_715_203_101_896), "2024-05-08");
        assert_eq!(region("Germany"), Some("EMEA"));
        assert_eq!(region("United States"), Some("NA"));
        assert_eq!(region("Atlantis"), None);
    }
}
