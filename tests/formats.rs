//! End-to-end: reading Helicone, LiteLLM and OpenTelemetry logs, and `tokentop export`.
//!
//! Each sample in `tests/data/` was written by hand from the documented shapes of the
//! format, with edge cases; beside it, the normalised events it must give.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn tokentop(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokentop")).args(args).output().expect("run tokentop")
}

fn data(name: &str) -> String {
    format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn json_lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8(bytes.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
        .collect()
}

fn check_sample(input: &str, expected: &str, bad_line: &str) {
    let out = tokentop(&["export", &data(input)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = json_lines(&out.stdout);
    let want = json_lines(&std::fs::read(data(expected)).unwrap());
    assert_eq!(got.len(), want.len(), "{input}: event count");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "{input}: event {i}");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(bad_line), "{input}: expected `{bad_line}` in: {stderr}");
}

#[test]
fn helicone_records() {
    check_sample(
        "helicone.jsonl",
        "helicone.expected.jsonl",
        "helicone.jsonl:5: dropped a field: Helicone record: field `delay_ms`",
    );
}

#[test]
fn helicone_csv_export() {
    check_sample(
        "helicone.csv",
        "helicone-csv.expected.jsonl",
        "helicone.csv:5: dropped a field: Helicone CSV row: column `latency`",
    );
}

#[test]
fn litellm_payloads() {
    check_sample(
        "litellm.jsonl",
        "litellm.expected.jsonl",
        "litellm.jsonl:5: dropped a field: LiteLLM payload: field `status`",
    );
    let out = tokentop(&["export", &data("litellm.jsonl")]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("88dc28"), "API key hashes never leave the parser");
}

#[test]
fn opentelemetry_spans() {
    check_sample(
        "otel.jsonl",
        "otel.expected.jsonl",
        "otel.jsonl:3: matches no input format (tried tokentop, helicone, litellm, otel",
    );
    let out = tokentop(&["report", "--window", "all", &data("otel.jsonl")]);
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["ingest"]["skipped"], 1, "the HTTP span is skipped, not an error");
    assert_eq!(r["ingest"]["parse_errors"], 1);
    assert_eq!(r["summary"]["total_requests"], 4);
}

