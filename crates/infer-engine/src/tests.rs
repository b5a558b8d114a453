//! Engine tests on tiny generated models: the streamed text is exactly the decode of the greedy tokens, batching
//! does not change results, stops, limits, queueing, cancellation and constrained decoding.

use std::path::Path;
use std::time::{Duration, Instant};

use infer_models::{CausalLm, SeqInput};
use test_support::Family;

use super::*;
use crate::text::TextState;

fn tiny(family: Family) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    test_support::tiny_model(dir.path(), family).expect("tiny model");
    dir
}

/// A tiny model whose greedy generations never end on their own (see `TinyOptions::endless`): for tests that need
/// a sequence to keep its slot, without racing its end token.
fn endless_tiny(family: Family) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = test_support::TinyOptions {
        endless: true,
        ..test_support::TinyOptions::new(family)
    };
    test_support::tiny_model_with(dir.path(), &opts).expect("tiny model");
    dir
}

/// Runs a generation to the end: (text, stop reason, prompt tokens, completion tokens).
fn collect(mut g: Generation) -> (String, StopReason, usize, usize) {
    let mut text = String::new();
    while let Some(ev) = g.blocking_next() {
        match ev {
            EngineEvent::Delta { text: t } => {
                assert!(!t.is_empty(), "empty delta");
                text.push_str(&t);
            }
            EngineEvent::Done {
                stop_reason,
                prompt_tokens,
                completion_tokens,
                ..
            } => {
                assert!(g.blocking_next().is_none(), "Done is the last event");
                return (text, stop_reason, prompt_tokens, completion_tokens);
            }
            EngineEvent::Failed { message } => panic!("generation failed: {message}"),
        }
    }
    panic!("stream ended without Done")
}

/// Greedy decoding straight on the model (no engine), stopping at EOS: the reference token sequence.
fn reference_greedy(dir: &Path, prompt: &str, max: usize) -> (Vec<u32>, bool) {
    let m = infer_models::load(dir, None).expect("load");
    let tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).expect("tokenizer");
    let gen_cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("generation_config.json")).expect("read")).expect("json");
    let eos = infer_models::eos_ids(&gen_cfg);
    let mut ids = tok.encode(prompt, false).expect("encode").get_ids().to_vec();
    let mut cache = m.new_cache();
    let mut out = Vec::new();
    for _ in 0..max {
        let logits: Vec<f32> = m
            .forward_last(&mut [SeqInput {
                tokens: &ids,
                cache: &mut cache,
            }])
            .expect("forward")
            .squeeze(0)
            .expect("row")
            .to_vec1()
            .expect("vec");
        let next = logits
            .iter()
            .enumerate()
            .fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b })
            .0 as u32;
        if eos.contains(&next) {
            return (out, true);
        }
        out.push(next);
        ids = vec![next];
    }
    (out, false)
}

#[test]
fn greedy_stream_is_exactly_the_decode_of_the_reference_tokens_for_every_family() {
    for family in Family::ALL {
        let dir = tiny(family);
        let engine = Engine::load(dir.path(), LoadOptions::default()).expect("load");
        let prompt = "the weather in paris: こんにちは 🙂";
        let (ref_ids, hit_eos) = reference_greedy(dir.path(), prompt, 40);
        let mut req = GenerateRequest::new(prompt);
        req.max_tokens = 40;
        let (text, reason, p, c) = collect(engine.generate(req).expect("generate"));
        assert_eq!(
            text,
            engine.tokenizer().decode(&ref_ids, true).expect("decode"),
            "{family}"
        );
        assert_eq!(c, ref_ids.len(), "{family}");
        assert_eq!(p, engine.tokenizer().encode(prompt, false).expect("enc").len());
        assert_eq!(
            reason,
            if hit_eos {
                StopReason::EndTurn
            } else {
                StopReason::MaxTokens
            },
            "{family}"
        );
    }
}

#[test]
fn eight_concurrent_streams_give_the_same_text_as_one_at_a_time() {
    let dir = tiny(Family::Llama);
    let engine = Engine::load(
        dir.path(),
        LoadOptions {
            max_batch: 8,
            ..LoadOptions::default()
        },
    )
    .expect("load");
    let prompts: Vec<String> = (0..8)
        .map(|i| format!("request {i}: what is the capital of france?"))
        .collect();
    let one_at_a_time: Vec<String> = prompts
        .iter()
        .map(|p| {
            let mut r = GenerateRequest::new(p.clone());
            r.max_tokens = 24;
            collect(engine.generate(r).expect("generate")).0
        })
        .collect();
    let alone = engine.peak_kv_cache_bytes();
    assert!(alone > 0, "one sequence's cache is counted");
    let gens: Vec<Generation> = prompts
        .iter()
        .map(|p| {
            let mut r = GenerateRequest::new(p.clone());
            r.max_tokens = 24;
            engine.generate(r).expect("generate")
        })
        .collect();
    let together: Vec<String> = gens.into_iter().map(|g| collect(g).0).collect();
    assert_eq!(together, one_at_a_time);
    assert!(
        together.iter().collect::<std::collections::HashSet<_>>().len() > 1,
        "prompts lead to different text"
    );
    // Running together, several caches were held at once.
    assert!(
        engine.peak_kv_cache_bytes() > alone,
        "{} vs {alone}",
        engine.peak_kv_cache_bytes()
    );
}

