//! `tokentop proxy`, driven by the real OpenAI and Anthropic Python SDKs (and httpx),
//! in front of an upstream the test owns that answers in those APIs' shapes
//! (`tests/python/llm_upstream.py`): the calls succeed as without the proxy, the bytes
//! the client gets are the upstream's, and each call is the event it should be.

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;
use common::{Child, python};

fn script(name: &str) -> String {
    format!("{}/tests/python/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The upstream, writing what it got and sent into `dir`; its port.
fn upstream(dir: &std::path::Path) -> (Child, u16) {
    let mut child =
        Command::new(python()).arg(script("llm_upstream.py")).arg(dir).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    (Child(child), line.trim().parse().unwrap())
}

/// `tokentop proxy --headless` on a free port; its address.
// The child is waited for in `Child::drop`.
#[allow(clippy::zombie_processes)]
fn proxy(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokentop"))
        .args(["proxy", "--headless", "--listen", "127.0.0.1:0"])
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "the proxy exited");
        if let Some(addr) = line.trim().split("listening on ").nth(1) {
            let addr = addr.to_string();
            std::thread::spawn(move || for _ in err.lines() {});
            return (Child(child), addr);
        }
    }
}

/// The events in the log once `n` are there, by request id.
fn events(log: &std::path::Path, n: usize) -> std::collections::BTreeMap<String, Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines.into_iter().map(|v| (v["request_id"].as_str().unwrap().to_string(), v)).collect();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An event without its times (checked apart) and its `created_at`.
fn timeless(mut v: Value) -> (Value, f64, Option<f64>) {
    let o = v.as_object_mut().unwrap();
    let latency = o.remove("latency_ms").unwrap().as_f64().unwrap();
    let ttft = o.remove("ttft_ms").map(|t| t.as_f64().unwrap());
    assert!(o.remove("created_at").unwrap().as_str().unwrap().ends_with('Z'));
    (v, latency, ttft)
}

#[test]
fn calls_through_the_proxy_are_forwarded_untouched_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (_up, port) = upstream(dir.path());
    let log = dir.path().join("calls.jsonl");
    let up = format!("http://127.0.0.1:{port}");
    let anthropic = format!("/anthropic={up}");
    let (_proxy, addr) = proxy(&["--upstream", &up, "--upstream", &anthropic, "--log", log.to_str().unwrap()]);

    let raw = dir.path().join("raw-client.bin");
    let out =
        Command::new(python()).arg(script("proxy_calls.py")).arg(format!("http://{addr}")).arg(&raw).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();

    // The SDKs got their answers as from the API itself.
    assert_eq!(got["json"], json!({"content": "Hi there", "usage": 60}));
    assert_eq!(got["stream"], json!({"content": "Hello world!", "prompt_tokens": 1200}));
    assert_eq!(got["429"]["status"], 429);
    assert_eq!(got["drop"]["completed"], false, "a dropped upstream is not a clean end for the client");
    assert_eq!(got["messages"], json!({"content": "Hi", "input_tokens": 900}));
    assert_eq!(got["messages-stream"], json!({"content": "Hi there", "output_tokens": 120}));
    // Byte for byte what the upstream sent.
    let sent = std::fs::read(dir.path().join("raw.bin")).unwrap();
    assert!(sent.len() > 500);
    assert_eq!(std::fs::read(&raw).unwrap(), sent);

    // The upstream got the API key as sent, and none of the proxy's own headers.
    let req: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("stream.req.json")).unwrap()).unwrap();
    assert_eq!(req["headers"]["authorization"], "Bearer sk-test-secret-key-1234");
    assert!(req["headers"].as_object().unwrap().keys().all(|k| !k.starts_with("helicone-")), "{req}");
    let req: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("messages.req.json")).unwrap()).unwrap();
    assert_eq!(req["path"], "/v1/messages", "the prefix is replaced by the upstream's path");

    let ev = events(&log, 8);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("sk-test-secret") && !text.contains("sk-helicone"), "keys never reach the log");
    assert_eq!(ev.len(), 8, "{text}");
    let openai = |v: Value| {
        let mut base = json!({"provider": "openai", "model": "gpt-4o-2024-08-06", "status": 200});
        base.as_object_mut().unwrap().extend(v.as_object().unwrap().clone());
        base
    };
    let stream_usage =
        json!({"prompt_tokens": 1200, "completion_tokens": 300, "cache_read_tokens": 400, "reasoning_tokens": 0});
    let claude_usage = json!({"provider": "anthropic", "model": "claude-sonnet-4-5-20250929", "status": 200,
        "prompt_tokens": 1250, "completion_tokens": 120, "cache_read_tokens": 50, "cache_write_tokens": 300});
    let with = |mut a: Value, b: Value| {
        a.as_object_mut().unwrap().extend(b.as_object().unwrap().clone());
        a
    };
    // (request id, the event without its times, streamed)
    let want = [
        (
            "req_json",
            openai(json!({"request_id": "req_json", "prompt_tokens": 50, "completion_tokens": 10,
            "cache_read_tokens": 0, "reasoning_tokens": 0, "user_id": "bob"})),
            false,
        ),
        (
            "req_stream",
            openai(with(
                stream_usage,
                json!({"request_id": "req_stream", "user_id": "alice",
            "session_id": "s-1", "properties": {"feature": "search"}}),
            )),
            true,
        ),
        (
            "req_429",
            json!({"request_id": "req_429", "provider": "openai", "model": "rate-limited", "status": 429,
            "error": "Rate limit reached for gpt-4o on requests per min (RPM): Limit 3, Used 3"}),
            false,
        ),
        ("req_msg", with(claude_usage.clone(), json!({"request_id": "req_msg", "user_id": "carol"})), false),
        (
            "req_msg_stream",
            with(claude_usage, json!({"request_id": "req_msg_stream", "properties": {"team": "growth"}})),
            true,
        ),
        ("req_raw", openai(json!({"request_id": "req_raw"})), true),
    ];
    for (id, want, streamed) in want {
        let (got, latency, ttft) = timeless(ev[id].clone());
        assert_eq!(got, want, "{id}");
        match (streamed, ttft) {
            // The upstream waits 150 ms before the first token.
            (true, Some(t)) => assert!((150.0..latency).contains(&t), "{id}: ttft {t} latency {latency}"),
            (false, None) => assert!(latency < 5_000.0),
            _ => panic!("{id}: streamed {streamed}, ttft {ttft:?}"),
        }
    }
    // The upstream dropped the connection mid-stream, after two words.
    let (drop, _, _) = timeless(ev["req_drop"].clone());
    assert_eq!(drop["status"], 502);
    assert!(drop["error"].as_str().unwrap().starts_with("the upstream connection failed mid-response after"), "{drop}");
    // The client left after the first chunk of a slow stream (8 s long).
    let (leave, latency, _) = timeless(ev["req_leave"].clone());
    assert_eq!(leave["status"], 499);
    let first = got["leave"]["first_bytes"].as_u64().unwrap();
    assert_eq!(leave["error"], format!("the client disconnected mid-response after {first} bytes"));
    assert!(latency < 2_000.0, "noticed when the client left, not at the stream's end: {latency}");
}
