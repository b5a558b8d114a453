//! Line numbers for JSON5 values, by path (`0.inferenceProfiles.1.regions`).
//!
//! Hand-rolled because the `json5` crate (which does the actual parsing) exposes no spans. This is only a position
//! index: it runs after `json5` accepted the text, so it can skip over anything it does not need to understand.

use std::collections::HashMap;

/// Path → 1-based line of the key (for object members) or of the value (for array elements and the root).
#[derive(Debug, Default)]
pub(crate) struct Positions {
    lines: HashMap<String, usize>,
}

impl Positions {
    /// Indexes `text`, which `json5` has already accepted.
    pub(crate) fn index(text: &str) -> Positions {
        let mut s = Scanner {
            b: text.as_bytes(),
            i: 0,
            line: 1,
            out: HashMap::new(),
        };
        s.value(String::new());
        Positions { lines: s.out }
    }

    /// The line of `path`, or of its nearest indexed ancestor.
    pub(crate) fn line(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(l) = self.lines.get(p) {
                return Some(*l);
            }
            match p.rfind('.') {
                Some(i) => p = &p[..i],
                None => return self.lines.get("").copied(),
            }
        }
    }
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    line: usize,
    out: HashMap<String, usize>,
}

fn join(path: &str, part: &str) -> String {
    if path.is_empty() {
        part.to_string()
    } else {
        format!("{path}.{part}")
    }
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn bump(&mut self) {
        if self.peek() == Some(b'\n') {
            self.line += 1;
        }
        self.i += 1;
    }

    fn skip_trivia(&mut self) {
        while let Some(c) = self.peek() {
            if c.is_ascii_whitespace() {
                self.bump();
            } else if c == b'/' && self.b.get(self.i + 1) == Some(&b'/') {
                while self.peek().is_some_and(|c| c != b'\n') {
                    self.bump();
                }
            } else if c == b'/' && self.b.get(self.i + 1) == Some(&b'*') {
                self.i += 2;
                while self.i < self.b.len() && !(self.peek() == Some(b'*') && self.b.get(self.i + 1) == Some(&b'/')) {
                    self.bump();
                }
                self.i += 2;
            } else if c >= 0x80 {
                // Non-ASCII whitespace (U+FEFF, U+00A0, …) is allowed by JSON5; skip the code point's bytes.
                self.bump();
            } else {
                break;
            }
        }
    }

    /// Reads a string literal (either quote) and returns its raw contents (escapes left as written; keys in practice
    /// have none).
    fn string(&mut self) -> String {
        let Some(quote) = self.peek() else { return String::new() };
        self.bump();
        let start = self.i;
        while let Some(c) = self.peek() {
            if c == b'\\' {
                self.bump();
                self.bump();
            } else if c == quote {
                break;
            } else {
                self.bump();
            }
        }
        let s = String::from_utf8_lossy(&self.b[start..self.i.min(self.b.len())]).into_owned();
        self.bump();
        s
    }

    fn bare(&mut self) -> String {
        let start = self.i;
        while let Some(c) = self.peek() {
            if c.is_ascii_whitespace() || matches!(c, b',' | b':' | b']' | b'}' | b'/') {
                break;
            }
            self.bump();
        }
        String::from_utf8_lossy(&self.b[start..self.i]).into_owned()
    }

    fn value(&mut self, path: String) {
        self.skip_trivia();
        self.out.entry(path.clone()).or_insert(self.line);
        match self.peek() {
            Some(b'{') => {
                self.bump();
                loop {
                    self.skip_trivia();
                    match self.peek() {
                        None => return,
                        Some(b'}') => {
                            self.bump();
                            return;
                        }
                        Some(b',') => {
                            self.bump();
                            continue;
                        }
                        _ => {}
                    }
                    let key_line = self.line;
                    let key = if matches!(self.peek(), Some(b'"' | b'\'')) {
                        self.string()
                    } else {
                        self.bare()
                    };
                    let child = join(&path, &key);
                    self.out.insert(child.clone(), key_line);
                    self.skip_trivia();
                    if self.peek() == Some(b':') {
                        self.bump();
                    }
                    self.value_keep(child);
                }
            }
            Some(b'[') => {
                self.bump();
                let mut n = 0usize;
                loop {
                    self.skip_trivia();
                    match self.peek() {
                        None => return,
                        Some(b']') => {
                            self.bump();
                            return;
                        }
                        Some(b',') => {
                            self.bump();
                            continue;
                        }
                        _ => {}
                    }
                    self.value(join(&path, &n.to_string()));
                    n += 1;
                }
            }
            Some(b'"' | b'\'') => {
                self.string();
            }
            Some(_) => {
                self.bare();
            }
            None => {}
        }
    }

    /// Like `value`, but keeps the key's line for the path (already recorded).
    fn value_keep(&mut self, path: String) {
        let keep = self.out.get(&path).copied();
        self.value(path.clone());
        if let Some(l) = keep {
            self.out.insert(path, l);
        }
    }
}
