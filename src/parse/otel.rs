//! OpenTelemetry GenAI spans in OTLP/JSON, as instrumentations really write them: one
//! `{"resourceSpans": […]}` export per line (the Collector's file exporter), one
//! ResourceSpans per line (Java's `logging-otlp`), or an export nested in a larger
//! document (`{"trace_requests": [{"pbreq": {"resourceSpans": …}}]}`, as oteltest
//! writes it). One line holds many spans.
//!
//! A span is an LLM call when one of these says so (first that applies):
//! LangSmith's `langsmith.span.kind` (`llm`), OpenInference's `openinference.span.kind`
//! (`LLM`, `EMBEDDING`), OpenLLMetry's `traceloop.span.kind` (`workflow`, `task`, `agent`,
//! `tool` are not), the Vercel AI SDK's `ai.*.doGenerate` / `ai.*.doStream` spans (by
//! `ai.operationId` or `operation.name`),
//! `gen_ai.operation.name` (`chat`, `chat.completions`, `text_completion`,
//! `generate_content`, `embeddings`, …; another operation is not), OpenLLMetry's legacy
//! `llm.request.type`, or `gen_ai.system` / `gen_ai.provider.name` with a model or token
//! usage. An LLM span with neither model nor usage (a prompt template) is not a call.
//! Spans that are not calls are skipped and counted by reason ([`SkipReason`]).
//!
//! Mapping: `spanId` → `request_id`; `startTimeUnixNano` → `created_at`; end − start →
//! `latency_ms`; model: `gen_ai.response.model`, `gen_ai.request.model`,
//! `llm.model_name`, `ai.model.id`; provider: `gen_ai.provider.name`, `gen_ai.system`,
//! `llm.provider`, `llm.system`, `ai.model.provider`; tokens under every name in use
//! (semantic conventions, OpenLLMetry, OpenInference, the AI SDK), each the largest seen
//! under its names; `gen_ai.usage.cost`, `gen_ai.cost.total_cost`, `llm.cost.total` →
//! billed cost; TTFT from `gen_ai.response.time_to_first_chunk` or
//! `gen_ai.server.time_to_first_token` (seconds) or `ai.response.msToFirstChunk`, unless
//! the span says it was not streamed; `gen_ai.conversation.id` / `session.id` →
//! session; `user.id` / `enduser.id` / `gen_ai.request.user` → user; the resource's
//! `service.name` → property `service`. Status: `http.response.status_code` if present;
//! else for a span with status ERROR, the status that its `error.type`, exception event
//! or status message names ([`super::errors`]), else 0; else 200.

use std::borrow::Cow;
use std::fmt;

use serde::Deserializer as _;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::SkipReason;
use super::json::{Key, Notes, Scalar, Skip, is_absent};
use crate::event::Event;

/// Where a span sits in its trace.
#[derive(Debug, Default, Clone)]
pub(crate) struct SpanIds<'de> {
    pub(crate) trace: Option<Cow<'de, str>>,
    pub(crate) span: Option<Cow<'de, str>>,
    pub(crate) parent: Option<Cow<'de, str>>,
}

/// What a span turned out to be.
pub(crate) enum Found<'a, 'de> {
    Call(&'a mut Event<'de>),
    Skipped(SkipReason),
}

/// Parses an export, calling `emit` with every span: an LLM call as an event (read into
/// `ev`, whose property buffer is reused), any other span with why it is skipped.
/// Attributes that cannot be read are noted in `notes` and lost.
pub(crate) fn parse_lines<'de>(
    text: &'de str,
    ev: &mut Event<'de>,
    notes: &mut Notes,
    emit: &mut dyn FnMut(SpanIds<'de>, Found<'_, 'de>),
) -> Result<(), super::scan::Error> {
    let mut de = super::scan::Scanner::new(text);
    let mut ctx = Ctx { ev, notes, emit, service: None, seen_root: false };
    de.deserialize_map(Root { ctx: &mut ctx })?;
    de.end()?;
    if !ctx.seen_root {
        return Err(de::Error::custom("missing required field `resourceSpans`"));
    }
    Ok(())
}

struct Ctx<'c, 'de> {
    ev: &'c mut Event<'de>,
    notes: &'c mut Notes,
    emit: &'c mut dyn FnMut(SpanIds<'de>, Found<'_, 'de>),
    service: Option<Cow<'de, str>>,
    seen_root: bool,
}

