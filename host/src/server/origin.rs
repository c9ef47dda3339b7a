//! Cross-origin protection for `/api` and the dashboard: what a web page
//! the operator happens to visit can make their browser send here.
//!
//! The token rule (documented in SECURITY.md): with `HANDOFF_API_TOKEN` set,
//! `/api` wants `Authorization: Bearer`, which no other origin's page can
//! attach, and the dashboard's cookie is `SameSite=Strict`. Without a token
//! the server listens on loopback only, where the browser is the threat:
//! - the `Host` must name loopback, so a domain rebound to 127.0.0.1 reads
//!   nothing (DNS rebinding);
//! - a request that changes something (`POST`) must come from this origin:
//!   a foreign `Origin` or `Sec-Fetch-Site: cross-site` is refused, and a
//!   body must be `application/json`, which a page can send elsewhere only
//!   after a CORS preflight this server never grants.

use super::AppState;
use super::api::refuse;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;

/// Refuses what another origin's page could have sent (see the module).
pub(super) async fn same_origin_only(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    match refusal(request.method(), request.headers(), state.api_token.is_some()) {
        Some(why) => refuse(StatusCode::FORBIDDEN, "cross_origin", why),
        None => next.run(request).await,
    }
}

/// Why the request is refused, if it is.
fn refusal(method: &Method, headers: &HeaderMap, has_token: bool) -> Option<String> {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let host = text(header::HOST).unwrap_or_default();
    if !has_token && !is_loopback_host(host) {
        return Some(format!(
            "Host '{host}' is not loopback; without HANDOFF_API_TOKEN only http://127.0.0.1 or http://localhost is served"
        ));
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    if let Some(origin) = text(header::ORIGIN) {
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        if !origin_host.eq_ignore_ascii_case(host) {
            return Some(format!("a request from {origin} cannot change anything here"));
        }
    }
    if text(header::HeaderName::from_static("sec-fetch-site")).is_some_and(|s| s == "cross-site" || s == "same-site") {
        return Some("a request from another site cannot change anything here".into());
    }
    let has_body = text(header::CONTENT_LENGTH).is_some_and(|n| n.trim() != "0")
        || headers.contains_key(header::TRANSFER_ENCODING);
    let json = text(header::CONTENT_TYPE)
        .is_some_and(|t| t.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")));
    if has_body && !json {
        return Some("a request body must be Content-Type: application/json".into());
    }
    None
}

/// `localhost`, `127.x.x.x` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (header::HeaderName::from_static(k), v.parse().unwrap())).collect()
    }

    #[test]
    fn a_foreign_page_cannot_post_to_a_loopback_server() {
        let host = ("host", "127.0.0.1:8080");
        // What a page on another origin sends with fetch(..., {method: "POST", mode: "no-cors"}).
        let foreign = headers(&[
            host,
            ("origin", "https://evil.example"),
            ("content-type", "text/plain"),
            ("content-length", "2"),
        ]);
        assert!(refusal(&Method::POST, &foreign, false).unwrap().contains("evil.example"));
        let plain = headers(&[host, ("content-type", "text/plain"), ("content-length", "2")]);
        assert!(refusal(&Method::POST, &plain, false).unwrap().contains("application/json"));
        let fetched = headers(&[host, ("sec-fetch-site", "cross-site")]);
        assert!(refusal(&Method::POST, &fetched, false).is_some());
        // What `handoff retry` and curl send, and a same-origin page.
        assert_eq!(refusal(&Method::POST, &headers(&[host]), false), None);
        let same = headers(&[
            host,
            ("origin", "http://127.0.0.1:8080"),
            ("content-type", "application/json"),
            ("content-length", "2"),
        ]);
        assert_eq!(refusal(&Method::POST, &same, false), None);
        assert_eq!(refusal(&Method::GET, &headers(&[host, ("origin", "https://evil.example")]), false), None);
    }

    #[test]
    fn a_rebound_domain_reads_nothing_without_a_token() {
        assert!(refusal(&Method::GET, &headers(&[("host", "evil.example:8080")]), false).is_some());
        assert!(refusal(&Method::GET, &headers(&[]), false).is_some());
        for host in ["localhost:8080", "127.0.0.1", "[::1]:8080", "127.1.2.3:80", "LOCALHOST"] {
            assert_eq!(refusal(&Method::GET, &headers(&[("host", host)]), false), None, "{host}");
        }
        // With a token the bearer guards /api, behind any host name.
        assert_eq!(refusal(&Method::GET, &headers(&[("host", "handoff.acme.com")]), true), None);
    }
}
