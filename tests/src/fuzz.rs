//! Fuzz targets: what Handoff parses from people and the internet, each fed
//! arbitrary bytes. A target fails only by panicking, hanging or growing
//! without bound; errors are the expected answer to nonsense. The same
//! targets run under libFuzzer (`fuzz/`, the long runs in BENCHMARKS.md)
//! and, over the committed corpus and a few thousand mutations of it, in
//! `cargo test` (`tests/all/fuzzing.rs`).

use handoff::runtime::PluginRegistry;
use std::path::Path;
use std::sync::OnceLock;

/// A fuzz target: any bytes in, a panic or a hang the only failure.
pub type Target = fn(&[u8]);

/// Every target, by the name of its corpus directory (`fuzz/corpus/<name>`).
pub const TARGETS: &[(&str, Target)] = &[
    ("pipeline", pipeline),
    ("roster", roster),
    ("hubspot_webhook", hubspot_webhook),
    ("slack_interaction", slack_interaction),
    ("soql", soql),
    ("connectors_config", connectors_config),
];

/// The standard plugins, loaded once per process.
pub fn standard_plugins() -> &'static PluginRegistry {
    static REGISTRY: OnceLock<PluginRegistry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let runtime = crate::runtime(&crate::shared_cache_dir());
        let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
        let (registry, problems) = tokio.block_on(PluginRegistry::load(&runtime, &[]));
        assert!(problems.is_empty(), "standard plugins load: {problems:?}");
        registry
    })
}

/// A pipeline file: loading, validation and the line locator behind every
/// diagnostic's position.
pub fn pipeline(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match handoff::pipeline::check(Path::new("fuzz.json"), &text, standard_plugins()) {
        Ok(prepared) => {
            let _ = handoff::pipeline::check_together(std::slice::from_ref(&prepared), None);
        }
        Err(diagnostics) => {
            for d in diagnostics {
                let _ = d.to_string();
            }
        }
    }
}

/// A roster file, and what pipelines name in it.
pub fn roster(data: &[u8]) {
    if let Ok(roster) = handoff::roster::RosterFile::parse(&String::from_utf8_lossy(data)) {
        let reference = handoff::roster::Reference { pointer: "/x".into(), kind: "team".into(), id: "emea".into() };
        let _ = roster.dangling(&reference);
    }
}

/// A HubSpot webhook: the body as intake parses it (events, ids, leads),
/// and the signature checks over it with the first line as headers.
pub fn hubspot_webhook(data: &[u8]) {
    use handoff::connectors::hubspot;
    let (head, body) = split_head(data);
    let mut headers = head.split('|');
    let (timestamp, signature) = (headers.next().unwrap_or_default(), headers.next().unwrap_or_default());
    let _ = hubspot::verify_v3(
        "secret",
        "POST",
        "https://handoff.example/webhooks/hubspot?a=%20b",
        body,
        timestamp,
        signature,
        1_795_000_000_000,
    );
    let _ = hubspot::verify_v2("secret", "POST", "https://handoff.example/webhooks/hubspot", body, signature);
    let _ = hubspot::verify_v1("secret", body, signature);
    if let Ok((events, _)) = handoff::server::hubspot_events(body, 1_795_000_000_000) {
        for event in &events {
            let _ = handoff::server::hubspot_identity(event);
        }
    }
}

/// A Slack interaction: the signature check and the form body's payload.
pub fn slack_interaction(data: &[u8]) {
    let (head, body) = split_head(data);
    let mut headers = head.split('|');
    let (timestamp, signature) = (headers.next().unwrap_or_default(), headers.next().unwrap_or_default());
    let _ = handoff::connectors::slack::verify_signature("secret", timestamp, signature, body, 1_795_000_000);
    let _ = handoff::server::slack_interaction(body);
}

/// A SOQL query, as the Salesforce emulator parses it.
pub fn soql(data: &[u8]) {
    let _ = handoff_emulators::soql::parse(&String::from_utf8_lossy(data));
}

/// The connector settings file (TOML) `--config` reads.
pub fn connectors_config(data: &[u8]) {
    if let Ok(mut config) = toml::from_str::<handoff::connectors::ConnectorsConfig>(&String::from_utf8_lossy(data)) {
        config.apply_env(|_| None);
        let _ = config.missing();
    }
}

/// The first line (headers, for the signature targets) and the rest.
fn split_head(data: &[u8]) -> (String, &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(end) => (String::from_utf8_lossy(&data[..end]).into_owned(), &data[end + 1..]),
        None => (String::new(), data),
    }
}

/// Mutations of `seed` for the smoke run: deterministic for a given
/// `round`, in the spirit of libFuzzer's (bytes flipped, inserted, deleted,
/// repeated; structural characters spliced in).
pub fn mutate(seed: &[u8], round: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(round);
    let mut data = seed.to_vec();
    const INTERESTING: &[&[u8]] = &[
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"",
        b":",
        b",",
        b"\\",
        b"\n",
        b"null",
        b"-1",
        b"1e999",
        b"18446744073709551616",
        b"\"\\u0000\"",
        b"[[[[[[[[",
        b"}}}}",
        b"\xff",
        b"%",
        b"=",
        b"&",
        b"'",
        b"#",
        b"/",
        b"~",
    ];
    for _ in 0..rng.usize(1..=8) {
        let at = if data.is_empty() { 0 } else { rng.usize(0..=data.len()) };
        match rng.u8(0..6) {
            0 if at < data.len() => data[at] ^= 1 << rng.u8(0..8),
            1 => data.insert(at.min(data.len()), rng.u8(..)),
            2 if at < data.len() => {
                let end = (at + rng.usize(1..=16)).min(data.len());
                data.drain(at..end);
            }
            3 => {
                let piece = INTERESTING[rng.usize(0..INTERESTING.len())];
                data.splice(at..at, piece.iter().copied());
            }
            4 if at < data.len() => {
                let end = (at + rng.usize(1..=32)).min(data.len());
                let chunk = data[at..end].to_vec();
                for _ in 0..rng.usize(1..=64) {
                    data.splice(at..at, chunk.iter().copied());
                }
            }
            _ => {
                let len = data.len();
                data.truncate(rng.usize(0..=len));
            }
        }
    }
    data
}
