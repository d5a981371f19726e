//! WebSocket streams: a tokentop relay (`tokentop serve`) or any gateway that sends
//! events as text messages (one event, a JSON array of events, or events separated by
//! newlines).
//!
//! The client reconnects forever with exponential backoff and jitter (from 250 ms to
//! 30 s), resumes a relay with `?since=SEQ&stream=ID` so a dropped connection loses
//! nothing, drops events it already has (same `seq`), reports gaps the relay announces,
//! pings the server and drops a connection that stays silent. When the relay restarted
//! (a `reset` notice: its `seq` numbers are a new stream), the client takes the new
//! stream's whole buffer and drops the events it saw before, by their `request_id`
//! (the last 262,144 ids are remembered);
//! the restart is reported, since events published while the relay was down may be
//! missing, and so are replayed events without a `request_id` (they cannot be checked). Secrets (the bearer token,
//! header values) are never shown: not in states, errors or logs.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::{Feed, FeedSender, SourceState, Update};
use crate::parse::native::write_line;
use crate::parse::{LineParser, trim_line};

/// The environment variable holding a bearer token for WebSocket sources.
pub const TOKEN_ENV: &str = "TOKENTOP_WS_TOKEN";

#[derive(Debug, Clone)]
pub struct WsOptions {
    /// Extra request headers (`--header 'Name: value'`).
    pub headers: Vec<(String, String)>,
    /// Sent as `Authorization: Bearer …`.
    pub token: Option<String>,
    /// Larger messages are refused (the connection is dropped and resumed).
    pub max_message: usize,
    pub ping_every: Duration,
    /// A connection silent for this long (no message, no pong) is dropped.
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
    pub backoff_first: Duration,
    pub backoff_max: Duration,
}

impl Default for WsOptions {
    fn default() -> Self {
        WsOptions {
            headers: Vec::new(),
            token: std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty()),
            max_message: 16 << 20,
            ping_every: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            backoff_first: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
        }
    }
}

pub use crate::text::redact_url as redact;

/// The URL with `since=N` (and `stream=ID` when known) set, replacing any already there.
fn with_since(url: &str, since: Option<u64>, stream: Option<&str>) -> String {
    let Some(since) = since else { return url.to_string() };
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut parts: Vec<String> = query
        .split('&')
        .filter(|kv| !kv.is_empty() && !kv.starts_with("since=") && !kv.starts_with("stream="))
        .map(str::to_string)
        .collect();
    parts.push(format!("since={since}"));
    if let Some(s) = stream {
        parts.push(format!("stream={s}"));
    }
    format!("{base}?{}", parts.join("&"))
}

/// Request ids seen lately (hashed), to drop events a restarted relay sends again.
struct SeenIds {
    order: std::collections::VecDeque<u64>,
    set: hashbrown::HashSet<u64>,
}

/// Request ids remembered: more than a relay's default replay buffer.
const SEEN_IDS: usize = 1 << 18;

impl SeenIds {
    fn new() -> Self {
        SeenIds { order: Default::default(), set: Default::default() }
    }

    fn contains(&self, h: u64) -> bool {
        self.set.contains(&h)
    }

    fn insert(&mut self, h: u64) {
        if self.set.insert(h) {
            self.order.push_back(h);
            if self.order.len() > SEEN_IDS
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }
}

/// Where the client stands in a relay's stream of events.
struct Position {
    last_seq: Option<u64>,
    /// The relay's stream id, once an event or a reset named it.
    stream: Option<String>,
    /// After a reset: the new stream's events up to this `seq` were buffered while the
    /// client was away (those without a request id cannot be checked).
    catch_up: Option<u64>,
    /// Request ids of this stream's events.
    seen: SeenIds,
    /// Request ids of the stream before the last reset: a restarted relay reading its
    /// files again sends them again, for as long as its first read lasts.
    before: Option<SeenIds>,
    /// Replayed events after a reset that had no request id to check.
    unverified: u64,
}

impl Position {
    fn new() -> Self {
        Position { last_seq: None, stream: None, catch_up: None, seen: SeenIds::new(), before: None, unverified: 0 }
    }
}

/// The `stream` field of a relayed event, found without parsing it again.
fn stream_of(record: &[u8]) -> Option<&str> {
    const KEY: &[u8] = b"\"stream\":\"";
    let at = memchr::memmem::find(record, KEY)? + KEY.len();
    let len = memchr::memchr(b'"', &record[at..])?;
    std::str::from_utf8(&record[at..at + len]).ok()
}

/// Exponential backoff with "equal jitter": half the delay fixed, half random.
struct Backoff {
    next: Duration,
    first: Duration,
    max: Duration,
    seed: u64,
}

impl Backoff {
    fn delay(&mut self) -> Duration {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let half = self.next / 2;
        let jitter = half.mul_f64((self.seed >> 11) as f64 / (1u64 << 53) as f64);
        self.next = (self.next * 2).min(self.max);
        half + jitter
    }

