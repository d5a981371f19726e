//! OpenTelemetry GenAI spans in OTLP/JSON: one `{"resourceSpans": […]}` export per line,
//! as the OpenTelemetry Collector's file exporter writes them. One line holds many spans.
//!
//! LLM calls are spans whose `gen_ai.operation.name` is `chat`, `text_completion`,
//! `generate_content` or `embeddings` (or whose OpenInference `openinference.span.kind`
//! is `LLM` or `EMBEDDING`); other spans are skipped and counted, not errors.
//!
//! Mapping (semantic conventions first, then OpenLIT / OpenInference variants):
//! `spanId` → `request_id`; `startTimeUnixNano` → `created_at`; end − start →
//! `latency_ms`; model: `gen_ai.response.model`, else `gen_ai.request.model`, else
//! `llm.model_name`; provider: `gen_ai.provider.name`, else `gen_ai.system`, else
//! `llm.provider` / `llm.system`; tokens: `gen_ai.usage.input_tokens` /
//! `llm.token_count.prompt`, `gen_ai.usage.output_tokens` / `llm.token_count.completion`,
//! `gen_ai.usage.cache_read.input_tokens` / `llm.token_count.prompt_details.cache_read`,
//! `gen_ai.usage.cache_creation.input_tokens` / `llm.token_count.prompt_details.cache_write`,
//! `gen_ai.usage.reasoning.output_tokens` / `llm.token_count.completion_details.reasoning`;
//! `gen_ai.response.time_to_first_chunk` (seconds) → `ttft_ms`; `gen_ai.usage.cost`
//! (OpenLIT) or `llm.cost.total` → `cost_usd`; `gen_ai.conversation.id` / `session.id`
//! → session; `user.id` / `enduser.id` → user; the resource's `service.name` → property
//! `service`. Status: `http.response.status_code` if present; else a span with status
//! ERROR is status 0 with `error.type` (or the status message) as the error; else 200.

use std::borrow::Cow;
use std::fmt;

use serde::Deserializer as _;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::json::{Key, Scalar, Skip};
use crate::event::Event;

/// What one line held besides its events.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SpanCounts {
    pub llm: u32,
    pub skipped: u32,
}

/// Parses an export line, calling `emit` with each LLM span as an event. `ev` is the
/// buffer each span is read into (its property buffer is reused).
pub(crate) fn parse_lines<'de>(
    text: &'de str,
    ev: &mut Event<'de>,
    emit: &mut dyn FnMut(&mut Event<'de>),
) -> Result<SpanCounts, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let mut ctx = Ctx { ev, emit, counts: SpanCounts::default(), service: None, seen_root: false };
    de.deserialize_map(Root { ctx: &mut ctx })?;
    de.end()?;
    if !ctx.seen_root {
        return Err(de::Error::custom("missing required field `resourceSpans`"));
    }
    Ok(ctx.counts)
}

struct Ctx<'c, 'de> {
    ev: &'c mut Event<'de>,
    emit: &'c mut dyn FnMut(&mut Event<'de>),
    counts: SpanCounts,
    service: Option<Cow<'de, str>>,
    seen_root: bool,
}

/// Walks `{"resourceSpans": [ {"resource": …, "scopeSpans": [ {"spans": [ … ]} ]} ]}`.
struct Root<'a, 'c, 'de> {
    ctx: &'a mut Ctx<'c, 'de>,
}

impl<'de> Visitor<'de> for Root<'_, '_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an OTLP/JSON export (an object with `resourceSpans`)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            if k == "resourceSpans" {
                self.ctx.seen_root = true;
                map.next_value_seed(Each { ctx: &mut *self.ctx, level: Level::Resource })?;
            } else {
                map.next_value::<Skip>()?;
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Level {
    Resource,
    Scope,
    Span,
}

/// A list of resources, scopes or spans.
struct Each<'a, 'c, 'de> {
    ctx: &'a mut Ctx<'c, 'de>,
    level: Level,
}

