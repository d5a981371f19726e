//! Turning input lines into [`Event`](crate::event::Event)s.
//!
//! Each input format has its own module; they all produce the same event model, and
//! a bad line becomes a [`ParseError`] that is counted, never a crash.

pub mod native;

use thiserror::Error;

/// Lines longer than this are rejected without being buffered whole.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Why one line could not be turned into an event.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum ParseError {
    #[error("{0}")]
    Invalid(String),
    #[error("line is longer than 1 MiB; it was skipped without being read whole")]
    TooLong,
}

/// Strips a trailing `\r` and reports whether anything but whitespace is left.
///
/// Blank lines are neither events nor errors.
pub fn trim_line(line: &[u8]) -> Option<&[u8]> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) { None } else { Some(line) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_lines_are_skipped() {
        assert_eq!(trim_line(b""), None);
        assert_eq!(trim_line(b" \t\r"), None);
        assert_eq!(trim_line(b"{}\r"), Some(&b"{}"[..]));
    }
}
