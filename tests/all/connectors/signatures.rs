//! Webhook and interactivity signatures against the providers' published
//! examples, and fresh signatures including expired timestamps.

use handoff::connectors::hubspot::{self, SignatureError};
use handoff::connectors::slack;

const HUBSPOT_SECRET: &str = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy";

#[test]
fn hubspot_v1_documented_example() {
    let body = br#"[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM","changeFlag":"NEW","appId":54321}]"#;
    let signature = "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de";
    assert_eq!(hubspot::verify_v1(HUBSPOT_SECRET, body, signature), Ok(()));
    assert_eq!(hubspot::verify_v1("another-secret", body, signature), Err(SignatureError::Mismatch));
    assert_eq!(hubspot::verify_v1(HUBSPOT_SECRET, &body[1..], signature), Err(SignatureError::Mismatch));
}

#[test]
fn hubspot_v2_documented_examples() {
    let uri = "https://www.example.com/webhook_uri";
    let get = "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e";
    assert_eq!(hubspot::verify_v2(HUBSPOT_SECRET, "GET", uri, b"", get), Ok(()));
    let post = "9569219f8ba981ffa6f6f16aa0f48637d35d728c7e4d93d0d52efaa512af7900";
    assert_eq!(hubspot::verify_v2(HUBSPOT_SECRET, "POST", uri, br#"{"example_field":"example_value"}"#, post), Ok(()));
    assert_eq!(
        hubspot::verify_v2(
            HUBSPOT_SECRET,
            "POST",
            "https://www.example.com/other",
            br#"{"example_field":"example_value"}"#,
            post
        ),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn hubspot_v3_sdk_vector_and_fresh_signatures() {
    // The vector from HubSpot's Python SDK tests (its body uses single quotes).
    let now = 1_693_657_560_000 + 1000;
    let body = b"{'example_field':'example_value'}";
    let sig = "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y=";
    assert_eq!(
        hubspot::verify_v3(
            HUBSPOT_SECRET,
            "POST",
            "https://www.example.com/webhook_uri",
            body,
            "1693657560000",
            sig,
            now
        ),
        Ok(())
    );

    let uri = "https://handoff.example.com/webhooks/hubspot?portal=42";
    let events = br#"[{"eventId":3029365631,"subscriptionType":"contact.propertyChange","objectId":847297356,"propertyName":"lifecyclestage","propertyValue":"marketingqualifiedlead"}]"#;
    let ts = 1_795_000_000_000;
    let fresh = hubspot::sign_v3("app-secret", "POST", uri, events, ts);
    assert_eq!(hubspot::verify_v3("app-secret", "POST", uri, events, &ts.to_string(), &fresh, ts + 299_000), Ok(()));
    assert_eq!(
        hubspot::verify_v3("app-secret", "POST", uri, events, &ts.to_string(), &fresh, ts + 300_001),
        Err(SignatureError::Expired)
    );
    assert_eq!(
        hubspot::verify_v3("app-secret", "POST", uri, b"[]", &ts.to_string(), &fresh, ts),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        hubspot::verify_v3("app-secret", "POST", uri, events, &(ts + 1).to_string(), &fresh, ts),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        hubspot::verify_v3("app-secret", "POST", uri, events, "soon", &fresh, ts),
        Err(SignatureError::Missing("X-HubSpot-Request-Timestamp"))
    );
    // HubSpot signs over the URI with some escapes decoded.
    let encoded = "https://handoff.example.com/webhooks/hubspot%3Fportal=42";
    assert_eq!(hubspot::verify_v3("app-secret", "POST", encoded, events, &ts.to_string(), &fresh, ts), Ok(()));
}

#[test]
fn slack_published_example() {
    let secret = "8f742231b10e8888abcd99yyyzzz85a5";
    let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    let signature = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
    assert_eq!(slack::sign(secret, 1_531_420_618, body), signature);
    assert_eq!(slack::verify_signature(secret, "1531420618", signature, body, 1_531_420_618 + 60), Ok(()));
    assert_eq!(
        slack::verify_signature(secret, "1531420618", signature, body, 1_531_420_618 + 301),
        Err(SignatureError::Expired)
    );
    assert_eq!(
        slack::verify_signature(secret, "1531420618", signature, &body[..10], 1_531_420_618),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        slack::verify_signature(secret, "1531420618", "a2114d57", body, 1_531_420_618),
        Err(SignatureError::Missing("X-Slack-Signature"))
    );
}