impl<'de> DeserializeSeed<'de> for Each<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Each<'_, '_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        loop {
            let more = match self.level {
                Level::Resource => seq.next_element_seed(Container { ctx: &mut *self.ctx, level: Level::Resource })?,
                Level::Scope => seq.next_element_seed(Container { ctx: &mut *self.ctx, level: Level::Scope })?,
                Level::Span => seq.next_element_seed(SpanSeed { ctx: &mut *self.ctx })?,
            };
            if more.is_none() {
                return Ok(());
            }
        }
    }
}

/// One resource (`resource`, `scopeSpans`) or scope (`scope`, `spans`).
struct Container<'a, 'c, 'de> {
    ctx: &'a mut Ctx<'c, 'de>,
    level: Level,
}

impl<'de> DeserializeSeed<'de> for Container<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Container<'_, '_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if self.level == Level::Resource {
            self.ctx.service = None;
        }
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            match (self.level, k.as_ref()) {
                (Level::Resource, "resource") => {
                    self.ctx.service = map.next_value_seed(ResourceService)?;
                }
                (Level::Resource, "scopeSpans" | "instrumentationLibrarySpans") => {
                    map.next_value_seed(Each { ctx: &mut *self.ctx, level: Level::Scope })?;
                }
                (Level::Scope, "spans") => map.next_value_seed(Each { ctx: &mut *self.ctx, level: Level::Span })?,
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(())
    }
}

/// `resource.attributes["service.name"]`.
struct ResourceService;

impl<'de> DeserializeSeed<'de> for ResourceService {
    type Value = Option<Cow<'de, str>>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ResourceService {
    type Value = Option<Cow<'de, str>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a resource")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut service = None;
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            if k == "attributes" {
                let mut attrs = Attrs::default();
                map.next_value_seed(AttrList { attrs: &mut attrs })?;
                service = attrs.service;
            } else {
                map.next_value::<Skip>()?;
            }
        }
        Ok(service)
    }
}

/// The attributes tokentop reads from a span (and a resource).
#[derive(Default)]
struct Attrs<'de> {
    operation: Option<Cow<'de, str>>,
    span_kind: Option<Cow<'de, str>>,
    response_model: Option<Cow<'de, str>>,
    request_model: Option<Cow<'de, str>>,
    model_name: Option<Cow<'de, str>>,
    provider: Option<Cow<'de, str>>,
    system: Option<Cow<'de, str>>,
    input: Option<u64>,
    output: Option<u64>,
    cache_read: Option<u64>,
    cache_write: Option<u64>,
    reasoning: Option<u64>,
    ttft_s: Option<f64>,
    cost: Option<f64>,
    session: Option<Cow<'de, str>>,
    user: Option<Cow<'de, str>>,
    http_status: Option<u64>,
    error_type: Option<Cow<'de, str>>,
    service: Option<Cow<'de, str>>,
}

