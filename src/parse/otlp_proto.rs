//! OTLP trace exports in protobuf (what OTLP/HTTP and OTLP/gRPC exporters send by
//! default), rewritten as one line of OTLP/JSON, so that a single set of rules
//! ([`super::otel`]) reads spans whether they came from a file or a receiver.
//!
//! Only the wire format is read here, from the field numbers of
//! `opentelemetry/proto/collector/trace/v1/trace_service.proto` and the `trace`,
//! `resource` and `common` protos it uses: ids become lowercase hex, 64-bit integers
//! decimal strings, enums numbers, bytes base64, as the OTLP/JSON encoding says. Fields
//! tokentop never reads (links, scope, dropped counts, trace state) are passed over;
//! unknown fields are skipped by their wire type, so newer exporters still work.
//!
//! A span that cannot be decoded (cut short, a wire type that does not fit its field,
//! nesting deeper than [`MAX_DEPTH`]) is left out and counted as rejected, with the
//! first reason, for the receiver's partial-success answer; the other spans of the
//! export are kept. An export whose framing itself is broken is an error.

use std::fmt::Write as _;

use thiserror::Error;

/// Nesting of attribute values (arrays and key-value lists) past which a span is rejected.
pub const MAX_DEPTH: usize = 32;

/// Why bytes are not an OTLP trace export.
#[derive(Debug, Clone, Error, PartialEq)]
#[error("not an OTLP protobuf trace export: {what} at byte {at}")]
pub struct DecodeError {
    pub what: &'static str,
    pub at: usize,
}

/// What became of an export's spans.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Transcoded {
    /// Spans written to the line.
    pub spans: u64,
    /// Spans left out because they could not be decoded.
    pub rejected: u64,
    /// Why the first rejected span was left out.
    pub first_rejection: Option<String>,
}

/// Past this many bytes, a line ends after the span being written and the next
/// starts with the same resource: lines stay well under [`super::MAX_LINE_BYTES`]
/// whatever the size of an export.
pub const SPLIT_BYTES: usize = 256 << 10;

/// Appends `body`, an `ExportTraceServiceRequest`, to `out` as lines of OTLP/JSON
/// (`{"resourceSpans":[…]}` and a newline; one line unless it grows past
/// [`SPLIT_BYTES`]). On error `out` is as it was.
pub fn export_to_json(body: &[u8], out: &mut Vec<u8>) -> Result<Transcoded, DecodeError> {
    let start = out.len();
    let mut t = Transcoded::default();
    let r = write_export(body, out, &mut Split { line_start: start, resource: Vec::new() }, &mut t);
    if r.is_err() {
        out.truncate(start);
    }
    r.map(|()| t)
}

/// Where the current line starts, and how a line continuing the current resource begins.
struct Split {
    line_start: usize,
    resource: Vec<u8>,
}

impl Split {
    /// Ends the line inside a scope's spans and starts the next one there.
    fn maybe(&mut self, out: &mut Vec<u8>, first: &mut bool) {
        if out.len() - self.line_start > SPLIT_BYTES {
            out.extend_from_slice(b"]}]}]}\n");
            self.line_start = out.len();
            out.extend_from_slice(b"{\"resourceSpans\":[");
            out.extend_from_slice(&self.resource);
            out.extend_from_slice(b"{\"spans\":[");
            *first = true;
        }
    }
}

fn write_export(body: &[u8], out: &mut Vec<u8>, split: &mut Split, t: &mut Transcoded) -> Result<(), DecodeError> {
    out.extend_from_slice(b"{\"resourceSpans\":[");
    write_each(body, 0, 1, out, |m, at, out| write_resource_spans(m, at, out, split, t))?;
    out.extend_from_slice(b"]}\n");
    Ok(())
}

fn write_resource_spans(
    buf: &[u8],
    base: usize,
    out: &mut Vec<u8>,
    split: &mut Split,
    t: &mut Transcoded,
) -> Result<(), DecodeError> {
    let start = out.len();
    out.push(b'{');
    let mut r = Reader::new(buf, base);
    while let Some((field, v)) = r.next()? {
        if field == 1 {
            let (bytes, at) = v.message(r.pos)?;
            out.extend_from_slice(b"\"resource\":{\"attributes\":[");
            write_each(bytes, at, 1, out, |kv, at, out| write_key_value(kv, at, out, 0))?;
            out.extend_from_slice(b"]},");
        }
    }
    out.extend_from_slice(b"\"scopeSpans\":[");
    split.resource.clear();
    split.resource.extend_from_slice(&out[start..]);
    write_each(buf, base, 2, out, |m, at, out| write_scope_spans(m, at, out, split, t))?;
    out.extend_from_slice(b"]}");
    Ok(())
}

