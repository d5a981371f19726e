//! A logging proxy for OpenAI-style and Anthropic-style APIs: point an SDK's base URL
//! at it and every call is an event, with nothing else to change.
//!
//! Requests are forwarded as they came (the proxy's own `Helicone-*` and `X-Tokentop-*`
//! headers and hop-by-hop headers aside); responses are streamed back chunk by chunk as
//! they arrive, bytes untouched, while [`usage::ResponseReader`] reads them on the way.
//! When the response ends (or the client leaves, or the upstream drops the connection)
//! one event is recorded: status, latency (request to last byte), TTFT (request to the
//! first streamed content), model, tokens, user, session, properties and error. API keys
//! pass through and are never recorded.
//!
//! Events are written as tokentop JSON lines: to `--log FILE` when given, and on to the
//! console (or whatever consumes this source) like lines of a file.

pub mod usage;

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use crate::source::{Feed, FeedSender, SourceState, Update};
use usage::{Api, CallRequest, CallResponse, ResponseReader};

/// Largest request body forwarded (images and long contexts fit).
pub const MAX_REQUEST: usize = 64 << 20;
/// Calls waiting to be recorded; past it, calls are still forwarded, their events
/// dropped and counted.
const RECORD_QUEUE: usize = 65_536;

/// Where calls go: requests whose path starts with `prefix` go to `url`, the prefix
/// replaced by the URL's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub prefix: String,
    pub url: String,
}

impl Upstream {
    /// `URL` (every path) or `PREFIX=URL`.
    pub fn parse(s: &str) -> Result<Upstream, String> {
        let (prefix, url) = match s.split_once('=') {
            Some((p, u)) if p.starts_with('/') => (p.trim_end_matches('/').to_string(), u),
            Some(_) => {
                return Err(format!("`{s}`: a prefix starts with `/`, as in /anthropic=https://api.anthropic.com"));
            }
            None => (String::new(), s),
        };
        let url = url.trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&url).map_err(|e| format!("`{url}`: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(format!("`{url}`: an upstream is an http:// or https:// URL"));
        }
        if parsed.query().is_some() || !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(format!("`{}`: no query or credentials in an upstream URL", crate::text::redact_url(&url)));
        }
        Ok(Upstream { prefix, url })
    }

    /// The provider calls to this upstream are counted under.
    fn provider(&self, api: Api) -> String {
        let host =
            reqwest::Url::parse(&self.url).ok().and_then(|u| u.host_str().map(str::to_string)).unwrap_or_default();
        let known = [
            ("openai.azure.com", "azure"),
            ("api.openai.com", "openai"),
            ("api.anthropic.com", "anthropic"),
            ("api.groq.com", "groq"),
            ("api.mistral.ai", "mistral"),
            ("api.together.xyz", "together_ai"),
            ("openrouter.ai", "openrouter"),
            ("api.deepseek.com", "deepseek"),
            ("api.fireworks.ai", "fireworks_ai"),
            ("api.x.ai", "xai"),
        ];
        known.iter().find(|(h, _)| host.ends_with(h)).map(|(_, p)| p.to_string()).unwrap_or_else(|| {
            match api {
                Api::Anthropic => "anthropic",
                Api::OpenAi => "openai",
            }
            .to_string()
        })
    }
}

/// How the proxy runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyOptions {
    pub listen: String,
    pub upstreams: Vec<Upstream>,
    /// Every event, appended as a JSON line.
    pub log: Option<PathBuf>,
}

impl ProxyOptions {
    /// The upstream for a path: the longest prefix that matches whole segments.
    fn route(&self, path: &str) -> Option<&Upstream> {
        self.upstreams
            .iter()
            .filter(|u| {
                path.strip_prefix(u.prefix.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
            .max_by_key(|u| u.prefix.len())
    }
}

/// Runs the proxy until the consumer is gone; `source` is its index among the sources.
pub async fn run(opts: ProxyOptions, source: usize, tx: FeedSender) {
    let state = |s| Feed { source, update: Update::State(s) };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = match reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build() {
        Ok(c) => c,
        Err(e) => {
            tx.send(state(SourceState::Failed(format!("cannot set up HTTPS: {e}")))).await;
            return;
        }
    };
    let log = match &opts.log {
        Some(path) => match std::fs::OpenOptions::new().create(true).append(true).open(path) {
            Ok(f) => Some(f),
            Err(e) => {
                let why = format!("cannot open {} for the log: {e}", path.display());
                tx.send(state(SourceState::Failed(why))).await;
                return;
            }
        },
        None => None,
    };
    let listener = match TcpListener::bind(opts.listen.as_str()).await {
        Ok(l) => l,
        Err(e) => {
            let why = format!("cannot listen on {}: {e}; choose another address with --listen", opts.listen);
            tx.send(state(SourceState::Failed(why))).await;
            return;
        }
    };
    let local = listener.local_addr().map_or(opts.listen.clone(), |a| a.to_string());
    if !tx.send(state(SourceState::Listening(local))).await {
        return;
    }
    let (events, queue) = mpsc::channel(RECORD_QUEUE);
    let shared = Arc::new(Shared { opts, client, events, dropped: AtomicU64::new(0) });
    tokio::spawn(record(queue, log, tx.clone(), source, shared.clone()));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    let _ = tcp.set_nodelay(true);
                    tokio::spawn(connection(tcp, shared.clone()));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            },
            _ = tx.closed() => return,
        }
    }
}

