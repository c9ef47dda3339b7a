//! `handoff plugin new`: a buildable starter plugin in Rust, Python or
//! JavaScript, with the Handoff WIT package vendored under `wit/deps` and a
//! narrow world of its own, so it builds outside this repository.

use anyhow::{Result, bail};
use std::path::{Path, PathBuf};

/// The plugin's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
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
/// `import handoff:plugin/state@0.1.0;` and so on as you need them, and
/// grant them on the pipeline node).
world plugin {{
    import handoff:plugin/log@0.1.0;
    import handoff:plugin/clock@0.1.0;

    use handoff:plugin/types@0.1.0.{{descriptor, context, emit, node-error}};

    export describe: func() -> descriptor;
    export run: func(ctx: context, item: string) -> result<list<emit>, node-error>;
}}
"#
    )
}

const SCHEMA: &str = r#"{"type": "object", "additionalProperties": false, "properties": {"tag": {"type": "string", "description": "Added to every item as `tag`."}}}"#;

fn rust_files(name: &str) -> Vec<(PathBuf, String)> {
    let krate = name.replace('-', "_");
    vec![
        (
            "Cargo.toml".into(),
            format!(
                r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

# A plugin is its own workspace.
[workspace]

[lib]
crate-type = ["cdylib"]

[dependencies]
serde_json = "1"
wit-bindgen = {{ version = "0.61", default-features = false, features = ["macros", "realloc"] }}

[profile.release]
opt-level = "s"
lto = true
strip = "debuginfo"

[lints.clippy]
too_many_arguments = "allow"
"#
            ),
        ),
        (
            "src/lib.rs".into(),
            format!(
                r##"//! {name}: a Handoff plugin. It adds the configured `tag` to each item and
//! passes it on; replace `run` with your logic.

use serde_json::{{Value, json}};

wit_bindgen::generate!({{ world: "plugin", path: "wit", generate_all }});
use handoff::plugin::log::{{Level, log}};

struct Plugin;

impl Guest for Plugin {{
    fn describe() -> Descriptor {{
        Descriptor {{
            name: "{name}".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Adds a tag to each item".into(),
            inputs: vec!["main".into()],
            outputs: vec!["main".into()],
            capabilities: vec![],
            config_schema: r#"{SCHEMA}"#.into(),
        }}
    }}

    fn run(ctx: Context, item: String) -> Result<Vec<Emit>, NodeError> {{
        let config: Value = serde_json::from_str(&ctx.config).unwrap_or_default();
        let mut item: Value = serde_json::from_str(&item).map_err(|e| NodeError::InvalidInput(format!("item is not JSON: {{e}}")))?;
        item["tag"] = config.get("tag").cloned().unwrap_or(json!("{name}"));
        item["tagged_at"] = json!(handoff::plugin::clock::now());
        log(Level::Info, &format!("{{}} tagged an item", ctx.node));
        Ok(vec![Emit {{ port: "main".into(), item: item.to_string() }}])
    }}
}}

export!(Plugin);
"##
            ),
        ),
        (
            "README.md".into(),
            format!(
                "# {name}\n\nA Handoff plugin in Rust.\n\n```sh\nrustup target add wasm32-wasip2\ncargo build --release --target wasm32-wasip2\n# the component: target/wasm32-wasip2/release/{krate}.wasm\nmkdir -p ../my-plugins && cp target/wasm32-wasip2/release/{krate}.wasm ../my-plugins/\nhandoff --plugins ../my-plugins plugins\n```\n"
            ),
        ),
    ]
}

fn python_files(name: &str) -> Vec<(PathBuf, String)> {
    vec![
        (
            "app.py".into(),
            format!(
                r#""""{name}: a Handoff plugin. It adds the configured `tag` to each item and passes it on."""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import clock, log
from wit_world.imports.types import Context, Descriptor, Emit, NodeError_InvalidInput


class WitWorld(wit_world.WitWorld):
    def describe(self) -> Descriptor:
        return Descriptor(
            name="{name}",
            version="0.1.0",
            description="Adds a tag to each item",
            inputs=["main"],
            outputs=["main"],
            capabilities=[],
            config_schema='{SCHEMA}',
        )

    def run(self, ctx: Context, item: str) -> list[Emit]:
        config = json.loads(ctx.config)
        try:
            data = json.loads(item)
        except ValueError as error:
            raise Err(NodeError_InvalidInput(f"item is not JSON: {{error}}"))
        data["tag"] = config.get("tag", "{name}")
        data["tagged_at"] = clock.now()
        log.log(log.Level.INFO, f"{{ctx.node}} tagged an item")
        return [Emit(port="main", item=json.dumps(data))]
"#
            ),
        ),
        (
            "README.md".into(),
            format!(
                "# {name}\n\nA Handoff plugin in Python.\n\n```sh\npip install componentize-py==0.25.1\ncomponentize-py -d wit -w plugin componentize app -o {name}.wasm\nmkdir -p ../my-plugins && cp {name}.wasm ../my-plugins/\nhandoff --plugins ../my-plugins plugins\n```\n"
            ),
        ),
    ]
}

fn js_files(name: &str) -> Vec<(PathBuf, String)> {
    vec![
        (
            "plugin.js".into(),
            format!(
                r#"// {name}: a Handoff plugin. It adds the configured `tag` to each item and passes it on.

import {{ log }} from 'handoff:plugin/log@0.1.0';
import {{ now }} from 'handoff:plugin/clock@0.1.0';

export function describe() {{
  return {{
    name: '{name}',
    version: '0.1.0',
    description: 'Adds a tag to each item',
    inputs: ['main'],
    outputs: ['main'],
    capabilities: [],
    configSchema: '{SCHEMA}',
  }};
}}

export function run(ctx, item) {{
  const config = JSON.parse(ctx.config);
  let data;
  try {{
    data = JSON.parse(item);
  }} catch (error) {{
    throw {{ tag: 'invalid-input', val: `item is not JSON: ${{error}}` }};
  }}
  data.tag = config.tag ?? '{name}';
  data.tagged_at = Number(now());
  log('info', `${{ctx.node}} tagged an item`);
  return [{{ port: 'main', item: JSON.stringify(data) }}];
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
                "# {name}\n\nA Handoff plugin in JavaScript (Node 20 works).\n\n```sh\nnpm install\nnpm run build\nmkdir -p ../my-plugins && cp {name}.wasm ../my-plugins/\nhandoff --plugins ../my-plugins plugins\n```\n"
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
    files.push(("wit/world.wit".into(), world(name)));
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
