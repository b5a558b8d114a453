//! Model output → Converse pieces (text, reasoning, tool calls) with `chat-template`'s incremental parser, and the
//! Lark grammar that forces a tool call when `toolChoice` is `any` or names a tool.

use bedrock_wire::Piece;
use bedrock_wire::template::ToolRequirement;
use chat_template::ToolSyntax;
use chat_template::parse::{OutputParser, ParseEvent, prompt_opens_thinking};

/// Turns streamed model text into pieces.
pub(crate) struct Parser {
    inner: OutputParser,
}

impl Parser {
    pub(crate) fn new(syntax: ToolSyntax, prompt: &str) -> Self {
        Parser {
            inner: OutputParser::new(syntax, prompt_opens_thinking(prompt)),
        }
    }

    pub(crate) fn feed(&mut self, text: &str) -> Vec<Piece> {
        map(self.inner.feed(text))
    }

    pub(crate) fn finish(&mut self) -> Vec<Piece> {
        map(self.inner.finish())
    }
}

fn map(events: Vec<ParseEvent>) -> Vec<Piece> {
    events
        .into_iter()
        .filter_map(|e| match e {
            ParseEvent::Text(t) if t.is_empty() => None,
            ParseEvent::Text(t) => Some(Piece::Text(t)),
            ParseEvent::Reasoning(t) if t.is_empty() => None,
            ParseEvent::Reasoning(t) => Some(Piece::Reasoning(t)),
            ParseEvent::ToolCall { name, arguments } => Some(Piece::ToolCall {
                id: crate::runtime::tool_use_id(),
                name,
                input: arguments,
            }),
        })
        .collect()
}

/// The Lark grammar that forces a tool call when `toolChoice` is `any` or names a tool.
pub(crate) fn tool_grammar(
    syntax: ToolSyntax,
    choice: &ToolRequirement,
    tools: Option<&[serde_json::Value]>,
) -> Option<String> {
    let tools = tools.filter(|t| !t.is_empty())?;
    if syntax == ToolSyntax::None {
        return None;
    }
    match choice {
        ToolRequirement::Auto => None,
        ToolRequirement::Any => Some(chat_template::grammar::tool_call_lark(syntax, tools, None)),
        ToolRequirement::Named(n) => Some(chat_template::grammar::tool_call_lark(syntax, tools, Some(n))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hermes_tool_calls_become_tool_use_pieces() {
        let mut p = Parser::new(ToolSyntax::Hermes, "<|im_start|>assistant\n");
        let mut pieces = p.feed("Let me check.<tool_call>{\"name\": \"get_weather\", ");
        pieces.extend(p.feed("\"arguments\": {\"city\": \"Paris\"}}</tool_call>"));
        pieces.extend(p.finish());
        let text: String = pieces
            .iter()
            .filter_map(|x| if let Piece::Text(t) = x { Some(t.as_str()) } else { None })
            .collect();
        assert_eq!(text.trim(), "Let me check.");
        let call = pieces.iter().find_map(|x| match x {
            Piece::ToolCall { id, name, input } => Some((id.clone(), name.clone(), input.clone())),
            _ => None,
        });
        let (id, name, input) = call.expect("a tool call");
        assert!(id.starts_with("tooluse_"));
        assert_eq!(name, "get_weather");
        assert_eq!(input, serde_json::json!({"city": "Paris"}));
    }

    #[test]
    fn grammar_only_when_a_tool_is_required() {
        let tools =
            vec![serde_json::json!({"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}})];
        assert!(tool_grammar(ToolSyntax::Hermes, &ToolRequirement::Auto, Some(&tools)).is_none());
        let g = tool_grammar(ToolSyntax::Hermes, &ToolRequirement::Any, Some(&tools)).expect("grammar");
        assert!(g.contains("tool_call"), "{g}");
        assert!(tool_grammar(ToolSyntax::Hermes, &ToolRequirement::Any, None).is_none());
    }
}
