//! The one `<think>` split, read through both of its doors: [`ThinkSplitter`] and [`OutputParser`]. Tags split across
//! chunks, output that starts inside reasoning, no tags at all, and the two rules on which the doors differ.

use super::*;

/// `(text, reasoning)` the splitter makes of `chunks`.
fn split(chunks: &[&str], open: bool) -> (String, String) {
    let mut s = ThinkSplitter::new(open);
    let mut pieces: Vec<Piece> = chunks.iter().flat_map(|c| s.feed(c)).collect();
    pieces.extend(s.finish());
    let (mut text, mut reasoning) = (String::new(), String::new());
    for p in pieces {
        match p {
            Piece::Text(t) => text.push_str(&t),
            Piece::Reasoning(r) => reasoning.push_str(&r),
        }
    }
    (text, reasoning)
}

/// `(text, reasoning)` the output parser makes of `chunks` (tool calls would show as `<call>`).
fn parse(syntax: ToolSyntax, chunks: &[&str], open: bool) -> (String, String) {
    let mut p = OutputParser::new(syntax, open);
    let mut events: Vec<ParseEvent> = chunks.iter().flat_map(|c| p.feed(c)).collect();
    events.extend(p.finish());
    let (mut text, mut reasoning) = (String::new(), String::new());
    for e in events {
        match e {
            ParseEvent::Text(t) => text.push_str(&t),
            ParseEvent::Reasoning(r) => reasoning.push_str(&r),
            ParseEvent::ToolCall { .. } => text.push_str("<call>"),
        }
    }
    (text, reasoning)
}

/// Every way of cutting `s` into two chunks (at char boundaries), the whole string included.
fn two_chunks(s: &str) -> Vec<[&str; 2]> {
    (0..=s.len())
        .filter(|&i| s.is_char_boundary(i))
        .map(|i| [&s[..i], &s[i..]])
        .collect()
}

fn pair(t: &str, r: &str) -> (String, String) {
    (t.to_owned(), r.to_owned())
}

#[test]
fn a_tag_split_over_two_chunks_is_still_a_tag() {
    let out = "<think>plan it</think>Answer: 4";
    for chunks in two_chunks(out) {
        assert_eq!(split(&chunks, false), pair("Answer: 4", "plan it"), "{chunks:?}");
        for syntax in [ToolSyntax::None, ToolSyntax::Hermes, ToolSyntax::DeepSeek] {
            assert_eq!(
                parse(syntax, &chunks, false),
                pair("Answer: 4", "plan it"),
                "{syntax}: {chunks:?}"
            );
        }
    }
    // Every tag split over many one-byte chunks.
    let bytes: Vec<&str> = (0..out.len()).map(|i| &out[i..i + 1]).collect();
    assert_eq!(split(&bytes, false), pair("Answer: 4", "plan it"));
    assert_eq!(parse(ToolSyntax::Hermes, &bytes, false), pair("Answer: 4", "plan it"));
}

#[test]
fn output_that_starts_inside_reasoning() {
    // DeepSeek-R1 distills: the prompt ends with `<think>\n`, the model writes only the closing tag.
    let out = "Okay, 2+2.\n</think>\n\n4";
    for chunks in two_chunks(out) {
        assert_eq!(split(&chunks, true), pair("\n\n4", "Okay, 2+2.\n"), "{chunks:?}");
        assert_eq!(
            parse(ToolSyntax::DeepSeek, &chunks, true),
            pair("4", "Okay, 2+2.\n"),
            "{chunks:?}"
        );
    }
    // Cut off before it closed: all reasoning, a partial tag included.
    assert_eq!(split(&["still thinking </thi"], true), pair("", "still thinking </thi"));
    assert_eq!(
        parse(ToolSyntax::DeepSeek, &["still thinking </thi"], true),
        pair("", "still thinking </thi")
    );
}

#[test]
fn text_without_think_tags_comes_through_unchanged() {
    for out in [
        "a < b and <b>bold</b>",
        "ends with a partial tag <th",
        "ends with </thin",
        "日本語 <",
        "",
    ] {
        for chunks in two_chunks(out) {
            assert_eq!(split(&chunks, false), pair(out, ""), "{chunks:?}");
            for syntax in [ToolSyntax::None, ToolSyntax::Hermes, ToolSyntax::MistralToolCalls] {
                assert_eq!(parse(syntax, &chunks, false), pair(out, ""), "{syntax}: {chunks:?}");
            }
        }
    }
}

#[test]
fn the_rules_on_which_the_splitter_and_the_parser_differ() {
    // The splitter keeps the whitespace after `</think>`; the parser starts the answer after it.
    assert_eq!(split(&["<think>x</think>\n\nA"], false), pair("\n\nA", "x"));
    assert_eq!(
        parse(ToolSyntax::Hermes, &["<think>x</think>\n\nA"], false),
        pair("A", "x")
    );
    // A stray `</think>` while answering: the splitter drops it, however the text is cut (and whether or not a
    // `<think>` follows in the same chunk); the parser keeps it as text.
    let out = "a</think>b<think>c</think>d";
    for chunks in two_chunks(out) {
        assert_eq!(split(&chunks, false), pair("abd", "c"), "{chunks:?}");
        assert_eq!(
            parse(ToolSyntax::Hermes, &chunks, false),
            pair("a</think>bd", "c"),
            "{chunks:?}"
        );
    }
    // A `<think>` inside a tool call is the call's text, not reasoning (the splitter reads no calls at all).
    let call = "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"s\": \"<think>x</think>\"}}\n</tool_call>";
    assert_eq!(parse(ToolSyntax::Hermes, &[call], false), pair("<call>", ""));
    assert_eq!(
        split(&[call], false),
        pair(
            "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"s\": \"\"}}\n</tool_call>",
            "x"
        )
    );
}
