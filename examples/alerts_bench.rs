//! The cost of evaluating alert rules live: the console's ingest path (parse, engine,
//! rules) with and without the example config's nine seed rules.
//!
//! cargo run --release --example alerts_bench -- [HOURS=2] [RATE=1000] [USERS=100000] [on|off]
//!
//! Feeds HOURS of synthetic traffic at RATE events/s as JSON lines (event-time clock,
//! so as fast as the CPU allows; every rule is evaluated at each of its bucket
//! boundaries on the way), then times one rolling evaluation of every rule, as the
//! console does once a second, and prints the peak resident memory.

use std::time::{Duration, Instant};

use tokentop::engine::{Clock, Config};
use tokentop::live::Live;
use tokentop::live::parsing::Parsing;
use tokentop::parse::native::write_line;
use tokentop::pricing::PriceTable;
use tokentop::source::{Feed, Update};
use tokentop::synth::Synth;
use tokentop::time::MICROS_PER_SEC;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, d: f64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let (hours, rate, users) = (num(0, 2.0), num(1, 1000.0), num(2, 100_000.0) as u64);
    let on = args.iter().all(|a| a != "off");
    let (rules, problems) =
        tokentop::alert::parse_rules_str(include_str!("../assets/config.example.toml")).expect("example config");
    assert!(problems.is_empty(), "{problems:?}");
    let n_rules = rules.len();

    let start = 1_735_689_600 * MICROS_PER_SEC;
    let mut synth = Synth::new(7, start, rate).with_cardinality(users, users * 4).with_incidents();
    let engine = Config { clock: Clock::EventTime, recent: 20_000, ..Config::default() };
    let mut live = Live::new(vec!["bench".into()], engine, PriceTable::builtin(), start);
    if on {
        live.watch(rules);
    }
    let events = (hours * 3600.0 * rate) as u64;
    // The console parses on one thread and aggregates on another: each is timed.
    let mut parsing = Parsing::new(1, tokentop::time::Zone::Utc, PriceTable::builtin());
    let (mut parse, mut ingest) = (Duration::ZERO, Duration::ZERO);
    let mut lines = Vec::with_capacity(1 << 20);
    let mut done = 0;
    while done < events {
        lines.clear();
        let batch = 2_000.min(events - done);
        for _ in 0..batch {
            write_line(&synth.next_event(), &mut lines);
        }
        let t = Instant::now();
        let parsed = parsing.lines(0, &lines);
        parse += t.elapsed();
        let t = Instant::now();
        live.feed(Feed { source: 0, update: Update::Parsed(Box::new(parsed)) });
        ingest += t.elapsed();
        done += batch;
    }
    let total = parse + ingest;
    let t = Instant::now();
    let rounds = 20;
    for _ in 0..rounds {
        live.evaluate_alerts();
    }
    let tick = t.elapsed() / rounds;
    println!(
        "{} rules {}: {events} events over {hours} h at {rate}/s: {:.2} µs/event (parse {:.2} on its thread, engine{} {:.2}), {:.0}k events/s on one core",
        n_rules,
        if on { "on" } else { "off" },
        total.as_secs_f64() * 1e6 / events as f64,
        parse.as_secs_f64() * 1e6 / events as f64,
        if on { " + rules" } else { "" },
        ingest.as_secs_f64() * 1e6 / events as f64,
        events as f64 / total.as_secs_f64() / 1e3,
    );
    if let Some(w) = &live.alerts {
        println!(
            "rolling evaluation of every rule (once a second in the console): {:.1} ms; firings in the history: {}",
            tick.as_secs_f64() * 1e3,
            w.evaluator.history.len()
        );
    }
    println!("peak RSS {:.0} MiB", peak_rss_mib());
}
