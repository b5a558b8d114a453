//! Project automation: `cargo xtask check` enforces the layering rules of ARCHITECTURE.md and the tidy rules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

/// Forbidden dependencies per crate: `(crate, forbidden prefix, transitive?)`.
/// A prefix ending in `-` matches a family (`candle-` matches every candle crate).
const RULES: &[(&str, &[&str], bool)] = &[
    (
        "bedrock-wire",
        &["tokio", "axum", "hyper", "candle-", "aws-sdk-", "aws-config"],
        true,
    ),
    (
        "chat-template",
        &["tokio", "axum", "candle-", "aws-sdk-", "aws-config"],
        true,
    ),
    (
        "model-folder",
        &["tokio", "axum", "candle-", "aws-sdk-", "aws-config"],
        true,
    ),
    ("model-registry", &["axum", "candle-", "aws-sdk-", "aws-config"], true),
    ("bedrock-import", &["candle-", "axum", "clap"], true),
    // Direct edges only for indicatif: hf-hub's async API always pulls it in (unused: its progress is turned off and
    // reported through our callback).
    ("bedrock-import", &["indicatif"], false),
    ("converse-agent", &["candle-", "axum", "clap", "indicatif"], true),
    // The MCP client: the agent's tools over the official SDK, nothing of the engine or the server.
    (
        "mcp-tools",
        &["candle-", "axum", "clap", "indicatif", "bedrock-server", "infer-"],
        true,
    ),
    // Direct edges only: candle-core 0.11 itself depends on `tokenizers`, which is no leak of ours.
    (
        "infer-models",
        &["tokenizers", "tokio", "hyper", "axum", "bedrock-wire", "aws-sdk-"],
        false,
    ),
    (
        "infer-engine",
        &["axum", "hyper", "bedrock-wire", "aws-sdk-", "aws-config"],
        true,
    ),
    ("bedrock-server", &["infer-models", "clap", "indicatif"], false),
];

/// Only the binary and xtask may use these.
const BINARY_ONLY: &[&str] = &["anyhow", "clap", "tracing-subscriber", "indicatif"];

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let result = match task.as_str() {
        "check" => check_layering().and_then(|()| tidy()),
        "check-layering" => check_layering(),
        "tidy" => tidy(),
        _ => {
            eprintln!("usage: cargo xtask (check | check-layering | tidy)");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Reads `cargo metadata` and fails on a forbidden edge (normal dependencies only; dev-dependencies may test across).
fn check_layering() -> Result<()> {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(workspace_root())
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let meta: Value = serde_json::from_slice(&out.stdout).context("parsing cargo metadata")?;
    let name_of: BTreeMap<String, String> = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["id"].as_str().unwrap_or_default().to_string(),
                p["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let workspace: BTreeSet<String> = meta["workspace_members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    // Normal (non-dev, non-build) dependency edges by package id.
    let mut edges: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for node in meta["resolve"]["nodes"].as_array().into_iter().flatten() {
        let id = node["id"].as_str().unwrap_or_default().to_string();
        let deps = node["deps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|k| k["kind"].is_null())
            })
            .filter_map(|d| d["pkg"].as_str().map(String::from))
            .collect();
        edges.insert(id, deps);
    }
    let matches = |name: &str, pat: &str| {
        if pat.ends_with('-') {
            name.starts_with(pat)
        } else {
            name == pat
        }
    };
    let mut problems = Vec::new();
    for id in &workspace {
        let name = &name_of[id];
        let direct: Vec<&String> = edges.get(id).into_iter().flatten().collect();
        if name != "cmi" && name != "xtask" && name != "test-support" {
            for dep in &direct {
                let dep_name = &name_of[*dep];
                if BINARY_ONLY.contains(&dep_name.as_str()) {
                    problems.push(format!(
                        "{name} depends on {dep_name}, which only the `cmi` binary may use"
                    ));
                }
            }
        }
        if name != "cmi" && name != "xtask" && direct.iter().any(|d| name_of[*d] == "test-support") {
            problems.push(format!("{name} depends on test-support outside [dev-dependencies]"));
        }
        for (krate, forbidden, transitive) in RULES {
            if krate != name {
                continue;
            }
            let reached: BTreeSet<String> = if *transitive {
                normal_tree(name)?
            } else {
                direct.iter().map(|d| name_of[*d].clone()).collect()
            };
            for dep_name in &reached {
                if let Some(pat) = forbidden.iter().find(|p| matches(dep_name, p)) {
                    problems.push(format!("{name} must not depend on {pat} (reaches {dep_name})"));
                }
            }
        }
    }
    if problems.is_empty() {
        println!("layering: ok ({} workspace crates)", workspace.len());
        Ok(())
    } else {
        bail!("layering rules broken:\n  {}", problems.join("\n  "))
    }
}

/// Every package `name` reaches through normal dependencies, with features resolved for `name` alone.
///
/// `cargo metadata`'s resolve graph unifies features across the whole workspace (the SDK crates turn on tokio in
/// shared crates, for example), so it would report edges this crate does not have; `cargo tree -p` does not.
fn normal_tree(name: &str) -> Result<BTreeSet<String>> {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree", "-p", name, "-e", "normal", "--prefix", "none", "--format", "{p}", "--locked",
        ])
        .current_dir(workspace_root())
        .output()
        .context("running cargo tree")?;
    if !out.status.success() {
        bail!("cargo tree -p {name} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect())
}

/// Every Rust file opens with a `//!` line that says what it is.
fn tidy() -> Result<()> {
    let root = workspace_root();
    let mut bad = Vec::new();
    let mut count = 0;
    for top in ["crates", "xtask"] {
        walk(&root.join(top), &mut |path| {
            if path.extension().is_some_and(|e| e == "rs") {
                count += 1;
                let text = std::fs::read_to_string(path).unwrap_or_default();
                if !text.starts_with("//!") {
                    bad.push(path.strip_prefix(&root).unwrap_or(path).display().to_string());
                }
            }
        })?;
    }
    if bad.is_empty() {
        println!("tidy: ok ({count} files open with //!)");
        Ok(())
    } else {
        bail!("files without a leading `//!` line:\n  {}", bad.join("\n  "))
    }
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with('.') || name == "target" || name == "corpus" || name == "fixtures" {
            continue;
        }
        if path.is_dir() {
            walk(&path, f)?;
        } else {
            f(&path);
        }
    }
    Ok(())
}