fn write_scope_spans(
    buf: &[u8],
    base: usize,
    out: &mut Vec<u8>,
    split: &mut Split,
    t: &mut Transcoded,
) -> Result<(), DecodeError> {
    out.extend_from_slice(b"{\"spans\":[");
    let mut first = true;
    let mut r = Reader::new(buf, base);
    while let Some((field, v)) = r.next()? {
        if field == 2 {
            let (bytes, at) = v.message(r.pos)?;
            let mark = (out.len(), first);
            comma(out, &mut first);
            match write_span(bytes, at, out) {
                Ok(()) => {
                    t.spans += 1;
                    split.maybe(out, &mut first);
                }
                Err(e) => {
                    out.truncate(mark.0);
                    first = mark.1;
                    t.rejected += 1;
                    t.first_rejection
                        .get_or_insert_with(|| format!("a span could not be decoded: {} at byte {}", e.what, e.at));
                }
            }
        }
    }
    out.extend_from_slice(b"]}");
    Ok(())
}

fn write_span(buf: &[u8], base: usize, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    out.push(b'{');
    let mut r = Reader::new(buf, base);
    while let Some((field, v)) = r.next()? {
        let at = r.pos;
        match field {
            1 => write_hex_field(out, "traceId", v.bytes(at)?),
            2 => write_hex_field(out, "spanId", v.bytes(at)?),
            4 => write_hex_field(out, "parentSpanId", v.bytes(at)?),
            5 => {
                out.extend_from_slice(b"\"name\":");
                write_str(out, v.bytes(at)?);
                out.push(b',');
            }
            6 => write_number_field(out, "kind", v.varint(at)?),
            7 => write_u64_string_field(out, "startTimeUnixNano", v.fixed64(at)?),
            8 => write_u64_string_field(out, "endTimeUnixNano", v.fixed64(at)?),
            15 => {
                let (status, at) = v.message(at)?;
                write_status(status, at, out)?;
            }
            _ => {}
        }
    }
    out.extend_from_slice(b"\"attributes\":[");
    write_each(buf, base, 9, out, |kv, at, out| write_key_value(kv, at, out, 0))?;
    out.extend_from_slice(b"],\"events\":[");
    write_each(buf, base, 11, out, write_event)?;
    out.extend_from_slice(b"]}");
    Ok(())
}

fn write_status(buf: &[u8], base: usize, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    let (mut code, mut message) = (0, &b""[..]);
    let mut r = Reader::new(buf, base);
    while let Some((field, v)) = r.next()? {
        match field {
            2 => message = v.bytes(r.pos)?,
            3 => code = v.varint(r.pos)?,
            _ => {}
        }
    }
    write!(Fmt(out), "\"status\":{{\"code\":{code},\"message\":").ok();
    write_str(out, message);
    out.extend_from_slice(b"},");
    Ok(())
}

fn write_event(buf: &[u8], base: usize, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    out.push(b'{');
    let mut r = Reader::new(buf, base);
    while let Some((field, v)) = r.next()? {
        match field {
            1 => write_u64_string_field(out, "timeUnixNano", v.fixed64(r.pos)?),
            2 => {
                out.extend_from_slice(b"\"name\":");
                write_str(out, v.bytes(r.pos)?);
                out.push(b',');
            }
            _ => {}
        }
    }
    out.extend_from_slice(b"\"attributes\":[");
    write_each(buf, base, 3, out, |kv, at, out| write_key_value(kv, at, out, 0))?;
    out.extend_from_slice(b"]}");
    Ok(())
}

/// `KeyValue { key = 1; value = 2 }`.
fn write_key_value(buf: &[u8], base: usize, out: &mut Vec<u8>, depth: usize) -> Result<(), DecodeError> {
    let (mut key, mut value) = (&b""[..], None);
    let mut r = Reader::new(buf, base);
    while let Some((field, v)) = r.next()? {
        match field {
            1 => key = v.bytes(r.pos)?,
            2 => value = Some(v.message(r.pos)?),
            _ => {}
        }
    }
    out.extend_from_slice(b"{\"key\":");
    write_str(out, key);
    out.extend_from_slice(b",\"value\":");
    match value {
        Some((bytes, at)) => write_any_value(bytes, at, out, depth + 1)?,
        None => out.extend_from_slice(b"{}"),
    }
    out.push(b'}');
    Ok(())
}

