//! LiteLLM's standard logging payload: one JSON object per line, as a LiteLLM proxy
//! callback or its spend logs write it.
//!
//! Mapping: `id` → `request_id`; `startTime` (epoch seconds) → `created_at`;
//! `endTime − startTime` → `latency_ms`; for streamed calls `completionStartTime −
//! startTime` → `ttft_ms`; `model`; `custom_llm_provider` → provider; `status`
//! `success` → 200, `failure` → `error_information.error_code`, else 500;
//! `prompt_tokens` (it already includes cached tokens) and `completion_tokens` as they
//! are; cache and reasoning tokens from the usage object (`metadata.usage_object` or
//! `response.usage`): `prompt_tokens_details.cached_tokens` or
//! `cache_read_input_tokens`, `cache_creation_input_tokens`,
//! `completion_tokens_details.reasoning_tokens`; `response_cost` → `cost_usd`;
//! `cache_hit`; `end_user` → `user_id` (empty is no user); `session_id` (top level or
//! in metadata); `model_group`, `call_type`, `request_tags` (joined with commas) and
//! the string values of `metadata` become properties, except those that could
//! identify a credential (keys with `hash`, `secret`, `password`, `token`,
//! `authorization`, or an API key other than its alias, user, team or org id).

use std::borrow::Cow;
use std::fmt;

use serde::Deserializer as _;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use super::json::{
    Key, Notes, Scalar, Skip, Skippable, Stamp, is_absent, loose_str, loosen, want_bool, want_count, want_nonneg,
    want_time,
};
use super::scan;
use crate::event::Event;
use crate::time::MICROS_PER_SEC;

/// Parses a payload or spend-log row into `ev`. A field that cannot be read is noted in
/// `notes` and lost; the record is rejected only without a readable `startTime`.
pub(crate) fn parse_into<'de>(text: &'de str, ev: &mut Event<'de>, notes: &mut Notes) -> Result<(), scan::Error> {
    let mut de = scan::Scanner::new(text);
    de.deserialize_map(PayloadVisitor { ev, notes })?;
    de.end()
}

#[derive(Default)]
struct Pending<'de> {
    start: Option<Stamp>,
    start_error: Option<String>,
    end: Option<Stamp>,
    first_token: Option<Stamp>,
    stream: Option<bool>,
    failed: Option<bool>,
    error_code: Option<u16>,
    error_message: Option<Cow<'de, str>>,
    usage: Usage,
}

/// Cache and reasoning counts, under every name LiteLLM passes on from providers. A
/// count is the largest seen under any of its names, so that `cached_tokens: 0` does
/// not hide `cache_read_input_tokens: 1000`.
#[derive(Default, Clone, Copy)]
struct Usage {
    cache_read: Option<u64>,
    cache_write: Option<u64>,
    reasoning: Option<u64>,
}