/// Long prompts fed in chunks of a few tokens, beside streams already decoding, give the text of unchunked runs.
#[test]
fn chunked_prefill_beside_running_streams_gives_the_same_text() {
    let dir = tiny(Family::Qwen2);
    let load = |step_tokens| {
        Engine::load(
            dir.path(),
            LoadOptions {
                max_batch: 4,
                step_tokens,
                ..LoadOptions::default()
            },
        )
        .expect("load")
    };
    let prompts: Vec<String> = (0..4)
        .map(|i| {
            format!(
                "{} request {i}",
                "a long shared preamble that takes many steps; ".repeat(1 + i * 2)
            )
        })
        .collect();
    let request = |p: &String| {
        let mut r = GenerateRequest::new(p.clone());
        r.max_tokens = 16;
        r
    };
    let whole = load(DEFAULT_STEP_TOKENS);
    let expected: Vec<String> = prompts
        .iter()
        .map(|p| collect(whole.generate(request(p)).expect("generate")).0)
        .collect();
    // Chunks of 7 rows take the direct attention path, chunks of 12 the masked one.
    for step_tokens in [7, 12] {
        let chunked = load(step_tokens);
        let gens: Vec<Generation> = prompts
            .iter()
            .map(|p| chunked.generate(request(p)).expect("generate"))
            .collect();
        let got: Vec<(String, usize)> = gens
            .into_iter()
            .map(|g| {
                let (text, _, prompt_tokens, _) = collect(g);
                (text, prompt_tokens)
            })
            .collect();
        assert!(
            got.iter().all(|(_, n)| *n > 2 * step_tokens),
            "every prompt needs several chunks"
        );
        let got: Vec<String> = got.into_iter().map(|(t, _)| t).collect();
        assert_eq!(got, expected, "chunks of {step_tokens}");
    }
}

#[test]
fn a_step_feeds_decoding_streams_first_then_prompts_within_the_budget() {
    let dir = tiny(Family::Llama);
    let engine = Engine::load(dir.path(), LoadOptions::default()).expect("load");
    let seq = |tokens: usize, decoding: bool| {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let mut s = crate::scheduler::tests_seq(&engine.inner, vec![1; tokens], tx);
        if decoding {
            s.completion.push(1);
        }
        s
    };
    let active = vec![
        seq(300, false),
        seq(1, true),
        seq(100, false),
        seq(1, true),
        seq(5, false),
    ];
    assert_eq!(crate::scheduler::plan(&active, 256), [254, 1, 0, 1, 0]);
    assert_eq!(crate::scheduler::plan(&active, 1024), [300, 1, 100, 1, 5]);
    // Decoding streams over the budget still leave one prompt token a step.
    assert_eq!(crate::scheduler::plan(&active, 2), [1, 1, 0, 1, 0]);
}

#[test]
fn seeded_sampling_is_reproducible_and_seeds_differ() {
    let dir = tiny(Family::Qwen2);
    let engine = Engine::load(dir.path(), LoadOptions::default()).expect("load");
    let run = |seed, top_k, top_p| {
        let mut r = GenerateRequest::new("hello there");
        r.max_tokens = 30;
        r.sampling = Sampling {
            temperature: 1.5,
            top_p,
            top_k,
            seed: Some(seed),
        };
        collect(engine.generate(r).expect("generate")).0
    };
    assert_eq!(run(1, None, 1.0), run(1, None, 1.0));
    let texts: std::collections::HashSet<String> = (0..4).map(|s| run(s, None, 1.0)).collect();
    assert!(texts.len() > 1, "different seeds give different samples");
    // top_k = 1 is greedy whatever the temperature.
    let mut g = GenerateRequest::new("hello there");
    g.max_tokens = 30;
    let greedy = collect(engine.generate(g).expect("generate")).0;
    assert_eq!(run(3, Some(1), 1.0), greedy);
    // A tiny top_p keeps only the most likely token: greedy too.
    assert_eq!(run(5, None, 1e-6), greedy);
}

#[test]
fn stop_sequences_match_across_token_boundaries_and_are_not_emitted() {
    let dir = tiny(Family::Mistral);
    let engine = Engine::load(dir.path(), LoadOptions::default()).expect("load");
    let mut r = GenerateRequest::new("the capital of france is");
    r.max_tokens = 40;
    let (full, _, _, _) = collect(engine.generate(r.clone()).expect("generate"));
    let chars: Vec<char> = full.chars().collect();
    assert!(chars.len() > 12, "need some text: {full:?}");
    // A stop string from the middle of the text, 4 characters long (byte-level tokens are mostly shorter).
    let start: usize = chars[..6].iter().map(|c| c.len_utf8()).sum();
    let stop: String = chars[6..10].iter().collect();
    r.stop_sequences = vec!["never appears ☃".into(), stop.clone()];
    let (text, reason, _, c) = collect(engine.generate(r).expect("generate"));
    let first = full.find(&stop).expect("stop occurs");
    assert!(first <= start);
    assert_eq!(text, full[..first]);
    assert_eq!(reason, StopReason::StopSequence(stop));
    assert!(c < 40);
}

