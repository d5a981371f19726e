//! Parser throughput for every input format, on the same synthetic traffic.
//!
//! cargo run --release --example format_throughput -- [EVENTS=300000] [FORMAT]
//!
//! Writes the events once per format (Helicone and LiteLLM records as their tools log
//! them, OTLP exports with 10 spans a line, Helicone CSV) into temporary files, then
//! reads each on one thread with a visitor that does nothing, so the figure is the
//! parser's (plus reading from the page cache), in events per second.

use std::io::Write;
use std::time::Instant;

use serde_json::json;
use tokentop::event::Event;
use tokentop::ingest::{self, Input, ReadOptions};
use tokentop::parse::native::write_line;
use tokentop::synth::Synth;
use tokentop::time::format_rfc3339;

fn helicone(e: &Event) -> serde_json::Value {
    let mut props: serde_json::Map<String, serde_json::Value> =
        e.properties.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    props.insert("Helicone-Session-Id".into(), json!(e.session_id));
    props.insert("Helicone-Session-Path".into(), json!(e.session_path));
    json!({
        "request_id": e.request_id, "request_created_at": format_rfc3339(e.created_at),
        "response_created_at": format_rfc3339(e.created_at + (e.latency_ms.unwrap_or(0.0) * 1000.0) as i64),
        "response_status": e.status, "delay_ms": e.latency_ms, "time_to_first_token": e.ttft_ms,
        "request_model": e.model, "provider": e.provider.as_deref().map(str::to_uppercase),
        "request_user_id": e.user_id, "request_properties": props,
        "prompt_tokens": e.prompt_tokens - e.cache_read_tokens, "completion_tokens": e.completion_tokens,
        "prompt_cache_read_tokens": e.cache_read_tokens, "prompt_cache_write_tokens": 0, "cost": e.cost_usd,
        "cache_reference_id": if e.cache_hit { "5b1e0c1e-8b9a-4a43-9f0a-1d2c3b4a5e6f" } else { "00000000-0000-0000-0000-000000000000" },
        "cache_enabled": true, "country_code": "US",
    })
}

fn litellm(e: &Event) -> serde_json::Value {
    let start = e.created_at as f64 / 1e6;
    json!({
        "id": e.request_id, "call_type": "acompletion", "stream": e.ttft_ms.is_some(),
        "status": if e.is_error() { "failure" } else { "success" },
        "startTime": start, "endTime": start + e.latency_ms.unwrap_or(0.0) / 1000.0,
        "completionStartTime": start + e.ttft_ms.unwrap_or(0.0) / 1000.0,
        "model": e.model, "model_group": e.model, "custom_llm_provider": e.provider,
        "prompt_tokens": e.prompt_tokens, "completion_tokens": e.completion_tokens,
        "total_tokens": e.prompt_tokens + e.completion_tokens, "response_cost": e.cost_usd, "cache_hit": e.cache_hit,
        "end_user": e.user_id, "session_id": e.session_id, "request_tags": ["prod"],
        "metadata": {"user_api_key_alias": "svc", "user_api_key_team_alias": "team-a",
            "usage_object": {"prompt_tokens": e.prompt_tokens, "completion_tokens": e.completion_tokens,
                "prompt_tokens_details": {"cached_tokens": e.cache_read_tokens}}},
        "error_information": {"error_code": if e.is_error() { e.status.to_string() } else { String::new() }, "error_message": e.error},
    })
}

fn otel_span(e: &Event) -> serde_json::Value {
    let kv = |k: &str, v: serde_json::Value| json!({"key": k, "value": v});
    let start = e.created_at as i128 * 1000;
    let end = start + (e.latency_ms.unwrap_or(0.0) * 1e6) as i128;
    json!({
        "traceId": "5b8efff798038103d269b633813fc60c", "spanId": e.request_id, "name": "chat", "kind": 3,
        "startTimeUnixNano": start.to_string(), "endTimeUnixNano": end.to_string(),
        "attributes": [
            kv("gen_ai.operation.name", json!({"stringValue": "chat"})),
            kv("gen_ai.provider.name", json!({"stringValue": e.provider})),
            kv("gen_ai.request.model", json!({"stringValue": e.model})),
            kv("gen_ai.usage.input_tokens", json!({"intValue": e.prompt_tokens.to_string()})),
            kv("gen_ai.usage.output_tokens", json!({"intValue": e.completion_tokens.to_string()})),
            kv("gen_ai.usage.cache_read.input_tokens", json!({"intValue": e.cache_read_tokens.to_string()})),
            kv("gen_ai.response.time_to_first_chunk", json!({"doubleValue": e.ttft_ms.unwrap_or(0.0) / 1000.0})),
            kv("gen_ai.conversation.id", json!({"stringValue": e.session_id})),
            kv("user.id", json!({"stringValue": e.user_id})),
            kv("http.response.status_code", json!({"intValue": e.status.to_string()})),
        ],
        "status": {},
    })
}

