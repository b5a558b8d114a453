//! Model output → Converse pieces (text, reasoning, tool calls) with `chat-template`'s incremental parser, and the
//! Lark grammars that constrain decoding: a tool call when `toolChoice` is `any` or names a tool, or the structured
//! output a request asks for (JSON, a schema, a regex, a choice, a grammar).

use bedrock_wire::ToolRequirement;
use bedrock_wire::{Piece, StructuredOutput};
use chat_template::ToolSyntax;
use chat_template::parse::{OutputParser, ParseEvent, prompt_opens_thinking};

/// What a generation's output is held to, which also decides how it is read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OutputMode {
    /// Free text, read for reasoning and tool calls.
    Free,
    /// A tool call this grammar forces, read as one.
    ToolCall(String),
    /// The structured output this grammar describes, returned exactly as written (a JSON answer is not a tool
    /// call, and a `<think>` inside a JSON string is not reasoning).
    Structured(String),
}

impl OutputMode {
    pub(crate) fn grammar(&self) -> Option<String> {
        match self {
            OutputMode::Free => None,
            OutputMode::ToolCall(g) | OutputMode::Structured(g) => Some(g.clone()),
        }
    }
}

/// Turns streamed model text into pieces.
pub(crate) struct Parser {
    /// `None`: the text is passed through as it is.
    inner: Option<OutputParser>,
    /// A forced tool call: the grammar allows nothing but the call (and, in harmony, the reasoning before it), so any
    /// text is a call that did not close (cut off at the token limit). It is not returned: a client that forced a call
    /// gets the call (with its reasoning) or nothing, never the raw `<tool_call>…` text as an answer.
    call_only: bool,
}

impl Parser {
    pub(crate) fn new(syntax: ToolSyntax, prompt: &str, mode: &OutputMode) -> Self {
        let inner = match mode {
            // A grammar holds the output from its first token, so a `<think>` the prompt opened is never continued.
            OutputMode::ToolCall(_) => Some(OutputParser::new(syntax, false)),
            OutputMode::Free => Some(OutputParser::new(syntax, prompt_opens_thinking(prompt))),
            OutputMode::Structured(_) => None,
        };
        Parser {
            inner,
            call_only: matches!(mode, OutputMode::ToolCall(_)),
        }
    }

    /// A parser that returns the output as written (the InvokeModel completion formats).
    pub(crate) fn as_written() -> Self {
        Parser {
            inner: None,
            call_only: false,
        }
    }

    pub(crate) fn feed(&mut self, text: &str) -> Vec<Piece> {
        let pieces = match &mut self.inner {
            Some(p) => map(p.feed(text)),
            None if text.is_empty() => Vec::new(),
            None => vec![Piece::Text(text.to_owned())],
        };
        self.keep(pieces)
    }

    pub(crate) fn finish(&mut self) -> Vec<Piece> {
        let pieces = self.inner.as_mut().map(|p| map(p.finish())).unwrap_or_default();
        self.keep(pieces)
    }

    fn keep(&self, mut pieces: Vec<Piece>) -> Vec<Piece> {
        if self.call_only {
            pieces.retain(|p| !matches!(p, Piece::Text(_)));
        }
        pieces
    }
}

/// The Lark grammar of a structured output.
pub(crate) fn structured_grammar(output: &StructuredOutput) -> String {
    use chat_template::grammar::{choice_lark, json_lark, regex_lark};
    match output {
        StructuredOutput::JsonObject => json_lark(&serde_json::json!({"type": "object"})),
        StructuredOutput::JsonSchema(schema) => json_lark(schema),
        StructuredOutput::Regex(r) => regex_lark(r),
        StructuredOutput::Choice(c) => choice_lark(c),
        StructuredOutput::Grammar(g) => g.clone(),
    }
}

/// How a request's output is held: a required tool call wins over a structured format (the format then applies to
/// the text answer that follows the tool results, on a later turn).
pub(crate) fn output_mode(
    syntax: ToolSyntax,
    choice: &ToolRequirement,
    tools: Option<&[serde_json::Value]>,
    structured: Option<&StructuredOutput>,
) -> OutputMode {
    if let Some(g) = tool_grammar(syntax, choice, tools) {
        return OutputMode::ToolCall(g);
    }
    match structured {
        Some(s) => OutputMode::Structured(structured_grammar(s)),
        None => OutputMode::Free,
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
                id: crate::ids::tool_use_id(),
                name,
                input: arguments,
            }),
        })
        .collect()
}