#[test]
fn max_tokens_and_eos_from_generation_config_end_the_turn() {
    let dir = tiny(Family::Qwen3);
    let (ids, _) = reference_greedy(dir.path(), "hi", 12);
    // The first greedy token that did not occur before it: making it EOS ends the turn right there.
    let k = (1..ids.len())
        .find(|&k| !ids[..k].contains(&ids[k]))
        .expect("a new token among 12");
    let engine = Engine::load(dir.path(), LoadOptions::default()).expect("load");
    let mut r = GenerateRequest::new("hi");
    r.max_tokens = 3;
    let (_, reason, _, c) = collect(engine.generate(r.clone()).expect("generate"));
    assert_eq!((reason, c), (StopReason::MaxTokens, 3));
    // Make the greedy third token an EOS id: generation ends there with EndTurn.
    std::fs::write(
        dir.path().join("generation_config.json"),
        format!("{{\"eos_token_id\": [{}]}}", ids[k]),
    )
    .expect("write");
    let engine = Engine::load(dir.path(), LoadOptions::default()).expect("load");
    assert!(engine.eos_token_ids().contains(&ids[k]));
    r.max_tokens = 20;
    let (text, reason, _, c) = collect(engine.generate(r).expect("generate"));
    assert_eq!((reason, c), (StopReason::EndTurn, k));
    assert_eq!(text, engine.tokenizer().decode(&ids[..k], true).expect("decode"));
}

#[test]
fn an_endless_tiny_model_runs_to_max_tokens_for_every_family() {
    for family in Family::ALL {
        let dir = endless_tiny(family);
        let engine = Engine::load(dir.path(), LoadOptions::default()).expect("load");
        let mut r = GenerateRequest::new("hi");
        r.max_tokens = 400; // within the tiny context of 512
        let (_, reason, _, c) = collect(engine.generate(r).expect("generate"));
        assert_eq!((reason, c), (StopReason::MaxTokens, 400), "{family}");
    }
}

#[test]
fn a_prompt_longer_than_the_context_is_refused_with_both_numbers() {
    let dir = tiny(Family::Llama);
    let engine = Engine::load(dir.path(), LoadOptions::default()).expect("load");
    let prompt = "zq".repeat(600);
    let n = engine.tokenizer().encode(prompt.as_str(), false).expect("enc").len();
    match engine.generate(GenerateRequest::new(prompt)) {
        Err(
            e @ Error::PromptTooLong {
                prompt_tokens,
                context_length,
            },
        ) => {
            assert_eq!((prompt_tokens, context_length), (n, 512));
            assert!(e.to_string().contains(&n.to_string()) && e.to_string().contains("512"));
        }
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("accepted a prompt of {n} tokens"),
    }
}

#[test]
fn a_tokenizer_larger_than_the_vocabulary_is_refused_naming_both_sizes() {
    let dir = tiny(Family::Llama);
    let path = dir.path().join("tokenizer.json");
    let mut tok: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).expect("read")).expect("json");
    let vocab = cfg["vocab_size"].as_u64().expect("vocab_size") as usize;
    // Added tokens past the embedding's rows: ids the model could never embed.
    let added = tok["added_tokens"].as_array_mut().expect("added_tokens");
    for i in 0..4 {
        added.push(
            serde_json::json!({"id": vocab + i, "content": format!("<extra_{i}>"), "single_word": false,
            "lstrip": false, "rstrip": false, "normalized": false, "special": true}),
        );
    }
    std::fs::write(&path, serde_json::to_vec(&tok).expect("ser")).expect("write");
    match Engine::load(dir.path(), LoadOptions::default()) {
        Err(e @ Error::VocabMismatch { tokenizer, config, .. }) => {
            assert_eq!(config, vocab);
            assert!(tokenizer > vocab, "{tokenizer} tokens");
            let msg = e.to_string();
            assert!(
                msg.contains("tokenizer.json") && msg.contains(&vocab.to_string()),
                "{msg}"
            );
        }
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("loaded a tokenizer with ids past vocab_size {vocab}"),
    }
}

#[test]
fn prompt_tokens_in_give_the_same_generation_as_the_prompt_text() {
    let dir = tiny(Family::Qwen2);
    let engine = Engine::load(dir.path(), LoadOptions::default()).expect("load");
    let prompt = "the weather in paris: こんにちは 🙂";
    let ids = engine
        .tokenizer()
        .encode(prompt, false)
        .expect("enc")
        .get_ids()
        .to_vec();
    let mut by_text = GenerateRequest::new(prompt);
    by_text.max_tokens = 24;
    let mut by_ids = GenerateRequest::from_tokens(ids.clone());
    by_ids.max_tokens = 24;
    let a = collect(engine.generate(by_text).expect("generate"));
    let b = collect(engine.generate(by_ids).expect("generate"));
    assert_eq!(a, b);
    assert_eq!(b.2, ids.len());
    // Ids the model cannot embed, and no ids at all, are refused.
    let vocab = engine.tokenizer().get_vocab_size(true) as u32;
    let e = engine
        .generate(GenerateRequest::from_tokens(vec![1, 100_000 + vocab]))
        .map(drop)
        .unwrap_err();
    assert!(e.to_string().contains(&(100_000 + vocab).to_string()), "{e}");
    assert!(matches!(
        engine.generate(GenerateRequest::from_tokens(vec![])).map(drop),
        Err(Error::EmptyPrompt)
    ));
}