/// `AnyValue`: one of string (1), bool (2), int (3), double (4), array (5), key-value
/// list (6), bytes (7); the last one present wins, as protobuf's `oneof` says.
fn write_any_value(buf: &[u8], base: usize, out: &mut Vec<u8>, depth: usize) -> Result<(), DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError { what: "attribute values nested too deep", at: base });
    }
    let mut last = None;
    let mut r = Reader::new(buf, base);
    while let Some((field, v)) = r.next()? {
        if (1..=7).contains(&field) {
            last = Some((field, v, r.pos));
        }
    }
    let Some((field, v, at)) = last else {
        out.extend_from_slice(b"{}");
        return Ok(());
    };
    match field {
        1 => {
            out.extend_from_slice(b"{\"stringValue\":");
            write_str(out, v.bytes(at)?);
            out.push(b'}');
        }
        2 => write!(Fmt(out), "{{\"boolValue\":{}}}", v.varint(at)? != 0).unwrap_or(()),
        3 => write!(Fmt(out), "{{\"intValue\":\"{}\"}}", v.varint(at)? as i64).unwrap_or(()),
        4 => {
            let d = f64::from_bits(v.fixed64(at)?);
            if d.is_finite() {
                write!(Fmt(out), "{{\"doubleValue\":{d:?}}}").unwrap_or(());
            } else {
                let name = if d.is_nan() {
                    "NaN"
                } else if d > 0.0 {
                    "Infinity"
                } else {
                    "-Infinity"
                };
                write!(Fmt(out), "{{\"doubleValue\":\"{name}\"}}").unwrap_or(());
            }
        }
        5 | 6 => {
            let (list, at) = v.message(at)?;
            out.extend_from_slice(if field == 5 {
                b"{\"arrayValue\":{\"values\":["
            } else {
                b"{\"kvlistValue\":{\"values\":["
            });
            write_each(list, at, 1, out, |item, at, out| {
                if field == 5 {
                    write_any_value(item, at, out, depth + 1)
                } else {
                    write_key_value(item, at, out, depth + 1)
                }
            })?;
            out.extend_from_slice(b"]}}");
        }
        _ => {
            out.extend_from_slice(b"{\"bytesValue\":\"");
            base64(out, v.bytes(at)?);
            out.extend_from_slice(b"\"}");
        }
    }
    Ok(())
}

/// Writes every occurrence of the repeated message `field` of a message with `write`,
/// separated by commas.
fn write_each(
    buf: &[u8],
    base: usize,
    field: u32,
    out: &mut Vec<u8>,
    mut write: impl FnMut(&[u8], usize, &mut Vec<u8>) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let mut first = true;
    let mut r = Reader::new(buf, base);
    while let Some((f, v)) = r.next()? {
        if f == field {
            let (m, at) = v.message(r.pos)?;
            comma(out, &mut first);
            write(m, at, out)?;
        }
    }
    Ok(())
}

fn comma(out: &mut Vec<u8>, first: &mut bool) {
    if !std::mem::take(first) {
        out.push(b',');
    }
}

fn write_hex_field(out: &mut Vec<u8>, name: &str, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    write!(Fmt(out), "\"{name}\":\"").unwrap_or(());
    for &b in bytes {
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 15) as usize]);
    }
    out.extend_from_slice(b"\",");
}

fn write_number_field(out: &mut Vec<u8>, name: &str, n: u64) {
    write!(Fmt(out), "\"{name}\":{n},").unwrap_or(());
}

fn write_u64_string_field(out: &mut Vec<u8>, name: &str, n: u64) {
    write!(Fmt(out), "\"{name}\":\"{n}\",").unwrap_or(());
}

/// A JSON string; bytes that are not UTF-8 become U+FFFD, as protobuf strings must be
/// UTF-8 and a bad one should cost its characters, not the span.
fn write_str(out: &mut Vec<u8>, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    out.push(b'"');
    let mut plain = 0;
    let s = text.as_bytes();
    for (i, &b) in s.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&s[plain..i]);
        if escape.is_empty() {
            write!(Fmt(out), "\\u{b:04x}").unwrap_or(());
        } else {
            out.extend_from_slice(escape);
        }
        plain = i + 1;
    }
    out.extend_from_slice(&s[plain..]);
    out.push(b'"');
}

