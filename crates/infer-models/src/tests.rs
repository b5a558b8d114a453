//! Unit tests on tiny generated models: batching and caching give the same logits as one full pass; bad folders
//! fail with messages naming the file, tensor or field.

use std::path::Path;

use candle_core::{IndexOp, Tensor};
use test_support::{DType, Family, TinyOptions};

use super::*;

fn tiny(family: Family) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    test_support::tiny_model(dir.path(), family).expect("tiny model");
    dir
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .expect("sub")
        .abs()
        .expect("abs")
        .flatten_all()
        .expect("flat")
        .max(0)
        .expect("max")
        .to_scalar::<f32>()
        .expect("scalar")
}

const PROMPT: [u32; 7] = [104, 101, 108, 108, 111, 32, 119];

#[test]
fn incremental_decoding_matches_one_full_pass_for_every_family() {
    let _kernel = crate::dense::fixed_kernel();
    for family in Family::ALL {
        let dir = tiny(family);
        let m = load(dir.path(), None).expect("load");
        let mut c = m.new_cache();
        let full = m.forward_all(&PROMPT, &mut c).expect("full");
        assert_eq!(c.len(), PROMPT.len());
        // Prefill 4, then 3 single steps.
        let mut c2 = m.new_cache();
        let pre = m.forward_all(&PROMPT[..4], &mut c2).expect("prefill");
        assert!(
            max_abs_diff(&pre, &full.i(..4).expect("rows")) < 1e-4,
            "{family} prefill"
        );
        for (i, &t) in PROMPT[4..].iter().enumerate() {
            let step = m
                .forward_last(&mut [SeqInput {
                    tokens: &[t],
                    cache: &mut c2,
                }])
                .expect("step");
            let d = max_abs_diff(&step.i(0).expect("row"), &full.i(4 + i).expect("row"));
            assert!(d < 1e-4, "{family} step {i}: {d}");
        }
        // Logits are not degenerate.
        let row: Vec<f32> = full.i(6).expect("row").to_vec1().expect("vec");
        let spread = row.iter().copied().fold(f32::MIN, f32::max) - row.iter().copied().fold(f32::MAX, f32::min);
        assert!(spread > 1.0, "{family}: logits spread {spread}");
    }
}

#[test]
fn a_mixed_batch_gives_each_sequence_its_own_logits() {
    let _kernel = crate::dense::fixed_kernel();
    let dir = tiny(Family::Qwen3);
    let m = load(dir.path(), None).expect("load");
    let (a, b) = (&PROMPT[..5], &[50u32, 60, 70][..]);
    let alone = |toks: &[u32]| {
        let mut c = m.new_cache();
        m.forward_all(toks, &mut c)
            .expect("fwd")
            .i(toks.len() - 1)
            .expect("row")
    };
    // Sequence A is mid-decode, B is a fresh prefill: both in one pass.
    let mut ca = m.new_cache();
    m.forward_all(&a[..4], &mut ca).expect("prefill a");
    let mut cb = m.new_cache();
    let out = m
        .forward_last(&mut [
            SeqInput {
                tokens: &a[4..],
                cache: &mut ca,
            },
            SeqInput {
                tokens: b,
                cache: &mut cb,
            },
        ])
        .expect("batch");
    assert!(max_abs_diff(&out.i(0).expect("row"), &alone(a)) < 1e-4);
    assert!(max_abs_diff(&out.i(1).expect("row"), &alone(b)) < 1e-4);
}

#[test]
fn sharded_and_half_precision_folders_load_and_agree() {
    let _kernel = crate::dense::fixed_kernel();
    let load_with = |sharded, dtype| {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut o = TinyOptions::new(Family::Llama);
        o.sharded = sharded;
        o.dtype = dtype;
        test_support::tiny_model_with(dir.path(), &o).expect("tiny");
        let m = load(dir.path(), None).expect("load");
        let mut c = m.new_cache();
        m.forward_all(&PROMPT, &mut c).expect("fwd")
    };
    let base = load_with(false, DType::F32);
    assert!(max_abs_diff(&base, &load_with(true, DType::F32)) == 0.0);
    for dtype in [DType::BF16, DType::F16] {
        let half = load_with(true, dtype);
        let d = max_abs_diff(&base, &half);
        assert!(d > 0.0 && d < 0.5, "{dtype:?} differs a little: {d}");
    }
}