fn most(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

impl Usage {
    fn merge(self, o: Usage) -> Usage {
        Usage {
            cache_read: most(self.cache_read, o.cache_read),
            cache_write: most(self.cache_write, o.cache_write),
            reasoning: most(self.reasoning, o.reasoning),
        }
    }
}

struct PayloadVisitor<'e, 'de> {
    ev: &'e mut Event<'de>,
    notes: &'e mut Notes,
}

impl<'de> Visitor<'de> for PayloadVisitor<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a LiteLLM logging payload (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (ev, notes) = (self.ev, self.notes);
        let mut p = Pending::default();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match key.as_ref() {
                "metadata" => map.next_value_seed(Metadata { ev: &mut *ev, p: &mut p, notes: &mut *notes })?,
                "response" => {
                    let u = map.next_value_seed(ResponseUsage { notes: &mut *notes })?;
                    p.usage = p.usage.merge(u);
                }
                "error_information" => map.next_value_seed(ErrorInfo { p: &mut p })?,
                "request_tags" => {
                    if let Some(tags) = map.next_value_seed(Tags)? {
                        ev.set_property(Cow::Borrowed("tags"), Cow::Owned(tags));
                    }
                }
                k if is_field(k) => {
                    let v: Scalar<'de> = map.next_value()?;
                    if let Err(e) = set(ev, &mut p, k, v) {
                        if k == "startTime" {
                            p.start_error = Some(e);
                        } else {
                            notes.field(e);
                        }
                    }
                }
                // messages, model_parameters, hidden_params, …
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        let start = match (p.start, p.start_error.take()) {
            (Some(s), _) => s,
            (None, Some(e)) => return Err(de::Error::custom(e)),
            (None, None) => return Err(de::Error::custom("missing required field `startTime`")),
        };
        notes.naive_time = start.naive;
        finish(ev, p, start);
        Ok(())
    }
}

fn is_field(k: &str) -> bool {
    matches!(
        k,
        "id" | "request_id"
            | "startTime"
            | "endTime"
            | "completionStartTime"
            | "stream"
            | "status"
            | "model"
            | "custom_llm_provider"
            | "prompt_tokens"
            | "completion_tokens"
            | "response_cost"
            | "spend"
            | "cache_hit"
            | "end_user"
            | "session_id"
            | "error_str"
            | "model_group"
            | "call_type"
            | "team_id"
    )
}

fn set<'de>(ev: &mut Event<'de>, p: &mut Pending<'de>, key: &str, v: Scalar<'de>) -> Result<(), String> {
    let secs = MICROS_PER_SEC as f64;
    let want_str = loose_str;
    match key {
        "id" | "request_id" => ev.request_id = want_str(key, v)?.or(ev.request_id.take()),
        "startTime" => p.start = want_time(key, &v, secs)?,
        "endTime" => p.end = want_time(key, &v, secs)?,
        "completionStartTime" => p.first_token = want_time(key, &v, secs)?,
        "stream" => p.stream = want_bool(key, &loosen(v))?,
        "status" => {
            p.failed = match want_str(key, v)?.as_deref() {
                None => None,
                Some("success") => Some(false),
                Some("failure") => Some(true),
                Some(other) => return Err(format!("field `status`: expected success or failure, found `{other}`")),
            }
        }
        "model" => ev.model = want_str(key, v)?,
        "custom_llm_provider" => ev.provider = want_str(key, v)?,
        "prompt_tokens" => ev.prompt_tokens = want_count(key, &loosen(v))?.unwrap_or(0),
        "completion_tokens" => ev.completion_tokens = want_count(key, &loosen(v))?.unwrap_or(0),
        // `response_cost` (payloads) and `spend` (spend logs) are both what the call cost.
        "response_cost" | "spend" => {
            if let Some(c) = want_nonneg(key, &loosen(v))? {
                ev.cost_usd = Some(c);
            }
        }
        "cache_hit" => ev.cache_hit = want_bool(key, &loosen(v))?.unwrap_or(false),
        "end_user" => ev.user_id = want_str(key, v)?,
        "session_id" => {
            if let Some(s) = want_str(key, v)? {
                ev.session_id = Some(s);
            }
        }
        "error_str" => p.error_message = p.error_message.take().or(want_str(key, v)?),
        "model_group" | "call_type" | "team_id" => {
            if let Some(s) = want_str(key, v)? {
                let name = match key {
                    "call_type" => "call_type",
                    "team_id" => "team_id",
                    _ => "model_group",
                };
                ev.set_property(Cow::Borrowed(name), s);
            }
        }
        _ => unreachable!("is_field lists every key handled here"),
    }
    Ok(())
}

