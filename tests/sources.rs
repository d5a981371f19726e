//! Sources with real components: files appended, rotated and truncated on disk; the
//! relay (`tokentop serve`) and a deliberately misbehaving WebSocket server on loopback.

// Handshake callbacks must return tungstenite's `ErrorResponse`, whatever its size.
#![allow(clippy::result_large_err)]

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokentop::source::file::{FollowOptions, follow};
use tokentop::source::ws::{WsOptions, run};
use tokentop::source::{Feed, SourceState, Update};
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{Relay, append, event, ids, relay_with};

/// Runs a follower on a thread; its updates come back on the channel.
fn follower(path: std::path::PathBuf) -> std::sync::mpsc::Receiver<Update> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let opts = FollowOptions { follow: true, poll: Duration::from_millis(20) };
        follow(&path, opts, &mut |u| tx.send(u).is_ok());
    });
    rx
}

/// Collects updates until `done` holds for the ids seen (or ten seconds pass).
fn drain_until(
    rx: &std::sync::mpsc::Receiver<Update>,
    seen: &mut Vec<String>,
    states: &mut Vec<SourceState>,
    done: impl Fn(&[String], &[SourceState]) -> bool,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done(seen, states) && std::time::Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(Update::Lines(l)) => seen.extend(ids(&l)),
            Ok(Update::State(s)) => states.push(s),
            _ => {}
        }
    }
}

#[test]
fn follows_appends_partial_lines_rotation_truncation_and_late_creation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.jsonl");
    let rx = follower(path.clone());
    let (mut seen, mut states) = (Vec::new(), Vec::new());
    let upto = |n: usize| move |seen: &[String], _: &[SourceState]| seen.len() >= n;
    let pause = || std::thread::sleep(Duration::from_millis(150));

    // Waits for a file that does not exist yet.
    drain_until(&rx, &mut seen, &mut states, |_, st| st.contains(&SourceState::Waiting));
    assert_eq!(states, [SourceState::Waiting]);

    // Created after start, then appended; a partial line is held until its newline.
    append(&path, &format!("{}\n{}\n", event(1), event(2)));
    let half = event(3);
    append(&path, &half[..10]);
    drain_until(&rx, &mut seen, &mut states, upto(2));
    pause();
    drain_until(&rx, &mut seen, &mut states, upto(3));
    assert_eq!(seen, ["r1", "r2"], "the partial line waits for its newline");
    append(&path, &format!("{}\n", &half[10..]));
    drain_until(&rx, &mut seen, &mut states, upto(3));
    assert_eq!(seen, ["r1", "r2", "r3"]);

    // Rotation: renamed, a last line written to the old file, a new file at the path.
    let rotated = dir.path().join("gw.jsonl.1");
    std::fs::rename(&path, &rotated).unwrap();
    append(&rotated, &format!("{}\n", event(4)));
    append(&path, &format!("{}\n{}\n", event(5), event(6)));
    drain_until(&rx, &mut seen, &mut states, upto(6));
    assert_eq!(seen, ["r1", "r2", "r3", "r4", "r5", "r6"]);

    // Truncation (copytruncate): the file is emptied and written again from the start.
    std::fs::OpenOptions::new().write(true).truncate(true).open(&path).unwrap();
    pause();
    append(&path, &format!("{}\n", event(7)));
    drain_until(&rx, &mut seen, &mut states, upto(7));
    // Nothing more arrives: nothing was read twice.
    while let Ok(u) = rx.recv_timeout(Duration::from_millis(400)) {
        if let Update::Lines(l) = u {
            seen.extend(ids(&l));
        }
    }
    assert_eq!(seen, ["r1", "r2", "r3", "r4", "r5", "r6", "r7"]);
}

