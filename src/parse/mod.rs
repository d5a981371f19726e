//! Turning input lines into [`Event`]s.
//!
//! Each input format has its own module; they all produce the same event model, and
//! a bad line becomes a [`ParseError`] that is counted, never a crash. [`LineParser`]
//! picks the format per line (or uses the one forced with `--input-format`).

pub mod errors;
pub mod helicone;
pub(crate) mod json;
pub mod litellm;
pub mod native;
pub mod otel;
pub mod otlp_proto;
pub(crate) mod scan;
pub mod traces;

use std::borrow::Cow;

use serde::Deserializer as _;
use serde::de::{MapAccess, Visitor};
use thiserror::Error;

use crate::event::{Event, recycle_properties};
use crate::time::Zone;
use json::{Key, Notes, Skip};
use otel::Found;
use traces::{Release, Traces};

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

/// The input formats tokentop reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Tokentop,
    Helicone,
    HeliconeCsv,
    Litellm,
    Otel,
}

impl Format {
    pub const NAMES: [&'static str; 5] = ["tokentop", "helicone", "helicone-csv", "litellm", "otel"];

    /// What one record of this format is called in messages.
    pub fn noun(self) -> &'static str {
        match self {
            Format::Tokentop => "tokentop event",
            Format::Helicone => "Helicone record",
            Format::HeliconeCsv => "Helicone CSV row",
            Format::Litellm => "LiteLLM payload",
            Format::Otel => "OTLP export",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Tokentop => "tokentop",
            Format::Helicone => "helicone",
            Format::HeliconeCsv => "helicone-csv",
            Format::Litellm => "litellm",
            Format::Otel => "otel",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        [Format::Tokentop, Format::Helicone, Format::HeliconeCsv, Format::Litellm, Format::Otel]
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| format!("`{s}` is not an input format: use one of {}", Format::NAMES.join(", ")))
    }
}

/// The JSON-lines formats, in the order they are tried when nothing identifies a line.
const LINE_FORMATS: [Format; 4] = [Format::Tokentop, Format::Helicone, Format::Litellm, Format::Otel];

/// Why a record was read but not counted as a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// A span of another operation (HTTP, database, a framework's chain).
    NotCall,
    /// A span that carries token usage but is not an LLM call (an agent or workflow
    /// span summing its calls).
    UsageOutsideCall,
    /// A span marked as an LLM call with neither a model nor token usage (a prompt template).
    NoModelOrUsage,
    /// An LLM span around another LLM span of the same trace: the inner one is the call.
    Nested,
}

impl SkipReason {
    pub const ALL: [SkipReason; 4] =
        [SkipReason::NotCall, SkipReason::UsageOutsideCall, SkipReason::NoModelOrUsage, SkipReason::Nested];

    /// The reason as the report names it.
    pub fn name(self) -> &'static str {
        match self {
            SkipReason::NotCall => "not_an_llm_call",
            SkipReason::UsageOutsideCall => "usage_outside_an_llm_call",
            SkipReason::NoModelOrUsage => "no_model_or_usage",
            SkipReason::Nested => "nested_llm_span",
        }
    }
}

/// What one line (or a release of held spans) yielded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Parsed {
    pub events: u32,
    /// Records that are not LLM calls, by [`SkipReason`] (in the order of `SkipReason::ALL`).
    pub skipped: [u32; 4],
    /// Fields that could not be read and were dropped (the record was kept).
    pub field_errors: u32,
}

impl Parsed {
    fn one() -> Parsed {
        Parsed { events: 1, ..Parsed::default() }
    }

    pub fn skip(&mut self, reason: SkipReason) {
        self.skipped[reason as usize] += 1;
    }

    pub fn skipped_total(&self) -> u32 {
        self.skipped.iter().sum()
    }
}