fn finish<'de>(ev: &mut Event<'de>, p: Pending<'de>, start: Stamp) {
    ev.created_at = start.micros;
    // Durations only between times written the same way (both naive, or both not).
    let same = |t: Option<Stamp>| t.filter(|t| t.naive == start.naive && t.micros >= start.micros).map(|t| t.micros);
    let end = same(p.end);
    if let Some(end) = end {
        ev.latency_ms = Some((end - start.micros) as f64 / 1000.0);
    }
    // LiteLLM sets completionStartTime to endTime for calls that were not streamed:
    // a first token is measured only for a stream, and only before the end.
    if p.stream != Some(false)
        && let Some(first) = same(p.first_token)
        && end.is_none_or(|end| first < end)
    {
        ev.ttft_ms = Some((first - start.micros) as f64 / 1000.0);
    }
    ev.status = match p.failed {
        Some(true) => p.error_code.unwrap_or(500),
        _ => 200,
    };
    if p.failed == Some(true) {
        ev.error = p.error_message;
    }
    ev.cache_read_tokens = p.usage.cache_read.unwrap_or(0);
    ev.cache_write_tokens = p.usage.cache_write.unwrap_or(0);
    ev.reasoning_tokens = p.usage.reasoning.unwrap_or(0);
}

/// Whether a metadata key may be shown: nothing that could identify a credential.
fn shareable(key: &str) -> bool {
    let k = key.as_bytes();
    let has = |w: &str| k.windows(w.len()).any(|x| x.eq_ignore_ascii_case(w.as_bytes()));
    if ["hash", "secret", "password", "token", "authorization"].iter().any(|w| has(w)) {
        return false;
    }
    if has("api_key") {
        return ["_alias", "_user_id", "_team_id", "_team_alias", "_org_id", "_end_user_id"]
            .iter()
            .any(|s| k.len() >= s.len() && k[k.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes()));
    }
    true
}

/// Parses a field that a spend log stores as a JSON string (`metadata`,
/// `request_tags`) and reads it with `seed`, as if it had been inline.
fn from_json_string<'de, S: DeserializeSeed<'de>>(seed: S, s: &str) -> Result<S::Value, serde_json::Error> {
    let value: serde_json::Value = serde_json::from_str(s)?;
    seed.deserialize(value)
}

struct Metadata<'e, 'de> {
    ev: &'e mut Event<'de>,
    p: &'e mut Pending<'de>,
    notes: &'e mut Notes,
}

impl<'de> DeserializeSeed<'de> for Metadata<'_, 'de> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Metadata<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("field `metadata`: an object")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    /// Spend logs store `metadata` as a JSON string.
    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        if is_absent(s) {
            return Ok(());
        }
        let Metadata { ev, p, notes } = self;
        if let Err(e) = from_json_string(Metadata { ev, p, notes: &mut *notes }, s) {
            notes.field(format!("field `metadata`: a string that is not a JSON object ({e})"));
        }
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            match k.as_ref() {
                "usage_object" | "additional_usage_values" => {
                    let u = map.next_value_seed(UsageSeed { notes: &mut *self.notes })?;
                    self.p.usage = self.p.usage.merge(u);
                }
                "error_information" => map.next_value_seed(ErrorInfo { p: &mut *self.p })?,
                "session_id" => {
                    if let Skippable::Str(s) = map.next_value()?
                        && !is_absent(&s)
                    {
                        self.ev.session_id.get_or_insert(s);
                    }
                }
                _ => match map.next_value()? {
                    Skippable::Str(v) if !is_absent(&v) && shareable(&k) => self.ev.set_property(k, v),
                    _ => {}
                },
            }
        }
        Ok(())
    }
}
/// The `usage` object inside `response`; everything else in it is passed over.
struct ResponseUsage<'n> {
    notes: &'n mut Notes,
}

