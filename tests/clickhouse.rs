//! `tokentop ship` into a real ClickHouse server (Debian's `clickhouse-server`
//! package, 18.16), started by the test on loopback from a temporary directory.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::clickhouse::{ChDb, ClickHouse, a_day_shipped, ship_file};
use common::{Child, append, free_port};

fn tokentop(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tokentop")).args(args).output().unwrap()
}

/// `tokentop ship --create-table` into `table`, spooling in `spool`, with `args` (the
/// batching and the sources); its stderr is kept for [`stop`].
fn ship(ch: &ClickHouse, table: &str, spool: &std::path::Path, args: &[&str]) -> Child {
    Child(
        Command::new(env!("CARGO_BIN_EXE_tokentop"))
            .args(["ship", "--create-table", "--spool", spool.to_str().unwrap(), "--to", &ch.url(table)])
            .args(args)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// Stops a `ship` and gives what it said.
fn stop(mut ship: Child) -> String {
    let _ = ship.0.kill();
    let _ = ship.0.wait();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut ship.0.stderr.take().unwrap(), &mut err).unwrap();
    err
}

#[test]
fn shipped_events_add_up_to_the_report_of_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let ch = ClickHouse::new(dir.path());
    let _server = ch.start();
    // The demo's traffic: errors, cache hits, unpriced models, properties, feedback.
    let file = dir.path().join("gw.jsonl");
    let demo = tokentop(&["demo", "--count", "20000", "--fast"]);
    std::fs::write(&file, &demo.stdout).unwrap();
    let spool = dir.path().join("spool");
    let out = tokentop(&[
        "ship",
        "--no-follow",
        "--create-table",
        "--batch-rows",
        "3000",
        "--spool",
        spool.to_str().unwrap(),
        "--to",
        &ch.url("calls"),
        file.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("shipped 20000 events; 0 bad lines; dropped 0; spool 0.0 MB"), "{err}");

    let report: Value =
        serde_json::from_slice(&tokentop(&["report", "--window", "all", file.to_str().unwrap()]).stdout).unwrap();
    let t = "default.calls FINAL";
    assert_eq!(ch.number(&format!("SELECT count() FROM {t}")), 20000.0);
    assert_eq!(ch.number("SELECT uniqExact(request_id) FROM default.calls"), 20000.0);
    let cost = ch.number(&format!("SELECT sum(cost_usd) FROM {t}"));
    let want = report["cost"]["total"].as_f64().unwrap();
    assert!((cost - want).abs() < 1e-6, "{cost} vs {want}");
    assert_eq!(
        ch.number(&format!("SELECT countIf(cost_usd IS NULL) FROM {t}")),
        report["cost"]["unpriced_requests"].as_f64().unwrap()
    );
    for kind in ["prompt_tokens", "completion_tokens", "cache_read_tokens", "reasoning_tokens"] {
        assert_eq!(
            ch.number(&format!("SELECT sum({kind}) FROM {t}")),
            report["tokens"][kind].as_f64().unwrap(),
            "{kind}"
        );
    }
    assert_eq!(
        ch.number(&format!("SELECT countIf(status >= 400 OR status = 0) FROM {t}")),
        report["errors"]["errors"]["total"].as_f64().unwrap()
    );
    assert_eq!(
        ch.number(&format!("SELECT uniqExact(user_id) FROM {t} WHERE user_id != ''")),
        report["summary"]["active_users"].as_f64().unwrap()
    );
    // Properties as two arrays: the requests of one feature.
    let search = &report["by_property"]["Feature"]["search"];
    assert_eq!(
        ch.number(&format!(
            "SELECT count() FROM {t} WHERE property_values[indexOf(property_keys, 'Feature')] = 'search'"
        )),
        search["requests"].as_f64().unwrap()
    );

    // `report clickhouse://` computes the same report in ClickHouse: every number
    // equal (percentiles too: the server fills the same histogram buckets), for the
    // whole table, a window holding it all, and a window cutting it. Only the count
    // of lines read is the file's own.
    for window in ["all", "15m", "1m"] {
        reports_alike(window, &ch.url("calls"), &file);
    }
    let cut: Value = serde_json::from_slice(&tokentop(&["report", "--window", "1m", &ch.url("calls")]).stdout).unwrap();
    assert!(cut["ingest"]["outside_window"].as_u64().unwrap() > 10_000, "the 1m window cuts: {}", cut["ingest"]);
    let customers = cut["by_property"]["Customer"].as_object().unwrap();
    assert!(customers.contains_key("(other)"), "top 20 customers and the rest folded");
    assert!(customers["(other)"]["latency"]["p95"].is_f64(), "percentiles of the folded rest are known");
}

/// `report --window WINDOW` of a table equals that of a file: every number, but the
/// count of lines read (the file's own). Returns the table's report.
fn reports_alike(window: &str, url: &str, file: &std::path::Path) -> Value {
    let local: Value =
        serde_json::from_slice(&tokentop(&["report", "--window", window, file.to_str().unwrap()]).stdout).unwrap();
    let out = tokentop(&["report", "--window", window, url]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut stored: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stored["ingest"]["lines"], 0);
    stored["ingest"]["lines"] = local["ingest"]["lines"].clone();
    assert_same(&stored, &local, &format!("--window {window}"));
    stored
}

/// Two reports equal: integers exactly, fractions to 1e-9 relative (the same sums
/// divided in another order), every key on both sides.
fn assert_same(a: &Value, b: &Value, path: &str) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let (kx, ky): (Vec<_>, Vec<_>) = (x.keys().collect(), y.keys().collect());
            assert_eq!(kx, ky, "{path}: keys");
            for (k, v) in x {
                assert_same(v, &y[k], &format!("{path}/{k}"));
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{path}: length");
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                assert_same(u, v, &format!("{path}[{i}]"));
            }
        }
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!((x - y).abs() <= 1e-9 * y.abs().max(1.0), "{path}: {x} vs {y}");
        }
        _ => assert_eq!(a, b, "{path}"),
    }
}

