//! `tokentop demo`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Result, bail};

#[derive(clap::Args)]
pub(crate) struct DemoArgs {
    /// Requests per second.
    #[arg(long, default_value_t = 50.0)]
    pub(crate) rate: f64,
    /// Seed: the same seed gives the same traffic.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Stop after this many events.
    #[arg(long)]
    pub(crate) count: Option<u64>,
    /// Print without waiting (timestamps still spaced at --rate, ending now).
    #[arg(long)]
    pub(crate) fast: bool,
}

pub(crate) fn run_demo(args: DemoArgs) -> Result<ExitCode> {
    if !(args.rate > 0.0 && args.rate <= 1e7) {
        bail!("--rate must be between 0 and 10,000,000 events per second");
    }
    let count = args.count.unwrap_or(u64::MAX);
    // Fast output ends now; live output starts now.
    let start = if args.fast && args.count.is_some() {
        tokentop::time::now() - (count as f64 / args.rate * 1e6) as i64
    } else {
        tokentop::time::now()
    };
    let mut synth = tokentop::synth::Synth::new(args.seed, start, args.rate).with_incidents();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut line = Vec::with_capacity(1024);
    let clock = std::time::Instant::now();
    for _ in 0..count {
        if !args.fast {
            let due = synth.now() - start;
            let ahead = due - clock.elapsed().as_micros() as i64;
            if ahead > 0 {
                out.flush().ok();
                std::thread::sleep(std::time::Duration::from_micros(ahead as u64));
            }
        }
        line.clear();
        tokentop::parse::native::write_line(&synth.next_event(), &mut line);
        if let Err(e) = out.write_all(&line) {
            // A closed pipe (`tokentop demo | head`) is a normal end.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(ExitCode::SUCCESS);
            }
            return Err(e.into());
        }
    }
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}
