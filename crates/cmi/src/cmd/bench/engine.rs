//! `cmi bench engine`: prompt and decode speed, 8-stream throughput, time to first token and peak memory of the
//! embedded engine (full precision and quantised), beside llama.cpp (llama-cpp-python, on the GGUF) and
//! transformers (PyTorch CPU, on the HF folder), all measured in the same run. Each configuration runs in its own
//! process so that its peak resident memory is its own. Beside them, the machine's streaming-read bandwidth: the
//! ceiling for a one-stream decode, which reads every weight once a token, and what the prefix cache saves an agent's
//! second turn: the time to first token of a long history, then of the same history with a short new question.
//!
//! This host's speed drifts by a half within minutes (other tenants), so one pass can catch one contender in a slow
//! spell and the next one out of it. The bench therefore runs in rounds, each measuring every contender once in
//! turn, and reports each figure as the median over the rounds, with every round's one-stream decode printed too.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use infer_engine::{Engine, EngineEvent, GenerateRequest, LoadOptions, Quantize};
use serde_json::{Value, json};

use crate::ctx::Ctx;

/// Arguments of `cmi bench engine`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    /// Hugging Face model folder (e.g. written by `cmi convert gguf`).
    model: PathBuf,
    /// The GGUF file for the llama.cpp peer (skipped without it).
    #[arg(long)]
    gguf: Option<PathBuf>,
    /// CPU threads for every contender.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Tokens decoded per stream.
    #[arg(long, default_value_t = 64)]
    decode_tokens: usize,
    /// Concurrent streams for the throughput figure.
    #[arg(long, default_value_t = 8)]
    streams: usize,
    /// Load-time quantisations measured besides full precision (comma separated; empty for none).
    #[arg(long, value_delimiter = ',', default_value = "q8_0,q4k,q4_0")]
    quantize: Vec<String>,
    /// Measure only this engine, not the Python peers.
    #[arg(long)]
    no_peers: bool,
    /// Rounds: each measures every contender once, one after the other, so that all of them sample the same
    /// spells of a shared machine; each figure is the median over the rounds (peak memory: the largest).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Tokens of the shared history for the second-turn figure (prefix reuse; 0 skips it). At most the context
    /// window less room for the question and the answer.
    #[arg(long, default_value_t = 2000)]
    history_tokens: usize,
    /// Internal: measure one configuration in this process and print one JSON line.
    #[arg(long, hide = true)]
    worker: Option<String>,
}

const PROMPT: &str = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
<|im_start|>user\nWrite a long story about a dragon who learns to cook.<|im_end|>\n<|im_start|>assistant\n";

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// Runs one request; returns (seconds to first event, seconds from first event to the end, completion tokens).
fn timed(engine: &Engine, prompt: &str, max_tokens: usize) -> Result<(f64, f64, usize)> {
    let mut req = GenerateRequest::new(prompt);
    req.max_tokens = max_tokens;
    let start = Instant::now();
    let mut g = engine.generate(req)?;
    let mut first = None;
    while let Some(ev) = g.blocking_next() {
        let now = start.elapsed().as_secs_f64();
        let f = *first.get_or_insert(now);
        match ev {
            EngineEvent::Delta { .. } => {}
            EngineEvent::Done { completion_tokens, .. } => return Ok((f, now - f, completion_tokens)),
            EngineEvent::Failed { message } => bail!("generation failed: {message}"),
        }
    }
    bail!("stream ended without Done")
}

/// Runs one request; returns the time (seconds since `clock`) at which each of its tokens arrived.
fn token_times(engine: &Engine, prompt: &str, max_tokens: usize, clock: Instant) -> Result<Vec<f64>> {
    let mut req = GenerateRequest::new(prompt);
    req.max_tokens = max_tokens;
    let mut g = engine.generate(req)?;
    let mut times = Vec::with_capacity(max_tokens);
    while let Some(ev) = g.blocking_next() {
        match ev {
            EngineEvent::Delta { .. } => times.push(clock.elapsed().as_secs_f64()),
            EngineEvent::Done { completion_tokens, .. } => {
                // A delta can carry several tokens (held back while a character or stop sequence is incomplete):
                // the last ones are counted at the end.
                let at = clock.elapsed().as_secs_f64();
                times.resize(completion_tokens.max(times.len()), at);
                return Ok(times);
            }
            EngineEvent::Failed { message } => bail!("generation failed: {message}"),
        }
    }
    bail!("stream ended without Done")
}

