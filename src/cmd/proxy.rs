//! `tokentop proxy`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use tokentop::proxy::{ProxyOptions, Upstream};
use tokentop::source::{self, SourceOptions, SourceSpec, SourceState, Update};

use super::console::{ConsoleArgs, run_console_with};
use super::*;

#[derive(clap::Args)]
pub(crate) struct ProxyArgs {
    /// Address to listen on; point an SDK's base URL here.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub(crate) listen: String,
    /// Where calls go: a URL for every path, or PREFIX=URL for the paths under PREFIX
    /// (repeatable; the longest prefix wins; the prefix is replaced by the URL's path).
    #[arg(long = "upstream", required = true, value_name = "[PREFIX=]URL", value_parser = Upstream::parse)]
    pub(crate) upstreams: Vec<Upstream>,
    /// Append every call to this file as a tokentop JSON line.
    #[arg(long, value_name = "FILE")]
    pub(crate) log: Option<PathBuf>,
    /// No console: events go to --log, or to standard output without it.
    #[arg(long)]
    pub(crate) headless: bool,
    #[command(flatten)]
    pub(crate) console: ConsoleArgs,
}

pub(crate) fn run_proxy(args: ProxyArgs) -> Result<ExitCode> {
    let proxy =
        SourceSpec::Proxy(ProxyOptions { listen: args.listen, upstreams: args.upstreams, log: args.log.clone() });
    if !args.headless {
        return run_console_with(args.console, vec![proxy]);
    }
    let specs: Vec<SourceSpec> = args
        .console
        .sources
        .iter()
        .map(|s| SourceSpec::parse(s))
        .chain(args.console.otlp.specs())
        .chain([proxy])
        .collect();
    let opts = SourceOptions {
        ws: args.console.ws.options()?,
        otlp: args.console.otlp.options()?,
        ..SourceOptions::default()
    };
    let names: Vec<String> = specs.iter().map(SourceSpec::display).collect();
    let to_stdout = args.log.is_none();
    let proxy_index = specs.len() - 1;
    let rt = runtime()?;
    let failed = rt.block_on(async {
        let metrics = match args.console.metrics.start(true).await {
            Ok(m) => m,
            Err(e) => {
                eprintln!("tokentop: {e:#}");
                return true;
            }
        };
        // With metrics, every source's lines are parsed (one parser a source) to count them.
        let mut parsers: Vec<tokentop::parse::LineParser> =
            (0..names.len()).map(|_| tokentop::parse::LineParser::new(None)).collect();
        let mut count = tokentop::metrics::Counter::new(metrics.clone());
        let (tx, mut rx) = source::channel(1024, source::QUEUE_BYTES);
        source::start(&specs, &opts, tx);
        let mut stdout = std::io::stdout().lock();
        loop {
            let feed = tokio::select! {
                feed = rx.recv() => feed,
                _ = tokio::signal::ctrl_c() => return false,
            };
            let Some(feed) = feed else { return false };
            let name = &names[feed.source];
            if let (Update::Lines(lines), Some(_)) = (&feed.update, &metrics) {
                let parser = &mut parsers[feed.source];
                for line in tokentop::parse::lines(lines) {
                    let _ = parser.parse(line, &mut |ev| count.event(ev));
                }
                parser.release_quiet(&mut |ev| count.event(ev));
            }
            match feed.update {
                // The proxy's own lines are in its log when there is one.
                Update::Lines(lines) if to_stdout || feed.source != proxy_index => {
                    if stdout.write_all(&lines).and_then(|()| stdout.flush()).is_err() {
                        return false;
                    }
                }
                Update::Lines(_) => {}
                Update::State(SourceState::Failed(e)) => {
                    eprintln!("tokentop: {name}: {}", tokentop::text::sanitize(&e));
                    if feed.source == proxy_index {
                        return true;
                    }
                }
                Update::State(s) => eprintln!("tokentop: {name}: {s}"),
                other => {
                    if let Some(text) = other.describe() {
                        eprintln!("tokentop: {name}: {text}");
                    }
                }
            }
        }
    });
    rt.shutdown_background();
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
