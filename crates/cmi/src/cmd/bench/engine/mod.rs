//! `cmi bench engine`: cold start, prefill, time to first token, decode, concurrent streams, the second turn of a
//! conversation (prefix reuse) and peak memory of the embedded engine (full precision and quantised), beside
//! llama.cpp (llama-cpp-python, on GGUF files of the same weights) and transformers (PyTorch CPU, on the HF folder),
//! all measured in the same run, every contender in its own process so that its peak resident memory is its own.
//! Beside them, the machine's streaming-read bandwidth: the ceiling for a one-stream decode, which reads every weight
//! once a token.
//!
//! It runs on the demo model (the default), on a folder, or on a generated model of a named real shape
//! (`--shape llama-3.1-8b`, or `llama-3.2-1b` for quick runs): random weights of the exact shape with the demo's
//! tokenizer, written once into the cache dir, and the same weights as GGUF for llama.cpp.
//!
//! This host's speed drifts by a half within minutes (other tenants), so one pass can catch one contender in a slow
//! spell and the next one out of it. The bench therefore runs in rounds, each measuring every contender once in
//! turn, and reports each figure as the median over the rounds, with every round's one-stream decode printed too.

mod prepare;
mod report;
mod worker;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use model_synth::Shape;
use serde_json::Value;

use crate::ctx::Ctx;
use prepare::Prompts;
use worker::{DECODE_RUNS, Job};

/// Arguments of `cmi bench engine`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    /// Hugging Face model folder (e.g. written by `cmi convert gguf`); the demo model when neither it nor --shape
    /// is given.
    model: Option<PathBuf>,
    /// A generated model of this real shape instead of a folder: llama-3.1-8b (16 GB in bf16; the seed's
    /// DeepSeek-R1-Distill-Llama-8B) or llama-3.2-1b. Written once into the cache dir, with GGUF files of the same
    /// weights for llama.cpp.
    #[arg(long, conflicts_with = "model")]
    shape: Option<Shape>,
    /// The GGUF file for the llama.cpp peer (with a folder; the demo's and a shape's are found).
    #[arg(long)]
    gguf: Option<PathBuf>,
    /// llama.cpp types of a shape's GGUF files, one llama.cpp contender each (Q4_K_M, Q4_0, Q8_0, BF16).
    #[arg(long, value_delimiter = ',', default_value = "Q4_K_M")]
    gguf_types: Vec<String>,
    /// llama.cpp's weight repacking (its extra buffer types, AMX on CPUs with it): `auto` runs it on and falls back
    /// to off, saying so, when it crashes on this machine.
    #[arg(long, value_enum, default_value_t = Repack::Auto)]
    llamacpp_repack: Repack,
    /// CPU threads for every contender.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Tokens decoded per stream.
    #[arg(long, default_value_t = 64)]
    decode_tokens: usize,
    /// Tokens of the prefill figure's prompt (0: the short chat prompt; default 0, or 256 with --shape).
    #[arg(long)]
    prefill_tokens: Option<usize>,
    /// Concurrent streams for the throughput figure (1 skips it).
    #[arg(long, default_value_t = 8)]
    streams: usize,
    /// Load-time quantisations measured besides full precision (comma separated; empty for none).
    #[arg(long, value_delimiter = ',', default_value = "q8_0,q4k,q4_0")]
    quantize: Vec<String>,
    /// Do not measure full precision (at the 8B shape it reads 16 GB, pushing the others' files out of the page
    /// cache).
    #[arg(long)]
    no_full: bool,
    /// Measure only this engine, not the Python peers.
    #[arg(long)]
    no_peers: bool,
    /// Rounds: each measures every contender once, one after the other, so that all of them sample the same
    /// spells of a shared machine; each figure is the median over the rounds (peak memory: the largest).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Tokens of the shared history for the second-turn figure (prefix reuse; 0 skips it), measured in the first
    /// round (default 2000, or 4000 with --shape). At most the context window less room for the question.
    #[arg(long)]
    history_tokens: Option<usize>,
    /// Internal: measure one configuration in this process and print one JSON line.
    #[arg(long, hide = true)]
    worker: Option<String>,
    /// Internal: the worker's token ids.
    #[arg(long, hide = true)]
    prompts: Option<PathBuf>,
    /// Internal: the worker's quantised-weights cache.
    #[arg(long, hide = true)]
    cache: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Repack {
    Auto,
    On,
    Off,
}