struct Shared {
    opts: ProxyOptions,
    client: reqwest::Client,
    events: mpsc::Sender<Vec<u8>>,
    dropped: AtomicU64,
}

/// Writes events to the log and on to the consumer, in batches; says once a second how
/// many were dropped (the queue was full) and when the log cannot be written.
async fn record(
    mut queue: mpsc::Receiver<Vec<u8>>,
    mut log: Option<std::fs::File>,
    tx: FeedSender,
    source: usize,
    shared: Arc<Shared>,
) {
    use std::io::Write as _;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut log_error = None;
    loop {
        let first = tokio::select! {
            line = queue.recv() => match line { Some(l) => l, None => return },
            _ = tick.tick() => {
                let dropped = shared.dropped.swap(0, Ordering::Relaxed);
                if dropped > 0 {
                    let text = format!("{dropped} calls not recorded: too many waiting to be written");
                    if !tx.send(Feed { source, update: Update::Notice(text) }).await { return; }
                }
                if let Some(e) = log_error.take()
                    && !tx.send(Feed { source, update: Update::Notice(e) }).await
                {
                    return;
                }
                continue;
            }
        };
        let mut batch = first;
        while batch.len() < 1 << 20 {
            match queue.try_recv() {
                Ok(line) => batch.extend_from_slice(&line),
                Err(_) => break,
            }
        }
        if let Some(f) = &mut log
            && let Err(e) = f.write_all(&batch)
        {
            log_error = Some(format!("cannot write the log: {e}"));
        }
        if !tx.send(Feed { source, update: Update::Lines(batch) }).await {
            return;
        }
    }
}

async fn connection(tcp: tokio::net::TcpStream, shared: Arc<Shared>) {
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(req, shared).await) }
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(tcp), service)
        .await;
}

type Body = BoxBody<Bytes, std::io::Error>;

/// Hands the call to a task of its own, so that a client that leaves before the
/// answer still gets its call recorded.
async fn handle(req: Request<Incoming>, shared: Arc<Shared>) -> Response<Body> {
    let (head, answer) = oneshot::channel();
    tokio::spawn(call(req, shared, head));
    answer.await.unwrap_or_else(|_| plain(StatusCode::BAD_GATEWAY, "the proxy failed"))
}

/// What is known of a call before its response.
struct Call {
    started: Instant,
    created_at: crate::time::Micros,
    provider: String,
    request: CallRequest,
    meta: Meta,
}