#[test]
fn a_malformed_generation_or_tokenizer_config_is_refused_naming_the_file() {
    for name in ["generation_config.json", "tokenizer_config.json"] {
        let dir = tiny(Family::Llama);
        std::fs::write(dir.path().join(name), "{\"eos_token_id\": [2,\n").expect("write");
        match Engine::load(dir.path(), LoadOptions::default()) {
            Err(e @ Error::File { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(name) && msg.contains("line 2"), "{msg}");
            }
            Err(e) => panic!("{name}: wrong error {e}"),
            Ok(_) => panic!("{name}: loaded a folder with a malformed {name}"),
        }
    }
    // Both are optional.
    let dir = tiny(Family::Llama);
    std::fs::remove_file(dir.path().join("generation_config.json")).expect("remove");
    Engine::load(dir.path(), LoadOptions::default()).expect("loads without generation_config.json");
}

#[test]
fn a_config_with_mlp_biases_is_refused_naming_the_field() {
    let dir = tiny(Family::Llama);
    let path = dir.path().join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    cfg["mlp_bias"] = serde_json::json!(true);
    std::fs::write(&path, serde_json::to_vec(&cfg).expect("ser")).expect("write");
    let msg = Engine::load(dir.path(), LoadOptions::default())
        .map(drop)
        .expect_err("mlp_bias is not supported")
        .to_string();
    assert!(msg.contains("config.json") && msg.contains("mlp_bias"), "{msg}");
}

#[test]
fn a_full_queue_is_a_distinct_error() {
    let dir = endless_tiny(Family::Llama);
    let engine = Engine::load(
        dir.path(),
        LoadOptions {
            max_batch: 1,
            max_queue: 1,
            ..LoadOptions::default()
        },
    )
    .expect("load");
    let long = || {
        let mut r = GenerateRequest::new("hello");
        r.max_tokens = 400;
        r
    };
    let mut held = Vec::new();
    let mut full = 0;
    for _ in 0..3 {
        match engine.generate(long()) {
            Ok(g) => held.push(g),
            Err(Error::QueueFull { max_queue: 1 }) => full += 1,
            Err(e) => panic!("wrong error {e}"),
        }
    }
    assert!(full >= 1 && held.len() <= 2, "accepted {}", held.len());
}

#[test]
fn dropping_a_generation_frees_its_slot() {
    let dir = endless_tiny(Family::Llama);
    let engine = Engine::load(
        dir.path(),
        LoadOptions {
            max_batch: 1,
            max_queue: 4,
            ..LoadOptions::default()
        },
    )
    .expect("load");
    let mut r = GenerateRequest::new("hello");
    r.max_tokens = 100_000;
    let mut g = engine.generate(r).expect("generate");
    let first = g.blocking_next();
    assert!(matches!(first, Some(EngineEvent::Delta { .. })), "{first:?}");
    assert_eq!(engine.active_sequences(), 1);
    drop(g);
    let t = Instant::now();
    while engine.active_sequences() != 0 {
        assert!(t.elapsed() < Duration::from_secs(2), "slot not freed");
        std::thread::sleep(Duration::from_millis(1));
    }
    // The single slot serves the next request.
    let mut r = GenerateRequest::new("hello");
    r.max_tokens = 2;
    assert_eq!(collect(engine.generate(r).expect("generate")).3, 2);
}

#[tokio::test]
async fn generation_is_an_async_stream() {
    use futures::StreamExt;
    let dir = tiny(Family::Qwen2);
    let engine = Engine::load(dir.path(), LoadOptions::default()).expect("load");
    let mut r = GenerateRequest::new("hello");
    r.max_tokens = 5;
    let events: Vec<EngineEvent> = engine.generate(r).expect("generate").collect().await;
    assert!(matches!(
        events.last(),
        Some(EngineEvent::Done {
            stop_reason: StopReason::MaxTokens,
            completion_tokens: 5,
            ..
        })
    ));
}

#[test]
fn incremental_text_never_splits_a_character_and_equals_the_whole_decode() {
    let dir = tiny(Family::Qwen3);
    let tok = tokenizers::Tokenizer::from_file(dir.path().join("tokenizer.json")).expect("tokenizer");
    let text = "こんにちは世界 🙂 café, the weather!";
    let ids = tok.encode(text, false).expect("enc").get_ids().to_vec();
    assert!(ids.len() > 10);
    let (out, deltas) = stream(&tok, &ids);
    assert!(
        !deltas.iter().any(|d| d.contains('\u{FFFD}')),
        "half a character streamed: {deltas:?}"
    );
    assert_eq!(out, text);
    assert!(
        deltas.iter().any(String::is_empty),
        "some tokens end inside a character"
    );
}

