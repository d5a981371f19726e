//! Console benchmark.
//!
//! cargo build --release && cargo run --release --example console_bench -- [HOURS=1] [RATE=1000]
//!
//! 1. In process: a window full of traffic (HOURS at RATE requests/s, 50 models,
//!    100,000 users); the time to take a snapshot from the engine and to draw the
//!    Overview at 200×60.
//! 2. The real binary in a 200×60 pseudo-terminal: CPU use and bytes written to the
//!    terminal per second, idle (following an unchanged file) and with the demo source
//!    at 10,000 events/s.

use std::io::Read;
use std::time::{Duration, Instant};

use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tokentop::engine::{Clock, Config};
use tokentop::live::Live;
use tokentop::parse::native::write_line;
use tokentop::pricing::PriceTable;
use tokentop::source::{Feed, Update};
use tokentop::synth::Synth;
use tokentop::time::MICROS_PER_SEC;
use tokentop::ui::App;
use tokentop::ui::render::draw;
use tokentop::ui::theme::{Theme, ThemeName};

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, r)| r).split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

/// Runs the binary in a 200×60 pseudo-terminal; after `warm`, measures for `secs`.
fn in_pty(args: &[&str], warm: Duration, secs: f64) -> (f64, f64) {
    let pty = native_pty_system().openpty(PtySize { rows: 60, cols: 200, pixel_width: 0, pixel_height: 0 }).unwrap();
    let exe = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("tokentop");
    let mut cmd = CommandBuilder::new(exe);
    cmd.args(args);
    cmd.env("TERM", "xterm-256color");
    let mut child = pty.slave.spawn_command(cmd).unwrap();
    let pid = child.process_id().unwrap();
    let mut reader = pty.master.try_clone_reader().unwrap();
    let bytes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let b = bytes.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            b.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        }
    });
    std::thread::sleep(warm);
    let (cpu0, bytes0, t0) = (cpu_seconds(pid), bytes.load(std::sync::atomic::Ordering::Relaxed), Instant::now());
    std::thread::sleep(Duration::from_secs_f64(secs));
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = (cpu_seconds(pid) - cpu0) / elapsed * 100.0;
    let rate = (bytes.load(std::sync::atomic::Ordering::Relaxed) - bytes0) as f64 / elapsed;
    let _ = child.kill();
    let _ = child.wait();
    (cpu, rate)
}

fn main() {
    let args: Vec<f64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let hours = args.first().copied().unwrap_or(1.0);
    let rate = args.get(1).copied().unwrap_or(1000.0);

    let config = Config { clock: Clock::EventTime, ..Config::default() };
    let mut live = Live::new(vec!["bench".into()], config, PriceTable::builtin(), 0);
    let mut synth = Synth::new(1, 1_740_823_200_000_000, rate).with_models(50).with_cardinality(100_000, 400_000);
    let n = (hours * 3600.0 * rate) as u64;
    let t = Instant::now();
    let mut lines = Vec::with_capacity(8 << 20);
    for i in 0..n {
        write_line(&synth.next_event(), &mut lines);
        if lines.len() > (4 << 20) || i + 1 == n {
            live.feed(Feed { source: 0, update: Update::Lines(std::mem::take(&mut lines)) });
        }
    }
    println!("filled {n} events ({hours} h at {rate}/s, 50 models, 100k users) in {:.1}s", t.elapsed().as_secs_f64());

    let window = (hours * 3600.0) as i64 * MICROS_PER_SEC;
    let mut app = App::new(tokentop::engine::DEFAULT_WINDOWS.to_vec(), window);
    let t = Instant::now();
    let rounds = 10;
    for _ in 0..rounds {
        app.refresh(&live, 0.0);
    }
    let refresh = t.elapsed().as_secs_f64() / rounds as f64 * 1e3;
    let mut term = Terminal::new(TestBackend::new(200, 60)).unwrap();
    let theme = Theme::new(ThemeName::Dark, true);
    term.draw(|f| draw(f, &mut app, &theme)).unwrap();
    let t = Instant::now();
    let frames = 200;
    for _ in 0..frames {
        term.draw(|f| draw(f, &mut app, &theme)).unwrap();
    }
    let frame = t.elapsed().as_secs_f64() / frames as f64 * 1e3;
    println!(
        "Overview at 200x60, {hours} h window: draw {frame:.2} ms a frame; snapshot from the engine {refresh:.1} ms"
    );

    let dir = tempfile::tempdir().unwrap();
    let idle_file = dir.path().join("idle.jsonl");
    std::fs::write(&idle_file, "").unwrap();
    let (cpu, bytes) = in_pty(&[idle_file.to_str().unwrap()], Duration::from_secs(2), 10.0);
    println!("console idle (following an unchanged file): {cpu:.2}% CPU, {bytes:.0} bytes/s to the terminal");
    let (cpu, bytes) = in_pty(&["--rate", "10000", "--demo-history", "0", "demo"], Duration::from_secs(5), 10.0);
    println!(
        "console with the demo at 10,000 events/s: {cpu:.1}% of one core, {:.1} KB/s to the terminal",
        bytes / 1000.0
    );
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/config.example.toml");
    let (cpu, bytes) =
        in_pty(&["--config", config, "--rate", "10000", "--demo-history", "0", "demo"], Duration::from_secs(5), 10.0);
    println!(
        "the same with the example config's nine alert rules: {cpu:.1}% of one core, {:.1} KB/s to the terminal",
        bytes / 1000.0
    );
}