/// Filters and drill-downs become SQL: each keeps in ClickHouse the rows `export
/// --filter` keeps from the file.
#[test]
fn filters_keep_in_sql_what_they_keep_in_files() {
    let dir = tempfile::tempdir().unwrap();
    let ch = ClickHouse::new(dir.path());
    let _server = ch.start();
    let file = dir.path().join("gw.jsonl");
    std::fs::write(&file, tokentop(&["demo", "--count", "5000", "--fast"]).stdout).unwrap();
    let spool = dir.path().join("spool");
    ship_file(&ch.url("calls"), &file, &spool);
    let store = tokentop::clickhouse::TOKENTOP;
    let mut nonzero = 0;
    for f in [
        "model:gpt-4o*",
        "model:GPT-4O-MINI provider:openai",
        "-model:claude* -provider:anthropic",
        "status:429",
        "status:5xx status:429",
        "status:error",
        "-status:ok",
        "cache:hit",
        "-cache:miss",
        "latency>2000",
        "latency>=1.5s ttft<300",
        "-ttft>0",
        "cost>0.001",
        "tokens<=500",
        "user:u-1*",
        "session:*",
        "-session:*",
        "prop.Feature=search",
        "prop.Feature:chat* prop.Feature=search",
        "-prop.Environment=production",
        "error:*",
        "error:*rate*",
    ] {
        let filter: tokentop::filter::Filter = f.parse().unwrap();
        let sql = tokentop::clickhouse::filter_sql(&store, &filter);
        let stored = ch.number(&format!("SELECT count() FROM default.calls FINAL WHERE {sql}"));
        let exported = tokentop(&["export", &format!("--filter={f}"), file.to_str().unwrap()]);
        assert!(exported.status.success(), "{f}: {}", String::from_utf8_lossy(&exported.stderr));
        let kept = exported.stdout.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count();
        assert_eq!(stored, kept as f64, "{f}: SQL {sql}");
        nonzero += usize::from(kept > 0 && kept < 5000);
    }
    assert!(nonzero >= 15, "most filters keep some rows and drop others: {nonzero}");
}