impl<'de> Attrs<'de> {
    fn set(&mut self, key: &str, v: Scalar<'de>) -> Result<(), String> {
        let s = |v: Scalar<'de>| match v {
            Scalar::Str(s) => Some(s),
            _ => None,
        };
        let n = |v: &Scalar| -> Result<Option<u64>, String> {
            match v {
                Scalar::Str(s) => {
                    s.parse::<u64>().map(Some).map_err(|_| format!("attribute `{key}`: `{s}` is not a count"))
                }
                other => super::json::want_count(key, other).map_err(|e| e.replace("field", "attribute")),
            }
        };
        let f = |v: &Scalar| -> Result<Option<f64>, String> {
            match v {
                Scalar::Str(s) => {
                    s.parse::<f64>().map(Some).map_err(|_| format!("attribute `{key}`: `{s}` is not a number"))
                }
                other => super::json::want_nonneg(key, other).map_err(|e| e.replace("field", "attribute")),
            }
        };
        match key {
            "gen_ai.operation.name" => self.operation = s(v),
            "openinference.span.kind" => self.span_kind = s(v),
            "gen_ai.response.model" => self.response_model = s(v),
            "gen_ai.request.model" => self.request_model = s(v),
            "llm.model_name" => self.model_name = s(v),
            "gen_ai.provider.name" => self.provider = s(v),
            "gen_ai.system" | "llm.provider" | "llm.system" => self.system = self.system.take().or(s(v)),
            "gen_ai.usage.input_tokens" | "gen_ai.usage.prompt_tokens" | "llm.token_count.prompt" => {
                self.input = n(&v)?
            }
            "gen_ai.usage.output_tokens" | "gen_ai.usage.completion_tokens" | "llm.token_count.completion" => {
                self.output = n(&v)?
            }
            "gen_ai.usage.cache_read.input_tokens" | "llm.token_count.prompt_details.cache_read" => {
                self.cache_read = n(&v)?
            }
            "gen_ai.usage.cache_creation.input_tokens" | "llm.token_count.prompt_details.cache_write" => {
                self.cache_write = n(&v)?
            }
            "gen_ai.usage.reasoning.output_tokens" | "llm.token_count.completion_details.reasoning" => {
                self.reasoning = n(&v)?
            }
            "gen_ai.response.time_to_first_chunk" | "gen_ai.server.time_to_first_token" => self.ttft_s = f(&v)?,
            "gen_ai.usage.cost" | "llm.cost.total" => self.cost = f(&v)?,
            "gen_ai.conversation.id" | "session.id" => self.session = self.session.take().or(s(v)),
            "user.id" | "enduser.id" => self.user = self.user.take().or(s(v)),
            "http.response.status_code" => self.http_status = n(&v)?,
            "error.type" => self.error_type = s(v),
            "service.name" => self.service = s(v),
            _ => {}
        }
        Ok(())
    }

    fn is_llm_call(&self) -> bool {
        matches!(self.operation.as_deref(), Some("chat" | "text_completion" | "generate_content" | "embeddings"))
            || matches!(self.span_kind.as_deref(), Some("LLM" | "EMBEDDING"))
    }
}

/// `[{"key": K, "value": {"stringValue": …}}, …]`.
struct AttrList<'a, 'de> {
    attrs: &'a mut Attrs<'de>,
}

impl<'de> DeserializeSeed<'de> for AttrList<'_, 'de> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AttrList<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of attributes")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(kv) = seq.next_element::<KeyValue<'de>>()? {
            if let (Some(k), Some(v)) = (kv.key, kv.value) {
                self.attrs.set(&k, v).map_err(de::Error::custom)?;
            }
        }
        Ok(())
    }
}

struct KeyValue<'de> {
    key: Option<Cow<'de, str>>,
    value: Option<Scalar<'de>>,
}

impl<'de> de::Deserialize<'de> for KeyValue<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an attribute {key, value}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeyValue<'de>, A::Error> {
                let mut kv = KeyValue { key: None, value: None };
                while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
                    match k.as_ref() {
                        "key" => kv.key = Some(map.next_value::<Key<'de>>()?.0),
                        "value" => kv.value = map.next_value_seed(AnyValue)?,
                        _ => {
                            map.next_value::<Skip>()?;
                        }
                    }
                }
                Ok(kv)
            }
        }
        d.deserialize_map(V)
    }
}

/// An OTLP `AnyValue`: `{"stringValue": …}`, `{"intValue": "12"}`, `{"doubleValue": …}`,
/// `{"boolValue": …}`; arrays and key-value lists are passed over.
struct AnyValue;

impl<'de> DeserializeSeed<'de> for AnyValue {
    type Value = Option<Scalar<'de>>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AnyValue {
    type Value = Option<Scalar<'de>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an attribute value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = None;
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            match k.as_ref() {
                "stringValue" | "intValue" | "doubleValue" | "boolValue" => {
                    out = Some(map.next_value::<Scalar<'de>>()?)
                }
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(out)
    }
}

struct SpanSeed<'a, 'c, 'de> {
    ctx: &'a mut Ctx<'c, 'de>,
}

impl<'de> DeserializeSeed<'de> for SpanSeed<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