/// A sentencepiece-style tokenizer as Llama 2, Mistral and the GGUF `llama` vocabularies have it: `▁` for spaces (a
/// leading one added by the normaliser and stripped by the decoder), BPE pieces, and byte fallback (`<0xE3>` …) for
/// every character outside the vocabulary, which the decoder fuses back into UTF-8.
fn sentencepiece_tokenizer() -> tokenizers::Tokenizer {
    let mut vocab = serde_json::Map::new();
    for (i, t) in ["<unk>", "<s>", "</s>"].iter().enumerate() {
        vocab.insert((*t).into(), i.into());
    }
    for b in 0..=255u32 {
        vocab.insert(format!("<0x{b:02X}>"), (3 + b).into());
    }
    let mut merges = Vec::new();
    let add = |piece: String, vocab: &mut serde_json::Map<String, serde_json::Value>| {
        if !vocab.contains_key(&piece) {
            let id = vocab.len();
            vocab.insert(piece, id.into());
        }
    };
    for c in "▁abcdefghijklmnopqrstuvwxyzHW日本é".chars() {
        add(c.to_string(), &mut vocab);
    }
    // Each word merges left to right, so the BPE ranks are consistent.
    for word in ["▁Hello", "▁world", "▁café", "日本", "▁the"] {
        let chars: Vec<String> = word.chars().map(String::from).collect();
        let mut left = chars[0].clone();
        for c in &chars[1..] {
            merges.push(format!("{left} {c}"));
            left.push_str(c);
            add(left.clone(), &mut vocab);
        }
    }
    let json = serde_json::json!({
        "version": "1.0",
        "added_tokens": [
            {"id": 0, "content": "<unk>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 1, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 2, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
        ],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}
        ]},
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}
        ]},
        "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                  "vocab": vocab, "merges": merges}
    });
    tokenizers::Tokenizer::from_bytes(json.to_string()).expect("a valid sentencepiece-style tokenizer.json")
}

#[test]
fn byte_fallback_and_sentencepiece_spaces_stream_as_the_whole_decode() {
    let tok = sentencepiece_tokenizer();
    for text in [
        "Hello world",
        " Hello  world ",
        "日本語のテキスト、日本",
        "the café 🎉👍🏽 naïve",
        "Ωmega\ttabs\nand lines",
    ] {
        let ids = tok.encode(text, false).expect("enc").get_ids().to_vec();
        // Characters outside the vocabulary are there as bytes.
        let bytes = ids.iter().filter(|&&id| (3..259).contains(&id)).count();
        let whole = tok.decode(&ids, true).expect("decode");
        assert_eq!(whole, text, "the tokenizer round-trips {text:?}");
        let (out, deltas) = stream(&tok, &ids);
        assert!(
            !deltas.iter().any(|d| d.contains('\u{FFFD}')),
            "{text:?}: half a character streamed: {deltas:?}"
        );
        let held_back = deltas.iter().filter(|d| d.is_empty()).count();
        assert_eq!(out, whole, "{text:?}");
        if text.contains(|c: char| !c.is_ascii() && !"日本é".contains(c)) {
            assert!(
                bytes > 0 && held_back > 0,
                "{text:?}: byte-fallback tokens were expected ({ids:?})"
            );
        }
    }
    // Any token sequence, even one whose bytes are not UTF-8 (a model can sample them), streams to its whole decode:
    // nothing is lost or repeated when the held bytes turn out invalid.
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(5);
    let vocab = tok.get_vocab_size(true) as u32;
    for _ in 0..200 {
        let n = rand::Rng::random_range(&mut rng, 1..24);
        let ids: Vec<u32> = (0..n).map(|_| rand::Rng::random_range(&mut rng, 3..vocab)).collect();
        assert_eq!(stream(&tok, &ids).0, tok.decode(&ids, true).expect("decode"), "{ids:?}");
    }
    // The case that needs the byte rule: `h`, `7` as bytes decode as text until a stray continuation byte joins them.
    let ids = [107, 58, 5, 163, 142];
    assert_eq!(tok.decode(&ids, true).expect("decode"), "\u{FFFD}".repeat(5));
    assert_eq!(stream(&tok, &ids).0, "\u{FFFD}".repeat(5));
}