#[test]
fn quantised_models_stay_close_to_full_precision() {
    let _kernel = crate::dense::fixed_kernel();
    let dir = tiny(Family::Mistral);
    let full = load(dir.path(), None).expect("load");
    let mut c1 = full.new_cache();
    let a = full.forward_all(&PROMPT, &mut c1).expect("fwd");
    // At full precision the model holds exactly the file's tensors; quantised, fewer bytes, 4-bit fewer than 8-bit.
    assert_eq!(full.held_weight_bytes(), full.weight_bytes());
    let held = |kind| {
        load(dir.path(), Some(kind))
            .expect("load quantised")
            .held_weight_bytes()
    };
    let (q8, q4) = (held(Quantize::Q8_0), held(Quantize::Q4_0));
    assert!(q4 < q8 && q8 < full.weight_bytes(), "{q4} {q8} {}", full.weight_bytes());
    // 8-bit blocks stay closer than 4-bit ones; every kind differs (it was really quantised).
    for (kind, bound) in [(Quantize::Q8_0, 0.5), (Quantize::Q4_0, 2.0), (Quantize::Q4K, 2.0)] {
        let q = load(dir.path(), Some(kind)).expect("load quantised");
        let mut c2 = q.new_cache();
        let b = q.forward_all(&PROMPT, &mut c2).expect("fwd");
        let d = max_abs_diff(&a, &b);
        assert!(d > 0.0 && d < bound, "{kind} error {d}");
        // The one-row decode path agrees with the prefill path on the same quantised weights: exactly up to the
        // order of the sums, or to bf16 rounding where the prefill's products ran in AMX tiles.
        let same = if crate::dense::tiles_available() { 0.1 } else { 1e-3 };
        let mut c3 = q.new_cache();
        let mut last = None;
        for &t in PROMPT.iter() {
            last = Some(q.forward_all(&[t], &mut c3).expect("step"));
        }
        let n = PROMPT.len();
        let tail = b.narrow(0, n - 1, 1).expect("row");
        let step = last.expect("steps");
        assert!(
            max_abs_diff(&tail, &step) < same,
            "{kind}: step-by-step differs from one pass: {}",
            max_abs_diff(&tail, &step)
        );
    }
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("config.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).expect("read")).expect("json");
    f(&mut v);
    std::fs::write(&p, serde_json::to_vec(&v).expect("ser")).expect("write");
}

fn load_err(dir: &Path) -> String {
    match load(dir, None) {
        Ok(_) => panic!("load should fail"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn refused_architectures_are_named() {
    let _kernel = crate::dense::fixed_kernel();
    for (arch, mt) in [
        ("T5ForConditionalGeneration", "t5"),
        ("GPTBigCodeForCausalLM", "gpt_bigcode"),
        ("MllamaForConditionalGeneration", "mllama"),
        ("Qwen2VLForConditionalGeneration", "qwen2_vl"),
    ] {
        let dir = tiny(Family::Llama);
        edit_config(dir.path(), |v| {
            v["architectures"] = serde_json::json!([arch]);
            v["model_type"] = serde_json::json!(mt);
        });
        let e = load_err(dir.path());
        assert!(e.contains(arch) && e.starts_with("unsupported architecture"), "{e}");
        let cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).expect("read")).expect("json");
        assert_eq!(unsupported_architecture(&cfg).as_deref(), Some(arch));
    }
    let dir = tiny(Family::Qwen2);
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).expect("read")).expect("json");
    assert_eq!(unsupported_architecture(&cfg), None);
}

#[test]
fn qwen3_moe_layers_follow_mlp_only_layers_and_the_sparse_step() {
    let cfg = |f: &dyn Fn(&mut serde_json::Value)| {
        let dir = tiny(Family::Qwen3Moe);
        edit_config(dir.path(), f);
        ModelConfig::from_dir(dir.path())
    };
    let c = cfg(&|_| {}).expect("config");
    assert_eq!(c.moe_layers, [true, false]);
    assert_eq!(
        (c.num_local_experts, c.num_experts_per_tok, c.moe_intermediate_size),
        (8, 2, 32)
    );
    assert!(c.norm_topk_prob && c.qk_norm);
    // Every second layer sparse (transformers: (layer + 1) % decoder_sparse_step == 0).
    let c = cfg(&|v| {
        v["mlp_only_layers"] = serde_json::json!([]);
        v["decoder_sparse_step"] = serde_json::json!(2);
    })
    .expect("config");
    assert_eq!(c.moe_layers, [false, true]);
    // Both dense, and then the experts' fields are not needed.
    let c = cfg(&|v| v["mlp_only_layers"] = serde_json::json!([0, 1])).expect("config");
    assert_eq!(
        (c.moe_layers.as_slice(), c.num_local_experts),
        ([false, false].as_slice(), 0)
    );
    let m = {
        let dir = tiny(Family::Qwen3Moe);
        edit_config(dir.path(), |v| v["mlp_only_layers"] = serde_json::json!([]));
        load_err(dir.path())
    };
    assert!(
        m.contains("model.layers.1.mlp.experts.0.gate_proj.weight") && m.contains("missing"),
        "{m}"
    );
    let e = cfg(&|v| v["num_experts_per_tok"] = serde_json::json!(9))
        .expect_err("more experts per token than experts")
        .to_string();
    assert!(e.contains("num_experts_per_tok"), "{e}");
}

