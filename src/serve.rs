//! `tokentop serve`: a relay that broadcasts the events of its sources over WebSocket,
//! so a console on a laptop can watch a server's gateway log.
//!
//! Protocol (path `/events` or `/`): each text message is one event, tokentop's JSON
//! with `seq` added; `seq` starts at 1 and grows by 1 per event. `?since=N` replays
//! every buffered event after N, then continues live; when the buffer no longer
//! reaches back to N + 1 the first message is
//! `{"type":"gap","missed":COUNT,"from":N+1,"to":FIRST_AVAILABLE-1}`. Without `since`, a
//! client gets only new events (plus, with `--backfill`, the buffered events of the
//! last window). A client whose queue overflows is disconnected and resumes with
//! `since`: a slow client never stalls the others nor grows memory. The close frame's
//! reason ends with `since=N`, the last event sent to it, so even a client dropped
//! before its first event knows where to resume.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::parse::native::write_line_with_seq;
use crate::parse::{LineParser, trim_line};
use crate::source::{Feed, SourceState, Update};
use crate::time::Micros;

/// The environment variable holding the token clients must send (`Authorization: Bearer …`).
pub const TOKEN_ENV: &str = "TOKENTOP_SERVE_TOKEN";

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    /// Events kept for clients that resume.
    pub buffer: usize,
    /// Events a client may fall behind before it is disconnected.
    pub client_queue: usize,
    pub token: Option<String>,
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Send the buffered events of this last window to new clients.
    pub backfill: Option<Micros>,
}

#[derive(Debug, Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source} (is the port free? use --listen to pick another)")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot load the TLS certificate or key: {0} (give PEM files with --tls-cert and --tls-key)")]
    Tls(String),
}

struct Joined {
    gap: Option<String>,
    backlog: Vec<Item>,
    rx: broadcast::Receiver<Item>,
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
    latest: Micros,
}

/// The relay's shared state: the replay buffer and the live broadcast.
pub struct Relay {
    inner: Mutex<Inner>,
    live: broadcast::Sender<Item>,
    capacity: usize,
}

impl Relay {
    pub fn new(buffer: usize, client_queue: usize) -> Arc<Relay> {
        let (live, _) = broadcast::channel(client_queue.max(1));
        Arc::new(Relay {
            inner: Mutex::new(Inner { next_seq: 1, buffer: VecDeque::with_capacity(buffer.min(1 << 20)), latest: 0 }),
            live,
            capacity: buffer.max(1),
        })
    }

    /// Numbers one event and sends it to everyone. Publishing and subscribing happen
    /// under one lock, so a resuming client neither misses nor repeats an event.
    fn publish(&self, created_at: Micros, write: impl FnOnce(u64, &mut Vec<u8>)) {
        let mut inner = self.inner.lock().expect("relay lock");
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let mut line = Vec::with_capacity(512);
        write(seq, &mut line);
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let text = Utf8Bytes::try_from(line).expect("events are written as UTF-8");
        let item = Item { seq, created_at, text };
        if inner.buffer.len() >= self.capacity {
            inner.buffer.pop_front();
        }
        inner.buffer.push_back(item.clone());
        inner.latest = inner.latest.max(created_at);
        // No receivers is fine: nobody is watching yet.
        let _ = self.live.send(item);
    }

    /// Events published so far.
    pub fn published(&self) -> u64 {
        self.inner.lock().expect("relay lock").next_seq - 1
    }

