//! A JSON reader made for log lines: a serde `Deserializer` over one line that the
//! format parsers' visitors read from, with serde_json's rules and much less work.
//!
//! Log lines are mostly what tokentop does not read: prompts, responses, tool schemas.
//! Three things make this reader faster than serde_json's on them:
//! - strings are scanned 16 bytes at a time for their end (a quote, a backslash or a
//!   control character), with SSE2 on x86-64 and 8 bytes at a time elsewhere;
//! - a value that is skipped ([`de::IgnoredAny`], [`super::json::Skip`]) is checked
//!   but never built: escapes are validated, not decoded, so nothing is allocated;
//!   an object or list is classified 64 bytes at a time, with AVX2 where the CPU has
//!   it and SSE2 otherwise (quotes, backslashes, control characters, whitespace,
//!   structure as bit masks), so string bodies are passed over
//!   without a loop and only the tokens between them are checked one by one (about a
//!   tenth less time on gateway logs than skipping byte by byte, which still handles
//!   whatever the block skip does not vouch for, errors included);
//! - the line was checked as UTF-8 once (by `simdutf8`), so strings are not checked again.
//!
//! The rules are serde_json's: the same grammar, nesting limited to 128 levels, control
//! characters and lone surrogates rejected in every string (also skipped ones), numbers
//! out of the range of `f64` rejected, integers as `u64`/`i64` when they fit.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// Nesting this deep is an error (as in serde_json), so a hostile line cannot
/// exhaust the stack.
const MAX_DEPTH: u32 = 128;

/// Why a line is not what a parser wanted, and where (a byte column, from 1).
///
/// Boxed, as serde_json's is: errors are rare, and one word keeps every `Result` the
/// reader returns in registers (a `Result<(), Error>` is a pointer tested for null)
/// instead of a struct written to and read back from memory at each `?`.
#[derive(Debug)]
pub struct Error(Box<Inner>);

#[derive(Debug)]
struct Inner {
    msg: Box<str>,
    column: usize,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// Not JSON.
    Syntax,
    /// JSON that ends too early.
    Eof,
    /// JSON, but not what the format wants.
    Data,
}

impl Error {
    /// The line is not JSON at all (as opposed to JSON in another shape).
    pub fn is_syntax(&self) -> bool {
        self.0.kind != Kind::Data
    }

    #[cold]
    fn new(msg: Box<str>, column: usize, kind: Kind) -> Error {
        Error(Box::new(Inner { msg, column, kind }))
    }

    #[cold]
    fn syntax(msg: &str, column: usize) -> Error {
        Error::new(msg.into(), column, Kind::Syntax)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.0.column {
            0 => f.write_str(&self.0.msg),
            c => write!(f, "{} (column {c})", self.0.msg),
        }
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Error {
        Error::new(msg.to_string().into(), 0, Kind::Data)
    }
}

/// Reads one JSON value from a line.
pub struct Scanner<'de> {
    text: &'de str,
    pos: usize,
    depth: u32,
}