#[test]
fn mxfp4_experts_are_run_as_stored_whatever_the_quantisation() {
    let _kernel = crate::dense::fixed_kernel();
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = TinyOptions {
        mxfp4: true,
        ..TinyOptions::new(Family::GptOss)
    };
    test_support::tiny_model_with(dir.path(), &opts).expect("tiny");
    let full = load(dir.path(), None).expect("load");
    // The experts are held (laid out with their scales), at the size they are stored in.
    assert_eq!(full.held_weight_bytes(), full.weight_bytes());
    let expert_bytes = full.heap_weight_bytes();
    assert!(expert_bytes > 0);
    let a = full.forward_all(&PROMPT, &mut full.new_cache()).expect("fwd");
    let cache = cache_path(dir.path());
    for (kind, bound) in [(Quantize::Q8_0, 0.5), (Quantize::Q4_0, 4.0)] {
        let _ = std::fs::remove_file(&cache);
        let q = load_cached(dir.path(), Some(kind), Some(&cache)).expect("load quantised");
        // Every matrix but the experts quantised (q/k/v fused and o per layer, the head), their blocks mapped back from
        // the cache; the experts held as they were.
        assert_eq!(q.quantised_load().quantised, 2 * 2 + 1, "{kind}");
        assert_eq!(q.heap_weight_bytes(), expert_bytes, "{kind}");
        let b = q.forward_all(&PROMPT, &mut q.new_cache()).expect("fwd");
        let d = max_abs_diff(&a, &b);
        assert!(d > 0.0 && d < bound, "{kind} error {d}");
    }
}

#[test]
fn every_listed_model_type_is_run() {
    for t in MODEL_TYPES {
        let cfg = serde_json::json!({"model_type": t});
        assert_eq!(unsupported_architecture(&cfg), None, "{t}");
    }
}

#[test]
fn bad_folders_fail_naming_the_file_tensor_or_field() {
    let _kernel = crate::dense::fixed_kernel();
    // Missing tensor.
    let dir = tiny(Family::Mistral);
    let bytes = std::fs::read(dir.path().join("model.safetensors")).expect("read");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("st");
    let kept: Vec<(String, safetensors::tensor::TensorView<'_>)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| n != "model.layers.1.mlp.down_proj.weight")
        .collect();
    safetensors::serialize_to_file(kept, None, &dir.path().join("model.safetensors")).expect("write");
    let e = load_err(dir.path());
    assert!(
        e.contains("model.layers.1.mlp.down_proj.weight") && e.contains("missing"),
        "{e}"
    );

    // Wrong shape: the config says a larger hidden size than the weights have.
    let dir = tiny(Family::Llama);
    edit_config(dir.path(), |v| v["intermediate_size"] = serde_json::json!(96));
    let e = load_err(dir.path());
    assert!(
        e.contains("gate_proj.weight") && e.contains("[96, 64]") && e.contains("[128, 64]"),
        "{e}"
    );

    // Truncated file.
    let dir = tiny(Family::Qwen2);
    let p = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&p).expect("read");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).expect("truncate");
    let e = load_err(dir.path());
    assert!(
        e.contains("model.safetensors") && e.contains("invalid safetensors"),
        "{e}"
    );

    // A config field we do not understand.
    let dir = tiny(Family::Llama);
    edit_config(dir.path(), |v| {
        v["rope_scaling"] = serde_json::json!({"rope_type": "longrope", "factor": 4.0})
    });
    let e = load_err(dir.path());
    assert!(
        e.contains("config.json") && e.contains("rope_scaling") && e.contains("longrope"),
        "{e}"
    );
    let dir = tiny(Family::Qwen3);
    edit_config(dir.path(), |v| v["num_key_value_heads"] = serde_json::json!(3));
    let e = load_err(dir.path());
    assert!(e.contains("num_key_value_heads") && e.contains('3'), "{e}");

    // Garbage header bytes never panic.
    for n in [0usize, 3, 8, 9, 40] {
        let dir = tiny(Family::Llama);
        let mut junk = vec![0xffu8; n];
        if n >= 8 {
            junk[..8].copy_from_slice(&(30u64).to_le_bytes());
        }
        std::fs::write(dir.path().join("model.safetensors"), junk).expect("write");
        assert!(load_err(dir.path()).contains("model.safetensors"));
    }
}

