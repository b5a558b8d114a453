//! Python-compatible serialisation: `json.dumps` (transformers' `tojson` filter) and `float.__repr__`.
//!
//! Hand-rolled on purpose: no crate reproduces Python's exact `json.dumps` layout (separators, `indent` rules,
//! `ensure_ascii`, float repr, no HTML escaping), and minijinja's own `tojson` HTML-escapes and uses serde's layout.

use std::fmt::Write as _;

use minijinja::value::ValueKind;
use minijinja::{Error as MjError, ErrorKind, Value};

use crate::tree::{Item, JsonNode, JsonTree};

/// Options of Python's `json.dumps` that transformers' `tojson` exposes.
#[derive(Debug, Clone)]
pub(crate) struct DumpOptions {
    pub ensure_ascii: bool,
    pub indent: Option<String>,
    pub item_sep: String,
    pub key_sep: String,
    pub sort_keys: bool,
}

impl Default for DumpOptions {
    fn default() -> Self {
        DumpOptions {
            ensure_ascii: false,
            indent: None,
            item_sep: ", ".into(),
            key_sep: ": ".into(),
            sort_keys: false,
        }
    }
}

const MAX_DEPTH: usize = 500;

/// `json.dumps(value, **opts)`.
pub(crate) fn dumps(value: &Value, opts: &DumpOptions) -> Result<String, MjError> {
    let mut out = String::new();
    write_value(&mut out, value, opts, 0)?;
    Ok(out)
}

thread_local! {
    /// Scratch space of `dumps_value`: written JSON grows once per thread, not once per call.
    static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// `json.dumps(value, **opts)` as a template string.
pub(crate) fn dumps_value(value: &Value, opts: &DumpOptions) -> Result<Value, MjError> {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut out) => {
            out.clear();
            let r = write_value(&mut out, value, opts, 0).map(|()| Value::from(out.as_str()));
            if out.capacity() > 1 << 20 {
                *out = String::new();
            }
            r
        }
        // Re-entered (cannot happen: writing calls no template code); fall back to a fresh string.
        Err(_) => dumps(value, opts).map(Value::from),
    })
}

fn not_serializable(v: &Value) -> MjError {
    let ty = match v.kind() {
        ValueKind::Undefined => "Undefined".to_string(),
        k => k.to_string(),
    };
    MjError::new(
        ErrorKind::InvalidOperation,
        format!("Object of type {ty} is not JSON serializable"),
    )
}

fn depth_exceeded() -> MjError {
    MjError::new(
        ErrorKind::InvalidOperation,
        "maximum recursion depth exceeded while encoding a JSON object",
    )
}

fn write_value(out: &mut String, v: &Value, o: &DumpOptions, level: usize) -> Result<(), MjError> {
    if level > MAX_DEPTH {
        return Err(depth_exceeded());
    }
    match v.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => write_number(out, v, true),
        ValueKind::String => write_str(out, v.as_str().unwrap_or_default(), o.ensure_ascii),
        ValueKind::Seq | ValueKind::Iterable => {
            if let Some(node) = v.downcast_object_ref::<JsonNode>() {
                let (tree, id) = node.parts();
                write_tree(out, tree, id, o, level)?;
            } else if let Some(items) = v.downcast_object_ref::<Vec<Value>>() {
                write_seq(out, items.iter(), items.len(), o, level)?;
            } else {
                let items: Vec<Value> = v.try_iter()?.collect();
                write_seq(out, items.iter(), items.len(), o, level)?;
            }
        }
        ValueKind::Map => {
            if let Some(node) = v.downcast_object_ref::<JsonNode>()
                && !o.sort_keys
            {
                // The request's own JSON: written straight from the tree.
                let (tree, id) = node.parts();
                write_tree(out, tree, id, o, level)?;
            } else {
                let mut pairs = Vec::new();
                for key in v.try_iter()? {
                    let item = v.get_item(&key)?;
                    pairs.push((key, item));
                }
                if o.sort_keys {
                    sort_pairs(&mut pairs)?;
                }
                write_map(out, pairs.len(), o, level, |out, i| {
                    let (k, v) = &pairs[i];
                    write_key(out, k, o)?;
                    out.push_str(&o.key_sep);
                    write_value(out, v, o, level + 1)
                })?;
            }
        }
        _ => return Err(not_serializable(v)),
    }
    Ok(())
}

fn newline_indent(out: &mut String, indent: &str, level: usize) {
    out.push('\n');
    for _ in 0..level {
        out.push_str(indent);
    }
}

