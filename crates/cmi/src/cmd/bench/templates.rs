//! `cmi bench templates`: render the whole chat-template conformance corpus N times in-process and, in the same run,
//! time transformers' `apply_chat_template` on the same cases (the corpus's `render.py` helpers, in a venv this
//! command creates under the cache dir), then print the time per render of each and the ratio.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use chat_template::{ChatTemplate, RenderRequest, SpecialTokens};
use serde_json::Value;

use crate::ctx::Ctx;

const PY_BENCH: &str = include_str!("../../../../chat-template/bench/transformers_bench.py");
const DEFAULT_CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../chat-template/tests/corpus");

/// Arguments of `cmi bench templates`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Passes over the corpus for cmi (each pass renders all 264 cases).
    #[arg(long, default_value_t = 50)]
    iterations: usize,
    /// Passes over the corpus for transformers.
    #[arg(long, default_value_t = 5)]
    python_iterations: usize,
    /// The conformance corpus (manifest.json, templates/, conversations/, expected/, render.py).
    #[arg(long, default_value = DEFAULT_CORPUS)]
    corpus: PathBuf,
    /// Only time cmi (no venv, no Python).
    #[arg(long)]
    skip_python: bool,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

struct Case {
    id: String,
    template: usize,
    request: RenderRequest,
    expected: Option<Vec<u8>>,
}

fn read_json(p: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parse {}", p.display()))
}

