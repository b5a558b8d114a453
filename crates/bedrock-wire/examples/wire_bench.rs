//! Measures the per-event cost of the ConverseStream path: assemble a text delta, serialize it, frame it, decode it.
//! Run with `cargo run -p bedrock-wire --example wire_bench` (dev profile: dependencies are optimised, this crate
//! is not) or `--release`.

use std::time::Instant;

use bedrock_wire::converse::{StopReason, TokenUsage};
use bedrock_wire::{Piece, StreamAssembler, decode_all};

fn main() {
    const TOKENS: usize = 200_000;
    let started = Instant::now();
    let mut asm = StreamAssembler::new();
    let mut body = Vec::with_capacity(TOKENS * 120);
    let mut events = 0usize;
    for i in 0..TOKENS {
        let piece = if i % 1000 == 999 {
            Piece::ToolCall {
                id: format!("tooluse_{i}"),
                name: "get_weather".into(),
                input: serde_json::json!({"city": "Paris"}),
            }
        } else {
            Piece::Text(" token".into())
        };
        for e in asm.push(piece) {
            body.extend_from_slice(&e.to_frame().expect("frame"));
            events += 1;
        }
    }
    for e in asm.finish(StopReason::EndTurn, TokenUsage::new(10, TOKENS as u32), 1) {
        body.extend_from_slice(&e.to_frame().expect("frame"));
        events += 1;
    }
    let encoded = started.elapsed();
    let started = Instant::now();
    let decoded = decode_all(&body).expect("decode");
    let decode = started.elapsed();
    assert_eq!(decoded.len(), events);
    let per = |d: std::time::Duration| d.as_nanos() as f64 / events as f64;
    // The example is a binary, so printing is its job.
    #[allow(clippy::print_stdout)]
    {
        println!(
            "{events} events, {} bytes: assemble+serialize+frame {:.0} ns/event, decode {:.0} ns/event",
            body.len(),
            per(encoded),
            per(decode)
        );
    }
}
