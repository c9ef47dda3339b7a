//! `handoff plugin new`: a buildable starter plugin in Rust, Python or
//! JavaScript, with the Handoff WIT package vendored under `wit/deps` and a
//! narrow world of its own, so it builds outside this repository.

use anyhow::{Result, bail};
use std::path::{Path, PathBuf};

/// The plugin's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust, on the vendored SDK.
    Rust,
    /// Python (componentize-py).
    Python,
    /// JavaScript (componentize-js).
    Js,
}

const WIT: [(&str, &str); 3] = [
    ("types.wit", include_str!("../../wit/types.wit")),
    ("capabilities.wit", include_str!("../../wit/capabilities.wit")),
    ("world.wit", include_str!("../../wit/world.wit")),
];

fn world(name: &str) -> String {
    format!(
        r#"package local:{name}@0.1.0;

/// This plugin's world: it imports only the capabilities it uses (add
/// `import handoff:plugin/state@0.1.1;` and so on as you need them, and
/// grant them on the pipeline node).
world plugin {{
    import handoff:plugin/log@0.1.1;
    import handoff:plugin/clock@0.1.1;

    use handoff:plugin/types@0.1.1.{{descriptor, context, emit, node-error}};

    export describe: func() -> descriptor;
    export run: func(ctx: context, item: string) -> result<list<emit>, node-error>;
}}
"#
    )
}

const SCHEMA: &str = r#"{"type": "object", "additionalProperties": false, "properties": {"tag": {"type": "string", "description": "Added to every item as `tag`."}}}"#;

