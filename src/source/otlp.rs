//! An OTLP receiver: apps instrumented with OpenTelemetry export their traces to
//! tokentop (`OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318`) and their LLM calls
//! appear live, with the same rules as OTLP files ([`crate::parse::otel`]).
//!
//! One address serves both transports: OTLP/HTTP (`POST /v1/traces`, protobuf or
//! JSON, gzip or not) over HTTP/1.1 or HTTP/2, and OTLP/gRPC (the `TraceService/Export`
//! call over HTTP/2, cleartext or TLS). Every export becomes one line of OTLP/JSON sent
//! on like a line of a file, so the parse stage, its counts and its held traces work
//! as for any source.
//!
//! Answers follow the OTLP specification: a partial success names the spans that could
//! not be decoded; a body over the size limit is refused for good (413 /
//! `RESOURCE_EXHAUSTED` without a retry hint); when the console is behind, an export is
//! refused with a hint to retry in a second (429 with `Retry-After` / `RESOURCE_EXHAUSTED`
//! with `RetryInfo`), so memory stays bounded and exporters keep their data until then.
//! Bad exports, refused ones and wrong tokens are counted and shown as the source's
//! problems, once a second.

use std::convert::Infallible;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use super::{Feed, FeedSender, Refused, SourceState, Update};
use crate::parse::otlp_proto::{self, encode};

/// The environment variable that holds the bearer token exporters must send.
pub const TOKEN_ENV: &str = "TOKENTOP_OTLP_TOKEN";

/// The gRPC method of OTLP trace export.
const GRPC_EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// How a receiver accepts exports.
#[derive(Debug, Clone)]
pub struct OtlpOptions {
    /// Exporters must send `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
    /// Largest export accepted, after decompression.
    pub max_body: usize,
    /// Certificate chain and private key (PEM): serve HTTPS and gRPC over TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl Default for OtlpOptions {
    fn default() -> Self {
        OtlpOptions { token: None, max_body: 16 << 20, tls: None }
    }
}

/// Receives exports on `addr` until the consumer is gone.
pub async fn run(addr: String, source: usize, opts: OtlpOptions, tx: FeedSender) {
    let state = |s| Feed { source, update: Update::State(s) };
    let listener = match TcpListener::bind(addr.as_str()).await {
        Ok(l) => l,
        Err(e) => {
            let why = format!("cannot listen on {addr}: {e}; choose another address for --otlp");
            tx.send(state(SourceState::Failed(why))).await;
            return;
        }
    };
    let tls = match &opts.tls {
        Some((cert, key)) => match crate::serve::server_config(cert, key, &[b"h2", b"http/1.1"]) {
            Ok(c) => Some(tokio_rustls::TlsAcceptor::from(Arc::new(c))),
            Err(e) => {
                tx.send(state(SourceState::Failed(e.to_string()))).await;
                return;
            }
        },
        None => None,
    };
    let local = listener.local_addr().map_or(addr, |a| a.to_string());
    if !tx.send(state(SourceState::Listening(local))).await {
        return;
    }
    let shared = Arc::new(Shared { opts, tx: tx.clone(), source, tally: Mutex::default() });
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    let _ = tcp.set_nodelay(true);
                    tokio::spawn(connection(tcp, tls.clone(), shared.clone()));
                }
                Err(e) => {
                    shared.tally.lock().expect("tally").note(format!("cannot accept a connection: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = tick.tick() => {
                let updates = shared.tally.lock().expect("tally").take();
                for update in updates {
                    if !tx.send(Feed { source, update }).await {
                        return;
                    }
                }
            }
            _ = tx.closed() => return,
        }
    }
}

async fn connection(tcp: tokio::net::TcpStream, tls: Option<tokio_rustls::TlsAcceptor>, shared: Arc<Shared>) {
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(req, &shared).await) }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // A connection that fails (reset, bad TLS, not HTTP) only costs itself.
    let _ = match tls {
        Some(acceptor) => match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
            Ok(Ok(stream)) => builder.serve_connection(TokioIo::new(stream), service).await,
            _ => return,
        },
        None => builder.serve_connection(TokioIo::new(tcp), service).await,
    };
}

/// What every connection shares.
struct Shared {
    opts: OtlpOptions,
    tx: FeedSender,
    source: usize,
    tally: Mutex<Tally>,
}