/// ClickHouse files latencies in the histogram buckets tokentop does.
#[test]
fn clickhouse_computes_the_histogram_buckets_of_tokentop() {
    let dir = tempfile::tempdir().unwrap();
    let ch = ClickHouse::new(dir.path());
    let _server = ch.start();
    let mut values: Vec<u64> = (0..3000).collect();
    for e in 7..41 {
        let p = 1u64 << e;
        values.extend([p - 1, p, p + 1, p + p / 3, p + p / 64, p + p / 64 - 1]);
    }
    let list: Vec<String> = values.iter().map(u64::to_string).collect();
    let sql = format!(
        "SELECT us, {} FROM (SELECT arrayJoin([{}]) AS us) ORDER BY us",
        tokentop::clickhouse::bucket_sql("us"),
        list.join(",")
    );
    let answer = ch.query(&sql).unwrap();
    let mut checked = 0;
    for line in answer.lines() {
        let (us, idx) = line.split_once('\t').unwrap();
        let us: u64 = us.parse().unwrap();
        assert_eq!(idx.parse::<usize>().unwrap(), tokentop::stats::hist::bucket_index(us), "{us} µs");
        checked += 1;
    }
    assert_eq!(checked, values.len());
}

#[test]
fn a_clickhouse_restart_during_ship_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ch = ClickHouse::new(dir.path());
    let server = ch.start();
    let demo = tokentop(&["demo", "--count", "6000", "--fast"]);
    let lines: Vec<&str> = std::str::from_utf8(&demo.stdout).unwrap().lines().collect();
    let file = dir.path().join("gw.jsonl");
    append(&file, "");
    let spool = dir.path().join("spool");
    let ship =
        ship(&ch, "calls", &spool, &["--batch-interval", "200ms", "--batch-rows", "500", file.to_str().unwrap()]);
    let count = |q: &str| ch.query(q).and_then(|a| a.parse::<u64>().ok());
    let wait_for = |n: u64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while count("SELECT uniqExact(request_id) FROM default.calls") != Some(n) {
            assert!(Instant::now() < deadline, "ClickHouse never held {n} calls");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    std::thread::sleep(Duration::from_millis(500));
    append(&file, &(lines[..2000].join("\n") + "\n"));
    wait_for(2000);

    // ClickHouse dies (no shutdown) while events keep coming, some while an insert
    // may be under way; they wait in the spool.
    append(&file, &(lines[2000..3000].join("\n") + "\n"));
    drop(server);
    append(&file, &(lines[3000..6000].join("\n") + "\n"));
    std::thread::sleep(Duration::from_secs(2));
    let spooled = std::fs::read_dir(&spool).unwrap().count();
    assert!(spooled > 0, "batches wait on disk while ClickHouse is down");

    let _server = ch.start();
    wait_for(6000);
    assert_eq!(count("SELECT count() FROM default.calls FINAL"), Some(6000));
    let ids: std::collections::BTreeSet<String> = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["request_id"].as_str().unwrap().to_string())
        .collect();
    let stored = ch.query("SELECT DISTINCT request_id FROM default.calls ORDER BY request_id").unwrap();
    assert_eq!(stored.lines().map(str::to_string).collect::<std::collections::BTreeSet<_>>(), ids);
    // The spool empties once ClickHouse is back.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&spool).unwrap().count() > 0 {
        assert!(Instant::now() < deadline, "the spool did not empty");
        std::thread::sleep(Duration::from_millis(100));
    }
    // While it runs, ship fills the rollup of what it shipped once all is in: every
    // minute as inserted (a batch delivered twice counts twice there), each call
    // once in the rollup.
    let deadline = Instant::now() + Duration::from_secs(30);
    let seen = "SELECT sum(r) FROM (SELECT argMax(rows, version) AS r FROM default.calls_rollup_seen \
                WHERE width = 60 GROUP BY minute)";
    let inserted = count("SELECT sum(rows) FROM default.calls_inserts").unwrap();
    assert!(inserted >= 6000, "{inserted} rows inserted");
    while count(seen) != Some(inserted) {
        assert!(Instant::now() < deadline, "the rollup was not filled");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(count("SELECT sum(requests) FROM default.calls_minutes FINAL"), Some(6000));
    let err = stop(ship);
    // A report from ClickHouse counts each call once, whatever was delivered twice.
    let report: Value =
        serde_json::from_slice(&tokentop(&["report", "--window", "all", &ch.url("calls")]).stdout).unwrap();
    assert_eq!(report["summary"]["total_requests"], 6000);
    assert!(err.contains("insert failed, retrying with backoff: cannot reach ClickHouse"), "{err}");
    assert!(err.contains("ClickHouse takes inserts again"), "{err}");
}