#[test]
fn a_sequence_longer_than_the_context_is_an_error() {
    let _kernel = crate::dense::fixed_kernel();
    let dir = tiny(Family::Llama);
    edit_config(dir.path(), |v| v["max_position_embeddings"] = serde_json::json!(8));
    let m = load(dir.path(), None).expect("load");
    let mut c = m.new_cache();
    m.forward_all(&PROMPT, &mut c).expect("7 tokens fit");
    m.forward_all(&[1], &mut c).expect("8 tokens fit");
    let e = m
        .forward_all(&[1], &mut c)
        .map(|_| ())
        .expect_err("9th token overflows")
        .to_string();
    assert!(e.contains('9') && e.contains('8'), "{e}");
}

#[test]
fn sliding_windows_follow_each_familys_rule() {
    let _kernel = crate::dense::fixed_kernel();
    let cfg = |family: Family, f: &dyn Fn(&mut serde_json::Value)| {
        let dir = tiny(family);
        edit_config(dir.path(), f);
        ModelConfig::from_dir(dir.path())
    };
    // Mistral v0.1: every layer; v0.2 and later write null.
    let c = cfg(Family::Mistral, &|v| v["sliding_window"] = serde_json::json!(4096)).expect("config");
    assert_eq!((c.window(0), c.window(1)), (Some(4096), Some(4096)));
    let c = cfg(Family::Mistral, &|_| {}).expect("config");
    assert_eq!(c.window(0), None);
    // Qwen2: only with use_sliding_window, from max_window_layers on.
    let c = cfg(Family::Qwen2, &|v| v["sliding_window"] = serde_json::json!(64)).expect("config");
    assert_eq!(c.window(1), None, "use_sliding_window is false");
    let c = cfg(Family::Qwen2, &|v| {
        v["sliding_window"] = serde_json::json!(64);
        v["use_sliding_window"] = serde_json::json!(true);
        v["max_window_layers"] = serde_json::json!(1);
    })
    .expect("config");
    assert_eq!((c.window(0), c.window(1)), (None, Some(64)));
    // GPT-OSS: the layers `layer_types` says slide (the even ones when it is absent, as transformers defaults).
    let c = cfg(Family::GptOss, &|_| {}).expect("config");
    assert_eq!((c.window(0), c.window(1)), (Some(4), None));
    let c = cfg(Family::GptOss, &|v| {
        v["layer_types"] = serde_json::json!(["full_attention", "sliding_attention"])
    })
    .expect("config");
    assert_eq!((c.window(0), c.window(1)), (None, Some(4)));
    let c = cfg(Family::GptOss, &|v| {
        v.as_object_mut().expect("object").remove("layer_types");
    })
    .expect("config");
    assert_eq!((c.window(0), c.window(1)), (Some(4), None));
    let e = cfg(Family::GptOss, &|v| {
        v["layer_types"] = serde_json::json!(["sliding_attention", "chunked_attention"])
    })
    .expect_err("bad layer type")
    .to_string();
    assert!(e.contains("layer_types"), "{e}");
    // Llama has no window, whatever the config says.
    let c = cfg(Family::Llama, &|v| v["sliding_window"] = serde_json::json!(4)).expect("config");
    assert_eq!(c.window(0), None);
    // A bad value is named.
    let e = cfg(Family::Mistral, &|v| v["sliding_window"] = serde_json::json!("4k"))
        .expect_err("bad window")
        .to_string();
    assert!(e.contains("sliding_window") && e.contains("4k"), "{e}");
}

