//! Sources: where events come from, live.
//!
//! Every source runs on its own (a thread for files, globs, standard input and the demo;
//! a task for WebSocket streams) and sends [`Feed`]s: whole lines of events in any input
//! format, and changes of its state. Sends block when the consumer is behind, so reading
//! slows down instead of dropping events. Sources never parse for display and never draw.

pub mod file;
pub mod lines;
pub mod otlp;
pub mod ws;

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};

use crate::parse::native::write_line;
use crate::synth::Synth;
use crate::time::Micros;
use lines::LineSplitter;

/// A source as the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    File(PathBuf),
    Glob(String),
    Stdin,
    WebSocket(String),
    /// An OTLP receiver on this address (`otlp://127.0.0.1:4318`, or `--otlp ADDR`).
    Otlp(String),
    /// A logging proxy (`tokentop proxy`).
    Proxy(crate::proxy::ProxyOptions),
    Demo,
}

impl SourceSpec {
    pub fn parse(s: &str) -> SourceSpec {
        if s == "-" {
            SourceSpec::Stdin
        } else if s == "demo" {
            SourceSpec::Demo
        } else if let Some(addr) = s.strip_prefix("otlp://") {
            SourceSpec::Otlp(addr.trim_end_matches('/').to_string())
        } else if s.starts_with("ws://") || s.starts_with("wss://") {
            SourceSpec::WebSocket(s.to_string())
        } else if file::is_glob(s) {
            SourceSpec::Glob(s.to_string())
        } else {
            SourceSpec::File(PathBuf::from(s))
        }
    }

    /// A name to show: URLs lose any credentials and token parameters.
    pub fn display(&self) -> String {
        match self {
            SourceSpec::File(p) => p.display().to_string(),
            SourceSpec::Glob(g) => g.clone(),
            SourceSpec::Stdin => "stdin".into(),
            SourceSpec::WebSocket(url) => ws::redact(url),
            SourceSpec::Otlp(addr) => format!("otlp://{addr}"),
            SourceSpec::Proxy(p) => format!("proxy {}", p.listen),
            SourceSpec::Demo => "demo".into(),
        }
    }

    pub fn is_live_only(&self) -> bool {
        matches!(self, SourceSpec::WebSocket(_) | SourceSpec::Otlp(_) | SourceSpec::Proxy(_) | SourceSpec::Demo)
    }
}

/// What a source is doing, for the status bar.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceState {
    Starting,
    /// A followed path that does not exist yet.
    Waiting,
    Following,
    /// Read to its end, not following.
    AtEnd,
    Connecting,
    /// A receiver waiting for senders, on this address.
    Listening(String),
    Connected {
        since: Option<u64>,
    },
    Reconnecting {
        in_ms: u64,
        attempt: u32,
        error: String,
    },
    /// Cannot be read now (a directory, no permission): tried again every poll.
    Retrying(String),
    /// A store (ClickHouse) that answered the last refresh, in this many ms.
    Answered {
        ms: u64,
    },
    /// Given up: the message says what is wrong and what to do.
    Failed(String),
}

impl std::fmt::Display for SourceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceState::Starting => f.write_str("starting"),
            SourceState::Waiting => f.write_str("waiting for the file"),
            SourceState::Following => f.write_str("following"),
            SourceState::AtEnd => f.write_str("at end"),
            SourceState::Connecting => f.write_str("connecting"),
            SourceState::Listening(addr) => write!(f, "listening on {addr}"),
            SourceState::Connected { since: Some(s) } => write!(f, "connected (resumed after #{s})"),
            SourceState::Connected { since: None } => f.write_str("connected"),
            SourceState::Reconnecting { in_ms, attempt, error } => {
                write!(f, "reconnecting in {:.1}s (attempt {attempt}): {error}", *in_ms as f64 / 1000.0)
            }
            SourceState::Retrying(e) => write!(f, "{e} (retrying)"),
            SourceState::Answered { ms } => write!(f, "answered in {ms} ms"),
            SourceState::Failed(e) => write!(f, "error: {e}"),
        }
    }
}

/// One thing a source reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// Whole lines (each ending in a newline), in any input format.
    Lines(Vec<u8>),
    /// Lines already parsed (by the parse stage, [`crate::live::parsing`]).
    Parsed(Box<crate::live::parsing::Batch>),
    State(SourceState),
    /// Lines over 1 MiB, dropped.
    TooLong(u64),
    /// The followed file was truncated and is read again from its start.
    Truncated,
    /// A relay's buffer no longer reached back: `missed` events, `from..=to`, are lost.
    Gap {
        missed: u64,
        from: u64,
        to: u64,
    },
    /// Events delivered again after a resume (same `seq`), not counted twice.
    Duplicates(u64),
    /// The relay restarted: its events are a new stream (ending at `last_seq` when the
    /// client came back); events it published while the client was away may be missing.
    Restarted {
        stream: String,
        last_seq: u64,
    },
    /// Something worth telling about the source, shown as its latest problem.
    Notice(String),
    /// Records a stream sent that are not events, with the first reason.
    BadRecords {
        count: u64,
        first: String,
    },
}