/// Writes `[...]` / `{...}` around `len` items (written by `item`), with `json.dumps`' separators and indentation.
fn write_container(
    out: &mut String,
    (open, close): (char, char),
    len: usize,
    o: &DumpOptions,
    level: usize,
    mut item: impl FnMut(&mut String, usize) -> Result<(), MjError>,
) -> Result<(), MjError> {
    out.push(open);
    if len == 0 {
        out.push(close);
        return Ok(());
    }
    if let Some(ind) = &o.indent {
        newline_indent(out, ind, level + 1);
    }
    for i in 0..len {
        if i > 0 {
            out.push_str(&o.item_sep);
            if let Some(ind) = &o.indent {
                newline_indent(out, ind, level + 1);
            }
        }
        item(out, i)?;
    }
    if let Some(ind) = &o.indent {
        newline_indent(out, ind, level);
    }
    out.push(close);
    Ok(())
}

fn write_seq<'a>(
    out: &mut String,
    mut items: impl Iterator<Item = &'a Value>,
    len: usize,
    o: &DumpOptions,
    level: usize,
) -> Result<(), MjError> {
    write_container(out, ('[', ']'), len, o, level, |out, _| match items.next() {
        Some(v) => write_value(out, v, o, level + 1),
        None => Ok(()),
    })
}

fn write_map(
    out: &mut String,
    len: usize,
    o: &DumpOptions,
    level: usize,
    item: impl FnMut(&mut String, usize) -> Result<(), MjError>,
) -> Result<(), MjError> {
    write_container(out, ('{', '}'), len, o, level, item)
}

/// A map key as Python's `json.dumps` writes it (non-string keys are converted).
fn write_key(out: &mut String, k: &Value, o: &DumpOptions) -> Result<(), MjError> {
    match k.kind() {
        ValueKind::String => write_str(out, k.as_str().unwrap_or_default(), o.ensure_ascii),
        ValueKind::Number => {
            out.push('"');
            write_number(out, k, true);
            out.push('"');
        }
        ValueKind::Bool => out.push_str(if k.is_true() { "\"true\"" } else { "\"false\"" }),
        ValueKind::None => out.push_str("\"null\""),
        _ => {
            return Err(MjError::new(
                ErrorKind::InvalidOperation,
                format!("keys must be str, int, float, bool or None, not {}", k.kind()),
            ));
        }
    }
    Ok(())
}

/// Writes a node of the request's JSON tree exactly as `write_value` writes the same value (keys in order).
fn write_tree(out: &mut String, tree: &JsonTree, id: usize, o: &DumpOptions, level: usize) -> Result<(), MjError> {
    if level > MAX_DEPTH {
        return Err(depth_exceeded());
    }
    match tree.item(id) {
        Item::Null => out.push_str("null"),
        Item::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        Item::I64(i) => {
            let _ = write!(out, "{i}");
        }
        Item::U64(u) => {
            let _ = write!(out, "{u}");
        }
        Item::F64(f) => out.push_str(&float_repr(f, true)),
        Item::Str(s) => write_str(out, s, o.ensure_ascii),
        Item::Seq(edges) => write_container(out, ('[', ']'), edges.len(), o, level, |out, i| {
            write_tree(out, tree, edges[i].node(), o, level + 1)
        })?,
        Item::Map(edges) => write_map(out, edges.len(), o, level, |out, i| {
            write_str(out, tree.key(&edges[i]), o.ensure_ascii);
            out.push_str(&o.key_sep);
            write_tree(out, tree, edges[i].node(), o, level + 1)
        })?,
    }
    Ok(())
}

