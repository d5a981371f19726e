//! `tokentop serve`: a relay that broadcasts the events of its sources over WebSocket,
//! so a console on a laptop can watch a server's gateway log.
//!
//! Protocol (path `/events` or `/`): each text message is one event, tokentop's JSON
//! with `seq` and `stream` added; `seq` starts at 1 and grows by 1 per event, `stream`
//! changes every time the relay starts. `?since=N&stream=ID` replays every buffered
//! event after N, then continues live; when the buffer no longer reaches back to N + 1
//! the client first gets `{"type":"gap","missed":COUNT,"from":N+1,"to":FIRST_AVAILABLE-1}`.
//! A `since` from another stream (the relay restarted) or beyond the last `seq` first
//! gets `{"type":"reset","stream":ID,"last_seq":M}`, then the whole buffer: `seq`
//! never silently means another event. Without `since`, a client gets only new events
//! (plus, with `--backfill`, the buffered events of the last window).
//!
//! Clients read from the replay buffer itself, each at its own pace: a slow client
//! never stalls the others nor grows memory; one that falls behind the buffer gets a
//! gap notice where it lost events. The buffer is bounded in events and in bytes.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::parse::LineParser;
use crate::parse::native::write_line_with_seq;
use crate::source::{FeedReceiver, SourceState, Update};
use crate::time::Micros;

/// The environment variable holding the token clients must send (`Authorization: Bearer …`).
pub const TOKEN_ENV: &str = "TOKENTOP_SERVE_TOKEN";

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    /// Events kept for clients that resume.
    pub buffer: usize,
    /// Bytes of event text kept for clients that resume.
    pub buffer_bytes: usize,
    pub token: Option<String>,
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Send the buffered events of this last window to new clients.
    pub backfill: Option<Micros>,
    /// A connection that has not completed its handshake (TLS and WebSocket) within
    /// this long is closed: half-open connections cannot pile up.
    pub handshake_timeout: Duration,
}

#[derive(Debug, Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source} (is the port free? use --listen to pick another)")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot load the TLS certificate or key: {0} (give PEM files with --tls-cert and --tls-key)")]
    Tls(String),
}

struct Joined {
    /// Notices sent before any event: a reset, a gap.
    notices: Vec<String>,
    /// The last `seq` the client has (or is deemed to have).
    position: u64,
}

#[derive(Clone)]
struct Item {
    seq: u64,
    created_at: Micros,
    text: Utf8Bytes,
}

struct Inner {
    next_seq: u64,
    buffer: VecDeque<Item>,
    /// Bytes of event text in `buffer`.
    bytes: usize,
    latest: Micros,
}

/// The relay's shared state: the replay buffer, which is also what clients read live
/// events from (a client is only told the latest `seq`), so memory is the buffer's
/// bound, in events and in bytes, however many clients there are and however slow.
pub struct Relay {
    inner: Mutex<Inner>,
    latest: watch::Sender<u64>,
    capacity: usize,
    max_bytes: usize,
    /// Changes every time a relay starts: a client resuming with another stream's
    /// `seq` is told so instead of being given the wrong events.
    pub stream: String,
}

/// Events a client is sent per lock of the buffer.
const BATCH: usize = 1024;

impl Relay {
    pub fn new(buffer: usize, max_bytes: usize) -> Arc<Relay> {
        let (latest, _) = watch::channel(0);
        Arc::new(Relay {
            inner: Mutex::new(Inner {
                next_seq: 1,
                buffer: VecDeque::with_capacity(buffer.min(1 << 16)),
                bytes: 0,
                latest: 0,
            }),
            latest,
            capacity: buffer.max(1),
            max_bytes: max_bytes.max(1),
            stream: new_stream_id(),
        })
    }

    /// Numbers one event, adds the stream id, and keeps it for the clients.
    fn publish(&self, created_at: Micros, write: impl FnOnce(u64, &mut Vec<u8>)) {
        let mut inner = self.inner.lock().expect("relay lock");
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let mut line = Vec::with_capacity(512);
        write(seq, &mut line);
        while matches!(line.last(), Some(b'\n' | b'}')) {
            line.pop();
        }
        line.extend_from_slice(b",\"stream\":\"");
        line.extend_from_slice(self.stream.as_bytes());
        line.extend_from_slice(b"\"}");
        let text = Utf8Bytes::try_from(line).expect("events are written as UTF-8");
        inner.bytes += text.len();
        inner.buffer.push_back(Item { seq, created_at, text });
        while inner.buffer.len() > self.capacity || (inner.bytes > self.max_bytes && inner.buffer.len() > 1) {
            let old = inner.buffer.pop_front().expect("not empty");
            inner.bytes -= old.text.len();
        }
        inner.latest = inner.latest.max(created_at);
        drop(inner);
        self.latest.send_replace(seq);
    }

