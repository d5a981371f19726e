//! Faults an ops engineer probes for before trusting tokentop on a production host,
//! each with real processes: a relay killed with SIGKILL and restarted, FIFOs and pipes,
//! half-open and idle connections at the descriptor limit, wrong tokens, webhooks that
//! redirect or hang.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokentop::source::ws::{WsOptions, run};
use tokentop::source::{Feed, SourceState, Update};

mod common;
use common::{Relay, append, event, free_port, ids, relay_with};

fn events(range: std::ops::RangeInclusive<u64>) -> String {
    range.map(|i| event(i) + "\n").collect()
}

fn tokentop() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tokentop"))
}

fn relay(listen: &str, args: &[&str]) -> Relay {
    relay_with("", listen, args, &[])
}

/// What a WebSocket source delivered: ids in order, and the other updates.
#[derive(Default)]
struct Received {
    ids: Vec<String>,
    restarts: u64,
    duplicates: u64,
    connected: u64,
}

fn client(url: &str) -> (Arc<Mutex<Received>>, tokio::task::JoinHandle<()>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = tokentop::source::channel(64, tokentop::source::QUEUE_BYTES);
    let opts = WsOptions {
        token: None,
        backoff_first: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        ..WsOptions::default()
    };
    let got = Arc::new(Mutex::new(Received::default()));
    let sink = got.clone();
    let reader = tokio::spawn(async move {
        while let Some(Feed { update, .. }) = rx.recv().await {
            let mut g = sink.lock().unwrap();
            match update {
                Update::Lines(l) => g.ids.extend(ids(&l)),
                Update::Restarted { .. } => g.restarts += 1,
                Update::Duplicates(n) => g.duplicates += n,
                Update::State(SourceState::Connected { .. }) => g.connected += 1,
                _ => {}
            }
        }
    });
    (got, tokio::spawn(run(url.to_string(), 0, opts, tx)), reader)
}