async fn call(req: Request<Incoming>, shared: Arc<Shared>, head: oneshot::Sender<Response<Body>>) {
    let started = Instant::now();
    let created_at = crate::time::now();
    let Some(upstream) = shared.opts.route(req.uri().path()).cloned() else {
        let _ = head.send(plain(
            StatusCode::NOT_FOUND,
            &format!("tokentop proxy: no upstream for {}; add --upstream PREFIX=URL", req.uri().path()),
        ));
        return;
    };
    let path_and_query = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{}", upstream.url, &path_and_query[upstream.prefix.len()..]);
    let (parts, body) = req.into_parts();
    let api = if parts.uri.path().ends_with("/messages") || parts.headers.contains_key("anthropic-version") {
        Api::Anthropic
    } else {
        Api::OpenAi
    };
    let meta = Meta::from_headers(&parts.headers);
    let body = match Limited::new(body, MAX_REQUEST).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let (status, why) = if e.is::<http_body_util::LengthLimitError>() {
                (StatusCode::PAYLOAD_TOO_LARGE, format!("tokentop proxy: a request over {MAX_REQUEST} bytes"))
            } else {
                (StatusCode::BAD_REQUEST, format!("tokentop proxy: reading the request: {e}"))
            };
            let _ = head.send(plain(status, &why));
            return;
        }
    };
    let request = usage::read_request(&body);
    let provider = upstream.provider(api);
    let c = Call { started, created_at, provider, request, meta };
    let mut headers = parts.headers;
    strip_headers(&mut headers);
    let sent = shared.client.request(parts.method, &url).headers(headers).body(body).send();
    // The client may leave while the upstream thinks.
    let mut head = head;
    let response = tokio::select! {
        r = sent => r,
        _ = head.closed() => {
            record_call(&shared, &c, Ended::failed(499, "the client disconnected before the response"));
            return;
        }
    };
    let mut response = match response {
        Ok(r) => r,
        Err(e) => {
            let why = format!("upstream unreachable: {}", crate::text::http_error(&e));
            record_call(&shared, &c, Ended::failed(502, &why));
            let _ = head.send(plain(StatusCode::BAD_GATEWAY, &format!("tokentop proxy: {why}")));
            return;
        }
    };
    let status = response.status();
    let header_text =
        |name: HeaderName| response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let mut reader =
        ResponseReader::new(api, &header_text(header::CONTENT_TYPE), &header_text(header::CONTENT_ENCODING));
    let upstream_id = ["x-request-id", "request-id"]
        .iter()
        .find_map(|h| response.headers().get(*h).and_then(|v| v.to_str().ok()).map(str::to_string));
    let mut out_headers = response.headers().clone();
    strip_hop_by_hop(&mut out_headers);
    let (chunks, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let stream =
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|item| (item.map(Frame::data), rx)) },
        );
    let mut answer = Response::new(StreamBody::new(stream).boxed());
    *answer.status_mut() = status;
    *answer.headers_mut() = out_headers;
    if head.send(answer).is_err() {
        let mut ended = Ended::failed(499, "the client disconnected before the response");
        (ended.upstream_id, ended.response) = (upstream_id, reader.finish());
        record_call(&shared, &c, ended);
        return;
    }
    let mut ttft = None;
    let mut sent_bytes = 0u64;
    let mut ended: Option<(u16, String)> = None;
    loop {
        let chunk = tokio::select! {
            c = response.chunk() => c,
            _ = chunks.closed() => {
                ended = Some((499, format!("the client disconnected mid-response after {sent_bytes} bytes")));
                break;
            }
        };
        match chunk {
            Ok(Some(bytes)) => {
                if reader.push(&bytes) && ttft.is_none() {
                    ttft = Some(c.started.elapsed());
                }
                sent_bytes += bytes.len() as u64;
                if chunks.send(Ok(bytes)).await.is_err() {
                    ended = Some((499, format!("the client disconnected mid-response after {sent_bytes} bytes")));
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                let why = format!(
                    "the upstream connection failed mid-response after {sent_bytes} bytes: {}",
                    crate::text::http_error(&e)
                );
                // The client sees its response cut off, not a clean end.
                let _ = chunks.send(Err(std::io::Error::other(why.clone()))).await;
                ended = Some((502, why));
                break;
            }
        }
    }
    let (code, why) = match ended {
        Some((code, why)) => (code, Some(why)),
        None => (status.as_u16(), None),
    };
    let ttft = if c.request.stream { ttft } else { None };
    let ended = Ended { status: code, upstream_id, response: reader.finish(), ttft, why: why.as_deref() };
    record_call(&shared, &c, ended);
}

/// How a call ended.
#[derive(Default)]
struct Ended<'a> {
    status: u16,
    /// The provider's id for the call (`x-request-id`, `request-id`).
    upstream_id: Option<String>,
    response: CallResponse,
    /// To the first content of a streamed answer.
    ttft: Option<Duration>,
    /// Why it failed on the way (the client left, the upstream dropped).
    why: Option<&'a str>,
}