impl Update {
    /// What a person should be told of this update (not of lines or states), in the
    /// status bar or on stderr. Text from the source is sanitised.
    pub fn describe(&self) -> Option<String> {
        Some(match self {
            Update::Lines(_) | Update::Parsed(_) | Update::State(_) | Update::Duplicates(_) => return None,
            Update::TooLong(n) => format!("skipped {n} lines longer than 1 MiB"),
            Update::Truncated => "truncated; read again from the start".into(),
            Update::Gap { missed, from, to } => format!("missed {missed} events (#{from}..#{to})"),
            Update::Restarted { stream, last_seq } => format!(
                "the relay restarted (stream {stream}, {last_seq} events buffered): events sent while it was down may be missing"
            ),
            Update::Notice(text) => crate::text::sanitize(text).into_owned(),
            Update::BadRecords { count, first } => {
                format!("{count} bad records, the first: {}", crate::text::sanitize(first))
            }
        })
    }
}

/// An update from source number `source` (its index in the list given).
#[derive(Debug, Clone, PartialEq)]
pub struct Feed {
    pub source: usize,
    pub update: Update,
}

/// Bytes of lines that may wait between sources and their consumer. Past it, sources
/// wait (reading slows down, nothing is dropped), and memory stays bounded whatever
/// the size of a file's first read.
pub const QUEUE_BYTES: usize = 32 << 20;

/// The channel from sources to their consumer: bounded in batches and in bytes.
pub fn channel(batches: usize, bytes: usize) -> (FeedSender, FeedReceiver) {
    let (tx, rx) = mpsc::channel(batches.max(1));
    let bytes = bytes.clamp(1, u32::MAX as usize);
    let budget = Arc::new(Semaphore::new(bytes));
    let rt = tokio::runtime::Handle::try_current().ok();
    (
        FeedSender { tx, budget: budget.clone(), max: bytes, rt },
        FeedReceiver { rx, queue: QueueGauge { budget, max: bytes } },
    )
}

/// The sending side of [`channel`]. Cloning shares the bounds.
#[derive(Clone)]
pub struct FeedSender {
    tx: mpsc::Sender<Feed>,
    budget: Arc<Semaphore>,
    max: usize,
    /// For threads outside the runtime to wait on the semaphore.
    rt: Option<tokio::runtime::Handle>,
}

fn cost(feed: &Feed, max: usize) -> usize {
    match &feed.update {
        Update::Lines(l) => l.len().min(max),
        Update::Parsed(b) => b.bytes.min(max),
        _ => 0,
    }
}

impl FeedSender {
    /// Waits for room, then sends; `false` when the consumer is gone.
    pub async fn send(&self, feed: Feed) -> bool {
        let n = cost(&feed, self.max);
        if n > 0 {
            match self.budget.acquire_many(n as u32).await {
                Ok(permit) => permit.forget(),
                Err(_) => return false,
            }
        }
        self.tx.send(feed).await.is_ok()
    }

    /// Sends if there is room now, for a source that answers its senders "later"
    /// (a receiver's 429) rather than holding their data while it waits.
    pub fn try_send(&self, feed: Feed) -> Result<(), Refused> {
        let n = cost(&feed, self.max);
        if n > 0 {
            match self.budget.try_acquire_many(n as u32) {
                Ok(permit) => permit.forget(),
                Err(tokio::sync::TryAcquireError::NoPermits) => return Err(Refused::Full),
                Err(tokio::sync::TryAcquireError::Closed) => return Err(Refused::Closed),
            }
        }
        self.tx.try_send(feed).map_err(|e| {
            self.budget.add_permits(n);
            match e {
                mpsc::error::TrySendError::Full(_) => Refused::Full,
                mpsc::error::TrySendError::Closed(_) => Refused::Closed,
            }
        })
    }

    /// Whether the consumer is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Resolves when the consumer is gone.
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    /// [`send`](Self::send) from a thread outside the runtime.
    pub fn blocking_send(&self, feed: Feed) -> bool {
        let n = cost(&feed, self.max);
        if n > 0 {
            let got = match &self.rt {
                Some(rt) => rt.block_on(self.budget.acquire_many(n as u32)).map(|p| p.forget()).is_ok(),
                None => loop {
                    match self.budget.try_acquire_many(n as u32) {
                        Ok(p) => {
                            p.forget();
                            break true;
                        }
                        Err(tokio::sync::TryAcquireError::NoPermits) => std::thread::sleep(Duration::from_millis(1)),
                        Err(tokio::sync::TryAcquireError::Closed) => break false,
                    }
                },
            };
            if !got {
                return false;
            }
        }
        self.tx.blocking_send(feed).is_ok()
    }
}