/// A prompt fed in chunks longer than the direct-attention rows (the masked path, with keys already cached) gives
/// the logits of one full pass, with and without a sliding window.
#[test]
fn prefill_in_chunks_matches_one_full_pass() {
    crate::dense::for_each_kernel(chunked_prefill_matches_one_full_pass);
}

fn chunked_prefill_matches_one_full_pass() {
    for window in [None, Some(6)] {
        let dir = tiny(Family::Mistral);
        edit_config(dir.path(), |v| v["sliding_window"] = serde_json::json!(window));
        let m = load(dir.path(), None).expect("load");
        let ids: Vec<u32> = (0..40u32).map(|i| 30 + (i * 7) % 200).collect();
        let full = m.forward_all(&ids, &mut m.new_cache()).expect("full");
        let mut c = m.new_cache();
        m.forward_all(&ids[..15], &mut c).expect("chunk 1");
        let second = m.forward_all(&ids[15..35], &mut c).expect("chunk 2");
        let d = max_abs_diff(&second, &full.i(15..35).expect("rows"));
        assert!(d < 1e-4, "window {window:?}: {d}");
        // Then decode steps (the direct attention path).
        for (i, &t) in ids.iter().enumerate().skip(35) {
            let step = m
                .forward_last(&mut [SeqInput {
                    tokens: &[t],
                    cache: &mut c,
                }])
                .expect("step");
            let d = max_abs_diff(&step.i(0).expect("row"), &full.i(i).expect("row"));
            assert!(d < 1e-4, "window {window:?}, step {i}: {d}");
        }
    }
}

/// candle's Q4_K prefill kernel also uses AMX tiles and keeps its tile configuration loaded on each thread between
/// calls; our tile kernel may run on the same threads (the engine ran candle's Q4_K kernel until it had its own) and
/// must leave that configuration as it found it (it once released it, and candle's next product died of an illegal
/// instruction).
#[test]
fn tile_kernels_share_threads_with_candles() {
    let _kernel = crate::dense::fixed_kernel();
    use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
    use candle_core::{Device, Module, Tensor};
    if !crate::dense::tiles_available() {
        return;
    }
    // One thread, so candle's product and ours run on the same one.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
    pool.install(|| {
        let values = |n: usize, salt: usize| -> Vec<f32> {
            (0..n)
                .map(|i| ((i * 7919 + salt) % 1000) as f32 / 1000.0 - 0.5)
                .collect()
        };
        let w = Tensor::from_vec(values(64 * 256, 1), (64, 256), &Device::Cpu).expect("w");
        let q4k = QMatMul::from_qtensor(QTensor::quantize(&w, GgmlDType::Q4K).expect("q4k")).expect("qmm");
        // 32 rows and more take candle's tile path; candle's pool runs blocks of 32 rows on its threads and the
        // calling one, so with many blocks this thread runs some.
        let x = Tensor::from_vec(values(1024 * 256, 2), (1024, 256), &Device::Cpu).expect("x");
        let before = q4k.forward(&x).expect("candle").to_vec2::<f32>().expect("vec");
        let ours = crate::dense::DenseWeight::from_f32_for_tests(&values(64 * 256, 3), 64, 256)
            .quantize(crate::dense::Stored::Q4K)
            .expect("quantize");
        let y = ours.matmul_t(&values(8 * 256, 4), 8);
        assert_eq!(y.len(), 8 * 64);
        let after = q4k
            .forward(&x)
            .expect("candle after ours")
            .to_vec2::<f32>()
            .expect("vec");
        assert_eq!(before, after);
    });
}

/// The quantised-weights cache (`quant_cache.rs`) of a tiny model in its folder.
fn cache_path(dir: &Path) -> std::path::PathBuf {
    dir.join("cmi-quantised.bin")
}

/// Greedy continuation of [`PROMPT`]: the prompt's last logits and eight chosen tokens.
fn greedy(m: &Transformer) -> (Vec<f32>, Vec<u32>) {
    let mut c = m.new_cache();
    let logits = m.forward_all(&PROMPT, &mut c).expect("prefill");
    let mut last: Vec<f32> = logits.i(PROMPT.len() - 1).expect("row").to_vec1().expect("vec");
    let first = last.clone();
    let mut out = Vec::new();
    for _ in 0..8 {
        let t = (0..last.len())
            .max_by(|&a, &b| last[a].total_cmp(&last[b]))
            .expect("logits") as u32;
        out.push(t);
        let step = m
            .forward_last(&mut [SeqInput {
                tokens: &[t],
                cache: &mut c,
            }])
            .expect("step");
        last = step.i(0).expect("row").to_vec1().expect("vec");
    }
    (first, out)
}

