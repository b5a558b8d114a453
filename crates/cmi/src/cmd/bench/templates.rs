//! `cmi bench templates`: render the whole chat-template conformance corpus in-process and, in the same run, time
//! transformers' `apply_chat_template` on the same cases (the corpus's `render.py` tokenizers, in a venv this command
//! creates under the cache dir), then print the time per render of each and the ratio.
//!
//! Both sides measure the same thing: one render per case, templates compiled once beforehand, inputs already parsed,
//! no process start-up; cases of models without a template (Flan-T5: nothing to render) are not timed. Every pass over
//! the corpus is timed per template, on both sides alike, and the passes are interleaved in rounds (some cmi passes,
//! then some transformers passes, ...) so that both sample the same load of a shared machine. Reported: the mean and
//! the best pass (the one least disturbed by other processes); the headline ratio is best against best.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};
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
    /// Passes over the corpus for cmi (each pass renders every case of a template that exists).
    #[arg(long, default_value_t = 200)]
    iterations: usize,
    /// Passes over the corpus for transformers.
    #[arg(long, default_value_t = 20)]
    python_iterations: usize,
    /// Rounds the passes are split into, alternating cmi and transformers.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
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

    // Timed: the cases of each template that exists, grouped by template in corpus order (as the Python side).
    let mut groups: Vec<(usize, Vec<&Case>)> = Vec::new();
    for c in cases.iter().filter(|c| templates[c.template].is_some()) {
        match groups.last_mut() {
            Some((t, g)) if *t == c.template => g.push(c),
            _ => groups.push((c.template, vec![c])),
        }
    }
    let timed: usize = groups.iter().map(|(_, g)| g.len()).sum();
    let group_names: Vec<&str> = groups.iter().map(|(t, _)| names[*t].as_str()).collect();
    let group_sizes: Vec<usize> = groups.iter().map(|(_, g)| g.len()).collect();

    let mut python = if args.skip_python {
        None
    } else {
        let venv = ctx.paths.cache_dir.join("venv-templates");
        let python = super::ensure_venv(
            &venv,
            "transformers, jinja2, tokenizers",
            &["transformers", "jinja2"],
            "; no torch",
        )?;
        let script = ctx.paths.cache_dir.join("transformers_bench.py");
        std::fs::write(&script, PY_BENCH).with_context(|| format!("write {}", script.display()))?;
        let peer = PyBench::start(&python, &script, &corpus)?;
        // The same cases, in the same groups, or the comparison means nothing.
        let theirs: Vec<(String, usize)> = peer.info["groups"]
            .as_array()
            .map(|g| {
                g.iter()
                    .map(|g| {
                        (
                            g["template"].as_str().unwrap_or("").to_owned(),
                            g["cases"].as_u64().unwrap_or(0) as usize,
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let ours: Vec<(String, usize)> = group_names
            .iter()
            .map(|n| (*n).to_owned())
            .zip(group_sizes.clone())
            .collect();
        if theirs != ours {
            bail!("the transformers bench timed other cases than cmi: {theirs:?} vs {ours:?}");
        }
        Some(peer)
    };

    // Seconds per pass, per group, for each side; rounds alternate the two.
    let rounds = args.rounds.max(1);
    let mut ours_passes: Vec<Vec<f64>> = Vec::with_capacity(args.iterations);
    let mut py_passes: Vec<Vec<f64>> = Vec::with_capacity(args.python_iterations);
    if python.is_some() {
        eprintln!(
            "timing {} cmi and {} transformers passes over {timed} cases, in {rounds} rounds...",
            args.iterations, args.python_iterations
        );
    }
    for round in 0..rounds {
        let share = |n: usize| n / rounds + usize::from(round < n % rounds);
        for _ in 0..share(args.iterations) {
            let mut times = Vec::with_capacity(groups.len());
            for (t, group) in &groups {
                let Some(tmpl) = &templates[*t] else { continue };
                let t0 = Instant::now();
                for c in group {
                    std::hint::black_box(tmpl.render(&c.request).ok());
                }
                times.push(t0.elapsed().as_secs_f64());
            }
            ours_passes.push(times);
        }
        if let Some(peer) = python.as_mut() {
            py_passes.extend(peer.passes(share(args.python_iterations))?);
        }
    }
    let ours = Timing::new(&ours_passes, &group_sizes);
    let ours_renders = ours_passes.len() * timed;
    let py = python.as_ref().map(|_| Timing::new(&py_passes, &group_sizes));
    let py_info = python.take().map(PyBench::finish).transpose()?;

    let ratio = py.as_ref().map(|p| p.best_us / ours.best_us);
    let ratio_mean = py.as_ref().map(|p| p.mean_us / ours.mean_us);
    let py_wrong: Vec<String> = py_info
        .as_ref()
        .and_then(|p| p["wrong"].as_array())
        .map(|w| w.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    if args.json {
        let per_template: serde_json::Map<String, Value> = group_names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let v = serde_json::json!({
                    "cases": group_sizes[i],
                    "cmi": {"best_us": ours.per_template_best_us[i], "mean_us": ours.per_template_mean_us[i]},
                    "transformers": py.as_ref().map(|p| serde_json::json!({
                        "best_us": p.per_template_best_us[i], "mean_us": p.per_template_mean_us[i]})),
                });
                ((*n).to_owned(), v)
            })
            .collect();
        let side = |t: &Timing, passes: usize| {
            serde_json::json!({"passes": passes, "renders": passes * timed, "seconds": t.seconds,
                               "per_render_us": t.mean_us, "best_pass_per_render_us": t.best_us})
        };
        let v = serde_json::json!({
            "cases": cases.len(), "timed_cases": timed, "rounds": rounds, "wrong": wrong,
            "transformers_wrong": py_wrong, "build": profile,
            "cmi": side(&ours, ours_passes.len()),
            "transformers": py.as_ref().map(|p| {
                let mut v = side(p, py_passes.len());
                if let (Some(o), Some(info)) = (v.as_object_mut(), &py_info) {
                    for k in ["transformers", "jinja2", "python"] {
                        o.insert(k.into(), info[k].clone());
                    }
                }
                v
            }),
            "ratio_best": ratio, "ratio_mean": ratio_mean, "per_template": per_template,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "chat-template corpus: {} cases ({} wrong), {timed} timed (templates that exist), cmi {profile} build",
            cases.len(),
            wrong.len()
        );
        for id in &wrong {
            println!("  WRONG {id}");
        }
        for id in &py_wrong {
            println!("  WRONG (transformers) {id}");
        }
        println!(
            "{:<32} {:>10} {:>16} {:>7}",
            "best pass, µs/render", "cmi", "transformers", "ratio"
        );
        for (i, n) in group_names.iter().enumerate() {
            let o = ours.per_template_best_us[i];
            match &py {
                Some(p) => {
                    let t = p.per_template_best_us[i];
                    println!("{n:<32} {o:>10.1} {t:>16.1} {:>6.1}x", t / o);
                }
                None => println!("{n:<32} {o:>10.1}"),
            }
        }
        println!(
            "cmi:          {:>7.1} µs/render best pass, {:>7.1} mean ({ours_renders} renders in {:.3} s)",
            ours.best_us, ours.mean_us, ours.seconds
        );
        if let (Some(p), Some(info)) = (&py, &py_info) {
            println!(
                "transformers: {:>7.1} µs/render best pass, {:>7.1} mean ({} renders in {:.3} s; transformers {}, \
                 jinja2 {}, python {})",
                p.best_us,
                p.mean_us,
                py_passes.len() * timed,
                p.seconds,
                info["transformers"].as_str().unwrap_or("?"),
                info["jinja2"].as_str().unwrap_or("?"),
                info["python"].as_str().unwrap_or("?"),
            );
        }
        if let (Some(r), Some(m)) = (ratio, ratio_mean) {
            println!("ratio:        {r:.1}x faster than transformers (best pass; {m:.1}x on the means)");
        }
    }
    Ok(if wrong.is_empty() && py_wrong.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The transformers side: `transformers_bench.py` running in the venv, driven over its stdin.
struct PyBench {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// The description it printed after its warm-up.
    info: Value,
}

impl PyBench {
    fn start(python: &Path, script: &Path, corpus: &Path) -> Result<PyBench> {
        let mut child = Command::new(python)
            .arg(script)
            .arg(corpus)
            .env("TRANSFORMERS_VERBOSITY", "error")
            .env("HF_HUB_OFFLINE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("run {}", python.display()))?;
        let stdin = child.stdin.take().context("python stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("python stdout")?);
        let mut peer = PyBench {
            child,
            stdin,
            stdout,
            info: Value::Null,
        };
        peer.info = peer.read_line()?;
        Ok(peer)
    }

    fn read_line(&mut self) -> Result<Value> {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .context("read from the transformers bench")?;
        if line.trim().is_empty() {
            let status = self.child.wait().ok();
            bail!("the transformers bench stopped (status {status:?}); see its output above");
        }
        serde_json::from_str(&line).with_context(|| format!("the transformers bench wrote {line:?}"))
    }

    /// Runs `n` passes; seconds per pass, per template group.
    fn passes(&mut self, n: usize) -> Result<Vec<Vec<f64>>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        writeln!(self.stdin, "{n}").context("write to the transformers bench")?;
        self.stdin.flush().context("write to the transformers bench")?;
        let v = self.read_line()?;
        let passes = v["passes"]
            .as_array()
            .context("the transformers bench sent no passes")?
            .iter()
            .map(|p| {
                p.as_array()
                    .map(|t| t.iter().filter_map(Value::as_f64).collect())
                    .unwrap_or_default()
            })
            .collect();
        Ok(passes)
    }

    /// Ends the script (end of its input) and returns its description.
    fn finish(self) -> Result<Value> {
        let PyBench {
            mut child, stdin, info, ..
        } = self;
        drop(stdin);
        let status = child.wait().context("wait for the transformers bench")?;
        if !status.success() {
            bail!("the transformers bench failed ({status})");
        }
        Ok(info)
    }
}

/// Per-render figures from per-pass, per-template seconds.
struct Timing {
    seconds: f64,
    mean_us: f64,
    best_us: f64,
    per_template_mean_us: Vec<f64>,
    per_template_best_us: Vec<f64>,
}

impl Timing {
    fn new(passes: &[Vec<f64>], group_sizes: &[usize]) -> Timing {
        let cases = group_sizes.iter().sum::<usize>().max(1) as f64;
        let n = passes.len().max(1) as f64;
        let seconds: f64 = passes.iter().flatten().sum();
        let best = passes
            .iter()
            .map(|p| p.iter().sum::<f64>())
            .fold(f64::INFINITY, f64::min);
        let column = |i: usize| passes.iter().map(move |p| p.get(i).copied().unwrap_or(f64::NAN));
        let size = |i: usize| group_sizes[i].max(1) as f64;
        Timing {
            seconds,
            mean_us: seconds / (n * cases) * 1e6,
            best_us: best / cases * 1e6,
            per_template_mean_us: (0..group_sizes.len())
                .map(|i| column(i).sum::<f64>() / n / size(i) * 1e6)
                .collect(),
            per_template_best_us: (0..group_sizes.len())
                .map(|i| column(i).fold(f64::INFINITY, f64::min) / size(i) * 1e6)
                .collect(),
        }
    }
}
