//! Greedy generation from a raw prompt file, for trying models by hand: `cargo run -p infer-engine --example generate -- DIR PROMPT_FILE [MAX_TOKENS]`.

use infer_engine::{Engine, EngineEvent, GenerateRequest, LoadOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: generate DIR PROMPT_FILE [MAX_TOKENS]";
    let dir = std::path::PathBuf::from(args.next().ok_or(usage)?);
    let prompt = std::fs::read_to_string(args.next().ok_or(usage)?)?;
    let max_tokens = args.next().map(|n| n.parse()).transpose()?.unwrap_or(128);
    let engine = Engine::load(&dir, LoadOptions::default())?;
    let mut req = GenerateRequest::new(prompt);
    req.max_tokens = max_tokens;
    let mut g = engine.generate(req)?;
    while let Some(ev) = g.blocking_next() {
        match ev {
            EngineEvent::Delta { text } => print!("{text}"),
            EngineEvent::Done { stop_reason, .. } => println!("\n[{stop_reason:?}]"),
            EngineEvent::Failed { message } => return Err(message.into()),
        }
    }
    Ok(())
}
