//! Turning input lines into [`Event`]s.
//!
//! Each input format has its own module; they all produce the same event model, and
//! a bad line becomes a [`ParseError`] that is counted, never a crash. [`LineParser`]
//! picks the format per line (or uses the one forced with `--input-format`).

pub mod helicone;
pub(crate) mod json;
pub mod litellm;
pub mod native;
pub mod otel;

use std::borrow::Cow;

use serde::Deserializer as _;
use serde::de::{MapAccess, Visitor};
use thiserror::Error;

use crate::event::{Event, recycle_properties};
use json::{Key, Skip};

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

/// What one line yielded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Parsed {
    pub events: u32,
    /// Records that are not LLM calls (OpenTelemetry spans of other operations).
    pub skipped: u32,
}

/// Parses lines of any JSON-lines format, keeping its buffers from line to line.
///
/// The format that parsed the previous line is tried first, so a file in one format
/// costs one parse per line. When it fails on the line's content (not its JSON
/// syntax), the line's top-level keys tell which format it is.
pub struct LineParser {
    forced: Option<Format>,
    last: Format,
    spare: Vec<(Cow<'static, str>, Cow<'static, str>)>,
}

impl LineParser {
    pub fn new(forced: Option<Format>) -> LineParser {
        LineParser { forced, last: forced.unwrap_or(Format::Tokentop), spare: Vec::new() }
    }

    /// Parses one line (without its newline), calling `emit` with each event.
    pub fn parse(&mut self, line: &[u8], emit: &mut dyn FnMut(&Event)) -> Result<Parsed, ParseError> {
        let Ok(text) = std::str::from_utf8(line) else {
            return Err(ParseError::Invalid("line is not valid UTF-8".into()));
        };
        let first = self.last;
        let err = match self.parse_as(first, text, emit) {
            Ok(p) => return Ok(p),
            Err(e) => e,
        };
        if self.forced.is_some() || is_syntax(&err) {
            return Err(ParseError::Invalid(format!("{}: {}", first.noun(), json::describe(&err))));
        }
        match identify(text) {
            Some(f) if f == first => Err(ParseError::Invalid(format!("{}: {}", f.noun(), json::describe(&err)))),
            Some(f) => match self.parse_as(f, text, emit) {
                Ok(p) => {
                    self.last = f;
                    Ok(p)
                }
                Err(e) => Err(ParseError::Invalid(format!("{}: {}", f.noun(), json::describe(&e)))),
            },
            None => Err(ParseError::Invalid(format!(
                "matches no input format (tried {}: none of created_at, request_created_at, startTime, resourceSpans)",
                LINE_FORMATS.map(Format::name).join(", ")
            ))),
        }
    }

    fn parse_as<'a>(
        &mut self,
        format: Format,
        text: &'a str,
        emit: &mut dyn FnMut(&Event),
    ) -> Result<Parsed, serde_json::Error> {
        let mut ev: Event<'a> = Event::with_properties(recycle_properties(std::mem::take(&mut self.spare)));
        let result = match format {
            Format::Tokentop => native::parse_into(text, &mut ev).map(|()| Parsed { events: 1, skipped: 0 }),
            Format::Helicone => helicone::parse_into(text, &mut ev).map(|()| Parsed { events: 1, skipped: 0 }),
            Format::Litellm => litellm::parse_into(text, &mut ev).map(|()| Parsed { events: 1, skipped: 0 }),
            Format::HeliconeCsv => Err(serde::de::Error::custom(
                "Helicone CSV is read as a whole file (its header names the columns), not line by line",
            )),
            Format::Otel => {
                // Spans are emitted as they are read, each normalised on the way.
                let r = otel::parse_lines(text, &mut ev, &mut |e| {
                    normalize(e);
                    emit(e)
                });
                self.spare = recycle_properties(ev.properties);
                return r.map(|c| Parsed { events: c.llm, skipped: c.skipped });
            }
        };
        if result.is_ok() {
            normalize(&mut ev);
            emit(&ev);
        }
        self.spare = recycle_properties(ev.properties);
        result
    }
}

fn is_syntax(e: &serde_json::Error) -> bool {
    matches!(e.classify(), serde_json::error::Category::Syntax | serde_json::error::Category::Eof)
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
                    "resourceSpans" => seen[3] = true,
                    _ => {}
                }
                map.next_value::<Skip>()?;
            }
            Ok(seen)
        }
    }
    let seen = serde_json::Deserializer::from_str(text).deserialize_map(Keys).ok()?;
    // Most specific first: a foreign record may carry a `created_at` of its own.
    [(3, Format::Otel), (1, Format::Helicone), (2, Format::Litellm), (0, Format::Tokentop)]
        .into_iter()
        .find(|(i, _)| seen[*i])
        .map(|(_, f)| f)
}

/// Other tools' provider names and the LiteLLM id each stands for.
const PROVIDER_ALIASES: [(&str, &str); 13] = [
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

#[cfg(test)]
mod tests {
    use super::*;

    fn models(p: &mut LineParser, line: &str) -> Result<Vec<(String, String)>, ParseError> {
        let mut out = Vec::new();
        p.parse(line.as_bytes(), &mut |e| out.push((e.model().to_string(), e.provider().to_string())))?;
        Ok(out)
    }

    #[test]
    fn detects_formats_line_by_line() {
        let mut p = LineParser::new(None);
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
        let e = models(&mut p, r#"{"startTime":1,"response_cost":"x"}"#).unwrap_err().to_string();
        assert!(e.starts_with("LiteLLM payload: field `response_cost`"), "{e}");
        let e = models(&mut p, "{broken").unwrap_err().to_string();
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