impl<'de> Scanner<'de> {
    pub fn new(text: &'de str) -> Scanner<'de> {
        Scanner { text, pos: 0, depth: 0 }
    }

    /// Only whitespace may follow the value.
    pub fn end(&mut self) -> Result<(), Error> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.syntax("trailing characters")),
        }
    }

    fn bytes(&self) -> &'de [u8] {
        self.text.as_bytes()
    }

    /// Skips whitespace; the next byte, if any.
    #[inline]
    fn peek(&mut self) -> Option<u8> {
        let b = self.bytes();
        while let Some(&c) = b.get(self.pos) {
            if !matches!(c, b' ' | b'\n' | b'\t' | b'\r') {
                return Some(c);
            }
            self.pos += 1;
        }
        None
    }

    fn syntax(&self, msg: &str) -> Error {
        Error::syntax(msg, self.pos + 1)
    }

    #[cold]
    fn eof(&self, msg: &str) -> Error {
        Error::new(msg.into(), self.text.len(), Kind::Eof)
    }

    /// An error from a visitor gets the position it was found at.
    fn placed(&self, mut e: Error) -> Error {
        if e.0.column == 0 {
            e.0.column = self.pos.max(1);
        }
        e
    }

    fn enter(&mut self) -> Result<(), Error> {
        self.depth += 1;
        if self.depth >= MAX_DEPTH {
            return Err(self.syntax("recursion limit exceeded"));
        }
        Ok(())
    }

    /// The string whose opening quote was just consumed, borrowed unless it has escapes.
    /// (Inlined where it is read: a string without escapes is a few instructions, and
    /// the call cost as many; the rest is [`string_built`](Self::string_built).)
    #[inline]
    fn string(&mut self) -> Result<Cow<'de, str>, Error> {
        let (b, start) = (self.bytes(), self.pos);
        let i = find_special(b, start);
        if b.get(i) == Some(&b'"') {
            self.pos = i + 1;
            // SAFETY: `start` follows the opening quote and `i` is the closing one, both
            // ASCII in valid UTF-8, so both are char boundaries, and `start <= i < len`.
            // (Slicing with checks tested both boundaries again: ~1% of a native line.)
            return Ok(Cow::Borrowed(unsafe { self.text.get_unchecked(start..i) }));
        }
        self.string_built(start, i)
    }

    /// The string from `start` whose first byte that is not plain text is at `i` (an
    /// escape, a control character, or the end of the line).
    #[inline(never)]
    fn string_built(&mut self, start: usize, i: usize) -> Result<Cow<'de, str>, Error> {
        let b = self.bytes();
        let mut out = String::with_capacity(i - start + 16);
        let (mut run, mut i) = (start, i);
        loop {
            match b.get(i) {
                None => return Err(self.eof("EOF while parsing a string")),
                Some(b'"') => {
                    out.push_str(&self.text[run..i]);
                    self.pos = i + 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    out.push_str(&self.text[run..i]);
                    self.pos = i + 1;
                    out.push(self.escape()?);
                    run = self.pos;
                }
                Some(_) => {
                    self.pos = i;
                    return Err(self.syntax("control character (\\u0000-\\u001F) found while parsing a string"));
                }
            }
            i = find_special(b, self.pos);
        }
    }

    /// Like [`string`](Self::string), without keeping it: checked, not built.
    fn skip_string(&mut self) -> Result<(), Error> {
        let b = self.bytes();
        loop {
            let i = find_special(b, self.pos);
            self.pos = i;
            match b.get(i) {
                None => return Err(self.eof("EOF while parsing a string")),
                Some(b'"') => {
                    self.pos = i + 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    // The one-letter escapes (`\n`, `\"`, ...) inline; `\u` checked in full.
                    if b.get(i + 1).is_some_and(is_one_letter_escape) {
                        self.pos = i + 2;
                    } else {
                        self.pos = i + 1;
                        self.escape()?;
                    }
                }
                Some(_) => {
                    return Err(self.syntax("control character (\\u0000-\\u001F) found while parsing a string"));
                }
            }
        }
    }

    /// The character of the escape after a backslash.
    fn escape(&mut self) -> Result<char, Error> {
        let Some(&c) = self.bytes().get(self.pos) else {
            return Err(self.eof("EOF while parsing a string"));
        };
        self.pos += 1;
        Ok(match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\x08',
            b'f' => '\x0c',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = self.hex4()?;
                match hi {
                    0xD800..=0xDBFF => {
                        if self.bytes().get(self.pos..self.pos + 2) != Some(b"\\u") {
                            return Err(self.syntax("lone leading surrogate in hex escape"));
                        }
                        self.pos += 2;
                        let lo = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&lo) {
                            return Err(self.syntax("lone leading surrogate in hex escape"));
                        }
                        let c = 0x10000 + ((u32::from(hi) - 0xD800) << 10) + (u32::from(lo) - 0xDC00);
                        char::from_u32(c).expect("a surrogate pair is a scalar value")
                    }
                    0xDC00..=0xDFFF => return Err(self.syntax("lone trailing surrogate in hex escape")),
                    c => char::from_u32(u32::from(c)).expect("not a surrogate"),
                }
            }
            _ => return Err(self.syntax("invalid escape")),
        })
    }

    fn hex4(&mut self) -> Result<u16, Error> {
        let b = self.bytes();
        let Some(digits) = b.get(self.pos..self.pos + 4) else {
            return Err(self.eof("EOF while parsing a string"));
        };
        match hex4(b, self.pos) {
            Some(n) => {
                self.pos += 4;
                Ok(n)
            }
            None => {
                // The error is placed at the first byte that is not a hex digit.
                self.pos += digits.iter().take_while(|d| d.is_ascii_hexdigit()).count();
                Err(self.syntax("invalid escape"))
            }
        }
    }

    /// A number starting at the current byte (`-` or a digit).
    ///
    /// Read here in one pass when plain (up to nineteen digits, no exponent), as log
    /// lines' statuses, token counts and latencies are; the rest, and every error, by
    /// [`number_in_full`](Self::number_in_full), which reads these alike.
    #[inline]
    fn number(&mut self) -> Result<Number, Error> {
        let b = self.bytes();
        let start = self.pos;
        let negative = b.get(start) == Some(&b'-');
        let first = start + usize::from(negative);
        let mut i = first;
        let mut mantissa = 0u64;
        while let Some(&d @ b'0'..=b'9') = b.get(i) {
            mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
            i += 1;
        }
        let int_digits = i - first;
        if int_digits == 0 || int_digits > 19 || (int_digits > 1 && b[first] == b'0') {
            return self.number_in_full();
        }
        match b.get(i) {
            Some(b'.') => {
                let point = i;
                i += 1;
                while let Some(&d @ b'0'..=b'9') = b.get(i) {
                    mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
                    i += 1;
                }
                let fraction = i - point - 1;
                if fraction == 0
                    || int_digits + fraction > 19
                    || mantissa > 1 << 53
                    || matches!(b.get(i), Some(b'e' | b'E'))
                {
                    return self.number_in_full();
                }
                self.pos = i;
                // Clinger's fast path, as in `number_in_full`.
                let f = mantissa as f64 / POW10[fraction];
                Ok(Number::F64(if negative { -f } else { f }))
            }
            Some(b'e' | b'E') => self.number_in_full(),
            _ if !negative => {
                self.pos = i;
                Ok(Number::U64(mantissa))
            }
            _ if mantissa == 0 => {
                self.pos = i;
                Ok(Number::F64(-0.0))
            }
            _ if mantissa <= i64::MAX as u64 + 1 => {
                self.pos = i;
                Ok(Number::I64((mantissa as i64).wrapping_neg()))
            }
            _ => self.number_in_full(),
        }
    }

    /// [`number`](Self::number) for any number: exponents, long ones, errors.
    #[cold]
    #[inline(never)]
    fn number_in_full(&mut self) -> Result<Number, Error> {
        let b = self.bytes();
        let start = self.pos;
        let negative = b[start] == b'-';
        let mut i = start + usize::from(negative);
        let mut int: u64 = 0;
        let mut overflow = false;
        match b.get(i) {
            Some(b'0') => {
                i += 1;
                if b.get(i).is_some_and(u8::is_ascii_digit) {
                    self.pos = i;
                    return Err(self.syntax("invalid number"));
                }
            }
            Some(b'1'..=b'9') => {
                let from = i;
                while let Some(&d @ b'0'..=b'9') = b.get(i) {
                    int = int.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
                    i += 1;
                }
                // Nineteen digits always fit; longer runs are added again with checks.
                if i - from > 19 {
                    (int, overflow) = checked_digits(&b[from..i]);
                }
            }
            Some(_) => {
                self.pos = i;
                return Err(self.syntax("invalid number"));
            }
            None => return Err(self.eof("EOF while parsing a value")),
        }
        let mut float = false;
        // The digits as one integer and a power of ten, for the exact fast path below.
        // Exact when all its digits (nineteen at most) fit; otherwise the standard
        // library reads the number.
        let (mut mantissa, mut exact, mut exp10) = (int, i - start <= 19 + usize::from(negative), 0i64);
        if b.get(i) == Some(&b'.') {
            float = true;
            i += 1;
            let digits = i;
            while let Some(&d @ b'0'..=b'9') = b.get(i) {
                mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
                i += 1;
            }
            exp10 = -((i - digits) as i64);
            exact &= i - start <= 20 + usize::from(negative);
            if i == digits {
                self.pos = i;
                return Err(if i == b.len() {
                    self.eof("EOF while parsing a value")
                } else {
                    self.syntax("invalid number")
                });
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            float = true;
            i += 1;
            let minus = b.get(i) == Some(&b'-');
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let digits = i;
            let mut e = 0i64;
            while let Some(&d @ b'0'..=b'9') = b.get(i) {
                e = (e * 10 + i64::from(d - b'0')).min(1 << 20);
                i += 1;
            }
            exp10 += if minus { -e } else { e };
            if i == digits {
                self.pos = i;
                return Err(if i == b.len() {
                    self.eof("EOF while parsing a value")
                } else {
                    self.syntax("invalid number")
                });
            }
        }
        self.pos = i;
        if !float && !overflow {
            if !negative {
                return Ok(Number::U64(int));
            }
            if int == 0 {
                return Ok(Number::F64(-0.0));
            }
            if int <= i64::MAX as u64 + 1 {
                return Ok(Number::I64((int as i64).wrapping_neg()));
            }
        }
        // Clinger's fast path (the standard library's too): a mantissa below 2^53 and a
        // power of ten up to 22 are both exact, so one multiplication or division rounds
        // correctly. Latencies and costs (`1234.567`) take it.
        if float && exact && mantissa <= 1 << 53 && (-22..=22).contains(&exp10) {
            let m = mantissa as f64;
            let f = if exp10 < 0 { m / POW10[(-exp10) as usize] } else { m * POW10[exp10 as usize] };
            return Ok(Number::F64(if negative { -f } else { f }));
        }
        match self.text[start..i].parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Number::F64(f)),
            _ => {
                self.pos = start;
                Err(self.syntax("number out of range"))
            }
        }
    }

    /// Checks a value without building anything.
    fn skip(&mut self) -> Result<(), Error> {
        match self.peek() {
            None => Err(self.eof("EOF while parsing a value")),
            Some(b'"') => {
                self.pos += 1;
                self.skip_string()
            }
            Some(b'{') => {
                self.enter()?;
                self.pos += 1;
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                } else {
                    loop {
                        match self.peek() {
                            Some(b'"') => {
                                self.pos += 1;
                                self.skip_string()?;
                            }
                            None => return Err(self.eof("EOF while parsing an object")),
                            Some(_) => return Err(self.syntax("key must be a string")),
                        }
                        self.colon()?;
                        self.skip()?;
                        if self.object_next()? {
                            break;
                        }
                    }
                }
                self.depth -= 1;
                Ok(())
            }
            Some(b'[') => {
                self.enter()?;
                self.pos += 1;
                if self.peek() == Some(b']') {
                    self.pos += 1;
                } else {
                    loop {
                        self.skip()?;
                        if self.list_next()? {
                            break;
                        }
                    }
                }
                self.depth -= 1;
                Ok(())
            }
            Some(b'-' | b'0'..=b'9') => self.number().map(|_| ()),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(_) => Err(self.syntax("expected value")),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Error> {
        let rest = &self.bytes()[self.pos..];
        if rest.starts_with(word) {
            self.pos += word.len();
            return Ok(());
        }
        let same = rest.iter().zip(word).take_while(|(x, y)| x == y).count();
        self.pos += same;
        if same == rest.len() { Err(self.eof("EOF while parsing a value")) } else { Err(self.syntax("expected ident")) }
    }

    /// The `:` after a key; one right after it (compact JSON) is taken inline.
    #[inline]
    fn colon(&mut self) -> Result<(), Error> {
        if self.bytes().get(self.pos) == Some(&b':') {
            self.pos += 1;
            return Ok(());
        }
        self.spaced_colon()
    }

    #[inline(never)]
    fn spaced_colon(&mut self) -> Result<(), Error> {
        match self.peek() {
            Some(b':') => {
                self.pos += 1;
                Ok(())
            }
            None => Err(self.eof("EOF while parsing an object")),
            Some(_) => Err(self.syntax("expected `:`")),
        }
    }

    /// After an object's member: `true` when the object has ended (its `}` consumed).
    /// (This and [`list_next`](Self::list_next), and their twins in `Members` and
    /// `Elements`, are written out: one function for all four took 4–7% more
    /// instructions an event, measured with callgrind on `report`.)
    fn object_next(&mut self) -> Result<bool, Error> {
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                match self.peek() {
                    Some(b'}') => Err(self.syntax("trailing comma")),
                    _ => Ok(false),
                }
            }
            Some(b'}') => {
                self.pos += 1;
                Ok(true)
            }
            None => Err(self.eof("EOF while parsing an object")),
            Some(_) => Err(self.syntax("expected `,` or `}`")),
        }
    }

    /// After a list's element: `true` when the list has ended (its `]` consumed).
    fn list_next(&mut self) -> Result<bool, Error> {
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                match self.peek() {
                    Some(b']') => Err(self.syntax("trailing comma")),
                    _ => Ok(false),
                }
            }
            Some(b']') => {
                self.pos += 1;
                Ok(true)
            }
            None => Err(self.eof("EOF while parsing a list")),
            Some(_) => Err(self.syntax("expected `,` or `]`")),
        }
    }
}

