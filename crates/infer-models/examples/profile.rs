//! Times the load, prefill and batched decode steps of a model folder:
//! `cargo run -p infer-models --example profile -- DIR [q8_0|q4k|q4_0 [CACHE]]` (CACHE: a quantised-weights cache file,
//! written by the first run and mapped by the next). `PROFILE_LOAD_ONLY=1` stops after the load.

use std::time::Instant;

use infer_models::{CausalLm, SeqInput};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // On a worker of a pool, as the engine's scheduler runs.
    let pool = rayon::ThreadPoolBuilder::new().build()?;
    pool.install(run).map_err(|e| e.to_string().into())
}

fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // SAFETY: first thing in main, before any thread starts.
    #[allow(unsafe_code)]
    unsafe {
        infer_models::pin_thread_count()
    };
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().ok_or("usage: profile DIR [q8_0|q4k|q4_0 [CACHE]]")?);
    let quantize = args.next().map(|q| q.parse()).transpose()?;
    let cache = args.next().map(std::path::PathBuf::from);
    let t = Instant::now();
    let model = infer_models::load_cached(&dir, quantize, cache.as_deref())?;
    println!(
        "load {:?} quantize {:?} {:?} heap {} MB",
        t.elapsed(),
        quantize,
        model.quantised_load(),
        model.heap_weight_bytes() >> 20
    );
    if std::env::var_os("PROFILE_LOAD_ONLY").is_some() {
        return Ok(());
    }
    let prompt: Vec<u32> = (0..40u32).map(|i| 100 + i * 7).collect();
    let only: Option<usize> = std::env::var("PROFILE_STREAMS").ok().and_then(|v| v.parse().ok());
    for streams in [1usize, 8].into_iter().filter(|s| only.is_none_or(|o| o == *s)) {
        let mut caches: Vec<_> = (0..streams).map(|_| model.new_cache()).collect();
        let t = Instant::now();
        for c in &mut caches {
            model.forward_last(&mut [SeqInput {
                tokens: &prompt,
                cache: c,
            }])?;
        }
        let prefill = t.elapsed() / streams as u32;
        let steps = if only.is_some() { 200 } else { 32 };
        let t = Instant::now();
        for s in 0..steps {
            let toks: Vec<[u32; 1]> = (0..streams).map(|i| [(200 + s * 3 + i) as u32]).collect();
            let mut batch: Vec<SeqInput<'_>> = caches
                .iter_mut()
                .zip(&toks)
                .map(|(cache, t)| SeqInput { tokens: t, cache })
                .collect();
            let logits = model.forward_last(&mut batch)?;
            let _ = logits.to_vec2::<f32>()?;
        }
        let per = t.elapsed() / steps as u32;
        println!(
            "streams {streams}: prefill {} tok {prefill:?} ({:.0} tok/s); decode step {per:?} -> {:.1} tok/s total",
            prompt.len(),
            prompt.len() as f64 / prefill.as_secs_f64(),
            streams as f64 / per.as_secs_f64()
        );
    }
    Ok(())
}
