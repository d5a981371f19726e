//! Writes synthetic events as tokentop JSON lines, for benchmarks.
//!
//! cargo run --release --example gen_events -- EVENTS [RATE_PER_SEC] [SEED] [USERS] [--realistic] > events.jsonl
//!
//! Events start at 2025-01-01T00:00:00Z; at the default 300 events/s, one million
//! events span about 56 minutes, so `report`'s default 1 h window holds them all.
//!
//! `--realistic` writes lines the way gateways log them: the request's `messages`
//! (a system prompt and a user turn, from a few words to a few KB, with escapes and
//! non-ASCII text), the request's parameters with a nested tool schema, the response
//! body, and errors as OpenAI-style objects. tokentop reads none of these but the
//! error object; they are there because real logs make a parser skip them.

use std::io::{BufWriter, Write};

use tokentop::parse::native::write_line;
use tokentop::synth::{Rng, Synth};

fn main() -> std::io::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let realistic = args.iter().any(|a| a == "--realistic");
    args.retain(|a| a != "--realistic");
    let arg = |i: usize, default: f64| args.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(default);
    let (events, rate, seed, users) = (arg(0, 1e6) as u64, arg(1, 300.0), arg(2, 1.0) as u64, arg(3, 5000.0) as u64);
    let start = tokentop::time::parse_rfc3339("2025-01-01T00:00:00Z").expect("valid");
    let mut synth = Synth::new(seed, start, rate).with_cardinality(users, users * 4);
    let mut rng = Rng::new(seed ^ 0x5eed);
    let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let mut line = Vec::with_capacity(1 << 16);
    for _ in 0..events {
        line.clear();
        let mut ev = synth.next_event();
        let error = if realistic { ev.error.take() } else { None };
        write_line(&ev, &mut line);
        if realistic {
            line.truncate(line.len() - 2); // the closing `}` and the newline
            bodies(&mut rng, ev.status, error.as_deref(), &mut line);
            line.extend_from_slice(b"}\n");
        }
        out.write_all(&line)?;
    }
    out.flush()
}

const SYSTEM: &str = r#"You are Acme's assistant.\nRules:\n1. Quote sources as \"[n]\".\n2. Prices in EUR (€)."#;

const USER: [&str; 6] = [
    "Summarize the attached ticket thread and list open action items.",
    "Translate to German: \\\"The invoice is overdue; please pay within 14 days.\\\"",
    "Was kostet ein Upgrade auf den Enterprise-Tarif? Bitte mit Begründung.",
    "Write a SQL query that returns the top 10 customers by revenue in 2024, grouped by region.\\n\\nTables: orders(id, customer_id, total, created_at), customers(id, region)",
    "日本語で要約してください：契約の更新日と解約条件。",
    "Fix this function:\\n```python\\ndef add(a, b):\\n    return a - b\\n```\\nand explain the bug \\ud83d\\ude42",
];

const PARAGRAPH: &str = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor \
    incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco \
    laboris nisi ut aliquip ex ea commodo consequat.\\n";

/// The request and response bodies and, for a failed call, an error object.
fn bodies(rng: &mut Rng, status: u16, error: Option<&str>, out: &mut Vec<u8>) {
    let user = USER[rng.below(USER.len() as u64) as usize];
    // Most prompts are short; a few carry a long document (up to ~3 KB).
    let paragraphs = if rng.chance(0.05) { 1 + rng.below(12) } else { 0 };
    write!(out, r#","messages":[{{"role":"system","content":"{SYSTEM}"}},{{"role":"user","content":"{user}"#).unwrap();
    for _ in 0..paragraphs {
        out.extend_from_slice(PARAGRAPH.as_bytes());
    }
    let (temperature, max_tokens) = (rng.below(11) as f64 / 10.0, 256 << rng.below(4));
    write!(
        out,
        r#""}}],"request":{{"temperature":{temperature:.1},"max_tokens":{max_tokens},"stream":{}"#,
        rng.chance(0.6)
    )
    .unwrap();
    if rng.chance(0.25) {
        out.extend_from_slice(TOOLS.as_bytes());
    }
    out.push(b'}');
    match error {
        None if status < 400 => write!(
            out,
            r#","response":{{"id":"chatcmpl-{:016x}","choices":[{{"index":0,"finish_reason":"stop","message":{{"role":"assistant","content":"Renewal: 2025-03-01.\nNotice: 30 days.","tool_calls":null}}}}],"system_fingerprint":"fp_{:08x}"}}"#,
            rng.next_u64(),
            rng.next_u64() as u32
        )
        .unwrap(),
        _ => {
            let (kind, code) = match status {
                429 => ("rate_limit_error", "rate_limit_exceeded"),
                401 | 403 => ("authentication_error", "invalid_api_key"),
                400..=499 => ("invalid_request_error", "bad_request"),
                _ => ("server_error", "overloaded"),
            };
            let message = error.unwrap_or("request failed");
            write!(out, r#","error":{{"message":"{message}","type":"{kind}","param":null,"code":"{code}"}}"#).unwrap();
        }
    }
}

const TOOLS: &str = r#","tools":[{"type":"function","function":{"name":"lookup_order","parameters":{"type":"object","properties":{"order_id":{"type":"string"},"include":{"type":"array","items":{"enum":["lines","refunds"]}}},"required":["order_id"]}}}]"#;
