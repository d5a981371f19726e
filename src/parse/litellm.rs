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

use super::json::{Key, Scalar, Skip, Skippable, want_bool, want_count, want_nonneg, want_str, want_time};
use crate::event::Event;
use crate::time::{MICROS_PER_SEC, Micros};

pub(crate) fn parse_into<'de>(text: &'de str, ev: &mut Event<'de>) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    de.deserialize_map(PayloadVisitor { ev })?;
    de.end()
}

#[derive(Default)]
struct Pending<'de> {
    start: Option<Micros>,
    end: Option<Micros>,
    first_token: Option<Micros>,
    stream: bool,
    failed: Option<bool>,
    error_code: Option<u16>,
    error_message: Option<Cow<'de, str>>,
    usage: Usage,
}

#[derive(Default, Clone, Copy)]
struct Usage {
    cached: Option<u64>,
    cache_read: Option<u64>,
    cache_write: Option<u64>,
    reasoning: Option<u64>,
}

impl Usage {
    fn or(self, o: Usage) -> Usage {
        Usage {
            cached: self.cached.or(o.cached),
            cache_read: self.cache_read.or(o.cache_read),
            cache_write: self.cache_write.or(o.cache_write),
            reasoning: self.reasoning.or(o.reasoning),
        }
    }
}

struct PayloadVisitor<'e, 'de> {
    ev: &'e mut Event<'de>,
}

impl<'de> Visitor<'de> for PayloadVisitor<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a LiteLLM logging payload (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ev = self.ev;
        let mut p = Pending::default();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match key.as_ref() {
                "metadata" => map.next_value_seed(Metadata { ev: &mut *ev, usage: &mut p.usage })?,
                "response" => {
                    let u = map.next_value_seed(ResponseUsage)?;
                    p.usage = p.usage.or(u);
                }
                "error_information" => map.next_value_seed(ErrorInfo { p: &mut p })?,
                "request_tags" => {
                    if let Some(tags) = map.next_value_seed(Tags)? {
                        ev.set_property(Cow::Borrowed("tags"), Cow::Owned(tags));
                    }
                }
                k if is_field(k) => {
                    let v: Scalar<'de> = map.next_value()?;
                    set(ev, &mut p, k, v).map_err(de::Error::custom)?;
                }
                // messages, model_parameters, hidden_params, …
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        let start = p.start.ok_or_else(|| de::Error::custom("missing required field `startTime`"))?;
        finish(ev, p, start);
        Ok(())
    }
}

fn is_field(k: &str) -> bool {
    matches!(
        k,
        "id" | "startTime"
            | "endTime"
            | "completionStartTime"
            | "stream"
            | "status"
            | "model"
            | "custom_llm_provider"
            | "prompt_tokens"
            | "completion_tokens"
            | "response_cost"
            | "cache_hit"
            | "end_user"
            | "session_id"
            | "error_str"
            | "model_group"
            | "call_type"
    )
}

fn set<'de>(ev: &mut Event<'de>, p: &mut Pending<'de>, key: &str, v: Scalar<'de>) -> Result<(), String> {
    let secs = MICROS_PER_SEC as f64;
    match key {
        "id" => ev.request_id = want_str(key, v)?,
        "startTime" => p.start = want_time(key, &v, secs)?,
        "endTime" => p.end = want_time(key, &v, secs)?,
        "completionStartTime" => p.first_token = want_time(key, &v, secs)?,
        "stream" => p.stream = want_bool(key, &v)?.unwrap_or(false),
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
        "prompt_tokens" => ev.prompt_tokens = want_count(key, &v)?.unwrap_or(0),
        "completion_tokens" => ev.completion_tokens = want_count(key, &v)?.unwrap_or(0),
        "response_cost" => ev.cost_usd = want_nonneg(key, &v)?,
        "cache_hit" => ev.cache_hit = want_bool(key, &v)?.unwrap_or(false),
        "end_user" => ev.user_id = want_str(key, v)?.filter(|u| !u.is_empty()),
        "session_id" => {
            if let Some(s) = want_str(key, v)? {
                ev.session_id = Some(s);
            }
        }
        "error_str" => p.error_message = p.error_message.take().or(want_str(key, v)?),
        "model_group" | "call_type" => {
            if let Some(s) = want_str(key, v)?.filter(|s| !s.is_empty()) {
                let name = if key == "call_type" { "call_type" } else { "model_group" };
                ev.set_property(Cow::Borrowed(name), s);
            }
        }
        _ => unreachable!("is_field lists every key handled here"),
    }
    Ok(())
}

