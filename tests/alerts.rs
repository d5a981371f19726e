//! `tokentop check`: alert rules over a log file, through the real binary.

use std::fmt::Write;
use std::process::{Command, Output};

use serde_json::Value;

mod common;
use common::receiver;

fn check(config: &str, events: &str) -> (Output, Value) {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, log) = (dir.path().join("c.toml"), dir.path().join("e.jsonl"));
    std::fs::write(&cfg, config).unwrap();
    std::fs::write(&log, events).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tokentop"))
        .args(["check", "--config", cfg.to_str().unwrap(), log.to_str().unwrap()])
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, v)
}

const BASE_MS: u64 = 1_740_823_200_000;

/// One request a second for `minutes`; requests to `anthropic` fail in the minutes `bad`.
fn traffic(minutes: u64, bad: std::ops::Range<u64>) -> String {
    let mut s = String::new();
    for sec in 0..minutes * 60 {
        let provider = if sec % 2 == 0 { "openai" } else { "anthropic" };
        let status = if provider == "anthropic" && bad.contains(&(sec / 60)) { 503 } else { 200 };
        writeln!(
            s,
            r#"{{"created_at":{},"provider":"{provider}","model":"m","status":{status},"latency_ms":120,"cost_usd":0.01}}"#,
            BASE_MS + sec * 1000 + 1
        )
        .unwrap();
    }
    s
}

const RULES: &str = r#"
[[alerts]]
name = "errors"
metric = "error_rate"
threshold = 20
window = "1m"
for = "2m"
min_requests = 10

[[alerts]]
name = "slow"
metric = "latency_p95"
threshold = 5000
window = "5m"

[[alerts]]
name = "broken"
metric = "latency_p95"
threshold = "fast"
"#;

#[test]
fn fires_when_the_condition_holds_at_the_end() {
    let (out, v) = check(RULES, &traffic(30, 25..30));
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let firing = v["firing"].as_array().unwrap();
    assert_eq!(firing.len(), 1);
    assert_eq!(firing[0]["rule"], "errors");
    assert_eq!(firing[0]["value"], 50.0);
    assert!(String::from_utf8_lossy(&out.stderr).contains("alert rule `broken`: `threshold` must be a number"));
}

#[test]
fn a_past_incident_is_in_the_history() {
    let (out, v) = check(RULES, &traffic(40, 10..20));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(v["firing"].as_array().unwrap().len(), 0);
    let h = &v["history"][0];
    assert_eq!(h["rule"], "errors");
    // Holds from the boundary of minute 11, fires after `for` (2 minutes), resolves at 21.
    let at = |m: u64| chrono::DateTime::from_timestamp_millis((BASE_MS + m * 60_000) as i64).unwrap();
    let t = |k: &str| chrono::DateTime::parse_from_rfc3339(h[k].as_str().unwrap()).unwrap();
    assert_eq!(t("start"), at(13));
    assert_eq!(t("end"), at(21));
}

#[test]
fn configuration_errors_exit_2() {
    let (out, _) = check("[[alerts]]\nname = \"x\"\nmetric = \"nope\"\nthreshold = 1\n", &traffic(2, 0..0));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no valid alert rule"));
    let (out, _) = check("this is [not toml", &traffic(2, 0..0));
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_tokentop"))
        .args(["check", "--config", "/nonexistent.toml", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_example_rules_run() {
    let example =
        std::fs::read_to_string(format!("{}/assets/config.example.toml", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let (out, v) = check(&example, &traffic(30, 20..30));
    assert!(out.status.code() == Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).is_empty(),
        "every example rule is valid: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rules: Vec<&str> = v["firing"].as_array().unwrap().iter().map(|f| f["rule"].as_str().unwrap()).collect();
    assert!(rules.contains(&"error-rate"), "{rules:?}");
}

fn check_notify(config: &str, env: &[(&str, &str)]) -> (Output, std::time::Duration) {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, log) = (dir.path().join("c.toml"), dir.path().join("e.jsonl"));
    std::fs::write(&cfg, config).unwrap();
    std::fs::write(&log, traffic(30, 25..30)).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokentop"));
    cmd.args(["check", "--notify", "--config", cfg.to_str().unwrap(), log.to_str().unwrap()]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let t = std::time::Instant::now();
    let out = cmd.output().unwrap();
    (out, t.elapsed())
}

const FIRING_RULE: &str = "[[alerts]]\nname = \"errors\"\nmetric = \"error_rate\"\nthreshold = 20\nwindow = \"1m\"\n";

#[test]
fn webhooks_retry_until_delivered_and_are_signed() {
    use hmac::{Hmac, KeyInit, Mac};
    let (url, seen) = receiver(2, false);
    let config = format!(
        "{FIRING_RULE}\n[[webhooks]]\nurl = \"{url}\"\nsecret_env = \"TT_HOOK_SECRET\"\nretries = 3\ntimeout = \"2s\"\n"
    );
    let (out, _) = check_notify(&config, &[("TT_HOOK_SECRET", "s3cret")]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "two failures, then delivered");
    let (head, body) = &seen[2];
    let v: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(
        (v["rule"].as_str(), v["state"].as_str(), v["severity"].as_str()),
        (Some("errors"), Some("firing"), Some("critical"))
    );
    assert_eq!(v["value"], 50.0);
    assert_eq!(v["threshold"], 20.0);
    assert_eq!(v["window"], "1m");
    // The signature, checked independently of tokentop's own code.
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"s3cret").unwrap();
    mac.update(body);
    let want: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert!(head.contains(&format!("x-tokentop-signature: sha256={want}")), "{head}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("s3cret"), "the secret is never printed");
}

#[test]
fn slack_format_and_command_hooks() {
    let (url, seen) = receiver(0, false);
    let dir = tempfile::tempdir().unwrap();
    let hook_out = dir.path().join("hook.json");
    let config = format!(
        "{FIRING_RULE}\n[[webhooks]]\nurl = \"{url}\"\nformat = \"slack\"\n\n[[hooks]]\ncommand = [\"sh\", \"-c\", \"cat > {}\"]\n",
        hook_out.display()
    );
    let (out, _) = check_notify(&config, &[]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&seen.lock().unwrap()[0].1).unwrap();
    assert!(v["text"].as_str().unwrap().contains("CRITICAL errors"), "{v}");
    assert_eq!(v["blocks"][0]["type"], "section");
    let hook: Value = serde_json::from_slice(&std::fs::read(&hook_out).unwrap()).unwrap();
    assert_eq!(hook["rule"], "errors");
}

#[test]
fn a_hanging_endpoint_does_not_hold_anything_up() {
    let (url, seen) = receiver(0, true);
    let config = format!("{FIRING_RULE}\n[[webhooks]]\nurl = \"{url}\"\nretries = 1\ntimeout = \"1s\"\n");
    let (out, took) = check_notify(&config, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(took < std::time::Duration::from_secs(10), "gave up after the timeouts: {took:?}");
    assert_eq!(seen.lock().unwrap().len(), 2, "one try and one retry");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no answer within"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
