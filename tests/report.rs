//! End-to-end: `tokentop report` on a generated file, checked against answers this
//! test computes on its own from the events it wrote (never from the program's output).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::process::{Command, Output};

use serde_json::{Value, json};

/// A tiny deterministic generator, independent of the crate's own.
struct Xs(u64);

impl Xs {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Clone, Debug)]
struct E {
    t_ms: i64,
    model: &'static str,
    provider: &'static str,
    status: u64,
    latency: Option<f64>,
    ttft: Option<f64>,
    prompt: u64,
    completion: u64,
    cache_read: u64,
    cache_hit: bool,
    cost_usd: Option<f64>,
    user: Option<String>,
    session: Option<String>,
    feature: &'static str,
    retry: u64,
    feedback: Option<bool>,
}

/// input, output, cache read (per token) for the test's own price file.
fn price(model: &str) -> Option<(f64, f64, f64)> {
    match model {
        "tt-alpha" => Some((1e-6, 2e-6, 1e-6)),
        "tt-beta" => Some((3e-6, 1.5e-5, 3e-7)),
        "tt-gamma" => Some((5e-7, 1e-6, 5e-7)),
        _ => None,
    }
}

const PRICES: &str = r#"{"models":{
  "tt-alpha":{"input":1e-6,"output":2e-6},
  "tt-beta":{"input":3e-6,"output":1.5e-5,"cache_read":3e-7},
  "tt-gamma":{"input":5e-7,"output":1e-6}}}"#;

fn list_price(e: &E) -> Option<f64> {
    price(e.model).map(|(i, o, cr)| {
        (e.prompt.saturating_sub(e.cache_read)) as f64 * i + e.cache_read as f64 * cr + e.completion as f64 * o
    })
}

/// (cost charged, unpriced?, saved) per the contract.
fn cost(e: &E) -> (f64, bool, f64) {
    if e.cache_hit {
        return (0.0, false, list_price(e).or(e.cost_usd).unwrap_or(0.0));
    }
    match (e.cost_usd, list_price(e)) {
        (Some(c), _) => (c, false, 0.0),
        (None, Some(c)) => (c, false, 0.0),
        (None, None) => (0.0, true, 0.0),
    }
}

const BASE_MS: i64 = 1_735_689_600_000; // 2025-01-01T00:00:00Z

fn generate(n: usize, seed: u64) -> Vec<E> {
    let mut r = Xs(seed);
    let models = [("tt-alpha", "openai"), ("tt-beta", "anthropic"), ("tt-gamma", "openai"), ("tt-unpriced", "mistral")];
    (0..n)
        .map(|i| {
            let (model, provider) = models[r.below(4) as usize];
            let status = match r.below(100) {
                0..=2 => 500,
                3..=4 => 429,
                5 => 404,
                6 => 0,
                7 => 503,
                _ => 200,
            };
            let cache_hit = r.below(10) == 0;
            let prompt = 100 + r.below(3000);
            E {
                // Two hours of traffic, slightly out of order.
                t_ms: BASE_MS + (i as i64 * 7_200_000 / n as i64) + r.below(5_000) as i64 - 2_500,
                model,
                provider,
                status,
                latency: (r.below(20) != 0).then(|| (r.unit().powi(3) * 30_000.0 * 1000.0).round() / 1000.0 + 0.5),
                ttft: (r.below(3) == 0).then(|| (r.unit() * 2_000.0 * 100.0).round() / 100.0 + 1.0),
                prompt,
                completion: r.below(800),
                cache_read: if r.below(4) == 0 { r.below(prompt) } else { 0 },
                cache_hit,
                cost_usd: (r.below(5) == 0).then(|| (r.unit() * 1e6).round() / 1e8),
                user: (r.below(10) != 0).then(|| format!("user-{}", r.below(700))),
                session: (r.below(2) == 0).then(|| format!("s-{}", r.below(300))),
                feature: ["chat", "search", "agent"][r.below(3) as usize],
                retry: if r.below(20) == 0 { 1 } else { 0 },
                feedback: match r.below(30) {
                    0 => Some(true),
                    1 => Some(false),
                    _ => None,
                },
            }
        })
        .collect()
}