/// Total decode throughput while every stream is decoding: tokens that arrived between the moment the last stream
/// got its first token (every prefill is done) and the moment the first stream finished, over that window's length.
/// `None` when the window is empty.
fn decode_window_tps(streams: &[Vec<f64>]) -> Option<f64> {
    let (mut start, mut end) = (0.0f64, f64::INFINITY);
    for s in streams {
        start = start.max(*s.first()?);
        end = end.min(*s.last()?);
    }
    if end <= start {
        return None;
    }
    let n = streams
        .iter()
        .map(|s| s.iter().filter(|&&t| t > start && t <= end).count())
        .sum::<usize>();
    Some(n as f64 / (end - start))
}

/// The worker config that measures prefix reuse (full precision, the prefix cache on).
const PREFIX_CONFIG: &str = "prefix";

/// First and second turn of a conversation: a long history, then the same history with a short new question. The
/// second turn's prompt starts with the first's, so the prefix cache gives all of it but the question.
fn prefix_worker(args: &Args) -> Result<Value> {
    let engine = Engine::load(
        &args.model,
        LoadOptions {
            max_batch: 1,
            prefix_cache_bytes: infer_engine::default_prefix_cache_bytes().max(256 << 20),
            ..LoadOptions::default()
        },
    )?;
    let encode = |text: &str| -> Result<Vec<u32>> {
        Ok(engine
            .tokenizer()
            .encode(text, false)
            .map_err(anyhow::Error::msg)?
            .get_ids()
            .to_vec())
    };
    let question =
        encode("<|im_end|>\n<|im_start|>user\nAnd what did the dragon cook next?<|im_end|>\n<|im_start|>assistant\n")?;
    let room = engine.context_length().saturating_sub(question.len() + 8);
    let n = args.history_tokens.min(room);
    let turn = "<|im_start|>user\nTell me more about the dragon's kitchen.<|im_end|>\n<|im_start|>assistant\nThe dragon \
                lit the oven with one careful breath, weighed the flour on a scale made from an old shield, and \
                hummed while the bread rose.<|im_end|>\n";
    let mut history = encode(PROMPT)?;
    while history.len() < n {
        history.extend(encode(turn)?);
    }
    history.truncate(n);
    let ttft = |tokens: Vec<u32>| -> Result<(f64, usize)> {
        let mut req = GenerateRequest::from_tokens(tokens);
        req.max_tokens = 1;
        let start = Instant::now();
        let mut g = engine.generate(req)?;
        let mut first = None;
        while let Some(ev) = g.blocking_next() {
            first.get_or_insert(start.elapsed().as_secs_f64());
            match ev {
                EngineEvent::Delta { .. } => {}
                EngineEvent::Done { cached_tokens, .. } => return Ok((first.unwrap_or_default(), cached_tokens)),
                EngineEvent::Failed { message } => bail!("generation failed: {message}"),
            }
        }
        bail!("stream ended without Done")
    };
    ttft(encode("warm-up")?)?;
    let (first, _) = ttft(history.clone())?;
    let second_prompt: Vec<u32> = history.iter().chain(&question).copied().collect();
    let second_tokens = second_prompt.len();
    let (second, cached) = ttft(second_prompt)?;
    Ok(json!({
        "name": "cmi engine (full), second turn",
        "kind": "prefix",
        "history_tokens": history.len(),
        "second_prompt_tokens": second_tokens,
        "cached_tokens": cached,
        "first_ttft_ms": first * 1000.0,
        "second_ttft_ms": second * 1000.0,
    }))
}