/// Standard base64 with padding.
pub fn base64(out: &mut Vec<u8>, bytes: &[u8]) {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in bytes.chunks(3) {
        let n =
            (chunk[0] as u32) << 16 | (*chunk.get(1).unwrap_or(&0) as u32) << 8 | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
}

/// `write!` into a byte buffer.
struct Fmt<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Fmt<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// A field's value as it is on the wire.
#[derive(Clone, Copy)]
enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    /// The bytes and where they start in the whole body.
    Len(&'a [u8], usize),
    Fixed32,
}

impl<'a> Value<'a> {
    fn bytes(self, at: usize) -> Result<&'a [u8], DecodeError> {
        match self {
            Value::Len(b, _) => Ok(b),
            _ => Err(DecodeError { what: "a field that should be length-delimited is not", at }),
        }
    }

    /// A sub-message and where it starts in the whole body.
    fn message(self, at: usize) -> Result<(&'a [u8], usize), DecodeError> {
        match self {
            Value::Len(b, start) => Ok((b, start)),
            _ => Err(DecodeError { what: "a field that should be a message is not", at }),
        }
    }

    fn varint(self, at: usize) -> Result<u64, DecodeError> {
        match self {
            Value::Varint(n) => Ok(n),
            _ => Err(DecodeError { what: "a field that should be a varint is not", at }),
        }
    }

    fn fixed64(self, at: usize) -> Result<u64, DecodeError> {
        match self {
            Value::Fixed64(n) => Ok(n),
            _ => Err(DecodeError { what: "a field that should be fixed64 is not", at }),
        }
    }
}

/// Reads one message's fields in order.
struct Reader<'a> {
    buf: &'a [u8],
    /// Offset in `buf`.
    at: usize,
    /// Where the last field read starts in the whole body, for errors.
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], base: usize) -> Reader<'a> {
        Reader { buf, at: 0, pos: base, base }
    }

    fn err(&self, what: &'static str) -> DecodeError {
        DecodeError { what, at: self.base + self.at }
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.buf.get(self.at) else { return Err(self.err("a varint is cut short")) };
            self.at += 1;
            n |= ((b & 0x7f) as u64) << shift;
            if b < 0x80 {
                return Ok(n);
            }
        }
        Err(self.err("a varint is longer than ten bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end =
            self.at.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(|| self.err("a field is cut short"))?;
        let b = &self.buf[self.at..end];
        self.at = end;
        Ok(b)
    }

    /// The next field's number and value; `None` at the end of the message.
    fn next(&mut self) -> Result<Option<(u32, Value<'a>)>, DecodeError> {
        if self.at == self.buf.len() {
            return Ok(None);
        }
        self.pos = self.base + self.at;
        let key = self.varint()?;
        let field = (key >> 3) as u32;
        if field == 0 || key >> 3 > u32::MAX as u64 >> 3 {
            return Err(self.err("a field number out of range"));
        }
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => Value::Fixed64(u64::from_le_bytes(self.take(8)?.try_into().expect("eight bytes"))),
            2 => {
                let n = self.varint()?;
                let n = usize::try_from(n).map_err(|_| self.err("a length out of range"))?;
                let at = self.base + self.at;
                Value::Len(self.take(n)?, at)
            }
            5 => {
                self.take(4)?;
                Value::Fixed32
            }
            _ => return Err(self.err("a wire type protobuf does not use (groups are not read)")),
        };
        Ok(Some((field, value)))
    }
}

/// Protobuf writing, for the receiver's answers and for tests.
pub mod encode {
    /// A varint.
    pub fn varint(out: &mut Vec<u8>, mut n: u64) {
        while n >= 0x80 {
            out.push(n as u8 | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }

    /// A varint field.
    pub fn uint(out: &mut Vec<u8>, field: u32, n: u64) {
        varint(out, (field as u64) << 3);
        varint(out, n);
    }

    /// A fixed64 field.
    pub fn fixed64(out: &mut Vec<u8>, field: u32, n: u64) {
        varint(out, (field as u64) << 3 | 1);
        out.extend_from_slice(&n.to_le_bytes());
    }

    /// A length-delimited field (string, bytes or message).
    pub fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
        varint(out, (field as u64) << 3 | 2);
        varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }
}

#[cfg(test)]
mod tests {
    use super::encode::*;
    use super::*;

    fn kv(key: &str, value: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        bytes(&mut m, 1, key.as_bytes());
        bytes(&mut m, 2, value);
        m
    }

