//! Emits its input back, shaped by config:
//! `{"port": "main", "copies": 1, "fail": null | "retryable" | "fatal" | "invalid",
//!   "fail_until_attempt": 0, "print": "text"}`.
//! With `fail_until_attempt: k`, attempts before k fail as retryable.
use handoff_plugin::log::{Level, log};
use handoff_plugin::{Describe, Emit, NodeError, Plugin, Run, Value, emit, json};

struct Echo;

impl Plugin for Echo {
    type Config = Value;

    fn describe() -> Describe {
        Describe {
            name: "echo",
            version: "1.0.0",
            description: "test: emits its input",
            outputs: &["main", "other"],
            config_schema: r#"{"type":"object","properties":{"port":{"type":"string"},"copies":{"type":"integer","minimum":0},"fail":{"enum":["retryable","fatal","invalid"]},"fail_until_attempt":{"type":"integer"},"print":{"type":"string"},"probe":{"type":"boolean"}},"additionalProperties":false}"#,
            ..Describe::default()
        }
    }

    fn run(run: &Run<Value>, item: Value) -> Result<Vec<Emit>, NodeError> {
        let (ctx, config) = (&run.ctx, &run.config);
        if let Some(text) = config.get("print").and_then(Value::as_str) {
            println!("{text}");
            log(Level::Info, &format!("{} attempt {}", ctx.node, ctx.attempt));
        }
        if config.get("probe").and_then(Value::as_bool) == Some(true) {
            let probe = json!({
                "fs": std::fs::read_dir("/").map(|d| d.count().to_string()).unwrap_or_else(|e| format!("error: {e}")),
                "env": std::env::vars().count(),
                "args": std::env::args().count(),
                "net": std::net::TcpStream::connect("127.0.0.1:5432").map(|_| "connected".to_string()).unwrap_or_else(|e| format!("error: {e}")),
                "stdin": std::io::read_to_string(std::io::stdin()).map(|s| s.len().to_string()).unwrap_or_else(|e| format!("error: {e}")),
            });
            return Ok(vec![emit("main", &probe)]);
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
        let port = config.get("port").and_then(Value::as_str).unwrap_or("main");
        let copies = config.get("copies").and_then(Value::as_u64).unwrap_or(1);
        Ok((0..copies).map(|_| emit(port, &item)).collect())
    }
}

handoff_plugin::export!(Echo);
