//! The MQL criteria, as pure functions over a HubSpot contact.
//!
//! Nothing here touches the WIT bindings, so it is tested natively with
//! `cargo test -p handoff-plugin-validate`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The node's `config`, as RevOps writes it in the pipeline file. Every field
/// has a default, so `{}` is a working configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Lowest lead score that passes.
    pub min_score: f64,
    /// The contact property holding the score.
    pub score_property: String,
    /// Properties that must be present and non-blank.
    pub required_fields: Vec<String>,
    /// Accepted values of `lifecyclestage`.
    pub lifecycle_stages: Vec<String>,
    /// Domains added to the built-in disposable-address list.
    pub disposable_domains: Vec<String>,
    /// Domains added to the built-in free-mail list.
    pub free_mail_domains: Vec<String>,
    /// Whether the built-in lists apply (the configured ones always do).
    pub use_builtin_lists: bool,
    /// What to do with free-mail addresses (gmail.com and the like).
    pub free_mail: FreeMailPolicy,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            min_score: 50.0,
            score_property: "hubspotscore".to_string(),
            required_fields: ["email", "lastname", "company"].map(String::from).to_vec(),
            lifecycle_stages: vec!["marketingqualifiedlead".to_string()],
            disposable_domains: Vec::new(),
            free_mail_domains: Vec::new(),
            use_builtin_lists: true,
            free_mail: FreeMailPolicy::Reject,
        }
    }
}

/// Whether a free-mail address disqualifies a lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FreeMailPolicy {
    /// B2B default: a personal mailbox is not a company lead.
    Reject,
    /// Let it through; the domain is still reported in the result.
    Allow,
}

/// One failed criterion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reason {
    /// Stable machine-readable code, e.g. `score_below_threshold`.
    pub code: &'static str,
    /// The contact property concerned.
    pub field: String,
    /// What is wrong, in words a marketer understands.
    pub message: String,
}

/// The outcome of checking one contact.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Every criterion passed.
    Valid {
        /// The normalized (trimmed, lower-case) email address.
        email: String,
        /// The email's domain.
        email_domain: String,
        /// The parsed score.
        score: f64,
    },
    /// At least one criterion failed; all failures are listed.
    Invalid(Vec<Reason>),
}

/// Checks `properties` (a HubSpot contact's property map) against `config`.
pub fn check(config: &Config, properties: &Map<String, Value>) -> Verdict {
    let mut reasons = Vec::new();
    let text = |name: &str| -> Option<String> {
        match properties.get(name) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::Bool(b)) => Some(b.to_string()),
            _ => None,
        }
    };

    let stage = text("lifecyclestage");
    if !stage.as_deref().is_some_and(|s| config.lifecycle_stages.iter().any(|want| want.eq_ignore_ascii_case(s))) {
        reasons.push(Reason {
            code: "not_mql",
            field: "lifecyclestage".to_string(),
            message: format!(
                "lifecycle stage is {}, expected {}",
                stage.as_deref().map_or("unset".to_string(), |s| format!("'{s}'")),
                config.lifecycle_stages.join(" or ")
            ),
        });
    }

    for field in &config.required_fields {
        if text(field).is_none() {
            reasons.push(Reason {
                code: "missing_field",
                field: field.clone(),
                message: format!("required field '{field}' is missing or blank"),
            });
        }
    }

    let mut normalized = None;
    if let Some(raw) = text("email") {
        match parse_email(&raw) {
            Err(problem) => reasons.push(Reason {
                code: "invalid_email",
                field: "email".to_string(),
                message: format!("'{raw}' is not a valid email address: {problem}"),
            }),
            Ok((email, domain)) => {
                if let Some(listed) =
                    listed_domain(&domain, &config.disposable_domains, config.use_builtin_lists.then_some(DISPOSABLE))
                {
                    reasons.push(Reason {
                        code: "disposable_email_domain",
                        field: "email".to_string(),
                        message: format!("{listed} is a disposable email domain"),
                    });
                } else if config.free_mail == FreeMailPolicy::Reject
                    && let Some(listed) =
                        listed_domain(&domain, &config.free_mail_domains, config.use_builtin_lists.then_some(FREE_MAIL))
                {
                    reasons.push(Reason {
                        code: "free_mail_domain",
                        field: "email".to_string(),
                        message: format!("{listed} is a free-mail domain, not a company address"),
                    });
                }
                normalized = Some((email, domain));
            }
        }
    }

    let score = match text(&config.score_property) {
        None => {
            reasons.push(Reason {
                code: "missing_score",
                field: config.score_property.clone(),
                message: format!("score property '{}' is not set", config.score_property),
            });
            None
        }
        Some(raw) => match raw.parse::<f64>() {
            Ok(score) if score.is_finite() => {
                if score < config.min_score {
                    reasons.push(Reason {
                        code: "score_below_threshold",
                        field: config.score_property.clone(),
                        message: format!("score {score} is below the MQL threshold of {}", config.min_score),
                    });
                }
                Some(score)
            }
            _ => {
                reasons.push(Reason {
                    code: "invalid_score",
                    field: config.score_property.clone(),
                    message: format!("score '{raw}' is not a number"),
                });
                None
            }
        },
    };

    match (reasons.is_empty(), normalized, score) {
        (true, Some((email, email_domain)), Some(score)) => Verdict::Valid { email, email_domain, score },
        (true, None, _) => Verdict::Invalid(vec![Reason {
            code: "missing_field",
            field: "email".to_string(),
            message: "an email address is needed to hand a lead to sales".to_string(),
        }]),
        _ => Verdict::Invalid(reasons),
    }
}