fn sort_pairs(pairs: &mut [(Value, Value)]) -> Result<(), MjError> {
    let mut err = None;
    pairs.sort_by(|a, b| {
        if a.0.kind() != b.0.kind() && !(a.0.is_number() && b.0.is_number()) {
            err = Some(MjError::new(
                ErrorKind::InvalidOperation,
                format!(
                    "'<' not supported between instances of '{}' and '{}'",
                    a.0.kind(),
                    b.0.kind()
                ),
            ));
        }
        a.0.cmp(&b.0)
    });
    match err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn write_number(out: &mut String, v: &Value, json: bool) {
    if v.is_integer() {
        // Display of an integer value is its decimal digits.
        let _ = write!(out, "{v}");
    } else {
        let f = f64::try_from(v.clone()).unwrap_or(f64::NAN);
        out.push_str(&float_repr(f, json));
    }
}

/// Python's `repr(float)` (`json = false`) or `json.dumps(float)` (`json = true`: `NaN`, `Infinity`).
pub(crate) fn float_repr(f: f64, json: bool) -> String {
    if f.is_nan() {
        return if json { "NaN" } else { "nan" }.into();
    }
    if f.is_infinite() {
        let s = if json { "Infinity" } else { "inf" };
        return if f < 0.0 { format!("-{s}") } else { s.into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Shortest round-trip digits and exponent, e.g. "1.2345e-5".
    let sci = format!("{:e}", f.abs());
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let decpt = exp + 1; // value = 0.DIGITS * 10^decpt
    let mut s = String::new();
    if f < 0.0 {
        s.push('-');
    }
    if !(-4 < decpt && decpt <= 16) {
        // Exponent form: d[.ddd]e[+-]XX
        s.push_str(&digits[..1]);
        if digits.len() > 1 {
            s.push('.');
            s.push_str(&digits[1..]);
        }
        let e = decpt - 1;
        let _ = write!(s, "e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
    } else if decpt <= 0 {
        s.push_str("0.");
        for _ in 0..(-decpt) {
            s.push('0');
        }
        s.push_str(&digits);
    } else {
        let d = decpt as usize;
        if digits.len() <= d {
            s.push_str(&digits);
            for _ in digits.len()..d {
                s.push('0');
            }
            s.push_str(".0");
        } else {
            s.push_str(&digits[..d]);
            s.push('.');
            s.push_str(&digits[d..]);
        }
    }
    s
}

/// Bytes `json.dumps` escapes: `"`, `\\`, control characters, and with `ensure_ascii` everything past `~`.
const ESCAPE: [bool; 256] = escape_table(false);
const ESCAPE_ASCII: [bool; 256] = escape_table(true);

const fn escape_table(ensure_ascii: bool) -> [bool; 256] {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = b < 0x20 || b == b'"' as usize || b == b'\\' as usize || (ensure_ascii && b > b'~' as usize);
        b += 1;
    }
    t
}

fn write_str(out: &mut String, s: &str, ensure_ascii: bool) {
    out.reserve(s.len() + 2);
    out.push('"');
    // Copy runs of characters that need no escape in one go.
    let table = if ensure_ascii { &ESCAPE_ASCII } else { &ESCAPE };
    let needs_escape = |b: u8| table[b as usize];
    let bytes = s.as_bytes();
    let mut start = 0;
    while let Some(off) = bytes[start..].iter().position(|&b| needs_escape(b)) {
        let i = start + off;
        out.push_str(&s[start..i]);
        // `i` is a char boundary: every byte that needs an escape is ASCII or starts a multi-byte character.
        let c = s[i..].chars().next().unwrap_or_default();
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        let cases = [
            (100.0, "100.0"),
            (18.5, "18.5"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5e-7, "-2.5e-07"),
            (123456789012345680.0, "1.2345678901234568e+17"),
            (0.1, "0.1"),
            (-0.0, "-0.0"),
        ];
        for (f, want) in cases {
            assert_eq!(float_repr(f, false), want, "{f}");
        }
        assert_eq!(float_repr(f64::INFINITY, true), "Infinity");
        assert_eq!(float_repr(f64::NAN, false), "nan");
    }

    #[test]
    fn dumps_indent_and_escapes() {
        let v = Value::from(minijinja::value::Serde(
            serde_json::json!({"b": [1, 2.0, {}], "a": "x<&'\"\n\u{1}é", "c": []}),
        ));
        assert_eq!(
            dumps(&v, &DumpOptions::default()).unwrap(),
            r#"{"b": [1, 2.0, {}], "a": "x<&'\"\n\u0001é", "c": []}"#
        );
        let o = DumpOptions {
            indent: Some("  ".into()),
            item_sep: ",".into(),
            ..DumpOptions::default()
        };
        assert_eq!(
            dumps(&v, &o).unwrap(),
            "{\n  \"b\": [\n    1,\n    2.0,\n    {}\n  ],\n  \"a\": \"x<&'\\\"\\n\\u0001é\",\n  \"c\": []\n}"
        );
        let o = DumpOptions {
            ensure_ascii: true,
            sort_keys: true,
            ..DumpOptions::default()
        };
        assert_eq!(
            dumps(
                &Value::from(minijinja::value::Serde(serde_json::json!({"z": "é😀", "a": 1}))),
                &o
            )
            .unwrap(),
            r#"{"a": 1, "z": "\u00e9\ud83d\ude00"}"#
        );
    }
}