/// One contender of the bench.
enum Contender {
    /// A configuration of this engine (`full`, a quantisation, or `prefix:<config>` for the second turn).
    Ours(String),
    /// llama.cpp on a GGUF file, with its weight repacking on or off.
    LlamaCpp(PathBuf, bool),
    /// transformers in f32 on the folder.
    Transformers,
}

/// The llama.cpp peer's venv (installed on first use): llama-cpp-python, and gguf-py to write the shapes' GGUF.
fn llamacpp_venv(ctx: &Ctx) -> Result<PathBuf> {
    super::ensure_venv(
        &ctx.paths.cache_dir.join("venv-llamacpp"),
        "llama_cpp, gguf, numpy",
        &["llama-cpp-python==0.3.36", "gguf==0.19.0", "numpy"],
        "; pip builds llama.cpp from source, about 10 minutes on 2 cores, once",
    )
}

fn run_json(mut cmd: Command, what: &str) -> Result<Value> {
    let out = cmd.output().with_context(|| format!("starting {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("no JSON result")?;
    Ok(serde_json::from_str(line)?)
}

/// What every round gives the contenders.
struct Plan<'a> {
    args: &'a Args,
    model: &'a Path,
    prompts: &'a Path,
    ctx: &'a Ctx,
}

impl Plan<'_> {
    fn ours(&self, config: &str) -> Result<Value> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["bench", "engine"])
            .arg(self.model)
            .args(["--threads", &self.args.threads.to_string()])
            .args(["--decode-tokens", &self.args.decode_tokens.to_string()])
            .args(["--streams", &self.args.streams.to_string()])
            .args(["--worker", config])
            .arg("--prompts")
            .arg(self.prompts)
            .env("RAYON_NUM_THREADS", self.args.threads.to_string());
        let kind = config.rsplit(':').next().unwrap_or(config);
        if kind != "full" {
            cmd.arg("--cache")
                .arg(prepare::quantised_cache(self.ctx, self.model, kind));
        }
        run_json(cmd, &format!("cmi engine ({config})"))
    }

    fn peer(&self, mode: &str, path: &Path, repack: bool, history: bool) -> Result<Value> {
        let python = match mode {
            "llamacpp" => llamacpp_venv(self.ctx)?,
            _ => super::ensure_venv(
                &self.ctx.paths.cache_dir.join("venv-transformers"),
                "torch, transformers, safetensors",
                &["torch", "transformers", "safetensors"],
                "; about 3 GB of wheels, once",
            )?,
        };
        let script = std::env::temp_dir().join(format!("cmi-bench-engine-{}.py", std::process::id()));
        std::fs::write(&script, include_str!("peer.py"))?;
        let mut cmd = Command::new(python);
        cmd.arg(&script)
            .arg(mode)
            .arg(path)
            .arg(self.args.threads.to_string())
            .arg(self.args.decode_tokens.to_string())
            .arg(self.args.streams.max(1).to_string())
            .arg(DECODE_RUNS.to_string())
            .arg(self.prompts)
            .arg(if repack { "on" } else { "off" })
            .arg(if history { "1" } else { "0" })
            .env("OMP_NUM_THREADS", self.args.threads.to_string())
            .env("TRANSFORMERS_VERBOSITY", "error");
        let r = run_json(cmd, mode);
        let _ = std::fs::remove_file(&script);
        r
    }
}

/// Whether transformers can hold the model in f32 here: at most 80% of the machine's memory.
fn transformers_fits(folder: &Path) -> std::result::Result<(), String> {
    let bytes: u64 = std::fs::read_dir(folder)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".safetensors"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    // bf16 and f16 files double in f32; an f32 file stays.
    let f32_bytes = bytes * 2;
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse::<u64>().ok()))
        })
        .map_or(u64::MAX, |kib| kib * 1024);
    if f32_bytes > total / 10 * 8 {
        return Err(format!(
            "transformers skipped: the model is about {:.1} GB in f32, over 80% of this machine's {:.1} GB",
            f32_bytes as f64 / 1e9,
            total as f64 / 1e9
        ));
    }
    Ok(())
}