fn finish<'de>(ev: &mut Event<'de>, p: Pending<'de>, start: Micros) {
    ev.created_at = start;
    if let Some(end) = p.end.filter(|&e| e >= start) {
        ev.latency_ms = Some((end - start) as f64 / 1000.0);
    }
    if p.stream
        && let Some(first) = p.first_token.filter(|&f| f >= start)
    {
        ev.ttft_ms = Some((first - start) as f64 / 1000.0);
    }
    ev.status = match p.failed {
        Some(true) => p.error_code.unwrap_or(500),
        _ => 200,
    };
    if p.failed == Some(true) {
        ev.error = p.error_message;
    }
    ev.cache_read_tokens = p.usage.cached.or(p.usage.cache_read).unwrap_or(0);
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

struct Metadata<'e, 'de> {
    ev: &'e mut Event<'de>,
    usage: &'e mut Usage,
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
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            match k.as_ref() {
                "usage_object" => *self.usage = map.next_value_seed(UsageSeed)?.or(*self.usage),
                "session_id" => {
                    if let Skippable::Str(s) = map.next_value()? {
                        self.ev.session_id.get_or_insert(s);
                    }
                }
                _ => match map.next_value()? {
                    Skippable::Str(v) if !v.is_empty() && shareable(&k) => self.ev.set_property(k, v),
                    _ => {}
                },
            }
        }
        Ok(())
    }
}

/// The `usage` object inside `response`; everything else in it is passed over.
struct ResponseUsage;

impl<'de> DeserializeSeed<'de> for ResponseUsage {
    type Value = Usage;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Usage, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ResponseUsage {
    type Value = Usage;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("field `response`")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Usage, A::Error> {
        let mut usage = Usage::default();
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            if k == "usage" {
                usage = map.next_value_seed(UsageSeed)?;
            } else {
                map.next_value::<Skip>()?;
            }
        }
        Ok(usage)
    }
    fn visit_unit<E>(self) -> Result<Usage, E> {
        Ok(Usage::default())
    }
    fn visit_str<E>(self, _: &str) -> Result<Usage, E> {
        Ok(Usage::default())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Usage, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Usage::default())
    }
}

/// An OpenAI- or Anthropic-style usage object.
struct UsageSeed;

impl<'de> DeserializeSeed<'de> for UsageSeed {
    type Value = Usage;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Usage, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UsageSeed {
    type Value = Usage;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a usage object")
    }
    fn visit_unit<E>(self) -> Result<Usage, E> {
        Ok(Usage::default())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Usage, A::Error> {
        let mut u = Usage::default();
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            match k.as_ref() {
                "prompt_tokens_details" => u.cached = map.next_value_seed(Detail("cached_tokens"))?,
                "completion_tokens_details" => u.reasoning = map.next_value_seed(Detail("reasoning_tokens"))?,
                "cache_read_input_tokens" | "cache_creation_input_tokens" => {
                    let v: Scalar = map.next_value()?;
                    let n = want_count(&k, &v).map_err(de::Error::custom)?;
                    if k == "cache_read_input_tokens" { u.cache_read = n } else { u.cache_write = n }
                }
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(u)
    }
}

/// One count inside a `*_tokens_details` object.
struct Detail(&'static str);

impl<'de> DeserializeSeed<'de> for Detail {
    type Value = Option<u64>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<u64>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Detail {
    type Value = Option<u64>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a token details object")
    }
    fn visit_unit<E>(self) -> Result<Option<u64>, E> {
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<u64>, A::Error> {
        let mut out = None;
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            if k == self.0 {
                let v: Scalar = map.next_value()?;
                out = want_count(self.0, &v).map_err(de::Error::custom)?;
            } else {
                map.next_value::<Skip>()?;
            }
        }
        Ok(out)
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
                    self.p.error_code = match map.next_value::<Scalar>()? {
                        Scalar::U64(n) if n <= 999 => Some(n as u16),
                        Scalar::Str(s) => s.trim().parse::<u16>().ok().filter(|n| *n <= 999),
                        _ => None,
                    }
                }
                "error_message" => {
                    if let Skippable::Str(m) = map.next_value()?
                        && !m.is_empty()
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

/// `request_tags`: a list of strings, joined with commas.
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

    fn parse(line: &str) -> Result<Event<'_>, serde_json::Error> {
        let mut ev = Event::with_properties(Vec::new());
        parse_into(line, &mut ev).map(|()| ev)
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
    fn errors_name_the_field() {
        assert!(
            parse(r#"{"startTime":1,"response_cost":"cheap"}"#).unwrap_err().to_string().contains("`response_cost`")
        );
        assert!(parse(r#"{"startTime":1,"status":"meh"}"#).unwrap_err().to_string().contains("`status`"));
        assert!(parse(r#"{"model":"x"}"#).unwrap_err().to_string().contains("startTime"));
    }
}
