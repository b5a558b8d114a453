//! One configuration of this engine measured in its own process (so that its peak resident memory is its own),
//! printed as one JSON line: cold start, prefill, time to first token, decode, N streams; or the second turn of a
//! conversation (prefix reuse); or `prepare`, the first load that writes the quantised-weights cache.

use std::path::Path;
use std::time::Instant;

use anyhow::{Result, bail};
use infer_engine::{Engine, EngineEvent, GenerateRequest, LoadOptions, Quantize};
use serde_json::{Value, json};

use super::prepare::Prompts;

/// Timed one-stream decodes per contender; the median is reported (the peers' script takes the same count).
pub(super) const DECODE_RUNS: usize = 3;

/// What a worker measures, from its `--worker` argument: `full`, a quantisation (`q4k`), `prefix:<that>` or
/// `prepare:<quantisation>`.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Job {
    Measure(Option<Quantize>),
    SecondTurn(Option<Quantize>),
    Prepare(Quantize),
}

fn config(s: &str) -> Result<Option<Quantize>> {
    match s {
        "full" => Ok(None),
        q => Ok(Some(q.parse::<Quantize>().map_err(anyhow::Error::msg)?)),
    }
}

/// The name a configuration's rows carry.
pub(super) fn config_name(q: Option<Quantize>) -> String {
    q.map_or_else(|| "full".to_string(), |q| q.to_string())
}

impl std::str::FromStr for Job {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Job> {
        Ok(match s.split_once(':') {
            Some(("prefix", c)) => Job::SecondTurn(config(c)?),
            Some(("prepare", c)) => match config(c)? {
                Some(q) => Job::Prepare(q),
                None => bail!("worker `{s}`: only a quantisation is prepared"),
            },
            None => Job::Measure(config(s)?),
            _ => bail!("worker `{s}`: expected full, a quantisation, prefix:<config> or prepare:<quantisation>"),
        })
    }
}

pub(super) struct Setup<'a> {
    pub(super) model: &'a Path,
    pub(super) prompts: &'a Prompts,
    pub(super) cache: Option<&'a Path>,
    pub(super) decode_tokens: usize,
    pub(super) streams: usize,
}

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

/// One request's events: (seconds to the first event, seconds from it to the end, completion tokens, cached tokens).
fn timed(engine: &Engine, ids: &[u32], max_tokens: usize) -> Result<(f64, f64, usize, usize)> {
    let mut req = GenerateRequest::from_tokens(ids.to_vec());
    req.max_tokens = max_tokens;
    let start = Instant::now();
    let mut g = engine.generate(req)?;
    let mut first = None;
    while let Some(ev) = g.blocking_next() {
        let now = start.elapsed().as_secs_f64();
        let f = *first.get_or_insert(now);
        match ev {
            EngineEvent::Delta { .. } => {}
            EngineEvent::Done {
                completion_tokens,
                cached_tokens,
                ..
            } => return Ok((f, now - f, completion_tokens, cached_tokens)),
            EngineEvent::Failed { message } => bail!("generation failed: {message}"),
        }
    }
    bail!("stream ended without Done")
}