async fn wait_for(what: &str, secs: u64, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "{what} never happened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_and_restarted_loses_and_repeats_nothing_on_growing_rotated_and_several_files() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    append(&a, "");
    append(&b, "");
    let listen = format!("127.0.0.1:{}", free_port());
    let args = [a.to_str().unwrap(), b.to_str().unwrap()];
    let first = relay(&listen, &args);
    let (got, task, reader) = client(&first.url);
    wait_for("the first connection", 10, || got.lock().unwrap().connected == 1).await;
    append(&a, &events(1..=1000));
    append(&b, &events(1001..=1500));
    wait_for("the first 1,500 events", 20, || got.lock().unwrap().ids.len() == 1500).await;

    // SIGKILL: nothing saved. Meanwhile the first file grows and the second rotates.
    drop(first);
    append(&a, &events(1501..=2000));
    std::fs::rename(&b, dir.path().join("b.jsonl.1")).unwrap();
    append(&b, &events(2001..=2200));
    let second = relay(&listen, &args);
    wait_for("the restart to be reported", 20, || got.lock().unwrap().restarts == 1).await;
    append(&a, &events(2201..=2500));
    wait_for("every event", 30, || got.lock().unwrap().ids.len() >= 2500).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    task.abort();
    reader.abort();
    drop(second);

    let g = got.lock().unwrap();
    let mut sorted = g.ids.clone();
    sorted.sort_by_key(|id| id[1..].parse::<u64>().unwrap());
    let expected: Vec<String> = (1..=2500).map(|i| format!("r{i}")).collect();
    assert!(sorted == expected, "every event exactly once: {} received, {} distinct", sorted.len(), {
        let mut d = sorted.clone();
        d.dedup();
        d.len()
    });
    // The restarted relay read a.jsonl again from its start (b.jsonl was rotated away).
    assert_eq!(g.duplicates, 1000, "the restarted relay's re-read of what was seen is dropped, and counted");
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next(ws: &mut Ws) -> serde_json::Value {
    use futures_util::StreamExt;
    let m = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap().unwrap().unwrap();
    serde_json::from_str(m.to_text().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_with_another_streams_seq_gets_a_reset_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.jsonl");
    append(&path, &events(1..=5));
    let r = relay("127.0.0.1:0", &[path.to_str().unwrap()]);
    // The relay says where it listens before it has read its file: wait until it has.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("{}?since=99", r.url)).await.unwrap();
        if next(&mut ws).await["last_seq"] == 5 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the relay never read its 5 events");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // From another stream, and beyond this stream's last seq: both get a reset, then everything.
    for query in ["since=3&stream=0123456789abcdef", "since=99"] {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("{}?{query}", r.url)).await.unwrap();
        let reset = next(&mut ws).await;
        assert_eq!(reset["type"], "reset", "{query}: {reset}");
        assert_eq!(reset["last_seq"], 5);
        let stream = reset["stream"].as_str().unwrap().to_string();
        let first = next(&mut ws).await;
        assert_eq!((first["seq"].as_u64(), first["stream"].as_str()), (Some(1), Some(stream.as_str())));
        // The same stream resumes normally.
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("{}?since=4&stream={stream}", r.url)).await.unwrap();
        let e = next(&mut ws).await;
        assert_eq!((e["seq"].as_u64(), e["request_id"].as_str()), (Some(5), Some("r5")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_are_closed_and_a_flood_cannot_flood_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.jsonl");
    append(&path, "");
    let r = relay("127.0.0.1:0", &["--handshake-timeout", "1s", path.to_str().unwrap()]);
    let addr = r.url.trim_start_matches("ws://").trim_end_matches("/events").to_string();
    // Slowloris: 30 connections that send half a request and stop.
    let mut held: Vec<std::net::TcpStream> = (0..30)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(&addr).unwrap();
            c.write_all(b"GET /events HTTP/1.1\r\nHost: x\r\n").unwrap();
            c
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for c in &mut held {
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 64];
        // Closed by the relay: end of stream (or a reset), never a timeout.
        match c.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("a half-open connection was still held: {other:?}"),
        }
    }
    let lines = r.stderr.lock().unwrap().clone();
    let about_clients = lines.iter().filter(|l| l.contains("client 127.0.0.1")).count();
    assert!(about_clients <= 5, "at most 5 lines a minute per address: {lines:#?}");
    assert!(lines.iter().any(|l| l.contains("more errors from 127.0.0.1 this minute are not shown")), "{lines:#?}");
    // A real client still gets in.
    assert!(tokio_tungstenite::connect_async(&r.url).await.is_ok());
}

/// CPU seconds a process has used (user + system), from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_descriptor_limit_the_relay_waits_instead_of_spinning() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.jsonl");
    append(&path, "");
    let r = relay_with("ulimit -n 64;", "127.0.0.1:0", &["--handshake-timeout", "3s", path.to_str().unwrap()], &[]);
    let addr = r.url.trim_start_matches("ws://").trim_end_matches("/events").to_string();
    // More idle connections than descriptors: the kernel queues them, accept fails.
    let idle: Vec<_> = (0..100).filter_map(|_| std::net::TcpStream::connect(&addr).ok()).collect();
    assert!(idle.len() >= 64, "{} connections", idle.len());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cpu_seconds(r.child.id());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_seconds(r.child.id()) - before;
    assert!(used < 0.5, "the relay used {used:.2} s of CPU in 2 s at the descriptor limit");
    // Once the idle connections time out, real clients get in again.
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match tokio::time::timeout(Duration::from_secs(2), tokio_tungstenite::connect_async(&r.url)).await {
            Ok(Ok(_)) => break,
            _ => assert!(Instant::now() < deadline, "no client got in after the flood"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked_as_http_says() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.jsonl");
    append(&path, "");
    // An empty token does not turn authentication off in silence.
    let out = tokentop().args(["serve", path.to_str().unwrap()]).env("TOKENTOP_SERVE_TOKEN", "").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("TOKENTOP_SERVE_TOKEN is set but empty"));
    // The scheme is case-insensitive.
    let r = relay_with("", "127.0.0.1:0", &[path.to_str().unwrap()], &[("TOKENTOP_SERVE_TOKEN", "s3cret")]);
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    for (header, ok) in [("bearer s3cret", true), ("BEARER s3cret", true), ("Bearer wrong", false), ("s3cret", false)] {
        let mut req = r.url.as_str().into_client_request().unwrap();
        req.headers_mut().insert("authorization", header.parse().unwrap());
        assert_eq!(tokio_tungstenite::connect_async(req).await.is_ok(), ok, "{header}");
    }
    // A public address without a token is warned about.
    let open = relay("0.0.0.0:0", &[path.to_str().unwrap()]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines = open.stderr.lock().unwrap().clone();
    assert!(lines.iter().any(|l| l.contains("warning: listening on 0.0.0.0 without a token")), "{lines:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_fails_when_its_stream_never_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.jsonl");
    append(&path, "");
    let r = relay_with("", "127.0.0.1:0", &[path.to_str().unwrap()], &[("TOKENTOP_SERVE_TOKEN", "right")]);
    let out =
        tokentop().args(["report", "--duration", "2s", &r.url]).env("TOKENTOP_WS_TOKEN", "wrong").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401 Unauthorized") && err.contains("TOKENTOP_WS_TOKEN"), "{err}");
    assert!(!err.contains("wrong"), "the token is never shown: {err}");
    assert!(out.stdout.is_empty(), "no report of nothing");

    let refused = format!("ws://127.0.0.1:{}/events", free_port());
    let out = tokentop().args(["report", "--duration", "1s", &refused]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("connection refused"));

    // With the right token it works, and exits 0.
    let out =
        tokentop().args(["report", "--duration", "1s", &r.url]).env("TOKENTOP_WS_TOKEN", "right").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Makes a FIFO at `path` and writes `text` into it from a thread.
fn fifo_with(path: &std::path::Path, text: String) -> std::thread::JoinHandle<()> {
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.write_all(text.as_bytes()).unwrap();
    })
}

#[test]
fn pipes_and_fifos_are_streams_for_report_export_and_check() {
    let dir = tempfile::tempdir().unwrap();
    let lines: String = (0..500u64)
        .map(|i| {
            format!(
                "{{\"created_at\":{},\"model\":\"m\",\"status\":{},\"cost_usd\":0.01}}\n",
                1_740_000_000_000u64 + i * 1000,
                if i % 5 == 0 { 500 } else { 200 }
            )
        })
        .collect();

    let fifo = dir.path().join("report.fifo");
    let writer = fifo_with(&fifo, lines.clone());
    let out = tokentop().args(["report", "--window", "all", fifo.to_str().unwrap()]).output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["summary"]["total_requests"], 500);

    // /dev/stdin is a pipe here.
    let mut child =
        tokentop().args(["export", "/dev/stdin"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let text = lines.clone();
    let feeder = std::thread::spawn(move || stdin.write_all(text.as_bytes()).unwrap());
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout.iter().filter(|&&b| b == b'\n').count(), 500);

    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "[[alerts]]\nname = \"errors\"\nmetric = \"error_rate\"\nop = \">\"\nthreshold = 10\nwindow = \"5m\"\n",
    )
    .unwrap();
    let fifo = dir.path().join("check.fifo");
    let writer = fifo_with(&fifo, lines);
    let out =
        tokentop().args(["check", "--config", config.to_str().unwrap(), fifo.to_str().unwrap()]).output().unwrap();
    writer.join().unwrap();
    assert_eq!(out.status.code(), Some(1), "20% errors over 10%: firing; {}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["firing"][0]["rule"], "errors");
}

#[test]
fn check_notify_refuses_redirects_and_delivers_in_parallel() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("gw.jsonl");
    let mut lines = String::new();
    for i in 0..300u64 {
        let user = format!("u{}", i % 5);
        lines.push_str(&format!(
            "{{\"created_at\":{},\"model\":\"m\",\"status\":500,\"user_id\":\"{user}\"}}\n",
            1_740_000_000_000u64 + i * 1000
        ));
    }
    std::fs::write(&log, lines).unwrap();
    let rule = "[[alerts]]\nname = \"errors\"\nmetric = \"error_rate\"\nop = \">\"\nthreshold = 10\nwindow = \"5m\"\ngroup_by = \"user\"\n";

    // A webhook that answers 302: a failure with its reason, not a delivery.
    let redirecting = common::redirector();
    let config = dir.path().join("redirect.toml");
    std::fs::write(&config, format!("{rule}[[webhooks]]\nurl = \"{redirecting}\"\nretries = 0\n")).unwrap();
    let out = tokentop()
        .args(["check", "--notify", "--config", config.to_str().unwrap(), log.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("302") && err.contains("redirects are not followed"), "{err}");

    // Five alerts (one per user) to a webhook that never answers, 2 s timeout: in
    // parallel they take one timeout, not five.
    let (hanging, seen) = common::receiver(0, true);
    let config = dir.path().join("hang.toml");
    std::fs::write(&config, format!("{rule}[[webhooks]]\nurl = \"{hanging}\"\nretries = 0\ntimeout = \"2s\"\n"))
        .unwrap();
    let started = Instant::now();
    let out = tokentop()
        .args(["check", "--notify", "--config", config.to_str().unwrap(), log.to_str().unwrap()])
        .output()
        .unwrap();
    let took = started.elapsed();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["firing"].as_array().unwrap().len(), 5);
    assert_eq!(seen.lock().unwrap().len(), 5, "all five were tried");
    assert!(took < Duration::from_secs(6), "took {took:?}: one after another would be 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_webhook_holds_a_bounded_number_of_connections_and_hides_credentials() {
    let (url, seen) = common::receiver(0, true);
    let with_creds = url.replace("http://", "http://alice:hunter2@");
    let hooks = [tokentop::alert::notify::WebhookConfig {
        url: Some(with_creds),
        url_env: None,
        format: None,
        secret_env: None,
        timeout: Some("5s".into()),
        retries: Some(0),
    }];
    let n = tokentop::alert::notify::Notifier::start(&hooks, &[]).unwrap();
    let target = n.deliveries.lock().unwrap()[0].target.clone();
    assert!(!target.contains("hunter2") && !target.contains("alice"), "{target}");
    let note = tokentop::alert::notify::Notification {
        rule: "r".into(),
        severity: "critical".into(),
        state: "firing".into(),
        group: None,
        metric: "error_rate".into(),
        value: 1.0,
        threshold: 0.5,
        window: "5m".into(),
        time: "now".into(),
        text: "t".into(),
        reminder: false,
    };
    for _ in 0..2000 {
        n.send(note.clone());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let open = seen.lock().unwrap().len();
    assert!((1..=4).contains(&open), "{open} deliveries under way at once");
    let dropped = n.dropped.load(std::sync::atomic::Ordering::Relaxed);
    assert!(dropped >= 2000 - 1024 - 4, "a full queue drops and counts: {dropped}");
}
