//! Line and column of a JSON pointer in the source text, so every error in
//! a pipeline file can say where to look.

use std::collections::HashMap;

/// Where each value of a JSON document starts, by JSON pointer.
#[derive(Debug, Default)]
pub struct SourceMap {
    offsets: HashMap<String, usize>,
    line_starts: Vec<usize>,
}

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// From 1.
    pub line: usize,
    /// From 1, in characters.
    pub column: usize,
}

impl SourceMap {
    /// Scans `text`. Malformed JSON yields a partial map (what was read
    /// before the error), which is all an error message needs.
    pub fn new(text: &str) -> Self {
        let mut scanner = Scanner { bytes: text.as_bytes(), at: 0, depth: 0, offsets: HashMap::new() };
        let _ = scanner.value(String::new());
        let line_starts = std::iter::once(0)
            .chain(text.bytes().enumerate().filter(|(_, b)| *b == b'\n').map(|(i, _)| i + 1))
            .collect();
        SourceMap { offsets: scanner.offsets, line_starts }
    }

    /// The position of the value at `pointer` (an object member points at
    /// its key), or of its nearest ancestor that exists.
    pub fn locate(&self, pointer: &str) -> Option<Position> {
        let mut pointer = pointer;
        loop {
            if let Some(offset) = self.offsets.get(pointer) {
                return Some(self.position(*offset));
            }
            if pointer.is_empty() {
                return None;
            }
            pointer = &pointer[..pointer.rfind('/').unwrap_or(0)];
        }
    }

    fn position(&self, offset: usize) -> Position {
        let line = self.line_starts.partition_point(|start| *start <= offset);
        Position { line, column: offset - self.line_starts[line - 1] + 1 }
    }
}

/// Escapes one JSON pointer segment (`~` → `~0`, `/` → `~1`).
pub fn escape_segment(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Deeper than this the scan stops: no pipeline nests anywhere near it, and
/// the scanner recurses once per level.
const MAX_DEPTH: usize = 128;

struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
    /// Arrays and objects open around the current value.
    depth: usize,
    offsets: HashMap<String, usize>,
}

impl Scanner<'_> {
    fn skip_ws(&mut self) {
        while self.at < self.bytes.len() && self.bytes[self.at].is_ascii_whitespace() {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn value(&mut self, pointer: String) -> Option<()> {
        self.skip_ws();
        self.offsets.entry(pointer.clone()).or_insert(self.at);
        match self.peek()? {
            b'{' | b'[' if self.depth >= MAX_DEPTH => None,
            b'{' => self.nested(|scanner| scanner.object(pointer)),
            b'[' => self.nested(|scanner| scanner.array(pointer)),
            b'"' => self.string().map(|_| ()),
            _ => {
                let start = self.at;
                while self.peek().is_some_and(|b| !matches!(b, b',' | b'}' | b']') && !b.is_ascii_whitespace()) {
                    self.at += 1;
                }
                // A closing bracket where a value should be (`[}`): the text
                // is malformed here, and the scan must not stand still.
                (self.at > start).then_some(())
            }
        }
    }

    fn nested(&mut self, scan: impl FnOnce(&mut Self) -> Option<()>) -> Option<()> {
        self.depth += 1;
        let scanned = scan(self);
        self.depth -= 1;
        scanned
    }

    fn object(&mut self, pointer: String) -> Option<()> {
        self.at += 1;
        loop {
            self.skip_ws();
            match self.peek()? {
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                b',' => self.at += 1,
                b'"' => {
                    let key_at = self.at;
                    let key = self.string()?;
                    let member = format!("{pointer}/{}", escape_segment(&key));
                    self.offsets.insert(member.clone(), key_at);
                    self.skip_ws();
                    if self.peek()? != b':' {
                        return None;
                    }
                    self.at += 1;
                    // The member's own entry (its key) wins over its value's.
                    let value_start = {
                        self.skip_ws();
                        self.at
                    };
                    self.value(member.clone())?;
                    self.offsets.insert(member, key_at.min(value_start));
                }
                _ => return None,
            }
        }
    }

    fn array(&mut self, pointer: String) -> Option<()> {
        self.at += 1;
        let mut index = 0;
        loop {
            self.skip_ws();
            match self.peek()? {
                b']' => {
                    self.at += 1;
                    return Some(());
                }
                b',' => self.at += 1,
                _ => {
                    self.value(format!("{pointer}/{index}"))?;
                    index += 1;
                }
            }
        }
    }

    fn string(&mut self) -> Option<String> {
        let start = self.at;
        self.at += 1;
        while self.peek()? != b'"' {
            self.at += if self.peek()? == b'\\' { 2 } else { 1 };
        }
        self.at += 1;
        serde_json::from_slice(&self.bytes[start..self.at]).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"{
  "name": "x",
  "nodes": [
    {"id": "a", "plugin": "p"},
    {
      "id": "b",
      "config": {"a/b": [1, 2]}
    }
  ]
}"#;

    #[test]
    fn members_point_at_their_key() {
        let map = SourceMap::new(TEXT);
        assert_eq!(map.locate("/name"), Some(Position { line: 2, column: 3 }));
        assert_eq!(map.locate("/nodes/0/plugin"), Some(Position { line: 4, column: 17 }));
        assert_eq!(map.locate("/nodes/1/id"), Some(Position { line: 6, column: 7 }));
        assert_eq!(map.locate("/nodes/1/config/a~1b/1"), Some(Position { line: 7, column: 29 }));
    }

    #[test]
    fn a_missing_pointer_falls_back_to_its_parent() {
        let map = SourceMap::new(TEXT);
        assert_eq!(map.locate("/nodes/1/plugin"), map.locate("/nodes/1"));
        assert_eq!(map.locate("/nodes/1"), Some(Position { line: 5, column: 5 }));
        assert_eq!(map.locate(""), Some(Position { line: 1, column: 1 }));
    }

    #[test]
    fn a_stray_closing_bracket_ends_the_scan() {
        // Each of these once looped forever, growing without bound.
        for text in ["[}", "{\"a\": [1, }", "[[}]", "{\"a\": }"] {
            let map = SourceMap::new(text);
            assert_eq!(map.locate(""), Some(Position { line: 1, column: 1 }), "{text}");
        }
        let map = SourceMap::new("{\n \"a\": [1, }");
        assert_eq!(map.locate("/a/0"), Some(Position { line: 2, column: 8 }));
    }

    #[test]
    fn deep_nesting_stops_the_scan_instead_of_the_stack() {
        let text = "[".repeat(50_000);
        let map = SourceMap::new(&text);
        assert_eq!(map.locate("/0/0"), Some(Position { line: 1, column: 3 }));
        let deepest = "/0".repeat(MAX_DEPTH - 1);
        assert!(map.offsets.contains_key(&deepest));
        assert!(!map.offsets.contains_key(&format!("{deepest}/0/0")));
    }

    #[test]
    fn malformed_text_still_maps_what_came_before() {
        let map = SourceMap::new("{\n \"a\": 1,\n \"b\": [tru");
        assert_eq!(map.locate("/a"), Some(Position { line: 2, column: 2 }));
    }
}