/// Parses lines of any JSON-lines format, keeping its buffers from line to line.
///
/// The format that parsed the previous line is tried first, so a file in one format
/// costs one parse per line. When it fails on the line's content (not its JSON
/// syntax), the line's top-level keys tell which format it is.
///
/// OpenTelemetry LLM spans that belong to a trace are held until the trace's nesting
/// is known (see [`traces`]): call [`finish`](Self::finish) at the end of an input and,
/// for live sources, [`release_quiet`](Self::release_quiet) now and then.
pub struct LineParser {
    forced: Option<Format>,
    last: Format,
    spare: Vec<(Cow<'static, str>, Cow<'static, str>)>,
    links: Vec<Link<'static>>,
    notes: Notes,
    zone: Zone,
    traces: Traces,
    /// Hold spans across lines (files and live sources) or resolve each line on its own.
    hold: bool,
    /// The first unreadable field of the last line, naming the format and the field.
    field_error: Option<String>,
}

type Link<'a> = (Cow<'a, str>, Cow<'a, str>, Cow<'a, str>);

impl LineParser {
    pub fn new(forced: Option<Format>) -> LineParser {
        LineParser {
            forced,
            last: forced.unwrap_or(Format::Tokentop),
            spare: Vec::new(),
            links: Vec::new(),
            notes: Notes::default(),
            zone: Zone::Utc,
            traces: Traces::default(),
            hold: true,
            field_error: None,
        }
    }

    /// Timestamps without an offset (in other tools' logs) are in `zone`.
    pub fn with_zone(mut self, zone: Zone) -> LineParser {
        self.zone = zone;
        self
    }

    /// Resolves nested spans within each line instead of holding them across lines
    /// (for messages that must be answered at once, such as a relay's).
    pub fn without_holding(mut self) -> LineParser {
        self.hold = false;
        self
    }

    /// The first field of the last line that could not be read, when
    /// [`Parsed::field_errors`] is not zero.
    pub fn field_error(&self) -> Option<&str> {
        self.field_error.as_deref()
    }

    /// Releases every held span: the input has ended.
    pub fn finish(&mut self, emit: &mut dyn FnMut(&Event)) -> Parsed {
        let mut out = Parsed::default();
        if !self.traces.is_empty() {
            self.traces.release(Release::All, emit, &mut out);
        }
        out
    }

    /// Releases the spans of traces quiet for [`traces::HOLD`] (live sources).
    pub fn release_quiet(&mut self, emit: &mut dyn FnMut(&Event)) -> Parsed {
        let mut out = Parsed::default();
        if !self.traces.is_empty()
            && let Some(cutoff) = std::time::Instant::now().checked_sub(traces::HOLD)
        {
            self.traces.release(Release::QuietSince(cutoff), emit, &mut out);
        }
        out
    }

    /// Parses one line (without its newline), calling `emit` with each event.
    pub fn parse(&mut self, line: &[u8], emit: &mut dyn FnMut(&Event)) -> Result<Parsed, ParseError> {
        // A byte-order mark at the start of a file is not part of its first record.
        let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        // simdutf8 checks 32 bytes a step where the CPU has AVX2 (the standard
        // library's check is a quarter of the speed on the long lines of gateway logs).
        let Ok(text) = simdutf8::basic::from_utf8(line) else {
            return Err(ParseError::Invalid("line is not valid UTF-8".into()));
        };
        self.field_error = None;
        let first = self.last;
        let err = match self.parse_as(first, text, emit) {
            Ok(p) => return Ok(self.noted(first, p)),
            Err(e) => e,
        };
        if self.forced.is_some() || err.is_syntax() {
            return Err(ParseError::Invalid(format!("{}: {err}", first.noun())));
        }
        match identify(text) {
            Some(f) if f == first => Err(ParseError::Invalid(format!("{}: {err}", f.noun()))),
            Some(f) => match self.parse_as(f, text, emit) {
                Ok(p) => {
                    self.last = f;
                    Ok(self.noted(f, p))
                }
                Err(e) => Err(ParseError::Invalid(format!("{}: {e}", f.noun()))),
            },
            None => Err(ParseError::Invalid(format!(
                "matches no input format (tried {}: none of created_at, request_created_at, startTime, resourceSpans)",
                LINE_FORMATS.map(Format::name).join(", ")
            ))),
        }
    }

