//! Model output → Converse pieces (text, reasoning, tool calls), and the grammar that forces a tool call.
//!
//! Both are `chat-template`'s job (`parse::OutputParser`, `grammar::tool_call_lark`); until that crate exports them,
//! this adapter passes the output through as text and forces nothing, which is what a model without tool syntax gets.

use bedrock_wire::Piece;
use bedrock_wire::template::ToolRequirement;
use chat_template::ToolSyntax;

/// Turns streamed model text into pieces.
pub(crate) struct Parser {
    syntax: ToolSyntax,
}

impl Parser {
    pub(crate) fn new(syntax: ToolSyntax, prompt: &str) -> Self {
        let _ = prompt;
        Parser { syntax }
    }

    pub(crate) fn feed(&mut self, text: &str) -> Vec<Piece> {
        let _ = self.syntax;
        if text.is_empty() { Vec::new() } else { vec![Piece::Text(text.to_string())] }
    }

    pub(crate) fn finish(&mut self) -> Vec<Piece> {
        Vec::new()
    }
}

/// The Lark grammar that forces a tool call when `toolChoice` is `any` or names a tool.
pub(crate) fn tool_grammar(
    syntax: ToolSyntax,
    choice: &ToolRequirement,
    tools: Option<&[serde_json::Value]>,
) -> Option<String> {
    let _ = (syntax, choice, tools);
    None
}