/// The Lark grammar that forces a tool call when `toolChoice` is `any` or names a tool. A template that teaches no
/// tool calls gets the Hermes form (what `cmi template fix` teaches ChatML models), which the parser reads back for
/// such models too: Converse refuses tools for them before this, but an InvokeModel `tool_choice` still holds.
pub(crate) fn tool_grammar(
    syntax: ToolSyntax,
    choice: &ToolRequirement,
    tools: Option<&[serde_json::Value]>,
) -> Option<String> {
    let tools = tools.filter(|t| !t.is_empty())?;
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
        let mut p = Parser::new(ToolSyntax::Hermes, "<|im_start|>assistant\n", &OutputMode::Free);
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
    fn a_forced_call_cut_off_is_never_returned_as_text() {
        let tools =
            vec![serde_json::json!({"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}})];
        let mode = output_mode(ToolSyntax::Hermes, &ToolRequirement::Any, Some(&tools), None);
        let mut p = Parser::new(ToolSyntax::Hermes, "", &mode);
        let mut pieces = p.feed("<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": \"bbbb");
        pieces.extend(p.finish());
        assert!(pieces.is_empty(), "{pieces:?}");
        // A whole call still comes back.
        let mut p = Parser::new(ToolSyntax::Hermes, "", &mode);
        let mut pieces = p.feed("<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>");
        pieces.extend(p.finish());
        assert!(
            matches!(pieces.as_slice(), [Piece::ToolCall { name, .. }] if name == "f"),
            "{pieces:?}"
        );
    }

    #[test]
    fn a_forced_harmony_call_keeps_its_reasoning() {
        let tools = vec![
            serde_json::json!({"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}),
        ];
        let mode = output_mode(ToolSyntax::Harmony, &ToolRequirement::Any, Some(&tools), None);
        let g = mode.grammar().expect("a grammar");
        assert!(
            g.contains("to=functions.get_weather <|constrain|>json<|message|>"),
            "{g}"
        );
        let mut p = Parser::new(ToolSyntax::Harmony, "<|start|>assistant", &mode);
        let mut pieces = p.feed("<|channel|>analysis<|message|>Tokyo weather.<|end|><|start|>assistant");
        pieces.extend(p.feed("<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>"));
        pieces.extend(p.feed("{\"city\": \"Tokyo\"}"));
        pieces.extend(p.finish());
        assert!(
            matches!(pieces.as_slice(), [Piece::Reasoning(r), Piece::ToolCall { name, input, .. }]
                if r == "Tokyo weather." && name == "get_weather" && *input == serde_json::json!({"city": "Tokyo"})),
            "{pieces:?}"
        );
        // Free harmony output: the final channel is the answer.
        let mut p = Parser::new(ToolSyntax::Harmony, "<|start|>assistant", &OutputMode::Free);
        let mut pieces =
            p.feed("<|channel|>analysis<|message|>Easy.<|end|><|start|>assistant<|channel|>final<|message|>4");
        pieces.extend(p.finish());
        assert_eq!(pieces, vec![Piece::Reasoning("Easy.".into()), Piece::Text("4".into())]);
    }

    #[test]
    fn structured_output_is_returned_as_written() {
        let mode = OutputMode::Structured(structured_grammar(&StructuredOutput::JsonObject));
        // Llama 3's JSON tool calls look like this answer, and a DeepSeek-R1 prompt opens `<think>`: neither applies.
        let mut p = Parser::new(ToolSyntax::Llama3Json, "<think>\n", &mode);
        let mut pieces = p.feed("{\"name\": \"f\", ");
        pieces.extend(p.feed("\"parameters\": {\"note\": \"<think>\"}}"));
        pieces.extend(p.finish());
        let text: String = pieces
            .iter()
            .map(|x| match x {
                Piece::Text(t) => t.as_str(),
                other => panic!("unexpected piece {other:?}"),
            })
            .collect();
        assert_eq!(text, "{\"name\": \"f\", \"parameters\": {\"note\": \"<think>\"}}");
    }

    #[test]
    fn a_required_tool_call_wins_over_a_format() {
        let tools =
            vec![serde_json::json!({"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}})];
        let json = StructuredOutput::JsonObject;
        let m = output_mode(ToolSyntax::Hermes, &ToolRequirement::Any, Some(&tools), Some(&json));
        assert!(matches!(m, OutputMode::ToolCall(_)), "{m:?}");
        let m = output_mode(ToolSyntax::Hermes, &ToolRequirement::Auto, Some(&tools), Some(&json));
        assert!(matches!(m, OutputMode::Structured(_)), "{m:?}");
        assert_eq!(
            output_mode(ToolSyntax::Hermes, &ToolRequirement::Auto, None, None),
            OutputMode::Free
        );
    }

    #[test]
    fn grammar_only_when_a_tool_is_required() {
        let tools =
            vec![serde_json::json!({"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}})];
        assert!(tool_grammar(ToolSyntax::Hermes, &ToolRequirement::Auto, Some(&tools)).is_none());
        let g = tool_grammar(ToolSyntax::Hermes, &ToolRequirement::Any, Some(&tools)).expect("grammar");
        assert!(g.contains("tool_call"), "{g}");
        assert!(tool_grammar(ToolSyntax::Hermes, &ToolRequirement::Any, None).is_none());
        // A template without tool calls is held to the Hermes form, which its parser reads back.
        let g = tool_grammar(ToolSyntax::None, &ToolRequirement::Named("f".into()), Some(&tools)).expect("grammar");
        assert!(g.contains("tool_call"), "{g}");
        let mut p = Parser::new(ToolSyntax::None, "", &OutputMode::ToolCall(g));
        let mut pieces = p.feed("<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>");
        pieces.extend(p.finish());
        assert!(
            matches!(pieces.as_slice(), [Piece::ToolCall { name, .. }] if name == "f"),
            "{pieces:?}"
        );
    }
}
