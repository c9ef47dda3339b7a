//! The process log: one line per record, whatever the record carries. A
//! field can hold text from outside (an event id, a lead's name, a plugin's
//! log message); a newline in it must not start what looks like a second,
//! forged record, so control characters inside a record are escaped.

use std::io::Write;
use tracing_subscriber::fmt::MakeWriter;

/// Makes writers that emit each record as exactly one line on `sink`.
#[derive(Clone)]
pub struct OneLine<M> {
    sink: M,
    ansi: bool,
}

impl<M> OneLine<M> {
    /// Lines to `sink`; `ansi` keeps terminal colour codes (the escape
    /// character) unescaped, for a terminal only.
    pub fn new(sink: M, ansi: bool) -> Self {
        OneLine { sink, ansi }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for OneLine<M> {
    type Writer = OneLineWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        OneLineWriter { sink: self.sink.make_writer(), ansi: self.ansi, record: Vec::with_capacity(256) }
    }
}

/// Collects one record and writes it, escaped, when dropped.
pub struct OneLineWriter<W: Write> {
    sink: W,
    ansi: bool,
    record: Vec<u8>,
}

impl<W: Write> Write for OneLineWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.record.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for OneLineWriter<W> {
    fn drop(&mut self) {
        if !self.record.is_empty() {
            let line = one_line(&String::from_utf8_lossy(&self.record), self.ansi);
            let _ = self.sink.write_all(line.as_bytes());
        }
    }
}

/// `record` as one line ending in `\n`: newlines, carriage returns and other
/// control characters inside it escaped (`\n`, `\r`, `\u{1b}`); the escape
/// character kept when `ansi`.
pub fn one_line(record: &str, ansi: bool) -> String {
    let body = record.strip_suffix('\n').unwrap_or(record);
    let mut line = String::with_capacity(body.len() + 1);
    for c in body.chars() {
        match c {
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            '\t' => line.push('\t'),
            '\u{1b}' if ansi => line.push(c),
            c if c.is_control() => line.push_str(&c.escape_unicode().to_string()),
            c => line.push(c),
        }
    }
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_newline_in_a_field_cannot_forge_a_record() {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber =
            tracing_subscriber::fmt().with_ansi(false).with_writer(OneLine::new(move || sink.clone(), false)).finish();
        // What a signed webhook once put in the log as a line of its own.
        let event = "e1\n2026-12-01T00:00:00Z ERROR handoff: ledger corrupted\r";
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(event = %event, "webhook refused");
            tracing::warn!(lead = "x\u{1b}[2J", "second");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].contains(r"event=e1\n2026-12-01T00:00:00Z ERROR handoff: ledger corrupted\r"), "{text}");
        assert!(lines[1].contains(r"\u{1b}[2J") && !lines[1].contains('\u{1b}'), "{text}");
    }

    #[test]
    fn colour_codes_stay_for_a_terminal() {
        assert_eq!(one_line("\u{1b}[33mWARN\u{1b}[0m a\nb\n", true), "\u{1b}[33mWARN\u{1b}[0m a\\nb\n");
        assert_eq!(one_line("\u{1b}[33mWARN", false), "\\u{1b}[33mWARN\n");
    }
}