/// Files a cache writer left in `dir` besides the cache (a temporary file that was not renamed).
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

#[test]
fn a_quantised_load_writes_the_cache_and_later_loads_map_it_in_place() {
    let _kernel = crate::dense::fixed_kernel();
    for family in [
        Family::Llama,
        Family::Qwen2,
        Family::Mixtral,
        Family::Qwen3Moe,
        Family::GptOss,
    ] {
        let dir = tiny(family);
        let cache = cache_path(dir.path());
        for kind in [Quantize::Q8_0, Quantize::Q4_0] {
            let _ = std::fs::remove_file(&cache);
            // Without a cache: quantised into memory, every time.
            let plain = load(dir.path(), Some(kind)).expect("load");
            let p = plain.quantised_load();
            assert!(
                p.quantised > 0 && p.mapped == 0 && !p.cache_written,
                "{family} {kind}: {p:?}"
            );
            assert!(plain.heap_weight_bytes() > 0, "{family} {kind}");

            let first = load_cached(dir.path(), Some(kind), Some(&cache)).expect("first load");
            let f = first.quantised_load();
            assert_eq!(
                (f.quantised, f.mapped, f.cache_written),
                (p.quantised, 0, true),
                "{family} {kind}"
            );
            assert!(cache.is_file(), "{family} {kind}: no cache written");
            assert_eq!(leftovers(dir.path()), Vec::<String>::new(), "{family} {kind}");
            // The blocks were mapped back from the file as it was written: nothing stays on the heap.
            assert_eq!(first.heap_weight_bytes(), 0, "{family} {kind}");

            let second = load_cached(dir.path(), Some(kind), Some(&cache)).expect("second load");
            let s = second.quantised_load();
            assert_eq!(
                (s.quantised, s.mapped, s.cache_written),
                (0, p.quantised, false),
                "{family} {kind}"
            );
            assert_eq!(second.heap_weight_bytes(), 0, "{family} {kind}");
            assert_eq!(second.held_weight_bytes(), plain.held_weight_bytes(), "{family} {kind}");

            // The same blocks: the same logits, bit for bit, and the same greedy text.
            let want = greedy(&plain);
            assert_eq!(greedy(&first), want, "{family} {kind}: first load");
            assert_eq!(greedy(&second), want, "{family} {kind}: mapped from the cache");
        }
        // At full precision a cache path changes nothing and nothing is written.
        let _ = std::fs::remove_file(&cache);
        let full = load_cached(dir.path(), None, Some(&cache)).expect("full");
        assert_eq!(full.quantised_load(), QuantisedLoad::default());
        assert!(!cache.exists(), "{family}: a cache for an unquantised load");
    }
}

#[test]
fn a_cache_of_another_kind_or_of_other_weights_is_replaced() {
    let _kernel = crate::dense::fixed_kernel();
    let dir = tiny(Family::Mistral);
    let cache = cache_path(dir.path());
    let load_q = |kind| load_cached(dir.path(), Some(kind), Some(&cache)).expect("load");
    assert!(load_q(Quantize::Q4_0).quantised_load().cache_written);
    // Q4_K on these narrow rows makes the same Q4_0 blocks, but the kind differs, so the cache does not count.
    for kind in [Quantize::Q8_0, Quantize::Q4K] {
        let other = load_q(kind);
        let o = other.quantised_load();
        assert!(o.quantised > 0 && o.mapped == 0 && o.cache_written, "{kind}: {o:?}");
        assert_eq!(
            greedy(&other),
            greedy(&load(dir.path(), Some(kind)).expect("load")),
            "{kind}"
        );
        assert_eq!(
            load_q(kind).quantised_load().quantised,
            0,
            "{kind}: the rewritten cache is used"
        );
    }
    // New weights of the same shapes (same sizes, same header): only the modification time tells, so let the
    // clock move past the file system's timestamp granularity first.
    std::thread::sleep(std::time::Duration::from_millis(50));
    let mut o = TinyOptions::new(Family::Mistral);
    o.seed = 7;
    test_support::tiny_model_with(dir.path(), &o).expect("new weights");
    let after = load_q(Quantize::Q4K);
    let a = after.quantised_load();
    assert!(a.quantised > 0 && a.mapped == 0 && a.cache_written, "{a:?}");
    let fresh = load(dir.path(), Some(Quantize::Q4K)).expect("load");
    assert_eq!(greedy(&after), greedy(&fresh), "the new weights' blocks");
    assert_eq!(load_q(Quantize::Q4K).quantised_load().quantised, 0);
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
}

