//! End-to-end: logs in the shapes real tools write them (`tests/data/real/`, with a
//! note of where each shape comes from), read through the CLI. Every expected number
//! is what a person reading the file counts by hand; the comments show the sums.

use std::io::Write;
use std::process::{Command, Output};

use serde_json::Value;

fn tokentop(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokentop")).args(args).output().expect("run tokentop")
}

fn real(name: &str) -> String {
    format!("{}/tests/data/real/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// `report --window all` as JSON, and what it said on stderr.
fn report(args: &[&str]) -> (Value, String) {
    let mut all = vec!["report", "--window", "all"];
    all.extend_from_slice(args);
    let out = tokentop(&all);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}")), stderr)
}

/// `export` as parsed JSON lines.
fn export(args: &[&str]) -> Vec<Value> {
    let mut all = vec!["export"];
    all.extend_from_slice(args);
    let out = tokentop(&all);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn approx(v: &Value, want: f64) {
    let got = v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"));
    assert!((got - want).abs() < 1e-9, "{got} != {want}");
}

fn statuses(r: &Value) -> Value {
    r["errors"]["by_status"].clone()
}

#[test]
fn openlit_around_langchain_counts_each_call_once() {
    // Two calls, each an OpenAI span (39+7 and 112+36 tokens, $0.00003 and $0.00011)
    // inside a LangChain span (124+399 and 300+500 estimated tokens, with costs of their
    // own). The document is pretty-printed, metrics first.
    let (r, _) = report(&[&real("openlit-langchain.json")]);
    assert_eq!(r["summary"]["total_requests"], 2);
    assert_eq!(
        (r["tokens"]["prompt_tokens"].as_u64(), r["tokens"]["completion_tokens"].as_u64()),
        (Some(151), Some(43))
    );
    approx(&r["cost"]["total"], 0.00003 + 0.00011);
    assert_eq!(r["ingest"]["skipped_reasons"]["nested_llm_span"], 2);
    assert_eq!(r["ingest"]["parse_errors"], 0);
    assert_eq!(r["by_model"]["gpt-3.5-turbo-0125"]["requests"], 2);
    assert_eq!(r["by_provider"]["openai"]["requests"], 2);
    assert_eq!(r["ttft"]["count"], 0, "is_stream false: the first-token time was not measured");
}

#[test]
fn langsmith_templates_and_chains_are_not_requests() {
    // Two runs of chain → prompt template (operation `chat`, no model) → ChatOpenAI
    // (kind llm, 39+7 and 41+180 tokens) → parser: 5 other spans per run.
    let (r, _) = report(&[&real("langsmith.json")]);
    assert_eq!(r["summary"]["total_requests"], 2);
    assert_eq!(
        (r["tokens"]["prompt_tokens"].as_u64(), r["tokens"]["completion_tokens"].as_u64()),
        (Some(80), Some(187))
    );
    assert_eq!(r["by_model"].as_object().unwrap().keys().collect::<Vec<_>>(), ["gpt-3.5-turbo"], "no `unknown` model");
    assert_eq!(r["ingest"]["skipped_reasons"]["not_an_llm_call"], 10);
}

#[test]
fn openllmetry_legacy_attributes_and_a_nesting_across_lines() {
    // Trace 1: openai.chat (1200+150, 1024 cached) on line 1, inside ChatOpenAI.chat
    // (the same usage, 0 cached) on line 2, inside a workflow on line 3 with 3 tasks.
    // Trace 2: o3-mini alone (50+400, 256 reasoning).
    let (r, _) = report(&[&real("openllmetry.jsonl")]);
    assert_eq!(r["summary"]["total_requests"], 2);
    let t = &r["tokens"];
    assert_eq!(
        [&t["prompt_tokens"], &t["completion_tokens"], &t["cache_read_tokens"], &t["reasoning_tokens"]]
            .map(|v| v.as_u64().unwrap()),
        [1250, 550, 1024, 256]
    );
    assert_eq!(r["ingest"]["skipped_reasons"]["nested_llm_span"], 1);
    assert_eq!(r["ingest"]["skipped_reasons"]["not_an_llm_call"], 4);
    assert_eq!(r["by_provider"]["openai"]["requests"], 2, "`OpenAI` is lower-cased");
}

#[test]
fn vercel_ai_sdk_provider_calls_count_not_their_wrappers() {
    // generateText (20+100) around doGenerate (20+100); streamText (30+60) around
    // doStream (30+60, first chunk after 312.5 ms).
    let (r, _) = report(&[&real("vercel-ai.jsonl")]);
    assert_eq!(r["summary"]["total_requests"], 2);
    assert_eq!(
        (r["tokens"]["prompt_tokens"].as_u64(), r["tokens"]["completion_tokens"].as_u64()),
        (Some(50), Some(160))
    );
    assert_eq!(r["ingest"]["skipped_reasons"]["usage_outside_an_llm_call"], 2);
    assert_eq!(r["ttft"]["count"], 1);
    approx(&r["ttft"]["p50"], 312.5);
    assert_eq!(
        (r["by_provider"]["openai"]["requests"].as_u64(), r["by_provider"]["anthropic"]["requests"].as_u64()),
        (Some(1), Some(1))
    );
}

#[test]
fn java_logging_otlp_lines_and_an_exception_with_its_status() {
    let (r, _) = report(&[&real("semantic-kernel-logging-otlp.jsonl")]);
    assert_eq!(r["summary"]["total_requests"], 2);
    assert_eq!(statuses(&r), serde_json::json!({"200": 1, "429": 1}));
}

#[test]
fn errors_take_the_status_their_exception_names() {
    // RateLimitError "Error code: 429", AuthenticationError, APITimeoutError (no
    // response), Anthropic's "Error code: 529", an explicit 503, and one success.
    let (r, _) = report(&[&real("otel-errors.jsonl")]);
    assert_eq!(statuses(&r), serde_json::json!({"0": 1, "200": 1, "401": 1, "429": 1, "503": 1, "529": 1}));
    assert_eq!((r["errors"]["errors"]["4xx"].as_u64(), r["errors"]["errors"]["5xx"].as_u64()), (Some(2), Some(2)));
    let events = export(&[&real("otel-errors.jsonl")]);
    let e429 = events.iter().find(|e| e["status"] == 429).unwrap();
    assert!(e429["error"].as_str().unwrap().starts_with("Error code: 429 - "), "the message is the error text: {e429}");
    let e401 = events.iter().find(|e| e["status"] == 401).unwrap();
    assert_eq!(e401["error"], "openai.AuthenticationError", "without a message, the type is the text");
}

#[test]
fn billed_cost_from_otel_is_not_repriced() {
    let (r, _) = report(&[&real("litellm-otel.jsonl")]);
    approx(&r["cost"]["total"], 0.002);
}

#[test]
fn litellm_spend_log_rows() {
    // A call ($0.00042, 1200+100, 1000 cached under one name, 0 under another), a cache
    // hit, and a 429 failure; naive times; nothing streamed.
    let (r, stderr) = report(&[&real("litellm-spend-logs.jsonl")]);
    assert_eq!(r["summary"]["total_requests"], 3, "{stderr}");
    assert_eq!(r["ingest"]["field_errors"], 0, "{stderr}");
    approx(&r["cost"]["total"], 0.00042);
    assert_eq!(r["cache"]["cache_hits"], 1);
    assert_eq!(statuses(&r), serde_json::json!({"200": 2, "429": 1}));
    assert_eq!(r["tokens"]["cache_read_tokens"], 1000);
    assert_eq!(r["ttft"]["count"], 0, "completionStartTime = endTime is no first token");
    let events = export(&[&real("litellm-spend-logs.jsonl")]);
    assert_eq!(events[0]["created_at"], "2025-01-24T09:20:46.847371Z", "naive times are UTC by default");
    assert_eq!(events[0]["latency_ms"], 1500.0);
    assert_eq!(events[0]["properties"]["tags"], "prod,search");
    assert!(events[2]["error"].as_str().unwrap().contains("RateLimitError"));
    assert!(!serde_json::to_string(&events).unwrap().contains("88dc28"), "key hashes never leave the parser");
    let berlin = export(&["--tz", "Europe/Berlin", &real("litellm-spend-logs.jsonl")]);
    assert_eq!(berlin[0]["created_at"], "2025-01-24T08:20:46.847371Z", "CET in January");
    let offset = export(&["--tz", "+05:30", &real("litellm-spend-logs.jsonl")]);
    assert_eq!(offset[0]["created_at"], "2025-01-24T03:50:46.847371Z");
    let bad = tokentop(&["export", "--tz", "Mars/Olympus", &real("litellm-spend-logs.jsonl")]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("Europe/Berlin"));
}

#[test]
fn a_zero_under_one_cache_name_does_not_hide_a_count_under_another() {
    let (r, _) = report(&[&real("litellm-payload-cache.jsonl")]);
    assert_eq!(r["tokens"]["cache_read_tokens"], 1000);
    approx(&r["cost"]["total"], 0.00675);
    approx(&r["ttft"]["p50"], 250.0);
}

#[test]
fn helicone_export_tool_csv_and_json() {
    // resp-1 (alice, prod, session s-1, $0.000027), resp-2 (bob, staging, 429, no cost),
    // resp-3 (no properties, $0.00072).
    for file in ["helicone-export.csv", "helicone-export-cost-usd.csv", "helicone-export.json"] {
        let (r, stderr) = report(&[&real(file)]);
        assert_eq!(r["summary"]["total_requests"], 3, "{file}: {stderr}");
        assert_eq!(r["ingest"]["field_errors"], 0, "{file}: {stderr}");
        approx(&r["cost"]["total"], 0.000027 + 0.00072);
        assert_eq!(r["by_property"]["Environment"]["prod"]["requests"], 1, "{file}");
        assert_eq!(r["by_property"]["Environment"]["staging"]["requests"], 1, "{file}");
        assert_eq!(r["sessions"]["total_sessions"], 1, "{file}");
        assert_eq!(statuses(&r), serde_json::json!({"200": 2, "429": 1}), "{file}");
    }
}

#[test]
fn helicone_records_as_clickhouse_writes_them() {
    // 800 + 200 cached prompt tokens, 120 completion; a record with status -1.
    let (r, _) = report(&[&real("helicone-clickhouse.jsonl")]);
    assert_eq!(r["summary"]["total_requests"], 2);
    assert_eq!(
        (r["tokens"]["prompt_tokens"].as_u64(), r["tokens"]["cache_read_tokens"].as_u64()),
        (Some(1000), Some(200))
    );
    assert_eq!(statuses(&r), serde_json::json!({"0": 1, "200": 1}));
    approx(&r["cost"]["total"], 0.00455);
    assert_eq!(r["ttft"]["count"], 0, "a first token at 0 ms was not measured");
    let events = export(&[&real("helicone-clickhouse.jsonl")]);
    assert_eq!(events[0]["created_at"], "2025-05-15T17:30:42.830Z");
}

#[test]
fn native_error_objects_keep_the_event() {
    let (r, _) = report(&[&real("native-error-objects.jsonl")]);
    assert_eq!(statuses(&r), serde_json::json!({"200": 1, "429": 1, "529": 1}));
    let events = export(&[&real("native-error-objects.jsonl")]);
    assert!(events[0]["error"].as_str().unwrap().starts_with("Rate limit reached for gpt-4o"));
    assert_eq!(events[0]["properties"]["error.code"], "rate_limit_exceeded");
    assert_eq!(events[0]["properties"]["error.type"], "tokens");
    assert_eq!(
        (events[1]["error"].as_str(), events[1]["properties"]["error.type"].as_str()),
        (Some("Overloaded"), Some("overloaded_error"))
    );
    assert!(events[2].get("error").is_none());
}

#[test]
fn compressed_files_and_a_byte_order_mark_read_like_the_plain_file() {
    let plain = std::fs::read(real("litellm-spend-logs.jsonl")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("spend.log.gz");
    let mut enc = flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::default());
    enc.write_all(&plain).unwrap();
    enc.finish().unwrap();
    let zst = dir.path().join("spend.zst");
    std::fs::write(&zst, ruzstd::encoding::compress_to_vec(&plain[..], ruzstd::encoding::CompressionLevel::Fastest))
        .unwrap();
    let bom = dir.path().join("bom.jsonl");
    std::fs::write(&bom, [&b"\xEF\xBB\xBF"[..], &plain].concat()).unwrap();
    let (want, _) = report(&[&real("litellm-spend-logs.jsonl")]);
    for f in [&gz, &zst, &bom] {
        let (got, stderr) = report(&[f.to_str().unwrap()]);
        assert_eq!(got["summary"], want["summary"], "{}: {stderr}", f.display());
        assert_eq!(got["ingest"]["parse_errors"], 0, "{}: {stderr}", f.display());
    }
    let events = export(&[gz.to_str().unwrap()]);
    assert_eq!(events.len(), 3);
    // `check` reads the same way.
    let config = dir.path().join("alerts.toml");
    std::fs::write(
        &config,
        "[[alerts]]\nname = \"errors\"\nmetric = \"error_rate\"\nop = \">\"\nthreshold = 10\nwindow = \"1h\"\n",
    )
    .unwrap();
    let out = tokentop(&["check", "--config", config.to_str().unwrap(), zst.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "1 of 3 failed: the rule fires: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_file_of_nothing_readable_gets_one_message() {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("core.bin");
    std::fs::write(&binary, (0..200u32).flat_map(|i| [0u8, (i % 251) as u8, b'\n']).collect::<Vec<_>>()).unwrap();
    let csv = dir.path().join("other.csv");
    std::fs::write(&csv, "date,amount\n2025-01-01,3\n2025-01-02,4\n").unwrap();
    for (file, says) in [(&binary, "looks like binary data"), (&csv, "looks like CSV")] {
        let out = tokentop(&["report", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("nothing in it could be read") && stderr.contains(says), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "one message, not one per line: {stderr}");
    }
}

#[test]
fn an_unreadable_field_is_dropped_counted_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("mixed.jsonl");
    std::fs::write(
        &f,
        concat!(
            r#"{"request_created_at":"2025-03-01T10:00:00Z","request_model":"gpt-4o","delay_ms":"slow","response_status":200}"#,
            "\n",
            r#"{"startTime":1740823200,"model":"gpt-4o","status":"success","cache_hit":"maybe"}"#,
            "\n"
        ),
    )
    .unwrap();
    let (r, stderr) = report(&[f.to_str().unwrap()]);
    assert_eq!((r["summary"]["total_requests"].as_u64(), r["ingest"]["field_errors"].as_u64()), (Some(2), Some(2)));
    assert!(stderr.contains(":1: dropped a field: Helicone record: field `delay_ms`"), "{stderr}");
    assert!(stderr.contains(":2: dropped a field: LiteLLM payload: field `cache_hit`"), "{stderr}");
}