#[test]
fn a_full_spool_drops_and_says_how_many() {
    let dir = tempfile::tempdir().unwrap();
    let ch = ClickHouse::new(dir.path());
    let server = ch.start();
    let demo = tokentop(&["demo", "--count", "300", "--fast"]);
    let file = dir.path().join("gw.jsonl");
    append(&file, "");
    let spool = dir.path().join("spool");
    let ship =
        ship(&ch, "calls", &spool, &["--batch-interval", "100ms", "--spool-max", "1KiB", file.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(500));
    drop(server);
    append(&file, std::str::from_utf8(&demo.stdout).unwrap());
    std::thread::sleep(Duration::from_secs(2));
    let err = stop(ship);
    let dropped: u64 = err
        .lines()
        .filter_map(|l| {
            l.strip_prefix("tokentop: the spool is full: dropped ")?.strip_suffix(" events (raise --spool-max)")
        })
        .map(|n| n.parse::<u64>().unwrap())
        .sum();
    assert_eq!(dropped, 300, "{err}");
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0, "nothing over the bound is written");
}

#[test]
fn spans_received_over_otlp_are_shipped() {
    let dir = tempfile::tempdir().unwrap();
    let ch = ClickHouse::new(dir.path());
    let _server = ch.start();
    let otlp = format!("127.0.0.1:{}", free_port());
    let spool = dir.path().join("spool");
    let _ship = ship(&ch, "spans", &spool, &["--batch-interval", "200ms", "--otlp", &otlp]);
    std::thread::sleep(Duration::from_millis(500));
    // The OpenTelemetry SDK's spans (tests/otlp.rs reads the same ones through a relay):
    // three calls; a health check and a framework's wrapper span are not calls.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/otlp_send.py");
    let out = Command::new(common::python()).arg(script).arg(format!("http://{otlp}")).arg("http").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sent: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id =
        |kind: &str| sent["spans"].as_array().unwrap().iter().find(|s| s["kind"] == kind).unwrap()["span_id"].clone();
    // Spans wait 6 s for the rest of their trace before they are events.
    let deadline = Instant::now() + Duration::from_secs(30);
    while ch.query("SELECT count() FROM default.spans").as_deref() != Some("3") {
        assert!(Instant::now() < deadline, "the three calls never arrived");
        std::thread::sleep(Duration::from_millis(200));
    }
    let rows = ch
        .query("SELECT request_id, model, status, prompt_tokens, latency_ms, property_values[indexOf(property_keys, 'service')] FROM default.spans ORDER BY created_at")
        .unwrap();
    let want = [
        format!("{}\tgpt-4o-2024-08-06\t200\t1200\t1250\tcheckout", id("chat").as_str().unwrap()),
        format!("{}\tclaude-sonnet-4-5\t429\t0\t80\tcheckout", id("error").as_str().unwrap()),
        format!("{}\tgpt-4o-mini\t200\t80\t500\tcheckout", id("inner").as_str().unwrap()),
    ];
    assert_eq!(rows.lines().collect::<Vec<_>>(), want);
}

/// Current ClickHouse (26.x, chDB): `ship` creates and fills tokentop's table there
/// too, and the report read back is the file's.
#[test]
fn shipped_events_report_alike_on_current_clickhouse() {
    let dir = tempfile::tempdir().unwrap();
    let chdb = ChDb::start(&dir.path().join("chdb"));
    let file = dir.path().join("gw.jsonl");
    // Nine hours of calls: the rollup's minutes and slots are read too.
    std::fs::write(&file, tokentop(&["demo", "--count", "5000", "--fast", "--rate", "0.15"]).stdout).unwrap();
    let spool = dir.path().join("spool");
    let url = chdb.url("calls");
    ship_file(&url, &file, &spool);
    assert!(chdb.run("SELECT version()").starts_with("26."), "chDB is current ClickHouse");
    assert_eq!(chdb.run("SELECT count() FROM default.calls FINAL"), "5000");
    assert_eq!(chdb.run("SELECT sum(rows) FROM default.calls_rollup_seen WHERE width = 60"), "5000");
    assert_eq!(chdb.run("SELECT sum(requests) FROM default.calls_slots FINAL"), "5000");
    for window in ["all", "1m", "3h", "24h"] {
        reports_alike(window, &url, &file);
    }
}