fn to_line(e: &E) -> String {
    let mut v = json!({
        "created_at": e.t_ms,
        "model": e.model,
        "provider": e.provider,
        "status": e.status,
        "prompt_tokens": e.prompt,
        "completion_tokens": e.completion,
        "cache_read_tokens": e.cache_read,
        "cache_hit": e.cache_hit,
        "properties": {"Feature": e.feature},
        "retry": e.retry,
        "unrelated": {"nested": [1, 2, 3]},
    });
    let o = v.as_object_mut().unwrap();
    if let Some(l) = e.latency {
        o.insert("latency_ms".into(), json!(l));
    }
    if let Some(t) = e.ttft {
        o.insert("ttft_ms".into(), json!(t));
    }
    if let Some(c) = e.cost_usd {
        o.insert("cost_usd".into(), json!(c));
    }
    if let Some(u) = &e.user {
        o.insert("user_id".into(), json!(u));
    }
    if let Some(s) = &e.session {
        o.insert("session_id".into(), json!(s));
    }
    if let Some(f) = e.feedback {
        o.insert("feedback".into(), json!(f));
    }
    v.to_string()
}

fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q / 100.0 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn close(got: &Value, want: f64, tol: f64, what: &str) {
    let g = got.as_f64().unwrap_or_else(|| panic!("{what}: not a number: {got}"));
    assert!((g - want).abs() <= tol, "{what}: got {g}, want {want} (±{tol})");
}

fn pct_close(got: &Value, want: f64, what: &str) {
    close(got, want, want.abs() * 0.01, what);
}

fn tokentop(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokentop")).args(args).output().expect("run tokentop")
}

fn report_json(args: &[&str]) -> (Value, String) {
    let out = tokentop(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "tokentop {args:?} failed: {stderr}");
    (serde_json::from_slice(&out.stdout).expect("JSON on stdout"), stderr)
}

struct Fixture {
    _dir: tempfile::TempDir,
    events: String,
    prices: String,
    all: Vec<E>,
}

