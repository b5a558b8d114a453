//! What `cmi bench engine` prints: one row per contender (medians over the rounds), our figures over each peer's,
//! the second turn, decode as a share of the streaming-read bound for the bytes it reads, and peak memory over the
//! weights and KV caches; and the streaming read itself.

use std::path::Path;
use std::time::Instant;

use model_synth::Shape;
use serde_json::{Value, json};

/// The memory aim: peak resident memory at most this many times the weights plus the KV caches.
const MEMORY_AIM: f64 = 1.2;

pub(super) struct Report<'a> {
    pub(super) model: &'a Path,
    pub(super) shape: Option<Shape>,
    pub(super) threads: usize,
    pub(super) streams: usize,
    pub(super) rows: &'a [Value],
    pub(super) prefix_rows: &'a [Value],
    pub(super) per_round: &'a [(String, Vec<f64>)],
    pub(super) ceiling: f64,
    pub(super) notes: &'a [String],
}

/// Whether a result row is one of this engine's configurations (not a peer's, nor a second-turn figure).
pub(super) fn is_ours(row: &Value) -> bool {
    row["name"].as_str().unwrap_or("").starts_with("cmi") && !is_prefix(row)
}

/// Whether a result row is this engine's second-turn (prefix reuse) figure.
pub(super) fn is_prefix(row: &Value) -> bool {
    row["kind"] == "prefix"
}

/// One contender's rounds as one row: every number is the median over the rounds, except peak memory (resident and
/// KV caches), the largest.
pub(super) fn combine(rounds: &[Value]) -> Value {
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
                super::super::median(&values)
            };
            *v = json!(x);
        }
    }
    row
}

/// A second-turn figure: both times to first token, and the second as a share of the first.
pub(super) fn prefix_line(r: &Value) -> Option<String> {
    let (first, second) = (r["first_ttft_ms"].as_f64()?, r["second_ttft_ms"].as_f64()?);
    let count = |k: &str| r[k].as_f64().map_or(0, |x| x.round() as u64);
    let cached = r["cached_tokens"].as_f64().map_or(String::new(), |c| {
        format!(", {} from the prefix cache", c.round() as u64)
    });
    Some(format!(
        "{}: {}-token history, first turn TTFT {first:.1} ms; second turn (+{} tokens{cached}) {second:.1} ms = \
         {:.1}% of the first",
        r["name"].as_str().unwrap_or("?"),
        count("history_tokens"),
        r["second_prompt_tokens"].as_f64().map_or_else(
            || "a question's".to_string(),
            |n| (n.round() as u64 - count("history_tokens")).to_string()
        ),
        100.0 * second / first.max(1e-9)
    ))
}