#[test]
fn a_path_that_becomes_a_directory_is_retried_and_a_fifo_is_a_stream() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.jsonl");
    append(&path, &format!("{}\n", event(1)));
    let rx = follower(path.clone());
    let (mut seen, mut states) = (Vec::new(), Vec::new());
    drain_until(&rx, &mut seen, &mut states, |s, _| s.len() == 1);
    // Replaced by a directory: the reason is shown, and the path is tried again.
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    drain_until(&rx, &mut seen, &mut states, |_, st| {
        st.iter().any(|s| matches!(s, SourceState::Retrying(why) if why.contains("is a directory")))
    });
    // The file comes back: followed again.
    std::fs::remove_dir(&path).unwrap();
    append(&path, &format!("{}\n", event(2)));
    drain_until(&rx, &mut seen, &mut states, |s, _| s.len() == 2);
    assert_eq!(seen, ["r1", "r2"]);

    // A FIFO is read as a stream to its end, then reported at its end.
    let fifo = dir.path().join("events.fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let rx = follower(fifo.clone());
    let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    w.write_all(format!("{}\n{}", event(3), event(4)).as_bytes()).unwrap();
    drop(w);
    let (mut seen, mut states) = (Vec::new(), Vec::new());
    drain_until(&rx, &mut seen, &mut states, |_, st| st.contains(&SourceState::AtEnd));
    assert_eq!(seen, ["r3", "r4"], "the last line without its newline counts too");
}

#[test]
fn compressed_files_are_read_decompressed_to_their_end() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{}\n{}\n", event(1), event(2));
    let gz = dir.path().join("old.jsonl.gz");
    let mut enc = flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::fast());
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap();
    let zst = dir.path().join("old.zst");
    std::fs::write(
        &zst,
        ruzstd::encoding::compress_to_vec(text.as_bytes(), ruzstd::encoding::CompressionLevel::Fastest),
    )
    .unwrap();
    for path in [gz, zst] {
        let rx = follower(path.clone());
        let (mut seen, mut states) = (Vec::new(), Vec::new());
        drain_until(&rx, &mut seen, &mut states, |_, st| st.contains(&SourceState::AtEnd));
        assert_eq!(seen, ["r1", "r2"], "{}", path.display());
    }
}

#[test]
fn a_glob_follows_files_created_later() {
    let dir = tempfile::tempdir().unwrap();
    append(&dir.path().join("a.jsonl"), &format!("{}\n", event(1)));
    let (tx, mut rx) = tokentop::source::channel(64, tokentop::source::QUEUE_BYTES);
    let pattern = format!("{}/*.jsonl", dir.path().display());
    let specs = vec![tokentop::source::SourceSpec::parse(&pattern)];
    tokentop::source::start(&specs, &Default::default(), tx);
    let mut seen = BTreeSet::new();
    let mut wait_for = |want: &[&str], seen: &mut BTreeSet<String>| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline && !want.iter().all(|w| seen.contains(*w)) {
            match rx.try_recv() {
                Some(Feed { update: Update::Lines(l), .. }) => seen.extend(ids(&l)),
                Some(_) => {}
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    };
    wait_for(&["r1"], &mut seen);
    append(&dir.path().join("b.jsonl"), &format!("{}\n", event(2)));
    append(&dir.path().join("ignored.txt"), &format!("{}\n", event(3)));
    wait_for(&["r2"], &mut seen);
    append(&dir.path().join("a.jsonl"), &format!("{}\n", event(4)));
    wait_for(&["r4"], &mut seen);
    std::thread::sleep(Duration::from_millis(1500));
    wait_for(&[], &mut seen);
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["r1", "r2", "r4"]);
}

/// A running `tokentop serve` on a free port.
fn relay(args: &[&str], env: &[(&str, &str)]) -> Relay {
    relay_with("", "127.0.0.1:0", args, env)
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// Reads `n` text messages, or fewer if none arrives for two seconds.
async fn take(ws: &mut Ws, n: usize) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(2), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => out.push(serde_json::from_str(t.as_str()).unwrap()),
            Ok(Some(Ok(_))) => {}
            _ => break,
        }
    }
    out
}