    fn noted(&mut self, format: Format, mut p: Parsed) -> Parsed {
        p.field_errors = self.notes.field_errors;
        if let Some(first) = self.notes.first.take() {
            self.field_error = Some(format!("{}: {first}", format.noun()));
        }
        p
    }

    fn parse_as<'a>(
        &mut self,
        format: Format,
        text: &'a str,
        emit: &mut dyn FnMut(&Event),
    ) -> Result<Parsed, scan::Error> {
        self.notes.clear();
        let mut ev: Event<'a> = Event::with_properties(recycle_properties(std::mem::take(&mut self.spare)));
        let result = match format {
            Format::Tokentop => native::parse_into(text, &mut ev).map(|()| Parsed::one()),
            Format::Helicone => helicone::parse_into(text, &mut ev, &mut self.notes).map(|()| Parsed::one()),
            Format::Litellm => litellm::parse_into(text, &mut ev, &mut self.notes).map(|()| Parsed::one()),
            Format::HeliconeCsv => Err(serde::de::Error::custom(
                "Helicone CSV is read as a whole file (its header names the columns), not line by line",
            )),
            Format::Otel => {
                let r = self.parse_spans(text, &mut ev, emit);
                self.spare = recycle_properties(ev.properties);
                return r;
            }
        };
        if result.is_ok() {
            if format != Format::Tokentop {
                settle(&mut ev, self.notes.naive_time, self.zone);
            }
            normalize(&mut ev);
            emit(&ev);
        }
        self.spare = recycle_properties(ev.properties);
        result
    }

    /// An OTLP line: calls are emitted, or held when they belong to a trace.
    fn parse_spans<'a>(
        &mut self,
        text: &'a str,
        ev: &mut Event<'a>,
        emit: &mut dyn FnMut(&Event),
    ) -> Result<Parsed, scan::Error> {
        let mut out = Parsed::default();
        let mut links: Vec<Link<'a>> = recycle_links(std::mem::take(&mut self.links));
        let (traces, zone) = (&mut self.traces, self.zone);
        let now = std::time::Instant::now();
        let notes = &mut self.notes;
        let r = otel::parse_lines(text, ev, notes, &mut |ids, found| match found {
            Found::Skipped(reason) => {
                out.skip(reason);
                if let (Some(t), Some(s), Some(p)) = (ids.trace, ids.span, ids.parent) {
                    links.push((t, s, p));
                }
            }
            Found::Call(e) => {
                settle(e, false, zone);
                // Spans without ids wait with the others, so that calls keep their order.
                let (t, s) = (ids.trace.as_deref().unwrap_or(""), ids.span.as_deref().unwrap_or(""));
                normalize(e);
                traces.hold(t, s, ids.parent.as_deref(), e, now);
            }
        });
        for (t, s, p) in &links {
            self.traces.link(t, s, p);
        }
        self.links = recycle_links(links);
        let which = if self.hold { Release::OverBound } else { Release::All };
        if !self.traces.is_empty() {
            self.traces.release(which, emit, &mut out);
        }
        r.map(|()| out)
    }
}

/// Empties a link buffer and hands back its allocation for another line's lifetime.
fn recycle_links<'b>(mut v: Vec<Link<'_>>) -> Vec<Link<'b>> {
    v.clear();
    v.into_iter().map(|_| unreachable!("vector was cleared")).collect()
}

/// What other tools' records need once read: a naive time placed in its zone, and a
/// first-token time only where one was measured (not one equal to the end of the call).
pub(crate) fn settle(ev: &mut Event, naive_time: bool, zone: Zone) {
    if naive_time {
        ev.created_at = zone.to_utc(ev.created_at);
    }
    // A first token at 0 ms or at the end of the call was not measured (Helicone writes 0,
    // LiteLLM the end time, for calls that were not streamed).
    if let Some(ttft) = ev.ttft_ms
        && (ttft <= 0.0 || ev.latency_ms.is_some_and(|latency| ttft >= latency && latency > 0.0))
    {
        ev.ttft_ms = None;
    }
}