#[test]
fn streaming_decodes_a_window_not_the_whole_completion_and_still_equals_it() {
    // Byte-level BPE (the tiny models') and sentencepiece with byte fallback, on random token sequences (invalid
    // UTF-8 included) and on one long run of text.
    let dir = tiny(Family::Llama);
    let byte_level = tokenizers::Tokenizer::from_file(dir.path().join("tokenizer.json")).expect("tokenizer");
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(11);
    for tok in [byte_level, sentencepiece_tokenizer()] {
        let vocab = tok.get_vocab_size(true) as u32;
        for _ in 0..200 {
            let n = rand::Rng::random_range(&mut rng, 1..40);
            let ids: Vec<u32> = (0..n).map(|_| rand::Rng::random_range(&mut rng, 3..vocab)).collect();
            assert_eq!(stream(&tok, &ids).0, tok.decode(&ids, true).expect("decode"), "{ids:?}");
        }
        let long = "The café's naïve robot painted 日本の海 at dawn; it said \"wow 🎨\" twice. ".repeat(60);
        let ids = tok.encode(long.as_str(), false).expect("enc").get_ids().to_vec();
        let bytes = crate::text::byte_fallback_tokens(&tok);
        let decoded = std::cell::Cell::new(0usize);
        let mut st = TextState::new(vec![]);
        let mut out = String::new();
        for i in 1..ids.len() {
            let up = st.after_token(bytes[ids[i - 1] as usize], &ids[..i], |w| {
                decoded.set(decoded.get() + w.len());
                tok.decode(w, true).expect("decode")
            });
            out.push_str(&up.delta);
        }
        out.push_str(&st.update(tok.decode(&ids, true).expect("decode"), true).delta);
        assert_eq!(out, long);
        // Whole decodes would take n²/2 token decodes; windows a few per token.
        assert!(
            decoded.get() < 8 * ids.len(),
            "{} token decodes for {} tokens",
            decoded.get(),
            ids.len()
        );
    }
}

/// Streams `ids` as the scheduler does (a delta after each token, the whole decode at the end); returns the text
/// and each token's delta.
fn stream(tok: &tokenizers::Tokenizer, ids: &[u32]) -> (String, Vec<String>) {
    let bytes = crate::text::byte_fallback_tokens(tok);
    let mut st = TextState::new(vec![]);
    let mut deltas = Vec::new();
    for i in 1..ids.len() {
        let up = st.after_token(bytes[ids[i - 1] as usize], &ids[..i], |w| {
            tok.decode(w, true).expect("decode")
        });
        deltas.push(up.delta);
    }
    deltas.push(st.update(tok.decode(ids, true).expect("decode"), true).delta);
    (deltas.concat(), deltas)
}

#[test]
fn stop_text_split_over_updates_is_held_back_then_dropped() {
    let mut st = TextState::new(vec!["</end>".into()]);
    let a = st.update("abc</e".into(), false);
    assert_eq!((a.delta.as_str(), a.stop.is_none()), ("abc", true));
    let b = st.update("abc</en".into(), false);
    assert_eq!(b.delta, "");
    let c = st.update("abc</end>tail".into(), false);
    assert_eq!((c.delta.as_str(), c.stop.as_deref()), ("", Some("</end>")));
    // A held-back prefix that turns out not to be a stop is released.
    let mut st = TextState::new(vec!["</end>".into()]);
    assert_eq!(st.update("x</e".into(), false).delta, "x");
    assert_eq!(st.update("x</ex".into(), false).delta, "</ex");
}

#[test]
fn a_grammar_constrains_a_tiny_random_model_to_a_valid_tool_call() {
    let dir = tiny(Family::Qwen2);
    let engine = Engine::load(dir.path(), LoadOptions::default()).expect("load");
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "name": {"const": "get_weather"},
            "arguments": {
                "type": "object",
                "properties": {"city": {"type": "string", "maxLength": 12}, "days": {"type": "integer", "minimum": 1, "maximum": 7}},
                "required": ["city", "days"],
                "additionalProperties": false
            }
        },
        "required": ["name", "arguments"],
        "additionalProperties": false
    });
    for seed in 0..3 {
        let mut r = GenerateRequest::new("<|im_start|>user\nweather in paris?<|im_end|>\n<|im_start|>assistant\n");
        r.max_tokens = 200;
        r.grammar = Some(chat_template::grammar::json_lark(&schema));
        r.sampling = Sampling {
            temperature: 1.0,
            top_p: 1.0,
            top_k: None,
            seed: Some(seed),
        };
        let (text, reason, _, _) = collect(engine.generate(r).expect("generate"));
        assert_eq!(reason, StopReason::EndTurn, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        assert_eq!(v["name"], "get_weather", "{text}");
        let args = v["arguments"].as_object().expect("arguments object");
        assert_eq!(args.len(), 2, "{text}");
        assert!(args["city"].as_str().is_some_and(|c| c.chars().count() <= 12), "{text}");
        assert!(args["days"].as_i64().is_some_and(|d| (1..=7).contains(&d)), "{text}");
    }
    // Without the grammar the same model writes no JSON.
    let mut r = GenerateRequest::new("<|im_start|>user\nweather in paris?<|im_end|>\n<|im_start|>assistant\n");
    r.max_tokens = 40;
    let (text, _, _, _) = collect(engine.generate(r).expect("generate"));
    assert!(serde_json::from_str::<serde_json::Value>(&text).is_err(), "{text}");
    // A grammar that does not compile is refused up front.
    let mut r = GenerateRequest::new("hi");
    r.grammar = Some("start: @@@".into());
    assert!(matches!(engine.generate(r), Err(Error::Grammar(_))));
}

/// Runs a generation to the end: (text, prompt tokens the prefix cache supplied).
fn collect_cached(mut g: Generation) -> (String, usize) {
    let mut text = String::new();
    while let Some(ev) = g.blocking_next() {
        match ev {
            EngineEvent::Delta { text: t } => text.push_str(&t),
            EngineEvent::Done { cached_tokens, .. } => return (text, cached_tokens),
            EngineEvent::Failed { message } => panic!("generation failed: {message}"),
        }
    }
    panic!("stream ended without Done")
}