/// The block scan of [`Scanner::skip_fast`]: bytes of the line classified 64 at a time.
mod blocks {
    /// Bit `i` set for each byte `i` of `block` that is a `"`, a `\`, a control character
    /// (below 0x20), or JSON whitespace.
    pub(super) struct Masks {
        pub quote: u64,
        pub backslash: u64,
        pub control: u64,
        pub space: u64,
        /// `{`, `}`, `[`, `]`, `:` and `,`.
        pub structural: u64,
    }

    impl Masks {
        /// The masks of a block read `shift` bytes before where it should start (the
        /// last 64 bytes of a line, so nothing is copied): moved down, and the bytes
        /// past the line's end taken as whitespace, as padding would be.
        #[inline]
        pub(super) fn shifted(self, shift: usize) -> Masks {
            debug_assert!((1..64).contains(&shift));
            Masks {
                quote: self.quote >> shift,
                backslash: self.backslash >> shift,
                control: self.control >> shift,
                space: (self.space >> shift) | !(u64::MAX >> shift),
                structural: self.structural >> shift,
            }
        }
    }

    /// Whether this CPU runs [`classify_avx2`] and [`prefix_xor_clmul`]: the four
    /// features asked once, the answer kept in one byte (0 until asked, then 1 or 2),
    /// as std's four cached answers cost ~20 instructions at each skipped value.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    pub(super) fn has_avx2() -> bool {
        use std::sync::atomic::{AtomicU8, Ordering};
        static HAS: AtomicU8 = AtomicU8::new(0);
        match HAS.load(Ordering::Relaxed) {
            0 => {
                let has = std::is_x86_feature_detected!("avx2")
                    && std::is_x86_feature_detected!("bmi1")
                    && std::is_x86_feature_detected!("bmi2")
                    && std::is_x86_feature_detected!("pclmulqdq");
                HAS.store(1 + u8::from(has), Ordering::Relaxed);
                has
            }
            known => known == 2,
        }
    }

    /// [`classify`], or [`classify_avx2`] when `AVX2` (in code compiled for it).
    #[inline(always)]
    pub(super) fn classify_with<const AVX2: bool>(block: &[u8; 64]) -> Masks {
        #[cfg(target_arch = "x86_64")]
        if AVX2 {
            // SAFETY: `AVX2` is true only in `Scanner::skip_container_avx2`, called
            // once the CPU was seen to have AVX2.
            return unsafe { classify_avx2(block) };
        }
        classify(block)
    }

    /// [`prefix_xor`], with one carry-less multiplication when `CLMUL`.
    #[inline(always)]
    pub(super) fn prefix_xor_with<const CLMUL: bool>(x: u64) -> u64 {
        #[cfg(target_arch = "x86_64")]
        if CLMUL {
            // SAFETY: as in `classify_with`, the CPU was seen to have PCLMULQDQ.
            return unsafe { prefix_xor_clmul(x) };
        }
        prefix_xor(x)
    }

    /// [`classify`] 32 bytes at a time, whitespace and structure told apart by two
    /// nibble lookups (simdjson's classification) rather than ten comparisons.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn classify_avx2(block: &[u8; 64]) -> Masks {
        use std::arch::x86_64::{
            __m256i, _mm256_and_si256, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_min_epu8, _mm256_movemask_epi8,
            _mm256_set1_epi8, _mm256_setr_epi8, _mm256_setzero_si256, _mm256_shuffle_epi8, _mm256_srli_epi16,
        };
        // Bits of a byte's class: 0 `,`, 1 `:`, 2 `[{`, 3 `]}`, 4 space, 5 tab and
        // newline, 6 carriage return; a byte is in the classes both its low nibble's
        // and its high nibble's entries name (bytes from 0x80 in none).
        #[rustfmt::skip]
        let (low, high) = (
            _mm256_setr_epi8(
                16, 0, 0, 0, 0, 0, 0, 0, 0, 32, 34, 4, 1, 72, 0, 0,
                16, 0, 0, 0, 0, 0, 0, 0, 0, 32, 34, 4, 1, 72, 0, 0,
            ),
            _mm256_setr_epi8(
                96, 0, 17, 2, 0, 12, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0,
                96, 0, 17, 2, 0, 12, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0,
            ),
        );
        let (q, bs, ctl, zero) = (
            _mm256_set1_epi8(b'"' as i8),
            _mm256_set1_epi8(b'\\' as i8),
            _mm256_set1_epi8(0x1f),
            _mm256_setzero_si256(),
        );
        // The low four bits: a byte's low nibble, and the structure classes.
        let (low4, space) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(0x70));
        let mut m = Masks { quote: 0, backslash: 0, control: 0, space: 0, structural: 0 };
        for k in 0..2 {
            // SAFETY: each load reads 32 of the block's 64 bytes (unaligned loads).
            let v = unsafe { _mm256_loadu_si256(block.as_ptr().add(32 * k).cast::<__m256i>()) };
            let bits = |x| u64::from(_mm256_movemask_epi8(x) as u32) << (32 * k);
            let class = _mm256_and_si256(
                _mm256_shuffle_epi8(low, v),
                _mm256_shuffle_epi8(high, _mm256_and_si256(_mm256_srli_epi16::<4>(v), low4)),
            );
            m.quote |= bits(_mm256_cmpeq_epi8(v, q));
            m.backslash |= bits(_mm256_cmpeq_epi8(v, bs));
            m.control |= bits(_mm256_cmpeq_epi8(_mm256_min_epu8(v, ctl), v));
            m.space |= bits(_mm256_cmpeq_epi8(_mm256_and_si256(class, space), zero));
            m.structural |= bits(_mm256_cmpeq_epi8(_mm256_and_si256(class, low4), zero));
        }
        // Bytes of no class were marked above.
        m.space = !m.space;
        m.structural = !m.structural;
        m
    }

    /// [`prefix_xor`] as a carry-less multiplication by all ones.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "pclmulqdq")]
    #[inline]
    unsafe fn prefix_xor_clmul(x: u64) -> u64 {
        use std::arch::x86_64::{_mm_clmulepi64_si128, _mm_cvtsi128_si64, _mm_set_epi64x, _mm_set1_epi8};
        _mm_cvtsi128_si64(_mm_clmulepi64_si128::<0>(_mm_set_epi64x(0, x as i64), _mm_set1_epi8(-1))) as u64
    }

    #[inline]
    pub(super) fn classify(block: &[u8; 64]) -> Masks {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{
                __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
            };
            let mut m = Masks { quote: 0, backslash: 0, control: 0, space: 0, structural: 0 };
            // SAFETY: SSE2 is part of every x86-64 CPU; each load reads 16 of the
            // block's 64 bytes (unaligned loads).
            unsafe {
                let (q, bs, ctl) = (_mm_set1_epi8(b'"' as i8), _mm_set1_epi8(b'\\' as i8), _mm_set1_epi8(0x1f));
                // `[` and `]` are `{` and `}` without the 0x20 bit.
                let (brace, close, colon, comma, bit5) = (
                    _mm_set1_epi8(b'{' as i8),
                    _mm_set1_epi8(b'}' as i8),
                    _mm_set1_epi8(b':' as i8),
                    _mm_set1_epi8(b',' as i8),
                    _mm_set1_epi8(0x20),
                );
                let (sp, tab, nl, cr) = (
                    _mm_set1_epi8(b' ' as i8),
                    _mm_set1_epi8(b'\t' as i8),
                    _mm_set1_epi8(b'\n' as i8),
                    _mm_set1_epi8(b'\r' as i8),
                );
                for k in 0..4 {
                    let v = _mm_loadu_si128(block.as_ptr().add(16 * k).cast::<__m128i>());
                    let bits = |x| u64::from(_mm_movemask_epi8(x) as u16) << (16 * k);
                    m.quote |= bits(_mm_cmpeq_epi8(v, q));
                    m.backslash |= bits(_mm_cmpeq_epi8(v, bs));
                    m.control |= bits(_mm_cmpeq_epi8(_mm_min_epu8(v, ctl), v));
                    m.space |= bits(_mm_or_si128(
                        _mm_or_si128(_mm_cmpeq_epi8(v, sp), _mm_cmpeq_epi8(v, tab)),
                        _mm_or_si128(_mm_cmpeq_epi8(v, nl), _mm_cmpeq_epi8(v, cr)),
                    ));
                    let folded = _mm_or_si128(v, bit5);
                    m.structural |= bits(_mm_or_si128(
                        _mm_or_si128(_mm_cmpeq_epi8(folded, brace), _mm_cmpeq_epi8(folded, close)),
                        _mm_or_si128(_mm_cmpeq_epi8(v, colon), _mm_cmpeq_epi8(v, comma)),
                    ));
                }
            }
            m
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let mut m = Masks { quote: 0, backslash: 0, control: 0, space: 0, structural: 0 };
            for (i, &c) in block.iter().enumerate() {
                let bit = 1u64 << i;
                m.quote |= if c == b'"' { bit } else { 0 };
                m.backslash |= if c == b'\\' { bit } else { 0 };
                m.control |= if c < 0x20 { bit } else { 0 };
                m.space |= if matches!(c, b' ' | b'\t' | b'\n' | b'\r') { bit } else { 0 };
                m.structural |= if matches!(c, b'{' | b'}' | b'[' | b']' | b':' | b',') { bit } else { 0 };
            }
            m
        }
    }

    /// The bytes escaped by a backslash, from the block's backslashes and whether the
    /// previous block's last backslash escapes this block's first byte (updated for the
    /// next block). A run of backslashes escapes every other byte after its start and the
    /// byte after it if its length is odd: the runs starting on odd and on even bits are
    /// told apart by one addition whose carries run through each run (simdjson's
    /// branchless method).
    #[inline]
    pub(super) fn escaped(backslash: u64, carry: &mut u64) -> u64 {
        const EVEN: u64 = 0x5555_5555_5555_5555;
        let backslash = backslash & !*carry;
        let follows_escape = (backslash << 1) | *carry;
        let odd_starts = backslash & !EVEN & !follows_escape;
        let (even_starts_ended, overflow) = odd_starts.overflowing_add(backslash);
        *carry = u64::from(overflow);
        (EVEN ^ (even_starts_ended << 1)) & follows_escape
    }

    /// Bit `i` set when an odd number of bits at or below `i` are set in `x`.
    #[inline]
    pub(super) fn prefix_xor(mut x: u64) -> u64 {
        x ^= x << 1;
        x ^= x << 2;
        x ^= x << 4;
        x ^= x << 8;
        x ^= x << 16;
        x ^= x << 32;
        x
    }
}

