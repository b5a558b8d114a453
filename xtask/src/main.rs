//! Project automation: layering and tidy checks.

fn main() {}
