//! Project automation: `cargo xtask check` enforces the layering rules of ARCHITECTURE.md and the tidy rules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

/// The workspace's layers: every workspace crate with the workspace crates it may depend on (normal dependencies;
/// dev-dependencies may test across). A crate may only name crates listed above it, so the layering is acyclic by
/// construction, and a crate missing from the list fails the check.
const LAYERS: &[(&str, &[&str])] = &[
    // Contracts and formats: no workspace dependency.
    ("bedrock-wire", &[]),
    ("chat-template", &[]),
    ("model-registry", &[]),
    ("model-convert", &[]),
    ("infer-models", &[]),
    ("infer-constraint", &[]),
    // Built on the formats.
    ("model-folder", &["chat-template"]),
    ("model-synth", &["chat-template"]),
    // The import pipeline, the agent, the engine.
    (
        "bedrock-import",
        &["bedrock-wire", "chat-template", "model-folder", "model-registry"],
    ),
    ("converse-agent", &["bedrock-wire", "chat-template", "model-registry"]),
    // The engine compiles grammars (`chat_template::grammar` writes them for the server); it does not read templates.
    ("infer-engine", &["infer-constraint", "infer-models"]),
    // The local Bedrock: the engine behind the wire contract (never the model families directly).
    (
        "bedrock-server",
        &[
            "bedrock-wire",
            "chat-template",
            "infer-engine",
            "model-folder",
            "model-registry",
        ],
    ),
    // The agent's MCP tools, over the agent's tool interface.
    ("mcp-tools", &["converse-agent"]),
    // The web chat: the registry, the agent and the import pipeline behind one router (the binary mounts it).
    (
        "web-ui",
        &["bedrock-import", "converse-agent", "model-folder", "model-registry"],
    ),
    // Test helpers: a dev-dependency only (checked below).
    ("test-support", &["model-synth"]),
    // The binary: every shipped crate, never test-support.
    (
        "cmi",
        &[
            "bedrock-wire",
            "chat-template",
            "model-registry",
            "model-convert",
            "model-synth",
            "model-folder",
            "bedrock-import",
            "converse-agent",
            "infer-engine",
            "bedrock-server",
            "mcp-tools",
            "web-ui",
        ],
    ),
    ("xtask", &[]),
];

/// Forbidden third-party dependencies per crate: `(crate, forbidden prefix, transitive?)`.
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
    ("model-synth", &["tokio", "axum", "candle-", "aws-sdk-"], true),
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
        &["tokenizers", "tokio", "hyper", "axum", "aws-sdk-"],
        false,
    ),
    ("infer-engine", &["axum", "hyper", "aws-sdk-", "aws-config"], true),
    ("bedrock-server", &["clap", "indicatif"], false),
    // The web chat: served by whichever server mounts it, never the engine or the server itself.
    ("web-ui", &["candle-", "clap", "bedrock-server", "infer-"], true),
    ("web-ui", &["indicatif"], false),
];

