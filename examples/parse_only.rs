//! The parse alone: a file read and parsed on N threads with a visitor that only counts
//! events, so the figure is reading plus parsing, without aggregation (the "pure parse"
//! beside `report`'s whole figure).
//!
//! cargo run --release --example parse_only -- FILE [THREADS=1] [RUNS=3]

use std::time::Instant;

use tokentop::ingest::{self, Input, ReadOptions};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        anyhow::bail!("usage: parse_only FILE [THREADS=1] [RUNS=3]");
    };
    let threads = args.get(1).map_or(Ok(1), |s| s.parse())?;
    let runs = args.get(2).map_or(Ok(3), |s| s.parse())?;
    let input = Input::open(path)?;
    for _ in 0..runs {
        let opts = ReadOptions { threads, ..ReadOptions::default() };
        let started = Instant::now();
        let (counted, counts) = ingest::read_all(std::slice::from_ref(&input), opts, || 0u64, |n, _| *n += 1)?;
        let secs = started.elapsed().as_secs_f64();
        let events: u64 = counted.iter().sum();
        assert_eq!(events, counts.events, "every parsed event reaches the visitor");
        println!(
            "{events} events ({} lines, {} parse errors) in {secs:.3} s on {threads} thread(s): {:.0} events/s",
            counts.lines,
            counts.parse_errors,
            events as f64 / secs
        );
    }
    Ok(())
}