/// Where a container of [`Scanner::skip_fast`] is in its grammar.
#[derive(Clone, Copy, PartialEq)]
enum Expect {
    /// After `{`: a key or `}`.
    KeyOrEnd,
    /// After `,` in an object.
    Key,
    /// After a key.
    Colon,
    /// After `[`: a value or `]`.
    ValueOrEnd,
    /// After `:` or `,` in a list.
    Value,
    /// After a value: `,` or the container's end.
    Next,
}

impl<'de> Scanner<'de> {
    /// Like [`skip`](Self::skip) for the value an unknown field holds, faster on the
    /// objects and lists that fill log lines (messages, tool schemas, responses): their
    /// bytes are classified 64 at a time, so string bodies are passed over by bit
    /// masks and only the tokens between strings are looked at one by one. What it
    /// cannot vouch for (any error, a lone surrogate) it leaves to
    /// `skip` from the value's start, so what is accepted and every message are
    /// `skip`'s own.
    fn skip_fast(&mut self) -> Result<(), Error> {
        self.peek();
        let (pos, depth) = (self.pos, self.depth);
        if self.skip_container().is_some() {
            return Ok(());
        }
        (self.pos, self.depth) = (pos, depth);
        self.skip()
    }

    /// The object or list at `self.pos`, checked; `None` where [`skip`](Self::skip)
    /// is to say why (or to decide).
    fn skip_container(&mut self) -> Option<()> {
        #[cfg(target_arch = "x86_64")]
        if blocks::has_avx2() {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { self.skip_container_avx2() };
        }
        self.skip_container_in::<false>()
    }

    /// [`skip_container`](Self::skip_container) compiled for AVX2, BMI and carry-less
    /// multiplication (about a quarter fewer instructions in the skip than SSE2's).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,bmi1,bmi2,pclmulqdq")]
    unsafe fn skip_container_avx2(&mut self) -> Option<()> {
        self.skip_container_in::<true>()
    }

