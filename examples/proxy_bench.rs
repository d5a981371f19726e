//! The latency `tokentop proxy` adds (`scripts/bench.sh proxy`):
//!
//! `proxy_bench [SECS]`: a local upstream (in this process) answers chat completions at
//! once, as one JSON body or as a stream of 20 server-sent events with a usage chunk.
//! Requests go out open-loop at 100 and 1,000 a second over keep-alive connections,
//! first straight to the upstream, then through `tokentop proxy --headless` (events
//! logged to a file); the added latency is the difference of the percentiles of the two
//! runs (time to the last byte, and for streams to the first byte too).

use std::convert::Infallible;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

fn exe() -> std::path::PathBuf {
    std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("tokentop")
}

fn answer(stream: bool) -> (&'static str, Bytes) {
    let usage = r#""usage":{"prompt_tokens":1200,"completion_tokens":300,"total_tokens":1500,"prompt_tokens_details":{"cached_tokens":400}}"#;
    if !stream {
        let body = format!(
            r#"{{"id":"chatcmpl-1","object":"chat.completion","created":1764662400,"model":"gpt-4o-2024-08-06","choices":[{{"index":0,"message":{{"role":"assistant","content":"{}"}},"finish_reason":"stop"}}],{usage}}}"#,
            "word ".repeat(60)
        );
        return ("application/json", Bytes::from(body));
    }
    let mut body = String::new();
    for i in 0..20 {
        body.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"w{i} \"}}}}]}}\n\n"
        ));
    }
    body.push_str(&format!("data: {{\"id\":\"chatcmpl-1\",\"choices\":[],{usage}}}\n\ndata: [DONE]\n\n"));
    ("text/event-stream", Bytes::from(body))
}

async fn upstream() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    let stream = memchr::memmem::find(&body, b"\"stream\":true").is_some();
                    let (ct, bytes) = answer(stream);
                    let mut r = Response::new(Full::new(bytes));
                    r.headers_mut().insert("content-type", ct.parse().unwrap());
                    r.headers_mut().insert("x-request-id", "req_1".parse().unwrap());
                    Ok::<_, Infallible>(r)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    port
}

/// Sends `rate` requests a second for `secs` to `url`: (time to first byte, time to last byte) each, in µs.
async fn run(url: &str, stream: bool, rate: f64, secs: f64) -> (Vec<u64>, Vec<u64>) {
    let client = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();
    let body = format!(
        r#"{{"model":"gpt-4o","stream":{stream},"stream_options":{{"include_usage":true}},"user":"u1","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "hello ".repeat(100)
    );
    let out = Arc::new(Mutex::new((Vec::new(), Vec::new())));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let n = (rate * secs) as usize;
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        tick.tick().await;
        let (client, url, body, out) = (client.clone(), url.to_string(), body.clone(), out.clone());
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let mut r = client
                .post(&url)
                .header("content-type", "application/json")
                .header("authorization", "Bearer sk-bench")
                .body(body)
                .send()
                .await
                .unwrap();
            let mut first = None;
            while let Some(c) = r.chunk().await.unwrap() {
                if first.is_none() && !c.is_empty() {
                    first = Some(t.elapsed());
                }
            }
            let last = t.elapsed();
            let mut o = out.lock().unwrap();
            o.0.push(first.unwrap_or(last).as_micros() as u64);
            o.1.push(last.as_micros() as u64);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut o = std::mem::take(&mut *out.lock().unwrap());
    o.0.sort_unstable();
    o.1.sort_unstable();
    o
}

fn pct(v: &[u64], p: f64) -> f64 {
    v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1] as f64 / 1e3
}

fn main() {
    let secs: f64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10.0);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let port = rt.block_on(upstream());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.jsonl");
    let proxy_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut proxy = Command::new(exe())
        .args(["proxy", "--headless", "--listen", &format!("127.0.0.1:{proxy_port}")])
        .args(["--upstream", &format!("http://127.0.0.1:{port}"), "--log", log.to_str().unwrap()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let direct = format!("http://127.0.0.1:{port}/v1/chat/completions");
    let proxied = format!("http://127.0.0.1:{proxy_port}/v1/chat/completions");
    println!("added latency of tokentop proxy ({secs:.0} s a run, open loop, keep-alive; ms)");
    for stream in [false, true] {
        for rate in [100.0, 1000.0] {
            // Warm both paths' connections first.
            rt.block_on(run(&direct, stream, rate, 0.5));
            rt.block_on(run(&proxied, stream, rate, 0.5));
            let d = rt.block_on(run(&direct, stream, rate, secs));
            let p = rt.block_on(run(&proxied, stream, rate, secs));
            let kind = if stream { "stream" } else { "json  " };
            println!(
                "{kind} {rate:>5.0} req/s: to last byte p50 {:.3} → {:.3} (+{:.3}), p99 {:.3} → {:.3} (+{:.3}){}",
                pct(&d.1, 0.5),
                pct(&p.1, 0.5),
                pct(&p.1, 0.5) - pct(&d.1, 0.5),
                pct(&d.1, 0.99),
                pct(&p.1, 0.99),
                pct(&p.1, 0.99) - pct(&d.1, 0.99),
                if stream {
                    format!(
                        "; to first byte p50 +{:.3}, p99 +{:.3}",
                        pct(&p.0, 0.5) - pct(&d.0, 0.5),
                        pct(&p.0, 0.99) - pct(&d.0, 0.99)
                    )
                } else {
                    String::new()
                }
            );
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let recorded = std::fs::read_to_string(&log).unwrap_or_default().lines().count();
    println!("calls recorded by the proxy: {recorded}");
    let _ = proxy.kill();
    let _ = proxy.wait();
}