/// The Rust SDK (`handoff-plugin`), vendored into a Rust starter: its
/// sources as in `plugins/sdk`, reading the WIT the starter vendors.
fn rust_sdk_files() -> Vec<(PathBuf, String)> {
    let lib = include_str!("../../plugins/sdk/src/lib.rs")
        .replace(r#"path: "wit","#, r#"path: "../wit/deps/handoff-plugin","#);
    vec![
        (
            "handoff-plugin/Cargo.toml".into(),
            r#"[package]
name = "handoff-plugin"
description = "The Handoff plugin SDK (vendored by `handoff plugin new`)"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
serde = { version = "1", features = ["derive"] }
serde_json = "1"
wit-bindgen = { version = "0.61", default-features = false, features = ["macros", "realloc"] }
"#
            .into(),
        ),
        ("handoff-plugin/src/lib.rs".into(), lib),
        ("handoff-plugin/src/contact.rs".into(), include_str!("../../plugins/sdk/src/contact.rs").into()),
        ("handoff-plugin/src/time.rs".into(), include_str!("../../plugins/sdk/src/time.rs").into()),
        ("handoff-plugin/src/rejection.rs".into(), include_str!("../../plugins/sdk/src/rejection.rs").into()),
        ("handoff-plugin/src/summary.rs".into(), include_str!("../../plugins/sdk/src/summary.rs").into()),
    ]
}

fn rust_files(name: &str) -> Vec<(PathBuf, String)> {
    let krate = name.replace('-', "_");
    let mut files = vec![
        (
            "Cargo.toml".into(),
            format!(
                r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

# A plugin is its own workspace (with the vendored SDK in it).
[workspace]

[lib]
crate-type = ["cdylib"]

[dependencies]
handoff-plugin = {{ path = "handoff-plugin" }}

[profile.release]
opt-level = "s"
lto = true
strip = "debuginfo"
"#
            ),
        ),
        (
            "src/lib.rs".into(),
            format!(
                r##"//! {name}: a Handoff plugin. It adds the configured `tag` to each item and
//! passes it on; replace `run` with your logic.

use handoff_plugin::log::{{Level, log}};
use handoff_plugin::{{Describe, Emit, NodeError, Plugin, Run, Value, clock, emit, json}};

struct Tagger;

impl Plugin for Tagger {{
    /// The node's config, parsed; use a struct deriving `Deserialize` for a
    /// typed one.
    type Config = Value;

    fn describe() -> Describe {{
        Describe {{
            name: "{name}",
            version: env!("CARGO_PKG_VERSION"),
            description: "Adds a tag to each item",
            config_schema: r#"{SCHEMA}"#,
            ..Describe::default()
        }}
    }}

    fn run(run: &Run<Value>, mut item: Value) -> Result<Vec<Emit>, NodeError> {{
        item["tag"] = run.config.get("tag").cloned().unwrap_or(json!("{name}"));
        item["tagged_at"] = json!(clock::now());
        log(Level::Info, &format!("{{}} tagged an item", run.ctx.node));
        // A capability call's error becomes the node's with `?`: an outage
        // is retried, a refusal is not.
        Ok(vec![emit("main", &item)])
    }}
}}

handoff_plugin::export!(Tagger);
"##
            ),
        ),
        (
            "README.md".into(),
            format!(
                "# {name}\n\nA Handoff plugin in Rust, on the Handoff plugin SDK (vendored in `handoff-plugin/`).\n\n```sh\nrustup target add wasm32-wasip2\ncargo build --release --target wasm32-wasip2\n# the component: target/wasm32-wasip2/release/{krate}.wasm\nmkdir -p ../my-plugins && cp target/wasm32-wasip2/release/{krate}.wasm ../my-plugins/\nhandoff --plugins ../my-plugins plugins\n```\n"
            ),
        ),
    ];
    files.extend(rust_sdk_files());
    files
}

fn python_files(name: &str) -> Vec<(PathBuf, String)> {
    vec![
        ("handoff_plugin.py".into(), include_str!("../../plugins/sdk/python/handoff_plugin.py").into()),
        (
            "app.py".into(),
            format!(
                r#""""{name}: a Handoff plugin. It adds the configured `tag` to each item and passes it on."""

import wit_world
from wit_world.imports import clock, log
from wit_world.imports.types import Context, Descriptor, Emit

from handoff_plugin import call, describe, emit, parse


class WitWorld(wit_world.WitWorld):
    def describe(self) -> Descriptor:
        return describe("{name}", "0.1.0", "Adds a tag to each item", config_schema='{SCHEMA}')

    def run(self, ctx: Context, item: str) -> list[Emit]:
        config, data = parse(ctx, item)
        data["tag"] = config.get("tag", "{name}")
        # call() turns a capability error into the node's: outages retried.
        data["tagged_at"] = call(clock.now)
        log.log(log.Level.INFO, f"{{ctx.node}} tagged an item")
        return [emit("main", data)]
"#
            ),
        ),
        (
            "README.md".into(),
            format!(
                "# {name}\n\nA Handoff plugin in Python; `handoff_plugin.py` holds the conveniences (descriptor, parsing, emitting, capability errors).\n\n```sh\npip install componentize-py==0.25.1\ncomponentize-py -d wit -w plugin componentize app -o {name}.wasm\nmkdir -p ../my-plugins && cp {name}.wasm ../my-plugins/\nhandoff --plugins ../my-plugins plugins\n```\n\nPython plugins need more memory than Rust ones: give the node `\"memory_mb\": 256`.\n"
            ),
        ),
    ]
}

fn js_files(name: &str) -> Vec<(PathBuf, String)> {
    vec![
        ("handoff-plugin.js".into(), include_str!("../../plugins/sdk/js/handoff-plugin.js").into()),
        (
            "plugin.js".into(),
            format!(
                r#"// {name}: a Handoff plugin. It adds the configured `tag` to each item and passes it on.

import {{ log }} from 'handoff:plugin/log@0.1.1';
import {{ now }} from 'handoff:plugin/clock@0.1.1';
import {{ call, describe as descriptor, emit, parse }} from './handoff-plugin.js';

export function describe() {{
  return descriptor({{
    name: '{name}',
    version: '0.1.0',
    description: 'Adds a tag to each item',
    configSchema: {SCHEMA},
  }});
}}

export function run(ctx, item) {{
  const {{ config, item: data }} = parse(ctx, item);
  data.tag = config.tag ?? '{name}';
  // call() turns a capability error into the node's: outages retried.
  data.tagged_at = Number(call(now));
  log('info', `${{ctx.node}} tagged an item`);
  return [emit('main', data)];
}}
"#
            ),
        ),
        (
            "package.json".into(),
            format!(
                r#"{{
  "name": "{name}",
  "version": "0.1.0",
  "private": true,
  "type": "module",
  "scripts": {{
    "build": "componentize-js plugin.js --wit wit -n plugin -d http -d fetch-event -o {name}.wasm"
  }},
  "devDependencies": {{
    "@bytecodealliance/componentize-js": "0.23.0"
  }}
}}
"#
            ),
        ),
        (
            "README.md".into(),
            format!(
                "# {name}\n\nA Handoff plugin in JavaScript (Node 20 works); `handoff-plugin.js` holds the conveniences (descriptor, parsing, emitting, capability errors).\n\n```sh\nnpm install\nnpm run build\nmkdir -p ../my-plugins && cp {name}.wasm ../my-plugins/\nhandoff --plugins ../my-plugins plugins\n```\n\nJavaScript plugins need more memory than Rust ones: give the node `\"memory_mb\": 256`.\n"
            ),
        ),
    ]
}

/// Writes a new plugin called `name` in `lang` into `dir`; returns the files
/// written.
///
/// # Errors
///
/// When the name is not a plugin name, or `dir` exists and is not empty.
pub fn create(name: &str, lang: Lang, dir: &Path) -> Result<Vec<PathBuf>> {
    if !crate::runtime::is_plugin_name(name) {
        bail!("'{name}' is not a plugin name: lower-case letters, digits and '-', starting with a letter");
    }
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!("{} exists and is not empty", dir.display());
    }
    let mut files: Vec<(PathBuf, String)> =
        WIT.iter().map(|(file, text)| (Path::new("wit/deps/handoff-plugin").join(file), text.to_string())).collect();
    if lang != Lang::Rust {
        // componentize-py and componentize-js keep every import of their
        // world: a narrow one of the plugin's own. Rust keeps only what it
        // calls, so the SDK's full `node` world serves.
        files.push(("wit/world.wit".into(), world(name)));
    }
    files.extend(match lang {
        Lang::Rust => rust_files(name),
        Lang::Python => python_files(name),
        Lang::Js => js_files(name),
    });
    let mut written = Vec::new();
    for (path, text) in files {
        let full = dir.join(&path);
        std::fs::create_dir_all(full.parent().expect("files have a directory"))?;
        std::fs::write(&full, text)?;
        written.push(full);
    }
    Ok(written)
}