/// Why [`FeedSender::try_send`] did not send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The consumer is behind: try again later.
    Full,
    /// The consumer is gone.
    Closed,
}

/// The receiving side of [`channel`]: taking a batch of lines gives its bytes back.
pub struct FeedReceiver {
    rx: mpsc::Receiver<Feed>,
    /// The byte budget the senders take from and this gives back to.
    queue: QueueGauge,
}

impl FeedReceiver {
    /// The next update; `None` once every source has ended.
    pub async fn recv(&mut self) -> Option<Feed> {
        let feed = self.rx.recv().await?;
        self.release(&feed);
        Some(feed)
    }

    /// The next update if one is queued.
    pub fn try_recv(&mut self) -> Option<Feed> {
        let feed = self.rx.try_recv().ok()?;
        self.release(&feed);
        Some(feed)
    }

    fn release(&self, feed: &Feed) {
        let n = cost(feed, self.queue.max);
        if n > 0 {
            self.queue.budget.add_permits(n);
        }
    }

    /// Bytes of lines waiting to be taken: the backlog.
    pub fn queued_bytes(&self) -> usize {
        self.queue.bytes()
    }

    /// A handle that reads [`queued_bytes`](Self::queued_bytes) from elsewhere (the
    /// consumer of a stage that takes from this channel).
    pub fn gauge(&self) -> QueueGauge {
        self.queue.clone()
    }
}

/// Reads how many bytes of lines wait in a [`channel`].
#[derive(Clone)]
pub struct QueueGauge {
    budget: Arc<Semaphore>,
    max: usize,
}

impl QueueGauge {
    pub fn bytes(&self) -> usize {
        self.max.saturating_sub(self.budget.available_permits())
    }
}

impl Drop for FeedReceiver {
    fn drop(&mut self) {
        // Wakes senders waiting for room: they see the consumer gone.
        self.queue.budget.close();
    }
}

#[derive(Debug, Clone)]
pub struct SourceOptions {
    pub follow: file::FollowOptions,
    pub ws: ws::WsOptions,
    pub otlp: otlp::OtlpOptions,
    pub demo_rate: f64,
    pub demo_seed: u64,
    /// How much past traffic the demo makes up before it goes live, so that its
    /// first screen has full charts (0: none).
    pub demo_history: Micros,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            follow: Default::default(),
            ws: Default::default(),
            otlp: Default::default(),
            demo_rate: 50.0,
            demo_seed: 1,
            demo_history: 0,
        }
    }
}

/// Starts every source; updates arrive on `tx` tagged with the source's index.
/// WebSocket sources and OTLP receivers need to be started from within a tokio runtime.
pub fn start(specs: &[SourceSpec], opts: &SourceOptions, tx: FeedSender) {
    for (i, spec) in specs.iter().enumerate() {
        let blocking_tx = tx.clone();
        let send = move |update: Update| blocking_tx.blocking_send(Feed { source: i, update });
        match spec.clone() {
            SourceSpec::File(path) => {
                let fo = opts.follow;
                spawn(format!("file {}", path.display()), move || {
                    let mut send = send;
                    file::follow(&path, fo, &mut send)
                });
            }
            SourceSpec::Glob(pattern) => {
                let fo = opts.follow;
                spawn(format!("glob {pattern}"), move || follow_glob(&pattern, fo, send));
            }
            SourceSpec::Stdin => spawn("stdin".into(), move || read_stdin(send)),
            SourceSpec::Demo => {
                let (rate, seed, history) = (opts.demo_rate, opts.demo_seed, opts.demo_history);
                spawn("demo".into(), move || demo(rate, seed, history, send));
            }
            SourceSpec::WebSocket(url) => {
                let wo = opts.ws.clone();
                let tx = tx.clone();
                tokio::spawn(ws::run(url, i, wo, tx));
            }
            SourceSpec::Otlp(addr) => {
                tokio::spawn(otlp::run(addr, i, opts.otlp.clone(), tx.clone()));
            }
            SourceSpec::Proxy(p) => {
                tokio::spawn(crate::proxy::run(p, i, tx.clone()));
            }
        }
    }
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new().name(name).spawn(f).expect("spawn a source thread");
}

