//! `tokentop export`: normalised events (tokentop's schema) as JSON lines or CSV, the
//! bridge to a data warehouse or a spreadsheet. Events stream through in input order;
//! nothing but the CSV column list is held in memory.

use std::collections::BTreeSet;
use std::io::{self, Write};

use thiserror::Error;

use crate::event::Event;
use crate::filter::Filter;
use crate::ingest::{self, Counts, Input, InputError, ReadOptions};
use crate::parse::Format;
use crate::parse::native::write_line;
use crate::pricing::{PriceCache, PriceTable, cost_of};
use crate::time::{Micros, format_rfc3339};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub format: ExportFormat,
    /// Keep events with `start <= created_at < end`.
    pub start: Option<Micros>,
    pub end: Option<Micros>,
    pub filter: Filter,
    pub input_format: Option<Format>,
    /// The zone of timestamps written without an offset.
    pub zone: crate::time::Zone,
    /// For `cost` terms in the filter.
    pub prices: PriceTable,
}

#[derive(Debug, Error)]
pub enum ExportError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("cannot write the export: {0}")]
    Write(io::Error),
}

/// What an export did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exported {
    pub written: u64,
    pub counts: Counts,
}

/// The schema's columns, in order, before the `prop.NAME` columns.
pub const CSV_COLUMNS: [&str; 23] = [
    "request_id",
    "created_at",
    "provider",
    "provider_raw",
    "model",
    "status",
    "latency_ms",
    "ttft_ms",
    "prompt_tokens",
    "completion_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_usd",
    "cache_hit",
    "user_id",
    "session_id",
    "session_name",
    "session_path",
    "retry",
    "feedback",
    "error",
    "seq",
];

struct Selector<'o> {
    opts: &'o ExportOptions,
    prices: PriceCache,
}

impl Selector<'_> {
    fn keeps(&mut self, ev: &Event) -> bool {
        let t = ev.created_at;
        if self.opts.start.is_some_and(|s| t < s) || self.opts.end.is_some_and(|e| t >= e) {
            return false;
        }
        if self.opts.filter.is_empty() {
            return true;
        }
        let price = self.prices.get(&self.opts.prices, ev.provider(), ev.model());
        self.opts.filter.matches(ev, cost_of(ev, price.as_ref()).usd())
    }
}

/// Writes the selected events of `inputs` to `out`. `progress` counts bytes read.
pub fn export(
    inputs: &[Input],
    opts: &ExportOptions,
    out: &mut dyn Write,
    progress: Option<&std::sync::atomic::AtomicU64>,
) -> Result<Exported, ExportError> {
    let read = ReadOptions { threads: 1, format: opts.input_format, progress, zone: opts.zone };
    match opts.format {
        ExportFormat::Jsonl => {
            let mut line = Vec::with_capacity(1024);
            let mut failed = None;
            let mut written = 0;
            let mut sel = Selector { opts, prices: PriceCache::default() };
            let counts = ingest::read_each(inputs, read, |ev| {
                if failed.is_none() && sel.keeps(ev) {
                    line.clear();
                    write_line(ev, &mut line);
                    match out.write_all(&line) {
                        Ok(()) => written += 1,
                        Err(e) => failed = Some(e),
                    }
                }
            })?;
            finish(out, failed)?;
            Ok(Exported { written, counts })
        }
        ExportFormat::Csv => {
            // First pass: the property columns. The inputs are files (standard input
            // was spooled), so they can be read twice.
            let mut keys = BTreeSet::new();
            let mut sel = Selector { opts, prices: PriceCache::default() };
            let quiet = ReadOptions { progress: None, ..read };
            ingest::read_each(inputs, quiet, |ev| {
                if sel.keeps(ev) {
                    for (k, _) in &ev.properties {
                        if !keys.contains(k.as_ref()) {
                            keys.insert(k.to_string());
                        }
                    }
                }
            })?;
            let keys: Vec<String> = keys.into_iter().collect();
            let mut w = csv::Writer::from_writer(&mut *out);
            let header = CSV_COLUMNS.iter().map(|c| c.to_string()).chain(keys.iter().map(|k| format!("prop.{k}")));
            w.write_record(header).map_err(|e| ExportError::Write(csv_error(e)))?;
            let mut failed = None;
            let mut written = 0;
            let mut cell = String::new();
            let mut sel = Selector { opts, prices: PriceCache::default() };
            let counts = ingest::read_each(inputs, read, |ev| {
                if failed.is_none() && sel.keeps(ev) {
                    match write_row(&mut w, ev, &keys, &mut cell) {
                        Ok(()) => written += 1,
                        Err(e) => failed = Some(csv_error(e)),
                    }
                }
            })?;
            let flushed = w.flush().err();
            drop(w);
            finish(out, failed.or(flushed))?;
            Ok(Exported { written, counts })
        }
    }
}

fn csv_error(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => io::Error::other(format!("{other:?}")),
    }
}

fn finish(out: &mut dyn Write, failed: Option<io::Error>) -> Result<(), ExportError> {
    match failed {
        Some(e) => Err(ExportError::Write(e)),
        None => out.flush().map_err(ExportError::Write),
    }
}

/// One CSV row: absent values are empty cells. `cell` is a reused formatting buffer.
fn write_row<W: Write>(w: &mut csv::Writer<W>, ev: &Event, keys: &[String], cell: &mut String) -> csv::Result<()> {
    fn field<W: Write>(w: &mut csv::Writer<W>, v: Option<&str>) -> csv::Result<()> {
        w.write_field(v.unwrap_or("").as_bytes())
    }
    fn num<W: Write, T: std::fmt::Display>(w: &mut csv::Writer<W>, v: Option<T>, cell: &mut String) -> csv::Result<()> {
        use std::fmt::Write as _;
        cell.clear();
        if let Some(v) = v {
            let _ = write!(cell, "{v}");
        }
        w.write_field(cell.as_bytes())
    }
    field(w, ev.request_id.as_deref())?;
    cell.clear();
    cell.push_str(&format_rfc3339(ev.created_at));
    w.write_field(cell.as_bytes())?;
    field(w, ev.provider.as_deref())?;
    field(w, ev.provider_raw.as_deref())?;
    field(w, ev.model.as_deref())?;
    num(w, Some(ev.status), cell)?;
    num(w, ev.latency_ms, cell)?;
    num(w, ev.ttft_ms, cell)?;
    for n in [ev.prompt_tokens, ev.completion_tokens, ev.cache_read_tokens, ev.cache_write_tokens, ev.reasoning_tokens]
    {
        num(w, Some(n), cell)?;
    }
    num(w, ev.cost_usd, cell)?;
    num(w, Some(ev.cache_hit), cell)?;
    for v in [&ev.user_id, &ev.session_id, &ev.session_name, &ev.session_path] {
        field(w, v.as_deref())?;
    }
    num(w, Some(ev.retry), cell)?;
    num(w, ev.feedback, cell)?;
    field(w, ev.error.as_deref())?;
    num(w, ev.seq, cell)?;
    for k in keys {
        field(w, ev.properties.iter().find(|(pk, _)| pk == k).map(|(_, v)| v.as_ref()))?;
    }
    w.write_record(None::<&[u8]>)
}
