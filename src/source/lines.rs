//! Cutting a byte stream into whole lines.

use crate::parse::MAX_LINE_BYTES;

/// Holds a partial last line until its newline arrives, and drops lines longer than
/// [`MAX_LINE_BYTES`] without buffering them whole.
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
    /// Inside an overlong line: drop bytes until its newline.
    skipping: bool,
    /// Overlong lines dropped so far.
    pub too_long: u64,
}

impl LineSplitter {
    /// Adds bytes; appends every line they complete (with its newline) to `out`.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<u8>) {
        while !data.is_empty() {
            match memchr::memchr(b'\n', data) {
                Some(i) => {
                    if self.skipping {
                        self.skipping = false;
                    } else if self.partial.len() + i > MAX_LINE_BYTES {
                        self.too_long += 1;
                    } else {
                        out.extend_from_slice(&self.partial);
                        out.extend_from_slice(&data[..=i]);
                    }
                    self.partial.clear();
                    data = &data[i + 1..];
                }
                None => {
                    if !self.skipping {
                        if self.partial.len() + data.len() > MAX_LINE_BYTES {
                            self.too_long += 1;
                            self.skipping = true;
                            self.partial.clear();
                        } else {
                            self.partial.extend_from_slice(data);
                        }
                    }
                    data = &[];
                }
            }
        }
    }

    /// The input ended: a last line without its newline still counts.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.partial.is_empty() && !self.skipping {
            out.extend_from_slice(&self.partial);
            out.push(b'\n');
        }
        self.reset();
    }

    /// Forgets a partial line (the file it came from was truncated).
    pub fn reset(&mut self) {
        self.partial.clear();
        self.skipping = false;
    }

    pub fn has_partial(&self) -> bool {
        !self.partial.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_partial_lines() {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        s.push(b"ab", &mut out);
        assert!(out.is_empty() && s.has_partial());
        s.push(b"c\nde", &mut out);
        assert_eq!(out, b"abc\n");
        s.push(b"f\n\ng", &mut out);
        assert_eq!(out, b"abc\ndef\n\n");
        s.finish(&mut out);
        assert_eq!(out, b"abc\ndef\n\ng\n");
    }

    #[test]
    fn drops_overlong_lines_in_pieces() {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        let chunk = vec![b'x'; 300_000];
        for _ in 0..5 {
            s.push(&chunk, &mut out);
        }
        s.push(b"tail\nok\n", &mut out);
        assert_eq!(out, b"ok\n");
        assert_eq!(s.too_long, 1);
    }
}
