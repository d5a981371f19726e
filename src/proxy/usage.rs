//! What a call through the proxy says about itself: the model, stream flag and user of
//! its request body, and, read as the response passes, the model, id, token usage,
//! first content (for TTFT) and error of an OpenAI-style or Anthropic-style answer, as
//! one JSON body or a stream of server-sent events.
//!
//! Usage comes from where each API puts it: OpenAI chat and completions `usage`
//! (`prompt_tokens` including `prompt_tokens_details.cached_tokens`; in a stream, the
//! final chunk when `stream_options.include_usage` is set), the Responses API's
//! `usage` (`input_tokens` including its cached ones; streamed in `response.completed`),
//! Anthropic's `usage` (`input_tokens` *without* `cache_read_input_tokens` and
//! `cache_creation_input_tokens`, which are added, as tokentop's prompt tokens include
//! them; streamed in `message_start` and `message_delta`).

use std::io::Write as _;

use serde::Deserialize;
use serde_json::Value;

/// Bytes of a JSON response (after decompression) read for its usage; the rest of a
/// larger body still reaches the client, only its usage is not read.
pub const MAX_READ: usize = 8 << 20;

/// Which API a call speaks, from its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `/v1/messages` (and anything with an `anthropic-version` header).
    Anthropic,
    /// Everything else: chat completions, completions, embeddings, responses.
    OpenAi,
}

/// What the request body says.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CallRequest {
    pub model: Option<String>,
    pub stream: bool,
    pub user: Option<String>,
}

#[derive(Deserialize)]
struct RawRequest {
    #[serde(default)]
    model: Option<Value>,
    #[serde(default)]
    stream: Option<Value>,
    #[serde(default)]
    user: Option<Value>,
    #[serde(default)]
    metadata: Option<Value>,
}

/// Reads the fields tokentop needs from a request body; anything else (or a body that
/// is not JSON) gives nothing, and the call is forwarded all the same.
pub fn read_request(body: &[u8]) -> CallRequest {
    let Ok(raw) = serde_json::from_slice::<RawRequest>(body) else { return CallRequest::default() };
    let text = |v: Option<&Value>| v.and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    CallRequest {
        model: text(raw.model.as_ref()),
        stream: raw.stream.as_ref().and_then(Value::as_bool).unwrap_or(false),
        user: text(raw.user.as_ref()).or_else(|| text(raw.metadata.as_ref().and_then(|m| m.get("user_id")))),
    }
}

/// Token counts, in tokentop's terms (prompt tokens include cached ones).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub prompt: Option<u64>,
    pub completion: Option<u64>,
    pub cache_read: Option<u64>,
    pub cache_write: Option<u64>,
    pub reasoning: Option<u64>,
}

/// What the response said, once read.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CallResponse {
    pub model: Option<String>,
    pub id: Option<String>,
    pub usage: Usage,
    pub error: Option<String>,
    /// Why usage could not be read (a compression tokentop does not decode, a body
    /// over [`MAX_READ`], a body that is not JSON).
    pub unreadable: Option<String>,
}

/// Reads a response as its chunks pass.
pub struct ResponseReader {
    api: Api,
    sse: bool,
    decoder: Decoder,
    /// Undecoded JSON body, or the SSE text not yet ending in a line break.
    buf: Vec<u8>,
    /// Data lines of the SSE event being read.
    data: Vec<u8>,
    out: CallResponse,
    content_seen: bool,
    too_large: bool,
}

enum Decoder {
    Identity,
    Gzip(Box<flate2::write::GzDecoder<Vec<u8>>>),
    Deflate(Box<flate2::write::ZlibDecoder<Vec<u8>>>),
    Unknown,
}

impl Decoder {
    /// The plain bytes of a compressed chunk (none for identity, which is read as it
    /// is, or an encoding not decoded).
    fn decode(&mut self, chunk: &[u8]) -> Option<Vec<u8>> {
        match self {
            Decoder::Gzip(d) => d.write_all(chunk).ok().map(|()| std::mem::take(d.get_mut())),
            Decoder::Deflate(d) => d.write_all(chunk).ok().map(|()| std::mem::take(d.get_mut())),
            Decoder::Identity | Decoder::Unknown => None,
        }
    }

    /// What a compressed stream still holds at its end.
    fn finish(&mut self) -> Option<Vec<u8>> {
        match self {
            Decoder::Gzip(d) => d.try_finish().ok().map(|()| std::mem::take(d.get_mut())),
            Decoder::Deflate(d) => d.try_finish().ok().map(|()| std::mem::take(d.get_mut())),
            Decoder::Identity | Decoder::Unknown => None,
        }
    }
}