    /// The body of [`skip_container`](Self::skip_container); `SIMD` only where the
    /// CPU has what `skip_container_avx2` is compiled for.
    #[inline(always)]
    fn skip_container_in<const SIMD: bool>(&mut self) -> Option<()> {
        let b = self.bytes();
        // A container, so the first token opens it and the last closes it.
        if !matches!(b.get(self.pos), Some(b'{' | b'[')) {
            return None;
        }
        // Containers open: `lists[k]` when the container k deep is a list (a bool a
        // level costs fewer instructions than a bit of a u128).
        let (mut lists, mut open, mut in_list) = ([false; MAX_DEPTH as usize], 0usize, false);
        let mut expect = Expect::Value;
        // Carried between blocks: inside a string, the first byte escaped, the last
        // byte part of a number or literal.
        let (mut in_string, mut escape_carry, mut scalar_last) = (0u64, 0u64, 0u64);
        // The `u` of a surrogate pair's low half, checked with its high half.
        let mut checked_escape = usize::MAX;
        let mut block_at = self.pos;
        let mut pad = [b' '; 64];
        while block_at < b.len() {
            // The block's masks.
            let m = match b.get(block_at..block_at + 64) {
                Some(s) => {
                    let s = s.try_into().expect("64 bytes");
                    blocks::classify_with::<SIMD>(s)
                }
                // The line's last 64 bytes, read again.
                None if b.len() >= 64 => {
                    let last = b[b.len() - 64..].try_into().expect("64 bytes");
                    blocks::classify_with::<SIMD>(last).shifted(block_at + 64 - b.len())
                }
                // A line shorter than a block, padded with spaces.
                None => {
                    let rest = &b[block_at..];
                    pad[..rest.len()].copy_from_slice(rest);
                    blocks::classify_with::<SIMD>(&pad)
                }
            };
            // Escaped bytes: each backslash that is not itself escaped escapes the next.
            let escaped = blocks::escaped(m.backslash, &mut escape_carry);
            let mut rest = escaped;
            while rest != 0 {
                let at = block_at + rest.trailing_zeros() as usize;
                rest &= rest - 1;
                match b.get(at)? {
                    c if is_one_letter_escape(c) => {}
                    // `\u`: four hex digits, and a surrogate's other half.
                    b'u' if at != checked_escape => match escape_at(b, at - 1)? {
                        Escape::One => {}
                        Escape::Pair => checked_escape = at + 6,
                    },
                    b'u' => {}
                    _ => return None,
                }
            }
            let quotes = m.quote & !escaped;
            let inside = blocks::prefix_xor_with::<SIMD>(quotes) ^ in_string;
            in_string = ((inside as i64) >> 63) as u64;
            // Inside strings (opening quote included): no control characters.
            if m.control & inside != 0 {
                return None;
            }
            // Tokens: opening quotes, structure outside strings, and the first byte of
            // each run of anything else outside strings (numbers, literals, errors).
            let scalar = !(inside | quotes | m.space | m.structural);
            let starts = scalar & !((scalar << 1) | scalar_last);
            scalar_last = scalar >> 63;
            let mut tokens = (quotes & inside) | (m.structural & !inside) | starts;
            let block = &b[block_at..];
            while tokens != 0 {
                let j = tokens.trailing_zeros() as usize;
                tokens &= tokens - 1;
                let p = block_at + j;
                // (The tests check what the SAFETY comment says, at every token they skip.)
                #[cfg(test)]
                assert!(j < block.len(), "a token past the line's end");
                // SAFETY: `j` is in the line's rest: a token's bit is set only for a byte
                // of the line (the bytes a shifted or padded block adds are whitespace).
                let c = unsafe { *block.get_unchecked(j) };
                expect = match c {
                    b'"' => match expect {
                        Expect::KeyOrEnd | Expect::Key => Expect::Colon,
                        Expect::Value | Expect::ValueOrEnd => Expect::Next,
                        _ => return None,
                    },
                    b':' if expect == Expect::Colon => Expect::Value,
                    b',' if expect == Expect::Next => {
                        if in_list {
                            Expect::Value
                        } else {
                            Expect::Key
                        }
                    }
                    b'{' | b'[' if matches!(expect, Expect::Value | Expect::ValueOrEnd) => {
                        if self.depth + 1 >= MAX_DEPTH {
                            return None;
                        }
                        self.depth += 1;
                        in_list = c == b'[';
                        lists[open % lists.len()] = in_list;
                        open += 1;
                        if in_list { Expect::ValueOrEnd } else { Expect::KeyOrEnd }
                    }
                    b'}' | b']'
                        if (c == b']') == in_list
                            && matches!(expect, Expect::Next | Expect::KeyOrEnd | Expect::ValueOrEnd) =>
                    {
                        // (`KeyOrEnd` follows only `{`, `ValueOrEnd` only `[`.)
                        open -= 1;
                        self.depth -= 1;
                        if open == 0 {
                            self.pos = p + 1;
                            return Some(());
                        }
                        in_list = lists[(open - 1) % lists.len()];
                        Expect::Next
                    }
                    b'-' | b'0'..=b'9' | b't' | b'f' | b'n' if matches!(expect, Expect::Value | Expect::ValueOrEnd) => {
                        let end = match c {
                            b't' => literal_end(b, p, b"true")?,
                            b'f' => literal_end(b, p, b"false")?,
                            b'n' => literal_end(b, p, b"null")?,
                            _ => match plain_number_end(b, p) {
                                Some(end) => end,
                                None => {
                                    self.pos = p;
                                    self.number().ok()?;
                                    self.pos
                                }
                            },
                        };
                        // The run ends with the value (`1x`, `truex` are errors).
                        if b.get(end).is_some_and(|&n| !matches!(n, b' ' | b'\t' | b'\n' | b'\r' | b',' | b']' | b'}'))
                        {
                            return None;
                        }
                        Expect::Next
                    }
                    _ => return None,
                };
            }
            block_at += 64;
        }
        None
    }
}

/// `\n`, `\"` and the other escapes of one letter after the backslash.
#[inline]
fn is_one_letter_escape(c: &u8) -> bool {
    matches!(c, b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't')
}

/// The end of `word` at `p`, if it is there.
#[inline]
fn literal_end(b: &[u8], p: usize, word: &[u8]) -> Option<usize> {
    b[p..].starts_with(word).then_some(p + word.len())
}

/// The end of the number at `p` when it is plainly valid: no exponent and short
/// enough that its value is finite, so it need not be read to be skipped. `None`
/// leaves the rest (exponents, errors) to [`Scanner::number`].
#[inline]
fn plain_number_end(b: &[u8], p: usize) -> Option<usize> {
    let first = p + usize::from(b[p] == b'-');
    let mut i = first;
    while let Some(b'0'..=b'9') = b.get(i) {
        i += 1;
    }
    // One digit at least, no leading zero, and at most 300 digits before the point
    // (below 1e300, far from the largest f64, about 1.8e308).
    if i == first || (i - first > 1 && b[first] == b'0') || i - first > 300 {
        return None;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        let digits = i;
        while let Some(b'0'..=b'9') = b.get(i) {
            i += 1;
        }
        if i == digits {
            return None;
        }
    }
    (!matches!(b.get(i), Some(b'e' | b'E'))).then_some(i)
}

/// A valid escape [`Scanner::skip_container`] passes over.
enum Escape {
    /// A one-letter escape, or `\u` and four hex digits naming no surrogate.
    One,
    /// `\u` naming a high surrogate, then `\u` naming a low one.
    Pair,
}

/// The escape starting with the backslash at `at`, if valid (anything else is left
/// to [`Scanner::escape`] to name).
#[inline]
fn escape_at(b: &[u8], at: usize) -> Option<Escape> {
    match b.get(at + 1)? {
        c if is_one_letter_escape(c) => Some(Escape::One),
        b'u' => match hex4(b, at + 2)? {
            0xD800..=0xDBFF => {
                if b.get(at + 6..at + 8)? != b"\\u" {
                    return None;
                }
                matches!(hex4(b, at + 8)?, 0xDC00..=0xDFFF).then_some(Escape::Pair)
            }
            0xDC00..=0xDFFF => None,
            _ => Some(Escape::One),
        },
        _ => None,
    }
}

/// Four hex digits at `at`.
#[inline]
fn hex4(b: &[u8], at: usize) -> Option<u16> {
    let digits = b.get(at..at + 4)?;
    let mut n = 0;
    for &d in digits {
        n = n * 16 + char::from(d).to_digit(16)? as u16;
    }
    Some(n)
}

/// The value of a run of ASCII digits, and whether it overflowed a u64.
fn checked_digits(digits: &[u8]) -> (u64, bool) {
    let mut value = 0u64;
    for &d in digits {
        match value.checked_mul(10).and_then(|n| n.checked_add(u64::from(d - b'0'))) {
            Some(n) => value = n,
            None => return (value, true),
        }
    }
    (value, false)
}

const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

enum Number {
    U64(u64),
    I64(i64),
    F64(f64),
}

/// The index of the first `"`, `\` or control character at or after `from` (or the length).
#[inline]
fn find_special(b: &[u8], from: usize) -> usize {
    let mut i = from;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        };
        // SAFETY: SSE2 is part of every x86-64 CPU, and each 16-byte load is inside `b`
        // (checked by the loop's condition); the load may be unaligned.
        unsafe {
            let (quote, backslash, control) =
                (_mm_set1_epi8(b'"' as i8), _mm_set1_epi8(b'\\' as i8), _mm_set1_epi8(0x1f));
            while i + 16 <= b.len() {
                let v = _mm_loadu_si128(b.as_ptr().add(i).cast::<__m128i>());
                let hit = _mm_or_si128(
                    _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                    // v ≤ 0x1f, unsigned: the smaller of the two is v itself.
                    _mm_cmpeq_epi8(_mm_min_epu8(v, control), v),
                );
                let mask = _mm_movemask_epi8(hit) as u32;
                if mask != 0 {
                    return i + mask.trailing_zeros() as usize;
                }
                i += 16;
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        const ONES: u64 = u64::from_ne_bytes([1; 8]);
        const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
        let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
        while i + 8 <= b.len() {
            let x = u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
            let hit = zero(x ^ (ONES * u64::from(b'"')))
                | zero(x ^ (ONES * u64::from(b'\\')))
                | (x.wrapping_sub(ONES * 0x20) & !x & HIGH);
            if hit != 0 {
                // The lowest flagged byte is a true hit (borrows only run upwards).
                return i + (hit.trailing_zeros() / 8) as usize;
            }
            i += 8;
        }
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            return i;
        }
        i += 1;
    }
    i
}

