//! tokentop's own JSON-lines schema.
//!
//! A hand-written serde visitor rather than `#[derive(Deserialize)]`: it lets the last
//! of duplicate keys win, borrows strings from the line, names the offending field in
//! every error, and fills a property buffer that is recycled between lines, so an
//! ordinary line is parsed without a single allocation.

use std::borrow::Cow;
use std::fmt;

use serde::Deserializer as _;
use serde::de::{self, MapAccess, Visitor};

use super::ParseError;
use super::json::{Key, PropertiesSeed, Scalar, Skip, duration, integer, show};
use super::scan::{self, Scanner};
use crate::event::{Event, recycle_properties};
use crate::time::{self, Micros};

/// Parses native event lines, reusing its buffers from one line to the next.
#[derive(Default)]
pub struct NativeParser {
    spare: Vec<(Cow<'static, str>, Cow<'static, str>)>,
}

impl NativeParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses one line (without its newline). Call [`recycle`](Self::recycle) with the
    /// event when done to keep the ingest path free of allocations.
    pub fn parse<'a>(&mut self, line: &'a [u8]) -> Result<Event<'a>, ParseError> {
        let mut ev = Event::with_properties(recycle_properties(std::mem::take(&mut self.spare)));
        // One UTF-8 check for the whole line is much cheaper than serde_json's check
        // of every string on its own.
        let result = match simdutf8::basic::from_utf8(line) {
            Ok(text) => parse_into(text, &mut ev).map_err(|e| ParseError::Invalid(e.to_string())),
            Err(_) => Err(ParseError::Invalid("line is not valid UTF-8".into())),
        };
        match result {
            Ok(()) => Ok(ev),
            Err(e) => {
                self.recycle(ev);
                Err(e)
            }
        }
    }

    pub fn recycle(&mut self, ev: Event<'_>) {
        self.spare = recycle_properties(ev.properties);
    }
}

/// Parses a native line into `ev` (fresh from [`Event::with_properties`]).
pub(crate) fn parse_into<'de>(text: &'de str, ev: &mut Event<'de>) -> Result<(), scan::Error> {
    let mut de = Scanner::new(text);
    de.deserialize_map(EventVisitor { ev })?;
    de.end()
}

/// Writes an event as one line of tokentop's schema (with its newline), omitting
/// absent and default fields. The inverse of [`NativeParser::parse`].
pub fn write_line(ev: &Event, out: &mut Vec<u8>) {
    write_line_with_seq(ev, ev.seq, out)
}

/// [`write_line`] with `seq` set to `seq` (the relay numbers the events it sends).
pub fn write_line_with_seq(ev: &Event, seq: Option<u64>, out: &mut Vec<u8>) {
    let view = Out {
        request_id: ev.request_id.as_deref(),
        created_at: time::format_rfc3339(ev.created_at),
        provider: ev.provider.as_deref(),
        provider_raw: ev.provider_raw.as_deref(),
        model: ev.model.as_deref(),
        status: ev.status,
        latency_ms: ev.latency_ms,
        ttft_ms: ev.ttft_ms,
        prompt_tokens: ev.prompt_tokens,
        completion_tokens: ev.completion_tokens,
        cache_read_tokens: ev.cache_read_tokens,
        cache_write_tokens: ev.cache_write_tokens,
        reasoning_tokens: ev.reasoning_tokens,
        cost_usd: ev.cost_usd,
        cache_hit: ev.cache_hit,
        user_id: ev.user_id.as_deref(),
        session_id: ev.session_id.as_deref(),
        session_name: ev.session_name.as_deref(),
        session_path: ev.session_path.as_deref(),
        properties: Props(&ev.properties),
        retry: ev.retry,
        feedback: ev.feedback,
        error: ev.error.as_deref(),
        seq,
    };
    serde_json::to_writer(&mut *out, &view).expect("writing to a Vec cannot fail");
    out.push(b'\n');
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(serde::Serialize)]
struct Out<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<&'a str>,
    /// The provider as the source named it, when normalising changed it (ignored on input).
    #[serde(skip_serializing_if = "Option::is_none")]
    provider_raw: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttft_ms: Option<f64>,
    #[serde(skip_serializing_if = "is_zero")]
    prompt_tokens: u64,
    #[serde(skip_serializing_if = "is_zero")]
    completion_tokens: u64,
    #[serde(skip_serializing_if = "is_zero")]
    cache_read_tokens: u64,
    #[serde(skip_serializing_if = "is_zero")]
    cache_write_tokens: u64,
    #[serde(skip_serializing_if = "is_zero")]
    reasoning_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    cost_usd: Option<f64>,
    #[serde(skip_serializing_if = "is_false")]
    cache_hit: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_path: Option<&'a str>,
    #[serde(skip_serializing_if = "Props::is_empty")]
    properties: Props<'a>,
    #[serde(skip_serializing_if = "is_zero")]
    retry: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    feedback: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
}

