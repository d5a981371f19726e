//! Relay benchmark: `tokentop serve` following a file appended at a steady rate, with
//! several WebSocket clients that check they get every event, once, in order.
//!
//! cargo build --release && cargo run --release --example relay_bench -- [RATE=100000] [SECONDS=10] [CLIENTS=4]
//!
//! Prints, per client, the events received and whether `seq` ran 1, 2, 3… without a
//! hole; the end-to-end lag (append → file follow → relay → client) sampled on one
//! event in 500; the relay's CPU while idle and under load (from /proc).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokentop::parse::native::write_line;
use tokentop::synth::Synth;
use tokio_tungstenite::tungstenite::Message;

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, r)| r).split_whitespace().collect();
    fields.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

fn cpu_percent(pid: u32, window: Duration, work: impl FnOnce()) -> f64 {
    let ticks_per_s = 100.0; // USER_HZ
    let before = cpu_ticks(pid);
    let t = Instant::now();
    work();
    let used = (cpu_ticks(pid) - before) as f64 / ticks_per_s;
    let _ = window;
    used * 100.0 / t.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<f64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let rate = args.first().copied().unwrap_or(100_000.0);
    let seconds = args.get(1).copied().unwrap_or(10.0);
    let clients = args.get(2).copied().unwrap_or(4.0) as usize;
    let total = (rate * seconds) as u64;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.jsonl");
    std::fs::File::create(&path).unwrap();
    let exe = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("tokentop");
    let mut relay = Command::new(&exe)
        .args(["serve", "--listen", "127.0.0.1:0", "--buffer", "1000000", path.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {} (cargo build --release first): {e}", exe.display()));
    let pid = relay.id();
    let mut err = BufReader::new(relay.stderr.take().unwrap());
    let url = loop {
        let mut line = String::new();
        err.read_line(&mut line).unwrap();
        if let Some(u) = line.trim().strip_prefix("tokentop: relaying on ") {
            break u.to_string();
        }
    };
    std::thread::spawn(move || for _ in err.lines() {});

    let idle = cpu_percent(pid, Duration::from_secs(5), || std::thread::sleep(Duration::from_secs(5)));
    println!("relay idle (following an unchanged file, no clients): {idle:.2}% CPU");

    let lags = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for c in 0..clients {
        let (ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        let lags = lags.clone();
        handles.push(tokio::spawn(async move {
            let (_, mut rx) = ws.split();
            let (mut count, mut next_seq, mut in_order) = (0u64, 1u64, true);
            while count < total {
                let msg = match tokio::time::timeout(Duration::from_secs(10), rx.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) => t,
                    Ok(Some(Ok(_))) => continue,
                    _ => break,
                };
                let text = msg.as_str();
                // `seq` is the last field the relay writes.
                let seq: u64 =
                    text.rsplit_once("\"seq\":").and_then(|(_, s)| s.trim_end_matches('}').parse().ok()).unwrap_or(0);
                in_order &= seq == next_seq;
                next_seq = seq + 1;
                count += 1;
                if c == 0 && count % 500 == 0 {
                    let v: serde_json::Value = serde_json::from_str(text).unwrap();
                    let t = tokentop::time::parse_rfc3339(v["created_at"].as_str().unwrap()).unwrap();
                    lags.lock().unwrap().push((tokentop::time::now() - t) as f64 / 1000.0);
                }
            }
            (count, in_order)
        }));
    }

    // The gateway: appends `rate` events a second, stamped with the time they are written.
    let written = Arc::new(AtomicU64::new(0));
    let w = written.clone();
    let producer_path = path.clone();
    let producer = std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new().append(true).open(&producer_path).unwrap();
        let start = Instant::now();
        let mut synth = Synth::new(3, tokentop::time::now(), rate);
        let mut buf = Vec::with_capacity(8 << 20);
        let mut done = 0u64;
        while done < total {
            let due = ((start.elapsed().as_secs_f64() * rate) as u64).min(total);
            buf.clear();
            while done < due {
                let mut ev = synth.next_event();
                ev.created_at = tokentop::time::now();
                write_line(&ev, &mut buf);
                done += 1;
            }
            f.write_all(&buf).unwrap();
            w.store(done, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(5));
        }
        start.elapsed()
    });
    let busy = cpu_percent(pid, Duration::ZERO, || {
        while !producer.is_finished() {
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let took = producer.join().unwrap();
    println!(
        "wrote {total} events in {:.2}s ({:.0} events/s); relay used {busy:.0}% of one core meanwhile",
        took.as_secs_f64(),
        total as f64 / took.as_secs_f64()
    );
    for (i, h) in handles.into_iter().enumerate() {
        let (count, in_order) = h.await.unwrap();
        println!("client {i}: received {count} of {total}, seq without holes or repeats: {in_order}");
    }
    let mut l = lags.lock().unwrap().clone();
    l.sort_by(f64::total_cmp);
    if !l.is_empty() {
        println!(
            "lag append→client (ms, {} samples): p50 {:.0}, p99 {:.0}, max {:.0}",
            l.len(),
            l[l.len() / 2],
            l[(l.len() * 99 / 100).min(l.len() - 1)],
            l[l.len() - 1]
        );
    }
    let _ = relay.kill();
    let _ = relay.wait();
}