/// Which format a line's top-level keys say it is.
fn identify(text: &str) -> Option<Format> {
    struct Keys;
    impl<'de> Visitor<'de> for Keys {
        type Value = [bool; 4];
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<[bool; 4], A::Error> {
            let mut seen = [false; 4];
            while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
                match k.as_ref() {
                    "created_at" => seen[0] = true,
                    "request_created_at" => seen[1] = true,
                    "startTime" => seen[2] = true,
                    "resourceSpans" | "scopeSpans" => seen[3] = true,
                    _ => {}
                }
                map.next_value::<Skip>()?;
            }
            Ok(seen)
        }
    }
    let seen = scan::Scanner::new(text).deserialize_map(Keys).ok()?;
    // Most specific first: a foreign record may carry a `created_at` of its own.
    [(3, Format::Otel), (1, Format::Helicone), (2, Format::Litellm), (0, Format::Tokentop)]
        .into_iter()
        .find(|(i, _)| seen[*i])
        .map(|(_, f)| f)
        // An export nested in a larger document (oteltest's `trace_requests`).
        .or_else(|| memchr::memmem::find(text.as_bytes(), b"\"resourceSpans\"").map(|_| Format::Otel))
}

/// Other tools' provider names and the LiteLLM id each stands for.
pub(crate) const PROVIDER_ALIASES: [(&str, &str); 13] = [
    ("azure.ai.openai", "azure"),
    ("az.ai.openai", "azure"),
    ("azure.ai.inference", "azure_ai"),
    ("az.ai.inference", "azure_ai"),
    ("aws.bedrock", "bedrock"),
    ("aws", "bedrock"),
    ("gcp.vertex_ai", "vertex_ai"),
    ("gcp.gemini", "gemini"),
    ("gcp.gen_ai", "gemini"),
    ("google", "gemini"),
    ("mistral_ai", "mistral"),
    ("mistralai", "mistral"),
    ("x_ai", "xai"),
];

/// Provider names follow LiteLLM's ids, lower-case; the raw name is kept when it
/// changes. Allocates nothing for a name that is already an id. Every string is
/// bounded first (see [`Event::bound_strings`]).
pub fn normalize(ev: &mut Event) {
    ev.bound_strings();
    let Some(raw) = ev.provider.as_deref() else { return };
    // Most names are ids already (`openai`, `anthropic`): lower-case letters, no alias.
    if raw.bytes().all(|b| b.is_ascii_lowercase()) && !matches!(raw, "aws" | "google" | "mistralai") {
        return;
    }
    let normal: Cow<'static, str> = match PROVIDER_ALIASES.iter().find(|(alias, _)| alias.eq_ignore_ascii_case(raw)) {
        Some((_, id)) => Cow::Borrowed(id),
        None if raw.bytes().any(|b| b.is_ascii_uppercase()) => Cow::Owned(raw.to_ascii_lowercase()),
        None => return,
    };
    ev.provider_raw = ev.provider.take();
    ev.provider = Some(normal);
}

/// Strips a trailing `\r` and reports whether anything but whitespace is left.
///
/// Blank lines are neither events nor errors.
pub fn trim_line(line: &[u8]) -> Option<&[u8]> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) { None } else { Some(line) }
}

