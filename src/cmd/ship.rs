//! `tokentop ship`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use tokentop::clickhouse::{Store, TOKENTOP, rollup};
use tokentop::parse::LineParser;
use tokentop::pricing::{PriceCache, cost_of};
use tokentop::ship::{Batch, Client, InsertError, PASSWORD_ENV, Spool, Target, write_row};
use tokentop::source::{self, SourceOptions, SourceSpec, SourceState, Update};
use tokentop::time::parse_duration;

use super::serve::parse_size;
use super::*;

#[derive(clap::Args)]
pub(crate) struct ShipArgs {
    /// The table: clickhouse://[USER@]HOST:8123/DATABASE[?table=NAME] (default table
    /// `events`; clickhouses:// for HTTPS). The password comes from
    /// TOKENTOP_CLICKHOUSE_PASSWORD.
    #[arg(long, value_name = "URL", required_unless_present = "print_schema")]
    pub(crate) to: Option<String>,
    /// ClickHouse user (instead of USER@ in the URL).
    #[arg(long)]
    pub(crate) user: Option<String>,
    /// Create the table and its rollup tables if they do not exist.
    #[arg(long)]
    pub(crate) create_table: bool,
    /// Fill the rollup of every minute of the table that needs it, and exit (for a
    /// table shipped before its rollup tables existed).
    #[arg(long)]
    pub(crate) fill_rollup: bool,
    /// Print the DDL of the table and its rollup tables, and exit.
    #[arg(long)]
    pub(crate) print_schema: bool,
    /// Insert when this many events wait (ClickHouse takes fewer, larger inserts
    /// best: at a gateway's rate, `--batch-interval` sends them first).
    #[arg(long, default_value_t = 50_000, value_name = "N")]
    pub(crate) batch_rows: usize,
    /// Insert at least this often when events wait.
    #[arg(long, default_value = "1s", value_name = "DURATION")]
    pub(crate) batch_interval: String,
    /// Where batches wait while ClickHouse cannot take them [default: a directory per
    /// table under ~/.cache/tokentop/spool].
    #[arg(long, value_name = "DIR")]
    pub(crate) spool: Option<PathBuf>,
    /// The spool's bound; past it, new batches are dropped and counted.
    #[arg(long, default_value = "1GiB", value_name = "SIZE", value_parser = parse_size)]
    pub(crate) spool_max: usize,
    /// Read files to their end and stop following them (ship exits once all is in).
    #[arg(long)]
    pub(crate) no_follow: bool,
    /// Extra or replacement prices, in the shape of assets/pricing.json.
    #[arg(long, value_name = "FILE")]
    pub(crate) prices: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) ws: WsArgs,
    #[command(flatten)]
    pub(crate) otlp: OtlpArgs,
    /// Sources: files (followed), globs, `-`, ws:// URLs, `otlp://ADDR`, or `demo`.
    #[arg(value_name = "SOURCE")]
    pub(crate) sources: Vec<String>,
}

/// What the shipper has done, for its status lines.
#[derive(Default)]
struct Counts {
    shipped: AtomicU64,
    dropped: AtomicU64,
    failures: AtomicU64,
    /// Batches handed to the sender and not yet inserted or spooled.
    in_flight: AtomicU64,
}

/// Minutes whose rows ship has handed over and whose rollup is not filled yet, each
/// with the number of the last batch that touched it.
#[derive(Default)]
struct Touched {
    minutes: std::collections::BTreeMap<i64, u64>,
    batch: u64,
}

/// How often the rollup of the minutes shipped is filled.
const FILL_EVERY: Duration = Duration::from_secs(5);