/// Counts of what went wrong since the last second, for the source's problems.
#[derive(Default)]
struct Tally {
    bad: u64,
    first_bad: Option<String>,
    refused: u64,
    unauthorised: u64,
    /// Metrics and logs exports, answered and not read.
    ignored: u64,
    notice: Option<String>,
}

impl Tally {
    fn bad(&mut self, n: u64, why: &str) {
        self.bad += n;
        self.first_bad.get_or_insert_with(|| why.to_string());
    }

    fn note(&mut self, text: String) {
        self.notice = Some(text);
    }

    fn take(&mut self) -> Vec<Update> {
        let mut out = Vec::new();
        let t = std::mem::take(self);
        if t.bad > 0 {
            out.push(Update::BadRecords { count: t.bad, first: t.first_bad.unwrap_or_default() });
        }
        if t.refused > 0 {
            out.push(Update::Notice(format!(
                "asked exporters to retry {} exports: the console is behind (they resend after a second)",
                t.refused
            )));
        }
        if t.unauthorised > 0 {
            out.push(Update::Notice(format!(
                "refused {} exports without the right bearer token ({TOKEN_ENV})",
                t.unauthorised
            )));
        }
        if t.ignored > 0 {
            out.push(Update::Notice(format!(
                "{} metrics or logs exports answered and not read (tokentop reads traces)",
                t.ignored
            )));
        }
        out.extend(t.notice.map(Update::Notice));
        out
    }
}

type Body = BoxBody<Bytes, Infallible>;

/// The two transports, which frame bodies and answer errors differently.
#[derive(Clone, Copy, PartialEq)]
enum Transport {
    Http { json: bool },
    Grpc,
}

/// Why an export is refused, as each transport says it.
struct Failure {
    http: StatusCode,
    grpc: u32,
    message: String,
    retry: bool,
}

impl Failure {
    fn new(http: StatusCode, grpc: u32, message: impl Into<String>) -> Failure {
        Failure { http, grpc, message: message.into(), retry: false }
    }
}

// gRPC status codes.
const INVALID_ARGUMENT: u32 = 3;
const NOT_FOUND: u32 = 5;
const RESOURCE_EXHAUSTED: u32 = 8;
const UNIMPLEMENTED: u32 = 12;
const UNAVAILABLE: u32 = 14;
const UNAUTHENTICATED: u32 = 16;

async fn handle(req: Request<Incoming>, shared: &Shared) -> Response<Body> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let transport = if media.starts_with("application/grpc") {
        Transport::Grpc
    } else {
        Transport::Http { json: media == "application/json" }
    };
    match receive(req, shared, transport, &media).await {
        Ok(done) => answer(transport, &done),
        Err(f) => refuse(transport, f),
    }
}

