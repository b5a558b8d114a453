//! On the real demo model (SmolLM2-135M-Instruct converted by `cmi convert gguf`), when `CMI_SMOLLM2_DIR` points at
//! the folder: a chat prompt gets a sensible greedy answer. Skipped (passes trivially, with a note) without it.

use infer_engine::{Engine, EngineEvent, GenerateRequest, LoadOptions, StopReason};

#[test]
fn smollm2_answers_the_capital_of_france() {
    let Some(dir) = std::env::var_os("CMI_SMOLLM2_DIR") else {
        eprintln!("CMI_SMOLLM2_DIR not set: skipping the SmolLM2 check");
        return;
    };
    let engine = Engine::load(std::path::Path::new(&dir), LoadOptions::default()).expect("load");
    let mut req = GenerateRequest::new(
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    );
    req.max_tokens = 30;
    let mut g = engine.generate(req).expect("generate");
    let mut text = String::new();
    let mut done = None;
    while let Some(ev) = g.blocking_next() {
        match ev {
            EngineEvent::Delta { text: t } => text.push_str(&t),
            EngineEvent::Done { stop_reason, .. } => done = Some(stop_reason),
            EngineEvent::Failed { message } => panic!("{message}"),
        }
    }
    eprintln!("SmolLM2: {text:?} ({done:?})");
    assert!(text.contains("Paris"), "{text}");
    assert!(matches!(done, Some(StopReason::EndTurn | StopReason::MaxTokens)));
}