    fn reset(&mut self) {
        self.next = self.first;
    }
}

/// A notice from a relay: `gap` or `reset`.
#[derive(Deserialize)]
struct Notice {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    missed: u64,
    #[serde(default)]
    from: u64,
    #[serde(default)]
    to: u64,
    #[serde(default)]
    stream: String,
    #[serde(default)]
    last_seq: u64,
}

/// What one connection attempt ended with.
enum Ended {
    /// The consumer is gone: stop for good.
    Stop,
    /// Reconnect, showing this reason.
    Retry(String),
}

/// Connects to `url` and streams its events to `tx` as source number `source`, forever
/// (until the receiver is dropped).
pub async fn run(url: String, source: usize, opts: WsOptions, tx: FeedSender) {
    let mut position = Position::new();
    let mut backoff = Backoff {
        next: opts.backoff_first,
        first: opts.backoff_first,
        max: opts.backoff_max,
        seed: (crate::time::now() as u64) | 1,
    };
    let mut attempt = 0u32;
    let send = |update: Update| {
        let tx = tx.clone();
        async move { tx.send(Feed { source, update }).await }
    };
    loop {
        if !send(Update::State(SourceState::Connecting)).await {
            return;
        }
        let started = tokio::time::Instant::now();
        let reason = match connect_and_stream(&url, source, &opts, &tx, &mut position).await {
            Ended::Stop => return,
            Ended::Retry(reason) => reason,
        };
        // A connection that held for a while starts the backoff over.
        if started.elapsed() > Duration::from_secs(10) {
            backoff.reset();
            attempt = 0;
        }
        attempt += 1;
        let delay = backoff.delay();
        let state = SourceState::Reconnecting { in_ms: delay.as_millis() as u64, attempt, error: reason };
        if !send(Update::State(state)).await {
            return;
        }
        tokio::time::sleep(delay).await;
    }
}

async fn connect_and_stream(
    url: &str,
    source: usize,
    opts: &WsOptions,
    tx: &FeedSender,
    position: &mut Position,
) -> Ended {
    let mut request = match with_since(url, position.last_seq, position.stream.as_deref()).into_client_request() {
        Ok(r) => r,
        Err(e) => return Ended::Retry(format!("invalid URL {}: {e}", redact(url))),
    };
    for (name, value) in &opts.headers {
        match (HeaderName::try_from(name.as_str()), HeaderValue::try_from(value.as_str())) {
            (Ok(n), Ok(v)) => {
                request.headers_mut().insert(n, v);
            }
            _ => return Ended::Retry(format!("header `{name}` is not a valid HTTP header")),
        }
    }
    if let Some(token) = &opts.token {
        match HeaderValue::try_from(format!("Bearer {token}")) {
            Ok(v) => {
                request.headers_mut().insert("authorization", v);
            }
            Err(_) => return Ended::Retry(format!("{TOKEN_ENV} holds characters that cannot go in an HTTP header")),
        }
    }
    let config =
        WebSocketConfig::default().max_message_size(Some(opts.max_message)).max_frame_size(Some(opts.max_message));
    let connect = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    let (stream, _) = match tokio::time::timeout(opts.connect_timeout, connect).await {
        Err(_) => return Ended::Retry(format!("no answer within {}s", opts.connect_timeout.as_secs())),
        Ok(Err(e)) => return Ended::Retry(describe(&e)),
        Ok(Ok(s)) => s,
    };
    if !tx.send(Feed { source, update: Update::State(SourceState::Connected { since: position.last_seq }) }).await {
        return Ended::Stop;
    }
    let (mut sink, mut stream) = stream.split();
    // A relay's messages are answered at once: nested spans are resolved per message.
    let mut parser = LineParser::new(None).without_holding();
    let mut ping = tokio::time::interval(opts.ping_every);
    ping.tick().await;
    let mut silent_since = tokio::time::Instant::now();
    loop {
        tokio::select! {
            msg = stream.next() => {
                silent_since = tokio::time::Instant::now();
                let msg = match msg {
                    None => return Ended::Retry("the server closed the connection".into()),
                    Some(Err(e)) => return Ended::Retry(describe(&e)),
                    Some(Ok(m)) => m,
                };
                let text = match &msg {
                    Message::Text(t) => t.as_str(),
                    Message::Binary(b) => match std::str::from_utf8(b) {
                        Ok(t) => t,
                        Err(_) => {
                            let bad = Update::BadRecords { count: 1, first: "a binary message that is not UTF-8 text".into() };
                            if !tx.send(Feed { source, update: bad }).await {
                                return Ended::Stop;
                            }
                            continue;
                        }
                    },
                    Message::Close(frame) => {
                        let why = frame.as_ref().map(|f| f.reason.to_string()).filter(|r| !r.is_empty());
                        // A relay that drops us says where to resume.
                        if let Some(n) = why.as_deref().and_then(|r| r.rsplit_once("since=")).and_then(|(_, n)| n.trim().parse::<u64>().ok())
                            && position.last_seq.is_none_or(|l| l < n)
                        {
                            position.last_seq = Some(n);
                        }
                        return Ended::Retry(match why {
                            Some(r) => format!("the server closed the connection: {}", crate::text::sanitize(&r)),
                            None => "the server closed the connection".into(),
                        });
                    }
                    _ => continue,
                };
                for update in handle(text, &mut parser, position) {
                    if !tx.send(Feed { source, update }).await {
                        return Ended::Stop;
                    }
                }
            }
            _ = ping.tick() => {
                if silent_since.elapsed() > opts.idle_timeout {
                    return Ended::Retry(format!("no data or pong for {}s", opts.idle_timeout.as_secs()));
                }
                if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return Ended::Retry("the connection broke".into());
                }
            }
        }
    }
}