/// Only the binary and xtask may use these.
const BINARY_ONLY: &[&str] = &["anyhow", "clap", "tracing-subscriber", "indicatif"];

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let result = match task.as_str() {
        "check" => check_layering().and_then(|()| module_cycles()).and_then(|()| tidy()),
        "check-layering" => check_layering(),
        "check-modules" => module_cycles(),
        "tidy" => tidy(),
        _ => {
            eprintln!("usage: cargo xtask (check | check-layering | check-modules | tidy)");
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
        match LAYERS.iter().position(|(k, _)| k == name) {
            None => problems.push(format!(
                "{name} is not in xtask's LAYERS: add it with the crates it may use"
            )),
            Some(at) => {
                let allowed = LAYERS[at].1;
                for dep in &direct {
                    let dep_name = &name_of[*dep];
                    if !workspace.contains(*dep) {
                        continue;
                    }
                    if !allowed.contains(&dep_name.as_str()) {
                        problems.push(format!(
                            "{name} depends on {dep_name}; its layer allows only [{}]",
                            allowed.join(", ")
                        ));
                    }
                }
                for a in allowed {
                    if !LAYERS[..at].iter().any(|(k, _)| k == a) {
                        problems.push(format!("LAYERS: {name} names {a}, which is not listed above it"));
                    }
                }
            }
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

/// No crate's top-level modules import each other in a cycle.
///
/// The graph is read from the source, not the compiler: a top-level module `a` (its file and folder) depends on `b`
/// when its code names `crate::b` (also inside `use crate::{…}` groups, and `super::b` from `a`'s own file), or a
/// crate-root item that `lib.rs` re-exports from `b`. Comments and `#[cfg(test)]` modules are left out: tests may
/// reach across. This is sound for the code as written here: every cross-module path goes through `crate::` or
/// `super::` (no glob re-exports at the root are followed, so a module reached only through one is missed).
fn module_cycles() -> Result<()> {
    let root = workspace_root();
    let mut problems = Vec::new();
    let mut crates = 0;
    for entry in std::fs::read_dir(root.join("crates")).context("reading crates/")? {
        let src = entry?.path().join("src");
        let top = ["lib.rs", "main.rs"].iter().map(|f| src.join(f)).find(|p| p.is_file());
        let Some(top) = top else { continue };
        crates += 1;
        let graph = module_graph(&src, &top)?;
        for cycle in cycles(&graph) {
            problems.push(format!(
                "{}: modules {} import each other",
                src.parent()
                    .and_then(|p| p.file_name())
                    .and_then(|n| n.to_str())
                    .unwrap_or("?"),
                cycle.join(" → ")
            ));
        }
    }
    if problems.is_empty() {
        println!("modules: ok (no cycles among the top-level modules of {crates} crates)");
        Ok(())
    } else {
        bail!("module cycles:\n  {}", problems.join("\n  "))
    }
}

/// The crate root's text without comments and `#[cfg(test)]` items, and the top-level modules it declares.
fn code_of(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = String::new();
    let mut skip_next_item = false;
    let mut depth_at_skip: Option<i32> = None;
    let mut depth = 0i32;
    for line in text.lines() {
        let code = match line.find("//") {
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        };
        let trimmed = code.trim();
        if trimmed.starts_with("#[cfg(test)]") {
            skip_next_item = true;
            continue;
        }
        let opens = code.matches('{').count() as i32;
        let closes = code.matches('}').count() as i32;
        if skip_next_item && !trimmed.is_empty() && !trimmed.starts_with("#[") {
            skip_next_item = false;
            // `mod tests;` (one line) or an item with a body.
            if opens > closes {
                depth_at_skip = Some(depth);
            }
            depth += opens - closes;
            continue;
        }
        depth += opens - closes;
        if let Some(d) = depth_at_skip {
            if depth <= d {
                depth_at_skip = None;
            }
            continue;
        }
        out.push_str(code);
        out.push('\n');
    }
    Ok(out)
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first path segment of each item of a `{…}` group starting at `s` (just after the `{`).
fn group_heads(s: &str) -> Vec<&str> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut at_item = true;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => at_item = true,
            c if at_item && depth == 0 && !c.is_whitespace() => {
                heads.push(ident_at(&s[i..]));
                at_item = false;
            }
            _ => {}
        }
    }
    heads
}

/// Top-level module → the top-level modules it names.
fn module_graph(src: &Path, top: &Path) -> Result<BTreeMap<String, BTreeSet<String>>> {
    let root_code = code_of(top)?;
    let mut modules = BTreeSet::new();
    let mut reexports: BTreeMap<String, String> = BTreeMap::new();
    for line in root_code.lines() {
        let t = line.trim();
        let t = t
            .strip_prefix("pub(crate) ")
            .or_else(|| t.strip_prefix("pub "))
            .unwrap_or(t);
        if let Some(rest) = t.strip_prefix("mod ") {
            modules.insert(ident_at(rest).to_string());
        }
    }
    // `pub use m::{A, B}` / `pub use m::A` at the root: `crate::A` means module `m`.
    let mut rest = root_code.as_str();
    while let Some(i) = rest.find("use ") {
        let after = &rest[i + 4..];
        let head = ident_at(after);
        if modules.contains(head)
            && let Some(tail) = after[head.len()..].strip_prefix("::")
        {
            let names: Vec<&str> = match tail.strip_prefix('{') {
                Some(group) => group_heads(group),
                None => vec![tail.rsplit("::").next().map(ident_at).unwrap_or_default()],
            };
            for n in names {
                reexports.insert(n.to_string(), head.to_string());
            }
        }
        rest = after;
    }
    let mut graph = BTreeMap::new();
    for m in &modules {
        let mut files = Vec::new();
        for f in [src.join(format!("{m}.rs")), src.join(m).join("mod.rs")] {
            if f.is_file() {
                files.push(f);
            }
        }
        if src.join(m).is_dir() {
            walk(&src.join(m), &mut |p| {
                // `tests.rs` files are `#[cfg(test)] mod tests;` (the workspace's convention).
                if p.extension().is_some_and(|e| e == "rs") && !p.ends_with("mod.rs") && !p.ends_with("tests.rs") {
                    files.push(p.to_path_buf());
                }
            })?;
        }
        let mut deps = BTreeSet::new();
        for f in &files {
            let code = code_of(f)?;
            let own_file = f == &src.join(format!("{m}.rs")) || f == &src.join(m).join("mod.rs");
            let mut targets = Vec::new();
            for (prefix, allowed) in [("crate::", true), ("super::", own_file)] {
                if !allowed {
                    continue;
                }
                for (i, _) in code.match_indices(prefix) {
                    if i > 0 && code[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                        continue;
                    }
                    let after = &code[i + prefix.len()..];
                    match after.strip_prefix('{') {
                        Some(group) => targets.extend(group_heads(group)),
                        None => targets.push(ident_at(after)),
                    }
                }
            }
            for t in targets {
                let target = if modules.contains(t) {
                    Some(t.to_string())
                } else {
                    reexports.get(t).cloned()
                };
                if let Some(t) = target
                    && &t != m
                {
                    deps.insert(t);
                }
            }
        }
        graph.insert(m.clone(), deps);
    }
    Ok(graph)
}

/// The graph's cycles: each strongly connected component of more than one module, as a path through it.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Reachability by depth-first search from each module; small graphs (tens of modules), so quadratic is fine.
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_string()];
        while let Some(n) = stack.pop() {
            for d in graph.get(&n).into_iter().flatten() {
                if seen.insert(d.clone()) {
                    stack.push(d.clone());
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&String, BTreeSet<String>> = graph.keys().map(|k| (k, reach(k))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for m in graph.keys() {
        if done.contains(m) || !reached[m].contains(m) {
            continue;
        }
        let component: Vec<String> = graph
            .keys()
            .filter(|n| reached[m].contains(*n) && reached[*n].contains(m))
            .cloned()
            .collect();
        done.extend(component.iter().cloned());
        out.push(component);
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    fn crate_with(files: &[(&str, &str)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-modules-{}-{}", std::process::id(), files.len()));
        let _ = std::fs::remove_dir_all(&dir);
        for (name, text) in files {
            let p = dir.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        dir
    }

    #[test]
    fn a_cycle_through_a_group_a_reexport_or_super_is_found() {
        let src = crate_with(&[
            ("lib.rs", "mod a;\nmod b;\nmod c;\npub use c::Thing;\n"),
            ("a.rs", "//! a\nuse crate::{b::X, c};\n"),
            ("b/mod.rs", "//! b\nmod inner;\n"),
            ("b/inner.rs", "//! b's child\nfn f() -> crate::Thing { todo!() }\n"),
            (
                "c.rs",
                "//! c\n// crate::b in a comment is no edge\nuse super::a;\n#[cfg(test)]\nmod tests {\n    use crate::b;\n}\n",
            ),
        ]);
        let graph = module_graph(&src, &src.join("lib.rs")).unwrap();
        assert_eq!(graph["a"], BTreeSet::from(["b".to_string(), "c".to_string()]));
        assert_eq!(graph["b"], BTreeSet::from(["c".to_string()]));
        assert_eq!(graph["c"], BTreeSet::from(["a".to_string()]));
        assert_eq!(
            cycles(&graph),
            vec![vec!["a".to_string(), "b".to_string(), "c".to_string()]]
        );
    }

    #[test]
    fn a_layered_crate_has_no_cycle() {
        let src = crate_with(&[
            ("lib.rs", "mod a;\nmod b;\n"),
            ("a.rs", "//! a\nuse crate::b;\n"),
            ("b.rs", "//! b\n#[cfg(test)]\nmod tests;\n"),
            ("b/tests.rs", "use crate::a;\n"),
        ]);
        assert!(cycles(&module_graph(&src, &src.join("lib.rs")).unwrap()).is_empty());
    }
}