async fn receive(
    req: Request<Incoming>,
    shared: &Shared,
    transport: Transport,
    media: &str,
) -> Result<otlp_proto::Transcoded, Failure> {
    let path = req.uri().path();
    let wanted = match transport {
        Transport::Grpc => GRPC_EXPORT,
        Transport::Http { .. } => "/v1/traces",
    };
    // Metrics and logs exporters pointed at the same endpoint (zero-code instrumentation
    // sends all three) are answered with success and counted, not read.
    let ignored = matches!(
        (transport, path),
        (Transport::Http { .. }, "/v1/metrics" | "/v1/logs")
            | (
                Transport::Grpc,
                "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
                    | "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
            )
    );
    if path != wanted && !ignored {
        let (status, code) = if path.starts_with("/opentelemetry.proto.") || path.starts_with("/v1/") {
            (StatusCode::NOT_FOUND, UNIMPLEMENTED)
        } else {
            (StatusCode::NOT_FOUND, NOT_FOUND)
        };
        return Err(Failure::new(
            status,
            code,
            format!("{path}: tokentop receives traces, at /v1/traces (OTLP/HTTP) or {GRPC_EXPORT} (OTLP/gRPC)"),
        ));
    }
    if req.method() != Method::POST {
        return Err(Failure::new(StatusCode::METHOD_NOT_ALLOWED, UNIMPLEMENTED, "exports are sent with POST"));
    }
    if let Some(token) = &shared.opts.token {
        let sent = req.headers().get(header::AUTHORIZATION).map(HeaderValue::as_bytes).unwrap_or(b"");
        if !crate::serve::bearer_matches(sent, token) {
            shared.tally.lock().expect("tally").unauthorised += 1;
            return Err(Failure::new(StatusCode::UNAUTHORIZED, UNAUTHENTICATED, "a bearer token is required"));
        }
    }
    if let Transport::Http { json: false } = transport
        && media != "application/x-protobuf"
        && media != "application/protobuf"
    {
        let f = Failure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            INVALID_ARGUMENT,
            format!("content type `{media}`: send application/x-protobuf or application/json"),
        );
        shared.tally.lock().expect("tally").bad(1, &f.message);
        return Err(f);
    }
    if ignored {
        // Read (bounded) so that the connection stays usable, then let go.
        let _ = Limited::new(req.into_body(), shared.opts.max_body + 5).collect().await;
        shared.tally.lock().expect("tally").ignored += 1;
        return Ok(otlp_proto::Transcoded::default());
    }
    let headers = req.headers().clone();
    let max = shared.opts.max_body;
    let too_large = || {
        Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            RESOURCE_EXHAUSTED,
            format!("an export over {max} bytes; send smaller batches"),
        )
    };
    let body = match Limited::new(req.into_body(), max + 5).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            let f = too_large();
            shared.tally.lock().expect("tally").bad(1, &f.message);
            return Err(f);
        }
        Err(e) => {
            return Err(Failure::new(StatusCode::BAD_REQUEST, INVALID_ARGUMENT, format!("reading the body: {e}")));
        }
    };
    let result = decode(transport, &headers, &body, max, too_large).and_then(|(message, json)| {
        let mut line = Vec::with_capacity(message.len() + message.len() / 2 + 64);
        let done = if json {
            flatten_json(&message, &mut line)?;
            otlp_proto::Transcoded::default()
        } else {
            otlp_proto::export_to_json(&message, &mut line)
                .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, INVALID_ARGUMENT, e.to_string()))?
        };
        Ok((line, done))
    });
    let (line, done) = match result {
        Ok(r) => r,
        Err(f) => {
            shared.tally.lock().expect("tally").bad(1, &f.message);
            return Err(f);
        }
    };
    if done.rejected > 0 {
        shared.tally.lock().expect("tally").bad(done.rejected, done.first_rejection.as_deref().unwrap_or(""));
    }
    match shared.tx.try_send(Feed { source: shared.source, update: Update::Lines(line) }) {
        Ok(()) => Ok(done),
        Err(Refused::Full) => {
            shared.tally.lock().expect("tally").refused += 1;
            let mut f = Failure::new(
                StatusCode::TOO_MANY_REQUESTS,
                RESOURCE_EXHAUSTED,
                "tokentop is behind; retry in a second",
            );
            f.retry = true;
            Err(f)
        }
        Err(Refused::Closed) => Err(Failure::new(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE, "tokentop is stopping")),
    }
}

/// The export message out of its framing and compression, and whether it is JSON.
fn decode(
    transport: Transport,
    headers: &HeaderMap,
    body: &[u8],
    max: usize,
    too_large: impl Fn() -> Failure,
) -> Result<(Vec<u8>, bool), Failure> {
    let bad = |m: &str| Failure::new(StatusCode::BAD_REQUEST, INVALID_ARGUMENT, m.to_string());
    let encoding = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok()).unwrap_or("identity");
    match transport {
        Transport::Grpc => {
            // One length-prefixed message: a compressed flag, a 4-byte length, the message.
            let Some((head, rest)) = body.split_at_checked(5) else { return Err(bad("a gRPC message is cut short")) };
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            if len != rest.len() {
                return Err(bad("a unary call carries one gRPC message"));
            }
            if head[0] == 1 {
                Ok((inflate(rest, encoding("grpc-encoding"), max, too_large)?, false))
            } else {
                Ok((rest.to_vec(), false))
            }
        }
        Transport::Http { json } => {
            if body.len() > max {
                return Err(too_large());
            }
            let message = match encoding("content-encoding") {
                "identity" => body.to_vec(),
                e => inflate(body, e, max, too_large)?,
            };
            Ok((message, json))
        }
    }
}

/// Decompresses a gzip body, refusing more than `max` bytes of output.
fn inflate(body: &[u8], encoding: &str, max: usize, too_large: impl Fn() -> Failure) -> Result<Vec<u8>, Failure> {
    if !encoding.eq_ignore_ascii_case("gzip") {
        return Err(Failure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            UNIMPLEMENTED,
            format!("compression `{encoding}`: send gzip or none"),
        ));
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, INVALID_ARGUMENT, format!("not gzip: {e}")))?;
    if out.len() > max {
        return Err(too_large());
    }
    Ok(out)
}