pub(crate) async fn run(args: Args, ctx: &Ctx) -> Result<ExitCode> {
    if let Some(job) = &args.worker {
        let started = Instant::now();
        let job: Job = job.parse()?;
        let a = args.clone();
        let v = tokio::task::spawn_blocking(move || -> Result<Value> {
            let prompts = Prompts::read(a.prompts.as_deref().context("a worker needs --prompts")?)?;
            let model = a.model.as_deref().context("a worker needs the model folder")?;
            let setup = worker::Setup {
                model,
                prompts: &prompts,
                cache: a.cache.as_deref(),
                decode_tokens: a.decode_tokens,
                streams: a.streams,
            };
            worker::run(&job, &setup, started)
        })
        .await??;
        println!("{v}");
        return Ok(ExitCode::SUCCESS);
    }

    // What to measure on.
    let (model, ggufs): (PathBuf, Vec<PathBuf>) = match (&args.model, args.shape) {
        (Some(m), _) => (m.clone(), args.gguf.iter().cloned().collect()),
        (None, Some(shape)) => {
            let (demo, demo_gguf) = prepare::demo(ctx).await?;
            let folder = prepare::shape_folder(ctx, shape, &demo).await?;
            let ggufs = if args.no_peers {
                Vec::new()
            } else {
                // A subprocess the bench waits for, as it waits for every contender.
                prepare::shape_ggufs(ctx, &folder, &demo_gguf, &args.gguf_types, args.threads)?
            };
            (folder, ggufs)
        }
        (None, None) => {
            let (demo, demo_gguf) = prepare::demo(ctx).await?;
            (demo, vec![args.gguf.clone().unwrap_or(demo_gguf)])
        }
    };
    let shaped = args.shape.is_some();
    let prefill_tokens = args.prefill_tokens.unwrap_or(if shaped { 256 } else { 0 });
    let history_tokens = args.history_tokens.unwrap_or(if shaped { 4000 } else { 2000 });
    // The context the prompts must fit in: the model's, capped where no figure here needs more.
    let context = std::fs::read(model.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|c| c["max_position_embeddings"].as_u64())
        .unwrap_or(2048)
        .min(8192) as usize;
    let prompts = Prompts::new(&model, prefill_tokens, history_tokens, args.streams.max(1), context)?;
    let prompts_path = std::env::temp_dir().join(format!("cmi-bench-prompts-{}.json", std::process::id()));
    std::fs::write(&prompts_path, serde_json::to_vec(&prompts)?)?;
    let plan = Plan {
        args: &args,
        model: &model,
        prompts: &prompts_path,
        ctx,
    };
    let outcome = measure(&plan, &ggufs, history_tokens > 0).await;
    let _ = std::fs::remove_file(&prompts_path);
    let (rows, prefix_rows, per_round, ceiling, notes) = outcome?;
    report::print(&report::Report {
        model: &model,
        shape: args.shape,
        threads: args.threads,
        streams: args.streams,
        rows: &rows,
        prefix_rows: &prefix_rows,
        per_round: &per_round,
        ceiling,
        notes: &notes,
    });
    Ok(ExitCode::SUCCESS)
}

type Measured = (Vec<Value>, Vec<Value>, Vec<(String, Vec<f64>)>, f64, Vec<String>);

