//! Memory benchmark for the live engine: a full window of traffic at a steady rate.
//!
//! cargo run --release --example engine_memory -- [HOURS=24] [RATE=1000] [MODELS=50] [USERS=100000]
//!
//! Feeds HOURS of synthetic events at RATE per second (event-time clock, so it runs as
//! fast as the CPU allows), then prints the peak resident memory, the ingest rate and
//! the time to build the report of the longest window kept up to 24 h.

use std::time::Instant;

use tokentop::engine::{Clock, Config, DEFAULT_WINDOWS, Engine};
use tokentop::pricing::PriceTable;
use tokentop::report::{IngestReport, Options};
use tokentop::synth::Synth;
use tokentop::time::MICROS_PER_SEC;

/// Counts live heap bytes, to tell memory in use from allocator fragmentation.
struct Counting;

static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        LIVE.fetch_sub(l.size(), std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live_mib() -> f64 {
    LIVE.load(std::sync::atomic::Ordering::Relaxed) as f64 / (1 << 20) as f64
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args: Vec<f64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let arg = |i: usize, d: f64| args.get(i).copied().unwrap_or(d);
    let (hours, rate, models, users) = (arg(0, 24.0), arg(1, 1000.0), arg(2, 50.0) as usize, arg(3, 100_000.0) as u64);
    let events = (hours * 3600.0 * rate) as u64;
    let start = 1_735_689_600 * MICROS_PER_SEC;
    let mut synth = Synth::new(42, start, rate).with_models(models).with_cardinality(users, users * 4);
    // TOKENTOP_WINDOWS=1h,24h picks the tiers (default: 1m, 5m, 15m, 1h, 6h, 24h).
    let windows = match std::env::var("TOKENTOP_WINDOWS") {
        Ok(list) => list.split(',').map(|w| tokentop::time::parse_duration(w).expect("a duration")).collect(),
        Err(_) => DEFAULT_WINDOWS[..6].to_vec(),
    };
    let config = Config { windows, clock: Clock::EventTime, ..Config::default() };
    let mut engine = Engine::new(config, PriceTable::builtin(), start);
    println!("feeding {events} events ({hours} h at {rate}/s, {models} models, {users} users) into windows 1m..24h");
    let t0 = Instant::now();
    let mut ingest_time = std::time::Duration::ZERO;
    for i in 0..events {
        let ev = synth.next_event();
        let t = Instant::now();
        engine.ingest(&ev);
        ingest_time += t.elapsed();
        if i > 0 && i % 10_000_000 == 0 {
            println!(
                "  {i:>11} events  rss {:>7} KiB  heap in use {:.1} MiB  slabs {}",
                status_kib("VmRSS:"),
                live_mib(),
                engine.slab_count()
            );
        }
    }
    let fed = t0.elapsed();
    let t = Instant::now();
    let report = engine.report(86_400 * MICROS_PER_SEC, &Options::default(), IngestReport::default());
    let report_time = t.elapsed();
    println!(
        "fed in {:.1} s; engine.ingest alone: {:.0} ns/event ({:.2} M events/s on one core)",
        fed.as_secs_f64(),
        ingest_time.as_nanos() as f64 / events as f64,
        events as f64 / ingest_time.as_secs_f64() / 1e6
    );
    println!(
        "24h report: {} requests, {} active users, built in {:.1} ms",
        report.summary.total_requests,
        report.summary.active_users,
        report_time.as_secs_f64() * 1e3
    );
    println!("heap in use {:.1} MiB", live_mib());
    println!(
        "peak RSS {} KiB ({:.1} MiB), now {} KiB",
        status_kib("VmHWM:"),
        status_kib("VmHWM:") as f64 / 1024.0,
        status_kib("VmRSS:")
    );
}