#[test]
fn one_file_may_mix_formats() {
    let dir = tempfile::tempdir().unwrap();
    let mixed = dir.path().join("mixed.jsonl");
    let mut f = std::fs::File::create(&mixed).unwrap();
    for name in ["helicone.jsonl", "litellm.jsonl", "otel.jsonl"] {
        f.write_all(&std::fs::read(data(name)).unwrap()).unwrap();
    }
    writeln!(f, r#"{{"created_at":"2025-03-01T10:00:09Z","model":"native","provider":"OpenAI"}}"#).unwrap();
    drop(f);
    let out = tokentop(&["report", "--window", "all", mixed.to_str().unwrap()]);
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    // A record with a field that cannot be read is kept without that field.
    assert_eq!(r["summary"]["total_requests"], 5 + 5 + 4 + 1);
    assert_eq!(r["ingest"]["parse_errors"], 1);
    assert_eq!(r["ingest"]["field_errors"], 2);
    assert_eq!(r["by_provider"]["openai"]["requests"], 2 + 1 + 1 + 1, "normalised names group together");
}

#[test]
fn a_quoted_glob_reads_every_matching_file() {
    let pattern = format!("{}/tests/data/*.jsonl", env!("CARGO_MANIFEST_DIR"));
    let out = tokentop(&["report", "--window", "all", &pattern]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    // helicone (5) + litellm (5) + otel (4) samples, and their expected files (5 + 4 + 5 + 4).
    assert_eq!(r["summary"]["total_requests"], 5 + 5 + 4 + 5 + 4 + 5 + 4);
    let out = tokentop(&["report", "/nonexistent/*.jsonl"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("matches no file"));
}

#[test]
fn forcing_a_format() {
    let out = tokentop(&["report", "--input-format", "helicone", "--window", "all", &data("litellm.jsonl")]);
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["ingest"]["events"], 0);
    assert_eq!(r["ingest"]["parse_errors"], 5);
    assert!(String::from_utf8_lossy(&out.stderr).contains("request_created_at"));
    let out = tokentop(&["report", "--input-format", "yaml", &data("litellm.jsonl")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tokentop, helicone, helicone-csv, litellm, otel"));
}

/// The report minus what depends on how the input was written.
fn numbers(report: &[u8]) -> Value {
    let mut v: Value = serde_json::from_slice(report).unwrap();
    v.as_object_mut().unwrap().remove("ingest");
    v
}

#[test]
fn export_then_report_gives_the_same_numbers() {
    let dir = tempfile::tempdir().unwrap();
    for input in ["helicone.jsonl", "helicone.csv", "litellm.jsonl", "otel.jsonl"] {
        let exported = dir.path().join(format!("{input}.exported.jsonl"));
        let out = tokentop(&["export", "-o", exported.to_str().unwrap(), &data(input)]);
        assert!(out.status.success());
        let a = tokentop(&["report", "--window", "all", &data(input)]);
        let b = tokentop(&["report", "--window", "all", exported.to_str().unwrap()]);
        assert_eq!(numbers(&a.stdout), numbers(&b.stdout), "{input}");
        let b: Value = serde_json::from_slice(&b.stdout).unwrap();
        assert_eq!(b["ingest"]["parse_errors"], 0, "{input}: the export parses cleanly");
    }
}

#[test]
fn export_of_a_large_native_file_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("events.jsonl");
    // Synthetic traffic through the library's own generator, written as native lines.
    let mut synth = tokentop::synth::Synth::new(11, 1_740_823_200_000_000, 50.0);
    let mut bytes = Vec::new();
    for _ in 0..30_000 {
        tokentop::parse::native::write_line(&synth.next_event(), &mut bytes);
    }
    std::fs::write(&original, &bytes).unwrap();
    let exported = dir.path().join("exported.jsonl");
    assert!(tokentop(&["export", "-o", exported.to_str().unwrap(), original.to_str().unwrap()]).status.success());
    let a = tokentop(&["report", original.to_str().unwrap()]);
    let b = tokentop(&["report", exported.to_str().unwrap()]);
    assert_eq!(numbers(&a.stdout), numbers(&b.stdout));
    assert_eq!(std::fs::read(&exported).unwrap(), bytes, "native events export to themselves");
}

#[test]
fn export_filters_and_time_range() {
    let out = tokentop(&["export", "--filter", "provider:anthropic", &data("litellm.jsonl")]);
    let got = json_lines(&out.stdout);
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|e| e["provider"] == "anthropic"));

    let out = tokentop(&["export", "--filter", "status:error -provider:azure", &data("litellm.jsonl")]);
    let got = json_lines(&out.stdout);
    assert_eq!(got.iter().map(|e| e["request_id"].as_str().unwrap()).collect::<Vec<_>>(), vec!["chatcmpl-2"]);

    let out =
        tokentop(&["export", "--start", "2025-03-01T10:00:02Z", "--end", "1740823206000", &data("litellm.jsonl")]);
    let ids: Vec<String> =
        json_lines(&out.stdout).iter().map(|e| e["request_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, vec!["chatcmpl-2", "chatcmpl-3"], "start inclusive, end exclusive");

    let out = tokentop(&["export", "--filter", "latency>>5", &data("litellm.jsonl")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("latency>>5"));
}

#[test]
fn csv_export_has_a_column_per_field_and_property() {
    let out = tokentop(&["export", "--format", "csv", &data("helicone.jsonl")]);
    assert!(out.status.success());
    let mut rdr = csv::Reader::from_reader(&out.stdout[..]);
    let header: Vec<String> = rdr.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(&header[..3], ["request_id", "created_at", "provider"]);
    assert_eq!(&header[header.len() - 2..], ["prop.App", "prop.country_code"]);
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 5, "the record with an unreadable field is kept");
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    assert_eq!(&rows[0][col("session_name")], "Trip planner");
    assert_eq!(&rows[0][col("prop.country_code")], "DE");
    assert_eq!(&rows[2][col("prop.App")], "mobile");
    assert_eq!(&rows[1][col("cache_hit")], "true");
    assert_eq!(&rows[3][col("latency_ms")], "", "absent values are empty cells");
}

#[test]
fn export_reads_standard_input() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokentop"))
        .args(["export", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&std::fs::read(data("otel.jsonl")).unwrap()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(json_lines(&out.stdout).len(), 4);
}
