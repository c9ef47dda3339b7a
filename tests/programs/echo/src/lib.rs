//! Emits its input back, shaped by config:
//! `{"port": "main", "copies": 1, "fail": null | "retryable" | "fatal" | "invalid",
//!   "fail_until_attempt": 0, "print": "text"}`.
//! With `fail_until_attempt: k`, attempts before k fail as retryable.
use serde_json::Value;

wit_bindgen::generate!({ world: "node", path: "../../../wit" });
use handoff::plugin::log::{Level, log};

struct Echo;

impl Guest for Echo {
    fn describe() -> Descriptor {
        Descriptor {
            name: "echo".into(),
            version: "1.0.0".into(),
            description: "test: emits its input".into(),
            inputs: vec!["main".into()],
            outputs: vec!["main".into(), "other".into()],
            capabilities: vec![],
            config_schema: r#"{"type":"object","properties":{"port":{"type":"string"},"copies":{"type":"integer","minimum":0},"fail":{"enum":["retryable","fatal","invalid"]},"fail_until_attempt":{"type":"integer"},"print":{"type":"string"},"probe":{"type":"boolean"}},"additionalProperties":false}"#.into(),
        }
    }

    fn run(ctx: Context, item: String) -> Result<Vec<Emit>, NodeError> {
        let config: Value = serde_json::from_str(&ctx.config).unwrap();
        if let Some(text) = config.get("print").and_then(Value::as_str) {
            println!("{text}");
            log(Level::Info, &format!("{} attempt {}", ctx.node, ctx.attempt));
        }
        if config.get("probe").and_then(Value::as_bool) == Some(true) {
            let probe = serde_json::json!({
                "fs": std::fs::read_dir("/").map(|d| d.count().to_string()).unwrap_or_else(|e| format!("error: {e}")),
                "env": std::env::vars().count(),
                "args": std::env::args().count(),
                "net": std::net::TcpStream::connect("127.0.0.1:5432").map(|_| "connected".to_string()).unwrap_or_else(|e| format!("error: {e}")),
                "stdin": std::io::read_to_string(std::io::stdin()).map(|s| s.len().to_string()).unwrap_or_else(|e| format!("error: {e}")),
            });
            return Ok(vec![Emit { port: "main".into(), item: probe.to_string() }]);
        }
        let until = config.get("fail_until_attempt").and_then(Value::as_u64).unwrap_or(0);
        if u64::from(ctx.attempt) < until {
            return Err(NodeError::Retryable(format!("not yet (attempt {})", ctx.attempt)));
        }
        match config.get("fail").and_then(Value::as_str) {
            Some("retryable") => return Err(NodeError::Retryable("told to fail".into())),
            Some("fatal") => return Err(NodeError::Fatal("told to fail".into())),
            Some("invalid") => return Err(NodeError::InvalidInput("told to fail".into())),
            _ => {}
        }
        let port = config.get("port").and_then(Value::as_str).unwrap_or("main").to_string();
        let copies = config.get("copies").and_then(Value::as_u64).unwrap_or(1);
        Ok((0..copies).map(|_| Emit { port: port.clone(), item: item.clone() }).collect())
    }
}

export!(Echo);
