//! The OTLP receiver, driven by the real OpenTelemetry Python SDK and its OTLP
//! exporters (HTTP protobuf, gzip, gRPC), through `tokentop serve --otlp`: the events
//! the relay publishes are what the spans said.

use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{Relay, python, relay_with, wait_for_log};

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Events until `n` have come, then a second more to see that no others follow; spans
/// of a trace are held for its quiet period (6 s) before they are events.
async fn events(ws: &mut Ws, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let wait =
            if out.len() >= n { Duration::from_secs(1) } else { deadline.saturating_duration_since(Instant::now()) };
        match tokio::time::timeout(wait, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let mut v: Value = serde_json::from_str(t.as_str()).unwrap();
                v.as_object_mut().unwrap().remove("seq");
                out.push(v);
            }
            Ok(Some(Ok(_))) => {}
            _ => return out,
        }
    }
}

fn send(endpoint: &str, protocol: &str, token: Option<&str>, ca: Option<&std::path::Path>) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/otlp_send.py");
    let mut cmd = Command::new(python());
    cmd.arg(script).arg(endpoint).arg(protocol).args(token);
    if let Some(ca) = ca {
        // requests lets these override the CA file the exporter sets on its session.
        cmd.env("OTLP_CA", ca).env_remove("REQUESTS_CA_BUNDLE").env_remove("CURL_CA_BUNDLE");
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// An RFC 3339 time written as the relay writes it, from nanoseconds since the epoch.
fn time(ns: i64) -> String {
    let t = chrono::DateTime::from_timestamp(ns / 1_000_000_000, (ns % 1_000_000_000) as u32).unwrap();
    let ms = ns / 1_000_000 % 1000;
    let frac = if ms == 0 { String::new() } else { format!(".{ms:03}") };
    format!("{}{frac}Z", t.format("%Y-%m-%dT%H:%M:%S"))
}

/// The events the script's spans describe, by the rules of the OTel format
/// (`parse::otel`): the span id is the request id, the resource's `service.name` a
/// property, the 429 from `http.response.status_code` with the status message as the
/// error; the health check is not a call and the framework's wrapper around the inner
/// call is not counted again.
fn expected(sent: &Value) -> Vec<Value> {
    let t0 = sent["t0_ns"].as_i64().unwrap();
    let id =
        |kind: &str| sent["spans"].as_array().unwrap().iter().find(|s| s["kind"] == kind).unwrap()["span_id"].clone();
    let service = json!({"service": "checkout"});
    vec![
        json!({"request_id": id("chat"), "created_at": time(t0), "provider": "openai", "model": "gpt-4o-2024-08-06",
               "status": 200, "latency_ms": 1250.0, "ttft_ms": 400.0, "prompt_tokens": 1200, "completion_tokens": 300,
               "user_id": "u-42", "session_id": "conv-1", "properties": service}),
        json!({"request_id": id("error"), "created_at": time(t0 + 2_000_000_000), "provider": "anthropic",
               "model": "claude-sonnet-4-5", "status": 429, "latency_ms": 80.0, "properties": service,
               "error": "rate limited"}),
        json!({"request_id": id("inner"), "created_at": time(t0 + 4_010_000_000), "provider": "openai",
               "model": "gpt-4o-mini", "status": 200, "latency_ms": 500.0, "prompt_tokens": 80, "completion_tokens": 20,
               "properties": service}),
    ]
}

/// A self-signed certificate for 127.0.0.1 in `dir`: (certificate, key) paths.
fn certificate(dir: &std::path::Path) -> (String, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert.cert.pem()).unwrap();
    std::fs::write(&k, cert.signing_key.serialize_pem()).unwrap();
    (c.to_str().unwrap().to_string(), k.to_str().unwrap().to_string())
}

/// Sends the script's spans over `protocol` to a fresh relay and gives what was sent,
/// the events published, and the relay. `https` and `grpcs` are served with a
/// self-signed certificate the script trusts.
async fn round_trip(
    protocol: &'static str,
    token: Option<&'static str>,
    env: &[(&str, &str)],
) -> (Value, Vec<Value>, Relay) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["--otlp".to_string(), "127.0.0.1:0".to_string()];
    let tls = protocol == "https" || protocol == "grpcs";
    if tls {
        let (cert, key) = certificate(dir.path());
        args.extend(["--otlp-tls-cert".into(), cert, "--otlp-tls-key".into(), key]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = relay_with("", "127.0.0.1:0", &args, env);
    let addr = wait_for_log(&r, "listening on");
    let mut ws = tokio_tungstenite::connect_async(&r.url).await.unwrap().0;
    let endpoint = format!("http://{addr}");
    let ca = tls.then(|| dir.path().join("cert.pem"));
    let sent = tokio::task::spawn_blocking(move || send(&endpoint, protocol, token, ca.as_deref())).await.unwrap();
    let mut got = events(&mut ws, 3).await;
    for e in &mut got {
        e.as_object_mut().unwrap().remove("stream");
    }
    (sent, got, r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_from_the_sdk_become_the_events_they_describe() {
    let protocols = ["http", "http-gzip", "https", "grpc", "grpc-gzip", "grpcs"];
    let runs = protocols.map(|p| tokio::spawn(round_trip(p, None, &[])));
    for (protocol, run) in protocols.into_iter().zip(runs) {
        let (sent, got, _relay) = run.await.unwrap();
        assert_eq!(got, expected(&sent), "{protocol}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_required_when_set() {
    let env = [("TOKENTOP_OTLP_TOKEN", "s3cret")];
    let (without, with) = tokio::join!(round_trip("http", None, &env), round_trip("grpc", Some("s3cret"), &env));
    let (_, got, relay) = without;
    assert_eq!(got, Vec::<Value>::new());
    // Each of the five spans was an export (the SDK's simple processor), each refused;
    // the receiver tells them once a second.
    let refused = || -> u64 {
        let log = relay.stderr.lock().unwrap();
        log.iter()
            .filter_map(|l| {
                l.split("refused ")
                    .nth(1)?
                    .strip_suffix(" exports without the right bearer token (TOKENTOP_OTLP_TOKEN)")
            })
            .map(|n| n.parse::<u64>().unwrap())
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while refused() < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(refused(), 5, "{:?}", relay.stderr.lock().unwrap());
    assert!(!relay.stderr.lock().unwrap().iter().any(|l| l.contains("s3cret")));
    let (sent, got, _) = with;
    assert_eq!(got, expected(&sent));
}