/// Nanoseconds since the epoch, as OTLP/JSON writes them: a string or a number.
fn nanos(key: &str, v: Scalar) -> Result<Option<i64>, String> {
    match v {
        Scalar::Null => Ok(None),
        Scalar::Str(s) => s.parse::<i64>().map(Some).map_err(|_| format!("field `{key}`: `{s}` is not nanoseconds")),
        Scalar::U64(n) => Ok(Some(n.min(i64::MAX as u64) as i64)),
        Scalar::I64(n) => Ok(Some(n)),
        other => Err(format!("field `{key}`: expected nanoseconds, found {}", super::json::show(&other))),
    }
}

impl<'de> Visitor<'de> for SpanSeed<'_, '_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a span")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut attrs = Attrs::default();
        let (mut start, mut end) = (None, None);
        let mut span_id = None;
        let mut status_error = false;
        let mut status_message = None;
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            match k.as_ref() {
                "attributes" => map.next_value_seed(AttrList { attrs: &mut attrs })?,
                "spanId" => span_id = map.next_value::<Key<'de>>().map(|k| Some(k.0))?,
                "startTimeUnixNano" => start = nanos(&k, map.next_value()?).map_err(de::Error::custom)?,
                "endTimeUnixNano" => end = nanos(&k, map.next_value()?).map_err(de::Error::custom)?,
                "status" => {
                    let (error, message) = map.next_value_seed(Status)?;
                    status_error = error;
                    status_message = message;
                }
                // traceId, name, kind, events, links…: skipped without building strings
                // (serde_json skips iteratively, so deep nesting cannot overflow the stack).
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !attrs.is_llm_call() {
            self.ctx.counts.skipped += 1;
            return Ok(());
        }
        let start = start.ok_or_else(|| de::Error::custom("span without `startTimeUnixNano`"))?;
        let ev = &mut *self.ctx.ev;
        let props = crate::event::recycle_properties(std::mem::take(&mut ev.properties));
        *ev = Event::with_properties(props);
        ev.request_id = span_id;
        ev.created_at = start.div_euclid(1000);
        ev.latency_ms = end.filter(|&e| e >= start).map(|e| (e - start) as f64 / 1e6);
        ev.model = attrs.response_model.or(attrs.request_model).or(attrs.model_name);
        ev.provider = attrs.provider.or(attrs.system);
        ev.prompt_tokens = attrs.input.unwrap_or(0);
        ev.completion_tokens = attrs.output.unwrap_or(0);
        ev.cache_read_tokens = attrs.cache_read.unwrap_or(0);
        ev.cache_write_tokens = attrs.cache_write.unwrap_or(0);
        ev.reasoning_tokens = attrs.reasoning.unwrap_or(0);
        ev.ttft_ms = attrs.ttft_s.map(|s| s * 1000.0);
        ev.cost_usd = attrs.cost;
        ev.session_id = attrs.session;
        ev.user_id = attrs.user;
        ev.status = match (attrs.http_status, status_error) {
            (Some(code), _) => code.min(999) as u16,
            (None, true) => 0,
            (None, false) => 200,
        };
        if ev.status == 0 || ev.status >= 400 {
            ev.error = attrs.error_type.or(status_message);
        }
        if let Some(s) = &self.ctx.service {
            ev.properties.push((Cow::Borrowed("service"), s.clone()));
        }
        self.ctx.counts.llm += 1;
        (self.ctx.emit)(ev);
        Ok(())
    }
}

/// `{"code": 2 | "STATUS_CODE_ERROR", "message": …}` → (is error, message).
struct Status;