pub(crate) fn run_ship(args: ShipArgs) -> Result<ExitCode> {
    let password = std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty());
    let url = args.to.clone().unwrap_or_else(|| "clickhouse://localhost:8123/default".into());
    let target = Target::parse(&url, args.user.clone(), password).map_err(anyhow::Error::msg).context("--to")?;
    if target.schema.as_deref().is_some_and(|s| s != "tokentop") {
        bail!("--to: ship writes tokentop's own table; schema= is for reading (report, the console)");
    }
    if args.print_schema {
        println!("{};", target.schema());
        for ddl in rollup::schemas(&target) {
            println!("\n{ddl};");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let store = Store::new(target.clone(), TOKENTOP).map_err(anyhow::Error::msg)?;
    if args.fill_rollup {
        let rt = runtime()?;
        let n = rt
            .block_on(async {
                if args.create_table {
                    let client = Client::new(target.clone()).map_err(InsertError::Unreachable)?;
                    for ddl in rollup::schemas(&target) {
                        client.execute(&ddl, Vec::new()).await?;
                    }
                }
                store.fill_rollup(None).await
            })
            .map_err(|e| anyhow::anyhow!("filling the rollup of {}: {e}", target.name()))?;
        eprintln!("tokentop: filled the rollup of {n} minutes of {}", target.name());
        return Ok(ExitCode::SUCCESS);
    }
    let specs: Vec<SourceSpec> = args.sources.iter().map(|s| SourceSpec::parse(s)).chain(args.otlp.specs()).collect();
    if specs.is_empty() {
        bail!("nothing to ship: name a source (a file, -, ws://…, demo) or --otlp ADDR");
    }
    let interval = Duration::from_micros(
        parse_duration(&args.batch_interval).map_err(anyhow::Error::msg).context("--batch-interval")? as u64,
    );
    let spool_dir = match &args.spool {
        Some(d) => d.clone(),
        None => default_spool(&target),
    };
    let mut sopts = SourceOptions { ws: args.ws.options()?, otlp: args.otlp.options()?, ..SourceOptions::default() };
    sopts.follow.follow = !args.no_follow;
    let prices = load_prices(args.prices.as_ref())?;
    let names: Vec<String> = specs.iter().map(SourceSpec::display).collect();
    let client = Client::new(target.clone()).map_err(anyhow::Error::msg)?;
    let spool = Arc::new(Mutex::new(Spool::open(&spool_dir, args.spool_max as u64).map_err(anyhow::Error::msg)?));
    let counts = Arc::new(Counts::default());
    let rt = runtime()?;
    rt.block_on(async {
        // The table first: a wrong address or password is told now, not in the spool.
        if args.create_table {
            for ddl in std::iter::once(target.schema()).chain(rollup::schemas(&target)) {
                client
                    .execute(&ddl, Vec::new())
                    .await
                    .map_err(|e| anyhow::anyhow!("creating {}: {e}", target.name()))?;
            }
        }
        client
            .execute(&format!("SELECT 1 FROM {} LIMIT 0", target.name()), Vec::new())
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e} (add --create-table to create it)", target.name()))?;
        eprintln!("tokentop: shipping to {} at {} (spool {})", target.name(), target.base, spool_dir.display());

        let (batches_tx, batches_rx) = tokio::sync::mpsc::channel::<Batch>(4);
        let sender = tokio::spawn(send_batches(client.clone(), batches_rx, spool.clone(), counts.clone()));
        let touched = Arc::new(Mutex::new(Touched::default()));
        let filler = tokio::spawn(fill_rollup(store.clone(), touched.clone(), spool.clone(), counts.clone()));
        let (tx, mut rx) = source::channel(1024, source::QUEUE_BYTES);
        source::start(&specs, &sopts, tx);

        let mut parsers: Vec<LineParser> = specs.iter().map(|_| LineParser::new(None)).collect();
        let mut cache = PriceCache::default();
        let (mut batch, mut rows) = (Vec::with_capacity(8 << 20), 0usize);
        // The minutes of the batch being made (the last one, and all).
        let mut minutes: (i64, Vec<i64>) = (i64::MIN, Vec::new());
        let touch = |minutes: &mut (i64, Vec<i64>), t: i64| {
            let m = t.div_euclid(60_000_000);
            if m != minutes.0 {
                minutes.0 = m;
                minutes.1.push(m);
            }
        };
        let mut tick = tokio::time::interval(interval);
        let mut status = tokio::time::interval(Duration::from_secs(10));
        let started = Instant::now();
        let mut bad = 0u64;
        let flush = |batch: &mut Vec<u8>, rows: &mut usize, minutes: &mut (i64, Vec<i64>)| {
            if *rows == 0 {
                return;
            }
            let n = std::mem::take(rows) as u64;
            let full = Batch { rows: n, data: std::mem::replace(batch, Vec::with_capacity(8 << 20)) };
            {
                let mut t = touched.lock().expect("touched");
                t.batch += 1;
                let b = t.batch;
                for m in minutes.1.drain(..) {
                    t.minutes.insert(m, b);
                }
                minutes.0 = i64::MIN;
            }
            counts.in_flight.fetch_add(1, Ordering::SeqCst);
            if let Err(tokio::sync::mpsc::error::TrySendError::Full(full)) = batches_tx.try_send(full) {
                // ClickHouse is slow or down: the batch waits on disk.
                spool_or_drop(&spool, &full, &counts);
                counts.in_flight.fetch_sub(1, Ordering::SeqCst);
            }
        };
        loop {
            let feed = tokio::select! {
                feed = rx.recv() => feed,
                _ = tick.tick() => {
                    for (i, p) in parsers.iter_mut().enumerate() {
                        p.release_quiet(&mut |ev| {
                            let cost = cost_of(ev, cache.get(&prices, ev.provider(), ev.model()).as_ref());
                            write_row(ev, cost, &names[i], "", &mut batch);
                            touch(&mut minutes, ev.created_at);
                            rows += 1;
                        });
                    }
                    flush(&mut batch, &mut rows, &mut minutes);
                    continue;
                }
                _ = status.tick() => {
                    let shipped = counts.shipped.load(Ordering::Relaxed);
                    eprintln!(
                        "tokentop: shipped {shipped} events ({:.0}/s), spool {:.1} MB, dropped {}, failed inserts {}",
                        shipped as f64 / started.elapsed().as_secs_f64().max(1e-9),
                        spool.lock().expect("spool").bytes() as f64 / 1e6,
                        counts.dropped.load(Ordering::Relaxed),
                        counts.failures.load(Ordering::Relaxed)
                    );
                    continue;
                }
                _ = tokio::signal::ctrl_c() => break,
            };
            let Some(feed) = feed else { break };
            let name = &names[feed.source];
            match feed.update {
                Update::Lines(lines) => {
                    let parser = &mut parsers[feed.source];
                    for line in tokentop::parse::lines(&lines) {
                        // An event without a request id is keyed by its line, so a
                        // batch sent twice folds into one row each.
                        let mut k = 0u32;
                        let r = parser.parse(line, &mut |ev| {
                            let id = if ev.request_id.as_deref().is_none_or(str::is_empty) {
                                format!("tt-{:016x}-{k}", xxhash_rust::xxh3::xxh3_64(line))
                            } else {
                                String::new()
                            };
                            k += 1;
                            let cost = cost_of(ev, cache.get(&prices, ev.provider(), ev.model()).as_ref());
                            write_row(ev, cost, name, &id, &mut batch);
                            touch(&mut minutes, ev.created_at);
                            rows += 1;
                        });
                        if let Err(e) = r {
                            bad += 1;
                            if bad <= 10 {
                                eprintln!("tokentop: {name}: {}", tokentop::text::sanitize(&e.to_string()));
                            }
                        }
                        if rows >= args.batch_rows {
                            flush(&mut batch, &mut rows, &mut minutes);
                        }
                    }
                }
                Update::State(SourceState::Failed(e)) => {
                    eprintln!("tokentop: {name}: {}", tokentop::text::sanitize(&e))
                }
                Update::State(s) => eprintln!("tokentop: {name}: {s}"),
                other => {
                    if let Some(text) = other.describe() {
                        eprintln!("tokentop: {name}: {text}");
                    }
                }
            }
        }
        for (i, p) in parsers.iter_mut().enumerate() {
            p.finish(&mut |ev| {
                let cost = cost_of(ev, cache.get(&prices, ev.provider(), ev.model()).as_ref());
                write_row(ev, cost, &names[i], "", &mut batch);
                touch(&mut minutes, ev.created_at);
                rows += 1;
            });
        }
        flush(&mut batch, &mut rows, &mut minutes);
        drop(batches_tx);
        // Everything read goes in before ship exits (or waits in the spool for next time).
        let drained = tokio::select! {
            r = sender => r.is_ok(),
            _ = tokio::signal::ctrl_c() => false,
        };
        filler.abort();
        if drained {
            let secs = started.elapsed().as_secs_f64();
            let shipped = counts.shipped.load(Ordering::Relaxed);
            eprintln!("tokentop: all in after {secs:.1} s ({:.0} events/s)", shipped as f64 / secs.max(1e-9));
            // Everything shipped is in: the rollup of its minutes, before ship exits.
            let minutes: Vec<i64> = touched.lock().expect("touched").minutes.keys().copied().collect();
            let started = Instant::now();
            match store.fill_rollup(Some(&minutes)).await {
                Ok(0) => {}
                Ok(n) => {
                    eprintln!("tokentop: filled the rollup of {n} minutes in {:.1} s", started.elapsed().as_secs_f64())
                }
                Err(e) => eprintln!("tokentop: cannot fill the rollup: {e}"),
            }
        }
        eprintln!(
            "tokentop: shipped {} events; {} bad lines; dropped {}; spool {:.1} MB{}",
            counts.shipped.load(Ordering::Relaxed),
            bad,
            counts.dropped.load(Ordering::Relaxed),
            spool.lock().expect("spool").bytes() as f64 / 1e6,
            if drained { "" } else { " (left for the next run)" }
        );
        anyhow::Ok(())
    })?;
    rt.shutdown_background();
    Ok(ExitCode::SUCCESS)
}