pub(crate) async fn run(args: Args, ctx: &Ctx) -> Result<ExitCode> {
    let corpus = args.corpus.clone();
    if !corpus.join("manifest.json").is_file() {
        bail!(
            "{} holds no corpus (manifest.json); pass --corpus DIR",
            corpus.display()
        );
    }
    let manifest = read_json(&corpus.join("manifest.json"))?;
    let now = chat_template::chrono::NaiveDateTime::parse_from_str(
        manifest["fixed_now"].as_str().unwrap_or("2025-01-15T12:00:00"),
        "%Y-%m-%dT%H:%M:%S",
    )?;

    // Compile each template once (transformers caches compiled templates too).
    let mut names: Vec<String> = Vec::new();
    let mut templates: Vec<Option<ChatTemplate>> = Vec::new();
    for t in manifest["templates"].as_array().context("manifest: templates")? {
        let name = t["name"].as_str().context("template name")?.to_owned();
        let special = SpecialTokens::from_json(&t["special_tokens"]);
        let compiled = match t["template_file"].as_str() {
            Some(f) => Some(ChatTemplate::new(&std::fs::read_to_string(corpus.join(f))?, special)?),
            None => None,
        };
        names.push(name);
        templates.push(compiled);
    }
    let mut cases = Vec::new();
    for c in manifest["cases"].as_array().context("manifest: cases")? {
        let tname = c["template"].as_str().context("case template")?;
        let template = names.iter().position(|n| n == tname).context("case template unknown")?;
        let conv = read_json(&corpus.join(format!(
            "conversations/{}.json",
            c["conversation"].as_str().unwrap_or("")
        )))?;
        let mut request = RenderRequest::from_json(&conv)?;
        request.now = Some(now);
        let expected = match c["outcome"].as_str() {
            Some("text") => Some(std::fs::read(corpus.join(c["expected_file"].as_str().unwrap_or("")))?),
            _ => None,
        };
        cases.push(Case {
            id: c["id"].as_str().unwrap_or("").to_owned(),
            template,
            request,
            expected,
        });
    }

    // Correctness first: the figures are only worth printing if the renders are right.
    let mut wrong = Vec::new();
    for c in &cases {
        let got = templates[c.template].as_ref().map(|t| t.render(&c.request));
        let ok = match (&c.expected, got) {
            (Some(want), Some(Ok(out))) => out.as_bytes() == want.as_slice(),
            (None, Some(Err(_)) | None) => true,
            _ => false,
        };
        if !ok {
            wrong.push(c.id.clone());
        }
    }

    let mut per_template: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
    let start = Instant::now();
    for _ in 0..args.iterations {
        for c in &cases {
            let t0 = Instant::now();
            let r = templates[c.template].as_ref().map(|t| t.render(&c.request));
            std::hint::black_box(&r);
            let e = per_template.entry(names[c.template].as_str()).or_default();
            e.0 += t0.elapsed().as_secs_f64();
            e.1 += 1;
        }
    }
    let ours_s = start.elapsed().as_secs_f64();
    let ours_renders = args.iterations * cases.len();
    let ours_us = ours_s / ours_renders.max(1) as f64 * 1e6;

    let python = if args.skip_python {
        None
    } else {
        let venv = ctx.paths.cache_dir.join("venv-templates");
        let python = ensure_venv(&venv)?;
        let script = ctx.paths.cache_dir.join("transformers_bench.py");
        std::fs::write(&script, PY_BENCH).with_context(|| format!("write {}", script.display()))?;
        eprintln!(
            "timing transformers ({} passes over {} cases)...",
            args.python_iterations,
            cases.len()
        );
        let out = Command::new(&python)
            .arg(&script)
            .arg(&corpus)
            .arg(args.python_iterations.to_string())
            .env("TRANSFORMERS_VERBOSITY", "error")
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .with_context(|| format!("run {}", python.display()))?;
        if !out.status.success() {
            bail!("transformers bench failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .context("no JSON from the Python bench")?;
        Some(serde_json::from_str::<Value>(line)?)
    };

    let py_us = python.as_ref().and_then(|p| p["per_render_us"].as_f64());
    let ratio = py_us.map(|p| p / ours_us);
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    if args.json {
        let v = serde_json::json!({
            "cases": cases.len(), "wrong": wrong, "build": profile,
            "cmi": {"iterations": args.iterations, "renders": ours_renders, "seconds": ours_s, "per_render_us": ours_us},
            "transformers": python, "ratio": ratio,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "chat-template corpus: {} cases ({} wrong), cmi {profile} build",
            cases.len(),
            wrong.len()
        );
        for id in &wrong {
            println!("  WRONG {id}");
        }
        println!("{:<32} {:>14}", "template", "cmi µs/render");
        for (name, (s, n)) in &per_template {
            println!("{:<32} {:>14.1}", name, s / *n as f64 * 1e6);
        }
        println!("cmi:          {ours_us:>10.1} µs/render ({ours_renders} renders in {ours_s:.3} s)");
        if let Some(p) = &python {
            println!(
                "transformers: {:>10.1} µs/render ({} renders in {:.3} s; transformers {}, jinja2 {}, python {})",
                py_us.unwrap_or(f64::NAN),
                p["renders"],
                p["seconds"].as_f64().unwrap_or(f64::NAN),
                p["transformers"].as_str().unwrap_or("?"),
                p["jinja2"].as_str().unwrap_or("?"),
                p["python"].as_str().unwrap_or("?"),
            );
            if let Some(r) = ratio {
                println!("ratio:        {r:.1}x faster than transformers");
            }
        }
    }
    Ok(if wrong.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Creates `venv` with transformers and jinja2 (no torch) unless it already imports them; returns its python.
fn ensure_venv(venv: &Path) -> Result<PathBuf> {
    let python = venv.join("bin/python");
    let works = |p: &Path| {
        Command::new(p)
            .args(["-c", "import transformers, jinja2, tokenizers"])
            .env("TRANSFORMERS_VERBOSITY", "error")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if python.is_file() && works(&python) {
        return Ok(python);
    }
    eprintln!(
        "setting up {} (pip install transformers jinja2; no torch)...",
        venv.display()
    );
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(venv)
        .status()
        .context("run python3 -m venv (is python3 installed?)")?;
    if !status.success() {
        bail!("python3 -m venv {} failed", venv.display());
    }
    let status = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "transformers", "jinja2"])
        .status()
        .context("run pip")?;
    if !status.success() || !works(&python) {
        bail!("pip install transformers jinja2 into {} failed", venv.display());
    }
    Ok(python)
}