    fn string_value(s: &str) -> Vec<u8> {
        let mut v = Vec::new();
        bytes(&mut v, 1, s.as_bytes());
        v
    }

    fn int_value(n: i64) -> Vec<u8> {
        let mut v = Vec::new();
        uint(&mut v, 3, n as u64);
        v
    }

    fn span(id: u8, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut s = Vec::new();
        bytes(&mut s, 1, &[0xab; 16]);
        bytes(&mut s, 2, &[id; 8]);
        bytes(&mut s, 5, b"chat gpt-4o");
        uint(&mut s, 6, 3);
        fixed64(&mut s, 7, 1_700_000_000_000_000_000);
        fixed64(&mut s, 8, 1_700_000_001_250_000_000);
        for a in attrs {
            bytes(&mut s, 9, a);
        }
        s
    }

    fn export(spans: &[Vec<u8>]) -> Vec<u8> {
        let mut scope = Vec::new();
        bytes(&mut scope, 1, b"\x0a\x03lib");
        for s in spans {
            bytes(&mut scope, 2, s);
        }
        let mut resource = Vec::new();
        bytes(&mut resource, 1, &kv("service.name", &string_value("billing")));
        let mut rs = Vec::new();
        bytes(&mut rs, 1, &resource);
        bytes(&mut rs, 2, &scope);
        bytes(&mut rs, 3, b"https://opentelemetry.io/schemas/1.26.0");
        let mut req = Vec::new();
        bytes(&mut req, 1, &rs);
        req
    }

    #[test]
    fn an_export_becomes_the_json_line_of_the_same_spans() {
        let mut status = Vec::new();
        bytes(&mut status, 2, b"rate \"limited\"\n");
        uint(&mut status, 3, 2);
        let mut s = span(
            1,
            &[
                kv("gen_ai.request.model", &string_value("gpt-4o")),
                kv("gen_ai.usage.input_tokens", &int_value(1200)),
                kv("neg", &int_value(-5)),
            ],
        );
        bytes(&mut s, 15, &status);
        let mut double = Vec::new();
        fixed64(&mut double, 4, 0.25f64.to_bits());
        let mut list = Vec::new();
        bytes(&mut list, 1, &string_value("a"));
        bytes(&mut list, 1, &int_value(2));
        let mut array = Vec::new();
        bytes(&mut array, 5, &list);
        let mut event = Vec::new();
        fixed64(&mut event, 1, 7);
        bytes(&mut event, 2, b"exception");
        bytes(&mut event, 3, &kv("exception.type", &string_value("RateLimitError")));
        let mut s2 = span(2, &[kv("d", &double), kv("arr", &array), kv("b", b"\x3a\x01\x01"), kv("t", b"\x10\x01")]);
        bytes(&mut s2, 11, &event);
        let mut out = b"keep".to_vec();
        let t = export_to_json(&export(&[s, s2]), &mut out).unwrap();
        assert_eq!(t, Transcoded { spans: 2, rejected: 0, first_rejection: None });
        let text = std::str::from_utf8(&out[4..]).unwrap();
        assert!(text.ends_with('\n') && !text[..text.len() - 1].contains('\n'));
        let got: serde_json::Value = serde_json::from_str(text).unwrap();
        let ab = "ab".repeat(16);
        let want = serde_json::json!({"resourceSpans":[{
            "resource":{"attributes":[{"key":"service.name","value":{"stringValue":"billing"}}]},
            "scopeSpans":[{"spans":[
                {"traceId": ab, "spanId":"0101010101010101","name":"chat gpt-4o","kind":3,
                 "startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000001250000000",
                 "status":{"code":2,"message":"rate \"limited\"\n"},
                 "attributes":[
                    {"key":"gen_ai.request.model","value":{"stringValue":"gpt-4o"}},
                    {"key":"gen_ai.usage.input_tokens","value":{"intValue":"1200"}},
                    {"key":"neg","value":{"intValue":"-5"}}],
                 "events":[]},
                {"traceId": ab, "spanId":"0202020202020202","name":"chat gpt-4o","kind":3,
                 "startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000001250000000",
                 "attributes":[
                    {"key":"d","value":{"doubleValue":0.25}},
                    {"key":"arr","value":{"arrayValue":{"values":[{"stringValue":"a"},{"intValue":"2"}]}}},
                    {"key":"b","value":{"bytesValue":"AQ=="}},
                    {"key":"t","value":{"boolValue":true}}],
                 "events":[{"timeUnixNano":"7","name":"exception","attributes":[
                    {"key":"exception.type","value":{"stringValue":"RateLimitError"}}]}]}
            ]}]
        }]});
        assert_eq!(got, want);
    }