/// An OTLP/JSON body as lines: checked to be JSON, and its line breaks (which JSON
/// allows only between tokens) made spaces. A body over
/// [`otlp_proto::SPLIT_BYTES`] is cut, as protobuf exports are, into lines of about that
/// size that each keep their resource and scope.
fn flatten_json(body: &[u8], line: &mut Vec<u8>) -> Result<(), Failure> {
    let not_json =
        |e: serde_json::Error| Failure::new(StatusCode::BAD_REQUEST, INVALID_ARGUMENT, format!("not JSON: {e}"));
    if body.len() <= otlp_proto::SPLIT_BYTES {
        serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(not_json)?;
        line.extend(body.iter().map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }));
        line.push(b'\n');
        return Ok(());
    }
    let export: serde_json::Value = serde_json::from_slice(body).map_err(not_json)?;
    let Some(resources) = export.get("resourceSpans").and_then(serde_json::Value::as_array) else {
        // Not an export tokentop can cut: one line, for the parser to judge.
        serde_json::to_writer(&mut *line, &export).expect("JSON");
        line.push(b'\n');
        return Ok(());
    };
    for rs in resources {
        let resource = rs.get("resource").cloned().unwrap_or(serde_json::Value::Null);
        let scopes = rs.get("scopeSpans").and_then(serde_json::Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        for ss in scopes {
            let scope = ss.get("scope").cloned().unwrap_or(serde_json::Value::Null);
            let spans = ss.get("spans").and_then(serde_json::Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
            let mut chunk: Vec<&serde_json::Value> = Vec::new();
            let mut size = 0;
            for (i, span) in spans.iter().enumerate() {
                size += serde_json::to_vec(span).map_or(0, |v| v.len());
                chunk.push(span);
                if size > otlp_proto::SPLIT_BYTES || i + 1 == spans.len() {
                    let one = serde_json::json!({"resourceSpans": [{"resource": resource, "scopeSpans": [{"scope": scope, "spans": chunk}]}]});
                    serde_json::to_writer(&mut *line, &one).expect("JSON");
                    line.push(b'\n');
                    chunk.clear();
                    size = 0;
                }
            }
        }
    }
    Ok(())
}

/// `ExportTraceServiceResponse`, with a partial success when spans were rejected.
fn answer(transport: Transport, done: &otlp_proto::Transcoded) -> Response<Body> {
    let message = done.first_rejection.as_deref().unwrap_or("");
    match transport {
        Transport::Http { json: true } => {
            let body = if done.rejected > 0 {
                serde_json::json!({"partialSuccess": {"rejectedSpans": done.rejected.to_string(), "errorMessage": message}})
            } else {
                serde_json::json!({})
            };
            response(StatusCode::OK, "application/json", Bytes::from(body.to_string()))
        }
        Transport::Http { json: false } => {
            response(StatusCode::OK, "application/x-protobuf", Bytes::from(export_response(done.rejected, message)))
        }
        Transport::Grpc => {
            let msg = export_response(done.rejected, message);
            let mut framed = Vec::with_capacity(msg.len() + 5);
            framed.push(0);
            framed.extend_from_slice(&(msg.len() as u32).to_be_bytes());
            framed.extend_from_slice(&msg);
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            let frames: [Result<Frame<Bytes>, Infallible>; 2] =
                [Ok(Frame::data(Bytes::from(framed))), Ok(Frame::trailers(trailers))];
            let body = StreamBody::new(futures_util::stream::iter(frames)).boxed();
            let mut r = Response::new(body);
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            r
        }
    }
}

fn export_response(rejected: u64, message: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if rejected > 0 {
        let mut partial = Vec::new();
        encode::uint(&mut partial, 1, rejected);
        encode::bytes(&mut partial, 2, message.as_bytes());
        encode::bytes(&mut out, 1, &partial);
    }
    out
}

fn refuse(transport: Transport, f: Failure) -> Response<Body> {
    match transport {
        Transport::Grpc => {
            // Trailers-only: the status in the headers, no body.
            let mut r = Response::new(Full::new(Bytes::new()).boxed());
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            h.insert("grpc-status", HeaderValue::from(f.grpc));
            if let Ok(v) = HeaderValue::from_str(&percent_encode(&f.message)) {
                h.insert("grpc-message", v);
            }
            if f.retry
                && let Ok(v) = HeaderValue::from_str(&status_details(f.grpc, &f.message))
            {
                h.insert("grpc-status-details-bin", v);
            }
            r
        }
        Transport::Http { json } => {
            // google.rpc.Status, as OTLP/HTTP answers errors.
            let (ct, body) = if json {
                ("application/json", serde_json::json!({"code": f.grpc, "message": f.message}).to_string().into_bytes())
            } else {
                let mut s = Vec::new();
                encode::uint(&mut s, 1, f.grpc as u64);
                encode::bytes(&mut s, 2, f.message.as_bytes());
                ("application/x-protobuf", s)
            };
            let mut r = response(f.http, ct, Bytes::from(body));
            if f.retry {
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            r
        }
    }
}

fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Full::new(body).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// gRPC's `grpc-message` encoding: printable ASCII but `%` as is, the rest percent-encoded.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `grpc-status-details-bin`: a `google.rpc.Status` holding a `RetryInfo` of one second,
/// which OTLP exporters need to retry `RESOURCE_EXHAUSTED`.
fn status_details(code: u32, message: &str) -> String {
    let mut delay = Vec::new();
    encode::uint(&mut delay, 1, 1);
    let mut retry_info = Vec::new();
    encode::bytes(&mut retry_info, 1, &delay);
    let mut any = Vec::new();
    encode::bytes(&mut any, 1, b"type.googleapis.com/google.rpc.RetryInfo");
    encode::bytes(&mut any, 2, &retry_info);
    let mut status = Vec::new();
    encode::uint(&mut status, 1, code as u64);
    encode::bytes(&mut status, 2, message.as_bytes());
    encode::bytes(&mut status, 3, &any);
    base64_unpadded(&status)
}

fn base64_unpadded(bytes: &[u8]) -> String {
    let mut out = Vec::new();
    crate::parse::otlp_proto::base64(&mut out, bytes);
    while out.last() == Some(&b'=') {
        out.pop();
    }
    String::from_utf8(out).expect("base64 is ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{FeedReceiver, channel};
    use std::io::Write as _;

    /// A receiver on a free port, sending into a channel of `bytes`; its address.
    async fn receiver(bytes: usize, max_body: usize) -> (String, FeedReceiver) {
        let (tx, mut rx) = channel(16, bytes);
        let opts = OtlpOptions { max_body, ..OtlpOptions::default() };
        tokio::spawn(run("127.0.0.1:0".into(), 0, opts, tx));
        match rx.recv().await.unwrap().update {
            Update::State(SourceState::Listening(addr)) => (format!("http://{addr}/v1/traces"), rx),
            other => panic!("{other:?}"),
        }
    }

    /// An export of one scope with these spans (span ids 1, 2, …), and one line of a
    /// span with a start time of the wrong wire type, when `broken`.
    fn export(spans: u8, broken: bool) -> Vec<u8> {
        let mut scope = Vec::new();
        for id in 1..=spans {
            let mut s = Vec::new();
            encode::bytes(&mut s, 2, &[id; 8]);
            encode::fixed64(&mut s, 7, 1_700_000_000_000_000_000);
            encode::fixed64(&mut s, 8, 1_700_000_000_500_000_000);
            for (k, v) in [("gen_ai.operation.name", "chat"), ("gen_ai.request.model", "gpt-4o")] {
                let mut value = Vec::new();
                encode::bytes(&mut value, 1, v.as_bytes());
                let mut kv = Vec::new();
                encode::bytes(&mut kv, 1, k.as_bytes());
                encode::bytes(&mut kv, 2, &value);
                encode::bytes(&mut s, 9, &kv);
            }
            encode::bytes(&mut scope, 2, &s);
        }
        if broken {
            let mut s = Vec::new();
            encode::uint(&mut s, 7, 1);
            encode::bytes(&mut scope, 2, &s);
        }
        let mut rs = Vec::new();
        encode::bytes(&mut rs, 2, &scope);
        let mut req = Vec::new();
        encode::bytes(&mut req, 1, &rs);
        req
    }

    async fn post(url: &str, content_type: &str, body: Vec<u8>, gzip: bool) -> reqwest::Response {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut req = reqwest::Client::new().post(url).header("content-type", content_type);
        if gzip {
            req = req.header("content-encoding", "gzip");
        }
        req.body(body).send().await.unwrap()
    }

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    /// Events of a line, as the parse stage would read it.
    fn events(line: &[u8]) -> Vec<String> {
        let mut p = crate::parse::LineParser::new(None);
        let mut ids = Vec::new();
        for l in crate::parse::lines(line) {
            p.parse(l, &mut |ev| ids.push(ev.request_id.as_deref().unwrap_or("").to_string())).unwrap();
        }
        p.finish(&mut |ev| ids.push(ev.request_id.as_deref().unwrap_or("").to_string()));
        ids
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_as_otlp_says_and_counts_what_it_refuses() {
        let (url, mut rx) = receiver(4 << 20, 700_000).await;
        let pb = "application/x-protobuf";

        // Two good spans and a broken one: a partial success naming the broken one,
        // whose bad field (its last two bytes, the body's last) is named by its offset.
        let body = export(2, true);
        let at = body.len() - 2;
        let r = post(&url, pb, body, false).await;
        assert_eq!(r.status(), 200);
        let body = r.bytes().await.unwrap();
        let mut want = Vec::new();
        let mut partial = Vec::new();
        encode::uint(&mut partial, 1, 1);
        let why = format!("a span could not be decoded: a field that should be fixed64 is not at byte {at}");
        encode::bytes(&mut partial, 2, why.as_bytes());
        encode::bytes(&mut want, 1, &partial);
        assert_eq!(body.as_ref(), want, "{}", String::from_utf8_lossy(&body));
        let Update::Lines(line) = rx.recv().await.unwrap().update else { panic!() };
        assert_eq!(events(&line), ["0101010101010101", "0202020202020202"]);

        // The same, gzipped: all accepted, an empty answer.
        let r = post(&url, pb, gzip(&export(2, false)), true).await;
        assert_eq!((r.status().as_u16(), r.bytes().await.unwrap().len()), (200, 0));
        let Update::Lines(line) = rx.recv().await.unwrap().update else { panic!() };
        assert_eq!(events(&line).len(), 2);

        // OTLP/JSON written over several lines becomes one line.
        let json = b"{\"resourceSpans\": [{\"scopeSpans\": [{\"spans\": [\n  {\"spanId\": \"0a0b\",\r\n \"startTimeUnixNano\": \"1700000000000000000\", \"attributes\": [{\"key\": \"gen_ai.request.model\", \"value\": {\"stringValue\": \"a\\nb\"}}, {\"key\": \"gen_ai.system\", \"value\": {\"stringValue\": \"openai\"}}]}]}]}]}\n";
        let r = post(&url, "application/json", json.to_vec(), false).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "{}");
        let Update::Lines(line) = rx.recv().await.unwrap().update else { panic!() };
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(events(&line), ["0a0b"]);

        // A large JSON export is cut into lines that keep their resource.
        let span = |i: usize| {
            format!(
                r#"{{"spanId":"{i:04x}","startTimeUnixNano":"1700000000000000000","attributes":[{{"key":"gen_ai.request.model","value":{{"stringValue":"m"}}}},{{"key":"gen_ai.system","value":{{"stringValue":"openai"}}}},{{"key":"pad","value":{{"stringValue":"{}"}}}}]}}"#,
                "x".repeat(2_000)
            )
        };
        let spans: Vec<String> = (0..300).map(span).collect();
        let big = format!(
            r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"svc"}}}}]}},"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
            spans.join(",\n")
        );
        let r = post(&url, "application/json", big.into_bytes(), false).await;
        assert_eq!(r.status(), 200);
        let Update::Lines(lines) = rx.recv().await.unwrap().update else { panic!() };
        let n = lines.iter().filter(|&&b| b == b'\n').count();
        assert!((2..=4).contains(&n), "{n} lines");
        assert_eq!(events(&lines), (0..300).map(|i| format!("{i:04x}")).collect::<Vec<_>>());

        // Refused, each with its status and a google.rpc.Status saying why.
        let bomb = gzip(&vec![0u8; 1_000_000]);
        // Path, content type, body, gzipped, status, a part of the reason.
        type Case<'a> = (&'a str, &'a str, Vec<u8>, bool, u16, &'a str);
        let cases: [Case; 6] = [
            ("/v1/traces", pb, b"\x0b\x01".to_vec(), false, 400, "groups are not read"),
            (
                "/v1/traces",
                "text/plain",
                b"hello".to_vec(),
                false,
                415,
                "send application/x-protobuf or application/json",
            ),
            ("/v1/traces", pb, vec![0; 800_000], false, 413, "an export over 700000 bytes"),
            ("/v1/traces", pb, bomb, true, 413, "an export over 700000 bytes"),
            ("/v1/traces", "application/json", b"{\"resourceSpans\": [".to_vec(), false, 400, "not JSON"),
            ("/v1/profiles", pb, export(1, false), false, 404, "tokentop receives traces, at /v1/traces"),
        ];
        for (path, ct, body, gz, status, why) in cases {
            let r = post(&url.replace("/v1/traces", path), ct, body, gz).await;
            assert_eq!(r.status(), status, "{why}");
            let body = r.bytes().await.unwrap();
            assert!(String::from_utf8_lossy(&body).contains(why), "{status}: {}", String::from_utf8_lossy(&body));
        }
        let r = reqwest::Client::new().get(&url).send().await.unwrap();
        assert_eq!(r.status(), 405);
        // A metrics exporter sent to the same place: answered with success, not read.
        let r = post(&url.replace("/v1/traces", "/v1/metrics"), pb, b"\x0a\x00".to_vec(), false).await;
        assert_eq!((r.status().as_u16(), r.bytes().await.unwrap().len()), (200, 0));

        // Told once a second (the counts may straddle a tick): one rejected span and
        // five bad exports, with the first reason (the wrong path is the sender's
        // mistake, not bad data: answered, not counted), and the metrics export.
        let (mut bad, mut first_bad, mut notices) = (0, None, Vec::new());
        while let Ok(Some(feed)) = tokio::time::timeout(Duration::from_millis(2_500), rx.recv()).await {
            match feed.update {
                Update::BadRecords { count, first } => {
                    bad += count;
                    first_bad.get_or_insert(first);
                }
                Update::Notice(n) => notices.push(n),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(bad, 1 + 5);
        assert!(first_bad.unwrap().starts_with("a span could not be decoded"));
        assert_eq!(notices, ["1 metrics or logs exports answered and not read (tokentop reads traces)"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_console_behind_asks_exporters_to_retry() {
        let (url, mut rx) = receiver(100, 1 << 20).await;
        let pb = "application/x-protobuf";
        // The first export's line takes the whole budget; the next must wait.
        assert_eq!(post(&url, pb, export(1, false), false).await.status(), 200);
        let r = post(&url, pb, export(1, false), false).await;
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "1");
        // Taking the line makes room again.
        assert!(matches!(rx.recv().await.unwrap().update, Update::Lines(_)));
        assert_eq!(post(&url, pb, export(1, false), false).await.status(), 200);
        let mut notices = Vec::new();
        while notices.is_empty() {
            match tokio::time::timeout(Duration::from_secs(2), rx.recv()).await.unwrap().unwrap().update {
                Update::Notice(n) => notices.push(n),
                Update::Lines(_) => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(notices, ["asked exporters to retry 1 exports: the console is behind (they resend after a second)"]);
    }

    #[test]
    fn grpc_retry_details_are_a_status_with_retry_info() {
        // Decoded by hand: google.rpc.Status { code 8, message, details [Any{RetryInfo{1s}}] }.
        let text = status_details(RESOURCE_EXHAUSTED, "behind");
        let mut padded = text.clone();
        while !padded.len().is_multiple_of(4) {
            padded.push('=');
        }
        let mut want = vec![0x08, 8, 0x12, 6];
        want.extend_from_slice(b"behind");
        let any_url = b"type.googleapis.com/google.rpc.RetryInfo";
        let any_len = 2 + any_url.len() + 2 + 4;
        want.extend_from_slice(&[0x1a, any_len as u8, 0x0a, any_url.len() as u8]);
        want.extend_from_slice(any_url);
        want.extend_from_slice(&[0x12, 4, 0x0a, 2, 0x08, 1]);
        let mut b64 = Vec::new();
        crate::parse::otlp_proto::base64(&mut b64, &want);
        assert_eq!(padded.as_bytes(), b64);
        assert_eq!(percent_encode("50% done\n"), "50%25 done%0A");
    }
}