#[test]
fn a_truncated_or_corrupt_cache_is_ignored_and_rewritten() {
    let _kernel = crate::dense::fixed_kernel();
    let dir = tiny(Family::Qwen3);
    let cache = cache_path(dir.path());
    let kind = Quantize::Q8_0;
    let want = greedy(&load(dir.path(), Some(kind)).expect("load"));
    assert!(
        load_cached(dir.path(), Some(kind), Some(&cache))
            .expect("load")
            .quantised_load()
            .cache_written
    );
    let good = std::fs::read(&cache).expect("read cache");
    let n = good.len();
    let flip = |at: usize| {
        let mut b = good.clone();
        b[at] ^= 0x20;
        b
    };
    let damaged: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("shorter than the trailer", good[..10].to_vec()),
        ("cut in half", good[..n / 2].to_vec()),
        ("last byte cut", good[..n - 1].to_vec()),
        ("magic", flip(n - 1)),
        ("format", flip(n - 24)),
        ("footer length", flip(n - 16)),
        ("footer hash", flip(n - 8)),
        ("footer byte", flip(n - 40)),
        ("a page of zeros appended", [good.clone(), vec![0; 4096]].concat()),
    ];
    for (what, bytes) in damaged {
        std::fs::write(&cache, &bytes).expect("damage the cache");
        let m = load_cached(dir.path(), Some(kind), Some(&cache)).unwrap_or_else(|e| panic!("{what}: {e}"));
        let r = m.quantised_load();
        assert!(r.quantised > 0 && r.mapped == 0 && r.cache_written, "{what}: {r:?}");
        assert_eq!(greedy(&m), want, "{what}");
        assert_eq!(
            std::fs::read(&cache).expect("read"),
            good,
            "{what}: the cache is written again as it was"
        );
    }
    // A temporary file a crash left behind is never read, and the next writer clears it away.
    let stale = dir.path().join(".cmi-quantised.bin.1-2.tmp");
    std::fs::write(&stale, &good[..n / 3]).expect("stale");
    std::fs::remove_file(&cache).expect("rm");
    let m = load_cached(dir.path(), Some(kind), Some(&cache)).expect("load");
    assert!(m.quantised_load().cache_written);
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    // A cache that cannot be written is no failure: the load quantises into memory.
    let nowhere = dir.path().join("missing-dir").join("cmi-quantised.bin");
    let m = load_cached(dir.path(), Some(kind), Some(&nowhere)).expect("load without a writable cache");
    let r = m.quantised_load();
    assert!(r.quantised > 0 && !r.cache_written, "{r:?}");
    assert!(m.heap_weight_bytes() > 0);
    assert_eq!(greedy(&m), want);
}

#[test]
fn a_decode_step_reads_every_matrix_once_and_one_row_of_an_untied_embedding() {
    // A folder of real layout (sharded bf16, untied output head), a small shape.
    let tok = tiny(Family::Llama);
    let dir = tempfile::tempdir().expect("tempdir");
    let shape = test_support::Shape {
        name: "small",
        hidden: 64,
        intermediate: 128,
        layers: 2,
        heads: 4,
        kv_heads: 2,
        head_dim: 16,
        tied: false,
        ..test_support::shape::LLAMA_3_2_1B
    };
    test_support::write_shape(dir.path(), &shape, tok.path(), 1, |_, _| {}).expect("shape");
    let m = load(dir.path(), None).expect("load the shape");
    let vocab = m.config().vocab_size as u64;
    let embed = vocab * 64 * 2;
    assert_eq!(m.decode_read_bytes(), m.held_weight_bytes() - embed + embed / vocab);
    // Tied: the output head reads the whole embedding, so a step reads all the bytes held.
    let tied = load(tok.path(), None).expect("load");
    assert_eq!(tied.decode_read_bytes(), tied.held_weight_bytes());
    // Mixture of experts: the routed experts only.
    for family in [Family::Mixtral, Family::Qwen3Moe, Family::GptOss] {
        let moe = load(tiny(family).path(), None).expect("load");
        assert!(moe.decode_read_bytes() < moe.held_weight_bytes(), "{family}");
    }
}
