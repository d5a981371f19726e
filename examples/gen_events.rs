//! Writes synthetic events as tokentop JSON lines, for benchmarks.
//!
//! cargo run --release --example gen_events -- EVENTS [RATE_PER_SEC] [SEED] [USERS] > events.jsonl
//!
//! Events start at 2025-01-01T00:00:00Z; at the default 300 events/s, one million
//! events span about 56 minutes, so `report`'s default 1 h window holds them all.

use std::io::{BufWriter, Write};

use tokentop::parse::native::write_line;
use tokentop::synth::Synth;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: f64| args.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(default);
    let (events, rate, seed, users) = (arg(0, 1e6) as u64, arg(1, 300.0), arg(2, 1.0) as u64, arg(3, 5000.0) as u64);
    let start = tokentop::time::parse_rfc3339("2025-01-01T00:00:00Z").expect("valid");
    let mut synth = Synth::new(seed, start, rate).with_cardinality(users, users * 4);
    let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let mut line = Vec::with_capacity(1024);
    for _ in 0..events {
        line.clear();
        write_line(&synth.next_event(), &mut line);
        out.write_all(&line)?;
    }
    out.flush()
}