/// The top of a line: `{"resourceSpans": …}`, one ResourceSpans itself, or a document
/// that holds `resourceSpans` further down.
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
            match k.as_ref() {
                "resourceSpans" => {
                    self.ctx.seen_root = true;
                    map.next_value_seed(Each { ctx: &mut *self.ctx, level: Level::Resource })?;
                }
                // One ResourceSpans per line.
                "resource" => self.ctx.service = map.next_value_seed(ResourceService)?,
                "scopeSpans" | "instrumentationLibrarySpans" => {
                    self.ctx.seen_root = true;
                    map.next_value_seed(Each { ctx: &mut *self.ctx, level: Level::Scope })?;
                }
                _ => map.next_value_seed(Seek { ctx: &mut *self.ctx })?,
            }
        }
        Ok(())
    }
}

/// Looks for `resourceSpans` anywhere below (metrics and logs around it are passed over).
struct Seek<'a, 'c, 'de> {
    ctx: &'a mut Ctx<'c, 'de>,
}

impl<'de> DeserializeSeed<'de> for Seek<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seek<'_, '_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            if k == "resourceSpans" {
                self.ctx.seen_root = true;
                map.next_value_seed(Each { ctx: &mut *self.ctx, level: Level::Resource })?;
            } else if k.starts_with("resource") && k != "resource" {
                // resourceMetrics, resourceLogs: not spans.
                map.next_value::<IgnoredAny>()?;
            } else {
                map.next_value_seed(Seek { ctx: &mut *self.ctx })?;
            }
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Seek { ctx: &mut *self.ctx })?.is_some() {}
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
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
                let (mut attrs, mut notes) = (Attrs::default(), Notes::default());
                map.next_value_seed(AttrList { attrs: &mut attrs, notes: &mut notes })?;
                service = attrs.service;
            } else {
                map.next_value::<Skip>()?;
            }
        }
        Ok(service)
    }
}

/// The attributes tokentop reads from a span (and a resource, and exception events).
#[derive(Default)]
struct Attrs<'de> {
    operation: Option<Cow<'de, str>>,
    request_type: Option<Cow<'de, str>>,
    openinference_kind: Option<Cow<'de, str>>,
    langsmith_kind: Option<Cow<'de, str>>,
    traceloop_kind: Option<Cow<'de, str>>,
    ai_operation: Option<Cow<'de, str>>,
    response_model: Option<Cow<'de, str>>,
    request_model: Option<Cow<'de, str>>,
    other_model: Option<Cow<'de, str>>,
    provider: Option<Cow<'de, str>>,
    system: Option<Cow<'de, str>>,
    other_provider: Option<Cow<'de, str>>,
    input: Option<u64>,
    output: Option<u64>,
    cache_read: Option<u64>,
    cache_write: Option<u64>,
    reasoning: Option<u64>,
    ttft_ms: Option<f64>,
    streamed: Option<bool>,
    cost: Option<f64>,
    session: Option<Cow<'de, str>>,
    user: Option<Cow<'de, str>>,
    http_status: Option<u64>,
    error_type: Option<Cow<'de, str>>,
    exception_type: Option<Cow<'de, str>>,
    exception_message: Option<Cow<'de, str>>,
    service: Option<Cow<'de, str>>,
}