    #[test]
    fn a_broken_span_is_rejected_and_the_others_kept() {
        let good = span(1, &[kv("gen_ai.request.model", &string_value("m"))]);
        // A span whose start time has the wire type of a varint, and one cut short inside.
        let mut wrong_type = Vec::new();
        bytes(&mut wrong_type, 2, &[2; 8]);
        uint(&mut wrong_type, 7, 5);
        let mut cut = span(3, &[]);
        cut.extend_from_slice(&[0x4a, 0x05, 0x0a]);
        let mut out = Vec::new();
        let t = export_to_json(&export(&[good, wrong_type, cut]), &mut out).unwrap();
        assert_eq!((t.spans, t.rejected), (1, 2));
        assert!(t.first_rejection.unwrap().contains("should be fixed64"));
        let got: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let spans = &got["resourceSpans"][0]["scopeSpans"][0]["spans"];
        assert_eq!(spans.as_array().unwrap().len(), 1);
        assert_eq!(spans[0]["spanId"], "0101010101010101");
    }

    #[test]
    fn a_large_export_is_cut_into_lines_that_keep_their_resource() {
        let prompt = "p".repeat(1_000);
        let spans: Vec<Vec<u8>> = (0..700u32)
            .map(|i| {
                let mut s = span(1, &[kv("gen_ai.prompt.0.content", &string_value(&prompt))]);
                bytes(&mut s, 4, &i.to_le_bytes());
                s
            })
            .collect();
        let mut out = Vec::new();
        let t = export_to_json(&export(&spans), &mut out).unwrap();
        assert_eq!((t.spans, t.rejected), (700, 0));
        let lines: Vec<&[u8]> = out.strip_suffix(b"\n").unwrap().split(|&b| b == b'\n').collect();
        assert!(lines.len() >= 3, "{}", lines.len());
        let mut parents = Vec::new();
        for line in lines {
            assert!(line.len() < SPLIT_BYTES + 2_000, "{}", line.len());
            let v: serde_json::Value = serde_json::from_slice(line).unwrap();
            let rs = &v["resourceSpans"][0];
            assert_eq!(rs["resource"]["attributes"][0]["value"]["stringValue"], "billing");
            for s in rs["scopeSpans"][0]["spans"].as_array().unwrap() {
                parents.push(s["parentSpanId"].as_str().unwrap().to_string());
            }
        }
        let want: Vec<String> =
            (0..700u32).map(|i| i.to_le_bytes().iter().map(|b| format!("{b:02x}")).collect()).collect();
        assert_eq!(parents, want, "every span once, in order");
    }

    #[test]
    fn broken_framing_is_an_error_and_writes_nothing() {
        let mut body = export(&[span(1, &[])]);
        body.truncate(body.len() - 3);
        let mut out = b"x".to_vec();
        let e = export_to_json(&body, &mut out).unwrap_err();
        assert_eq!(e.what, "a field is cut short");
        assert_eq!(out, b"x");
        assert!(export_to_json(b"\x0b", &mut out).unwrap_err().what.contains("groups"));
        // An empty export is a valid one, with no spans.
        assert_eq!(export_to_json(b"", &mut out).unwrap().spans, 0);
    }

    #[test]
    fn deep_values_are_rejected_not_followed() {
        let mut v = string_value("leaf");
        for _ in 0..40 {
            let mut list = Vec::new();
            bytes(&mut list, 1, &v);
            v = Vec::new();
            bytes(&mut v, 5, &list);
        }
        let mut out = Vec::new();
        let t = export_to_json(&export(&[span(1, &[kv("deep", &v)])]), &mut out).unwrap();
        assert_eq!((t.spans, t.rejected), (0, 1));
        assert!(t.first_rejection.unwrap().contains("nested too deep"));
    }

    #[test]
    fn strings_are_escaped_and_bad_utf8_costs_only_its_bytes() {
        let mut out = Vec::new();
        write_str(&mut out, b"a\"b\\c\x1b[2J\xffz");
        let s: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(s, "a\"b\\c\x1b[2J\u{fffd}z");
        let mut b = Vec::new();
        for input in [&b""[..], b"f", b"fo", b"foo", b"foob", b"fooba", b"foobar"] {
            b.clear();
            base64(&mut b, input);
            let want = ["", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"][input.len()];
            assert_eq!(b, want.as_bytes());
        }
    }
}