/// A connection error in words, without secrets (URLs are never echoed with them).
fn describe(e: &WsError) -> String {
    match e {
        WsError::Http(resp) => {
            let code = resp.status();
            let hint = match code.as_u16() {
                401 | 403 => format!(": set {TOKEN_ENV} or --header"),
                404 => ": check the path (a tokentop relay serves /events)".into(),
                _ => String::new(),
            };
            // Short, so that the status bar has room for the hint.
            format!("{code}{hint}")
        }
        WsError::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused (is the server running?)".into(),
            _ => format!("network error: {io}"),
        },
        WsError::Tls(t) => format!("TLS error: {t}"),
        WsError::Capacity(c) => format!("message too large ({c})"),
        WsError::Url(u) => format!("bad URL: {u}"),
        other => other.to_string(),
    }
}

/// Turns one message into updates: a notice (gap, reset), or events (as native lines)
/// with duplicates dropped, and bad records counted.
fn handle(text: &str, parser: &mut LineParser, pos: &mut Position) -> Vec<Update> {
    let trimmed = text.trim_start();
    if trimmed.starts_with("{\"type\"")
        && let Ok(notice) = serde_json::from_str::<Notice>(trimmed)
    {
        match notice.kind.as_str() {
            "gap" => {
                pos.last_seq = Some(notice.to.max(pos.last_seq.unwrap_or(0)));
                return vec![Update::Gap { missed: notice.missed, from: notice.from, to: notice.to }];
            }
            "reset" => {
                let stream = crate::text::sanitize(&notice.stream).into_owned();
                pos.stream = Some(stream.clone());
                pos.last_seq = Some(0);
                pos.catch_up = (notice.last_seq > 0).then_some(notice.last_seq);
                pos.unverified = 0;
                pos.before = Some(std::mem::replace(&mut pos.seen, SeenIds::new()));
                return vec![Update::Restarted { stream, last_seq: notice.last_seq }];
            }
            _ => {}
        }
    }
    let mut records: Vec<std::borrow::Cow<str>> = Vec::new();
    let mut bad = 0u64;
    let mut first_bad = String::new();
    if trimmed.starts_with('[') {
        match serde_json::from_str::<Vec<&serde_json::value::RawValue>>(trimmed) {
            Ok(items) => records.extend(items.into_iter().map(|r| std::borrow::Cow::Borrowed(r.get()))),
            Err(e) => {
                bad += 1;
                first_bad = format!("a message that is not a JSON array of events: {e}");
            }
        }
    } else {
        records.extend(text.split('\n').map(std::borrow::Cow::Borrowed));
    }
    let mut lines = Vec::new();
    let mut dups = 0u64;
    let mut caught_up = false;
    for record in &records {
        let Some(record) = trim_line(record.as_bytes()) else { continue };
        if record.len() > crate::parse::MAX_LINE_BYTES {
            bad += 1;
            if first_bad.is_empty() {
                first_bad = "an event longer than 1 MiB".into();
            }
            continue;
        }
        let result = parser.parse(record, &mut |ev| {
            let Some(seq) = ev.seq else {
                write_line(ev, &mut lines);
                return;
            };
            if pos.last_seq.is_some_and(|last| seq <= last) {
                dups += 1;
                return;
            }
            pos.last_seq = Some(seq);
            let id = ev.request_id.as_deref().map(|id| xxhash_rust::xxh3::xxh3_64(id.as_bytes()));
            if let Some(end) = pos.catch_up {
                if seq >= end {
                    pos.catch_up = None;
                    caught_up = true;
                }
                if id.is_none() {
                    pos.unverified += 1;
                }
            }
            if let Some(h) = id {
                pos.seen.insert(h);
                if pos.before.as_ref().is_some_and(|b| b.contains(h)) {
                    dups += 1;
                    return;
                }
            }
            write_line(ev, &mut lines);
        });
        match result {
            Ok(_) => {
                if let Some(stream) = stream_of(record)
                    && pos.stream.as_deref() != Some(stream)
                {
                    pos.stream = Some(stream.to_string());
                }
            }
            Err(e) => {
                bad += 1;
                if first_bad.is_empty() {
                    first_bad = e.to_string();
                }
            }
        }
    }
    let mut out = Vec::new();
    if !lines.is_empty() {
        out.push(Update::Lines(lines));
    }
    if dups > 0 {
        out.push(Update::Duplicates(dups));
    }
    if bad > 0 {
        out.push(Update::BadRecords { count: bad, first: first_bad });
    }
    if caught_up && pos.unverified > 0 {
        out.push(Update::Notice(format!(
            "{} events replayed after the relay restarted had no request_id: some may repeat events seen before",
            pos.unverified
        )));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_secrets_in_urls() {
        assert_eq!(
            redact("wss://user:pw@relay:9443/events?token=abc&since=4"),
            "wss://***@relay:9443/events?token=***&since=4"
        );
        assert_eq!(redact("ws://localhost/events"), "ws://localhost/events");
    }

    #[test]
    fn since_is_set_once() {
        assert_eq!(with_since("ws://h/events", Some(7), None), "ws://h/events?since=7");
        assert_eq!(with_since("ws://h/events?since=3&x=1", Some(7), None), "ws://h/events?x=1&since=7");
        assert_eq!(with_since("ws://h/events?stream=a&since=3", Some(7), Some("b")), "ws://h/events?since=7&stream=b");
        assert_eq!(with_since("ws://h/events", None, Some("b")), "ws://h/events");
    }

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let mut b = Backoff {
            next: Duration::from_millis(250),
            first: Duration::from_millis(250),
            max: Duration::from_secs(30),
            seed: 42,
        };
        let delays: Vec<u128> = (0..12).map(|_| b.delay().as_millis()).collect();
        assert!((125..=250).contains(&delays[0]), "{delays:?}");
        assert!((250..=500).contains(&delays[1]), "{delays:?}");
        assert!(delays.iter().all(|&d| d <= 30_000));
        assert!(delays[11] >= 15_000, "capped at 30 s with half of it fixed: {delays:?}");
        b.reset();
        assert!(b.delay().as_millis() <= 250);
    }

    #[test]
    fn messages_become_lines_without_duplicates() {
        let mut p = LineParser::new(None);
        let mut last = Position::new();
        let one = r#"{"created_at":1,"model":"a","seq":1}"#;
        let arr = r#"[{"created_at":2,"model":"b","seq":2},{"created_at":3,"model":"c","seq":3}]"#;
        let nl = "{\"created_at\":4,\"seq\":4}\n{\"created_at\":5}\nnot json";
        assert!(matches!(&handle(one, &mut p, &mut last)[..], [Update::Lines(_)]));
        assert!(
            matches!(&handle(arr, &mut p, &mut last)[..], [Update::Lines(l)] if l.iter().filter(|&&b| b == b'\n').count() == 2)
        );
        assert_eq!(last.last_seq, Some(3));
        assert!(matches!(&handle(one, &mut p, &mut last)[..], [Update::Duplicates(1)]));
        let u = handle(nl, &mut p, &mut last);
        assert!(
            matches!(&u[..], [Update::Lines(l), Update::BadRecords { count: 1, .. }] if l.iter().filter(|&&b| b == b'\n').count() == 2)
        );
        let gap = handle(r#"{"type":"gap","missed":5,"from":5,"to":9}"#, &mut p, &mut last);
        assert_eq!(gap, vec![Update::Gap { missed: 5, from: 5, to: 9 }]);
        assert_eq!(last.last_seq, Some(9));
    }

    #[test]
    fn a_reset_replays_the_new_stream_without_what_was_seen() {
        let mut p = LineParser::new(None);
        let mut pos = Position::new();
        let ev = |id: &str, seq: u64, stream: &str| {
            let id = if id.is_empty() { String::new() } else { format!(r#""request_id":"{id}","#) };
            format!(r#"{{{id}"created_at":1,"seq":{seq},"stream":"{stream}"}}"#)
        };
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            handle(&ev(id, i as u64 + 1, "old"), &mut p, &mut pos);
        }
        assert_eq!((pos.last_seq, pos.stream.as_deref()), (Some(3), Some("old")));
        // The relay restarted and read its file again: a, b, c, then d, and one without an id.
        let reset = handle(r#"{"type":"reset","stream":"new","last_seq":5}"#, &mut p, &mut pos);
        assert_eq!(reset, vec![Update::Restarted { stream: "new".into(), last_seq: 5 }]);
        let mut kept = 0;
        let mut dups = 0;
        let mut notices = Vec::new();
        for (i, id) in ["a", "b", "c", "d", ""].iter().enumerate() {
            for u in handle(&ev(id, i as u64 + 1, "new"), &mut p, &mut pos) {
                match u {
                    Update::Lines(l) => kept += l.iter().filter(|&&b| b == b'\n').count(),
                    Update::Duplicates(n) => dups += n,
                    Update::Notice(n) => notices.push(n),
                    other => panic!("{other:?}"),
                }
            }
        }
        assert_eq!((kept, dups), (2, 3));
        assert_eq!(notices.len(), 1, "the event without an id is reported: {notices:?}");
        // Still reading its files again after the client caught up: still dropped.
        let again = handle(&ev("c", 6, "new"), &mut p, &mut pos);
        assert_eq!(again, vec![Update::Duplicates(1)]);
        let fresh = handle(&ev("e", 7, "new"), &mut p, &mut pos);
        assert!(matches!(&fresh[..], [Update::Lines(_)]), "{fresh:?}");
        assert_eq!(with_since("ws://h/", pos.last_seq, pos.stream.as_deref()), "ws://h/?since=7&stream=new");
    }
}