impl<'de> de::Deserializer<'de> for &mut Scanner<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let r = match self.peek() {
            None => return Err(self.eof("EOF while parsing a value")),
            Some(b'"') => {
                self.pos += 1;
                match self.string()? {
                    Cow::Borrowed(s) => visitor.visit_borrowed_str(s),
                    Cow::Owned(s) => visitor.visit_string(s),
                }
            }
            Some(b'{') => {
                self.enter()?;
                self.pos += 1;
                let v = visitor.visit_map(Members { de: &mut *self, first: true });
                self.depth -= 1;
                let v = v.map_err(|e| self.placed(e))?;
                return match self.peek() {
                    Some(b'}') => {
                        self.pos += 1;
                        Ok(v)
                    }
                    None => Err(self.eof("EOF while parsing an object")),
                    Some(_) => Err(self.syntax("trailing characters")),
                };
            }
            Some(b'[') => {
                self.enter()?;
                self.pos += 1;
                let v = visitor.visit_seq(Elements { de: &mut *self, first: true });
                self.depth -= 1;
                let v = v.map_err(|e| self.placed(e))?;
                return match self.peek() {
                    Some(b']') => {
                        self.pos += 1;
                        Ok(v)
                    }
                    None => Err(self.eof("EOF while parsing a list")),
                    Some(_) => Err(self.syntax("trailing characters")),
                };
            }
            Some(b'-' | b'0'..=b'9') => match self.number()? {
                Number::U64(n) => visitor.visit_u64(n),
                Number::I64(n) => visitor.visit_i64(n),
                Number::F64(f) => visitor.visit_f64(f),
            },
            Some(b't') => {
                self.literal(b"true")?;
                visitor.visit_bool(true)
            }
            Some(b'f') => {
                self.literal(b"false")?;
                visitor.visit_bool(false)
            }
            Some(b'n') => {
                self.literal(b"null")?;
                visitor.visit_unit()
            }
            Some(_) => return Err(self.syntax("expected value")),
        };
        r.map_err(|e| self.placed(e))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.peek() == Some(b'n') {
            self.literal(b"null")?;
            return visitor.visit_none().map_err(|e| self.placed(e));
        }
        visitor.visit_some(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.skip_fast()?;
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct seq tuple tuple_struct map struct enum identifier
    }
}

/// An object's members, after its `{`.
struct Members<'a, 'de> {
    de: &'a mut Scanner<'de>,
    first: bool,
}

impl<'de> MapAccess<'de> for Members<'_, 'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        let de = &mut *self.de;
        let mut c = de.peek();
        // Compact JSON's `,"` between members, taken at once.
        if c == Some(b',') && !self.first && de.bytes().get(de.pos + 1) == Some(&b'"') {
            de.pos += 1;
            c = Some(b'"');
        } else if std::mem::take(&mut self.first) {
            if c == Some(b'}') {
                return Ok(None);
            }
        } else {
            match c {
                Some(b',') => {
                    de.pos += 1;
                    c = de.peek();
                    if c == Some(b'}') {
                        return Err(de.syntax("trailing comma"));
                    }
                }
                Some(b'}') => return Ok(None),
                None => return Err(de.eof("EOF while parsing an object")),
                Some(_) => return Err(de.syntax("expected `,` or `}`")),
            }
        }
        match c {
            Some(b'"') => {
                de.pos += 1;
                seed.deserialize(MemberKey { de: &mut *de }).map(Some).map_err(|e| de.placed(e))
            }
            None => Err(de.eof("EOF while parsing an object")),
            Some(_) => Err(de.syntax("key must be a string")),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        self.de.colon()?;
        seed.deserialize(&mut *self.de)
    }
}

/// A list's elements, after its `[`.
struct Elements<'a, 'de> {
    de: &'a mut Scanner<'de>,
    first: bool,
}

impl<'de> SeqAccess<'de> for Elements<'_, 'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        let de = &mut *self.de;
        let c = de.peek();
        if std::mem::take(&mut self.first) {
            if c == Some(b']') {
                return Ok(None);
            }
        } else {
            match c {
                Some(b',') => {
                    de.pos += 1;
                    if de.peek() == Some(b']') {
                        return Err(de.syntax("trailing comma"));
                    }
                }
                Some(b']') => return Ok(None),
                None => return Err(de.eof("EOF while parsing a list")),
                Some(_) => return Err(de.syntax("expected `,` or `]`")),
            }
        }
        seed.deserialize(&mut *de).map(Some)
    }
}

/// An object's key, after its opening quote: always a string.
struct MemberKey<'a, 'de> {
    de: &'a mut Scanner<'de>,
}

impl<'de> de::Deserializer<'de> for MemberKey<'_, 'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.de.string()? {
            Cow::Borrowed(s) => visitor.visit_borrowed_str(s),
            Cow::Owned(s) => visitor.visit_string(s),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.de.skip_string()?;
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde::de::IgnoredAny;

    use super::*;
    use crate::synth::Rng;

    /// The value the scanner reads, as serde_json's own `Value`.
    fn scanned(text: &str) -> Result<serde_json::Value, Error> {
        let mut de = Scanner::new(text);
        let v = serde_json::Value::deserialize(&mut de)?;
        de.end().map(|()| v)
    }

    /// Whether the scanner accepts `text` when it skips it.
    fn skipped(text: &str) -> Result<(), Error> {
        let mut de = Scanner::new(text);
        IgnoredAny::deserialize(&mut de)?;
        de.end()
    }

    /// The scanner reads what serde_json reads and rejects what it rejects, whether
    /// the value is built or skipped.
    fn agrees(text: &str) {
        let want = serde_json::from_str::<serde_json::Value>(text);
        let got = scanned(text);
        match (&want, &got) {
            (Ok(w), Ok(g)) => assert_eq!(w, g, "{text:?}"),
            (Err(_), Err(e)) => assert!(e.is_syntax(), "{text:?}: {e}"),
            _ => panic!("{text:?}: serde_json {want:?}, scanner {got:?}"),
        }
        assert_eq!(want.is_ok(), skipped(text).is_ok(), "{text:?} skipped: {:?}", skipped(text));
    }

    #[test]
    fn reads_and_rejects_what_serde_json_does() {
        let cases = [
            r#"{"a":1,"b":[true,false,null],"c":{"d":"e"}}"#,
            r#" { "a" : -1.5e3 , "b" : "x\"y\\z\/\b\f\n\r\t" } "#,
            r#""\u00e9\ud83d\ude42 日本""#,
            r#""\ud83d""#,
            r#""\ud83dx""#,
            r#""\ude42""#,
            r#""\ud83d\u0041""#,
            r#""\x""#,
            r#""\u12g4""#,
            "\"tab\there\"",
            "\"nul\u{0}\"",
            r#"18446744073709551615"#,
            r#"18446744073709551616"#,
            r#"-9223372036854775808"#,
            r#"-9223372036854775809"#,
            "-0",
            "0",
            "-0.0",
            "01",
            "1.",
            "1.e5",
            ".5",
            "1e",
            "1e+",
            "1E-7",
            "1e400",
            "-1e400",
            "1e-400",
            "123456789012345678901234567890",
            "[1,]",
            r#"{"a":1,}"#,
            "[1 2]",
            r#"{"a" 1}"#,
            r#"{"a":1 "b":2}"#,
            r#"{1:2}"#,
            "[",
            "{",
            r#"{"a""#,
            r#"{"a":"#,
            r#""abc"#,
            "tru",
            "trux",
            "nul",
            "nulll",
            "[] x",
            "",
            "   ",
            "[[],{},[{}]]",
            "\"\\",
            "\"\\u12",
        ];
        for c in cases {
            agrees(c);
        }
    }