/// Follows every file a glob matches, looking for new ones every second.
fn follow_glob(pattern: &str, fo: file::FollowOptions, send: impl Fn(Update) -> bool + Clone + Send + 'static) {
    let mut seen = std::collections::HashSet::new();
    if !send(Update::State(SourceState::Following)) {
        return;
    }
    loop {
        match file::expand(pattern) {
            Ok(paths) => {
                for path in paths {
                    if seen.insert(path.clone()) {
                        let send = send.clone();
                        // Each file reports its lines; the glob as a whole reports its state.
                        spawn(format!("file {}", path.display()), move || {
                            file::follow(&path, fo, &mut |u| match u {
                                Update::State(SourceState::Failed(e) | SourceState::Retrying(e)) => {
                                    send(Update::Notice(e))
                                }
                                Update::State(_) => true,
                                u => send(u),
                            })
                        });
                    }
                }
            }
            Err(e) => {
                send(Update::State(SourceState::Failed(e)));
                return;
            }
        }
        if !fo.follow {
            return;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn read_stdin(send: impl Fn(Update) -> bool) {
    send(Update::State(SourceState::Following));
    let mut send = send;
    read_stream(std::io::stdin().lock(), "standard input", &mut send);
}

/// Reads a stream (standard input, a pipe, a FIFO, a device) to its end, sending whole
/// lines, then reports it at its end (or failed, with the reason).
pub(crate) fn read_stream(mut reader: impl Read, name: &str, send: &mut dyn FnMut(Update) -> bool) {
    let mut splitter = LineSplitter::default();
    let mut buf = vec![0u8; 256 << 10];
    let mut reported_too_long = 0;
    loop {
        let mut lines = Vec::new();
        let end = match reader.read(&mut buf) {
            Ok(0) => {
                splitter.finish(&mut lines);
                true
            }
            Ok(n) => {
                splitter.push(&buf[..n], &mut lines);
                false
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                send(Update::State(SourceState::Failed(format!("cannot read {name}: {e}"))));
                return;
            }
        };
        if splitter.too_long > reported_too_long {
            if !send(Update::TooLong(splitter.too_long - reported_too_long)) {
                return;
            }
            reported_too_long = splitter.too_long;
        }
        if !lines.is_empty() && !send(Update::Lines(lines)) {
            return;
        }
        if end {
            send(Update::State(SourceState::AtEnd));
            return;
        }
    }
}

/// Where "now" falls in the demo's ten-minute incident cycle: half a minute into
/// the 429 storm, so that the first screen has an alert to show.
const DEMO_PHASE: Micros = 150 * crate::time::MICROS_PER_SEC;

/// The built-in traffic generator. It first makes up `history` of past traffic
/// (as fast as it can, in batches, with the incident cycle placed so that one is
/// under way now), says it is following, then goes on in real time.
fn demo(rate: f64, seed: u64, history: Micros, send: impl Fn(Update) -> bool) {
    const CYCLE: Micros = 600 * crate::time::MICROS_PER_SEC;
    let now = crate::time::now();
    let start = if history > 0 { now - (history.div_euclid(CYCLE) * CYCLE + DEMO_PHASE) } else { now };
    let mut synth = Synth::new(seed, start, rate).with_incidents();
    while synth.now() <= now {
        let mut lines = Vec::with_capacity(1 << 20);
        for _ in 0..4_096 {
            if synth.now() > now {
                break;
            }
            write_line(&synth.next_event(), &mut lines);
        }
        if !send(Update::Lines(lines)) {
            return;
        }
    }
    send(Update::State(SourceState::Following));
    let clock = std::time::Instant::now();
    loop {
        let mut lines = Vec::new();
        // Everything due by now, in one batch.
        let now = now + clock.elapsed().as_micros() as i64;
        while synth.now() <= now {
            write_line(&synth.next_event(), &mut lines);
        }
        if !lines.is_empty() && !send(Update::Lines(lines)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_channel_is_bounded_in_bytes_and_loses_nothing() {
        let (tx, mut rx) = channel(1024, 10_000);
        let sender = std::thread::spawn(move || {
            for i in 0..100u8 {
                assert!(tx.blocking_send(Feed { source: 0, update: Update::Lines(vec![i; 3_000]) }));
            }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Three batches fit in 10,000 bytes; the sender waits for room (a waiter may
        // already hold part of what it asked for).
        assert!((9_000..=10_000).contains(&rx.queued_bytes()), "{}", rx.queued_bytes());
        let mut got = Vec::new();
        while let Some(Feed { update: Update::Lines(l), .. }) = rx.recv().await {
            assert!(rx.queued_bytes() <= 10_000);
            got.push(l[0]);
        }
        sender.join().unwrap();
        assert_eq!(got, (0..100).collect::<Vec<u8>>());
        assert_eq!(rx.queued_bytes(), 0);
    }

    #[tokio::test]
    async fn a_sender_waiting_for_room_stops_when_the_consumer_is_gone() {
        let (tx, rx) = channel(1024, 100);
        assert!(tx.send(Feed { source: 0, update: Update::Lines(vec![0; 100]) }).await);
        let waiting =
            tokio::spawn(async move { tx.send(Feed { source: 0, update: Update::Lines(vec![0; 10]) }).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(rx);
        assert!(!waiting.await.unwrap());
    }
}
