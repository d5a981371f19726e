//! `tokentop check`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use tokentop::ingest::{self};
use tokentop::parse::Format;

use super::*;

#[derive(clap::Args)]
pub(crate) struct CheckArgs {
    /// The config file with the `[[alerts]]` rules.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: PathBuf,
    /// Read every input as this format instead of detecting it per line.
    #[arg(long, value_name = "NAME")]
    pub(crate) input_format: Option<Format>,
    /// The time zone of timestamps written without an offset (LiteLLM, ClickHouse):
    /// UTC, local, an offset such as +05:30, or a name such as Europe/Berlin.
    #[arg(long, value_name = "ZONE", default_value = "UTC")]
    pub(crate) tz: tokentop::time::Zone,
    /// Extra or replacement prices, in the shape of assets/pricing.json.
    #[arg(long, value_name = "FILE")]
    pub(crate) prices: Option<PathBuf>,
    /// Send the alerts firing at the end to the config's webhooks and hooks.
    #[arg(long)]
    pub(crate) notify: bool,
    /// Input files (`-` reads standard input, quoted globs work).
    #[arg(required = true, value_name = "FILE")]
    pub(crate) inputs: Vec<String>,
}

/// The rules evaluated on a ClickHouse table, step by step over all its rows, from
/// aggregates the server computes per step (as `check` keeps them from events).
fn check_clickhouse(url: &str, rules: &[tokentop::alert::Rule]) -> Result<tokentop::alert::CheckResult> {
    let store = open_store(url)?;
    let rt = runtime()?;
    let name = store.target().name();
    rt.block_on(async {
        let extent = store.extent().await?;
        if extent.rows == 0 {
            return Ok(tokentop::alert::check_buckets(rules, &[], extent.first, extent.last));
        }
        let step = tokentop::alert::check_step(extent.first, extent.last);
        let span = tokentop::report::Span { start: extent.first, end: extent.last, start_inclusive: true };
        let mut per_rule = Vec::new();
        for rule in rules {
            per_rule.push(store.step_stats(&span, step, rule.filter.as_ref(), tokentop::alert::CHECK_LIMITS).await?);
        }
        Ok(tokentop::alert::check_buckets(rules, &per_rule, extent.first, extent.last))
    })
    .map_err(|e: tokentop::ship::InsertError| anyhow::anyhow!(e))
    .with_context(|| format!("reading {name}"))
}

pub(crate) fn run_check(args: CheckArgs) -> Result<ExitCode> {
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
    let result = match args.inputs.iter().find(|i| is_clickhouse(i)) {
        Some(url) if args.inputs.len() > 1 => bail!("check reads one ClickHouse table, or files: give {url} alone"),
        Some(url) => check_clickhouse(url, &rules)?,
        None => {
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
            result
        }
    };
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