/// Splits and checks an address the way mail systems accept it in practice:
/// a dot-atom local part and a DNS host name with an alphabetic top-level
/// domain. Quoted local parts and IP-literal domains are refused; no company
/// lead uses them. Returns the lower-cased address and its domain.
///
/// # Errors
///
/// Returns what is wrong with the address, in words.
pub fn parse_email(raw: &str) -> Result<(String, String), String> {
    let email = raw.trim();
    if email.len() > 254 {
        return Err("longer than 254 characters".to_string());
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Err("no '@'".to_string());
    };
    if local.is_empty() {
        return Err("nothing before the '@'".to_string());
    }
    if local.len() > 64 {
        return Err("the part before the '@' is longer than 64 characters".to_string());
    }
    const ATEXT: &str = "!#$%&'*+/=?^_`{|}~-";
    if let Some(bad) = local.chars().find(|c| !(c.is_ascii_alphanumeric() || ATEXT.contains(*c) || *c == '.')) {
        return Err(format!("'{bad}' is not allowed before the '@'"));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err("misplaced '.' before the '@'".to_string());
    }
    let domain = domain.to_ascii_lowercase();
    if domain.is_empty() {
        return Err("no domain after the '@'".to_string());
    }
    if domain.len() > 253 {
        return Err("domain longer than 253 characters".to_string());
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err(format!("domain '{domain}' has no top-level domain"));
    }
    for label in &labels {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("domain '{domain}' has an empty or over-long label"));
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return Err(format!("domain '{domain}' has an invalid label '{label}'"));
        }
    }
    let tld = labels[labels.len() - 1];
    if !(tld.len() >= 2 && (tld.chars().all(|c| c.is_ascii_alphabetic()) || tld.starts_with("xn--"))) {
        return Err(format!("'{tld}' is not a top-level domain"));
    }
    Ok((format!("{local}@{domain}").to_ascii_lowercase(), domain))
}

/// The listed domain that `domain` is, or is a subdomain of.
fn listed_domain<'a>(domain: &'a str, configured: &[String], builtin: Option<&[&str]>) -> Option<&'a str> {
    let mut candidate = domain;
    loop {
        let hit = configured.iter().any(|d| d.trim().eq_ignore_ascii_case(candidate))
            || builtin.is_some_and(|list| list.contains(&candidate));
        if hit {
            return Some(candidate);
        }
        let (_, parent) = candidate.split_once('.')?;
        if !parent.contains('.') {
            return None;
        }
        candidate = parent;
    }
}