impl ResponseReader {
    pub fn new(api: Api, content_type: &str, content_encoding: &str) -> ResponseReader {
        let decoder = match content_encoding.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => Decoder::Identity,
            "gzip" | "x-gzip" => Decoder::Gzip(Box::new(flate2::write::GzDecoder::new(Vec::new()))),
            "deflate" => Decoder::Deflate(Box::new(flate2::write::ZlibDecoder::new(Vec::new()))),
            _ => Decoder::Unknown,
        };
        let mut out = CallResponse::default();
        if matches!(decoder, Decoder::Unknown) {
            out.unreadable = Some(format!("a response in `{content_encoding}` encoding (usage not read)"));
        }
        ResponseReader {
            api,
            sse: content_type.to_ascii_lowercase().starts_with("text/event-stream"),
            decoder,
            buf: Vec::new(),
            data: Vec::new(),
            out,
            content_seen: false,
            too_large: false,
        }
    }

    /// Reads a chunk; `true` when it carried the first content of the answer (a
    /// streamed token, tool call or refusal), the moment of the time to first token.
    pub fn push(&mut self, chunk: &[u8]) -> bool {
        let before = self.content_seen;
        match self.decoder.decode(chunk) {
            Some(plain) => self.take(&plain),
            None if matches!(self.decoder, Decoder::Identity) => self.take(chunk),
            None => {}
        }
        !before && self.content_seen
    }

    fn take(&mut self, plain: &[u8]) {
        if self.too_large {
            return;
        }
        if self.buf.len() + plain.len() > MAX_READ {
            self.too_large = true;
            self.buf = Vec::new();
            self.out.unreadable = Some(format!("a response over {MAX_READ} bytes (usage not read)"));
            return;
        }
        self.buf.extend_from_slice(plain);
        if self.sse {
            self.read_lines();
        }
    }

    /// SSE: `data:` lines gathered, an event handled at each blank line.
    fn read_lines(&mut self) {
        let mut start = 0;
        while let Some(end) = memchr::memchr(b'\n', &self.buf[start..]) {
            let line = &self.buf[start..start + end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                self.dispatch();
            } else if let Some(d) = line.strip_prefix(b"data:") {
                if !self.data.is_empty() {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(d.strip_prefix(b" ").unwrap_or(d));
            }
            start += end + 1;
        }
        self.buf.drain(..start);
    }

    fn dispatch(&mut self) {
        let data = std::mem::take(&mut self.data);
        if data.is_empty() || data == b"[DONE]" {
            return;
        }
        if let Ok(v) = serde_json::from_slice::<Value>(&data) {
            self.event(&v);
        }
        self.data = data;
        self.data.clear();
    }

    /// One streamed event (an OpenAI chunk, a Responses event, an Anthropic event).
    fn event(&mut self, v: &Value) {
        match v.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                if let Some(m) = v.get("message") {
                    self.whole(m);
                }
            }
            Some("message_delta") => {
                if let Some(u) = v.get("usage") {
                    usage(self.api, u, &mut self.out.usage);
                }
            }
            Some("content_block_delta" | "response.output_text.delta" | "response.function_call_arguments.delta") => {
                self.content_seen = true
            }
            Some("response.completed" | "response.failed" | "response.incomplete") => {
                if let Some(r) = v.get("response") {
                    self.whole(r);
                }
            }
            Some("error") => self.out.error = error_message(v).or(self.out.error.take()),
            _ => {
                self.whole(v);
                let choices = v.get("choices").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
                if choices.iter().any(has_content) {
                    self.content_seen = true;
                }
            }
        }
    }

    /// A whole answer (or a chunk, or a message): model, id, usage, error.
    fn whole(&mut self, v: &Value) {
        if let Some(m) = v.get("model").and_then(Value::as_str).filter(|m| !m.is_empty()) {
            self.out.model = Some(m.to_string());
        }
        if let Some(id) = v.get("id").and_then(Value::as_str).filter(|m| !m.is_empty()) {
            self.out.id.get_or_insert_with(|| id.to_string());
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            usage(self.api, u, &mut self.out.usage);
        }
        if let Some(e) = error_message(v) {
            self.out.error = Some(e);
        }
    }

    /// The response has ended: what it said.
    pub fn finish(mut self) -> CallResponse {
        if let Some(plain) = self.decoder.finish() {
            self.take(&plain);
        }
        if self.sse {
            self.buf.push(b'\n');
            self.read_lines();
            self.dispatch();
        } else if !self.too_large && !self.buf.is_empty() && !matches!(self.decoder, Decoder::Unknown) {
            match serde_json::from_slice::<Value>(&self.buf) {
                Ok(v) => self.whole(&v),
                Err(_) => {
                    let text = String::from_utf8_lossy(&self.buf[..self.buf.len().min(200)]).trim().to_string();
                    self.out.unreadable = Some("a response that is not JSON (usage not read)".into());
                    if self.out.error.is_none() && !text.is_empty() {
                        self.out.error = Some(text);
                    }
                }
            }
        }
        self.out
    }
}

