//! Test helpers: the generated model folders of `model-synth` (re-exported, so tests say `test_support::tiny_model`),
//! a loopback Hugging Face hub ([`hub`]) and the fault-injection helpers ([`faults`]).

pub mod faults;
pub mod hub;

pub use model_synth::*;
