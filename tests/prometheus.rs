//! `--metrics`, scraped by a real Prometheus server (Debian's `prometheus` package,
//! started here on loopback from a temporary directory): what its query API answers
//! is what the events said.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{Child, free_port, relay_with, wait_for_log};

/// Prometheus scraping `target` every second; its HTTP API's address.
fn prometheus(dir: &std::path::Path, target: &str) -> (Child, String) {
    let bin = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or_else(|| {
            panic!("prometheus is not installed: run scripts/test-deps.sh as root (apt-get install prometheus)")
        });
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: tokentop\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let web = format!("127.0.0.1:{}", free_port());
    let child = Command::new(bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (Child(child), web)
}

/// The value of an instant query with one result (`None` while it has none).
async fn query(web: &str, q: &str) -> Option<f64> {
    let url = reqwest::Url::parse_with_params(&format!("http://{web}/api/v1/query"), &[("query", q)]).unwrap();
    let r = reqwest::Client::new().get(url).send().await.ok()?;
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.ok()?).ok()?;
    let result = v["data"]["result"].as_array()?;
    assert!(result.len() <= 1, "{q}: {v}");
    result.first()?["value"][1].as_str()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_what_the_events_said() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    // 300 events: three models; every 10th a 429, every 25th a 500; billed costs.
    let path = dir.path().join("gw.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    let (mut cost, mut prompt, mut fast, mut errors_4xx, mut errors_5xx) = (0.0, 0u64, 0u64, 0u64, 0u64);
    let mut per_model = [0u64; 3];
    for i in 0..300u64 {
        let model = ["gpt-4o", "claude-sonnet-4-5", "gemini-2.5-flash"][(i % 3) as usize];
        let status = if i % 25 == 0 {
            500
        } else if i % 10 == 0 {
            429
        } else {
            200
        };
        let latency = 200 + i * 37 % 4000;
        let c = (i as f64) * 0.000125;
        writeln!(
            f,
            r#"{{"created_at":{},"request_id":"r{i}","provider":"p","model":"{model}","status":{status},"latency_ms":{latency},"prompt_tokens":{},"completion_tokens":7,"cost_usd":{c}}}"#,
            1_764_662_400_000u64 + i * 1000,
            100 + i
        )
        .unwrap();
        cost += c;
        prompt += 100 + i;
        per_model[(i % 3) as usize] += 1;
        fast += u64::from(latency <= 1000);
        errors_4xx += u64::from(status == 429);
        errors_5xx += u64::from(status == 500);
    }
    drop(f);
    let metrics = format!("127.0.0.1:{}", free_port());
    let relay = relay_with("", "127.0.0.1:0", &["--no-follow", "--metrics", &metrics, path.to_str().unwrap()], &[]);
    wait_for_log(&relay, "metrics on http://");
    let (_prom, web) = prometheus(dir.path(), &metrics);

    let deadline = Instant::now() + Duration::from_secs(60);
    while query(&web, "sum(tokentop_requests_total)").await != Some(300.0) {
        assert!(Instant::now() < deadline, "Prometheus never saw the 300 requests");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let q = |s: String| {
        let web = web.clone();
        async move { query(&web, &s).await.unwrap_or_else(|| panic!("{s}: no result")) }
    };
    assert_eq!(q("tokentop_events_total".into()).await, 300.0);
    for (model, n) in ["gpt-4o", "claude-sonnet-4-5", "gemini-2.5-flash"].iter().zip(per_model) {
        assert_eq!(q(format!("sum(tokentop_requests_total{{model=\"{model}\"}})")).await, n as f64, "{model}");
    }
    assert_eq!(q(r#"sum(tokentop_requests_total{status_class="4xx"})"#.into()).await, errors_4xx as f64);
    assert_eq!(q(r#"sum(tokentop_requests_total{status_class="5xx"})"#.into()).await, errors_5xx as f64);
    assert_eq!(q(r#"sum(tokentop_tokens_total{kind="prompt"})"#.into()).await, prompt as f64);
    assert_eq!(q(r#"sum(tokentop_tokens_total{kind="completion"})"#.into()).await, 2100.0);
    let scraped_cost = q("sum(tokentop_cost_usd_total)".into()).await;
    assert!((scraped_cost - cost).abs() < 1e-6, "{scraped_cost} vs {cost}");
    assert_eq!(q("sum(tokentop_request_duration_seconds_count)".into()).await, 300.0);
    assert_eq!(q(r#"sum(tokentop_request_duration_seconds_bucket{le="1.0"})"#.into()).await, fast as f64);
    // Prometheus took the target as up, with every series well formed.
    assert_eq!(q(r#"up{job="tokentop"}"#.into()).await, 1.0);
}