impl<'a> Ended<'a> {
    fn failed(status: u16, why: &'a str) -> Ended<'a> {
        Ended { status, why: Some(why), ..Ended::default() }
    }
}

/// The user, session and properties a call's headers name, Helicone's way
/// (`Helicone-User-Id`, `Helicone-Session-Id`, `Helicone-Property-Feature`, …) or
/// tokentop's (`X-Tokentop-User-Id`, …).
#[derive(Default)]
struct Meta {
    user: Option<String>,
    session_id: Option<String>,
    session_name: Option<String>,
    session_path: Option<String>,
    properties: Vec<(String, String)>,
}

impl Meta {
    fn from_headers(h: &HeaderMap) -> Meta {
        let mut m = Meta::default();
        for (name, value) in h {
            let Ok(value) = value.to_str() else { continue };
            let name = name.as_str();
            let Some(rest) = name.strip_prefix("helicone-").or_else(|| name.strip_prefix("x-tokentop-")) else {
                continue;
            };
            let value = value.trim().to_string();
            match rest {
                "user-id" => m.user = Some(value),
                "session-id" => m.session_id = Some(value),
                "session-name" => m.session_name = Some(value),
                "session-path" => m.session_path = Some(value),
                _ => {
                    if let Some(key) = rest.strip_prefix("property-").filter(|k| !k.is_empty()) {
                        m.properties.push((key.to_string(), value));
                    }
                }
            }
        }
        m
    }
}

/// Appends one event, as a tokentop JSON line, to the record queue.
fn record_call(shared: &Shared, c: &Call, ended: Ended) {
    let Ended { status, upstream_id, response: r, ttft, why } = ended;
    let mut ev = Map::new();
    let mut put = |k: &str, v: Value| {
        ev.insert(k.to_string(), v);
    };
    if let Some(id) = upstream_id.or(r.id) {
        put("request_id", json!(id));
    }
    put("created_at", json!(crate::time::format_rfc3339(c.created_at)));
    put("provider", json!(c.provider));
    if let Some(m) = r.model.or_else(|| c.request.model.clone()) {
        put("model", json!(m));
    }
    put("status", json!(status));
    put("latency_ms", json!(c.started.elapsed().as_secs_f64() * 1e3));
    if let Some(t) = ttft {
        put("ttft_ms", json!(t.as_secs_f64() * 1e3));
    }
    let tokens = [
        ("prompt_tokens", r.usage.prompt),
        ("completion_tokens", r.usage.completion),
        ("cache_read_tokens", r.usage.cache_read),
        ("cache_write_tokens", r.usage.cache_write),
        ("reasoning_tokens", r.usage.reasoning),
    ];
    for (k, v) in tokens {
        if let Some(v) = v {
            put(k, json!(v));
        }
    }
    if let Some(u) = c.meta.user.clone().or_else(|| c.request.user.clone()) {
        put("user_id", json!(u));
    }
    for (k, v) in [
        ("session_id", &c.meta.session_id),
        ("session_name", &c.meta.session_name),
        ("session_path", &c.meta.session_path),
    ] {
        if let Some(v) = v {
            put(k, json!(v));
        }
    }
    if !c.meta.properties.is_empty() {
        let props: Map<String, Value> = c.meta.properties.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        put("properties", Value::Object(props));
    }
    let error = match why {
        Some(w) => Some(w.to_string()),
        None if status >= 400 => r.error.or_else(|| Some(format!("HTTP {status}"))),
        None => None,
    };
    if let Some(e) = error {
        put("error", json!(e));
    }
    let mut line = serde_json::to_vec(&Value::Object(ev)).expect("JSON");
    line.push(b'\n');
    if shared.events.try_send(line).is_err() {
        shared.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// Headers that belong to one connection, not to the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

fn strip_hop_by_hop(h: &mut HeaderMap) {
    let listed: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().copied().map(HeaderName::from_static).chain(listed) {
        h.remove(name);
    }
    h.remove(header::UPGRADE);
}

/// A request's headers as the upstream should get them: without hop-by-hop headers,
/// `Host` and `Content-Length` (the client sets them for the upstream) and the
/// proxy's own `Helicone-*` / `X-Tokentop-*` headers (a Helicone key must not reach
/// the provider).
fn strip_headers(h: &mut HeaderMap) {
    strip_hop_by_hop(h);
    h.remove(header::HOST);
    h.remove(header::CONTENT_LENGTH);
    let own: Vec<HeaderName> = h
        .keys()
        .filter(|n| n.as_str().starts_with("helicone-") || n.as_str().starts_with("x-tokentop-"))
        .cloned()
        .collect();
    for n in own {
        h.remove(n);
    }
}

/// An answer of the proxy's own, in the shape OpenAI's and Anthropic's SDKs read errors.
fn plain(status: StatusCode, message: &str) -> Response<Body> {
    let body = json!({"error": {"message": message, "type": "tokentop_proxy_error"}}).to_string();
    let mut r = Response::new(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}