/// Peak resident memory against the weights this configuration holds and its KV caches' peak.
pub(super) fn memory_line(r: &Value) -> Option<String> {
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

/// What a plain streaming read achieves on this machine now, in GB/s: `threads` threads each xor-fold their part of
/// a buffer larger than any cache that matters here (best of five passes). The ceiling a decode step bound by
/// reading its weights can approach; hand-rolled, as no crate measures just this.
pub(super) fn stream_read_gbs(threads: usize) -> f64 {
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

fn fmt(v: &Value, k: &str) -> String {
    v[k].as_f64().map_or_else(|| "-".into(), |x| format!("{x:.1}"))
}

fn name(v: &Value) -> &str {
    v["name"].as_str().unwrap_or("?")
}

/// `a[k] / b[k]` as `1.23x`, or `-`.
fn ratio(a: &Value, b: &Value, k: &str) -> String {
    match (a[k].as_f64(), b[k].as_f64()) {
        (Some(x), Some(y)) if y > 0.0 => format!("{:.2}x", x / y),
        _ => "-".into(),
    }
}

pub(super) fn print(r: &Report<'_>) {
    match r.shape {
        Some(s) => println!(
            "model: the {} shape ({}), random bf16 weights, {} threads",
            s.name, s.about, r.threads
        ),
        None => println!("model: {}, {} threads", r.model.display(), r.threads),
    }
    for n in r.notes {
        println!("note: {n}");
    }
    println!();
    println!(
        "{:<44} {:>8} {:>9} {:>9} {:>9} {:>7} {:>10} {:>10} {:>10}",
        "engine",
        "cold s",
        "prefill",
        "TTFT ms",
        "decode",
        "bound%",
        format!("{}-str t/s", r.streams),
        format!("{}-str dec", r.streams),
        "peak RSS MB"
    );
    let bound = |v: &Value| {
        v["read_gbs"]
            .as_f64()
            .map_or_else(|| "-".into(), |g| format!("{:.0}%", 100.0 * g / r.ceiling))
    };
    for v in r.rows {
        println!(
            "{:<44} {:>8} {:>9} {:>9} {:>9} {:>7} {:>10} {:>10} {:>10}",
            name(v),
            fmt(v, "cold_start_s"),
            fmt(v, "prompt_tps"),
            fmt(v, "ttft_ms"),
            fmt(v, "decode_tps"),
            bound(v),
            fmt(v, "total_tps"),
            fmt(v, "decode_total_tps"),
            fmt(v, "peak_rss_mb")
        );
    }
    let prompt = r.rows.first().and_then(|v| v["prompt_tokens"].as_f64()).unwrap_or(0.0);
    println!(
        "(cold s: process start to the first token, files in the page cache; prefill: tokens/s over a {prompt:.0}-token \
         prompt; TTFT: the short chat prompt; decode: one stream, tokens/s; bound%: decode's weight reads as a share \
         of the streaming read below; {n}-str: {n} concurrent requests, all tokens over the wall time and while all \
         decode)",
        n = r.streams
    );
    if r.per_round.iter().any(|(_, v)| v.len() > 1) {
        println!("one-stream decode t/s in each round (the table gives the median):");
        for (n, each) in r.per_round {
            let each: Vec<String> = each.iter().map(|x| format!("{x:.1}")).collect();
            println!("  {n:<42} {}", each.join("  "));
        }
    }
    println!();
    for peer in r.rows.iter().filter(|v| !is_ours(v)) {
        for ours in r.rows.iter().filter(|v| is_ours(v)) {
            println!(
                "{} vs {}: prefill {}, decode {}, cold start {} of its time, {n}-stream total {}",
                name(ours),
                name(peer),
                ratio(ours, peer, "prompt_tps"),
                ratio(ours, peer, "decode_tps"),
                ratio(ours, peer, "cold_start_s"),
                ratio(ours, peer, "total_tps"),
                n = r.streams,
            );
        }
    }
    for v in r.prefix_rows {
        if let Some(line) = prefix_line(v) {
            println!("{line}");
        }
    }
    println!();
    println!(
        "memory: a plain streaming read with {} threads runs at {:.1} GB/s on this machine now (median of the \
         rounds); one-stream decode reads:",
        r.threads, r.ceiling
    );
    for v in r.rows {
        if let (Some(mb), Some(gbs)) = (v["read_mb"].as_f64(), v["read_gbs"].as_f64()) {
            println!(
                "  {}: {mb:.1} MB a token, {gbs:.1} GB/s = {:.0}% of it",
                name(v),
                100.0 * gbs / r.ceiling
            );
        }
    }
    println!();
    println!("resident memory: the aim is at most {MEMORY_AIM}x the weights as run plus the KV caches at their peak:");
    for v in r.rows.iter().filter(|v| is_ours(v)) {
        if let Some(line) = memory_line(v) {
            println!("  {line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{combine, memory_line, prefix_line};
    use serde_json::json;

    #[test]
    fn the_second_turn_line_gives_both_times_and_the_share() {
        let r = json!({"name": "cmi engine (q4k), second turn", "kind": "prefix", "history_tokens": 2000.0,
            "second_prompt_tokens": 2020.0, "cached_tokens": 2000.0, "first_ttft_ms": 1500.0, "second_ttft_ms": 30.0});
        assert!(super::is_prefix(&r) && !super::is_ours(&r));
        assert_eq!(
            prefix_line(&r).unwrap(),
            "cmi engine (q4k), second turn: 2000-token history, first turn TTFT 1500.0 ms; second turn (+20 tokens, \
             2000 from the prefix cache) 30.0 ms = 2.0% of the first"
        );
        // llama.cpp's row has no cached-token count.
        let l = json!({"name": "llama.cpp, second turn", "history_tokens": 10.0, "first_ttft_ms": 100.0,
            "second_ttft_ms": 50.0});
        assert!(
            prefix_line(&l)
                .unwrap()
                .ends_with("(+a question's tokens) 50.0 ms = 50.0% of the first")
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
}