struct Props<'a>(&'a [(Cow<'a, str>, Cow<'a, str>)]);

impl Props<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl serde::Serialize for Props<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(&**k, &**v)?;
        }
        m.end()
    }
}

struct EventVisitor<'e, 'de> {
    ev: &'e mut Event<'de>,
}

impl<'de> Visitor<'de> for EventVisitor<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object (one event per line)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ev = self.ev;
        let mut created_at = None;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let key = key.as_ref();
            match Member::of(key) {
                Member::Field(field) => {
                    let v: Scalar<'de> = map.next_value()?;
                    set_field(ev, &mut created_at, field, key, v).map_err(de::Error::custom)?;
                }
                Member::Properties => {
                    ev.properties.clear();
                    map.next_value_seed(PropertiesSeed { ev: &mut *ev })?;
                }
                Member::Error => map.next_value_seed(ErrorSeed { ev: &mut *ev })?,
                Member::Unknown => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        match created_at {
            Some(t) => {
                ev.created_at = t;
                Ok(())
            }
            None => Err(de::Error::custom("missing required field `created_at`")),
        }
    }
}

/// `error`: a string, or an error object as OpenAI and Anthropic return it
/// (`{"message", "type", "code"}`): its message is the error text, its type and code
/// go into the request's properties (`error.type`, `error.code`).
struct ErrorSeed<'e, 'de> {
    ev: &'e mut Event<'de>,
}

