//! One module a command; what several share is here: inputs, prices, the runtime,
//! WebSocket options, bad-line messages.

pub(crate) mod check;
pub(crate) mod console;
pub(crate) mod demo;
pub(crate) mod export;
pub(crate) mod proxy;
pub(crate) mod report;
pub(crate) mod serve;
pub(crate) mod ship;

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use tokentop::ingest::{self, Input};
use tokentop::pricing::PriceTable;
use tokentop::source::{self, SourceOptions, SourceSpec, SourceState, Update};
use tokentop::text::sanitize;

/// Options for WebSocket sources.
#[derive(clap::Args)]
pub(crate) struct WsArgs {
    /// Extra header for WebSocket sources, 'Name: value' (repeatable). For secrets use
    /// TOKENTOP_WS_TOKEN, sent as a bearer token.
    #[arg(long = "header", value_name = "HEADER")]
    pub(crate) headers: Vec<String>,
}

impl WsArgs {
    pub(crate) fn options(&self) -> Result<tokentop::source::ws::WsOptions> {
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

/// Options for OTLP receivers.
#[derive(clap::Args)]
pub(crate) struct OtlpArgs {
    /// Receive OpenTelemetry traces on this address, OTLP/HTTP (POST /v1/traces, protobuf
    /// or JSON) and OTLP/gRPC on the same port (repeatable; e.g. 127.0.0.1:4318). Exporters
    /// must send TOKENTOP_OTLP_TOKEN as a bearer token when it is set.
    #[arg(long = "otlp", id = "otlp", value_name = "ADDR")]
    pub(crate) addrs: Vec<String>,
    /// Largest export an OTLP receiver accepts, after decompression.
    #[arg(long = "otlp-max-body", default_value = "16MiB", value_name = "SIZE", value_parser = serve::parse_size)]
    pub(crate) max_body: usize,
    /// TLS certificate chain (PEM) for the OTLP receivers; with --otlp-tls-key, they
    /// take only HTTPS and gRPC over TLS.
    #[arg(long, value_name = "FILE", requires = "otlp_tls_key")]
    pub(crate) otlp_tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for the OTLP receivers.
    #[arg(long, value_name = "FILE", requires = "otlp_tls_cert")]
    pub(crate) otlp_tls_key: Option<PathBuf>,
}

impl OtlpArgs {
    pub(crate) fn options(&self) -> Result<tokentop::source::otlp::OtlpOptions> {
        let env = tokentop::source::otlp::TOKEN_ENV;
        let token = match std::env::var(env) {
            Ok(t) if t.trim().is_empty() => {
                bail!("{env} is set but empty: set it to a token, or unset it to receive without one")
            }
            Ok(t) => Some(t.trim().to_string()),
            Err(_) => None,
        };
        Ok(tokentop::source::otlp::OtlpOptions {
            token,
            max_body: self.max_body,
            tls: self.otlp_tls_cert.clone().zip(self.otlp_tls_key.clone()),
        })
    }

    /// The receivers as sources, after those named on the command line.
    pub(crate) fn specs(&self) -> impl Iterator<Item = SourceSpec> + '_ {
        self.addrs.iter().map(|a| SourceSpec::Otlp(a.clone()))
    }
}

/// Options for Prometheus metrics.
#[derive(clap::Args)]
pub(crate) struct MetricsArgs {
    /// Serve Prometheus metrics of every event seen at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics: Option<String>,
    /// Add a label to the metrics: `user`, or a property name (repeatable, at most 4;
    /// each label keeps 500 values, the rest are `(other)`).
    #[arg(long = "metrics-label", value_name = "NAME", requires = "metrics")]
    pub(crate) labels: Vec<String>,
}

impl MetricsArgs {
    /// Starts the metrics endpoint (within a runtime) when asked for; `tell` says where
    /// on stderr (not for the console, whose screen would hide it).
    pub(crate) async fn start(&self, tell: bool) -> Result<Option<std::sync::Arc<tokentop::metrics::Metrics>>> {
        let Some(addr) = &self.metrics else { return Ok(None) };
        let metrics = tokentop::metrics::Metrics::new(&self.labels).map_err(anyhow::Error::msg)?;
        let local = tokentop::metrics::serve(addr, metrics.clone()).await.map_err(anyhow::Error::msg)?;
        if tell {
            eprintln!("tokentop: metrics on http://{local}/metrics");
        }
        Ok(Some(metrics))
    }
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Reads sources for `duration` (files to their end) into a temporary file, for `report`.
/// A source that never delivered (refused, unauthorised, unreadable) or that is
/// failing at the end is an error: a report of nothing must not pass for a quiet hour.
pub(crate) fn collect_live(specs: &[SourceSpec], ws: &WsArgs, duration: std::time::Duration) -> Result<Input> {
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
                            Update::State(
                                SourceState::Connected { .. }
                                | SourceState::Following
                                | SourceState::AtEnd
                                | SourceState::Listening(_),
                            ) => {
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

/// Opens files, `-`, and the files a (quoted) glob matches now.
pub(crate) fn open_inputs(specs: &[String]) -> Result<Vec<Input>> {
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

/// Whether a source names a ClickHouse table (`clickhouse://…`, `clickhouses://…`).
pub(crate) fn is_clickhouse(spec: &str) -> bool {
    spec.starts_with("clickhouse://") || spec.starts_with("clickhouses://")
}

/// A ClickHouse table to read, the password from the environment.
pub(crate) fn open_store(url: &str) -> Result<tokentop::clickhouse::Store> {
    let password = std::env::var(tokentop::ship::PASSWORD_ENV).ok();
    let target = tokentop::ship::Target::parse(url, None, password).map_err(anyhow::Error::msg)?;
    let layout = tokentop::clickhouse::layout_named(target.schema.as_deref()).map_err(anyhow::Error::msg)?;
    tokentop::clickhouse::Store::new(target, layout).map_err(anyhow::Error::msg)
}

pub(crate) fn load_prices(path: Option<&PathBuf>) -> Result<PriceTable> {
    let mut prices = PriceTable::builtin();
    if let Some(path) = path {
        let text = ingest::read_to_string(path)?;
        prices.extend(PriceTable::from_json(&text).with_context(|| format!("--prices {}", path.display()))?);
    }
    Ok(prices)
}

pub(crate) fn parse_time(flag: &str, s: &str) -> Result<tokentop::time::Micros> {
    if let Ok(ms) = s.parse::<f64>() {
        return tokentop::time::from_epoch_ms(ms).map_err(|e| anyhow::anyhow!("{flag} {s}: {e}"));
    }
    tokentop::time::parse_rfc3339(s)
        .map_err(|e| anyhow::anyhow!("{flag} {s}: {e}; use RFC 3339 (2025-01-01T00:00:00Z) or epoch milliseconds"))
}

/// The first bad lines and unreadable fields, on stderr; their text comes from the
/// input, so it is sanitised.
pub(crate) fn print_bad_lines(counts: &ingest::Counts) {
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