/// One request; the time (seconds since `clock`) at which each of its tokens arrived.
fn token_times(engine: &Engine, ids: Vec<u32>, max_tokens: usize, clock: Instant) -> Result<Vec<f64>> {
    let mut req = GenerateRequest::from_tokens(ids);
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
pub(super) fn decode_window_tps(streams: &[Vec<f64>]) -> Option<f64> {
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

pub(super) fn run(job: &Job, s: &Setup<'_>, started: Instant) -> Result<Value> {
    match job {
        Job::Measure(q) => measure(*q, s, started),
        Job::SecondTurn(q) => second_turn(*q, s),
        Job::Prepare(q) => {
            let t = Instant::now();
            let engine = load(Some(*q), s, 1, 0)?;
            let l = engine.quantised_load();
            Ok(
                json!({"config": q.to_string(), "load_s": t.elapsed().as_secs_f64(), "quantised": l.quantised,
                      "mapped": l.mapped, "cache_written": l.cache_written}),
            )
        }
    }
}

fn load(quantize: Option<Quantize>, s: &Setup<'_>, max_batch: usize, prefix_cache_bytes: usize) -> Result<Engine> {
    Ok(Engine::load(
        s.model,
        LoadOptions {
            quantize,
            quantised_cache: quantize.and(s.cache.map(Path::to_path_buf)),
            max_batch,
            max_queue: 64,
            prefix_cache_bytes,
            ..LoadOptions::default()
        },
    )?)
}

fn measure(quantize: Option<Quantize>, s: &Setup<'_>, started: Instant) -> Result<Value> {
    let p = s.prompts;
    let t = Instant::now();
    // Every request here repeats a prompt: these figures are of computing it, so no prefix cache.
    let engine = load(quantize, s, s.streams.max(1), 0)?;
    let load_s = t.elapsed().as_secs_f64();
    let first_token = timed(&engine, &p.chat, 1)?.0;
    // From the process's start (as the peers count it) to the first token of the first request.
    let cold_start_s = started.elapsed().as_secs_f64();
    timed(&engine, &p.chat, 2)?; // warm-up
    let median_of = |ids: &[u32], n: usize| -> Result<f64> {
        let v: Vec<f64> = (0..n)
            .map(|_| timed(&engine, ids, 1).map(|r| r.0))
            .collect::<Result<_>>()?;
        Ok(super::super::median(&v))
    };
    let ttft = median_of(&p.chat, 3)?;
    let prefill_s = if p.prefill == p.chat {
        ttft
    } else {
        median_of(&p.prefill, if p.prefill.len() > 64 { 1 } else { 3 })?
    };
    // Decode speed as the median of a few runs, as for the peers: within one process a single run can still land
    // in a short slow spell (the rounds take care of the longer ones).
    let decodes: Vec<f64> = (0..DECODE_RUNS)
        .map(|_| timed(&engine, &p.chat, s.decode_tokens).map(|(_, dt, n, _)| n.saturating_sub(1) as f64 / dt))
        .collect::<Result<_>>()?;
    let decode = super::super::median(&decodes);
    let read = engine.decode_read_bytes() as f64;
    let load_report = engine.quantised_load();
    let mut out = json!({
        "name": format!("cmi engine ({})", config_name(quantize)),
        "load_s": load_s,
        "first_token_s": first_token,
        "cold_start_s": cold_start_s,
        "quantised_at_load": load_report.quantised,
        "prompt_tokens": p.prefill.len(),
        "prompt_tps": p.prefill.len() as f64 / prefill_s,
        "ttft_ms": ttft * 1000.0,
        "decode_tps": decode,
        "weight_mb": engine.weight_bytes() as f64 / 1e6,
        "held_weight_mb": engine.held_weight_bytes() as f64 / 1e6,
        "read_mb": read / 1e6,
        "read_gbs": read * decode / 1e9,
    });
    if s.streams > 1 {
        // N concurrent streams, each from its own thread, timed per token against one clock.
        let t = Instant::now();
        let handles: Vec<_> = p
            .streams
            .iter()
            .take(s.streams)
            .map(|ids| {
                let (e, ids, n) = (engine.clone(), ids.clone(), s.decode_tokens);
                std::thread::spawn(move || token_times(&e, ids, n, t))
            })
            .collect();
        let mut streams = Vec::new();
        for h in handles {
            streams.push(h.join().map_err(|_| anyhow::anyhow!("stream thread panicked"))??);
        }
        let total: usize = streams.iter().map(|s| s.len()).sum();
        out["streams"] = json!(s.streams);
        out["total_tps"] = json!(total as f64 / t.elapsed().as_secs_f64());
        out["decode_total_tps"] = json!(decode_window_tps(&streams));
    }
    out["kv_peak_mb"] = json!(engine.peak_kv_cache_bytes() as f64 / 1e6);
    out["peak_rss_mb"] = json!(rss_kib("VmHWM:") as f64 / 1024.0);
    Ok(out)
}

/// First and second turn of a conversation: a long history, then the same history with a short new question. The
/// second turn's prompt starts with the first's, so the prefix cache gives all of it but the question.
fn second_turn(quantize: Option<Quantize>, s: &Setup<'_>) -> Result<Value> {
    let p = s.prompts;
    let engine = load(quantize, s, 1, infer_engine::default_prefix_cache_bytes().max(1 << 30))?;
    timed(&engine, &p.chat, 1)?; // warm-up
    let first = timed(&engine, &p.history, 1)?.0;
    let second_prompt: Vec<u32> = p.history.iter().chain(&p.question).copied().collect();
    let (second, _, _, cached) = timed(&engine, &second_prompt, 1)?;
    Ok(json!({
        "name": format!("cmi engine ({}), second turn", config_name(quantize)),
        "kind": "prefix",
        "history_tokens": p.history.len(),
        "second_prompt_tokens": second_prompt.len(),
        "cached_tokens": cached,
        "first_ttft_ms": first * 1000.0,
        "second_ttft_ms": second * 1000.0,
    }))
}

#[cfg(test)]
mod tests {
    use super::{Job, decode_window_tps};
    use infer_engine::Quantize;

    #[test]
    fn worker_jobs_parse_and_a_bad_one_names_itself() {
        assert_eq!("full".parse::<Job>().unwrap(), Job::Measure(None));
        assert_eq!(
            "prefix:q4k".parse::<Job>().unwrap(),
            Job::SecondTurn(Some(Quantize::Q4K))
        );
        assert_eq!("prepare:q4_0".parse::<Job>().unwrap(), Job::Prepare(Quantize::Q4_0));
        assert!(
            "prepare:full"
                .parse::<Job>()
                .unwrap_err()
                .to_string()
                .contains("prepare:full")
        );
        assert!("q9".parse::<Job>().unwrap_err().to_string().contains("q9"));
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
