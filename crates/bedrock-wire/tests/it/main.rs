//! Black-box tests of the bedrock-wire contract: JSON shapes, event-stream framing, template input, assembler.

mod assembler;
mod converse;
mod eventstream;
mod exception;
mod invoke;
mod template;