impl<'de> DeserializeSeed<'de> for Status {
    type Value = (bool, Option<Cow<'de, str>>);
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Status {
    type Value = (bool, Option<Cow<'de, str>>);
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a span status")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok((false, None))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut error, mut message) = (false, None);
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            match (k.as_ref(), map.next_value::<Scalar<'de>>()?) {
                ("code", Scalar::U64(2)) => error = true,
                ("code", Scalar::Str(s)) if s == "STATUS_CODE_ERROR" => error = true,
                ("message", Scalar::Str(m)) if !m.is_empty() => message = Some(m),
                _ => {}
            }
        }
        Ok((error, message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(k: &str, v: &str) -> String {
        format!(r#"{{"key":"{k}","value":{v}}}"#)
    }

    #[test]
    fn llm_spans_become_events_and_others_are_skipped() {
        let chat = [
            attr("gen_ai.operation.name", r#"{"stringValue":"chat"}"#),
            attr("gen_ai.provider.name", r#"{"stringValue":"azure.ai.openai"}"#),
            attr("gen_ai.request.model", r#"{"stringValue":"gpt-4o"}"#),
            attr("gen_ai.response.model", r#"{"stringValue":"gpt-4o-2024-08-06"}"#),
            attr("gen_ai.usage.input_tokens", r#"{"intValue":"1200"}"#),
            attr("gen_ai.usage.output_tokens", r#"{"intValue":300}"#),
            attr("gen_ai.usage.cache_read.input_tokens", r#"{"intValue":"400"}"#),
            attr("gen_ai.response.time_to_first_chunk", r#"{"doubleValue":0.35}"#),
            attr("gen_ai.conversation.id", r#"{"stringValue":"conv-1"}"#),
            attr("user.id", r#"{"stringValue":"dana"}"#),
            attr("gen_ai.input.messages", r#"{"arrayValue":{"values":[{"stringValue":"hi"}]}}"#),
        ]
        .join(",");
        let failed = [
            attr("gen_ai.operation.name", r#"{"stringValue":"embeddings"}"#),
            attr("gen_ai.system", r#"{"stringValue":"openai"}"#),
            attr("error.type", r#"{"stringValue":"timeout"}"#),
        ]
        .join(",");
        let line = format!(
            r#"{{"resourceSpans":[{{"resource":{{"attributes":[{}]}},"scopeSpans":[{{"scope":{{"name":"x"}},"spans":[
            {{"traceId":"t","spanId":"s1","name":"chat gpt-4o","kind":3,"startTimeUnixNano":"1740823200000000000","endTimeUnixNano":"1740823201500000000","attributes":[{chat}],"status":{{}}}},
            {{"spanId":"s2","name":"http","startTimeUnixNano":"1740823200000000000","attributes":[]}},
            {{"spanId":"s3","startTimeUnixNano":1740823202000000000,"endTimeUnixNano":1740823203000000000,"attributes":[{failed}],"status":{{"code":2,"message":"boom"}}}}
            ]}}]}}]}}"#,
            attr("service.name", r#"{"stringValue":"checkout"}"#)
        );
        let mut ev = Event::with_properties(Vec::new());
        let mut got = Vec::new();
        let counts = parse_lines(&line, &mut ev, &mut |e| {
            got.push((
                e.request_id.as_deref().map(str::to_owned),
                e.model().to_owned(),
                e.provider().to_owned(),
                e.status,
                e.latency_ms,
                e.ttft_ms,
                (e.prompt_tokens, e.completion_tokens, e.cache_read_tokens),
                e.user().map(str::to_owned),
                e.session().map(str::to_owned),
                e.error.as_deref().map(str::to_owned),
                e.properties.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            ))
        })
        .unwrap();
        assert_eq!(counts, SpanCounts { llm: 2, skipped: 1 });
        assert_eq!(got[0].1, "gpt-4o-2024-08-06");
        assert_eq!(got[0].2, "azure.ai.openai", "normalised by the line parser, not here");
        assert_eq!((got[0].3, got[0].4, got[0].5), (200, Some(1500.0), Some(350.0)));
        assert_eq!(got[0].6, (1200, 300, 400));
        assert_eq!((got[0].7.as_deref(), got[0].8.as_deref()), (Some("dana"), Some("conv-1")));
        assert_eq!(got[0].10, vec!["service=checkout"]);
        assert_eq!((got[1].3, got[1].9.as_deref()), (0, Some("timeout")));
    }

    #[test]
    fn not_an_export() {
        let mut ev = Event::with_properties(Vec::new());
        let e = parse_lines(r#"{"spans":[]}"#, &mut ev, &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("resourceSpans"));
    }
}
