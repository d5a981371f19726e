//! The `tokentop` binary: parses the command line and hands over to the library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

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

    let counts = &outcome.counts;
    for e in &counts.first_errors {
        eprintln!("tokentop: {}:{}: {}", e.input, e.line, sanitize(&e.error.to_string()));
    }
    let more = counts.parse_errors.saturating_sub(counts.first_errors.len() as u64);
    if more > 0 {
        eprintln!("tokentop: ... and {more} more bad lines (counted in ingest.parse_errors)");
    }

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