impl<'de> de::DeserializeSeed<'de> for ErrorSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ErrorSeed<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("field `error`: a string or an object with `message`")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.ev.error = None;
        Ok(())
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<(), E> {
        self.ev.error = Some(std::borrow::Cow::Borrowed(v));
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.ev.error = Some(std::borrow::Cow::Owned(v.to_owned()));
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ev = self.ev;
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            let name = match k.as_ref() {
                "message" => None,
                "type" => Some("error.type"),
                "code" => Some("error.code"),
                // An Anthropic body nests the object: {"type":"error","error":{…}}.
                "error" => {
                    map.next_value_seed(ErrorSeed { ev: &mut *ev })?;
                    continue;
                }
                _ => {
                    map.next_value::<Skip>()?;
                    continue;
                }
            };
            let v = match map.next_value::<Scalar<'de>>()? {
                Scalar::Str(s) => s,
                Scalar::Null => continue,
                n @ (Scalar::U64(_) | Scalar::I64(_)) => std::borrow::Cow::Owned(show(&n)),
                other => {
                    return Err(de::Error::custom(format!(
                        "field `error.{k}`: expected a string, found {}",
                        other.kind()
                    )));
                }
            };
            match name {
                None => ev.error = Some(v),
                Some(n) if v != "error" => ev.set_property(std::borrow::Cow::Borrowed(n), v),
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// The fields of the schema, so each key is matched against names once.
#[derive(Clone, Copy, PartialEq)]
enum Field {
    RequestId,
    CreatedAt,
    Provider,
    Model,
    Status,
    LatencyMs,
    TtftMs,
    PromptTokens,
    CompletionTokens,
    CacheReadTokens,
    CacheWriteTokens,
    ReasoningTokens,
    CostUsd,
    CacheHit,
    UserId,
    SessionId,
    SessionName,
    SessionPath,
    Retry,
    Feedback,
    Seq,
}

/// What a top-level key names. One match for every key, so a field's key is compared
/// once rather than after `properties` and `error` were ruled out.
enum Member {
    Field(Field),
    /// `properties`: a map of custom properties.
    Properties,
    /// `error`: a string or an error object.
    Error,
    /// A key tokentop does not read; its value is checked and skipped.
    Unknown,
}

impl Member {
    fn of(key: &str) -> Member {
        use Field::*;
        Member::Field(match key {
            "request_id" => RequestId,
            "created_at" => CreatedAt,
            "provider" => Provider,
            "model" => Model,
            "status" => Status,
            "latency_ms" => LatencyMs,
            "ttft_ms" => TtftMs,
            "prompt_tokens" => PromptTokens,
            "completion_tokens" => CompletionTokens,
            "cache_read_tokens" => CacheReadTokens,
            "cache_write_tokens" => CacheWriteTokens,
            "reasoning_tokens" => ReasoningTokens,
            "cost_usd" => CostUsd,
            "cache_hit" => CacheHit,
            "user_id" => UserId,
            "session_id" => SessionId,
            "session_name" => SessionName,
            "session_path" => SessionPath,
            "retry" => Retry,
            "feedback" => Feedback,
            "seq" => Seq,
            "properties" => return Member::Properties,
            "error" => return Member::Error,
            _ => return Member::Unknown,
        })
    }
}

/// Applies one known field's value with that field's rules. `null` means absent.
fn set_field<'de>(
    ev: &mut Event<'de>,
    created_at: &mut Option<Micros>,
    field: Field,
    key: &str,
    v: Scalar<'de>,
) -> Result<(), Box<str>> {
    use Field::*;
    let bad = |expected: &str, v: &Scalar| -> Box<str> {
        format!("field `{key}`: expected {expected}, found {}", show(v)).into()
    };
    match field {
        CreatedAt => {
            *created_at = match v {
                Scalar::Null => None,
                Scalar::Str(s) => Some(time::parse_rfc3339(&s).map_err(|e| format!("field `created_at`: {e}"))?),
                Scalar::U64(n) => Some(n.saturating_mul(1000).min(i64::MAX as u64) as i64),
                Scalar::I64(n) => Some(n.saturating_mul(1000)),
                Scalar::F64(f) => Some(time::from_epoch_ms(f).map_err(|e| format!("field `created_at`: {e}"))?),
                other => return Err(bad("an RFC 3339 string or epoch milliseconds", &other)),
            }
        }
        Status => {
            ev.status = match integer(&v) {
                Ok(None) => 200,
                Ok(Some(n)) if n <= 999 => n as u16,
                Ok(Some(_)) => return Err(format!("field `status`: {} is not an HTTP status (0–999)", show(&v)).into()),
                Err(()) => return Err(bad("an integer HTTP status", &v)),
            }
        }
        LatencyMs | TtftMs => {
            let d = duration(&v).map_err(|()| bad("a number of milliseconds between 0 and 1e12", &v))?;
            if field == LatencyMs { ev.latency_ms = d } else { ev.ttft_ms = d }
        }
        CostUsd => {
            ev.cost_usd = match v {
                Scalar::Null => None,
                Scalar::U64(n) => Some(n as f64),
                Scalar::F64(f) if f.is_finite() && f >= 0.0 => Some(f),
                other => return Err(bad("a finite number of USD ≥ 0", &other)),
            }
        }
        PromptTokens | CompletionTokens | CacheReadTokens | CacheWriteTokens | ReasoningTokens | Retry | Seq => {
            let n = integer(&v).map_err(|()| bad("a non-negative integer", &v))?;
            match field {
                PromptTokens => ev.prompt_tokens = n.unwrap_or(0),
                CompletionTokens => ev.completion_tokens = n.unwrap_or(0),
                CacheReadTokens => ev.cache_read_tokens = n.unwrap_or(0),
                CacheWriteTokens => ev.cache_write_tokens = n.unwrap_or(0),
                ReasoningTokens => ev.reasoning_tokens = n.unwrap_or(0),
                Retry => ev.retry = n.unwrap_or(0),
                _ => ev.seq = n,
            }
        }
        CacheHit | Feedback => {
            let b = match v {
                Scalar::Null => None,
                Scalar::Bool(b) => Some(b),
                other => return Err(bad("true or false", &other)),
            };
            if field == CacheHit { ev.cache_hit = b.unwrap_or(false) } else { ev.feedback = b }
        }
        RequestId | Provider | Model | UserId | SessionId | SessionName | SessionPath => {
            let s = match v {
                Scalar::Null => None,
                Scalar::Str(s) => Some(s),
                other => return Err(bad("a string", &other)),
            };
            match field {
                RequestId => ev.request_id = s,
                Provider => ev.provider = s,
                Model => ev.model = s,
                UserId => ev.user_id = s,
                SessionId => ev.session_id = s,
                SessionName => ev.session_name = s,
                _ => ev.session_path = s,
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Event<'_>, ParseError> {
        NativeParser::new().parse(line.as_bytes())
    }

    fn err(line: &str) -> String {
        match parse(line) {
            Err(ParseError::Invalid(m)) => m,
            other => panic!("expected an error for {line}, got {other:?}"),
        }
    }

    #[test]
    fn full_event() {
        let e = parse(
            r#"{"request_id":"r1","created_at":"2024-05-01T12:00:00.250Z","provider":"openai","model":"gpt-4o",
            "status":429,"latency_ms":812.5,"ttft_ms":120,"prompt_tokens":1000,"completion_tokens":200.0,
            "cache_read_tokens":300,"cache_write_tokens":0,"reasoning_tokens":50,"cost_usd":0.0123,"cache_hit":false,
            "user_id":"u-1","session_id":"s-1","session_name":"chat","session_path":"/a/b",
            "properties":{"Feature":"search","Environment":"prod"},"retry":1,"feedback":true,"error":"rate limited","seq":7,
            "unknown":{"nested":[1,2,{"x":null}]}}"#,
        )
        .unwrap();
        assert_eq!(e.request_id.as_deref(), Some("r1"));
        assert_eq!(e.created_at, 1_714_564_800_250_000);
        assert_eq!((e.provider(), e.model(), e.status), ("openai", "gpt-4o", 429));
        assert_eq!((e.latency_ms, e.ttft_ms), (Some(812.5), Some(120.0)));
        assert_eq!(
            (e.prompt_tokens, e.completion_tokens, e.cache_read_tokens, e.reasoning_tokens),
            (1000, 200, 300, 50)
        );
        assert_eq!(e.cost_usd, Some(0.0123));
        assert_eq!(
            (e.user(), e.session(), e.retry, e.feedback, e.seq),
            (Some("u-1"), Some("s-1"), 1, Some(true), Some(7))
        );
        assert_eq!(e.properties.len(), 2);
        assert_eq!(e.properties[1], (Cow::Borrowed("Environment"), Cow::Borrowed("prod")));
        assert!(matches!(e.model, Some(Cow::Borrowed(_))), "strings borrow from the line");
    }

    #[test]
    fn defaults_and_nulls() {
        let e = parse(r#"{"created_at":1714564800000,"status":null,"model":null,"latency_ms":null}"#).unwrap();
        assert_eq!(e.created_at, 1_714_564_800_000_000);
        assert_eq!((e.status, e.model(), e.provider(), e.latency_ms), (200, "unknown", "unknown", None));
        let e = parse(r#"{"created_at":1714564800000.5}"#).unwrap();
        assert_eq!(e.created_at, 1_714_564_800_000_500);
    }

    #[test]
    fn duplicate_keys_last_wins() {
        let e = parse(r#"{"created_at":1,"model":"a","model":"b","properties":{"k":"1","k":"2"}}"#).unwrap();
        assert_eq!(e.model(), "b");
        assert_eq!(e.properties, vec![(Cow::Borrowed("k"), Cow::Borrowed("2"))]);
    }

    #[test]
    fn escaped_strings_are_owned() {
        let e = parse(r#"{"created_at":1,"user_id":"a\"b\u00e9"}"#).unwrap();
        assert_eq!(e.user(), Some("a\"bé"));
    }

    #[test]
    fn rejects_what_the_contract_rejects() {
        assert!(err(r#"{"model":"x"}"#).contains("created_at"));
        assert!(err(r#"{"created_at":"2024-05-01T12:00:00"}"#).contains("UTC offset"));
        assert!(err(r#"{"created_at":"1714564800000"}"#).contains("created_at"));
        assert!(err(r#"{"created_at":1,"status":"200"}"#).contains("`status`"));
        assert!(err(r#"{"created_at":1,"status":200.5}"#).contains("`status`"));
        assert!(err(r#"{"created_at":1,"status":true}"#).contains("`status`"));
        assert!(err(r#"{"created_at":1,"prompt_tokens":-1}"#).contains("`prompt_tokens`"));
        assert!(err(r#"{"created_at":1,"latency_ms":-5}"#).contains("`latency_ms`"));
        assert!(err(r#"{"created_at":1,"latency_ms":1e13}"#).contains("`latency_ms`"));
        assert!(err(r#"{"created_at":1,"cost_usd":-0.1}"#).contains("`cost_usd`"));
        assert!(err(r#"{"created_at":1,"cache_hit":"yes"}"#).contains("`cache_hit`"));
        assert!(err(r#"{"created_at":1,"model":5}"#).contains("`model`"));
        assert!(err(r#"{"created_at":1,"properties":{"k":5}}"#).contains("property `k`"));
        assert!(err(r#"{"created_at":1,"properties":[1]}"#).contains("properties"));
        assert!(!err(r#"[{"created_at":1}]"#).is_empty());
        assert!(!err(r#"{"created_at":1} x"#).is_empty());
        assert!(!err(r#"{"created_at":1"#).is_empty());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!(r#"{{"created_at":1,"x":{}{}}}"#, "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse(&deep).is_err());
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut line = br#"{"created_at":1,"model":""#.to_vec();
        line.extend_from_slice(&[0xff, 0xfe]);
        line.extend_from_slice(br#""}"#);
        assert!(NativeParser::new().parse(&line).is_err());
    }

    #[test]
    fn write_then_parse_round_trips() {
        let mut synth = crate::synth::Synth::new(3, 1_714_564_800_000_000, 50.0);
        let mut p = NativeParser::new();
        let mut line = Vec::new();
        for _ in 0..500 {
            let ev = synth.next_event();
            line.clear();
            write_line(&ev, &mut line);
            let back = p.parse(line.strip_suffix(b"\n").unwrap()).unwrap();
            // created_at is written with microsecond precision, like it is held.
            assert_eq!(back, ev);
        }
    }

    #[test]
    fn parser_reuses_its_property_buffer() {
        let mut p = NativeParser::new();
        let e = p.parse(br#"{"created_at":1,"properties":{"a":"1","b":"2"}}"#).unwrap();
        let ptr = e.properties.as_ptr() as usize;
        p.recycle(e);
        let e = p.parse(br#"{"created_at":1,"properties":{"c":"3"}}"#).unwrap();
        assert_eq!(e.properties.as_ptr() as usize, ptr);
        assert_eq!(e.properties.len(), 1);
    }
}