/// Throwaway-address providers (built-in list; extend with `disposable_domains`).
pub const DISPOSABLE: &[&str] = &[
    "10minutemail.com",
    "20minutemail.com",
    "33mail.com",
    "anonaddy.me",
    "burnermail.io",
    "discard.email",
    "dispostable.com",
    "emailondeck.com",
    "fakeinbox.com",
    "getairmail.com",
    "getnada.com",
    "guerrillamail.com",
    "guerrillamail.net",
    "guerrillamail.org",
    "harakirimail.com",
    "incognitomail.org",
    "mailcatch.com",
    "maildrop.cc",
    "mailinator.com",
    "mailinator.net",
    "mailnesia.com",
    "mintemail.com",
    "mohmal.com",
    "mytemp.email",
    "sharklasers.com",
    "spamgourmet.com",
    "temp-mail.org",
    "tempail.com",
    "tempmail.com",
    "tempmail.dev",
    "tempmailo.com",
    "tempr.email",
    "throwawaymail.com",
    "trashmail.com",
    "trashmail.de",
    "yopmail.com",
    "yopmail.fr",
    "moakt.com",
    "spambox.us",
    "mailpoof.com",
];

/// Personal mailbox providers (built-in list; extend with `free_mail_domains`).
pub const FREE_MAIL: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "yahoo.com",
    "yahoo.co.uk",
    "yahoo.fr",
    "ymail.com",
    "hotmail.com",
    "hotmail.co.uk",
    "hotmail.fr",
    "outlook.com",
    "live.com",
    "msn.com",
    "aol.com",
    "icloud.com",
    "me.com",
    "mac.com",
    "protonmail.com",
    "proton.me",
    "pm.me",
    "gmx.com",
    "gmx.de",
    "gmx.net",
    "web.de",
    "mail.com",
    "yandex.com",
    "yandex.ru",
    "mail.ru",
    "zoho.com",
    "fastmail.com",
    "tutanota.com",
    "qq.com",
    "163.com",
    "126.com",
    "naver.com",
    "orange.fr",
    "free.fr",
    "laposte.net",
    "libero.it",
    "btinternet.com",
    "comcast.net",
    "verizon.net",
    "att.net",
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn props(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn mql() -> Value {
        json!({
            "email": "  Dana.Scully@Acme-Corp.com ",
            "firstname": "Dana",
            "lastname": "Scully",
            "company": "Acme Corp",
            "lifecyclestage": "marketingqualifiedlead",
            "hubspotscore": "72",
        })
    }

    fn codes(verdict: &Verdict) -> Vec<&'static str> {
        match verdict {
            Verdict::Valid { .. } => vec![],
            Verdict::Invalid(reasons) => reasons.iter().map(|r| r.code).collect(),
        }
    }

    #[test]
    fn a_complete_mql_passes_with_normalized_email() {
        let verdict = check(&Config::default(), &props(mql()));
        assert_eq!(
            verdict,
            Verdict::Valid {
                email: "dana.scully@acme-corp.com".to_string(),
                email_domain: "acme-corp.com".to_string(),
                score: 72.0
            }
        );
    }

    #[test]
    fn score_threshold_is_inclusive_and_configurable() {
        let mut contact = mql();
        contact["hubspotscore"] = json!("49.5");
        assert_eq!(codes(&check(&Config::default(), &props(contact.clone()))), ["score_below_threshold"]);
        let config = Config { min_score: 49.5, ..Config::default() };
        assert!(matches!(check(&config, &props(contact)), Verdict::Valid { .. }));
    }

    #[test]
    fn score_is_read_from_the_configured_property() {
        let mut contact = mql();
        contact["custom_score"] = json!("10");
        let config = Config { score_property: "custom_score".into(), ..Config::default() };
        assert_eq!(codes(&check(&config, &props(contact))), ["score_below_threshold"]);
    }

    #[test]
    fn missing_and_malformed_scores_are_reasons() {
        let mut contact = mql();
        contact["hubspotscore"] = Value::Null;
        assert_eq!(codes(&check(&Config::default(), &props(contact.clone()))), ["missing_score"]);
        contact["hubspotscore"] = json!("high");
        assert_eq!(codes(&check(&Config::default(), &props(contact))), ["invalid_score"]);
    }

    #[test]
    fn every_missing_required_field_is_listed() {
        let mut contact = mql();
        contact["lastname"] = json!("   ");
        contact["company"] = Value::Null;
        let verdict = check(&Config::default(), &props(contact));
        let Verdict::Invalid(reasons) = verdict else { panic!("expected invalid") };
        let fields: Vec<_> = reasons.iter().map(|r| r.field.as_str()).collect();
        assert_eq!(fields, ["lastname", "company"]);
    }

    #[test]
    fn lifecycle_stage_must_be_mql() {
        let mut contact = mql();
        contact["lifecyclestage"] = json!("lead");
        let verdict = check(&Config::default(), &props(contact));
        let Verdict::Invalid(reasons) = verdict else { panic!("expected invalid") };
        assert_eq!(reasons[0].code, "not_mql");
        assert!(reasons[0].message.contains("'lead'"), "{}", reasons[0].message);
    }

    #[test]
    fn disposable_domains_and_their_subdomains_are_rejected() {
        for email in ["x@mailinator.com", "x@eu.mailinator.com"] {
            let mut contact = mql();
            contact["email"] = json!(email);
            assert_eq!(codes(&check(&Config::default(), &props(contact))), ["disposable_email_domain"], "{email}");
        }
    }

    #[test]
    fn configured_domain_lists_extend_the_builtin_ones() {
        let mut contact = mql();
        contact["email"] = json!("x@burner.example.com");
        let config = Config { disposable_domains: vec!["Example.com".into()], ..Config::default() };
        assert_eq!(codes(&check(&config, &props(contact.clone()))), ["disposable_email_domain"]);
        contact["email"] = json!("x@mailinator.com");
        let config = Config { use_builtin_lists: false, ..Config::default() };
        assert!(matches!(check(&config, &props(contact)), Verdict::Valid { .. }));
    }

    #[test]
    fn free_mail_is_rejected_unless_allowed() {
        let mut contact = mql();
        contact["email"] = json!("dana@gmail.com");
        assert_eq!(codes(&check(&Config::default(), &props(contact.clone()))), ["free_mail_domain"]);
        let config = Config { free_mail: FreeMailPolicy::Allow, ..Config::default() };
        assert!(matches!(check(&config, &props(contact)), Verdict::Valid { .. }));
    }

    #[test]
    fn email_syntax() {
        for ok in ["a@b.co", "first.last+tag@sub.example.org", "o'brien@xn--bcher-kva.example"] {
            assert!(parse_email(ok).is_ok(), "{ok} should be valid");
        }
        for bad in [
            "plainaddress",
            "@example.com",
            "a@",
            "a@localhost",
            "a..b@example.com",
            ".a@example.com",
            "a b@example.com",
            "a@-example.com",
            "a@example.c0m",
            "a@example..com",
            "a@[127.0.0.1]",
        ] {
            assert!(parse_email(bad).is_err(), "{bad} should be invalid");
        }
    }

    #[test]
    fn all_failures_are_reported_together() {
        let contact = json!({"email": "nope", "lifecyclestage": "subscriber", "hubspotscore": "5"});
        let got = codes(&check(&Config::default(), &props(contact)));
        assert_eq!(got, ["not_mql", "missing_field", "missing_field", "invalid_email", "score_below_threshold"]);
    }

    #[test]
    fn config_rejects_unknown_keys() {
        let err = serde_json::from_value::<Config>(json!({"min_scor": 10})).unwrap_err();
        assert!(err.to_string().contains("min_scor"));
    }
}
