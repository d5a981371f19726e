//! Reads FILE on THREADS threads as `tokentop report` does (1 MiB reads, each thread
//! its share of the file's lines) and, for each line, does only what MODE says:
//!
//! - `lines`: nothing (splitting the lines is all);
//! - `utf8`: checks it is UTF-8;
//! - `serde_json`: checks it is one JSON value with serde_json (`IgnoredAny`), the
//!   rules tokentop's parser keeps;
//! - `sonic`: the same with sonic-rs, the fastest validating JSON parser for Rust
//!   found (SIMD, x86-64 and Arm).
//!
//! Prints the seconds and the lines that passed, and fails when one did not: the
//! figure is a floor only for a file of valid lines. `tokentop report` must check every line as JSON (a line broken anywhere is a
//! parse error, not an event), so `sonic`'s time is a floor under its parse.
//!
//!     json-floor FILE MODE THREADS

use std::{fs::File, os::unix::fs::FileExt, time::Instant};

const READ: usize = 1 << 20;

/// The check MODE names, chosen once rather than matched at every line.
fn check_of(mode: &str) -> Option<fn(&[u8]) -> bool> {
    Some(match mode {
        "lines" => |_| true,
        "utf8" => |line| simdutf8::basic::from_utf8(line).is_ok(),
        "serde_json" => |line| serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok(),
        "sonic" => |line| sonic_rs::from_slice::<serde::de::IgnoredAny>(line).is_ok(),
        _ => return None,
    })
}

/// The lines that start in `[start, end)`, and how many of them pass: each line
/// belongs to the share its first byte is in.
fn share(file: &File, passes: fn(&[u8]) -> bool, start: u64, end: u64) -> std::io::Result<(u64, u64)> {
    let mut buf = vec![0u8; 4 * READ];
    // From the byte before the share, up to its first newline: the end of the line
    // the share before owns (nothing when that byte is the newline).
    let mut partial = start > 0;
    let (mut at, mut have) = (start.saturating_sub(1), 0usize);
    let (mut lines, mut passed) = (0u64, 0u64);
    loop {
        if buf.len() < have + READ {
            buf.resize(have + READ, 0);
        }
        let n = file.read_at(&mut buf[have..have + READ], at)?;
        at += n as u64;
        have += n;
        let mut from = 0;
        while let Some(i) = memchr::memchr(b'\n', &buf[from..have]) {
            let line_start = at - (have - from) as u64;
            if line_start >= end && !partial {
                return Ok((lines, passed));
            }
            if !std::mem::take(&mut partial) {
                lines += 1;
                passed += u64::from(passes(&buf[from..from + i]));
            }
            from += i + 1;
        }
        if n == 0 {
            // A last line without a newline.
            if from < have && !partial && at - ((have - from) as u64) < end {
                lines += 1;
                passed += u64::from(passes(&buf[from..have]));
            }
            return Ok((lines, passed));
        }
        buf.copy_within(from..have, 0);
        have -= from;
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path, mode, threads] = &args[..] else {
        eprintln!("usage: json-floor FILE lines|utf8|serde_json|sonic THREADS");
        std::process::exit(2);
    };
    let Some(passes) = check_of(mode) else {
        eprintln!("json-floor: unknown mode {mode} (lines, utf8, serde_json or sonic)");
        std::process::exit(2);
    };
    let threads: u64 = threads.parse().expect("THREADS is a number");
    let file = File::open(path).expect("FILE can be opened");
    let len = file.metadata().expect("FILE's size").len();
    let started = Instant::now();
    let (lines, passed) = std::thread::scope(|s| {
        let shares: Vec<_> = (0..threads)
            .map(|k| {
                let file = &file;
                s.spawn(move || {
                    share(file, passes, len * k / threads, len * (k + 1) / threads).expect("FILE can be read")
                })
            })
            .collect();
        shares.into_iter().map(|h| h.join().expect("no panic")).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    });
    println!("{mode} {threads} thread(s): {:.3} s, {lines} lines, {passed} passed", started.elapsed().as_secs_f64());
    if passed != lines {
        eprintln!("json-floor: {} of {lines} lines did not pass {mode}'s check", lines - passed);
        std::process::exit(1);
    }
}
