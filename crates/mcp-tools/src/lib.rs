//! Tools of MCP servers for the chat agent: the `mcpServers` config Claude Desktop and Bedrock Engineer use
//! ([`McpConfig`]), connections over stdio and Streamable HTTP with the official SDK (`rmcp`), and each server's tools
//! as [`converse_agent::tools::Tool`]s named `<server>__<tool>` ([`McpServers`]).
//!
//! A server that fails to start is reported, not fatal; a server that exits or hangs mid-session makes its tools
//! return a named error (after [`Timeouts::call`] for a hang), and the chat goes on.

#![warn(missing_docs)]

mod client;
mod config;
pub mod sanitize;

use std::path::PathBuf;

pub use client::{McpServers, Timeouts};
pub use config::{EXPECTED_SHAPE, McpConfig, ServerConfig, Transport};

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config file cannot be read.
    #[error("cannot read the MCP config {}: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file says something wrong.
    #[error("MCP config {}: {}{message}", file.display(), if field.is_empty() { String::new() } else { format!("`{field}` ") })]
    Config {
        /// The file.
        file: PathBuf,
        /// Where in it (`mcpServers.NAME.args`), empty for the whole file.
        field: String,
        /// What is wrong, and what was expected.
        message: String,
    },
    /// A server could not be started or listed.
    #[error("MCP server `{server}` {message}")]
    Connect {
        /// Its name in the config.
        server: String,
        /// What went wrong.
        message: String,
    },
}

#[cfg(test)]
mod tests;