/// The larger of two counts: a zero under one name does not hide a count under another.
fn most(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Operation names of LLM calls, semantic conventions and the variants in use.
fn is_call_operation(op: &str) -> bool {
    const OPS: [&str; 14] = [
        "chat",
        "chat.completions",
        "chat_completions",
        "chat.completion",
        "text_completion",
        "completion",
        "completions",
        "generate_content",
        "generate",
        "embeddings",
        "embedding",
        "embed",
        "responses",
        "response",
    ];
    OPS.iter().any(|o| o.eq_ignore_ascii_case(op))
}

impl<'de> Attrs<'de> {
    fn set(&mut self, key: &str, v: Scalar<'de>) -> Result<(), String> {
        let s = |v: Scalar<'de>| match v {
            Scalar::Str(s) if !is_absent(&s) => Some(s),
            _ => None,
        };
        let n = |v: &Scalar| -> Result<Option<u64>, String> {
            match v {
                // OTLP/JSON writes intValue as a string: the common case first.
                Scalar::Str(s) => match s.parse::<u64>() {
                    Ok(n) => Ok(Some(n)),
                    Err(_) if is_absent(s) => Ok(None),
                    Err(_) => s
                        .trim()
                        .parse::<u64>()
                        .map(Some)
                        .map_err(|_| format!("attribute `{key}`: `{s}` is not a count")),
                },
                other => super::json::want_count(key, other).map_err(|e| e.replace("field", "attribute")),
            }
        };
        let f = |v: &Scalar| -> Result<Option<f64>, String> {
            match v {
                Scalar::Str(s) if is_absent(s) => Ok(None),
                Scalar::Str(s) => match s.trim().parse::<f64>() {
                    Ok(x) if x.is_finite() && x >= 0.0 => Ok(Some(x)),
                    _ => Err(format!("attribute `{key}`: `{s}` is not a number ≥ 0")),
                },
                other => super::json::want_nonneg(key, other).map_err(|e| e.replace("field", "attribute")),
            }
        };
        let b = |v: &Scalar| match v {
            Scalar::Bool(b) => Some(*b),
            Scalar::Str(s) if s.eq_ignore_ascii_case("true") => Some(true),
            Scalar::Str(s) if s.eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        };
        // Keys are matched by their namespace first: a span carries dozens of attributes,
        // most of which tokentop does not read.
        if let Some(k) = key.strip_prefix("gen_ai.") {
            match k {
                "operation.name" => self.operation = s(v),
                "response.model" => self.response_model = s(v),
                "request.model" => self.request_model = s(v),
                "provider.name" => self.provider = s(v),
                "system" => self.system = s(v),
                "usage.input_tokens" | "usage.prompt_tokens" => self.input = most(self.input, n(&v)?),
                "usage.output_tokens" | "usage.completion_tokens" => self.output = most(self.output, n(&v)?),
                "usage.cache_read.input_tokens"
                | "usage.cache_read_input_tokens"
                | "usage.cached_tokens"
                | "usage.input_tokens.cached" => self.cache_read = most(self.cache_read, n(&v)?),
                "usage.cache_creation.input_tokens" | "usage.cache_creation_input_tokens" => {
                    self.cache_write = most(self.cache_write, n(&v)?)
                }
                "usage.reasoning.output_tokens" | "usage.reasoning_tokens" | "usage.output_tokens.reasoning" => {
                    self.reasoning = most(self.reasoning, n(&v)?)
                }
                "response.time_to_first_chunk" | "server.time_to_first_token" => {
                    self.ttft_ms = f(&v)?.map(|s| s * 1000.0).or(self.ttft_ms)
                }
                "request.is_stream" | "request.stream" => self.streamed = b(&v),
                "usage.cost" | "cost.total_cost" | "usage.cost_usd" => self.cost = self.cost.or(f(&v)?),
                "conversation.id" => self.session = self.session.take().or(s(v)),
                "request.user" => self.user = self.user.take().or(s(v)),
                _ => {}
            }
        } else if let Some(k) = key.strip_prefix("llm.") {
            match k {
                "request.type" => self.request_type = s(v),
                "model_name" => self.other_model = self.other_model.take().or(s(v)),
                "provider" | "system" => self.other_provider = self.other_provider.take().or(s(v)),
                "token_count.prompt" | "usage.prompt_tokens" => self.input = most(self.input, n(&v)?),
                "token_count.completion" | "usage.completion_tokens" => self.output = most(self.output, n(&v)?),
                "token_count.prompt_details.cache_read" | "usage.cache_read_input_tokens" => {
                    self.cache_read = most(self.cache_read, n(&v)?)
                }
                "token_count.prompt_details.cache_write" | "usage.cache_creation_input_tokens" => {
                    self.cache_write = most(self.cache_write, n(&v)?)
                }
                "token_count.completion_details.reasoning" | "usage.reasoning_tokens" => {
                    self.reasoning = most(self.reasoning, n(&v)?)
                }
                "is_streaming" => self.streamed = b(&v),
                "cost.total" => self.cost = self.cost.or(f(&v)?),
                _ => {}
            }
        } else if let Some(k) = key.strip_prefix("ai.") {
            match k {
                "operationId" => self.ai_operation = s(v),
                "model.id" => self.other_model = self.other_model.take().or(s(v)),
                // The AI SDK names a provider and its API: `openai.chat`, `anthropic.messages`.
                "model.provider" => {
                    let p = s(v).map(|p| match p.split_once('.') {
                        Some((name, _)) => Cow::Owned(name.to_string()),
                        None => p,
                    });
                    self.other_provider = self.other_provider.take().or(p);
                }
                "usage.promptTokens" | "usage.inputTokens" => self.input = most(self.input, n(&v)?),
                "usage.completionTokens" | "usage.outputTokens" => self.output = most(self.output, n(&v)?),
                "usage.cachedInputTokens" => self.cache_read = most(self.cache_read, n(&v)?),
                "usage.reasoningTokens" => self.reasoning = most(self.reasoning, n(&v)?),
                "response.msToFirstChunk" => self.ttft_ms = self.ttft_ms.or(f(&v)?),
                _ => {}
            }
        } else {
            match key {
                "openinference.span.kind" => self.openinference_kind = s(v),
                "langsmith.span.kind" => self.langsmith_kind = s(v),
                "traceloop.span.kind" => self.traceloop_kind = s(v),
                "operation.name" if self.ai_operation.is_none() => {
                    self.ai_operation = s(v).filter(|o| o.starts_with("ai."))
                }
                "langsmith.metadata.ls_model_name" => self.other_model = self.other_model.take().or(s(v)),
                "langsmith.metadata.ls_provider" => self.other_provider = self.other_provider.take().or(s(v)),
                "session.id" => self.session = self.session.take().or(s(v)),
                "user.id" | "enduser.id" => self.user = self.user.take().or(s(v)),
                "http.response.status_code" | "http.status_code" => self.http_status = n(&v)?,
                "error.type" => self.error_type = s(v),
                "exception.type" => self.exception_type = s(v),
                "exception.message" => self.exception_message = s(v),
                "service.name" => self.service = s(v),
                _ => {}
            }
        }
        Ok(())
    }

    fn has_usage(&self) -> bool {
        self.input.is_some_and(|n| n > 0) || self.output.is_some_and(|n| n > 0)
    }

    /// Whether the span is an LLM call, or why not.
    fn classify(&self, failed: bool) -> Result<(), SkipReason> {
        let not_call = if self.has_usage() { SkipReason::UsageOutsideCall } else { SkipReason::NotCall };
        let marked = if let Some(k) = &self.langsmith_kind {
            k.eq_ignore_ascii_case("llm")
        } else if let Some(k) = &self.openinference_kind {
            k.eq_ignore_ascii_case("llm") || k.eq_ignore_ascii_case("embedding")
        } else if self.traceloop_kind.as_deref().is_some_and(|k| matches!(k, "workflow" | "task" | "agent" | "tool")) {
            false
        } else if let Some(op) = self.ai_operation.as_deref() {
            let op = op.split(' ').next().unwrap_or(op);
            op.ends_with(".doGenerate") || op.ends_with(".doStream") || op.ends_with(".doEmbed")
        } else if let Some(op) = &self.operation {
            is_call_operation(op)
        } else if let Some(t) = &self.request_type {
            is_call_operation(t)
        } else {
            (self.provider.is_some() || self.system.is_some()) && (self.model().is_some() || self.has_usage())
        };
        if !marked {
            return Err(not_call);
        }
        // A failed call may have neither (it got no answer); a template that succeeded is no call.
        if self.model().is_none() && !self.has_usage() && !failed {
            return Err(SkipReason::NoModelOrUsage);
        }
        Ok(())
    }

    fn model(&self) -> Option<&Cow<'de, str>> {
        self.response_model.as_ref().or(self.request_model.as_ref()).or(self.other_model.as_ref())
    }
}