impl<'de> DeserializeSeed<'de> for ResponseUsage<'_> {
    type Value = Usage;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Usage, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ResponseUsage<'_> {
    type Value = Usage;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("field `response`")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Usage, A::Error> {
        let mut usage = Usage::default();
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            if k == "usage" {
                usage = map.next_value_seed(UsageSeed { notes: &mut *self.notes })?;
            } else {
                map.next_value::<Skip>()?;
            }
        }
        Ok(usage)
    }
    fn visit_unit<E>(self) -> Result<Usage, E> {
        Ok(Usage::default())
    }
    /// Spend logs store the response as a JSON string (or `{}`), usually without usage.
    fn visit_str<E>(self, s: &str) -> Result<Usage, E> {
        if is_absent(s) || !s.contains("usage") {
            return Ok(Usage::default());
        }
        Ok(from_json_string(ResponseUsage { notes: &mut *self.notes }, s).unwrap_or_default())
    }
    fn visit_bool<E>(self, _: bool) -> Result<Usage, E> {
        Ok(Usage::default())
    }
    fn visit_u64<E>(self, _: u64) -> Result<Usage, E> {
        Ok(Usage::default())
    }
    fn visit_i64<E>(self, _: i64) -> Result<Usage, E> {
        Ok(Usage::default())
    }
    fn visit_f64<E>(self, _: f64) -> Result<Usage, E> {
        Ok(Usage::default())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Usage, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Usage::default())
    }
}

/// An OpenAI-, Anthropic- or Gemini-style usage object, as LiteLLM passes it on.
struct UsageSeed<'n> {
    notes: &'n mut Notes,
}

impl<'de> DeserializeSeed<'de> for UsageSeed<'_> {
    type Value = Usage;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Usage, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UsageSeed<'_> {
    type Value = Usage;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a usage object")
    }
    fn visit_unit<E>(self) -> Result<Usage, E> {
        Ok(Usage::default())
    }
    fn visit_str<E>(self, s: &str) -> Result<Usage, E> {
        if is_absent(s) {
            return Ok(Usage::default());
        }
        Ok(from_json_string(UsageSeed { notes: &mut *self.notes }, s).unwrap_or_default())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Usage, A::Error> {
        let mut u = Usage::default();
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            match k.as_ref() {
                "prompt_tokens_details" | "completion_tokens_details" => {
                    let d = map.next_value_seed(Details { notes: &mut *self.notes })?;
                    u = u.merge(d);
                }
                "cache_read_input_tokens" | "cachedContentTokenCount" | "cached_tokens" => {
                    u.cache_read = most(u.cache_read, count(self.notes, &k, map.next_value()?));
                }
                "cache_creation_input_tokens" | "cache_creation_tokens" => {
                    u.cache_write = most(u.cache_write, count(self.notes, &k, map.next_value()?));
                }
                "reasoning_tokens" | "thoughtsTokenCount" => {
                    u.reasoning = most(u.reasoning, count(self.notes, &k, map.next_value()?));
                }
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(u)
    }
}

/// A token count inside a usage object; one that cannot be read is noted and lost.
fn count(notes: &mut Notes, key: &str, v: Scalar) -> Option<u64> {
    notes.keep(want_count(key, &loosen(v)))
}

/// `prompt_tokens_details` / `completion_tokens_details`: `cached_tokens`,
/// `cache_creation_tokens`, `reasoning_tokens`.
struct Details<'n> {
    notes: &'n mut Notes,
}

impl<'de> DeserializeSeed<'de> for Details<'_> {
    type Value = Usage;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Usage, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Details<'_> {
    type Value = Usage;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a token details object")
    }
    fn visit_unit<E>(self) -> Result<Usage, E> {
        Ok(Usage::default())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Usage, A::Error> {
        let mut u = Usage::default();
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            match k.as_ref() {
                "cached_tokens" => u.cache_read = most(u.cache_read, count(self.notes, &k, map.next_value()?)),
                "cache_creation_tokens" => {
                    u.cache_write = most(u.cache_write, count(self.notes, &k, map.next_value()?))
                }
                "reasoning_tokens" => u.reasoning = most(u.reasoning, count(self.notes, &k, map.next_value()?)),
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(u)
    }
}

struct ErrorInfo<'p, 'de> {
    p: &'p mut Pending<'de>,
}

impl<'de> DeserializeSeed<'de> for ErrorInfo<'_, 'de> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ErrorInfo<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("field `error_information`: an object")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            match k.as_ref() {
                "error_code" => {
                    // An HTTP status as a number or a numeric string; anything else is no code.
                    self.p.error_code = match loosen(map.next_value::<Scalar>()?) {
                        Scalar::U64(n) if n <= 999 => Some(n as u16),
                        _ => None,
                    }
                }
                "error_message" => {
                    if let Skippable::Str(m) = map.next_value()?
                        && !is_absent(&m)
                    {
                        self.p.error_message = Some(m);
                    }
                }
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(())
    }
}

