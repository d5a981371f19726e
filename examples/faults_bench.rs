//! Benchmarks for the faults an ops engineer probes for (`scripts/bench.sh faults`):
//!
//! - `faults_bench keys RATE SECS`: the console follows a file appended at RATE events/s
//!   in a 120x40 pseudo-terminal; `?` and Esc are pressed 20 times and the time until the
//!   screen shows (or drops) the help box is measured, with the ev/s the status bar shows.
//!   Lines are short (200 bytes), or as gateways log them with `--realistic` (1.1 KB,
//!   see `tokentop::synth::write_logged_line`).
//! - `faults_bench memory`: 10,000 events with distinct 50 KB user, session, model,
//!   property and error strings (a 2.5 GB file); peak memory of `report`, `serve` and
//!   the console reading it.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[path = "common/pty.rs"]
mod pty;
use pty::{Pty, exe, peak_mib, read_bytes};

/// Gateway-style lines made up once (`tokentop::synth::write_logged_line`), each with
/// where its timestamp is, so that writing them at a high rate costs a copy.
struct LinePool {
    text: Vec<u8>,
    /// Each line's range, and the offset of its 24-byte timestamp.
    lines: Vec<(std::ops::Range<usize>, usize)>,
}

impl LinePool {
    fn new(n: usize, rate: f64) -> LinePool {
        // A time whose RFC 3339 form has milliseconds: 24 bytes, like every stamp written.
        let base = 1_767_225_600_123_000;
        let stamp = tokentop::time::format_rfc3339(base);
        assert_eq!(stamp.len(), 24);
        let mut synth = tokentop::synth::Synth::new(1, base, rate);
        let mut rng = tokentop::synth::Rng::new(2);
        let (mut text, mut lines) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let mut ev = synth.next_event();
            ev.created_at = base;
            let start = text.len();
            tokentop::synth::write_logged_line(ev, &mut rng, &mut text);
            let at = start + text[start..].windows(24).position(|w| w == stamp.as_bytes()).expect("the stamp");
            lines.push((start..text.len(), at));
        }
        LinePool { text, lines }
    }

    /// Lines `from..to` (the pool repeats), stamped `now_ms`.
    fn write(&self, from: u64, to: u64, now_ms: i64, out: &mut Vec<u8>) {
        let stamp = chrono::DateTime::from_timestamp_millis(now_ms)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        for i in from..to {
            let (range, at) = &self.lines[i as usize % self.lines.len()];
            let start = out.len();
            out.extend_from_slice(&self.text[range.clone()]);
            let at = start + at - range.start;
            out[at..at + 24].copy_from_slice(stamp.as_bytes());
        }
    }
}

fn keys(rate: f64, secs: f64, realistic: bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.jsonl");
    std::fs::write(&path, "").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (p, s) = (path.clone(), stop.clone());
    // Appends at `rate` events/s, in 10 ms steps. Gateway-style lines are made up
    // beforehand and only their timestamps are written in at each step, so that the
    // writer takes little of the two cores from the console it measures.
    let pool = realistic.then(|| LinePool::new(20_000, rate));
    let writer = std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
        let start = Instant::now();
        let mut written = 0u64;
        let mut buf = String::with_capacity(1 << 20);
        let mut bytes = Vec::with_capacity(1 << 22);
        while !s.load(Ordering::Relaxed) {
            let due = (start.elapsed().as_secs_f64() * rate) as u64;
            buf.clear();
            bytes.clear();
            let now_ms = tokentop::time::now() / 1000;
            if let Some(pool) = &pool {
                pool.write(written, due, now_ms, &mut bytes);
            }
            for i in written..due {
                if pool.is_some() {
                    break;
                }
                use std::fmt::Write as _;
                let _ = writeln!(
                    buf,
                    r#"{{"created_at":{now_ms},"request_id":"r{i}","provider":"openai","model":"gpt-4o-{}","status":{},"latency_ms":{},"prompt_tokens":{},"completion_tokens":{},"user_id":"u{}"}}"#,
                    i % 8,
                    if i % 50 == 0 { 500 } else { 200 },
                    100 + i % 3000,
                    500 + i % 700,
                    50 + i % 300,
                    i % 5000
                );
            }
            f.write_all(buf.as_bytes()).unwrap();
            f.write_all(&bytes).unwrap();
            written = due;
            std::thread::sleep(Duration::from_millis(10));
        }
        (written, start.elapsed().as_secs_f64())
    });
    let mut c = Pty::start(&[path.to_str().unwrap()]);
    std::thread::sleep(Duration::from_secs(3));
    let probe = c.probe(secs);
    let status = c.contents().lines().last().unwrap_or_default().trim().to_string();
    let cpu_pid = c.child.process_id().unwrap();
    let peak = peak_mib(cpu_pid);
    stop.store(true, Ordering::Relaxed);
    let (written, took) = writer.join().unwrap();
    let _ = c.child.kill();
    println!(
        "console following a file of {} lines at {rate:.0} events/s ({:.0} written/s): {}; peak RSS {peak:.0} MiB",
        if realistic { "realistic (1.1 KB)" } else { "short (200 B)" },
        written as f64 / took,
        probe.keys_text()
    );
    probe.print_rates();
    println!("status bar at the end: {status}");
}

fn memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge-strings.jsonl");
    {
        let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path).unwrap());
        let pad = "x".repeat(50_000);
        for i in 0..10_000u64 {
            writeln!(
                f,
                r#"{{"created_at":{},"model":"m{i}{pad}","user_id":"u{i}{pad}","session_id":"s{i}{pad}","properties":{{"feature":"f{i}{pad}"}},"status":500,"error":"e{i}{pad}"}}"#,
                1_740_000_000_000u64 + i * 100
            )
            .unwrap();
        }
    }
    let size = std::fs::metadata(&path).unwrap().len();
    println!("input: 10,000 events, {:.0} MB, 5 distinct 50 KB strings each", size as f64 / 1e6);
    let file = path.to_str().unwrap();

    let mut report =
        Command::new(exe()).args(["report", "--window", "all", file]).stdout(Stdio::null()).spawn().unwrap();
    let pid = report.id();
    let mut peak: f64 = 0.0;
    while report.try_wait().unwrap().is_none() {
        peak = peak.max(peak_mib(pid));
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("report: peak RSS {peak:.0} MiB");

    let mut serve = Command::new(exe())
        .args(["serve", "--no-follow", "--listen", "127.0.0.1:0", file])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = serve.stderr.take().unwrap();
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    while !text.contains("at end") {
        let n = err.read(&mut buf).unwrap();
        assert!(n > 0, "serve exited: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    std::thread::sleep(Duration::from_secs(1));
    println!("serve: peak RSS {:.0} MiB (every event published and buffered)", peak_mib(serve.id()));
    let _ = serve.kill();
    let _ = serve.wait();

    let mut c = Pty::start(&["--clock", "event", file]);
    let pid = c.child.process_id().unwrap();
    let t = Instant::now();
    while read_bytes(pid) < size && t.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    let shown = c.contents().contains("10,000");
    println!("console: peak RSS {:.0} MiB (all 10,000 shown: {shown})", peak_mib(pid));
    let _ = c.child.kill();
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("keys") => keys(
            args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200_000.0),
            args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10.0),
            args.iter().any(|a| a == "--realistic"),
        ),
        Some("memory") => memory(),
        _ => eprintln!("usage: faults_bench keys [RATE] [SECS] [--realistic] | faults_bench memory"),
    }
}