fn main() -> std::io::Result<()> {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(300_000);
    let mut synth = Synth::new(5, 1_740_823_200_000_000, 300.0);
    let events: Vec<Event<'static>> = (0..n).map(|_| synth.next_event()).collect();
    let dir = std::env::temp_dir().join("tokentop-format-bench");
    std::fs::create_dir_all(&dir)?;

    let mut files = Vec::new();
    let mut write = |name: &str, f: &mut dyn FnMut(&mut Vec<u8>)| -> std::io::Result<()> {
        let mut buf = Vec::new();
        f(&mut buf);
        let path = dir.join(name);
        std::fs::File::create(&path)?.write_all(&buf)?;
        files.push((name.to_string(), path, buf.len()));
        Ok(())
    };
    write("tokentop.jsonl", &mut |b| events.iter().for_each(|e| write_line(e, b)))?;
    write("helicone.jsonl", &mut |b| {
        events.iter().for_each(|e| {
            serde_json::to_writer(&mut *b, &helicone(e)).unwrap();
            b.push(b'\n');
        })
    })?;
    write("litellm.jsonl", &mut |b| {
        events.iter().for_each(|e| {
            serde_json::to_writer(&mut *b, &litellm(e)).unwrap();
            b.push(b'\n');
        })
    })?;
    write("otel.jsonl", &mut |b| {
        for chunk in events.chunks(10) {
            let spans: Vec<_> = chunk.iter().map(otel_span).collect();
            let line = json!({"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]},
                "scopeSpans": [{"scope": {"name": "genai"}, "spans": spans}]}]});
            serde_json::to_writer(&mut *b, &line).unwrap();
            b.push(b'\n');
        }
    })?;
    write("helicone.csv", &mut |b| {
        let mut w = csv::Writer::from_writer(b);
        // The export tool's header: the columns up to `cost`.
        w.write_record(&tokentop::parse::helicone::CSV_COLUMNS[..12]).unwrap();
        for e in &events {
            let props = serde_json::to_string(
                &e.properties
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<std::collections::BTreeMap<_, _>>(),
            )
            .unwrap();
            let s = |v: Option<String>| v.unwrap_or_default();
            w.write_record([
                s(e.request_id.as_deref().map(String::from)),
                String::new(),
                e.status.to_string(),
                format_rfc3339(e.created_at),
                r#"{"messages":[{"role":"user","content":"hello"}]}"#.to_string(),
                props,
                s(e.user_id.as_deref().map(String::from)),
                s(e.model.as_deref().map(String::from)),
                e.prompt_tokens.to_string(),
                e.completion_tokens.to_string(),
                s(e.latency_ms.map(|l| l.to_string())),
                s(e.cost_usd.map(|c| c.to_string())),
            ])
            .unwrap();
        }
        w.flush().unwrap();
    })?;

    // A second argument reads only the formats whose file name starts with it (for
    // instruction counts under callgrind, one format at a time).
    let only = std::env::args().nth(2).unwrap_or_default();
    files.retain(|(name, _, _)| name.starts_with(&only));
    let mut native_rate = 0.0;
    println!("{:<16} {:>10} {:>9} {:>12} {:>8} {:>10}", "format", "events", "MB", "events/s", "MB/s", "vs native");
    for (name, path, bytes) in &files {
        let input = Input::open(path.to_str().unwrap()).expect("open");
        let mut best = f64::MAX;
        let mut events_read = 0;
        // TOKENTOP_READS=0 leaves out reading, so that instruction counts of the rest can be
        // subtracted.
        let reads: usize = std::env::var("TOKENTOP_READS").ok().and_then(|r| r.parse().ok()).unwrap_or(3);
        for _ in 0..reads {
            let t = Instant::now();
            let counts = ingest::read_each(
                std::slice::from_ref(&input),
                ReadOptions { threads: 1, ..Default::default() },
                |_| {},
            )
            .expect("read");
            best = best.min(t.elapsed().as_secs_f64());
            events_read = counts.events;
            assert_eq!(counts.parse_errors, 0, "{name}: parse errors");
        }
        let rate = events_read as f64 / best;
        if name == "tokentop.jsonl" {
            native_rate = rate;
        }
        println!(
            "{name:<16} {events_read:>10} {:>9.1} {:>12.0} {:>8.0} {:>9.0}%",
            *bytes as f64 / 1e6,
            rate,
            *bytes as f64 / 1e6 / best,
            rate * 100.0 / native_rate
        );
    }
    Ok(())
}