/// `request_tags`: a list of strings (or, in spend logs, that list as a JSON string),
/// joined with commas.
struct Tags;

impl<'de> DeserializeSeed<'de> for Tags {
    type Value = Option<String>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Tags {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("field `request_tags`: a list of strings")
    }
    fn visit_unit<E>(self) -> Result<Option<String>, E> {
        Ok(None)
    }
    fn visit_str<E>(self, s: &str) -> Result<Option<String>, E> {
        if is_absent(s) {
            return Ok(None);
        }
        Ok(from_json_string(Tags, s).unwrap_or_else(|_| Some(s.to_string())))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<String>, A::Error> {
        while map.next_entry::<de::IgnoredAny, Skip>()?.is_some() {}
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<String>, A::Error> {
        let mut out = String::new();
        while let Some(t) = seq.next_element::<Skippable>()? {
            if let Skippable::Str(t) = t {
                if !out.is_empty() {
                    out.push(',');
                }
                out.push_str(&t);
            }
        }
        Ok((!out.is_empty()).then_some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Event<'_>, scan::Error> {
        parse_noted(line).map(|(ev, _)| ev)
    }

    fn parse_noted(line: &str) -> Result<(Event<'_>, Notes), scan::Error> {
        let mut ev = Event::with_properties(Vec::new());
        let mut notes = Notes::default();
        parse_into(line, &mut ev, &mut notes).map(|()| (ev, notes))
    }

    #[test]
    fn maps_a_streamed_success() {
        let e = parse(
            r#"{"id":"chatcmpl-1","trace_id":"t","call_type":"acompletion","stream":true,"status":"success",
            "startTime":1740823200.0,"endTime":1740823201.25,"completionStartTime":1740823200.4,
            "model":"gpt-4o","model_group":"gpt-4o","custom_llm_provider":"openai","prompt_tokens":1000,
            "completion_tokens":200,"total_tokens":1200,"response_cost":0.0045,"cache_hit":null,"saved_cache_cost":0.0,
            "end_user":"carol","session_id":null,"request_tags":["prod","search"],
            "metadata":{"user_api_key_hash":"88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b",
              "user_api_key_alias":"search-svc","user_api_key_team_alias":"search","user_api_key_user_id":"u-7",
              "session_id":"sess-3","spend_logs_metadata":null,
              "usage_object":{"prompt_tokens":1000,"completion_tokens":200,"prompt_tokens_details":{"cached_tokens":600},
                "completion_tokens_details":{"reasoning_tokens":50}}},
            "response":{"id":"x","choices":[]}, "error_information":{"error_code":"","error_message":""}}"#,
        )
        .unwrap();
        assert_eq!(e.created_at, 1_740_823_200_000_000);
        assert_eq!((e.latency_ms, e.ttft_ms, e.status), (Some(1250.0), Some(400.0), 200));
        assert_eq!(
            (e.model(), e.provider(), e.user(), e.session()),
            ("gpt-4o", "openai", Some("carol"), Some("sess-3"))
        );
        assert_eq!((e.prompt_tokens, e.cache_read_tokens, e.reasoning_tokens), (1000, 600, 50));
        assert_eq!(e.cost_usd, Some(0.0045));
        let keys: Vec<&str> = e.properties.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(
            keys,
            vec![
                "call_type",
                "model_group",
                "tags",
                "user_api_key_alias",
                "user_api_key_team_alias",
                "user_api_key_user_id"
            ]
        );
        assert!(!e.properties.iter().any(|(_, v)| v.contains("88dc28")), "the key hash never becomes a property");
    }

    #[test]
    fn failures_take_their_code() {
        let e = parse(r#"{"status":"failure","startTime":1,"endTime":2,"error_information":{"error_code":"429","error_message":"rate limited"},"end_user":""}"#).unwrap();
        assert_eq!((e.status, e.error.as_deref(), e.user()), (429, Some("rate limited"), None));
        let e = parse(r#"{"status":"failure","startTime":1,"error_information":{"error_code":null}}"#).unwrap();
        assert_eq!(e.status, 500);
        let e = parse(r#"{"status":"success","startTime":1,"stream":false,"completionStartTime":1.5,"endTime":2,"response":{"usage":{"cache_read_input_tokens":7,"cache_creation_input_tokens":3}}}"#).unwrap();
        assert_eq!((e.ttft_ms, e.cache_read_tokens, e.cache_write_tokens), (None, 7, 3));
    }

    #[test]
    fn a_field_that_cannot_be_read_loses_the_field_not_the_record() {
        let (e, notes) = parse_noted(r#"{"startTime":1,"response_cost":"cheap","status":"meh","model":"m"}"#).unwrap();
        assert_eq!((e.model(), e.cost_usd, e.status), ("m", None, 200));
        assert_eq!(notes.field_errors, 2);
        assert!(notes.first.as_deref().unwrap().contains("`response_cost`"), "{:?}", notes.first);
        assert!(parse(r#"{"model":"x"}"#).unwrap_err().to_string().contains("startTime"));
    }

    #[test]
    fn spend_log_rows() {
        // The LiteLLM_SpendLogs shape: naive times, strings for cache_hit, metadata and tags.
        let (e, notes) = parse_noted(
            r#"{"request_id":"chatcmpl-9","call_type":"acompletion","api_key":"88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b","spend":0.00042,"total_tokens":"1300","prompt_tokens":"1200","completion_tokens":"100","startTime":"2025-01-24 09:20:46.847371","endTime":"2025-01-24 09:20:48.347371","completionStartTime":"2025-01-24 09:20:48.347371","model":"gpt-4o-mini","model_group":"gpt-4o-mini","custom_llm_provider":"openai","user":"","metadata":"{\"user_api_key_alias\": \"search-svc\", \"user_api_key\": \"88dc28\", \"additional_usage_values\": {\"prompt_tokens_details\": {\"cached_tokens\": 0}, \"cache_read_input_tokens\": 1000}}","cache_hit":"None","cache_key":"Cache OFF","request_tags":"[\"prod\", \"search\"]","team_id":"","end_user":"","requester_ip_address":"","status":"success","session_id":"None"}"#,
        )
        .unwrap();
        assert_eq!(notes.field_errors, 0, "{:?}", notes.first);
        assert!(notes.naive_time);
        assert_eq!(e.created_at, crate::time::parse_rfc3339("2025-01-24T09:20:46.847371Z").unwrap());
        assert_eq!((e.latency_ms, e.ttft_ms, e.status, e.cache_hit), (Some(1500.0), None, 200, false));
        assert_eq!((e.prompt_tokens, e.completion_tokens, e.cache_read_tokens), (1200, 100, 1000));
        assert_eq!((e.cost_usd, e.user(), e.session()), (Some(0.00042), None, None));
        assert_eq!(e.request_id.as_deref(), Some("chatcmpl-9"));
        let props: Vec<_> = e.properties.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            props,
            vec![
                "call_type=acompletion",
                "model_group=gpt-4o-mini",
                "user_api_key_alias=search-svc",
                "tags=prod,search"
            ]
        );
    }
}