/// The lines of `text` that hold something (see [`trim_line`]), found a word at a time.
pub fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = text;
    std::iter::from_fn(move || {
        while !rest.is_empty() {
            let (line, next) = match memchr::memchr(b'\n', rest) {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &rest[rest.len()..]),
            };
            rest = next;
            if let Some(line) = trim_line(line) {
                return Some(line);
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_what_split_and_trim_give() {
        for text in ["", "\n", "a", "a\n", "a\r\nb", "\n\n a \n\t\nb\r\n\r\n", "{}\n{\"x\":1}"] {
            let split: Vec<&[u8]> = text.as_bytes().split(|&b| b == b'\n').filter_map(trim_line).collect();
            assert_eq!(lines(text.as_bytes()).collect::<Vec<_>>(), split, "{text:?}");
        }
    }

    fn models(p: &mut LineParser, line: &str) -> Result<Vec<(String, String)>, ParseError> {
        let mut out = Vec::new();
        p.parse(line.as_bytes(), &mut |e| out.push((e.model().to_string(), e.provider().to_string())))?;
        Ok(out)
    }

    #[test]
    fn detects_formats_line_by_line() {
        let mut p = LineParser::new(None).without_holding();
        let native = r#"{"created_at":1,"model":"a","provider":"OpenAI"}"#;
        let helicone = r#"{"request_created_at":"2025-01-01T00:00:00Z","request_model":"b","provider":"ANTHROPIC"}"#;
        let litellm = r#"{"startTime":1,"status":"success","model":"c","custom_llm_provider":"mistral_ai"}"#;
        let otel = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"startTimeUnixNano":"1","attributes":[{"key":"gen_ai.operation.name","value":{"stringValue":"chat"}},{"key":"gen_ai.request.model","value":{"stringValue":"d"}},{"key":"gen_ai.provider.name","value":{"stringValue":"aws.bedrock"}}]}]}]}]}"#;
        for (line, want) in [
            (native, ("a", "openai")),
            (helicone, ("b", "anthropic")),
            (litellm, ("c", "mistral")),
            (otel, ("d", "bedrock")),
            (native, ("a", "openai")),
        ] {
            assert_eq!(models(&mut p, line).unwrap(), vec![(want.0.to_string(), want.1.to_string())], "{line}");
        }
    }

    #[test]
    fn errors_say_what_was_tried() {
        let mut p = LineParser::new(None);
        let e = models(&mut p, r#"{"hello":"world"}"#).unwrap_err().to_string();
        assert!(e.contains("tried tokentop, helicone, litellm, otel"), "{e}");
        assert_eq!(
            models(&mut p, r#"{"startTime":1,"response_cost":"x"}"#).unwrap().len(),
            1,
            "the field is lost, not the record"
        );
        let e = p.field_error().unwrap();
        assert!(e.starts_with("LiteLLM payload: field `response_cost`"), "{e}");
        let e = models(&mut LineParser::new(None), "{broken").unwrap_err().to_string();
        assert!(e.starts_with("tokentop event:") && e.contains("column"), "{e}");
        let mut forced = LineParser::new(Some(Format::Helicone));
        let e = models(&mut forced, r#"{"created_at":1}"#).unwrap_err().to_string();
        assert!(e.contains("request_created_at"), "{e}");
    }

    #[test]
    fn provider_normalisation_keeps_the_raw_name() {
        for (raw, id) in [
            ("azure.ai.openai", "azure"),
            ("az.ai.openai", "azure"),
            ("gcp.vertex_ai", "vertex_ai"),
            ("gcp.gemini", "gemini"),
            ("x_ai", "xai"),
            ("OpenAI", "openai"),
        ] {
            let mut ev = Event { provider: Some(Cow::Borrowed(raw)), ..Event::default() };
            normalize(&mut ev);
            assert_eq!((ev.provider(), ev.provider_raw.as_deref()), (id, Some(raw)));
        }
        let mut ev = Event { provider: Some(Cow::Borrowed("openai")), ..Event::default() };
        normalize(&mut ev);
        assert!(matches!(ev.provider, Some(Cow::Borrowed("openai"))) && ev.provider_raw.is_none());
    }

    #[test]
    fn blank_lines_are_skipped() {
        assert_eq!(trim_line(b""), None);
        assert_eq!(trim_line(b" \t\r"), None);
        assert_eq!(trim_line(b"{}\r"), Some(&b"{}"[..]));
    }
}
