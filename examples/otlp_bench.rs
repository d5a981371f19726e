//! OTLP/HTTP protobuf into the console (`scripts/bench.sh otlp`):
//!
//! `otlp_bench RATE SECS [SPANS_PER_EXPORT]`: the console runs in a 120x40
//! pseudo-terminal with `--otlp`; exports of GenAI spans (as an SDK's batch processor
//! sends them, 512 spans by default) are posted over HTTP/1.1 keep-alive at RATE spans/s
//! from four connections. Prints the spans accepted and refused (429: the console
//! asked for a retry), the ingest rate the status bar showed, keys' answer times and
//! the console's peak memory.
//!
//! A span is ~1.2 KB of protobuf: the attributes of the GenAI semantic conventions, a
//! prompt and a completion, a quarter of them under an HTTP server span of the same
//! trace. Exports are made up beforehand; only their times are written in when sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokentop::parse::otlp_proto::encode;

#[path = "common/pty.rs"]
mod pty;
use pty::{Pty, peak_mib};

/// An export made up once, with where each span's start and end times are.
struct Export {
    body: Vec<u8>,
    /// Offsets of each span's start time (its end time follows, 9 bytes on) and its latency.
    times: Vec<(usize, u64)>,
}

fn kv_str(out: &mut Vec<u8>, field: u32, k: &str, v: &str) {
    let mut value = Vec::new();
    encode::bytes(&mut value, 1, v.as_bytes());
    kv(out, field, k, &value);
}

fn kv_int(out: &mut Vec<u8>, field: u32, k: &str, v: i64) {
    let mut value = Vec::new();
    encode::uint(&mut value, 3, v as u64);
    kv(out, field, k, &value);
}

fn kv(out: &mut Vec<u8>, field: u32, k: &str, value: &[u8]) {
    let mut m = Vec::new();
    encode::bytes(&mut m, 1, k.as_bytes());
    encode::bytes(&mut m, 2, value);
    encode::bytes(out, field, &m);
}

fn make_export(n: usize, seed: u64) -> Export {
    let mut rng = tokentop::synth::Rng::new(seed);
    let models = [
        ("openai", "gpt-4o"),
        ("openai", "gpt-4o-mini"),
        ("anthropic", "claude-sonnet-4-5"),
        ("anthropic", "claude-haiku-4-5"),
        ("gcp.gemini", "gemini-2.5-flash"),
        ("aws.bedrock", "amazon.nova-pro-v1:0"),
    ];
    let words = ["the", "invoice", "summarise", "customer", "order", "refund", "policy", "shipping", "über", "naïve"];
    let mut spans: Vec<(Vec<u8>, Option<usize>)> = Vec::new();
    for i in 0..n {
        let trace: [u8; 16] = std::array::from_fn(|_| rng.below(256) as u8);
        let id: [u8; 8] = std::array::from_fn(|_| rng.below(256) as u8);
        let (provider, model) = models[rng.below(models.len() as u64) as usize];
        let mut s = Vec::new();
        encode::bytes(&mut s, 1, &trace);
        encode::bytes(&mut s, 2, &id);
        let parent: [u8; 8] = std::array::from_fn(|_| rng.below(256) as u8);
        let wrapped = i % 4 == 0;
        if wrapped {
            encode::bytes(&mut s, 4, &parent);
        }
        encode::bytes(&mut s, 5, format!("chat {model}").as_bytes());
        encode::uint(&mut s, 6, 3);
        let time_at = s.len();
        encode::fixed64(&mut s, 7, 0);
        encode::fixed64(&mut s, 8, 0);
        kv_str(&mut s, 9, "gen_ai.operation.name", "chat");
        kv_str(&mut s, 9, "gen_ai.provider.name", provider);
        kv_str(&mut s, 9, "gen_ai.request.model", model);
        kv_str(&mut s, 9, "gen_ai.response.model", &format!("{model}-2025-01-01"));
        kv_str(&mut s, 9, "gen_ai.response.id", &format!("chatcmpl-{:016x}", rng.next_u64()));
        kv_int(&mut s, 9, "gen_ai.usage.input_tokens", 100 + rng.below(4_000) as i64);
        kv_int(&mut s, 9, "gen_ai.usage.output_tokens", 20 + rng.below(800) as i64);
        kv_int(&mut s, 9, "gen_ai.request.max_tokens", 1024);
        kv_str(&mut s, 9, "server.address", "api.example.com");
        kv_str(&mut s, 9, "user.id", &format!("u{}", rng.below(5_000)));
        let prompt: Vec<&str> =
            (0..40 + rng.below(80)).map(|_| words[rng.below(words.len() as u64) as usize]).collect();
        kv_str(&mut s, 9, "gen_ai.prompt.0.content", &prompt.join(" "));
        let completion: Vec<&str> =
            (0..20 + rng.below(40)).map(|_| words[rng.below(words.len() as u64) as usize]).collect();
        kv_str(&mut s, 9, "gen_ai.completion.0.content", &completion.join(" "));
        let mut status = Vec::new();
        encode::uint(&mut status, 3, if rng.below(50) == 0 { 2 } else { 1 });
        encode::bytes(&mut s, 15, &status);
        spans.push((s, Some(time_at)));
        if wrapped {
            let mut h = Vec::new();
            encode::bytes(&mut h, 1, &trace);
            encode::bytes(&mut h, 2, &parent);
            encode::bytes(&mut h, 5, b"POST /v1/assist");
            encode::uint(&mut h, 6, 2);
            kv_str(&mut h, 9, "http.request.method", "POST");
            kv_int(&mut h, 9, "http.response.status_code", 200);
            spans.push((h, None));
        }
    }
    // Scope → resource → request, noting where each LLM span's times land.
    let mut scope = Vec::new();
    let mut scope_name = Vec::new();
    encode::bytes(&mut scope_name, 1, b"opentelemetry.instrumentation.openai");
    encode::bytes(&mut scope, 1, &scope_name);
    let mut times_in_scope = Vec::new();
    let mut r = tokentop::synth::Rng::new(seed ^ 7);
    for (s, time_at) in &spans {
        encode::varint(&mut scope, 2 << 3 | 2);
        encode::varint(&mut scope, s.len() as u64);
        if let Some(at) = time_at {
            times_in_scope.push((scope.len() + at + 1, (200 + r.below(8_000)) * 1_000_000));
        }
        scope.extend_from_slice(s);
    }
    let mut resource = Vec::new();
    kv_str(&mut resource, 1, "service.name", "assistant");
    let mut rs = Vec::new();
    encode::bytes(&mut rs, 1, &resource);
    encode::varint(&mut rs, 2 << 3 | 2);
    encode::varint(&mut rs, scope.len() as u64);
    let scope_at = rs.len();
    rs.extend_from_slice(&scope);
    let mut body = Vec::new();
    encode::varint(&mut body, 1 << 3 | 2);
    encode::varint(&mut body, rs.len() as u64);
    let rs_at = body.len();
    body.extend_from_slice(&rs);
    let times = times_in_scope.into_iter().map(|(at, lat)| (rs_at + scope_at + at, lat)).collect();
    Export { body, times }
}