/// `[{"key": K, "value": {"stringValue": …}}, …]`.
struct AttrList<'a, 'de> {
    attrs: &'a mut Attrs<'de>,
    notes: &'a mut Notes,
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
        while seq.next_element_seed(Attr { attrs: &mut *self.attrs, notes: &mut *self.notes })?.is_some() {}
        Ok(())
    }
}

/// One attribute, `{"key": K, "value": V}`, read straight into the attributes.
struct Attr<'a, 'de> {
    attrs: &'a mut Attrs<'de>,
    notes: &'a mut Notes,
}

impl<'de> DeserializeSeed<'de> for Attr<'_, 'de> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Attr<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an attribute {key, value}")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (mut key, mut value) = (None, None);
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            match k.as_ref() {
                "key" => key = Some(map.next_value::<Key<'de>>()?.0),
                "value" => value = map.next_value_seed(AnyValue)?,
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        if let (Some(k), Some(v)) = (key, value)
            && let Err(e) = self.attrs.set(&k, v)
        {
            self.notes.field(e);
        }
        Ok(())
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

/// A span's `events`: the type and message of an `exception` event.
struct Events<'a, 'de> {
    attrs: &'a mut Attrs<'de>,
    notes: &'a mut Notes,
}

impl<'de> DeserializeSeed<'de> for Events<'_, 'de> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Events<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of span events")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(OneEvent { attrs: &mut *self.attrs, notes: &mut *self.notes })?.is_some() {}
        Ok(())
    }
}