    /// Events published so far.
    pub fn published(&self) -> u64 {
        self.inner.lock().expect("relay lock").next_seq - 1
    }

    /// Bytes of event text held for replay.
    pub fn buffered_bytes(&self) -> usize {
        self.inner.lock().expect("relay lock").bytes
    }

    /// Where a client connecting now starts: notices (a reset when its `since` belongs to
    /// another stream or lies beyond this one's last `seq`, a gap when the buffer no
    /// longer reaches back), and the position it is deemed to have.
    fn join(&self, since: Option<u64>, stream: Option<&str>, backfill: Option<Micros>) -> Joined {
        let inner = self.inner.lock().expect("relay lock");
        let last = inner.next_seq - 1;
        let first = inner.buffer.front().map_or(inner.next_seq, |i| i.seq);
        let mut notices = Vec::new();
        let position = match since {
            Some(n) if stream.is_some_and(|s| s != self.stream) || n > last => {
                // Another stream (the relay restarted): everything it holds is new to the
                // client, so it gets the whole buffer after the notice.
                notices.push(format!(r#"{{"type":"reset","stream":"{}","last_seq":{last}}}"#, self.stream));
                0
            }
            Some(n) => n,
            None => match backfill {
                Some(d) => {
                    let recent = inner.buffer.iter().find(|i| i.created_at > inner.latest - d);
                    recent.map_or(last, |i| i.seq - 1)
                }
                // A new client starts after what was published before it joined.
                None => last,
            },
        };
        if position + 1 < first {
            notices.push(gap_notice(position, first));
        }
        Joined { notices, position: position.max(first - 1) }
    }

    /// Up to [`BATCH`] events after `position`; a gap notice first when the client fell
    /// behind what the buffer holds.
    fn after(&self, position: u64, out: &mut Vec<Message>) -> u64 {
        let inner = self.inner.lock().expect("relay lock");
        let first = inner.buffer.front().map_or(inner.next_seq, |i| i.seq);
        let mut position = position;
        if position + 1 < first {
            out.push(Message::text(gap_notice(position, first)));
            position = first - 1;
        }
        let skip = (position + 1 - first) as usize;
        for item in inner.buffer.iter().skip(skip).take(BATCH) {
            out.push(Message::Text(item.text.clone()));
            position = item.seq;
        }
        position
    }
}

fn gap_notice(position: u64, first: u64) -> String {
    format!(r#"{{"type":"gap","missed":{},"from":{},"to":{}}}"#, first - position - 1, position + 1, first - 1)
}

/// A stream id: unique per start of a relay (time, process and address mixed).
fn new_stream_id() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let local = 0u8;
    let seed = format!("{nanos}:{}:{:p}", std::process::id(), &local);
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(seed.as_bytes()))
}

/// Publishes what the sources send, until they are all gone.
pub async fn publish_feeds(
    relay: Arc<Relay>,
    mut rx: FeedReceiver,
    names: Vec<String>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
) {
    // Spans held for their traces are released within a second of going quiet.
    let mut parser = LineParser::new(None);
    let mut count = crate::metrics::Counter::new(metrics);
    let mut bad = 0u64;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        let feed = tokio::select! {
            feed = rx.recv() => feed,
            _ = tick.tick() => {
                parser.release_quiet(&mut |ev| {
                    count.event(ev);
                    relay.publish(ev.created_at, |seq, out| write_line_with_seq(ev, Some(seq), out));
                });
                continue;
            }
        };
        let Some(feed) = feed else { break };
        let name = &names[feed.source];
        match feed.update {
            Update::Lines(lines) => {
                for line in crate::parse::lines(&lines) {
                    let r = parser.parse(line, &mut |ev| {
                        count.event(ev);
                        relay.publish(ev.created_at, |seq, out| write_line_with_seq(ev, Some(seq), out));
                    });
                    if let Err(e) = r {
                        bad += 1;
                        if bad <= 10 {
                            eprintln!("tokentop: {name}: {}", crate::text::sanitize(&e.to_string()));
                        }
                    }
                }
            }
            Update::State(SourceState::Failed(e)) => eprintln!("tokentop: {name}: {}", crate::text::sanitize(&e)),
            Update::State(s) => eprintln!("tokentop: {name}: {s}"),
            other => {
                if let Some(text) = other.describe() {
                    eprintln!("tokentop: {name}: {text}");
                }
            }
        }
    }
    parser.finish(&mut |ev| {
        count.event(ev);
        relay.publish(ev.created_at, |seq, out| write_line_with_seq(ev, Some(seq), out));
    });
}