impl Export {
    /// The body with every span ending now.
    fn stamped(&self, now_ns: u64) -> Vec<u8> {
        let mut b = self.body.clone();
        for &(at, latency) in &self.times {
            b[at..at + 8].copy_from_slice(&(now_ns - latency).to_le_bytes());
            b[at + 9..at + 17].copy_from_slice(&now_ns.to_le_bytes());
        }
        b
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rate: f64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(100_000.0);
    let secs: f64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(15.0);
    let per: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(512);

    let exports: Arc<Vec<Export>> = Arc::new((0..16).map(|i| make_export(per, i)).collect());
    // Check the made-up exports read as they should before measuring anything.
    let mut line = Vec::new();
    let t = tokentop::parse::otlp_proto::export_to_json(&exports[0].stamped(now_ns()), &mut line).unwrap();
    assert_eq!((t.spans as usize, t.rejected), (per + per.div_ceil(4), 0));
    let bytes = exports[0].body.len();
    println!(
        "exports of {per} GenAI spans (+{} HTTP parents), {:.0} KB protobuf each, {:.0} KB as OTLP/JSON",
        per.div_ceil(4),
        bytes as f64 / 1e3,
        line.len() as f64 / 1e3
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let mut c = Pty::start(&["--otlp", &addr]);
    std::thread::sleep(Duration::from_secs(2));

    let stop = Arc::new(AtomicBool::new(false));
    let (accepted, refused, failed) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let url = format!("http://{addr}/v1/traces");
    let connections = 4;
    let started = Instant::now();
    for k in 0..connections {
        let (exports, stop, url) = (exports.clone(), stop.clone(), url.clone());
        let (accepted, refused, failed) = (accepted.clone(), refused.clone(), failed.clone());
        rt.spawn(async move {
            let client = reqwest::Client::new();
            // This connection's share: every `connections`-th export.
            let every = Duration::from_secs_f64(per as f64 * connections as f64 / rate);
            let mut next = Instant::now() + every.mul_f64(k as f64 / connections as f64);
            let mut i = k;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep_until(next.into()).await;
                next += every;
                let body = exports[i % exports.len()].stamped(now_ns());
                i += connections;
                let r = client.post(&url).header("content-type", "application/x-protobuf").body(body).send().await;
                match r.map(|r| r.status().as_u16()) {
                    Ok(200) => accepted.fetch_add(per as u64, Ordering::Relaxed),
                    Ok(429) => refused.fetch_add(per as u64, Ordering::Relaxed),
                    _ => failed.fetch_add(per as u64, Ordering::Relaxed),
                };
                // Behind by more than a second: skip ahead instead of bursting.
                if Instant::now() > next + Duration::from_secs(1) {
                    next = Instant::now();
                }
            }
        });
    }

    std::thread::sleep(Duration::from_secs(2));
    let probe = c.probe(secs - 2.0);
    stop.store(true, Ordering::Relaxed);
    let took = started.elapsed().as_secs_f64();
    // Exports in flight finish before the console goes.
    std::thread::sleep(Duration::from_millis(1500));
    let status = c.contents().lines().last().unwrap_or_default().trim().to_string();
    let peak = peak_mib(c.child.process_id().unwrap());
    let _ = c.child.kill();
    rt.shutdown_timeout(Duration::from_secs(1));
    let per_s = |n: &AtomicU64| n.load(Ordering::Relaxed) as f64 / took;
    println!(
        "offered {rate:.0} GenAI spans/s for {took:.0} s: accepted {:.0}/s, refused (429) {:.0}/s, failed {:.0}/s",
        per_s(&accepted),
        per_s(&refused),
        per_s(&failed)
    );
    probe.print_rates();
    println!("{}; console peak RSS {peak:.0} MiB", probe.keys_text());
    println!("status bar at the end: {status}");
}