struct OneEvent<'a, 'de> {
    attrs: &'a mut Attrs<'de>,
    notes: &'a mut Notes,
}

impl<'de> DeserializeSeed<'de> for OneEvent<'_, 'de> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for OneEvent<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a span event")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (mut name, mut attrs) = (None, Attrs::default());
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            match k.as_ref() {
                "name" => name = Some(map.next_value::<Key<'de>>()?.0),
                "attributes" => map.next_value_seed(AttrList { attrs: &mut attrs, notes: &mut *self.notes })?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if name.as_deref() == Some("exception") {
            self.attrs.exception_type = self.attrs.exception_type.take().or(attrs.exception_type);
            self.attrs.exception_message = self.attrs.exception_message.take().or(attrs.exception_message);
        }
        Ok(())
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
        Scalar::Str(s) => digits(&s)
            .or_else(|| s.parse::<i64>().ok())
            .map(Some)
            .ok_or_else(|| format!("field `{key}`: `{s}` is not nanoseconds")),
        Scalar::U64(n) => Ok(Some(n.min(i64::MAX as u64) as i64)),
        Scalar::I64(n) => Ok(Some(n)),
        other => Err(format!("field `{key}`: expected nanoseconds, found {}", super::json::show(&other))),
    }
}

/// Up to 18 ASCII digits as a number: the common shape of a timestamp in nanoseconds,
/// read without the general parser's checks (18 digits cannot overflow).
fn digits(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 18 {
        return if b.len() == 19 {
            digits(&s[..18]).and_then(|hi| hi.checked_mul(10)?.checked_add(digit(b[18])?))
        } else {
            None
        };
    }
    b.iter().try_fold(0i64, |n, &c| Some(n * 10 + digit(c)?))
}

fn digit(c: u8) -> Option<i64> {
    c.is_ascii_digit().then(|| i64::from(c - b'0'))
}