fn seqs(msgs: &[serde_json::Value]) -> Vec<u64> {
    msgs.iter().map(|m| m["seq"].as_u64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_numbers_events_and_resumes_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.jsonl");
    append(&path, "");
    let r = relay(&["--buffer", "1000", path.to_str().unwrap()], &[]);
    let mut ws = connect(&r.url).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    append(&path, &(1..=50).map(|i| event(i) + "\n").collect::<String>());
    let first = take(&mut ws, 50).await;
    assert_eq!(seqs(&first), (1..=50).collect::<Vec<_>>());
    assert_eq!(first[0]["request_id"], "r1");
    drop(ws);

    // While disconnected, more events; resuming with since=50 gets exactly those.
    append(&path, &(51..=80).map(|i| event(i) + "\n").collect::<String>());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut ws = connect(&format!("{}?since=50", r.url)).await;
    let resumed = take(&mut ws, 1000).await;
    assert_eq!(seqs(&resumed), (51..=80).collect::<Vec<_>>());

    // Beyond the buffer: a gap notice first, then what is still there.
    append(&path, &(81..=1500).map(|i| event(i) + "\n").collect::<String>());
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut ws = connect(&format!("{}?since=10", r.url)).await;
    let msgs = take(&mut ws, 1001).await;
    assert_eq!(msgs[0], serde_json::json!({"type":"gap","missed":490,"from":11,"to":500}));
    assert_eq!(seqs(&msgs[1..]), (501..=1500).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_requires_the_token_when_set() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.jsonl");
    append(&path, "");
    let r = relay(&[path.to_str().unwrap()], &[("TOKENTOP_SERVE_TOKEN", "s3cret")]);
    let err = tokio_tungstenite::connect_async(&r.url).await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = r.url.as_str().into_client_request().unwrap();
    req.headers_mut().insert("authorization", "Bearer s3cret".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_holds_nobody_back_and_a_burst_arrives_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.jsonl");
    append(&path, "");
    // A client that never reads must hold nobody back.
    let r = relay(&[path.to_str().unwrap()], &[]);
    let stalled = connect(&r.url).await; // never reads: it must not hold anyone back
    let (tx, mut rx) = tokentop::source::channel(64, tokentop::source::QUEUE_BYTES);
    let opts = WsOptions {
        token: None,
        backoff_first: Duration::from_millis(20),
        backoff_max: Duration::from_millis(100),
        ..WsOptions::default()
    };
    let client = tokio::spawn(run(r.url.clone(), 0, opts, tx));
    // A first connection gets only new events: publish once the client is in.
    loop {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(Feed { update: Update::State(SourceState::Connected { .. }), .. })) => break,
            Ok(Some(_)) => {}
            _ => panic!("the client did not connect"),
        }
    }
    let n = 20_000u64;
    let text: String = (1..=n).map(|i| event(i) + "\n").collect();
    append(&path, &text);
    let mut seen = Vec::new();
    let mut reconnects = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while (seen.len() as u64) < n && tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(Feed { update: Update::Lines(l), .. })) => seen.extend(ids(&l)),
            Ok(Some(Feed { update: Update::State(SourceState::Connected { since: Some(_) }), .. })) => reconnects += 1,
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    client.abort();
    drop(stalled);
    let expected: Vec<String> = (1..=n).map(|i| format!("r{i}")).collect();
    assert_eq!(seen.len(), expected.len(), "every event arrives ({reconnects} resumes)");
    assert_eq!(seen, expected, "in order, none twice");
}

/// Accepts a WebSocket upgrade, noting the query the client asked with.
async fn accept_noting_query(
    tcp: tokio::net::TcpStream,
    queries: &mut Vec<String>,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    tokio_tungstenite::accept_hdr_async(
        tcp,
        |req: &tokio_tungstenite::tungstenite::handshake::server::Request, resp| {
            queries.push(req.uri().query().unwrap_or("").to_string());
            Ok(resp)
        },
    )
    .await
    .unwrap()
}

