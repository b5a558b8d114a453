//! Unit tests of the server internals.
