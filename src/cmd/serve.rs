//! `tokentop serve`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use tokentop::serve::{self, Relay, ServeOptions};
use tokentop::source::{self, SourceOptions, SourceSpec};
use tokentop::time::parse_duration;

use super::*;

#[derive(clap::Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8787", value_name = "ADDR")]
    pub(crate) listen: std::net::SocketAddr,
    /// Events kept for clients that reconnect with `since`.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub(crate) buffer: usize,
    /// Bytes of event text kept for clients that reconnect (the older events go first).
    #[arg(long, default_value = "128MiB", value_name = "SIZE", value_parser = parse_size)]
    pub(crate) buffer_bytes: usize,
    /// Send new clients the buffered events of this last window (e.g. 1h).
    #[arg(long, value_name = "DURATION", num_args = 0..=1, default_missing_value = "1h")]
    pub(crate) backfill: Option<String>,
    /// TLS certificate chain (PEM); with --tls-key, serves wss://.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Close connections that have not completed their TLS and WebSocket handshake within this long.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub(crate) handshake_timeout: String,
    /// Read files to their end and stop following them.
    #[arg(long)]
    pub(crate) no_follow: bool,
    #[command(flatten)]
    pub(crate) ws: WsArgs,
    #[command(flatten)]
    pub(crate) otlp: OtlpArgs,
    #[command(flatten)]
    pub(crate) metrics: MetricsArgs,
    /// Sources: files (followed), globs, `-`, ws:// URLs, or `demo`.
    #[arg(required_unless_present = "otlp", value_name = "SOURCE")]
    pub(crate) sources: Vec<String>,
}

/// A size such as `128MiB`, `64MB`, `1GiB` or a number of bytes.
pub(crate) fn parse_size(s: &str) -> Result<usize, String> {
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

pub(crate) fn run_serve(args: ServeArgs) -> Result<ExitCode> {
    let specs: Vec<SourceSpec> = args.sources.iter().map(|s| SourceSpec::parse(s)).chain(args.otlp.specs()).collect();
    let mut sopts = SourceOptions { ws: args.ws.options()?, otlp: args.otlp.options()?, ..SourceOptions::default() };
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
        let metrics = args.metrics.start(true).await?;
        tokio::spawn(serve::publish_feeds(relay.clone(), rx, names, metrics));
        tokio::select! {
            r = serve::serve(opts, relay) => r.map_err(anyhow::Error::from),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })?;
    Ok(ExitCode::SUCCESS)
}