fn worker(args: &Args, config: &str) -> Result<Value> {
    if config == PREFIX_CONFIG {
        return prefix_worker(args);
    }
    let quantize = match config {
        "full" => None,
        q => Some(q.parse::<Quantize>().map_err(anyhow::Error::msg)?),
    };
    let t = Instant::now();
    let engine = Engine::load(
        &args.model,
        LoadOptions {
            quantize,
            max_batch: args.streams.max(1),
            max_queue: 64,
            // Every request here repeats the prompt: these figures are of computing it.
            prefix_cache_bytes: 0,
            ..LoadOptions::default()
        },
    )?;
    let load_s = t.elapsed().as_secs_f64();
    let prompt_tokens = engine
        .tokenizer()
        .encode(PROMPT, false)
        .map_err(anyhow::Error::msg)?
        .len();
    timed(&engine, PROMPT, 2)?; // warm-up
    let ttfts: Vec<f64> = (0..3)
        .map(|_| timed(&engine, PROMPT, 1).map(|r| r.0))
        .collect::<Result<_>>()?;
    let ttft = super::median(&ttfts);
    // Decode speed as the median of a few runs, as for the peers: within one process a single run can still land
    // in a short slow spell (the rounds take care of the longer ones).
    let decodes: Vec<f64> = (0..DECODE_RUNS)
        .map(|_| timed(&engine, PROMPT, args.decode_tokens).map(|(_, dt, n)| n.saturating_sub(1) as f64 / dt))
        .collect::<Result<_>>()?;
    let decode_1 = super::median(&decodes);
    // N concurrent streams, each from its own thread, timed per token against one clock.
    let t = Instant::now();
    let handles: Vec<_> = (0..args.streams)
        .map(|i| {
            let e = engine.clone();
            let p = PROMPT.replace("a dragon", &format!("dragon number {i}"));
            let n = args.decode_tokens;
            std::thread::spawn(move || token_times(&e, &p, n, t))
        })
        .collect();
    let mut streams = Vec::new();
    for h in handles {
        streams.push(h.join().map_err(|_| anyhow::anyhow!("stream thread panicked"))??);
    }
    let total_s = t.elapsed().as_secs_f64();
    let total: usize = streams.iter().map(|s| s.len()).sum();
    let decode_window = decode_window_tps(&streams);
    Ok(json!({
        "name": format!("cmi engine ({config})"),
        "load_s": load_s,
        "prompt_tokens": prompt_tokens,
        "prompt_tps": prompt_tokens as f64 / ttft,
        "ttft_ms": ttft * 1000.0,
        "decode_tps": decode_1,
        "streams": args.streams,
        "total_tps": total as f64 / total_s,
        "decode_total_tps": decode_window,
        "peak_rss_mb": rss_kib("VmHWM:") as f64 / 1024.0,
        "weight_mb": engine.weight_bytes() as f64 / 1e6,
        "held_weight_mb": engine.held_weight_bytes() as f64 / 1e6,
        "kv_peak_mb": engine.peak_kv_cache_bytes() as f64 / 1e6,
        // One-stream decode reads every weight once a token; the weight bytes are the stored ones, which only full
        // precision reads as they are.
        "weight_read_gbs": quantize.is_none().then(|| engine.weight_bytes() as f64 * decode_1 / 1e9),
    }))
}

/// What a plain streaming read achieves on this machine now, in GB/s: `threads` threads each xor-fold their part of
/// a buffer larger than any cache that matters here (best of five passes). The ceiling a decode step bound by
/// reading its weights can approach; hand-rolled, as no crate measures just this.
fn stream_read_gbs(threads: usize) -> f64 {
    const BYTES: usize = 512 << 20;
    let words: Vec<u64> = (0..BYTES / 8).map(|i| i as u64).collect();
    let part = words.len().div_ceil(threads.max(1));
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        let folded: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = words
                .chunks(part)
                .map(|c| {
                    s.spawn(move || {
                        // Eight independent lanes, so the loop vectorises and is bound by the loads alone.
                        let mut acc = [0u64; 8];
                        for line in c.chunks_exact(8) {
                            for (a, w) in acc.iter_mut().zip(line) {
                                *a ^= w;
                            }
                        }
                        acc.iter().fold(0, |x, y| x ^ y)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).fold(0, |x, y| x ^ y)
        });
        std::hint::black_box(folded);
        best = best.min(t.elapsed().as_secs_f64());
    }
    BYTES as f64 / best / 1e9
}