/// A WebSocket server that misbehaves in the ways real networks do.
async fn misbehaving_server() -> (String, tokio::task::JoinHandle<Vec<String>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/events", listener.local_addr().unwrap());
    let handle = tokio::spawn(async move {
        let mut queries = Vec::new();
        // 1: refuse the upgrade with 401.
        let (tcp, _) = listener.accept().await.unwrap();
        let refuse = |_: &tokio_tungstenite::tungstenite::handshake::server::Request, _| {
            let mut r = tokio_tungstenite::tungstenite::handshake::server::ErrorResponse::new(Some("no".into()));
            *r.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::UNAUTHORIZED;
            Err(r)
        };
        let _ = tokio_tungstenite::accept_hdr_async(tcp, refuse).await;
        // 2: three events, garbage, a 10 MB message, then an abrupt close.
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = accept_noting_query(tcp, &mut queries).await;
        for i in 1..=3u64 {
            ws.send(Message::text(format!(r#"{{"created_at":{i},"request_id":"r{i}","seq":{i}}}"#))).await.unwrap();
        }
        ws.send(Message::text("this is not an event")).await.unwrap();
        ws.send(Message::Binary(vec![0xff, 0xfe, 0x00].into())).await.unwrap();
        ws.send(Message::text("x".repeat(10 << 20))).await.unwrap();
        drop(ws);
        // 3: the client resumes with since=3; a duplicate and two new events, then silence.
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = accept_noting_query(tcp, &mut queries).await;
        for i in 3..=5u64 {
            ws.send(Message::text(format!(r#"{{"created_at":{i},"request_id":"r{i}","seq":{i}}}"#))).await.unwrap();
        }
        // Stall: never read (so pings go unanswered) until the client gives up.
        tokio::time::sleep(Duration::from_secs(4)).await;
        drop(ws);
        queries
    });
    (url, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_survives_a_misbehaving_server() {
    let (url, server) = misbehaving_server().await;
    let (tx, mut rx) = tokentop::source::channel(1024, tokentop::source::QUEUE_BYTES);
    let opts = WsOptions {
        token: None,
        backoff_first: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        ping_every: Duration::from_millis(200),
        idle_timeout: Duration::from_secs(1),
        ..WsOptions::default()
    };
    let client = tokio::spawn(run(url, 0, opts, tx));
    let mut seen = Vec::new();
    let (mut bad, mut dups) = (0, 0);
    let mut errors = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    while tokio::time::Instant::now() < deadline {
        let Ok(Some(feed)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await else { continue };
        match feed.update {
            Update::Lines(l) => seen.extend(ids(&l)),
            Update::BadRecords { count, .. } => bad += count,
            Update::Duplicates(n) => dups += n,
            Update::State(SourceState::Reconnecting { error, .. }) => errors.push(error),
            _ => {}
        }
        if errors.iter().any(|e| e.contains("no data or pong")) {
            break;
        }
    }
    client.abort();
    assert_eq!(seen, ["r1", "r2", "r3", "r4", "r5"], "every event once, in order");
    assert_eq!(dups, 1, "the replayed r3 is not counted twice");
    assert_eq!(bad, 3, "garbage, a binary frame and a 10 MB record are counted");
    assert!(errors[0].contains("401 Unauthorized") && errors[0].contains("TOKENTOP_WS_TOKEN"), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("no data or pong")), "a stalled server is detected: {errors:?}");
    let queries = server.await.unwrap();
    assert_eq!(queries, ["", "since=3"], "the client resumes where it was");
}

#[test]
fn demo_pipes_into_report() {
    let mut demo = Command::new(env!("CARGO_BIN_EXE_tokentop"))
        .args(["demo", "--count", "3000", "--fast", "--rate", "100", "--seed", "7"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tokentop"))
        .args(["report", "--window", "all", "-"])
        .stdin(demo.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(demo.wait().unwrap().success());
    assert!(out.status.success());
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["summary"]["total_requests"], 3000);
    assert_eq!(r["ingest"]["parse_errors"], 0);
    assert!(r["by_model"].as_object().unwrap().len() >= 12);
    assert_eq!(r["by_provider"].as_object().unwrap().len(), 5);
}

#[test]
fn report_on_a_stream_needs_a_duration() {
    let out =
        Command::new(env!("CARGO_BIN_EXE_tokentop")).args(["report", "ws://127.0.0.1:9/events"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--duration"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_serves_tls() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let path = dir.path().join("gw.jsonl");
    append(&path, "");
    let r = relay(
        &["--tls-cert", cert_path.to_str().unwrap(), "--tls-key", key_path.to_str().unwrap(), path.to_str().unwrap()],
        &[],
    );
    assert!(r.url.starts_with("wss://"), "{}", r.url);

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let connector = tokio_tungstenite::Connector::Rustls(std::sync::Arc::new(config));
    let (mut ws, _) =
        tokio_tungstenite::connect_async_tls_with_config(&r.url, None, false, Some(connector)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    append(&path, &format!("{}\n{}\n", event(1), event(2)));
    let msgs = take(&mut ws, 2).await;
    assert_eq!(seqs(&msgs), [1, 2]);

    // A client that does not trust the certificate is refused by its own TLS check.
    assert!(tokio_tungstenite::connect_async(&r.url).await.is_err());
}