/// Accepts clients until the process ends.
pub async fn serve(opts: ServeOptions, relay: Arc<Relay>) -> Result<(), ServeError> {
    let listener =
        TcpListener::bind(opts.listen).await.map_err(|source| ServeError::Bind { addr: opts.listen, source })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind { addr: opts.listen, source })?;
    let tls = match &opts.tls {
        Some((cert, key)) => Some(tls_acceptor(cert, key)?),
        None => None,
    };
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    eprintln!("tokentop: relaying on {scheme}://{addr}/events");
    if opts.token.is_none() && !addr.ip().is_loopback() {
        eprintln!(
            "tokentop: warning: listening on {} without a token: anyone who can reach it can read the events (set {TOKEN_ENV})",
            addr.ip()
        );
    }
    let opts = Arc::new(opts);
    let log = Arc::new(Mutex::new(LogThrottle::default()));
    let mut backoff = Duration::ZERO;
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => {
                backoff = Duration::ZERO;
                c
            }
            Err(e) => {
                // Out of file descriptors (or another passing error): wait before trying
                // again rather than spin, and say so once in a while.
                backoff = (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                if log.lock().expect("log lock").allow(None) {
                    eprintln!("tokentop: cannot accept a connection: {e} (retrying in {backoff:?})");
                }
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (relay, opts, tls, log) = (relay.clone(), opts.clone(), tls.clone(), log.clone());
        tokio::spawn(async move {
            let result = match tls {
                Some(acceptor) => match tokio::time::timeout(opts.handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => client(stream, relay, &opts).await,
                    Ok(Err(e)) => Err(format!("TLS handshake failed: {e}")),
                    Err(_) => Err(format!("no TLS handshake within {:?}", opts.handshake_timeout)),
                },
                None => client(tcp, relay, &opts).await,
            };
            if let Err(e) = result {
                let mut log = log.lock().expect("log lock");
                if log.allow(Some(peer.ip())) {
                    eprintln!("tokentop: client {peer}: {e}");
                }
            }
        });
    }
}

/// Lines a minute on stderr per client address (and for accept errors), so a flood of
/// bad connections cannot flood the log.
const LOG_PER_MINUTE: u32 = 5;

/// Counts log lines per address over the current minute.
#[derive(Default)]
struct LogThrottle {
    minute: Option<std::time::Instant>,
    per_address: std::collections::HashMap<Option<std::net::IpAddr>, u32>,
}

impl LogThrottle {
    /// Whether to log one more line for `addr`; the line that reaches the limit says
    /// the rest is held back.
    fn allow(&mut self, addr: Option<std::net::IpAddr>) -> bool {
        if self.minute.is_none_or(|m| m.elapsed() >= Duration::from_secs(60)) {
            self.minute = Some(std::time::Instant::now());
            self.per_address.clear();
        }
        // Bounded however many addresses there are: past 10,000 only the total counts.
        let key = if self.per_address.len() >= 10_000 && !self.per_address.contains_key(&addr) { None } else { addr };
        let n = self.per_address.entry(key).or_default();
        *n += 1;
        if *n == LOG_PER_MINUTE {
            let who = key.map_or_else(|| "connections".to_string(), |a| a.to_string());
            eprintln!("tokentop: more errors from {who} this minute are not shown");
        }
        *n < LOG_PER_MINUTE
    }
}

fn tls_acceptor(cert: &PathBuf, key: &PathBuf) -> Result<tokio_rustls::TlsAcceptor, ServeError> {
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(server_config(cert, key, &[])?)))
}