    #[test]
    fn random_text_is_read_as_serde_json_reads_it() {
        const ALPHABET: &[&str] = &[
            "{", "}", "[", "]", "\"", ":", ",", " ", "0", "1", "9", "-", "+", ".", "e", "E", "t", "r", "u", "e", "f",
            "a", "l", "s", "n", "\\", "\\u", "d83d", "de42", "00e9", "\u{1}", "\t", "é", "日", "\"k\":", "true",
            "null", "1.5", "\"s\"",
        ];
        let mut rng = Rng::new(7);
        let mut text = String::new();
        for _ in 0..200_000 {
            text.clear();
            for _ in 0..rng.below(24) {
                text.push_str(ALPHABET[rng.below(ALPHABET.len() as u64) as usize]);
            }
            agrees(&text);
        }
    }

    #[test]
    fn escaped_bytes_are_found_across_blocks_as_one_by_one() {
        let mut rng = Rng::new(13);
        for _ in 0..20_000 {
            // Four blocks, backslashes dense enough for long runs across block edges.
            let density = 1 + rng.below(4);
            let blocks: Vec<u64> = (0..4).map(|_| (0..density).fold(!0, |m, _| m & rng.next_u64())).collect();
            let (mut carry, mut escape_next) = (0, false);
            for &backslash in &blocks {
                let mut want = 0u64;
                for i in 0..64 {
                    if escape_next {
                        want |= 1 << i;
                        escape_next = false;
                    } else {
                        escape_next = backslash & (1 << i) != 0;
                    }
                }
                assert_eq!(blocks::escaped(backslash, &mut carry), want, "{blocks:x?}");
                assert_eq!(carry, u64::from(escape_next), "{blocks:x?}");
            }
        }
    }