fn greedy(tokens: &[u32], max_tokens: usize) -> GenerateRequest {
    let mut r = GenerateRequest::from_tokens(tokens.to_vec());
    r.max_tokens = max_tokens;
    r
}

fn ids(engine: &Engine, text: &str) -> Vec<u32> {
    engine
        .tokenizer()
        .encode(text, false)
        .expect("encode")
        .get_ids()
        .to_vec()
}

fn uncached(dir: &Path, opts: LoadOptions) -> Engine {
    Engine::load(
        dir,
        LoadOptions {
            prefix_cache_bytes: 0,
            ..opts
        },
    )
    .expect("load")
}

/// A second turn (the history, the reply, a new question), a prompt that parts from a cached one mid-block, and the
/// very prompt again (all of it cached: its last token is still computed) give the text computed from scratch.
#[test]
fn prefix_reuse_gives_the_greedy_text_of_computing_the_whole_prompt_for_every_family() {
    for family in Family::ALL {
        let dir = endless_tiny(family);
        let cached = Engine::load(dir.path(), LoadOptions::default()).expect("load");
        let plain = uncached(dir.path(), LoadOptions::default());
        let history = ids(&cached, &"the story so far, told at length; ".repeat(4));
        let first = collect_cached(cached.generate(greedy(&history, 20)).expect("generate"));
        assert_eq!(first.1, 0, "{family}: nothing is cached before the first request");
        assert_eq!(
            first.0,
            collect_cached(plain.generate(greedy(&history, 20)).expect("generate")).0
        );
        let reply = ids(&cached, &first.0);
        let turn2: Vec<u32> = history
            .iter()
            .chain(&reply)
            .chain(&ids(&cached, " and then what happened?"))
            .copied()
            .collect();
        let mut parted = history.clone();
        let at = history.len() / 2 + 3;
        parted[at] = parted[at - 1];
        let mut prompts = vec![turn2, parted, history.clone()];
        // A prompt of exactly the cached whole blocks.
        prompts.push(history[..history.len() / prefix::BLOCK * prefix::BLOCK].to_vec());
        for (i, p) in prompts.iter().enumerate() {
            let (text, reused) = collect_cached(cached.generate(greedy(p, 12)).expect("generate"));
            let expected = collect_cached(plain.generate(greedy(p, 12)).expect("generate")).0;
            assert_eq!(text, expected, "{family} prompt {i}");
            assert!(
                reused > 0 && reused < p.len(),
                "{family} prompt {i}: {reused} of {}",
                p.len()
            );
            if i == 1 {
                assert_eq!(reused, at, "{family}: up to the token where it parts");
            }
            if i >= 2 {
                assert_eq!(reused, p.len() - 1, "{family}: all but the last token");
            }
        }
        let stats = cached.prefix_cache_stats();
        assert_eq!((stats.lookups, stats.hits), (5, 4), "{family}: {stats:?}");
        assert_eq!(plain.prefix_cache_stats().blocks, 0, "a budget of 0 keeps nothing");
    }
}

/// Streams reusing one cached history at once, in chunked prefill beside each other, give the text of computing
/// each alone; the history they shared is unchanged by them (it gives its own text again).
#[test]
fn concurrent_streams_sharing_a_cached_prefix_give_the_text_of_each_alone() {
    let dir = endless_tiny(Family::Qwen2);
    let opts = LoadOptions {
        max_batch: 4,
        step_tokens: 7,
        ..LoadOptions::default()
    };
    let cached = Engine::load(dir.path(), opts.clone()).expect("load");
    let plain = uncached(dir.path(), opts);
    let history = ids(&cached, &"a shared system prompt and history; ".repeat(3));
    let alone = collect_cached(cached.generate(greedy(&history, 16)).expect("generate")).0;
    let prompts: Vec<Vec<u32>> = (0..4)
        .map(|i| {
            let q = ids(&cached, &format!(" question {i}: {}", "why? ".repeat(i + 1)));
            history.iter().chain(&q).copied().collect()
        })
        .collect();
    let gens: Vec<Generation> = prompts
        .iter()
        .map(|p| cached.generate(greedy(p, 16)).expect("generate"))
        .collect();
    let together: Vec<(String, usize)> = gens.into_iter().map(collect_cached).collect();
    for ((text, reused), p) in together.iter().zip(&prompts) {
        assert_eq!(
            text,
            &collect_cached(plain.generate(greedy(p, 16)).expect("generate")).0
        );
        assert!(*reused >= history.len(), "{reused}");
    }
    assert!(
        together
            .iter()
            .map(|t| &t.0)
            .collect::<std::collections::HashSet<_>>()
            .len()
            > 1,
        "the questions lead to different text"
    );
    let (again, reused) = collect_cached(cached.generate(greedy(&history, 16)).expect("generate"));
    assert_eq!((again, reused), (alone, history.len() - 1));
}

