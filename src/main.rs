//! The `tokentop` binary: parses the command line and hands over to the library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokentop::engine::Clock;
use tokentop::export::{self, ExportFormat, ExportOptions};
use tokentop::filter::Filter;
use tokentop::ingest::{self, Input};
use tokentop::parse::Format;
use tokentop::pricing::PriceTable;
use tokentop::report::{self, By};
use tokentop::serve::{self, Relay, ServeOptions};
use tokentop::source::{self, SourceOptions, SourceSpec, SourceState, Update};
use tokentop::text::sanitize;
use tokentop::time::parse_duration;
use tokentop::ui::ConsoleOptions;
use tokentop::ui::theme::{Theme, ThemeName};

/// Watch LLM API traffic live: requests, cost, latency, errors.
///
/// With no command, opens the console on the given sources (the demo when none is
/// given). Keys: ? for help, q to quit.
#[derive(Parser)]
#[command(name = "tokentop", version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    console: ConsoleArgs,
}

#[derive(clap::Args)]
struct ConsoleArgs {
    /// Sources: files (followed), quoted globs, `-`, ws:// or wss:// URLs, or `demo` (the default).
    #[arg(value_name = "SOURCE")]
    sources: Vec<String>,
    /// Config file [default: ~/.config/tokentop/config.toml].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The window shown first: 1m, 5m, 15m, 1h, 6h, 24h or 7d ([ and ] change it) [default: 1h].
    #[arg(long)]
    window: Option<String>,
    /// Redraw at most this often [default: 100ms].
    #[arg(long)]
    refresh: Option<String>,
    /// Colours [default: dark].
    #[arg(long, value_enum)]
    theme: Option<ThemeArg>,
    /// No colours (also when NO_COLOR is set).
    #[arg(long)]
    no_color: bool,
    /// Plain dots instead of braille in charts (for fonts without braille).
    #[arg(long)]
    ascii: bool,
    /// Windows end at the wall clock (live traffic) or at the latest event (replaying old logs) [default: wall].
    #[arg(long, value_enum)]
    clock: Option<ClockArg>,
    /// Extra or replacement prices, in the shape of assets/pricing.json.
    #[arg(long, value_name = "FILE")]
    prices: Option<PathBuf>,
    /// Show times in UTC instead of local time.
    #[arg(long)]
    utc: bool,
    /// The time zone of timestamps written without an offset (LiteLLM, ClickHouse):
    /// UTC, local, an offset such as +05:30, or a name such as Europe/Berlin.
    #[arg(long, value_name = "ZONE", default_value = "UTC")]
    tz: tokentop::time::Zone,
    /// Events per second of the `demo` source [default: 50].
    #[arg(long)]
    rate: Option<f64>,
    /// Use the mouse: wheel to scroll, click a tab or a row (off by default so text can be selected).
    #[arg(long)]
    mouse: bool,
    /// Ring the terminal bell when an alert fires.
    #[arg(long)]
    bell: bool,
    #[command(flatten)]
    ws: WsArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum ThemeArg {
    Dark,
    Light,
    Mono,
}

#[derive(Clone, Copy, ValueEnum)]
enum ClockArg {
    Wall,
    Event,
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
    /// Relay the events of sources over WebSocket to any number of consoles.
    ///
    /// Every event gets a `seq` and the relay's `stream` id (new at every start); a
    /// client that reconnects with `?since=SEQ&stream=ID` gets what it missed from a
    /// bounded buffer (or a gap notice; a reset notice when the relay restarted). Set
    /// TOKENTOP_SERVE_TOKEN to require `Authorization: Bearer <token>`. Binds to
    /// 127.0.0.1 unless told otherwise.
    Serve(ServeArgs),
    /// Evaluate the alert rules of a config file over inputs read to their end.
    ///
    /// Event time is the clock: every rule is evaluated at each bucket boundary across
    /// the inputs' span (so `for` works). Prints `{"firing":[…],"history":[…]}`. Exit
    /// status: 0 when nothing fires at the end, 1 when something does, 2 when the config
    /// cannot be read or parsed or holds no valid rule (invalid rules are reported on
    /// stderr and skipped).
    Check(CheckArgs),
    /// Print realistic synthetic traffic as tokentop JSON lines, in real time.
    ///
    /// With incidents every 10 minutes (a 429 storm, a latency spike, a cost spike).
    /// `--count N --fast` prints N events at once (for piping into `report -`).
    Demo(DemoArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8787", value_name = "ADDR")]
    listen: std::net::SocketAddr,
    /// Events kept for clients that reconnect with `since`.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    buffer: usize,
    /// Bytes of event text kept for clients that reconnect (the older events go first).
    #[arg(long, default_value = "128MiB", value_name = "SIZE", value_parser = parse_size)]
    buffer_bytes: usize,
    /// Send new clients the buffered events of this last window (e.g. 1h).
    #[arg(long, value_name = "DURATION", num_args = 0..=1, default_missing_value = "1h")]
    backfill: Option<String>,
    /// TLS certificate chain (PEM); with --tls-key, serves wss://.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Close connections that have not completed their TLS and WebSocket handshake within this long.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    handshake_timeout: String,
    /// Read files to their end and stop following them.
    #[arg(long)]
    no_follow: bool,
    #[command(flatten)]
    ws: WsArgs,
    /// Sources: files (followed), globs, `-`, ws:// URLs, or `demo`.
    #[arg(required = true, value_name = "SOURCE")]
    sources: Vec<String>,
}

/// Options for WebSocket sources.
#[derive(clap::Args)]
struct WsArgs {
    /// Extra header for WebSocket sources, 'Name: value' (repeatable). For secrets use
    /// TOKENTOP_WS_TOKEN, sent as a bearer token.
    #[arg(long = "header", value_name = "HEADER")]
    headers: Vec<String>,
}

impl WsArgs {
    fn options(&self) -> Result<tokentop::source::ws::WsOptions> {
        let mut o = tokentop::source::ws::WsOptions::default();
        for h in &self.headers {
            let Some((name, value)) = h.split_once(':') else {
                bail!("--header expects 'Name: value'");
            };
            o.headers.push((name.trim().to_string(), value.trim().to_string()));
        }
        Ok(o)
    }
}

#[derive(clap::Args)]
struct CheckArgs {
    /// The config file with the `[[alerts]]` rules.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Read every input as this format instead of detecting it per line.
    #[arg(long, value_name = "NAME")]
    input_format: Option<Format>,
    /// The time zone of timestamps written without an offset (LiteLLM, ClickHouse):
    /// UTC, local, an offset such as +05:30, or a name such as Europe/Berlin.
    #[arg(long, value_name = "ZONE", default_value = "UTC")]
    tz: tokentop::time::Zone,
    /// Extra or replacement prices, in the shape of assets/pricing.json.
    #[arg(long, value_name = "FILE")]
    prices: Option<PathBuf>,
    /// Send the alerts firing at the end to the config's webhooks and hooks.
    #[arg(long)]
    notify: bool,
    /// Input files (`-` reads standard input, quoted globs work).
    #[arg(required = true, value_name = "FILE")]
    inputs: Vec<String>,
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Requests per second.
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Seed: the same seed gives the same traffic.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Stop after this many events.
    #[arg(long)]
    count: Option<u64>,
    /// Print without waiting (timestamps still spaced at --rate, ending now).
    #[arg(long)]
    fast: bool,
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
    /// The time zone of timestamps written without an offset (LiteLLM, ClickHouse):
    /// UTC, local, an offset such as +05:30, or a name such as Europe/Berlin.
    #[arg(long, value_name = "ZONE", default_value = "UTC")]
    tz: tokentop::time::Zone,
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
    /// The time zone of timestamps written without an offset (LiteLLM, ClickHouse):
    /// UTC, local, an offset such as +05:30, or a name such as Europe/Berlin.
    #[arg(long, value_name = "ZONE", default_value = "UTC")]
    tz: tokentop::time::Zone,
    /// For live sources (ws:// URLs, `demo`): how long to collect before reporting.
    #[arg(long, value_name = "DURATION")]
    duration: Option<String>,
    #[command(flatten)]
    ws: WsArgs,
    /// Input files (`-` reads standard input); with --duration also ws:// URLs and `demo`.
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
        Some(Command::Serve(args)) => run_serve(args),
        Some(Command::Demo(args)) => run_demo(args),
        Some(Command::Check(args)) => run_check(args),
        None => run_console(cli.console),
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

/// The first bad lines and unreadable fields, on stderr; their text comes from the
/// input, so it is sanitised.
fn print_bad_lines(counts: &ingest::Counts) {
    for u in &counts.unreadable {
        eprintln!("tokentop: {}", sanitize(u));
    }
    for e in &counts.first_field_errors {
        eprintln!("tokentop: {}:{}: dropped a field: {}", e.input, e.line, sanitize(&e.error.to_string()));
    }
    let more = counts.field_errors.saturating_sub(counts.first_field_errors.len() as u64);
    if more > 0 {
        eprintln!("tokentop: ... and {more} more fields dropped (counted in ingest.field_errors)");
    }
    for e in &counts.first_errors {
        eprintln!("tokentop: {}:{}: {}", e.input, e.line, sanitize(&e.error.to_string()));
    }
    let more = counts.parse_errors.saturating_sub(counts.first_errors.len() as u64 + counts.unreadable_errors);
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

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Reads sources for `duration` (files to their end) into a temporary file, for `report`.
/// A source that never delivered (refused, unauthorised, unreadable) or that is
/// failing at the end is an error: a report of nothing must not pass for a quiet hour.
fn collect_live(specs: &[SourceSpec], ws: &WsArgs, duration: std::time::Duration) -> Result<Input> {
    let mut opts = SourceOptions { ws: ws.options()?, ..SourceOptions::default() };
    opts.follow.follow = false;
    let mut spool = tempfile::NamedTempFile::new().context("cannot create a temporary file for the live sources")?;
    let names: Vec<String> = specs.iter().map(SourceSpec::display).collect();
    // Per source: whether it ever connected (or was read), and its last problem.
    let mut reached = vec![false; specs.len()];
    let mut failing: Vec<Option<String>> = vec![None; specs.len()];
    let rt = runtime()?;
    rt.block_on(async {
        let (tx, mut rx) = source::channel(1024, source::QUEUE_BYTES);
        source::start(specs, &opts, tx);
        let deadline = tokio::time::sleep(duration);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                feed = rx.recv() => match feed {
                    None => break,
                    Some(feed) => {
                        let (i, name) = (feed.source, &names[feed.source]);
                        match feed.update {
                            Update::Lines(lines) => spool.write_all(&lines).context("cannot write the temporary file")?,
                            Update::State(SourceState::Failed(e)) => failing[i] = Some(e),
                            Update::State(SourceState::Reconnecting { error, .. }) => failing[i] = Some(error),
                            Update::State(SourceState::Connected { .. } | SourceState::Following | SourceState::AtEnd) => {
                                reached[i] = true;
                                failing[i] = None;
                            }
                            other => {
                                if let Some(text) = other.describe() {
                                    eprintln!("tokentop: {name}: {text}");
                                }
                            }
                        }
                    }
                },
            }
        }
        anyhow::Ok(())
    })?;
    rt.shutdown_background();
    let mut problems = Vec::new();
    for (i, name) in names.iter().enumerate() {
        match (&failing[i], reached[i]) {
            (Some(e), _) => problems.push(format!("{name}: {}", sanitize(e))),
            (None, false) => problems.push(format!("{name}: no connection within {:.0}s", duration.as_secs_f64())),
            (None, true) => {}
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    eprintln!("tokentop: collected for {:.0}s", duration.as_secs_f64());
    let path = spool.into_temp_path();
    let input = Input::open(path.to_str().context("temporary path is not UTF-8")?)?;
    // The open file keeps the data; the path can go.
    drop(path);
    Ok(input)
}

/// A size such as `128MiB`, `64MB`, `1GiB` or a number of bytes.
fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: usize = n.parse().map_err(|_| format!("`{s}`: expected a size such as 128MiB"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("`{s}`: use B, KiB, MiB or GiB")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("`{s}` is too large"))
}

fn run_serve(args: ServeArgs) -> Result<ExitCode> {
    let specs: Vec<SourceSpec> = args.sources.iter().map(|s| SourceSpec::parse(s)).collect();
    let mut sopts = SourceOptions { ws: args.ws.options()?, ..SourceOptions::default() };
    sopts.follow.follow = !args.no_follow;
    let token = match std::env::var(serve::TOKEN_ENV) {
        Ok(t) if t.trim().is_empty() => bail!(
            "{} is set but empty: set it to a token, or unset it to serve without authentication",
            serve::TOKEN_ENV
        ),
        Ok(t) => Some(t),
        Err(_) => None,
    };
    let opts = ServeOptions {
        listen: args.listen,
        buffer: args.buffer,
        buffer_bytes: args.buffer_bytes,
        token,
        tls: args.tls_cert.zip(args.tls_key),
        backfill: args
            .backfill
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(anyhow::Error::msg)
            .context("--backfill")?,
        handshake_timeout: std::time::Duration::from_micros(
            parse_duration(&args.handshake_timeout).map_err(anyhow::Error::msg).context("--handshake-timeout")? as u64,
        ),
    };
    let names: Vec<String> = specs.iter().map(SourceSpec::display).collect();
    let rt = runtime()?;
    rt.block_on(async {
        let relay = Relay::new(opts.buffer, opts.buffer_bytes);
        let (tx, rx) = source::channel(1024, source::QUEUE_BYTES);
        source::start(&specs, &sopts, tx);
        tokio::spawn(serve::publish_feeds(relay.clone(), rx, names));
        tokio::select! {
            r = serve::serve(opts, relay) => r.map_err(anyhow::Error::from),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

fn run_demo(args: DemoArgs) -> Result<ExitCode> {
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

/// Opens files, `-`, and the files a (quoted) glob matches now.
fn open_inputs(specs: &[String]) -> Result<Vec<Input>> {
    let mut inputs = Vec::new();
    for spec in specs {
        if tokentop::source::file::is_glob(spec) {
            let paths = tokentop::source::file::expand(spec).map_err(anyhow::Error::msg)?;
            if paths.is_empty() {
                bail!("`{spec}` matches no file");
            }
            for p in paths {
                inputs.push(Input::open(&p.to_string_lossy())?);
            }
        } else {
            inputs.push(Input::open(spec)?);
        }
    }
    Ok(inputs)
}

fn load_prices(path: Option<&PathBuf>) -> Result<PriceTable> {
    let mut prices = PriceTable::builtin();
    if let Some(path) = path {
        let text = ingest::read_to_string(path)?;
        prices.extend(PriceTable::from_json(&text).with_context(|| format!("--prices {}", path.display()))?);
    }
    Ok(prices)
}

fn run_console(args: ConsoleArgs) -> Result<ExitCode> {
    if !std::io::stdout().is_terminal() {
        bail!("the console needs a terminal; for numbers in a pipe or a file use `tokentop report`");
    }
    // Layered: command line, then the config file, then the defaults.
    let file = tokentop::config::load(args.config.as_deref())?;
    let keymap = tokentop::config::keymap(&file).map_err(anyhow::Error::msg)?;
    let pick = |cli: Option<String>, file: &Option<String>, default: &str| {
        cli.or_else(|| file.clone()).unwrap_or_else(|| default.to_string())
    };
    let lower = |text: &Option<String>| text.as_ref().map(|t| t.to_ascii_lowercase());
    let sources = if !args.sources.is_empty() {
        args.sources
    } else {
        file.sources.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| vec!["demo".to_string()])
    };
    let specs: Vec<SourceSpec> = sources.iter().map(|s| SourceSpec::parse(s)).collect();
    let window =
        parse_duration(&pick(args.window, &file.window, "1h")).map_err(anyhow::Error::msg).context("window")?;
    if !(MIN_WINDOW..=MAX_WINDOW).contains(&window) {
        bail!("--window must be between 10s and 30d (got {})", tokentop::time::format_duration(window));
    }
    let refresh =
        parse_duration(&pick(args.refresh, &file.refresh, "100ms")).map_err(anyhow::Error::msg).context("refresh")?;
    let theme = match args.theme {
        Some(t) => t,
        None => match lower(&file.theme).as_deref() {
            None | Some("dark") => ThemeArg::Dark,
            Some("light") => ThemeArg::Light,
            Some("mono") => ThemeArg::Mono,
            Some(other) => bail!("config file: theme `{other}`: use dark, light or mono"),
        },
    };
    let clock = match args.clock {
        Some(c) => c,
        None => match lower(&file.clock).as_deref() {
            None | Some("wall") => ClockArg::Wall,
            Some("event") => ClockArg::Event,
            Some(other) => bail!("config file: clock `{other}`: use wall or event"),
        },
    };
    let no_color = args.no_color || std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let theme = match (no_color, theme) {
        (true, _) | (_, ThemeArg::Mono) => ThemeName::Mono,
        (_, ThemeArg::Dark) => ThemeName::Dark,
        (_, ThemeArg::Light) => ThemeName::Light,
    };
    let demo_rate = args.rate.or(file.demo_rate).unwrap_or(50.0);
    // The demo starts with two windows of made-up past (for the changes against the
    // window before), six hours at most; and, unless rules are configured, with
    // alert rules that its incidents set off.
    let demo = specs.iter().any(|s| matches!(s, tokentop::source::SourceSpec::Demo));
    let demo_history = if demo { (2 * window).min(6 * 3_600 * tokentop::time::MICROS_PER_SEC) } else { 0 };
    let alert_tables = match &file.alerts {
        Some(tables) => tables.clone(),
        None if demo => demo_alerts(),
        None => Vec::new(),
    };
    let opts = ConsoleOptions {
        sources: specs,
        source_options: SourceOptions { ws: args.ws.options()?, demo_rate, demo_history, ..SourceOptions::default() },
        window,
        refresh: std::time::Duration::from_micros(refresh as u64),
        theme: Theme::new(theme, !(args.ascii || file.ascii.unwrap_or(false))),
        clock: match clock {
            ClockArg::Wall => Clock::Wall,
            ClockArg::Event => Clock::EventTime,
        },
        prices: load_prices(args.prices.as_ref().or(file.prices.as_ref()))?,
        utc: args.utc || file.utc.unwrap_or(false),
        zone: args.tz,
        mouse: args.mouse || file.mouse.unwrap_or(false),
        keymap,
    };
    // Alert rules: an invalid one is shown in the Alerts view and skipped; a webhook
    // that cannot be set up stops here, before the screen is taken.
    let (rules, problems) = tokentop::alert::parse_rules(&alert_tables);
    let (webhooks, hooks) = (file.webhooks.clone().unwrap_or_default(), file.hooks.clone().unwrap_or_default());
    let bell = args.bell || file.bell.unwrap_or(false);
    let rt = runtime()?;
    let result = rt.block_on(async {
        let notifier = if webhooks.is_empty() && hooks.is_empty() {
            None
        } else {
            Some(tokentop::alert::notify::Notifier::start(&webhooks, &hooks).map_err(anyhow::Error::msg)?)
        };
        let alerting = tokentop::ui::Alerting { rules, problems, notifier, bell };
        tokentop::ui::run(opts, alerting).await.context("terminal error")
    });
    rt.shutdown_background();
    result?;
    Ok(ExitCode::SUCCESS)
}

/// Window lengths the console can show.
const MIN_WINDOW: i64 = 10 * tokentop::time::MICROS_PER_SEC;
const MAX_WINDOW: i64 = 30 * 86_400 * tokentop::time::MICROS_PER_SEC;

/// The alert rules the demo runs with when none are configured.
fn demo_alerts() -> Vec<toml::Table> {
    #[derive(serde::Deserialize)]
    struct File {
        alerts: Vec<toml::Table>,
    }
    let file: File = toml::from_str(include_str!("../assets/demo-alerts.toml")).expect("the demo's rules parse");
    file.alerts
}

fn run_check(args: CheckArgs) -> Result<ExitCode> {
    let config_error = |e: &dyn std::fmt::Display| {
        eprintln!("tokentop: {e}");
        Ok(ExitCode::from(2))
    };
    let file = match tokentop::config::load(Some(&args.config)) {
        Ok(f) => f,
        Err(e) => return config_error(&e),
    };
    let (rules, invalid) = tokentop::alert::parse_rules(file.alerts.as_deref().unwrap_or_default());
    for e in &invalid {
        eprintln!("tokentop: {}: {e}", args.config.display());
    }
    if rules.is_empty() {
        return config_error(&format!("{}: no valid alert rule ([[alerts]] tables)", args.config.display()));
    }
    let prices = load_prices(args.prices.as_ref())?;
    let inputs = open_inputs(&args.inputs)?;
    let mut counts = None;
    let read = ingest::ReadOptions { threads: 1, format: args.input_format, progress: None, zone: args.tz };
    let result = tokentop::alert::check(&rules, |visit| {
        let mut cache = tokentop::pricing::PriceCache::default();
        counts = Some(ingest::read_each(&inputs, read, |ev| {
            let price = cache.get(&prices, ev.provider(), ev.model());
            visit(ev, tokentop::stats::Sample::new(ev, tokentop::pricing::cost_of(ev, price.as_ref())));
        }));
    });
    if let Some(c) = counts {
        print_bad_lines(&c?);
    }
    if args.notify && !result.firing.is_empty() {
        let webhooks = file.webhooks.clone().unwrap_or_default();
        let hooks = file.hooks.clone().unwrap_or_default();
        let rt = runtime()?;
        rt.block_on(async {
            let notifier = match tokentop::alert::notify::Notifier::start(&webhooks, &hooks) {
                Ok(n) => n,
                Err(e) => return Err(anyhow::anyhow!("{}: {e}", args.config.display())),
            };
            let now = tokentop::time::format_rfc3339(tokentop::time::now());
            let all: Vec<_> = result
                .firing
                .iter()
                .map(|f| {
                    let window = rules.iter().find(|r| r.name == f.rule).map_or(0, |r| r.window);
                    tokentop::alert::notify::Notification::new(f, "firing", window, &now)
                })
                .collect();
            let late = notifier.deliver_now(&all).await;
            if late > 0 {
                eprintln!("tokentop: {late} notifications were not delivered before the deadline");
            }
            for d in notifier.deliveries.lock().expect("lock").iter() {
                if let Some(e) = &d.last_error {
                    eprintln!("tokentop: webhook {}: {} failed ({e})", d.target, d.failed);
                }
            }
            Ok(())
        })?;
    }
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &result)?;
    writeln!(out)?;
    Ok(if result.firing.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
