//! Parsing model output.