/// An id (`traceId`, `spanId`, `parentSpanId`); empty means none.
fn id<'de>(v: Scalar<'de>) -> Option<Cow<'de, str>> {
    match v {
        Scalar::Str(s) if !s.is_empty() => Some(s),
        _ => None,
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
        let mut ids = SpanIds::default();
        let mut status_error = false;
        let mut status_message = None;
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            match k.as_ref() {
                "attributes" => map.next_value_seed(AttrList { attrs: &mut attrs, notes: &mut *self.ctx.notes })?,
                "spanId" | "span_id" => ids.span = id(map.next_value()?),
                "traceId" | "trace_id" => ids.trace = id(map.next_value()?),
                "parentSpanId" | "parent_span_id" => ids.parent = id(map.next_value()?),
                "startTimeUnixNano" => start = nanos(&k, map.next_value()?).map_err(de::Error::custom)?,
                "endTimeUnixNano" => match nanos(&k, map.next_value()?) {
                    Ok(e) => end = e,
                    Err(e) => self.ctx.notes.field(e),
                },
                "status" => {
                    let (error, message) = map.next_value_seed(Status)?;
                    status_error = error;
                    status_message = message;
                }
                "events" => map.next_value_seed(Events { attrs: &mut attrs, notes: &mut *self.ctx.notes })?,
                // kind, links…: skipped without building strings (serde_json skips
                // iteratively, so deep nesting cannot overflow the stack).
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if let Err(reason) = attrs.classify(status_error || attrs.http_status.is_some_and(|s| s >= 400)) {
            (self.ctx.emit)(ids, Found::Skipped(reason));
            return Ok(());
        }
        let start = start.ok_or_else(|| de::Error::custom("span without `startTimeUnixNano`"))?;
        let ev = &mut *self.ctx.ev;
        let props = crate::event::recycle_properties(std::mem::take(&mut ev.properties));
        *ev = Event::with_properties(props);
        ev.request_id = ids.span.clone();
        ev.created_at = start.div_euclid(1000);
        ev.latency_ms = end.filter(|&e| e >= start).map(|e| (e - start) as f64 / 1e6);
        ev.model = attrs.response_model.or(attrs.request_model).or(attrs.other_model);
        ev.provider = attrs.provider.or(attrs.system).or(attrs.other_provider);
        // The AI SDK names a provider with its API (`openai.chat`, `anthropic.messages`).
        if attrs.ai_operation.is_some()
            && let Some(p) = ev.provider.take()
        {
            ev.provider = Some(match p.split_once('.') {
                Some((name, _)) => Cow::Owned(name.to_string()),
                None => p,
            });
        }
        ev.prompt_tokens = attrs.input.unwrap_or(0);
        ev.completion_tokens = attrs.output.unwrap_or(0);
        ev.cache_read_tokens = attrs.cache_read.unwrap_or(0);
        ev.cache_write_tokens = attrs.cache_write.unwrap_or(0);
        ev.reasoning_tokens = attrs.reasoning.unwrap_or(0);
        // OpenLIT records a first-token time on calls that were not streamed.
        ev.ttft_ms = attrs.ttft_ms.filter(|_| attrs.streamed != Some(false));
        ev.cost_usd = attrs.cost;
        ev.session_id = attrs.session;
        ev.user_id = attrs.user;
        let error_text = attrs.exception_message.or(status_message);
        let error_kind = attrs.error_type.or(attrs.exception_type);
        ev.status = match (attrs.http_status, status_error) {
            (Some(code), _) => code.min(999) as u16,
            (None, true) => super::errors::status_of(error_kind.as_deref(), error_text.as_deref()).unwrap_or(0),
            (None, false) => 200,
        };
        if ev.status == 0 || ev.status >= 400 {
            ev.error = match (error_text, error_kind) {
                (Some(t), _) => Some(t),
                (None, k) => k,
            };
        }
        if let Some(s) = &self.ctx.service {
            ev.properties.push((Cow::Borrowed("service"), s.clone()));
        }
        (self.ctx.emit)(ids, Found::Call(ev));
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
                ("code", Scalar::Str(s)) if s == "STATUS_CODE_ERROR" || s == "ERROR" => error = true,
                ("message" | "description", Scalar::Str(m)) if !m.is_empty() => message = Some(m),
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
        let mut skipped = Vec::new();
        let mut notes = Notes::default();
        parse_lines(&line, &mut ev, &mut notes, &mut |_, found| {
            let e = match found {
                Found::Call(e) => e,
                Found::Skipped(r) => return skipped.push(r),
            };
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
        assert_eq!((got.len(), skipped), (2, vec![SkipReason::NotCall]));
        assert_eq!(got[0].1, "gpt-4o-2024-08-06");
        assert_eq!(got[0].2, "azure.ai.openai", "normalised by the line parser, not here");
        assert_eq!((got[0].3, got[0].4, got[0].5), (200, Some(1500.0), Some(350.0)));
        assert_eq!(got[0].6, (1200, 300, 400));
        assert_eq!((got[0].7.as_deref(), got[0].8.as_deref()), (Some("dana"), Some("conv-1")));
        assert_eq!(got[0].10, vec!["service=checkout"]);
        assert_eq!(
            (got[1].3, got[1].9.as_deref()),
            (0, Some("boom")),
            "the message is the error text; the type maps the status"
        );
    }

    #[test]
    fn an_attribute_key_that_is_not_a_string_is_named_and_placed() {
        let expecting = "expected a string, number, boolean or null";
        for (value, says) in [
            ("5", "expected a string key, found a number".to_owned()),
            ("-5", "expected a string key, found a number".to_owned()),
            ("1.5", "expected a string key, found a number".to_owned()),
            ("true", "expected a string key, found a boolean".to_owned()),
            ("null", "expected a string key, found null".to_owned()),
            ("{}", format!("invalid type: map, {expecting}")),
            ("[1]", format!("invalid type: sequence, {expecting}")),
        ] {
            let line = format!(
                r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":{value},"value":{{"stringValue":"x"}}}}]}}}}]}}"#
            );
            // Placed after the value, or after the bracket of an object or list.
            let read = if value.starts_with(['{', '[']) { 1 } else { value.len() };
            let after = line.find(r#""key":"#).unwrap() + 6 + read;
            let e = parse_lines(&line, &mut Event::with_properties(Vec::new()), &mut Notes::default(), &mut |_, _| {})
                .unwrap_err();
            assert_eq!(e.to_string(), format!("{says} (column {after})"), "{value}");
        }
    }

    #[test]
    fn not_an_export() {
        let mut ev = Event::with_properties(Vec::new());
        let e = parse_lines(r#"{"spans":[]}"#, &mut ev, &mut Notes::default(), &mut |_, _| {}).unwrap_err();
        assert!(e.to_string().contains("resourceSpans"));
    }
}