/// `~/.cache/tokentop/spool/DATABASE.TABLE`.
fn default_spool(target: &Target) -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("tokentop").join("spool").join(target.name())
}

/// Keeps a batch in the spool, or drops it and says so when the spool is full (or
/// cannot be written).
fn spool_or_drop(spool: &Mutex<Spool>, batch: &Batch, counts: &Counts) {
    let why = match spool.lock().expect("spool").push(batch) {
        Ok(true) => return,
        Ok(false) => "the spool is full".to_string(),
        Err(e) => e,
    };
    counts.dropped.fetch_add(batch.rows, Ordering::Relaxed);
    eprintln!("tokentop: {why}: dropped {} events (raise --spool-max)", batch.rows);
}

/// Inserts batches, the spooled ones first; a failed insert is retried with backoff
/// (250 ms doubling to 30 s) and its batch kept on disk meanwhile. Ends when no more
/// batches come and the spool is empty.
async fn send_batches(
    client: Client,
    mut batches: tokio::sync::mpsc::Receiver<Batch>,
    spool: Arc<Mutex<Spool>>,
    counts: Arc<Counts>,
) {
    let mut backoff = Duration::ZERO;
    let mut open = true;
    let mut last_error = String::new();
    loop {
        let spooled = spool.lock().expect("spool").oldest();
        let (mut batch, from_spool) = match spooled {
            Ok(Some((n, batch))) => (batch, Some(n)),
            Ok(None) if open => match tokio::time::timeout(Duration::from_millis(500), batches.recv()).await {
                Ok(Some(b)) => (b, None),
                Ok(None) => {
                    open = false;
                    continue;
                }
                Err(_) => continue,
            },
            Ok(None) => return,
            Err(e) => {
                eprintln!("tokentop: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let rows = batch.rows;
        let data = bytes::Bytes::from(std::mem::take(&mut batch.data));
        match client.insert(data.clone()).await {
            Ok(()) => {
                counts.shipped.fetch_add(rows, Ordering::Relaxed);
                if from_spool.is_none() {
                    counts.in_flight.fetch_sub(1, Ordering::SeqCst);
                }
                batch.data = data.into();
                if let Some(n) = from_spool
                    && let Err(e) = spool.lock().expect("spool").remove(n, &batch)
                {
                    eprintln!("tokentop: {e}");
                }
                if !last_error.is_empty() {
                    eprintln!("tokentop: ClickHouse takes inserts again");
                    last_error.clear();
                }
                backoff = Duration::ZERO;
            }
            Err(e) => {
                counts.failures.fetch_add(1, Ordering::Relaxed);
                let text = e.to_string();
                if text != last_error {
                    eprintln!("tokentop: insert failed, retrying with backoff: {text}");
                    last_error = text;
                }
                if from_spool.is_none() {
                    batch.data = data.into();
                    spool_or_drop(&spool, &batch, &counts);
                    counts.in_flight.fetch_sub(1, Ordering::SeqCst);
                }
                backoff = (backoff * 2).clamp(Duration::from_millis(250), Duration::from_secs(30));
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

/// Fills the rollup of the minutes shipped, every [`FILL_EVERY`], once all that was
/// handed over is in (nothing in flight or spooled: a minute filled before its last
/// rows are in would be read from the rows until it is touched again).
async fn fill_rollup(store: Store, touched: Arc<Mutex<Touched>>, spool: Arc<Mutex<Spool>>, counts: Arc<Counts>) {
    let mut told = false;
    loop {
        tokio::time::sleep(FILL_EVERY).await;
        let (batch, minutes) = {
            let t = touched.lock().expect("touched");
            (t.batch, t.minutes.keys().copied().collect::<Vec<i64>>())
        };
        let caught_up = counts.in_flight.load(Ordering::SeqCst) == 0 && spool.lock().expect("spool").bytes() == 0;
        if minutes.is_empty() || !caught_up {
            continue;
        }
        match store.fill_rollup(Some(&minutes)).await {
            Ok(_) => {
                // Minutes touched again since are filled next time.
                touched.lock().expect("touched").minutes.retain(|_, b| *b > batch);
                told = false;
            }
            Err(e) if !told => {
                eprintln!("tokentop: cannot fill the rollup (retrying): {e}");
                told = true;
            }
            Err(_) => {}
        }
    }
}
