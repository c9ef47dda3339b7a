//! Reading a HubSpot contact item (`{"id", "properties": {...}}`), as
//! `fetch-contact` emits it and the plugins after it pass it on.

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
    fn regions() {
        assert_eq!(region("Germany"), Some("EMEA"));
        assert_eq!(region("United States"), Some("NA"));
        assert_eq!(region("Atlantis"), None);
    }
}