/// A TLS server configuration from PEM files, offering the protocols in `alpn`.
pub(crate) fn server_config(cert: &PathBuf, key: &PathBuf, alpn: &[&[u8]]) -> Result<rustls::ServerConfig, ServeError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect())
        .map_err(|e| ServeError::Tls(format!("{}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| ServeError::Tls(format!("{}: {e}", key.display())))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// Equal-time comparison, so a wrong token's timing tells nothing about the right one.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn refuse(code: StatusCode, why: &str) -> ErrorResponse {
    let mut r = ErrorResponse::new(Some(why.to_string()));
    *r.status_mut() = code;
    r
}

/// Whether an `Authorization` header carries `token` as a bearer token (the scheme is
/// case-insensitive; the token is compared in constant time).
pub(crate) fn bearer_matches(header: &[u8], token: &str) -> bool {
    let Some(space) = header.iter().position(|&b| b == b' ') else { return false };
    let (scheme, rest) = header.split_at(space);
    let sent = rest.trim_ascii_start();
    scheme.eq_ignore_ascii_case(b"bearer") && same(sent, token.as_bytes())
}

/// `since` and `stream` from a client's query.
fn resume_point(query: &str) -> Result<(Option<u64>, Option<String>), &'static str> {
    let (mut since, mut stream) = (None, None);
    for kv in query.split('&') {
        if let Some(v) = kv.strip_prefix("since=") {
            since = Some(v.parse::<u64>().map_err(|_| "since must be a whole number")?);
        } else if let Some(v) = kv.strip_prefix("stream=") {
            stream = Some(v.to_string());
        }
    }
    Ok((since, stream))
}

// The handshake callback's error type is tungstenite's `ErrorResponse`, whatever its size.
#[allow(clippy::result_large_err)]
async fn client<S>(stream: S, relay: Arc<Relay>, opts: &ServeOptions) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    // The client's position is fixed inside the handshake, before it hears "101
    // Switching Protocols": once it is connected, it has every event published from then on.
    let mut joined = None;
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let path = req.uri().path();
        if path != "/" && path != "/events" {
            return Err(refuse(StatusCode::NOT_FOUND, "events are served at /events"));
        }
        if let Some(token) = &opts.token {
            let sent = req.headers().get("authorization").map(|v| v.as_bytes()).unwrap_or_default();
            if !bearer_matches(sent, token) {
                return Err(refuse(StatusCode::UNAUTHORIZED, "missing or wrong bearer token"));
            }
        }
        let (since, stream) =
            resume_point(req.uri().query().unwrap_or("")).map_err(|why| refuse(StatusCode::BAD_REQUEST, why))?;
        joined = Some(relay.join(since, stream.as_deref(), opts.backfill));
        Ok(resp)
    };
    let handshake = tokio_tungstenite::accept_hdr_async(stream, callback);
    let ws = match tokio::time::timeout(opts.handshake_timeout, handshake).await {
        Err(_) => return Err(format!("no WebSocket handshake within {:?}", opts.handshake_timeout)),
        Ok(r) => r.map_err(|e| e.to_string())?,
    };
    let Some(Joined { notices, position }) = joined else {
        return Err("handshake accepted without joining".into());
    };
    let (mut sink, mut incoming) = ws.split();
    for notice in notices {
        sink.feed(Message::text(notice)).await.map_err(|e| e.to_string())?;
    }
    let mut latest = relay.latest.subscribe();
    let mut last = position;
    let mut batch = Vec::with_capacity(BATCH + 1);
    let mut ping = tokio::time::interval(Duration::from_secs(15));
    loop {
        // Everything there is to send, in batches, flushed once.
        loop {
            let head = *latest.borrow_and_update();
            if head <= last {
                break;
            }
            last = relay.after(last, &mut batch);
            for msg in batch.drain(..) {
                if timed(sink.feed(msg)).await.is_err() {
                    return Err("write timeout".into());
                }
            }
        }
        done(timed(sink.flush()).await)?;
        tokio::select! {
            changed = latest.changed() => if changed.is_err() {
                return Ok(());
            },
            msg = incoming.next() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Ok(()),
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                done(timed(sink.send(Message::Ping(Vec::new().into()))).await)?;
            }
        }
    }
}

/// A client that cannot take a write within this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

fn timed<F: std::future::Future>(f: F) -> tokio::time::Timeout<F> {
    tokio::time::timeout(WRITE_TIMEOUT, f)
}

fn done<E: std::fmt::Display>(r: Result<Result<(), E>, tokio::time::error::Elapsed>) -> Result<(), String> {
    match r {
        Err(_) => Err("write timeout".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(())) => Ok(()),
    }
}
