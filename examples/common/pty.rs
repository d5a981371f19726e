//! What the benchmarks that drive the console share: the console in a pseudo-terminal
//! of 120x40 read through a real terminal emulator (vt100), and readings of a process.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{CommandBuilder, PtySize, native_pty_system};

pub fn exe() -> std::path::PathBuf {
    std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("tokentop")
}

/// Peak resident memory of a process so far, in MiB.
pub fn peak_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// Bytes a process has read (from /proc/PID/io).
pub fn read_bytes(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    io.lines().find_map(|l| l.strip_prefix("rchar:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

pub struct Pty {
    pub screen: Arc<Mutex<vt100::Parser>>,
    pub writer: Box<dyn Write + Send>,
    pub child: Box<dyn portable_pty::Child + Send + Sync>,
}

impl Pty {
    pub fn start(args: &[&str]) -> Pty {
        let (rows, cols) = (40, 120);
        let pty = native_pty_system().openpty(PtySize { rows, cols, pixel_width: 0, pixel_height: 0 }).unwrap();
        let mut cmd = CommandBuilder::new(exe());
        cmd.args(args);
        cmd.env("TERM", "xterm-256color");
        let child = pty.slave.spawn_command(cmd).unwrap();
        let screen = Arc::new(Mutex::new(vt100::Parser::new(
            std::num::NonZero::new(rows).unwrap(),
            std::num::NonZero::new(cols).unwrap(),
            0,
        )));
        let mut reader = pty.master.try_clone_reader().unwrap();
        let s = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                s.lock().unwrap().process(&buf[..n]);
            }
        });
        let writer = pty.master.take_writer().unwrap();
        std::mem::forget(pty.master);
        Pty { screen, writer, child }
    }

    pub fn contents(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    /// Presses `key` and returns how long until `done` holds for the screen.
    pub fn answer(&mut self, key: &[u8], done: impl Fn(&str) -> bool) -> Duration {
        let t = Instant::now();
        self.writer.write_all(key).unwrap();
        self.writer.flush().unwrap();
        while !done(&self.contents()) {
            assert!(t.elapsed() < Duration::from_secs(30), "no answer to a key in 30 s");
            std::thread::sleep(Duration::from_millis(1));
        }
        t.elapsed()
    }
}

/// What the console showed while it was probed: how long keys took to be answered and
/// the ingest rates the status bar showed, each sorted.
pub struct Probe {
    pub keys: Vec<Duration>,
    pub rates: Vec<f64>,
}

impl Pty {
    /// For `secs`: presses `?` and Esc in turn, timing the help box's coming and going,
    /// and reads the status bar's ingest rate (the last second's) between keys.
    pub fn probe(&mut self, secs: f64) -> Probe {
        let (mut keys, mut rates) = (Vec::new(), Vec::new());
        let t = Instant::now();
        while t.elapsed().as_secs_f64() < secs {
            keys.push(self.answer(b"?", |s| s.contains("┌ keys")));
            std::thread::sleep(Duration::from_millis(150));
            keys.push(self.answer(b"\x1b", |s| !s.contains("┌ keys")));
            std::thread::sleep(Duration::from_millis(150));
            rates.extend(shown_rate(&self.contents()));
        }
        keys.sort();
        rates.sort_by(f64::total_cmp);
        Probe { keys, rates }
    }
}

impl Probe {
    pub fn keys_text(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let k = &self.keys;
        format!(
            "{} keys answered in p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms",
            k.len(),
            ms(k[k.len() / 2]),
            ms(k[k.len() * 95 / 100]),
            ms(*k.last().unwrap())
        )
    }

    pub fn print_rates(&self) {
        let r = &self.rates;
        if !r.is_empty() {
            println!(
                "ingest rate shown, {} readings: median {:.0}k ev/s, lowest {:.0}k, highest {:.0}k",
                r.len(),
                r[r.len() / 2] / 1e3,
                r[0] / 1e3,
                r[r.len() - 1] / 1e3
            );
        }
    }
}

/// The ingest rate on the status bar (`· 96.9k ev/s ·`), in events a second.
pub fn shown_rate(screen: &str) -> Option<f64> {
    let status = screen.lines().last()?;
    let end = status.find(" ev/s")?;
    let text = status[..end].rsplit(' ').next()?;
    let (num, mult) = match text.strip_suffix('k') {
        Some(n) => (n, 1e3),
        None => match text.strip_suffix('M') {
            Some(n) => (n, 1e6),
            None => (text, 1.0),
        },
    };
    num.replace(',', "").parse::<f64>().ok().map(|v| v * mult)
}
