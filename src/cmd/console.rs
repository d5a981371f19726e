//! The console (no command): options, config file, theme, the demo's defaults.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::ValueEnum;

use std::io::IsTerminal;

use tokentop::engine::Clock;
use tokentop::source::{SourceOptions, SourceSpec};
use tokentop::time::parse_duration;
use tokentop::ui::ConsoleOptions;
use tokentop::ui::theme::{Theme, ThemeName};

use super::*;

#[derive(clap::Args)]
pub(crate) struct ConsoleArgs {
    /// Sources: files (followed), quoted globs, `-`, ws:// or wss:// URLs, or `demo` (the default).
    #[arg(value_name = "SOURCE")]
    pub(crate) sources: Vec<String>,
    /// Config file [default: ~/.config/tokentop/config.toml].
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// The window shown first: any length from 10s to 30d, kept as given besides 1m, 5m, 15m, 1h, 6h, 24h and 7d ([ and ] go through them) [default: 1h].
    #[arg(long)]
    pub(crate) window: Option<String>,
    /// Redraw at most this often [default: 100ms].
    #[arg(long)]
    pub(crate) refresh: Option<String>,
    /// Colours [default: dark].
    #[arg(long, value_enum)]
    pub(crate) theme: Option<ThemeArg>,
    /// No colours (also when NO_COLOR is set).
    #[arg(long)]
    pub(crate) no_color: bool,
    /// Plain dots instead of braille in charts (for fonts without braille).
    #[arg(long)]
    pub(crate) ascii: bool,
    /// Windows end at the wall clock (live traffic) or at the latest event (replaying old logs) [default: wall].
    #[arg(long, value_enum)]
    pub(crate) clock: Option<ClockArg>,
    /// Extra or replacement prices, in the shape of assets/pricing.json.
    #[arg(long, value_name = "FILE")]
    pub(crate) prices: Option<PathBuf>,
    /// Show times in UTC instead of local time.
    #[arg(long)]
    pub(crate) utc: bool,
    /// The time zone of timestamps written without an offset (LiteLLM, ClickHouse):
    /// UTC, local, an offset such as +05:30, or a name such as Europe/Berlin.
    #[arg(long, value_name = "ZONE", default_value = "UTC")]
    pub(crate) tz: tokentop::time::Zone,
    /// Events per second of the `demo` source [default: 50].
    #[arg(long)]
    pub(crate) rate: Option<f64>,
    /// How much made-up past the `demo` source starts with [default: two windows, at
    /// most 6h and 1,000,000 events; 0 for none].
    #[arg(long, value_name = "DURATION")]
    pub(crate) demo_history: Option<String>,
    /// Use the mouse: wheel to scroll, click a tab or a row (off by default so text can be selected).
    #[arg(long)]
    pub(crate) mouse: bool,
    /// Ring the terminal bell when an alert fires.
    #[arg(long)]
    pub(crate) bell: bool,
    #[command(flatten)]
    pub(crate) ws: WsArgs,
    #[command(flatten)]
    pub(crate) otlp: OtlpArgs,
    #[command(flatten)]
    pub(crate) metrics: MetricsArgs,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ThemeArg {
    Dark,
    Light,
    Mono,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ClockArg {
    Wall,
    Event,
}

pub(crate) fn run_console(args: ConsoleArgs) -> Result<ExitCode> {
    run_console_with(args, Vec::new())
}

/// The console on its arguments' sources and `extra` ones (a command's own, such as
/// `proxy`'s); the demo only when there are none at all.
pub(crate) fn run_console_with(args: ConsoleArgs, extra: Vec<SourceSpec>) -> Result<ExitCode> {
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
    let sources = if !args.sources.is_empty() || !args.otlp.addrs.is_empty() || !extra.is_empty() {
        args.sources
    } else {
        file.sources.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| vec!["demo".to_string()])
    };
    // A ClickHouse table is read alone: its numbers are the whole screen.
    let store = match sources.iter().find(|s| is_clickhouse(s)) {
        Some(url) if sources.len() > 1 || !args.otlp.addrs.is_empty() || !extra.is_empty() => {
            bail!(
                "{url}: a console reads one ClickHouse table alone (ship the other sources into it with `tokentop ship`)"
            )
        }
        Some(url) => Some(open_store(url)?),
        None => None,
    };
    let specs: Vec<SourceSpec> = match store {
        Some(_) => Vec::new(),
        None => sources.iter().map(|s| SourceSpec::parse(s)).chain(args.otlp.specs()).chain(extra).collect(),
    };
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
    let demo_history = match (&args.demo_history, demo) {
        (_, false) => 0,
        (Some(d), true) if d.trim() == "0" => 0,
        (Some(d), true) => parse_duration(d).map_err(anyhow::Error::msg).context("--demo-history")?,
        (None, true) => {
            let events_worth = (DEMO_HISTORY_EVENTS / demo_rate * 1e6) as i64;
            (2 * window).min(6 * 3_600 * tokentop::time::MICROS_PER_SEC).min(events_worth)
        }
    };
    let alert_tables = match &file.alerts {
        Some(tables) => tables.clone(),
        None if demo => demo_alerts(),
        None => Vec::new(),
    };
    let opts = ConsoleOptions {
        sources: specs,
        source_options: SourceOptions {
            ws: args.ws.options()?,
            otlp: args.otlp.options()?,
            demo_rate,
            demo_history,
            ..SourceOptions::default()
        },
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
        metrics: None,
        store,
    };
    // Alert rules: an invalid one is shown in the Alerts view and skipped; a webhook
    // that cannot be set up stops here, before the screen is taken.
    let (rules, problems) = tokentop::alert::parse_rules(&alert_tables);
    let (webhooks, hooks) = (file.webhooks.clone().unwrap_or_default(), file.hooks.clone().unwrap_or_default());
    let bell = args.bell || file.bell.unwrap_or(false);
    let rt = runtime()?;
    let mut opts = opts;
    let result = rt.block_on(async {
        // Before the screen is taken, so that an address in use is told plainly.
        opts.metrics = args.metrics.start(false).await?;
        // And a table that cannot be read.
        if let Some(store) = &opts.store {
            store.extent().await.with_context(|| format!("reading {}", store.target().name()))?;
        }
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

/// The demo's made-up past is at most this many events (a few seconds to load).
const DEMO_HISTORY_EVENTS: f64 = 1_000_000.0;

/// Window lengths the console can show.
pub(crate) const MIN_WINDOW: i64 = 10 * tokentop::time::MICROS_PER_SEC;

pub(crate) const MAX_WINDOW: i64 = 30 * 86_400 * tokentop::time::MICROS_PER_SEC;

/// The alert rules the demo runs with when none are configured.
pub(crate) fn demo_alerts() -> Vec<toml::Table> {
    #[derive(serde::Deserialize)]
    struct File {
        alerts: Vec<toml::Table>,
    }
    let file: File = toml::from_str(include_str!("../../assets/demo-alerts.toml")).expect("the demo's rules parse");
    file.alerts
}