async fn measure(plan: &Plan<'_>, ggufs: &[PathBuf], history: bool) -> Result<Measured> {
    let args = plan.args;
    let mut notes = Vec::new();
    let quantized: Vec<String> = args.quantize.iter().filter(|q| !q.is_empty()).cloned().collect();
    let mut configs: Vec<String> = Vec::new();
    if !args.no_full {
        configs.push("full".into());
    }
    configs.extend(quantized.iter().cloned());
    if configs.is_empty() {
        bail!("nothing of this engine to measure: --no-full and an empty --quantize");
    }
    // Each quantisation once before the rounds, as `cmi serve`'s import job does: the load that writes the
    // quantised-weights cache. Every measured load after it maps the cache.
    for q in &quantized {
        eprintln!("preparing cmi engine ({q}): the first load quantises and writes the cache...");
        let cache = prepare::quantised_cache(plan.ctx, plan.model, q);
        if let Some(dir) = cache.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let v = plan.ours(&format!("prepare:{q}"))?;
        // Without the cache every measured load would quantise again, and its cold start would measure that.
        if !cache.is_file() {
            bail!(
                "preparing {q} wrote no quantised-weights cache at {} (its log says why)",
                cache.display()
            );
        }
        notes.push(format!(
            "{q}: the first load quantised {} matrices in {:.1} s{}; every load below maps them",
            v["quantised"],
            v["load_s"].as_f64().unwrap_or(0.0),
            if v["cache_written"] == true {
                " and wrote the cache"
            } else {
                " (the cache was already there)"
            }
        ));
    }
    let mut contenders: Vec<Contender> = configs.iter().cloned().map(Contender::Ours).collect();
    if history {
        // The second turn in the configuration measured last among ours: the quantised one at scale.
        contenders.push(Contender::Ours(format!(
            "prefix:{}",
            configs.last().expect("one config")
        )));
    }
    if !args.no_peers {
        let repack = args.llamacpp_repack != Repack::Off;
        contenders.extend(ggufs.iter().map(|g| Contender::LlamaCpp(g.clone(), repack)));
        match transformers_fits(plan.model) {
            Ok(()) => contenders.push(Contender::Transformers),
            Err(why) => notes.push(why),
        }
    }
    let rounds = args.rounds.max(1);
    let mut results: Vec<Vec<Value>> = vec![Vec::new(); contenders.len()];
    let mut ceilings = Vec::new();
    for round in 1..=rounds {
        for (i, c) in contenders.iter_mut().enumerate() {
            match c {
                Contender::Ours(config) => {
                    if config.starts_with("prefix:") && round > 1 {
                        continue;
                    }
                    eprintln!("round {round}/{rounds}: measuring cmi engine ({config}) ...");
                    results[i].push(plan.ours(config)?);
                }
                Contender::LlamaCpp(path, repack) => {
                    if round > 1 && results[i].is_empty() {
                        continue;
                    }
                    eprintln!("round {round}/{rounds}: measuring llama.cpp on {} ...", path.display());
                    let mut r = plan.peer("llamacpp", path, *repack, history && round == 1);
                    if let Err(e) = &r
                        && *repack
                        && args.llamacpp_repack == Repack::Auto
                    {
                        notes.push(format!(
                            "llama.cpp with its weight repacking failed on this machine ({e:#}); measured with it off"
                        ));
                        *repack = false;
                        r = plan.peer("llamacpp", path, false, history && round == 1);
                    }
                    match r {
                        Ok(v) => results[i].push(v),
                        Err(e) => {
                            notes.push(format!("llama.cpp peer skipped: {e:#}"));
                            results[i].clear();
                        }
                    }
                }
                Contender::Transformers => {
                    if round > 1 && results[i].is_empty() {
                        continue;
                    }
                    eprintln!("round {round}/{rounds}: measuring transformers ...");
                    match plan.peer("transformers", plan.model, false, false) {
                        Ok(v) => results[i].push(v),
                        Err(e) => {
                            notes.push(format!("transformers peer skipped: {e:#}"));
                            results[i].clear();
                        }
                    }
                }
            }
        }
        ceilings.push(report::stream_read_gbs(args.threads));
    }
    let ceiling = super::median(&ceilings);
    let mut rows = Vec::new();
    let mut prefix_rows = Vec::new();
    let mut per_round = Vec::new();
    for r in results.iter().filter(|r| !r.is_empty()) {
        if report::is_prefix(&r[0]) {
            prefix_rows.push(r[0].clone());
            continue;
        }
        // llama.cpp's second turn, measured in its first round, is a row of its own.
        if r[0]["second_ttft_ms"].is_number() {
            let mut p = r[0].clone();
            p["name"] = Value::String(format!("{}, second turn", r[0]["name"].as_str().unwrap_or("?")));
            prefix_rows.push(p);
        }
        per_round.push((
            r[0]["name"].as_str().unwrap_or("?").to_string(),
            r.iter().filter_map(|v| v["decode_tps"].as_f64()).collect(),
        ));
        rows.push(report::combine(r));
    }
    Ok((rows, prefix_rows, per_round, ceiling, notes))
}
