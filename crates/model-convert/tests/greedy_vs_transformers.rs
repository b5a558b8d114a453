//! The engine's greedy continuations of chat prompts on the converted demo folder (`--dtype f32`) are the text
//! transformers generates from the same GGUF (`fixtures/smollm2_135m_reference.json`) and from the converted folder
//! itself, with the prompt its template renders (`fixtures/smollm2_135m_folder_reference.json`), compared up to the first step
//! where transformers' top-two logits are within 0.1 (a near-tie that f32 rounding differences may flip); at that step
//! the engine's token must be one of the tied pair.

mod common;

use infer_engine::{Engine, EngineEvent, GenerateRequest, LoadOptions, StopReason};

/// Below this top-1/top-2 logit gap, a different but equally valid greedy choice is possible.
const NEAR_TIE: f64 = 0.1;

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn run(engine: &Engine, prompt: &str, max_tokens: usize) -> (String, StopReason, usize) {
    let mut req = GenerateRequest::new(prompt);
    req.max_tokens = max_tokens;
    let mut generation = engine.generate(req).unwrap();
    let mut text = String::new();
    loop {
        match generation.blocking_next() {
            Some(EngineEvent::Delta { text: t }) => text.push_str(&t),
            Some(EngineEvent::Done {
                stop_reason,
                completion_tokens,
                ..
            }) => {
                return (text, stop_reason, completion_tokens);
            }
            Some(EngineEvent::Failed { message }) => panic!("generation failed: {message}"),
            None => panic!("stream ended without Done"),
        }
    }
}

/// transformers on the converted folder itself (`fixtures/gen_folder.py`): its config, weights, tokenizer and chat
/// template, as Custom Model Import and every Hugging Face user read them.
const FOLDER_FIXTURE: &str = include_str!("../fixtures/smollm2_135m_folder_reference.json");

#[test]
fn engine_greedy_text_equals_transformers_until_a_near_tie() {
    let dir = common::converted("model-convert-greedy-f32");
    let engine = Engine::load(dir, LoadOptions::default()).expect("engine loads the converted folder");
    let compared = compare(&engine, common::fixture(), false);
    assert!(
        compared >= 20,
        "only {compared} tokens compared: the fixture needs prompts without early near-ties"
    );
}

#[test]
fn engine_greedy_text_equals_transformers_on_the_converted_folder() {
    let dir = common::converted("model-convert-greedy-f32");
    let engine = Engine::load(dir, LoadOptions::default()).expect("engine loads the converted folder");
    let fixture: serde_json::Value = serde_json::from_str(FOLDER_FIXTURE).expect("fixture is valid JSON");
    let compared = compare(&engine, &fixture, true);
    assert!(compared >= 80, "only {compared} tokens compared");
}

/// Compares the engine's greedy text with each generation of `fixture` up to its first near-tie; with `same_prompt`,
/// the prompt transformers rendered from the folder's own template must also tokenise to the same ids here. Returns
/// how many tokens were compared.
fn compare(engine: &Engine, fixture: &serde_json::Value, same_prompt: bool) -> usize {
    let mut compared = 0;
    let mut report = Vec::new();
    for g in fixture["generations"].as_array().unwrap() {
        let prompt = g["prompt"].as_str().unwrap();
        if same_prompt {
            let here = engine.tokenizer().encode(prompt, false).unwrap().get_ids().to_vec();
            assert_eq!(here, ids(&g["prompt_ids"]), "prompt ids of {prompt:?}");
        }
        let greedy = ids(&g["greedy_ids"]);
        let gaps: Vec<f64> = g["top2_gap"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let k = gaps.iter().position(|gap| *gap < NEAR_TIE).unwrap_or(greedy.len());
        let want = &greedy[..k];
        let decode = |ids: &[u32]| engine.tokenizer().decode(ids, true).unwrap();
        // At the near-tie step (if any) the engine may take either of transformers' top two tokens: generate one
        // token more and accept both.
        let tie = (k < greedy.len()).then(|| ids(&g["top2_ids"][k]));
        let max_tokens = k + usize::from(tie.is_some());
        let (text, stop, completion) = run(engine, prompt, max_tokens);
        let accepted: Vec<(String, Vec<u32>)> = match &tie {
            None => vec![(decode(want), want.to_vec())],
            Some(top2) => top2
                .iter()
                .map(|c| {
                    let mut seq = want.to_vec();
                    seq.push(*c);
                    (decode(&seq), seq)
                })
                .collect(),
        };
        let Some((_, seq)) = accepted.iter().find(|(t, _)| *t == text) else {
            panic!(
                "greedy text for {prompt:?}: engine {text:?}; transformers (first {k} tokens, then either of the \
                 near-tied pair) {accepted:?}"
            )
        };
        if seq.last().is_some_and(|id| engine.eos_token_ids().contains(id)) {
            assert_eq!(stop, StopReason::EndTurn, "for {prompt:?}");
        } else {
            assert_eq!(
                (stop, completion),
                (StopReason::MaxTokens, max_tokens),
                "for {prompt:?}"
            );
        }
        let content = &g["messages"].as_array().unwrap().last().unwrap()["content"];
        let then = if tie.is_some() {
            ", then one of the near-tied pair"
        } else {
            ""
        };
        report.push(format!("{content}: {k} tokens equal{then}"));
        compared += k;
    }
    eprintln!("{}", report.join("\n"));
    compared
}

/// The default (bf16) conversion, as the quickstart imports it, answers a plain question sensibly and stops on EOS.
#[test]
fn bf16_demo_folder_answers_the_capital_of_france() {
    let dir = common::converted_with("model-convert-greedy-bf16", model_convert::DType::BF16);
    let engine = Engine::load(&dir, LoadOptions::default()).expect("engine loads the converted folder");
    let prompt = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
                  <|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";
    let (text, stop, _) = run(&engine, prompt, 30);
    assert!(text.contains("Paris"), "{text}");
    assert!(matches!(stop, StopReason::EndTurn | StopReason::MaxTokens), "{stop:?}");
}