    #[test]
    fn blocks_are_classified_alike_by_every_path() {
        let expected = |block: &[u8; 64]| {
            let mask = |f: fn(u8) -> bool| (0..64).filter(|&i| f(block[i])).fold(0u64, |m, i| m | 1 << i);
            (
                mask(|c| c == b'"'),
                mask(|c| c == b'\\'),
                mask(|c| c < 0x20),
                mask(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r')),
                mask(|c| matches!(c, b'{' | b'}' | b'[' | b']' | b':' | b',')),
            )
        };
        let tuple = |m: blocks::Masks| (m.quote, m.backslash, m.control, m.space, m.structural);
        let mut rng = Rng::new(11);
        // Every byte value at every position, then random blocks.
        let mut blocks: Vec<[u8; 64]> = (0..=255u8).map(|c| std::array::from_fn(|i| c.wrapping_add(i as u8))).collect();
        blocks.extend((0..2_000).map(|_| std::array::from_fn(|_| rng.below(256) as u8)));
        for block in &blocks {
            assert_eq!(tuple(blocks::classify(block)), expected(block), "{block:?}");
            #[cfg(target_arch = "x86_64")]
            if blocks::has_avx2() {
                assert_eq!(tuple(blocks::classify_with::<true>(block)), expected(block), "{block:?}");
            }
            // Read 1..63 bytes early, as the line's last block is.
            let shift = 1 + rng.below(63) as usize;
            let mut late = [b' '; 64];
            late[..64 - shift].copy_from_slice(&block[shift..]);
            assert_eq!(tuple(blocks::classify(block).shifted(shift)), expected(&late), "{block:?} {shift}");
        }
        for _ in 0..10_000 {
            let x = rng.next_u64();
            let slow = (0..64).fold(0u64, |m, i| m | (u64::from((x & (u64::MAX >> (63 - i))).count_ones() % 2) << i));
            assert_eq!(blocks::prefix_xor(x), slow);
            #[cfg(target_arch = "x86_64")]
            if blocks::has_avx2() {
                assert_eq!(blocks::prefix_xor_with::<true>(x), slow);
            }
        }
    }

    /// Skips the value at the start of `text` the fast way and the plain way: the
    /// same end, or the same error at the same column.
    fn skips_alike(text: &str) -> bool {
        let mut fast = Scanner::new(text);
        let mut slow = Scanner::new(text);
        let (f, s) = (fast.skip_fast(), slow.skip());
        match (&f, &s) {
            (Ok(()), Ok(())) => assert_eq!((fast.pos, fast.depth), (slow.pos, slow.depth), "{text:?}"),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{text:?}"),
            _ => panic!("{text:?}: fast {f:?}, plain {s:?}"),
        }
        // Whether the fast way vouched for it alone.
        let mut plain = Scanner::new(text);
        plain.peek();
        let vouched = plain.skip_container_in::<false>().map(|()| plain.pos);
        #[cfg(target_arch = "x86_64")]
        if blocks::has_avx2() {
            let mut wide = Scanner::new(text);
            wide.peek();
            // SAFETY: the CPU has what the function is compiled for.
            let by_avx2 = unsafe { wide.skip_container_avx2() }.map(|()| wide.pos);
            assert_eq!(by_avx2, vouched, "{text:?}: the AVX2 and SSE2 block skips differ");
        }
        if let Some(end) = vouched {
            assert_eq!(end, slow.pos, "{text:?}");
        }
        vouched.is_some()
    }

    #[test]
    fn skipping_by_blocks_ends_and_fails_where_skipping_by_bytes_does() {
        // A gateway's body: strings with escapes, nested objects and lists, numbers,
        // literals, across 64-byte blocks.
        let body = r#"[{"role":"system","content":"You are Acme's assistant.\nRules:\n1. Quote \"[n]\".\\ 2. Prices in EUR (€) \u00e9 \ud83d\ude42."},{"role":"user","content":"日本語で要約してください"}, {"x" : [1, -2.5e3, 0, true, false, null, {}, [], [[]]], "y":{"z":"\/\b\f\r\t"}}]"#;
        assert!(skips_alike(body), "the fast way reads a plain body");
        // Numbers long enough to be out of range, and just short of it: the block skip
        // passes over plain numbers without reading them.
        for digits in [300, 301, 308, 309, 310, 400] {
            for number in [
                format!("1{}", "0".repeat(digits - 1)),
                format!("-{}.5", "9".repeat(digits)),
                format!("0.{}", "1".repeat(digits)),
            ] {
                skips_alike(&format!(r#"{{"n":[{number},1]}}"#));
            }
        }
        // Every cut of it, and every byte replaced by each of a few that break JSON.
        for cut in 0..body.len() {
            if body.is_char_boundary(cut) {
                skips_alike(&body[..cut]);
            }
        }
        for at in 0..body.len() {
            if !body.is_char_boundary(at) || !body.is_char_boundary(at + 1) {
                continue;
            }
            for with in ["\"", "\\", "\u{1}", " ", ",", "]", "}", "{", "[", ":", "x", "0", "\\u", "\\ud83d"] {
                let text = format!("{}{with}{}", &body[..at], &body[at + 1..]);
                skips_alike(&text);
            }
        }
        // Random texts long enough to span several blocks.
        const PIECES: &[&str] = &[
            "{",
            "}",
            "[",
            "]",
            "\"",
            ":",
            ",",
            " ",
            "\n",
            "0",
            "12",
            "-",
            ".",
            "e",
            "true",
            "false",
            "null",
            "tru",
            "\\",
            "\\\\",
            "\\\"",
            "\\n",
            "\\u00e9",
            "\\ud83d\\ude42",
            "\\ude42",
            "\u{1}",
            "é",
            "日本",
            "\"k\":",
            "\"a long string value that runs past a block of sixty-four bytes\"",
            "[1,2,3]",
            "{\"a\":{}}",
        ];
        let mut rng = Rng::new(23);
        let mut text = String::new();
        let mut vouched = 0;
        for _ in 0..100_000 {
            text.clear();
            text.push(if rng.chance(0.5) { '{' } else { '[' });
            for _ in 0..rng.below(60) {
                text.push_str(PIECES[rng.below(PIECES.len() as u64) as usize]);
            }
            vouched += usize::from(skips_alike(&text));
        }
        // Texts that are valid JSON, made by closing random nestings.
        for _ in 0..20_000 {
            text.clear();
            let mut stack = Vec::new();
            let mut want_value = true;
            for _ in 0..rng.below(200) {
                if want_value {
                    match rng.below(5) {
                        0 => {
                            text.push('[');
                            stack.push(']');
                            continue;
                        }
                        1 => {
                            text.push_str("{\"k\\\"ey\": ");
                            stack.push('}');
                            continue;
                        }
                        _ => text
                            .push_str(["\"v\\n\\u00e9 日\"", "-12.5e-3", "true", "null", "0"][rng.below(5) as usize]),
                    }
                    want_value = false;
                } else if let Some(&close) = stack.last() {
                    if rng.chance(0.3) {
                        text.push(close);
                        stack.pop();
                    } else {
                        text.push_str(if close == ']' { ", " } else { ",\n\"k\":" });
                        want_value = true;
                    }
                } else {
                    break;
                }
            }
            if text.is_empty() || want_value && !stack.is_empty() {
                continue;
            }
            while let Some(close) = stack.pop() {
                text.push(close);
            }
            if text.starts_with(['[', '{']) {
                assert!(skips_alike(&text), "valid JSON the fast way refused: {text:?}");
                vouched += 1;
            }
        }
        assert!(vouched > 5_000, "the fast way vouched for {vouched} texts");
    }

    #[test]
    fn strings_long_and_short_end_where_they_end() {
        // Every length and every position of the byte that ends the scan, across the
        // 16-byte steps.
        for len in 0..70 {
            for special in ["\"", "\\n", "\u{1f}", "é"] {
                for at in 0..=len {
                    let body: String = (0..len).map(|i| if i == at { special } else { "x" }).collect();
                    agrees(&format!("{{\"k\":\"{body}\",\"n\":1}}"));
                    agrees(&format!("\"{body}"));
                }
            }
        }
    }

    #[test]
    fn numbers_are_read_exactly_as_the_standard_library_reads_them() {
        let mut rng = Rng::new(11);
        for _ in 0..200_000 {
            let digits = 1 + rng.below(24) as usize;
            let mut text: String = (0..digits).map(|_| char::from(b'0' + rng.below(10) as u8)).collect();
            text = text.trim_start_matches('0').to_string();
            if text.is_empty() {
                text.push('0');
            }
            if rng.chance(0.7) {
                let at = rng.below(text.len() as u64) as usize + 1;
                text.insert(at.min(text.len()), '.');
                if text.ends_with('.') {
                    text.push('5');
                }
            }
            if rng.chance(0.3) {
                text.push_str(&format!("e{}", rng.below(60) as i64 - 30));
            }
            if rng.chance(0.3) {
                text.insert(0, '-');
            }
            let want: f64 = text.parse().unwrap();
            let got = match Scanner::new(&text).number().unwrap() {
                Number::F64(f) => f,
                Number::U64(n) => n as f64,
                Number::I64(n) => n as f64,
            };
            assert_eq!(got.to_bits(), want.to_bits(), "{text}");
        }
    }

    /// The one-pass reading of plain numbers and the full one meet at 19 digits, at the
    /// range of `i64` and at 2^53: serde_json's kinds (u64, i64, f64) and values on both sides.
    #[test]
    fn numbers_on_either_side_of_the_plain_ones_are_serde_jsons() {
        for text in [
            "0",
            "-0",
            "-0.0",
            "0.0",
            "5",
            "-5",
            "01",
            "-01",
            "1.",
            "-",
            "-.5",
            ".5",
            "1.5",
            "-1.5",
            "0.1",
            "9999999999999999999",
            "10000000000000000000",
            "-9999999999999999999",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775807",
            "-9223372036854775808",
            "-9223372036854775809",
            "123456789012345678.9",
            "1234567890123456789.5",
            "9007199254740992.5",
            "900719925474099.3",
            "1e5",
            "-1E-5",
            "1.5e3",
            "2.5E+2",
            "1.0e",
            "12345678901234567.8e-3",
        ] {
            agrees(text);
            agrees(&format!("[{text},{text}]"));
            agrees(&format!(r#"{{"n":{text}}}"#));
        }
    }

    /// Grammar errors a block skip must find, and valid look-alikes, at every offset from
    /// a block's edge: each error's tokens are split across two blocks in every way, as
    /// the state a block skip carries from one block to the next is where it goes wrong.
    #[test]
    fn the_grammar_is_checked_at_every_place_in_a_block() {
        let bad = [
            r#""a","b":1"#,
            r#""a":"b":1"#,
            r#""a":1:2"#,
            r#""a""#,
            r#""a":"#,
            r#"1:2"#,
            r#"[]:1"#,
            r#"{}:1"#,
            r#""a":1,"#,
            r#""a":"b""c""#,
            r#""a":"b"1"#,
            r#""a":1"b""#,
            r#""a":1 2"#,
            r#""a":[1 2]"#,
            r#""a":["x":1]"#,
            r#""a":[1,]"#,
            r#""a":[,1]"#,
            r#""a":{"b"}"#,
            r#""a":{"b":}"#,
            r#""a":{"b":1,}"#,
            r#""a":{,}"#,
            r#""a":[}"#,
            r#""a":{]"#,
            r#""a":}"#,
            r#""a":truex"#,
            r#""a":-"#,
            r#""a":[]{}"#,
            r#""a":"x"[]"#,
            r#""a":{}"b""#,
        ];
        let good = [
            r#""a":"b""#,
            r#""a":"b","c":[1,"d",{},[]]"#,
            r#""a":{"b":{"c":[null,true,false,-0.5e1]}}"#,
            r#""a":{},"b":[],"c":"""#,
        ];
        let cases = bad.iter().map(|m| (m, false)).chain(good.iter().map(|m| (m, true)));
        for (member, valid) in cases {
            // Compact, and with whitespace around each `:` and `,`.
            let spaced = member.replace(':', " : ").replace(',', "\n,\t");
            for member in [member.to_string(), spaced] {
                for pad in 0..=66 {
                    let text = format!(r#"{{"pad":"{}",{member}}}"#, "x".repeat(pad));
                    assert_eq!(skipped(&text).is_ok(), valid, "{text}");
                    assert_eq!(skips_alike(&text), valid, "the block skip on {text}");
                }
            }
        }
    }

    #[test]
    fn nesting_is_limited_whether_read_or_skipped() {
        for depth in [127, 128, 129, 100_000] {
            let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            agrees(&text);
        }
        let deep = format!("{{\"skip\":{}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(skipped(&deep).is_err());
    }

    #[test]
    fn errors_say_what_and_where() {
        let e = scanned(r#"{"a":tru}"#).unwrap_err();
        assert_eq!(e.to_string(), "expected ident (column 9)");
        assert!(e.is_syntax());
        let e = scanned(r#"{"a":1"#).unwrap_err();
        assert!(e.to_string().starts_with("EOF while parsing an object"), "{e}");
        let e = u64::deserialize(&mut Scanner::new("-3")).unwrap_err();
        assert!(!e.is_syntax() && e.to_string().contains("column 2"), "{e}");
        // A bad `\u` escape is placed at its first byte that is not a hex digit,
        // whether the string is read or skipped (in an object, by the block skip's
        // fallback).
        for (text, column) in [(r#""\u12g4""#, 6), (r#""\uzzzz""#, 4), (r#"{"k":["x\u00e9\u0g00"]}"#, 18)] {
            let want = format!("invalid escape (column {column})");
            assert_eq!(scanned(text).unwrap_err().to_string(), want, "{text}");
            assert_eq!(skipped(text).unwrap_err().to_string(), want, "{text}");
        }
    }
}