    /// What a client connecting now gets: a gap notice, the backlog, its subscription to
    /// what follows, and where it stands (the last `seq` it has, or is deemed to have).
    fn join(&self, since: Option<u64>, backfill: Option<Micros>) -> Joined {
        let inner = self.inner.lock().expect("relay lock");
        let rx = self.live.subscribe();
        let first = inner.buffer.front().map_or(inner.next_seq, |i| i.seq);
        match since {
            Some(n) => {
                let gap = (n + 1 < first).then(|| {
                    format!(r#"{{"type":"gap","missed":{},"from":{},"to":{}}}"#, first - n - 1, n + 1, first - 1)
                });
                let skip = inner.buffer.partition_point(|i| i.seq <= n);
                Joined { gap, backlog: inner.buffer.iter().skip(skip).cloned().collect(), rx, position: n }
            }
            None => {
                let backlog = match backfill {
                    Some(d) => inner.buffer.iter().filter(|i| i.created_at > inner.latest - d).cloned().collect(),
                    None => Vec::new(),
                };
                // A new client starts after what was published before it joined.
                let position = inner.next_seq - 1;
                Joined { gap: None, backlog, rx, position }
            }
        }
    }
}

/// Publishes what the sources send, until they are all gone.
pub async fn publish_feeds(relay: Arc<Relay>, mut rx: mpsc::Receiver<Feed>, names: Vec<String>) {
    let mut parser = LineParser::new(None);
    let mut bad = 0u64;
    while let Some(feed) = rx.recv().await {
        let name = &names[feed.source];
        match feed.update {
            Update::Lines(lines) => {
                for line in lines.split(|&b| b == b'\n').filter_map(trim_line) {
                    let r = parser.parse(line, &mut |ev| {
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
            Update::TooLong(n) => eprintln!("tokentop: {name}: skipped {n} lines longer than 1 MiB"),
            Update::Truncated => eprintln!("tokentop: {name}: truncated, reading it again from the start"),
            Update::Gap { missed, from, to } => eprintln!("tokentop: {name}: missed {missed} events (#{from}..#{to})"),
            Update::Duplicates(_) => {}
            Update::BadRecords { count, first } => {
                eprintln!("tokentop: {name}: {count} bad records: {}", crate::text::sanitize(&first))
            }
        }
    }
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
    let opts = Arc::new(opts);
    loop {
        let Ok((tcp, peer)) = listener.accept().await else { continue };
        let _ = tcp.set_nodelay(true);
        let (relay, opts, tls) = (relay.clone(), opts.clone(), tls.clone());
        tokio::spawn(async move {
            let result = match tls {
                Some(acceptor) => match acceptor.accept(tcp).await {
                    Ok(stream) => client(stream, relay, &opts).await,
                    Err(e) => Err(format!("TLS handshake failed: {e}")),
                },
                None => client(tcp, relay, &opts).await,
            };
            if let Err(e) = result {
                eprintln!("tokentop: client {peer}: {e}");
            }
        });
    }
}

fn tls_acceptor(cert: &PathBuf, key: &PathBuf) -> Result<tokio_rustls::TlsAcceptor, ServeError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect())
        .map_err(|e| ServeError::Tls(format!("{}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| ServeError::Tls(format!("{}: {e}", key.display())))?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
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

// The handshake callback's error type is tungstenite's `ErrorResponse`, whatever its size.
#[allow(clippy::result_large_err)]
async fn client<S>(stream: S, relay: Arc<Relay>, opts: &ServeOptions) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    // The client is subscribed inside the handshake, before it hears "101 Switching
    // Protocols": once it is connected, it has every event published from then on.
    let mut joined = None;
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let path = req.uri().path();
        if path != "/" && path != "/events" {
            return Err(refuse(StatusCode::NOT_FOUND, "events are served at /events"));
        }
        if let Some(token) = &opts.token {
            let sent = req.headers().get("authorization").map(|v| v.as_bytes()).unwrap_or_default();
            if !same(sent, format!("Bearer {token}").as_bytes()) {
                return Err(refuse(StatusCode::UNAUTHORIZED, "missing or wrong bearer token"));
            }
        }
        let mut since = None;
        for kv in req.uri().query().unwrap_or("").split('&') {
            if let Some(v) = kv.strip_prefix("since=") {
                match v.parse::<u64>() {
                    Ok(n) => since = Some(n),
                    Err(_) => return Err(refuse(StatusCode::BAD_REQUEST, "since must be a whole number")),
                }
            }
        }
        joined = Some(relay.join(since, opts.backfill));
        Ok(resp)
    };
    let ws = tokio_tungstenite::accept_hdr_async(stream, callback).await.map_err(|e| e.to_string())?;
    let Some(Joined { gap, backlog, mut rx, position }) = joined else {
        return Err("handshake accepted without joining".into());
    };
    let (mut sink, mut incoming) = ws.split();
    let mut last = position;
    if let Some(gap) = gap {
        sink.feed(Message::text(gap)).await.map_err(|e| e.to_string())?;
    }
    for item in backlog {
        last = item.seq;
        if timed(sink.feed(Message::Text(item.text))).await.is_err() {
            return Err("too slow to take the backlog".into());
        }
    }
    done(timed(sink.flush()).await)?;
    let mut ping = tokio::time::interval(Duration::from_secs(15));
    loop {
        tokio::select! {
            item = rx.recv() => {
                let mut next = Some(item);
                // Batch whatever is queued into one flush.
                while let Some(item) = next.take() {
                    match item {
                        Ok(item) if item.seq > last => {
                            last = item.seq;
                            if timed(sink.feed(Message::Text(item.text))).await.is_err() {
                                return Err("write timeout".into());
                            }
                        }
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            // Everything fed so far is flushed before the close frame, so
                            // `last` is exactly where the client stands.
                            let reason = format!("too slow: reconnect with since={last}");
                            let frame = CloseFrame { code: CloseCode::Again, reason: reason.into() };
                            let _ = timed(sink.send(Message::Close(Some(frame)))).await;
                            return Ok(());
                        }
                        Err(broadcast::error::RecvError::Closed) => return Ok(()),
                    }
                    // A lag seen here must end the connection too: the receiver has
                    // already skipped ahead, and going on would lose events silently.
                    next = match rx.try_recv() {
                        Ok(item) => Some(Ok(item)),
                        Err(broadcast::error::TryRecvError::Lagged(n)) => Some(Err(broadcast::error::RecvError::Lagged(n))),
                        Err(broadcast::error::TryRecvError::Closed) => Some(Err(broadcast::error::RecvError::Closed)),
                        Err(broadcast::error::TryRecvError::Empty) => None,
                    };
                }
                done(timed(sink.flush()).await)?;
            }
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