/// With room for a few blocks, the least recently used ones go: the cache stays within its budget, a prompt whose
/// blocks were evicted is computed again, and the text is always that of computing it whole.
#[test]
fn a_small_prefix_cache_evicts_least_recently_used_blocks_within_its_budget() {
    let dir = endless_tiny(Family::Llama);
    let big = Engine::load(dir.path(), LoadOptions::default()).expect("load");
    let plain = uncached(dir.path(), LoadOptions::default());
    let a = ids(&big, &"first conversation, all about apples; ".repeat(2));
    let b = ids(&big, &"second conversation, about pears instead; ".repeat(2));
    let whole = |p: &[u32]| (p.len() - 1) / prefix::BLOCK * prefix::BLOCK;
    collect_cached(big.generate(greedy(&a, 1)).expect("generate"));
    let s = big.prefix_cache_stats();
    let block = s.held_bytes / s.blocks;
    let blocks = |p: &[u32]| (p.len() / prefix::BLOCK) as u64;
    // Room for either conversation and a block more, not for both.
    let budget = (blocks(&a).max(blocks(&b)) + 1) * block + block / 2;
    assert!((blocks(&a) + blocks(&b)) * block > budget);
    let small = Engine::load(
        dir.path(),
        LoadOptions {
            prefix_cache_bytes: budget as usize,
            ..LoadOptions::default()
        },
    )
    .expect("load");
    let run = |p: &[u32], max_tokens| {
        let (text, reused) = collect_cached(small.generate(greedy(p, max_tokens)).expect("generate"));
        assert_eq!(
            text,
            collect_cached(plain.generate(greedy(p, max_tokens)).expect("generate")).0
        );
        let s = small.prefix_cache_stats();
        assert!(s.held_bytes <= s.budget_bytes, "{s:?}");
        assert_eq!(s.budget_bytes, budget);
        reused
    };
    run(&a, 8);
    run(&b, 8);
    assert!(small.prefix_cache_stats().evicted_blocks > 0);
    // b was used last: its blocks are all there; a lost its least recently used ones.
    assert!(run(&b, 1) >= whole(&b));
    assert!(run(&a, 1) < whole(&a));
}

/// With `LoadOptions::quantised_cache`, the first quantised load writes the cache and every later one maps it:
/// nothing is quantised, no matrix is held on the heap, and the greedy text is the same.
#[test]
fn a_quantised_engine_maps_its_cache_on_later_loads() {
    let dir = tiny(Family::Qwen2);
    let cache = dir.path().join("cmi-quantised.bin");
    let load = || {
        Engine::load(
            dir.path(),
            LoadOptions {
                quantize: Some(Quantize::Q4_0),
                quantised_cache: Some(cache.clone()),
                ..LoadOptions::default()
            },
        )
        .expect("load")
    };
    let text = |e: &Engine| {
        let mut r = GenerateRequest::new("what is the capital of france?");
        r.max_tokens = 16;
        collect(e.generate(r).expect("generate")).0
    };
    let first = load();
    let f = first.quantised_load();
    assert!(f.quantised > 0 && f.mapped == 0 && f.cache_written, "{f:?}");
    assert!(cache.is_file());
    let want = text(&first);
    drop(first);
    let second = load();
    let s = second.quantised_load();
    assert_eq!(
        (s.quantised, s.mapped, s.cache_written),
        (0, f.quantised, false),
        "{s:?}"
    );
    assert_eq!(second.heap_weight_bytes(), 0);
    assert_eq!(text(&second), want);
    // Without the cache the same blocks are made again, into memory.
    let plain = Engine::load(
        dir.path(),
        LoadOptions {
            quantize: Some(Quantize::Q4_0),
            ..LoadOptions::default()
        },
    )
    .expect("load");
    assert_eq!(plain.quantised_load().quantised, f.quantised);
    assert!(plain.heap_weight_bytes() > 0);
    assert_eq!(text(&plain), want);
}

#[test]
fn text_tokens_are_decoded_and_matched_by_grammar_literals() {
    // `<|im_start|>` is a special added token of the tiny Qwen2 tokenizer: left out of the text by default, and out of
    // a grammar's reach but for its spelling in plain tokens.
    let dir = tiny(Family::Qwen2);
    let run = |text_tokens: Vec<String>| {
        let engine = Engine::load(
            dir.path(),
            LoadOptions {
                text_tokens,
                ..LoadOptions::default()
            },
        )
        .expect("load");
        let mut r = GenerateRequest::new("<|im_start|>user\nhi<|im_end|>\n");
        r.max_tokens = 40;
        r.grammar = Some("start: \"<|im_start|>\" \"assistant\"\n".into());
        let (text, reason, _, completion) = collect(engine.generate(r).expect("generate"));
        assert_eq!(reason, StopReason::EndTurn, "{text}");
        (text, completion)
    };
    let (spelled, spelled_tokens) = run(Vec::new());
    let (special, special_tokens) = run(vec!["<|im_start|>".into(), "<|not_a_token|>".into()]);
    assert_eq!(spelled, "<|im_start|>assistant");
    // With the text token the grammar's literal is the one special token, and the text shows it.
    assert_eq!(special, "<|im_start|>assistant");
    assert!(
        special_tokens < spelled_tokens,
        "{special_tokens} tokens with the text token, {spelled_tokens} spelled out"
    );
}
