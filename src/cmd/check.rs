//! `tokentop check`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

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
