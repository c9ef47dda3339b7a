//! Stays inside its run's limits while trying to hurt its neighbours; the
//! config's `mode` says how (`n` sizes it):
//! - `output`: emits one item of `n` bytes (a JSON string);
//! - `log`: logs `n` lines of 1 KiB at warn, and prints as many to stderr;
//! - `error`: fails fatal with an `n`-byte message;
//! - `port`: emits on an undeclared port whose name is `n` bytes;
//! - `panic`: panics with an `n`-byte message;
//! - `exit`: calls `exit(n)`;
//! - `deep`: recurses until its stack runs out;
//! - `hoard`: sets state keys of `n` bytes each until refused, and reports
//!   how many it kept and why it stopped.
use handoff_plugin::log::{Level, log};
use handoff_plugin::{Describe, Emit, NodeError, Plugin, Run, Value, emit, json, state};

struct Abuse;

#[allow(unconditional_recursion)] // runs until the stack runs out, on purpose
fn deep(depth: u64, pad: &mut [u8; 512]) -> u64 {
    pad[(depth % 512) as usize] = depth as u8;
    let mut next = [0u8; 512];
    next[0] = pad[0];
    deep(std::hint::black_box(depth + 1), &mut next) + u64::from(pad[1])
}

impl Plugin for Abuse {
    type Config = Value;

    fn describe() -> Describe {
        Describe {
            name: "abuse",
            version: "1.0.0",
            description: "test: harms its neighbours within its own limits",
            capabilities: &["state:read", "state:write"],
            config_schema: r#"{"type":"object","properties":{"mode":{"enum":["output","log","error","port","panic","exit","deep","hoard"]},"n":{"type":"integer","minimum":0}},"required":["mode"],"additionalProperties":false}"#,
            ..Describe::default()
        }
    }

    fn run(run: &Run<Value>, _: Value) -> Result<Vec<Emit>, NodeError> {
        let n = run.config["n"].as_u64().unwrap_or(0) as usize;
        match run.config["mode"].as_str().unwrap_or_default() {
            "output" => Ok(vec![emit("main", &Value::String("x".repeat(n.saturating_sub(2))))]),
            "log" => {
                let line = "y".repeat(1024);
                for i in 0..n {
                    log(Level::Warn, &format!("{i} {line}"));
                    eprintln!("{i} {line}");
                }
                Ok(vec![emit("main", &json!({"logged": n}))])
            }
            "error" => Err(NodeError::Fatal("e".repeat(n))),
            "port" => Ok(vec![Emit { port: "p".repeat(n), item: "{}".into() }]),
            "panic" => panic!("{}", "p".repeat(n)),
            "exit" => std::process::exit(n as i32),
            "deep" => Ok(vec![emit("main", &json!({"depth": deep(0, &mut [0; 512])}))]),
            "hoard" => {
                let value = format!("\"{}\"", "v".repeat(n.saturating_sub(2)));
                let mut kept = 0u64;
                let stopped = loop {
                    match state::set(&format!("k{kept}"), &value) {
                        Ok(()) => kept += 1,
                        Err(e) => break format!("{e:?}"),
                    }
                };
                Ok(vec![emit("main", &json!({"kept": kept, "stopped": stopped}))])
            }
            other => Err(NodeError::InvalidInput(format!("unknown mode {other}"))),
        }
    }
}

handoff_plugin::export!(Abuse);