fn fixture() -> Fixture {
    let all = generate(20_000, 0x1234_5678_9abc_def1);
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let mut f = std::fs::File::create(&events).unwrap();
    for (i, e) in all.iter().enumerate() {
        writeln!(f, "{}", to_line(e)).unwrap();
        // Bad and blank lines sprinkled in: counted, never fatal, never events.
        match i {
            100 => writeln!(f, "{{not json").unwrap(),
            200 => writeln!(f, r#"{{"created_at":1,"status":"ok"}}"#).unwrap(),
            300 => writeln!(f, "   ").unwrap(),
            400 => writeln!(f, r#"[{{"created_at":1}}]"#).unwrap(),
            _ => {}
        }
    }
    let prices = dir.path().join("prices.json");
    std::fs::write(&prices, PRICES).unwrap();
    Fixture { events: events.display().to_string(), prices: prices.display().to_string(), all, _dir: dir }
}

#[test]
fn report_matches_an_independent_computation() {
    let fx = fixture();
    let (r, stderr) = report_json(&["report", "--window", "1h", "--top", "1000", "--prices", &fx.prices, &fx.events]);

    let end_ms = fx.all.iter().map(|e| e.t_ms).max().unwrap();
    let start_ms = end_ms - 3_600_000;
    let win: Vec<&E> = fx.all.iter().filter(|e| e.t_ms > start_ms && e.t_ms <= end_ms).collect();
    let n = win.len() as u64;

    // Ingest.
    assert_eq!(r["ingest"]["lines"], 20_004);
    assert_eq!(r["ingest"]["events"], 20_000);
    assert_eq!(r["ingest"]["parse_errors"], 3);
    assert_eq!(r["ingest"]["outside_window"], 20_000 - n);
    assert!(stderr.contains(":102:"), "the first bad line is named with its line number: {stderr}");
    assert!(stderr.contains("`status`"), "{stderr}");

    // Window.
    assert_eq!(r["window"]["seconds"], 3600.0);
    let end = chrono::DateTime::parse_from_rfc3339(r["window"]["end"].as_str().unwrap()).unwrap();
    assert_eq!(end.timestamp_millis(), end_ms);

    // Counts and errors.
    assert_eq!(r["summary"]["total_requests"], n);
    let errors = win.iter().filter(|e| e.status >= 400 || e.status == 0).count() as u64;
    let e4 = win.iter().filter(|e| (400..500).contains(&e.status)).count() as u64;
    let e5 = win.iter().filter(|e| (500..600).contains(&e.status)).count() as u64;
    let e429 = win.iter().filter(|e| e.status == 429).count() as u64;
    let ok = win.iter().filter(|e| (200..300).contains(&e.status)).count() as u64;
    assert_eq!(r["errors"]["errors"]["4xx"], e4);
    assert_eq!(r["errors"]["errors"]["5xx"], e5);
    assert_eq!(r["errors"]["errors"]["429"], e429);
    assert_eq!(r["errors"]["successful"], ok);
    let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
    win.iter().for_each(|e| *by_status.entry(e.status.to_string()).or_default() += 1);
    let got: BTreeMap<String, u64> = serde_json::from_value(r["errors"]["by_status"].clone()).unwrap();
    assert_eq!(got, by_status);
    close(&r["summary"]["error_rate"], errors as f64 * 100.0 / n as f64, 1e-9, "error_rate");
    close(&r["summary"]["success_rate"], ok as f64 * 100.0 / n as f64, 1e-9, "success_rate");
    close(&r["summary"]["requests_per_second"], n as f64 / 3600.0, 1e-9, "rps");

    // Cost, to 1e-6 USD.
    let costs: Vec<(f64, bool, f64)> = win.iter().map(|e| cost(e)).collect();
    let total: f64 = costs.iter().map(|c| c.0).sum();
    close(&r["cost"]["total"], total, 1e-6, "total cost");
    assert_eq!(r["cost"]["unpriced_requests"], costs.iter().filter(|c| c.1).count() as u64);
    close(&r["cache"]["cost_saved"], costs.iter().map(|c| c.2).sum(), 1e-6, "cost saved");
    let hits = win.iter().filter(|e| e.cache_hit).count() as u64;
    assert_eq!(r["cache"]["cache_hits"], hits);
    assert_eq!(r["cache"]["cache_misses"], n - hits);

    // Tokens.
    let prompt: u64 = win.iter().map(|e| e.prompt).sum();
    let completion: u64 = win.iter().map(|e| e.completion).sum();
    assert_eq!(r["tokens"]["prompt_tokens"], prompt);
    assert_eq!(r["tokens"]["completion_tokens"], completion);
    assert_eq!(r["tokens"]["total_tokens"], prompt + completion);
    close(&r["tokens"]["avg_tokens_per_request"], (prompt + completion) as f64 / n as f64, 1e-9, "avg tokens");

    // Latency and TTFT: nearest rank within 1%, average and max exact.
    let mut lat: Vec<f64> = win.iter().filter_map(|e| e.latency).collect();
    lat.sort_by(f64::total_cmp);
    for q in [50.0, 95.0, 99.0] {
        pct_close(&r["latency"][format!("p{q:.0}")], nearest_rank(&lat, q), &format!("latency p{q}"));
    }
    close(&r["latency"]["avg"], lat.iter().sum::<f64>() / lat.len() as f64, 1e-6, "latency avg");
    close(&r["latency"]["max"], *lat.last().unwrap(), 1e-9, "latency max");
    let mut ttft: Vec<f64> = win.iter().filter_map(|e| e.ttft).collect();
    ttft.sort_by(f64::total_cmp);
    pct_close(&r["ttft"]["p95"], nearest_rank(&ttft, 95.0), "ttft p95");
    close(&r["ttft"]["avg"], ttft.iter().sum::<f64>() / ttft.len() as f64, 1e-6, "ttft avg");

    // Users.
    let users: HashSet<&str> = win.iter().filter_map(|e| e.user.as_deref()).collect();
    assert_eq!(r["summary"]["active_users"], users.len() as u64);
    close(&r["cost"]["avg_cost_per_user"], total / users.len() as f64, 1e-6, "cost per user");
    let mut per_user: HashMap<&str, (u64, f64, i64, u64, u64)> = HashMap::new();
    for (e, c) in win.iter().zip(&costs) {
        if let Some(u) = e.user.as_deref() {
            let s = per_user.entry(u).or_default();
            s.0 += 1;
            s.1 += c.0;
            s.2 = s.2.max(e.t_ms);
            s.3 += e.prompt + e.completion;
            s.4 += u64::from(e.status == 429);
        }
    }
    let rows = r["users"].as_array().unwrap();
    assert_eq!(rows.len(), users.len().min(1000));
    let mut prev = u64::MAX;
    for row in rows {
        let (reqs, c, last, tokens, e429) = per_user[row["user_id"].as_str().unwrap()];
        assert_eq!(row["request_count"], reqs);
        assert_eq!(row["tokens"], tokens);
        close(&row["rate_429"], e429 as f64 * 100.0 / reqs as f64, 1e-9, "user 429 rate");
        close(&row["request_share"], reqs as f64 * 100.0 / n as f64, 1e-9, "user share");
        assert!(reqs <= prev, "sorted by requests, descending");
        prev = reqs;
        close(&row["total_cost"], c, 1e-6, "user cost");
        let la = chrono::DateTime::parse_from_rfc3339(row["last_active"].as_str().unwrap()).unwrap();
        assert_eq!(la.timestamp_millis(), last);
    }

    // Groups.
    for model in ["tt-alpha", "tt-beta", "tt-gamma", "tt-unpriced"] {
        let m: Vec<(&&E, &(f64, bool, f64))> = win.iter().zip(&costs).filter(|(e, _)| e.model == model).collect();
        let g = &r["by_model"][model];
        assert_eq!(g["requests"], m.len() as u64, "{model}");
        let c: f64 = m.iter().map(|x| x.1.0).sum();
        close(&g["cost"], c, 1e-6, "model cost");
        close(&g["percentage"], c * 100.0 / total, 1e-6, "model cost share");
        close(&g["request_share"], m.len() as f64 * 100.0 / n as f64, 1e-9, "model request share");
        let mut l: Vec<f64> = m.iter().filter_map(|x| x.0.latency).collect();
        l.sort_by(f64::total_cmp);
        pct_close(&g["latency"]["p95"], nearest_rank(&l, 95.0), "model p95");
    }
    let feature_chat = win.iter().filter(|e| e.feature == "chat").count() as u64;
    assert_eq!(r["by_property"]["Feature"]["chat"]["requests"], feature_chat);
    let openai = win.iter().filter(|e| e.provider == "openai").count() as u64;
    assert_eq!(r["by_provider"]["openai"]["requests"], openai);

    // Sessions: first start to last end (start + latency).
    let mut sessions: HashMap<&str, (i64, i64, bool)> = HashMap::new();
    for e in &win {
        if let Some(s) = e.session.as_deref() {
            let end = e.t_ms * 1000 + e.latency.map_or(0, |l| (l * 1000.0).round() as i64);
            let x = sessions.entry(s).or_insert((i64::MAX, i64::MIN, false));
            x.0 = x.0.min(e.t_ms * 1000);
            x.1 = x.1.max(end);
            x.2 |= e.status >= 400 || e.status == 0;
        }
    }
    assert_eq!(r["sessions"]["total_sessions"], sessions.len() as u64);
    let avg_dur = sessions.values().map(|s| (s.1 - s.0) as f64 / 1e6).sum::<f64>() / sessions.len() as f64;
    close(&r["sessions"]["avg_duration"], avg_dur, 1e-6, "session duration");
    let clean = sessions.values().filter(|s| !s.2).count() as f64 * 100.0 / sessions.len() as f64;
    close(&r["sessions"]["success_rate"], clean, 1e-9, "session success");

    // Feedback and retries.
    let rated = win.iter().filter(|e| e.feedback.is_some()).count() as u64;
    let positive = win.iter().filter(|e| e.feedback == Some(true)).count() as f64;
    assert_eq!(r["summary"]["feedback"]["rated"], rated);
    close(&r["summary"]["feedback"]["positive_rate"], positive * 100.0 / rated as f64, 1e-9, "positive rate");
    let retried = win.iter().filter(|e| e.retry > 0).count() as f64;
    close(&r["summary"]["retry_rate"], retried * 100.0 / n as f64, 1e-9, "retry rate");

    // Series: one-minute buckets from the window's start to its end.
    assert_eq!(r["series_bucket_seconds"], 60);
    let mut buckets: BTreeMap<i64, u64> = BTreeMap::new();
    let (first, last) = ((start_ms + 1).div_euclid(60_000), end_ms.div_euclid(60_000));
    (first..=last).for_each(|b| {
        buckets.insert(b * 60_000, 0);
    });
    win.iter().for_each(|e| *buckets.get_mut(&(e.t_ms.div_euclid(60_000) * 60_000)).unwrap() += 1);
    let series = r["series"].as_array().unwrap();
    assert_eq!(series.len(), buckets.len());
    for (p, (t, count)) in series.iter().zip(&buckets) {
        let pt = chrono::DateTime::parse_from_rfc3339(p["time"].as_str().unwrap()).unwrap();
        assert_eq!(pt.timestamp_millis(), *t);
        assert_eq!(p["requests"], *count);
    }
}

#[test]
fn window_all_covers_every_event() {
    let fx = fixture();
    let (r, _) = report_json(&["report", "--window", "all", "--prices", &fx.prices, &fx.events]);
    assert_eq!(r["summary"]["total_requests"], 20_000);
    assert_eq!(r["ingest"]["outside_window"], 0);
    let span_ms = fx.all.iter().map(|e| e.t_ms).max().unwrap() - fx.all.iter().map(|e| e.t_ms).min().unwrap();
    assert_eq!(r["window"]["seconds"], span_ms as f64 / 1000.0);
    // About two hours: one-minute buckets.
    assert_eq!(r["series_bucket_seconds"], 60);
    let series_total: u64 = r["series"].as_array().unwrap().iter().map(|p| p["requests"].as_u64().unwrap()).sum();
    assert_eq!(series_total, 20_000);
}

#[test]
fn stdin_and_threads_give_the_same_answer() {
    let fx = fixture();
    let (a, _) = report_json(&["report", "--threads", "1", "--prices", &fx.prices, &fx.events]);
    let out = Command::new(env!("CARGO_BIN_EXE_tokentop"))
        .args(["report", "--threads", "2", "--prices", &fx.prices, "-"])
        .stdin(std::fs::File::open(&fx.events).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success());
    let b: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(a, b, "a report is the same however it is read");
}

#[test]
fn table_format_is_readable() {
    let fx = fixture();
    let out = tokentop(&["report", "--format", "table", "--prices", &fx.prices, &fx.events]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in ["Requests", "Latency ms", "By model", "tt-alpha", "Top users", "parse errors"] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
}

#[test]
fn bad_input_is_counted_and_survived() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.jsonl");
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"{\"created_at\":\"2025-01-01T00:00:00Z\",\"model\":\"a\",\"latency_ms\":10}\n");
    bytes.extend_from_slice(b"{\"created_at\":\"2025-01-01T00:00:01Z\",\"model\":\"\xff\xfe\"}\n");
    bytes.extend_from_slice(&vec![b'x'; 2 << 20]);
    bytes.extend_from_slice(b"\n{\"created_at\":\"2025-01-01T00:00:02Z\",\"latency_ms\":-1}\n");
    bytes.extend_from_slice(b"{\"created_at\":\"2025-01-01T00:00:03Z\",\"model\":\"b\",\"latency_ms\":30}\r\n");
    bytes.extend_from_slice(b"{\"created_at\":\"2025-01-01T00:00:04Z\",\"model\":\"c\"");
    std::fs::write(&path, &bytes).unwrap();
    let (r, stderr) = report_json(&["report", path.to_str().unwrap()]);
    assert_eq!(r["ingest"]["lines"], 6);
    assert_eq!(r["ingest"]["events"], 2);
    assert_eq!(r["ingest"]["parse_errors"], 4);
    assert_eq!(r["summary"]["total_requests"], 2);
    assert!(stderr.contains(":2: line is not valid UTF-8"), "{stderr}");
    assert!(stderr.contains(":3: line is longer than 1 MiB"), "{stderr}");
    assert!(stderr.contains(":4: tokentop event: field `latency_ms`"), "{stderr}");
    assert!(stderr.contains("found -1"), "the message shows the bad value: {stderr}");
}

#[test]
fn missing_file_is_a_clear_error() {
    let out = tokentop(&["report", "/nonexistent/events.jsonl"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot open /nonexistent/events.jsonl"), "{stderr}");
    let out = tokentop(&["report", "--window", "soon", "x"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--window"));
}

#[test]
fn a_late_line_at_the_top_of_the_file_still_gives_an_exact_window() {
    // The latest event is the first line, so the guess from the file's tail is wrong
    // and the report must read again with the true end.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(f, r#"{{"created_at":{},"model":"late"}}"#, BASE_MS + 7_200_000).unwrap();
    for i in 0..1000 {
        writeln!(f, r#"{{"created_at":{},"model":"m"}}"#, BASE_MS + i * 6_000).unwrap();
    }
    drop(f);
    let (r, _) = report_json(&["report", "--window", "1h", path.to_str().unwrap()]);
    // Window (BASE+1h, BASE+2h]: the late event plus none of the others (the last is at BASE+5994 s).
    let inside = (0..1000).filter(|i| BASE_MS + i * 6_000 > BASE_MS + 3_600_000).count() as u64;
    assert_eq!(r["summary"]["total_requests"], inside + 1);
    assert_eq!(r["ingest"]["outside_window"], 1001 - inside - 1);
}
