//! Integration tests: uploads against a real S3 implementation (s3s-fs, the store the local Bedrock uses) on a
//! loopback port, with a request counter to prove what was (not) sent.

mod e2e;
mod hub;
mod s3;
mod upload;
