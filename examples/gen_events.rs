//! Writes synthetic events as tokentop JSON lines, for benchmarks.
//!
//! cargo run --release --example gen_events -- EVENTS [RATE_PER_SEC] [SEED] [USERS] [--realistic] > events.jsonl
//!
//! Events start at 2025-01-01T00:00:00Z; at the default 300 events/s, one million
//! events span about 56 minutes, so `report`'s default 1 h window holds them all.
//!
//! `--realistic` writes lines the way gateways log them (see
//! [`tokentop::synth::write_logged_line`]): with prompts, tool schemas, responses and
//! error objects, about 1.1 KB a line.

use std::io::{BufWriter, Write};

use tokentop::parse::native::write_line;
use tokentop::synth::{Rng, Synth, write_logged_line};

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
        let ev = synth.next_event();
        if realistic {
            write_logged_line(ev, &mut rng, &mut line);
        } else {
            write_line(&ev, &mut line);
        }
        out.write_all(&line)?;
    }
    out.flush()
}
