//! Renders every case of the conformance corpus N times in a loop (for profilers: `perf record`, callgrind) and
//! prints the time per render. Usage: `cargo run -p chat-template --example render_corpus -- [PASSES] [TEMPLATE]`.

use std::path::Path;
use std::time::Instant;

use chat_template::{ChatTemplate, RenderRequest, SpecialTokens};
use serde_json::Value;

/// mimalloc, like the `cmi` binary (which reaches it through its own small-block shim), so that profiles show the
/// allocation costs `cmi bench templates` pays.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).expect("read")).expect("parse")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let passes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let only = args.next();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let manifest = read_json(&corpus.join("manifest.json"));
    let now =
        chrono::NaiveDateTime::parse_from_str(manifest["fixed_now"].as_str().expect("fixed_now"), "%Y-%m-%dT%H:%M:%S")
            .expect("fixed_now");
    let mut cases: Vec<(ChatTemplate, RenderRequest)> = Vec::new();
    for t in manifest["templates"].as_array().expect("templates") {
        let name = t["name"].as_str().expect("name");
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let Some(file) = t["template_file"].as_str() else {
            continue;
        };
        let tmpl = ChatTemplate::new(
            &std::fs::read_to_string(corpus.join(file)).expect("template"),
            SpecialTokens::from_json(&t["special_tokens"]),
        )
        .expect("compile");
        for c in manifest["conversations"].as_array().expect("conversations") {
            let conv = read_json(&corpus.join(c["file"].as_str().expect("file")));
            let mut req = RenderRequest::from_json(&conv).expect("request");
            req.now = Some(now);
            cases.push((tmpl.clone(), req));
        }
    }
    // Best pass: the least disturbed by other processes on a shared machine.
    let mut best = f64::INFINITY;
    let mut total = 0.0;
    for _ in 0..passes {
        let start = Instant::now();
        for (t, r) in &cases {
            std::hint::black_box(t.render(r).ok());
        }
        let s = start.elapsed().as_secs_f64();
        best = best.min(s);
        total += s;
    }
    let n = cases.len() as f64;
    println!(
        "{:.2} µs/render best pass, {:.2} mean ({} renders)",
        best / n * 1e6,
        total / (passes as f64 * n) * 1e6,
        passes * cases.len()
    );
}