/// A self-hosted Helicone's own table (`request_response_rmt`, its columns and types:
/// `Map` properties, `DateTime64`, cost in USD x 10^9, `cache_reference_id`), read
/// with `?schema=helicone`, reports what Helicone's export of the same requests does.
#[test]
fn helicones_table_reports_what_its_export_reports() {
    let dir = tempfile::tempdir().unwrap();
    let chdb = ChDb::start(&dir.path().join("chdb"));
    chdb.run(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/helicone_rmt.sql")).unwrap());
    let (rows, export) = (dir.path().join("rows.jsonl"), dir.path().join("export.jsonl"));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let made = Command::new(common::python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/helicone_rows.py"))
        .args(["3000", &now.to_string(), rows.to_str().unwrap(), export.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    // Calls without a cost stay NULL (not the column's default 0): unpriced.
    chdb.run("SET input_format_null_as_default = 0");
    chdb.insert("INSERT INTO default.request_response_rmt FORMAT JSONEachRow", &std::fs::read(&rows).unwrap());
    assert_eq!(chdb.run("SELECT count() FROM default.request_response_rmt"), "3000");

    let url = format!("clickhouse://127.0.0.1:{}/default?table=request_response_rmt&schema=helicone", chdb.port);
    for window in ["all", "1h"] {
        reports_alike(window, &url, &export);
    }
    let r = reports_alike("all", &url, &export);
    // What a person reading the rows would count, so the comparison is not vacuous.
    let n = |q: &str| chdb.run(q).parse::<f64>().unwrap();
    let zero = "toUUID('00000000-0000-0000-0000-000000000000')";
    assert_eq!(
        r["cache"]["cache_hits"].as_f64().unwrap(),
        n(&format!("SELECT countIf(cache_reference_id != {zero}) FROM default.request_response_rmt"))
    );
    assert!(r["cache"]["cache_hits"].as_u64().unwrap() > 100);
    assert_eq!(
        r["cost"]["unpriced_requests"].as_f64().unwrap(),
        n("SELECT countIf(cost IS NULL) FROM default.request_response_rmt")
    );
    let billed =
        n(&format!("SELECT sum(cost) / 1e9 FROM default.request_response_rmt WHERE cache_reference_id = {zero}"));
    assert!((r["cost"]["total"].as_f64().unwrap() - billed).abs() < 1e-6, "{} vs {billed}", r["cost"]["total"]);
    assert_eq!(
        r["errors"]["errors"]["status_0"].as_f64().unwrap(),
        n("SELECT countIf(status = -1) FROM default.request_response_rmt")
    );
    assert!(r["by_provider"]["openai"]["requests"].as_u64().unwrap() > 0, "providers as tokentop names them");
    assert!(r["by_property"]["country_code"]["DE"]["requests"].as_u64().unwrap() > 0);
    assert!(r["by_property"].get("Helicone-Session-Id").is_none(), "the session keys are the session");
    assert!(r["sessions"]["total_sessions"].as_u64().unwrap() > 30);
}

/// `check clickhouse://` evaluates alert rules from aggregates ClickHouse computes per
/// step, and finds what `check` finds in the shipped file: the same alerts firing and
/// the same history, for thresholds, a baseline, a z-score, groups (provider, model,
/// user, a property), a filter, a "below" rule, and TTFT and users metrics.
#[test]
fn check_on_a_table_fires_what_check_on_its_file_fires() {
    let dir = tempfile::tempdir().unwrap();
    // 12,000 calls over 22 hours, with the demo's incidents every ten minutes.
    let (ch, _server, file) = a_day_shipped(dir.path());
    let rules = dir.path().join("rules.toml");
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/demo-alerts.toml")).unwrap();
    std::fs::write(
        &rules,
        demo + r#"
[[alerts]]
name = "cost-doubled"
metric = "total_cost"
op = ">"
threshold = 1.3
baseline = "previous"
window = "1h"

[[alerts]]
name = "traffic-z"
metric = "request_count"
op = ">"
threshold = 1.5
zscore = 4
window = "30m"

[[alerts]]
name = "feature-slow"
metric = "latency_p95"
op = ">"
threshold = 4000
window = "1h"
group_by = "property:Feature"
filter = "status:ok"

[[alerts]]
name = "few-users"
metric = "active_users"
op = "<"
threshold = 40
window = "1h"

[[alerts]]
name = "slow-first-token"
metric = "ttft_p95"
op = ">"
threshold = 700
window = "2h"
group_by = "provider"
"#,
    )
    .unwrap();
    let check = |input: &str| {
        let out = tokentop(&["check", "--config", rules.to_str().unwrap(), input]);
        assert!(matches!(out.status.code(), Some(0 | 1)), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    // Changes at the same step come in the order groups are kept in: sorted, as sets.
    let sorted = |mut v: Value| {
        for list in ["firing", "history"] {
            v[list].as_array_mut().unwrap().sort_by_key(|x| x.to_string());
        }
        v
    };
    let local = sorted(check(file.to_str().unwrap()));
    let stored = sorted(check(&ch.url("calls")));
    assert_same(&stored, &local, "check");
    let history = local["history"].as_array().unwrap();
    let fired: std::collections::BTreeSet<&str> = history.iter().filter_map(|h| h["rule"].as_str()).collect();
    assert!(fired.len() >= 4, "several kinds of rule fire over the day: {fired:?}");
}

/// `ship` keeps a rollup of the table (per minute and per 15 minutes, model,
/// provider and status), and readers take from it the minutes whose rows are as it
/// saw them, from the rows the rest: a day's report from the rollup is the file's
/// report; a minute whose rows changed since is read from the rows until
/// `ship --fill-rollup` (or the next ship touching it) fills it again.
#[test]
fn a_days_rollup_reports_what_its_rows_report() {
    let dir = tempfile::tempdir().unwrap();
    // 12,000 calls over 22 hours: about nine a minute.
    let (ch, _server, file) = a_day_shipped(dir.path());
    let url = ch.url("calls");
    let rows_only = format!("{url}&rollup=0");

    // Every minute shipped is in the rollup, seen with the rows it has.
    let minutes = ch.number("SELECT uniqExact(intDiv(toUInt32(created_at), 60)) FROM default.calls");
    assert!(minutes > 1000.0, "{minutes} minutes");
    assert_eq!(ch.number("SELECT count() FROM default.calls_rollup_seen WHERE width = 60"), minutes);
    assert_eq!(ch.number("SELECT sum(rows) FROM default.calls_rollup_seen WHERE width = 60"), 12000.0);
    assert_eq!(ch.number("SELECT sum(requests) FROM default.calls_minutes FINAL"), 12000.0);
    assert_eq!(ch.number("SELECT sum(requests) FROM default.calls_slots FINAL"), 12000.0);

    // A day (15-minute buckets: slots, and minutes at its edges), 3 hours
    // (5-minute buckets: minutes) and the whole table report what the file does.
    let day = reports_alike("24h", &url, &file);
    let hours = reports_alike("3h", &url, &file);
    reports_alike("all", &url, &file);
    assert_same(&stored_report("24h", &url), &stored_report("24h", &rows_only), "24h from the rows only");

    // What is read is the rollup: a row repeated in one minute and one slot (at the
    // version their counts were checked against) shows in the reports.
    let (m, version) = {
        let a = ch
            .query(
                "SELECT toUInt32(minute), version FROM default.calls_minutes ORDER BY minute DESC LIMIT 1 OFFSET 600",
            )
            .unwrap();
        let (m, v) = a.split_once('\t').unwrap();
        (m.parse::<u64>().unwrap(), v.to_string())
    };
    let slot = m - m % 900;
    let repeat = |table: &str, at: u64| {
        let n = ch.number(&format!(
            "SELECT requests FROM default.{table} WHERE minute = toDateTime({at}) AND version = (SELECT max(version) FROM default.{table} WHERE minute = toDateTime({at})) ORDER BY requests DESC LIMIT 1"
        ));
        // Without its latency and TTFT (which the slot's own histograms would lack).
        let columns: Vec<String> = ch
            .query(&format!("SELECT name FROM system.columns WHERE database = 'default' AND table = '{table}'"))
            .unwrap()
            .lines()
            .map(|c| match c {
                _ if c.ends_with("_buckets") => "emptyArrayUInt16()".to_string(),
                _ if c.ends_with("_counts") => "emptyArrayUInt64()".to_string(),
                _ if c.starts_with("latency_") || c.starts_with("ttft_") => "toUInt64(0)".to_string(),
                _ => c.to_string(),
            })
            .collect();
        ch.query(&format!(
            "INSERT INTO default.{table} SELECT {} FROM default.{table} WHERE minute = toDateTime({at}) AND version = (SELECT max(version) FROM default.{table} WHERE minute = toDateTime({at})) ORDER BY requests DESC LIMIT 1",
            columns.join(", ")
        ))
        .unwrap();
        n
    };
    assert!(!version.is_empty());
    let in_minute = repeat("calls_minutes", m);
    let in_slot = repeat("calls_slots", slot);
    let requests = |r: &Value| r["summary"]["total_requests"].as_f64().unwrap();
    assert_eq!(requests(&stored_report("3h", &url)), requests(&hours) + in_minute, "the minute's rollup is read");
    assert_eq!(requests(&stored_report("24h", &url)), requests(&day) + in_slot, "the slot's rollup is read");
    // A slot whose counters count latencies its own histograms lack is not read
    // into wrong percentiles: the report says what to run.
    ch.query(&format!(
        "INSERT INTO default.calls_slots SELECT * FROM default.calls_slots WHERE minute = toDateTime({slot}) \
         AND version = (SELECT max(version) FROM default.calls_slots WHERE minute = toDateTime({slot})) \
         AND latency_count > 0 LIMIT 1"
    ))
    .unwrap();
    let out = tokentop(&["report", "--window", "24h", &url]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("run tokentop ship --fill-rollup"), "{err}");

    // A call that comes late into that minute: the minute (and its slot) are read
    // from the rows, so the reports count it, and are those of the rows.
    let columns: Vec<String> = ch
        .query("SELECT name FROM system.columns WHERE database = 'default' AND table = 'calls'")
        .unwrap()
        .lines()
        .map(|c| if c == "request_id" { "concat(request_id, '-late')".to_string() } else { c.to_string() })
        .collect();
    ch.query(&format!(
        "INSERT INTO default.calls SELECT {} FROM default.calls WHERE intDiv(toUInt32(created_at), 60) = {} LIMIT 1",
        columns.join(", "),
        m / 60
    ))
    .unwrap();
    for window in ["3h", "24h"] {
        let read = stored_report(window, &url);
        assert_same(&read, &stored_report(window, &rows_only), &format!("{window} with a late call"));
        let before = if window == "3h" { &hours } else { &day };
        assert_eq!(requests(&read), requests(before) + 1.0, "{window}: the late call counts");
    }
    // Filled again, the minute and its slot are read from the rollup again, and
    // the repeated rows (of an older version) are not.
    let out = tokentop(&["ship", "--fill-rollup", "--to", &url]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("filled the rollup of 1 minutes"), "{out:?}");
    assert_eq!(
        ch.number(&format!(
            "SELECT argMax(rows, version) FROM default.calls_rollup_seen WHERE width = 60 AND minute = toDateTime({m})"
        )),
        ch.number(&format!("SELECT count() FROM default.calls WHERE intDiv(toUInt32(created_at), 60) = {}", m / 60))
    );
    for window in ["3h", "24h"] {
        assert_same(
            &stored_report(window, &url),
            &stored_report(window, &rows_only),
            &format!("{window} filled again"),
        );
    }

    // The inserts view counts what a table held before it (a table shipped by an
    // older tokentop): created again, it counts every row, so no minute looks changed.
    ch.query("DROP TABLE default.calls_inserts").unwrap();
    assert_same(&stored_report("24h", &url), &stored_report("24h", &rows_only), "24h without the view");
    let out = tokentop(&["ship", "--create-table", "--fill-rollup", "--to", &url]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("filled the rollup of 0 minutes"), "{out:?}");
    assert_eq!(ch.number("SELECT sum(rows) FROM default.calls_inserts"), 12001.0);
    assert_same(&stored_report("24h", &url), &stored_report("24h", &rows_only), "24h with the view again");
}

/// `report --window WINDOW` of a table.
fn stored_report(window: &str, url: &str) -> Value {
    let out = tokentop(&["report", "--window", window, url]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What the console asks of a table with a rollup — the Overview (counters and the
/// slots' own histograms), the Models view (each group's percentiles), a drill-down
/// into a model, a provider or a status class — is what the same asks read from
/// the rows alone: every counter, the window's and each group's percentiles, and
/// each point of the series.
#[test]
fn the_consoles_asks_from_the_rollup_are_the_rows_answers() {
    use tokentop::clickhouse::{Parts, Store, ViewAsk, layout_named};
    use tokentop::ship::Target;
    use tokentop::stats::{Agg, Dist};

    let dir = tempfile::tempdir().unwrap();
    let (ch, _server, _) = a_day_shipped(dir.path());
    let url = ch.url("calls");
    let store = |url: &str| {
        let target = Target::parse(url, None, None).unwrap();
        Store::new(target, layout_named(None).unwrap()).unwrap()
    };
    let (rolled, rows) = (store(&url), store(&format!("{url}&rollup=0")));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let last = rt.block_on(rolled.extent()).unwrap().last;

    let dist = |d: &Dist| {
        let p = |q| d.percentile(q);
        format!("{:?} n={} p50={:?} p95={:?} p99={:?}", d.moments, d.count(), p(50.0), p(95.0), p(99.0))
    };
    // Percentiles of groups only when they are asked for (and then exact).
    let agg = |a: &Agg, latency: bool| {
        let mut s = format!(
            "{} ok={} err={} 4xx={} 5xx={} 429={} s0={} cost={:?} saved={:?} unpriced={} tokens={}/{}/{}/{}/{} \
             hits={} retries={} fb={}/{} ttft={:?} lat={:?}",
            a.requests,
            a.ok,
            a.errors,
            a.e4xx,
            a.e5xx,
            a.e429,
            a.status0,
            a.cost,
            a.cost_saved,
            a.unpriced,
            a.prompt_tokens,
            a.completion_tokens,
            a.cache_read_tokens,
            a.cache_write_tokens,
            a.reasoning_tokens,
            a.cache_hits,
            a.retries,
            a.feedback_rated,
            a.feedback_positive,
            a.ttft,
            a.latency.moments
        );
        if latency {
            s += &format!(" {}", dist(&a.latency));
        }
        s
    };
    let filters: [Option<&str>; 4] =
        [None, Some("model:gpt-4o-mini"), Some("provider:anthropic"), Some("status:error")];
    let mut compared = 0;
    for hours in [24, 3] {
        for filter in filters {
            for group_latency in [false, true] {
                let ask = ViewAsk {
                    window: hours * 3_600_000_000,
                    filter: filter.map(|f| f.parse().unwrap()),
                    list: false,
                    parts: Parts { properties: false, people: false, group_latency },
                };
                let what = format!("{hours}h, {filter:?}, group percentiles {group_latency}");
                let (a, b) =
                    (rt.block_on(rolled.view(&ask, last)).unwrap(), rt.block_on(rows.view(&ask, last)).unwrap());
                let (a, b) = (&a.window, &b.window);
                assert!(a.rolled > 100, "{what}: {} minutes from the rollup", a.rolled);
                assert_eq!(b.rolled, 0, "{what}");
                assert!(a.stats.total.requests > 20, "{what}: {} requests", a.stats.total.requests);
                assert_eq!(agg(&a.stats.total, true), agg(&b.stats.total, true), "{what}: total");
                assert_eq!(dist(&a.stats.ttft), dist(&b.stats.ttft), "{what}: TTFT");
                assert_eq!(a.stats.by_status, b.stats.by_status, "{what}: statuses");
                for (mine, theirs, kind) in [
                    (&a.stats.by_model, &b.stats.by_model, "model"),
                    (&a.stats.by_provider, &b.stats.by_provider, "provider"),
                ] {
                    let list = |g: &tokentop::stats::Capped<Agg>| -> Vec<String> {
                        let mut v: Vec<String> =
                            g.iter().map(|(k, x)| format!("{k}: {}", agg(x, group_latency))).collect();
                        v.sort();
                        v
                    };
                    assert_eq!(list(mine), list(theirs), "{what}: each {kind}");
                }
                let points = |s: &tokentop::stats::series::Series| -> Vec<String> {
                    s.points(last - hours * 3_600_000_000, last)
                        .iter()
                        .map(|(t, p)| {
                            format!(
                                "{t} {} err={}/{}/{}/{} hits={} cost={:?} tokens={} lat {} ttft {}",
                                p.requests,
                                p.errors,
                                p.e4xx,
                                p.e5xx,
                                p.e429,
                                p.cache_hits,
                                p.cost,
                                p.tokens,
                                dist(&p.latency),
                                dist(&p.ttft)
                            )
                        })
                        .collect()
                };
                assert_eq!(points(&a.series), points(&b.series), "{what}: series");
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 16);
}
