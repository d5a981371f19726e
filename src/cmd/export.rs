//! `tokentop export`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::ValueEnum;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokentop::export::{self, ExportFormat, ExportOptions};
use tokentop::filter::Filter;
use tokentop::ingest::Input;
use tokentop::parse::Format;
use tokentop::pricing::PriceTable;

use super::*;

#[derive(clap::Args)]
pub(crate) struct ExportArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = ExportFormatArg::Jsonl)]
    pub(crate) format: ExportFormatArg,
    /// Only events at or after this time (RFC 3339 or epoch milliseconds).
    #[arg(long, value_name = "TIME")]
    pub(crate) start: Option<String>,
    /// Only events before this time (RFC 3339 or epoch milliseconds).
    #[arg(long, value_name = "TIME")]
    pub(crate) end: Option<String>,
    /// Only events matching this filter, e.g. 'model:gpt-4o* status:5xx latency>5000' (see README).
    #[arg(long, value_name = "EXPR")]
    pub(crate) filter: Option<Filter>,
    /// Write here instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Read every input as this format instead of detecting it per line:
    /// tokentop, helicone, helicone-csv, litellm, otel.
    #[arg(long, value_name = "NAME")]
    pub(crate) input_format: Option<Format>,
    /// The time zone of timestamps written without an offset (LiteLLM, ClickHouse):
    /// UTC, local, an offset such as +05:30, or a name such as Europe/Berlin.
    #[arg(long, value_name = "ZONE", default_value = "UTC")]
    pub(crate) tz: tokentop::time::Zone,
    /// Input files; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    pub(crate) inputs: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ExportFormatArg {
    Jsonl,
    Csv,
}

pub(crate) fn run_export(args: ExportArgs) -> Result<ExitCode> {
    let opts = ExportOptions {
        format: match args.format {
            ExportFormatArg::Jsonl => ExportFormat::Jsonl,
            ExportFormatArg::Csv => ExportFormat::Csv,
        },
        start: args.start.as_deref().map(|s| parse_time("--start", s)).transpose()?,
        end: args.end.as_deref().map(|s| parse_time("--end", s)).transpose()?,
        filter: args.filter.unwrap_or_default(),
        input_format: args.input_format,
        zone: args.tz,
        prices: PriceTable::builtin(),
    };
    let inputs = open_inputs(&args.inputs)?;
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock())),
    };
    let total: u64 = inputs.iter().map(Input::len).sum();
    let done = AtomicU64::new(0);
    let finished = AtomicBool::new(false);
    let result = std::thread::scope(|s| {
        if std::io::stderr().is_terminal() && total > 0 {
            s.spawn(|| progress_line(&done, &finished, total));
        }
        let r = export::export(&inputs, &opts, &mut out, Some(&done));
        finished.store(true, Ordering::Relaxed);
        r
    });
    let exported = result?;
    print_bad_lines(&exported.counts);
    if args.output.is_some() {
        eprintln!("tokentop: exported {} events", exported.written);
    }
    Ok(ExitCode::SUCCESS)
}

/// A progress line on stderr, redrawn every 200 ms, erased at the end.
pub(crate) fn progress_line(done: &AtomicU64, finished: &AtomicBool, total: u64) {
    let start = std::time::Instant::now();
    while !finished.load(Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let d = done.load(Ordering::Relaxed).min(total);
        let mb = |b: u64| b as f64 / 1e6;
        eprint!(
            "\r\x1b[2Kexporting {:>3.0}%  {:.0}/{:.0} MB  {:.0} MB/s",
            d as f64 * 100.0 / total as f64,
            mb(d),
            mb(total),
            mb(d) / start.elapsed().as_secs_f64().max(1e-3)
        );
    }
    eprint!("\r\x1b[2K");
}
