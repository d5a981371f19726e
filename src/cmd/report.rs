//! `tokentop report`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::ValueEnum;

use tokentop::ingest::{self};
use tokentop::parse::Format;
use tokentop::pricing::PriceTable;
use tokentop::report::{self, By};
use tokentop::source::SourceSpec;
use tokentop::time::parse_duration;

use super::*;

#[derive(clap::Args)]
pub(crate) struct ReportArgs {
    /// Window length ending at the latest event: 1m, 15m, 1h, 24h, 7d, ... or `all`.
    #[arg(long, default_value = "1h")]
    pub(crate) window: String,
    /// Only these sections: model, provider, user, session, property:NAME (repeatable).
    #[arg(long = "by", value_name = "KEY")]
    pub(crate) by: Vec<By>,
    /// Rows per list (users, values of each property).
    #[arg(long, default_value_t = 20)]
    pub(crate) top: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Json)]
    pub(crate) format: ReportFormat,
    /// Extra or replacement prices, in the shape of assets/pricing.json.
    #[arg(long, value_name = "FILE")]
    pub(crate) prices: Option<PathBuf>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// Read every input as this format instead of detecting it per line:
    /// tokentop, helicone, helicone-csv, litellm, otel.
    #[arg(long, value_name = "NAME")]
    pub(crate) input_format: Option<Format>,
    /// The time zone of timestamps written without an offset (LiteLLM, ClickHouse):
    /// UTC, local, an offset such as +05:30, or a name such as Europe/Berlin.
    #[arg(long, value_name = "ZONE", default_value = "UTC")]
    pub(crate) tz: tokentop::time::Zone,
    /// For live sources (ws:// URLs, `demo`): how long to collect before reporting.
    #[arg(long, value_name = "DURATION")]
    pub(crate) duration: Option<String>,
    #[command(flatten)]
    pub(crate) ws: WsArgs,
    /// Input files (`-` reads standard input); with --duration also ws:// URLs and `demo`.
    #[arg(required = true, value_name = "FILE")]
    pub(crate) inputs: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ReportFormat {
    Json,
    Table,
}

pub(crate) fn run_report(args: ReportArgs) -> Result<ExitCode> {
    let window = match args.window.as_str() {
        "all" => None,
        w => Some(parse_duration(w).map_err(anyhow::Error::msg).context("--window")?),
    };
    let mut opts = report::Options {
        window,
        top: args.top,
        by: args.by,
        input_format: args.input_format,
        zone: args.tz,
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
    if let Some(url) = args.inputs.iter().find(|i| is_clickhouse(i)) {
        if args.inputs.len() > 1 {
            bail!("a report reads one ClickHouse table, or files: give {url} alone");
        }
        let report = report_from_clickhouse(url, &opts)?;
        return print_report(&report, args.format);
    }
    let specs: Vec<SourceSpec> = args.inputs.iter().map(|s| SourceSpec::parse(s)).collect();
    let inputs = if specs.iter().any(SourceSpec::is_live_only) {
        let Some(d) = &args.duration else {
            bail!(
                "a ws:// or demo source never ends: give --duration (e.g. --duration 30s) to report on what arrives meanwhile"
            );
        };
        let d = parse_duration(d).map_err(anyhow::Error::msg).context("--duration")?;
        vec![collect_live(&specs, &args.ws, std::time::Duration::from_micros(d as u64))?]
    } else {
        open_inputs(&args.inputs)?
    };
    let outcome = report::run(&inputs, &opts)?;

    print_bad_lines(&outcome.counts);
    print_report(&outcome.report, args.format)
}

fn print_report(report: &report::Report, format: ReportFormat) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match format {
        ReportFormat::Json => {
            serde_json::to_writer_pretty(&mut out, report)?;
            writeln!(out)?;
        }
        ReportFormat::Table => write!(out, "{}", report::table::render(report))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The report of a ClickHouse table, computed there.
fn report_from_clickhouse(url: &str, opts: &report::Options) -> Result<report::Report> {
    let store = open_store(url)?;
    let rt = runtime()?;
    rt.block_on(store.report(opts)).with_context(|| format!("reading {}", store.target().name()))
}
