//! Constrained decoding: token masks from Lark grammars (llguidance) for tool calls and JSON output.