/// Whether an OpenAI choice carries content: text, a delta with content, reasoning, a
/// refusal or a tool call.
fn has_content(choice: &Value) -> bool {
    let non_empty = |v: Option<&Value>| match v {
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        _ => false,
    };
    let delta = choice.get("delta");
    non_empty(choice.get("text"))
        || ["content", "reasoning_content", "reasoning", "refusal", "tool_calls"]
            .iter()
            .any(|k| non_empty(delta.and_then(|d| d.get(*k))))
}

/// `{"error": {"message": …}}`, `{"error": "…"}` or an Anthropic `{"type": "error",
/// "error": {…}}`.
fn error_message(v: &Value) -> Option<String> {
    match v.get("error")? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Object(o) => o
            .get("message")
            .and_then(Value::as_str)
            .or_else(|| o.get("type").and_then(Value::as_str))
            .map(str::to_string),
        _ => None,
    }
}

/// Reads a `usage` object into `u`, in tokentop's terms; counts present replace
/// earlier ones (a stream's later events carry the totals).
fn usage(api: Api, v: &Value, u: &mut Usage) {
    let n = |path: &[&str]| {
        let mut cur = v;
        for k in path {
            cur = cur.get(*k)?;
        }
        cur.as_u64()
    };
    let set = |slot: &mut Option<u64>, value: Option<u64>| {
        if value.is_some() {
            *slot = value;
        }
    };
    if let Some(p) = n(&["prompt_tokens"]) {
        // OpenAI chat, completions, embeddings.
        u.prompt = Some(p);
        set(&mut u.completion, n(&["completion_tokens"]));
        set(&mut u.cache_read, n(&["prompt_tokens_details", "cached_tokens"]));
        set(&mut u.reasoning, n(&["completion_tokens_details", "reasoning_tokens"]));
        return;
    }
    let anthropic = api == Api::Anthropic
        || v.get("cache_read_input_tokens").is_some()
        || v.get("cache_creation_input_tokens").is_some();
    if anthropic {
        set(&mut u.cache_read, n(&["cache_read_input_tokens"]));
        set(&mut u.cache_write, n(&["cache_creation_input_tokens"]));
        if let Some(input) = n(&["input_tokens"]) {
            u.prompt = Some(input + u.cache_read.unwrap_or(0) + u.cache_write.unwrap_or(0));
        }
        set(&mut u.completion, n(&["output_tokens"]));
    } else {
        // The Responses API.
        set(&mut u.prompt, n(&["input_tokens"]));
        set(&mut u.completion, n(&["output_tokens"]));
        set(&mut u.cache_read, n(&["input_tokens_details", "cached_tokens"]));
        set(&mut u.reasoning, n(&["output_tokens_details", "reasoning_tokens"]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(api: Api, content_type: &str, chunks: &[&[u8]]) -> (CallResponse, Option<usize>) {
        let mut r = ResponseReader::new(api, content_type, "");
        let mut first = None;
        for (i, c) in chunks.iter().enumerate() {
            if r.push(c) {
                assert!(first.is_none());
                first = Some(i);
            }
        }
        (r.finish(), first)
    }

    #[test]
    fn requests_give_model_stream_and_user() {
        let r = read_request(
            br#"{"model":"gpt-4o","stream":true,"user":"u1","messages":[{"role":"user","content":"hi"}]}"#,
        );
        assert_eq!(r, CallRequest { model: Some("gpt-4o".into()), stream: true, user: Some("u1".into()) });
        let r = read_request(br#"{"model":"claude-sonnet-4-5","metadata":{"user_id":"u2"},"max_tokens":10}"#);
        assert_eq!(r, CallRequest { model: Some("claude-sonnet-4-5".into()), stream: false, user: Some("u2".into()) });
        assert_eq!(read_request(b"not json"), CallRequest::default());
        assert_eq!(read_request(br#"{"model":12,"stream":"yes"}"#), CallRequest::default());
    }

    #[test]
    fn an_openai_stream_gives_its_final_usage_and_first_content() {
        // Chunks split mid-line and mid-event, as a network delivers them.
        let chunks: [&[u8]; 6] = [
            b"data: {\"id\":\"chatcmpl-1\",\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            b"data: {\"id\":\"chatcmpl-1\",\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{\"con",
            b"tent\":\"Hel\"}}]}\r\n\r\ndata: {\"id\":\"chatcmpl-1\",\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n",
            b"data: {\"id\":\"chatcmpl-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":1200,\"completion_tokens\":300,",
            b"\"prompt_tokens_details\":{\"cached_tokens\":400},\"completion_tokens_details\":{\"reasoning_tokens\":100}}}\n\n",
            b"data: [DONE]\n\n",
        ];
        let (r, first) = read(Api::OpenAi, "text/event-stream; charset=utf-8", &chunks);
        assert_eq!(first, Some(2));
        assert_eq!(r.model.as_deref(), Some("gpt-4o-2024-08-06"));
        assert_eq!(r.id.as_deref(), Some("chatcmpl-1"));
        assert_eq!(
            r.usage,
            Usage {
                prompt: Some(1200),
                completion: Some(300),
                cache_read: Some(400),
                cache_write: None,
                reasoning: Some(100)
            }
        );
        assert_eq!((r.error, r.unreadable), (None, None));
    }

    #[test]
    fn an_anthropic_stream_adds_cache_tokens_to_the_prompt() {
        let text = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"model\":\"claude-sonnet-4-5-20250929\",\"usage\":{\"input_tokens\":900,\"cache_creation_input_tokens\":300,\"cache_read_input_tokens\":50,\"output_tokens\":1}}}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: ping\ndata: {\"type\": \"ping\"}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":120}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        let chunks: Vec<&[u8]> = text.as_bytes().chunks(7).collect();
        let (r, first) = read(Api::Anthropic, "text/event-stream", &chunks);
        assert!(first.is_some());
        assert_eq!(r.model.as_deref(), Some("claude-sonnet-4-5-20250929"));
        assert_eq!(
            r.usage,
            Usage {
                prompt: Some(1250),
                completion: Some(120),
                cache_read: Some(50),
                cache_write: Some(300),
                reasoning: None
            }
        );
    }

    #[test]
    fn whole_bodies_errors_and_compressed_ones() {
        let body = br#"{"id":"msg_2","type":"message","model":"claude-haiku-4-5","usage":{"input_tokens":10,"output_tokens":5}}"#;
        let (r, first) = read(Api::Anthropic, "application/json", &[&body[..20], &body[20..]]);
        assert_eq!(first, None);
        assert_eq!((r.usage.prompt, r.usage.completion), (Some(10), Some(5)));

        let err =
            br#"{"error":{"message":"Rate limit reached for gpt-4o","type":"requests","code":"rate_limit_exceeded"}}"#;
        let (r, _) = read(Api::OpenAi, "application/json", &[err]);
        assert_eq!(r.error.as_deref(), Some("Rate limit reached for gpt-4o"));

        // Responses API, gzipped as OpenAI sends JSON to clients that accept it.
        let body = br#"{"id":"resp_1","object":"response","model":"gpt-4.1","usage":{"input_tokens":300,"input_tokens_details":{"cached_tokens":200},"output_tokens":40,"output_tokens_details":{"reasoning_tokens":0}}}"#;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(body).unwrap();
        let gz = gz.finish().unwrap();
        let mut r = ResponseReader::new(Api::OpenAi, "application/json", "gzip");
        for c in gz.chunks(5) {
            r.push(c);
        }
        let r = r.finish();
        assert_eq!(r.model.as_deref(), Some("gpt-4.1"));
        assert_eq!(
            r.usage,
            Usage {
                prompt: Some(300),
                completion: Some(40),
                cache_read: Some(200),
                cache_write: None,
                reasoning: Some(0)
            }
        );

        let mut r = ResponseReader::new(Api::OpenAi, "application/json", "br");
        r.push(b"\x1b\x00");
        assert!(r.finish().unreadable.unwrap().contains("`br`"));
        let (r, _) = read(Api::OpenAi, "text/plain", &[b"upstream connect error"]);
        assert_eq!(r.error.as_deref(), Some("upstream connect error"));
    }
}
