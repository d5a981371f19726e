//! The `tokentop` binary: parses the command line and hands over to the library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokentop::export::{self, ExportFormat, ExportOptions};
use tokentop::filter::Filter;
use tokentop::ingest::{self, Input};
use tokentop::parse::Format;
use tokentop::pricing::PriceTable;
use tokentop::report::{self, By};
use tokentop::text::sanitize;
use tokentop::time::parse_duration;

/// Watch LLM API traffic: requests, cost, latency, errors.
#[derive(Parser)]
#[command(name = "tokentop", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Read inputs to their end and print the metrics of a window.
    ///
    /// The window ends at the latest event time, so a report over a file is the same
    /// every time. Exit status: 0 on success, 1 when an input cannot be read, 2 on a
    /// usage error. Bad lines are counted in `ingest.parse_errors` and the first few are
    /// described on stderr; they never stop the report.
    Report(ReportArgs),
    /// Write the normalised events of any input format as tokentop JSON lines or CSV.
    ///
    /// Events stream through in input order (nothing is held in memory but the CSV
    /// columns), with a progress line on stderr when it is a terminal. CSV has one
    /// column per schema field and one `prop.NAME` column per property key.
    Export(ExportArgs),
}

#[derive(clap::Args)]
struct ExportArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = ExportFormatArg::Jsonl)]
    format: ExportFormatArg,
    /// Only events at or after this time (RFC 3339 or epoch milliseconds).
    #[arg(long, value_name = "TIME")]
    start: Option<String>,
    /// Only events before this time (RFC 3339 or epoch milliseconds).
    #[arg(long, value_name = "TIME")]
    end: Option<String>,
    /// Only events matching this filter, e.g. 'model:gpt-4o* status:5xx latency>5000' (see README).
    #[arg(long, value_name = "EXPR")]
    filter: Option<Filter>,
    /// Write here instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Read every input as this format instead of detecting it per line:
    /// tokentop, helicone, helicone-csv, litellm, otel.
    #[arg(long, value_name = "NAME")]
    input_format: Option<Format>,
    /// Input files; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    inputs: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportFormatArg {
    Jsonl,
    Csv,
}

#[derive(clap::Args)]
struct ReportArgs {
    /// Window length ending at the latest event: 1m, 15m, 1h, 24h, 7d, ... or `all`.
    #[arg(long, default_value = "1h")]
    window: String,
    /// Only these sections: model, provider, user, session, property:NAME (repeatable).
    #[arg(long = "by", value_name = "KEY")]
    by: Vec<By>,
    /// Rows per list (users, values of each property).
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Json)]
    format: ReportFormat,
    /// Extra or replacement prices, in the shape of assets/pricing.json.
    #[arg(long, value_name = "FILE")]
    prices: Option<PathBuf>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Read every input as this format instead of detecting it per line:
    /// tokentop, helicone, helicone-csv, litellm, otel.
    #[arg(long, value_name = "NAME")]
    input_format: Option<Format>,
    /// Input files; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    inputs: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReportFormat {
    Json,
    Table,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Report(args)) => run_report(args),
        Some(Command::Export(args)) => run_export(args),
        None => {
            println!("The live console is not built yet; until it is, use `tokentop report FILE`.\n");
            let _ = Cli::command().print_help();
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tokentop: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run_report(args: ReportArgs) -> Result<ExitCode> {
    let window = match args.window.as_str() {
        "all" => None,
        w => Some(parse_duration(w).map_err(anyhow::Error::msg).context("--window")?),
    };
    let mut opts = report::Options {
        window,
        top: args.top,
        by: args.by,
        input_format: args.input_format,
        ..report::Options::default()
    };
    if let Some(t) = args.threads {
        if t == 0 {
            bail!("--threads must be at least 1");
        }
        opts.threads = t;
    }
    if let Some(path) = &args.prices {
        let text = ingest::read_to_string(path)?;
        let extra = PriceTable::from_json(&text).with_context(|| format!("--prices {}", path.display()))?;
        opts.prices = PriceTable::builtin();
        opts.prices.extend(extra);
    }
    let inputs = args.inputs.iter().map(|p| Input::open(p)).collect::<Result<Vec<_>, _>>()?;
    let outcome = report::run(&inputs, &opts)?;

    print_bad_lines(&outcome.counts);

    let mut out = std::io::stdout().lock();
    match args.format {
        ReportFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &outcome.report)?;
            writeln!(out)?;
        }
        ReportFormat::Table => write!(out, "{}", report::table::render(&outcome.report))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The first bad lines, on stderr; their text comes from the input, so it is sanitised.
fn print_bad_lines(counts: &ingest::Counts) {
    for e in &counts.first_errors {
        eprintln!("tokentop: {}:{}: {}", e.input, e.line, sanitize(&e.error.to_string()));
    }
    let more = counts.parse_errors.saturating_sub(counts.first_errors.len() as u64);
    if more > 0 {
        eprintln!("tokentop: ... and {more} more bad lines (counted in ingest.parse_errors)");
    }
}

fn parse_time(flag: &str, s: &str) -> Result<tokentop::time::Micros> {
    if let Ok(ms) = s.parse::<f64>() {
        return tokentop::time::from_epoch_ms(ms).map_err(|e| anyhow::anyhow!("{flag} {s}: {e}"));
    }
    tokentop::time::parse_rfc3339(s)
        .map_err(|e| anyhow::anyhow!("{flag} {s}: {e}; use RFC 3339 (2025-01-01T00:00:00Z) or epoch milliseconds"))
}

fn run_export(args: ExportArgs) -> Result<ExitCode> {
    let opts = ExportOptions {
        format: match args.format {
            ExportFormatArg::Jsonl => ExportFormat::Jsonl,
            ExportFormatArg::Csv => ExportFormat::Csv,
        },
        start: args.start.as_deref().map(|s| parse_time("--start", s)).transpose()?,
        end: args.end.as_deref().map(|s| parse_time("--end", s)).transpose()?,
        filter: args.filter.unwrap_or_default(),
        input_format: args.input_format,
        prices: PriceTable::builtin(),
    };
    let inputs = args.inputs.iter().map(|p| Input::open(p)).collect::<Result<Vec<_>, _>>()?;
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
fn progress_line(done: &AtomicU64, finished: &AtomicBool, total: u64) {
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