/// Timed one-stream decodes per contender; the median is reported (the peers' script takes the same count).
const DECODE_RUNS: usize = 3;

const PEER_PY: &str = r#"
import json, resource, sys, time
mode, path, threads, n_dec, streams, prompt = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
runs = int(sys.argv[7])
def median(v):
    return sorted(v)[len(v) // 2]
def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
if mode == "llamacpp":
    from llama_cpp import Llama
    import llama_cpp.llama_cpp as lc
    # llama.cpp's extra buffer types repack weights for special kernels; on CPUs with AMX that includes its AMX
    # backend, which crashed (SIGSEGV in ggml_backend_amx_mul_mat) on the demo's Q4_1 GGUF. Without them it runs its
    # ordinary CPU kernels, as on every machine without AMX.
    default_params = lc.llama_model_default_params
    def model_params():
        p = default_params()
        p.use_extra_bufts = False
        return p
    lc.llama_model_default_params = model_params
    llm = Llama(model_path=path, n_threads=threads, n_ctx=2048, verbose=False)
    ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
    def run(n):
        llm.reset()
        t = time.perf_counter(); first = None; k = 0
        for _ in llm.create_completion(ids, max_tokens=n, temperature=0.0, stream=True):
            k += 1
            if first is None: first = time.perf_counter() - t
        return first, time.perf_counter() - t - first, k
    run(2)
    ttft = sorted(run(1)[0] for _ in range(3))[1]
    decode = median([(k - 1) / dt for _, dt, k in (run(n_dec) for _ in range(runs))])
    # N concurrent streams the way llama.cpp serves them (its `batched` example, llama-server's parallel slots): one
    # context holding N sequences over the same weights; the N prompts go in one llama_decode, then every step is one
    # llama_decode of each stream's next token. Greedy, every stream decodes n_dec tokens.
    import numpy as np
    cp = lc.llama_context_default_params()
    cp.n_threads = cp.n_threads_batch = threads
    cp.n_seq_max = streams
    cp.kv_unified = False
    prompts = [llm.tokenize(prompt.replace("a dragon", f"dragon number {i}").encode(), add_bos=False, special=True)
               for i in range(streams)]
    cp.n_ctx = streams * 256 * ((max(len(p) for p in prompts) + n_dec + 255) // 256)
    cp.n_batch = cp.n_ubatch = max(sum(len(p) for p in prompts), streams)
    ctx = lc.llama_init_from_model(llm.model, cp)
    if not ctx:
        raise RuntimeError("llama_init_from_model failed for the multi-stream context")
    n_vocab = lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(llm.model))
    batch = lc.llama_batch_init(cp.n_batch, 0, 1)
    def step(items):
        batch.n_tokens = len(items)
        for k, (tok, pos, seq, out) in enumerate(items):
            batch.token[k], batch.pos[k], batch.n_seq_id[k], batch.logits[k] = tok, pos, 1, out
            batch.seq_id[k][0] = seq
        if lc.llama_decode(ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")
        rows = [k for k, it in enumerate(items) if it[3]]
        return [int(np.ctypeslib.as_array(lc.llama_get_logits_ith(ctx, k), shape=(n_vocab,)).argmax()) for k in rows]
    t = time.perf_counter()
    nxt = step([(tok, pos, s, pos == len(p) - 1) for s, p in enumerate(prompts) for pos, tok in enumerate(p)])
    t_first = time.perf_counter()
    for d in range(1, n_dec):
        nxt = step([(nxt[s], len(p) + d - 1, s, True) for s, p in enumerate(prompts)])
    t_end = time.perf_counter()
    lc.llama_batch_free(batch)
    lc.llama_free(ctx)
    out = {"name": "llama.cpp (llama-cpp-python, GGUF)", "prompt_tokens": len(ids), "prompt_tps": len(ids) / ttft,
           "ttft_ms": ttft * 1000, "decode_tps": decode, "streams": streams,
           "total_tps": streams * n_dec / (t_end - t), "decode_total_tps": streams * (n_dec - 1) / (t_end - t_first),
           "peak_rss_mb": rss()}
else:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    torch.set_num_threads(threads); torch.set_grad_enabled(False)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    def prefill():
        t = time.perf_counter(); model(ids); return time.perf_counter() - t
    prefill()
    ttft = sorted(prefill() for _ in range(3))[1]
    def decode():
        t = time.perf_counter()
        g = model.generate(ids, max_new_tokens=n_dec, min_new_tokens=n_dec, do_sample=False)
        return (g.shape[1] - ids.shape[1] - 1) / (time.perf_counter() - t - ttft)
    decode = median([decode() for _ in range(runs)])
    tok.padding_side = "left"
    if tok.pad_token is None: tok.pad_token = tok.eos_token
    batch = tok([prompt.replace("a dragon", f"dragon number {i}") for i in range(streams)], return_tensors="pt", padding=True, add_special_tokens=False)
    t = time.perf_counter()
    g = model.generate(**batch, max_new_tokens=n_dec, min_new_tokens=n_dec, do_sample=False)
    total = (g.shape[1] - batch["input_ids"].shape[1]) * streams / (time.perf_counter() - t)
    out = {"name": "transformers f32 (PyTorch CPU)", "prompt_tokens": ids.shape[1], "prompt_tps": ids.shape[1] / ttft,
           "ttft_ms": ttft * 1000, "decode_tps": decode, "streams": streams, "total_tps": total, "peak_rss_mb": rss()}
print(json.dumps(out))
"#;

fn run_json(mut cmd: Command, what: &str) -> Result<Value> {
    let out = cmd.output().with_context(|| format!("starting {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}",
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

/// A Python peer, in its venv under the cache dir (installed on first use).
fn peer(ctx: &Ctx, args: &Args, mode: &str, path: &Path) -> Result<Value> {
    let python = match mode {
        "llamacpp" => super::ensure_venv(
            &ctx.paths.cache_dir.join("venv-llamacpp"),
            "llama_cpp",
            &["llama-cpp-python==0.3.36"],
            "; pip builds llama.cpp from source, about 10 minutes on 2 cores, once",
        )?,
        _ => super::ensure_venv(
            &ctx.paths.cache_dir.join("venv-transformers"),
            "torch, transformers, safetensors",
            &["torch", "transformers", "safetensors"],
            "; about 3 GB of wheels, once",
        )?,
    };
    let script = std::env::temp_dir().join(format!("cmi-bench-engine-{}.py", std::process::id()));
    std::fs::write(&script, PEER_PY)?;
    let mut cmd = Command::new(python);
    cmd.arg(&script)
        .arg(mode)
        .arg(path)
        .arg(args.threads.to_string())
        .arg(args.decode_tokens.to_string())
        .arg(args.streams.to_string())
        .arg(PROMPT)
        .arg(DECODE_RUNS.to_string())
        .env("OMP_NUM_THREADS", args.threads.to_string());
    let r = run_json(cmd, mode);
    let _ = std::fs::remove_file(&script);
    r
}

fn fmt(v: &Value, k: &str) -> String {
    v[k].as_f64().map_or_else(|| "-".into(), |x| format!("{x:.1}"))
}

/// One contender of the bench: a configuration of this engine, or a Python peer (`llamacpp`/`transformers`) with
/// the model file or folder it loads.
enum Contender {
    Ours(String),
    Peer(&'static str, PathBuf),
}

/// Whether a result row is one of this engine's configurations (not a peer's, nor the second-turn figure).
fn is_ours(row: &Value) -> bool {
    row["name"].as_str().unwrap_or("").starts_with("cmi") && !is_prefix(row)
}

/// Whether a result row is the second-turn (prefix reuse) figure.
fn is_prefix(row: &Value) -> bool {
    row["kind"] == "prefix"
}

/// The second-turn figure: both times to first token, and how much faster the second is.
fn prefix_line(r: &Value) -> Option<String> {
    let (first, second) = (r["first_ttft_ms"].as_f64()?, r["second_ttft_ms"].as_f64()?);
    let count = |k: &str| r[k].as_f64().map_or(0, |x| x.round() as u64);
    Some(format!(
        "second turn with a {}-token shared history (full precision): first turn TTFT {first:.1} ms, second turn \
         ({} tokens, {} from the prefix cache) {second:.1} ms: {:.1}x faster",
        count("history_tokens"),
        count("second_prompt_tokens"),
        count("cached_tokens"),
        first / second.max(1e-9)
    ))
}

/// One contender's rounds as one row: every number is the median over the rounds, except peak memory (resident and
/// KV caches), the largest.
fn combine(rounds: &[Value]) -> Value {
    let mut row = rounds[0].clone();
    if let Some(obj) = row.as_object_mut() {
        for (k, v) in obj.iter_mut() {
            let values: Vec<f64> = rounds.iter().filter_map(|r| r[k.as_str()].as_f64()).collect();
            if !v.is_number() || values.len() != rounds.len() {
                continue;
            }
            let x = if k == "peak_rss_mb" || k == "kv_peak_mb" {
                values.iter().copied().fold(f64::MIN, f64::max)
            } else {
                super::median(&values)
            };
            *v = json!(x);
        }
    }
    row
}

pub(crate) async fn run(args: Args, ctx: &Ctx) -> Result<ExitCode> {
    if let Some(config) = &args.worker {
        let (a, c) = (args.clone(), config.clone());
        let v = tokio::task::spawn_blocking(move || worker(&a, &c)).await??;
        println!("{v}");
        return Ok(ExitCode::SUCCESS);
    }
    let exe = std::env::current_exe()?;
    let configs: Vec<String> = std::iter::once("full".to_string())
        .chain(args.quantize.iter().filter(|q| !q.is_empty()).cloned())
        .collect();
    // The contenders, in the order they run within a round; a peer that fails is dropped from the later rounds.
    let mut contenders: Vec<Contender> = configs.iter().cloned().map(Contender::Ours).collect();
    if args.history_tokens > 0 {
        contenders.push(Contender::Ours(PREFIX_CONFIG.to_string()));
    }
    if !args.no_peers {
        if let Some(gguf) = &args.gguf {
            contenders.push(Contender::Peer("llamacpp", gguf.clone()));
        }
        contenders.push(Contender::Peer("transformers", args.model.clone()));
    }
    let rounds = args.rounds.max(1);
    let mut results: Vec<Vec<Value>> = vec![Vec::new(); contenders.len()];
    let mut ceilings = Vec::new();
    for round in 1..=rounds {
        for (i, c) in contenders.iter().enumerate() {
            match c {
                Contender::Ours(config) => {
                    let mut cmd = Command::new(&exe);
                    cmd.args(["bench", "engine"])
                        .arg(&args.model)
                        .args(["--threads", &args.threads.to_string()])
                        .args(["--decode-tokens", &args.decode_tokens.to_string()])
                        .args(["--streams", &args.streams.to_string()])
                        .args(["--history-tokens", &args.history_tokens.to_string()])
                        .args(["--worker", config])
                        .env("RAYON_NUM_THREADS", args.threads.to_string());
                    eprintln!("round {round}/{rounds}: measuring cmi engine ({config}) ...");
                    results[i].push(run_json(cmd, &format!("cmi engine ({config})"))?);
                }
                Contender::Peer(mode, path) => {
                    if round > 1 && results[i].is_empty() {
                        continue;
                    }
                    eprintln!("round {round}/{rounds}: measuring {mode} ...");
                    match peer(ctx, &args, mode, path) {
                        Ok(v) => results[i].push(v),
                        Err(e) => {
                            eprintln!("{mode} peer skipped: {e:#}");
                            results[i].clear();
                        }
                    }
                }
            }
        }
        ceilings.push(stream_read_gbs(args.threads));
    }
    let ceiling = super::median(&ceilings);
    let (prefix_rows, rows): (Vec<Value>, Vec<Value>) = results
        .iter()
        .filter(|r| !r.is_empty())
        .map(|r| combine(r))
        .partition(is_prefix);
    println!(
        "{:<38} {:>10} {:>9} {:>11} {:>12} {:>12} {:>12}",
        "engine",
        "prompt t/s",
        "TTFT ms",
        "decode t/s",
        format!("{}-stream t/s", args.streams),
        format!("{}-str dec t/s", args.streams),
        "peak RSS MB"
    );
    for r in &rows {
        println!(
            "{:<38} {:>10} {:>9} {:>11} {:>12} {:>12} {:>12}",
            r["name"].as_str().unwrap_or("?"),
            fmt(r, "prompt_tps"),
            fmt(r, "ttft_ms"),
            fmt(r, "decode_tps"),
            fmt(r, "total_tps"),
            fmt(r, "decode_total_tps"),
            fmt(r, "peak_rss_mb")
        );
    }
    println!(
        "({n}-stream t/s: every token of {n} concurrent requests over the wall time, prefills included; {n}-str dec: \
         tokens per second while all {n} are decoding)",
        n = args.streams
    );
    for r in &prefix_rows {
        if let Some(line) = prefix_line(r) {
            println!("{line}");
        }
    }
    if rounds > 1 {
        println!("one-stream decode t/s in each round (the table gives the median):");
        for r in results.iter().filter(|r| !r.is_empty() && !is_prefix(&r[0])) {
            let each: Vec<String> = r.iter().map(|v| fmt(v, "decode_tps")).collect();
            println!("  {:<36} {}", r[0]["name"].as_str().unwrap_or("?"), each.join("  "));
        }
    }
    println!();
    let ratio = |a: &Value, b: &Value, k: &str| match (a[k].as_f64(), b[k].as_f64()) {
        (Some(x), Some(y)) if y > 0.0 => format!("{:.2}x", x / y),
        _ => "-".into(),
    };
    for peer in rows.iter().filter(|r| !is_ours(r)) {
        for ours in rows.iter().filter(|r| is_ours(r)) {
            println!(
                "{} vs {}: prompt {}, decode {}, {n}-stream total {}, {n}-stream decode {}",
                ours["name"].as_str().unwrap_or("?"),
                peer["name"].as_str().unwrap_or("?"),
                ratio(ours, peer, "prompt_tps"),
                ratio(ours, peer, "decode_tps"),
                ratio(ours, peer, "total_tps"),
                ratio(ours, peer, "decode_total_tps"),
                n = args.streams,
            );
        }
    }
    let over = |r: &Value, a: &str, b: &str| match (r[a].as_f64(), r[b].as_f64()) {
        (Some(x), Some(y)) if y > 0.0 => format!("{:.2}x", x / y),
        _ => "-".into(),
    };
    for ours in rows.iter().filter(|r| is_ours(r)) {
        println!(
            "{} {}-stream / 1-stream decode: {} while all decode, {} with prefills",
            ours["name"].as_str().unwrap_or("?"),
            args.streams,
            over(ours, "decode_total_tps", "decode_tps"),
            over(ours, "total_tps", "decode_tps"),
        );
    }
    println!();
    println!(
        "memory: a plain streaming read with {} threads runs at {ceiling:.1} GB/s on this machine now (median of the \
         rounds); one-stream decode in full precision reads its weights at:",
        args.threads
    );
    for ours in rows.iter().filter(|r| is_ours(r)) {
        if let Some(gbs) = ours["weight_read_gbs"].as_f64() {
            println!(
                "  {}: {gbs:.1} GB/s ({:.0}% of it, {} MB of weights a token)",
                ours["name"].as_str().unwrap_or("?"),
                100.0 * gbs / ceiling,
                fmt(ours, "weight_mb")
            );
        }
    }
    println!();
    println!(
        "resident memory: the aim is at most {MEMORY_AIM}x the weights as run plus the KV caches at their peak ({} \
         streams):",
        args.streams
    );
    for ours in rows.iter().filter(|r| is_ours(r)) {
        if let Some(line) = memory_line(ours) {
            println!("  {line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The issue's memory aim: peak resident memory at most this many times the weights plus the KV caches.
const MEMORY_AIM: f64 = 1.2;

/// Peak resident memory against the weights this configuration holds and its KV caches' peak.
fn memory_line(r: &Value) -> Option<String> {
    let (rss, weights, kv) = (
        r["peak_rss_mb"].as_f64()?,
        r["held_weight_mb"].as_f64()?,
        r["kv_peak_mb"].as_f64()?,
    );
    let ratio = rss / (weights + kv);
    Some(format!(
        "{}: peak {rss:.1} MB = {ratio:.2}x ({weights:.1} MB of weights + {kv:.1} MB of KV caches){}",
        r["name"].as_str().unwrap_or("?"),
        if ratio <= MEMORY_AIM { "" } else { " - over the aim" }
    ))
}

#[cfg(test)]
mod tests {
    use super::{combine, decode_window_tps, memory_line};
    use serde_json::json;

    #[test]
    fn the_second_turn_line_gives_both_times_and_the_ratio() {
        let r = json!({"name": "cmi engine (full), second turn", "kind": "prefix", "history_tokens": 2000.0,
            "second_prompt_tokens": 2020.0, "cached_tokens": 2000.0, "first_ttft_ms": 1500.0, "second_ttft_ms": 30.0});
        assert!(super::is_prefix(&r) && !super::is_ours(&r));
        assert_eq!(
            super::prefix_line(&r).unwrap(),
            "second turn with a 2000-token shared history (full precision): first turn TTFT 1500.0 ms, second turn \
             (2020 tokens, 2000 from the prefix cache) 30.0 ms: 50.0x faster"
        );
    }

    #[test]
    fn rounds_combine_into_medians_and_the_largest_peak_memory() {
        let rounds = [
            json!({"name": "x", "decode_tps": 80.0, "peak_rss_mb": 350.0, "total_tps": null}),
            json!({"name": "x", "decode_tps": 36.0, "peak_rss_mb": 356.0, "total_tps": null}),
            json!({"name": "x", "decode_tps": 77.0, "peak_rss_mb": 351.0, "total_tps": null}),
        ];
        let row = combine(&rounds);
        assert_eq!(row["decode_tps"], json!(77.0));
        assert_eq!(row["peak_rss_mb"], json!(356.0));
        assert_eq!(row["total_tps"], json!(null));
        assert_eq!(row["name"], json!("x"));
    }

    #[test]
    fn the_memory_line_divides_the_peak_by_the_weights_and_kv_caches() {
        let ok =
            json!({"name": "cmi engine (full)", "peak_rss_mb": 330.0, "held_weight_mb": 269.0, "kv_peak_mb": 31.0});
        assert_eq!(
            memory_line(&ok).unwrap(),
            "cmi engine (full): peak 330.0 MB = 1.10x (269.0 MB of weights + 31.0 MB of KV caches)"
        );
        let over = json!({"name": "q", "peak_rss_mb": 200.0, "held_weight_mb": 100.0, "kv_peak_mb": 0.0});
        assert!(
            memory_line(&over)
                .unwrap()
                .ends_with("2.00x (100.0 MB of weights + 0.0 MB of KV caches) - over the aim")
        );
        // A peer's row has no such figures.
        assert_eq!(memory_line(&json!({"name": "llama.cpp", "peak_rss_mb": 100.0})), None);
    }

    #[test]
    fn the_decode_window_runs_from_the_last_first_token_to_the_first_finish() {
        // Stream a starts at 0 and decodes a token every 0.1 s until 1.0; b's prefill ends at 0.5, then it decodes
        // every 0.1 s until 1.5. The window is (0.5, 1.0]: a brings 5 tokens, b 5 (0.6 ... 1.0).
        let a: Vec<f64> = (0..=10).map(|i| i as f64 / 10.0).collect();
        let b: Vec<f64> = (5..=15).map(|i| i as f64 / 10.0).collect();
        let tps = decode_window_tps(&[a, b]).expect("a window");
        assert!((tps - 20.0).abs() < 1e-6, "{tps}");
    }

    #[test]
    fn no_window_when_a_stream_finishes_before_another_starts() {
        assert_eq!(decode_window_tps(&[vec![0.1, 0.2], vec![0.3, 0.4]]), None);
        assert_eq!(decode_window_tps(&[vec![0.1, 0.2], vec![]]), None);
    }
}
