//! Reading inputs to their end, in parallel.
//!
//! Each file is cut into byte ranges; a line belongs to the range it starts in, so
//! workers need no coordination beyond taking the next range. Every worker parses its
//! lines into events and folds them into a state of its own (no locks on the hot path);
//! the caller merges the states. Standard input is first spooled to a temporary file,
//! so it is read the same way (and can be read twice when a window needs it).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use memchr::memchr;
use thiserror::Error;

use crate::event::Event;
use crate::parse::helicone::{self, CsvColumns};
use crate::parse::{Format, LineParser, MAX_LINE_BYTES, ParseError, Parsed, SkipReason, trim_line};
use crate::time::Zone;

/// Bytes per work unit: large enough that the per-range cost vanishes, small enough
/// that two workers finish within a few milliseconds of each other.
const RANGE_BYTES: u64 = 8 << 20;
/// Bytes per read call.
const READ_BYTES: usize = 1 << 20;
/// Parse errors kept with their reasons, for the message on stderr.
pub const KEPT_ERRORS: usize = 10;

#[derive(Debug, Error)]
pub enum InputError {
    #[error("cannot open {path}: {source} (check the path and that you may read it)")]
    Open { path: String, source: io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("cannot spool a stream to a temporary file: {0} (is TMPDIR writable and not full?)")]
    Spool(io::Error),
}

/// An input opened for reading.
pub struct Input {
    /// As the user wrote it (`-` for standard input), for messages.
    pub name: String,
    file: File,
    len: u64,
}

impl Input {
    /// Opens a path. Standard input (`-`) and whatever is not a regular file (a pipe,
    /// a FIFO, `/dev/stdin`, a process substitution) is a stream: it is spooled to a
    /// temporary file first, so it is read like any file (its size is not known ahead).
    pub fn open(path: &str) -> Result<Input, InputError> {
        if path == "-" {
            return Input::spool("-", &mut io::stdin().lock());
        }
        let open_err = |source| InputError::Open { path: path.into(), source };
        let mut file = File::open(Path::new(path)).map_err(open_err)?;
        let meta = file.metadata().map_err(open_err)?;
        if meta.is_dir() {
            return Err(open_err(io::Error::other("it is a directory")));
        }
        let input = if meta.is_file() {
            Input { name: path.into(), file, len: meta.len() }
        } else {
            Input::spool(path, &mut file)?
        };
        input.decompressed()
    }

    /// A gzip or zstd file (told by its first bytes, not its name) is read as what it
    /// holds: decompressed to a temporary file first.
    fn decompressed(self) -> Result<Input, InputError> {
        let mut magic = [0u8; 4];
        let n = if self.len >= 4 { self.read_at(&mut magic, 0)? } else { 0 };
        let name = self.name.clone();
        let bad = |source: io::Error| InputError::Read {
            path: name.clone(),
            source: io::Error::new(source.kind(), format!("cannot decompress it: {source}")),
        };
        let from_start = ReadFrom { input: &self, pos: 0 };
        let mut out = match &magic[..n] {
            [0x1f, 0x8b, ..] => {
                let mut gz = flate2::read::MultiGzDecoder::new(io::BufReader::new(from_start));
                Input::spool(&self.name, &mut gz).map_err(|e| match e {
                    InputError::Read { source, .. } => bad(source),
                    e => e,
                })?
            }
            [0x28, 0xb5, 0x2f, 0xfd] => {
                let mut zstd = ruzstd::decoding::StreamingDecoder::new(io::BufReader::new(from_start))
                    .map_err(|e| bad(io::Error::other(e.to_string())))?;
                Input::spool(&self.name, &mut zstd).map_err(|e| match e {
                    InputError::Read { source, .. } => bad(source),
                    e => e,
                })?
            }
            _ => return Ok(self),
        };
        out.name = self.name;
        Ok(out)
    }

    fn spool(name: &str, stream: &mut dyn Read) -> Result<Input, InputError> {
        let mut tmp = tempfile::tempfile().map_err(InputError::Spool)?;
        io::copy(stream, &mut tmp).map_err(|source| match source.kind() {
            // A failed write is the spool's fault; a failed read is the input's.
            io::ErrorKind::StorageFull | io::ErrorKind::PermissionDenied => InputError::Spool(source),
            _ => InputError::Read { path: name.into(), source },
        })?;
        let len = tmp.metadata().map_err(InputError::Spool)?.len();
        Ok(Input { name: name.into(), file: tmp, len })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn read_at(&self, buf: &mut [u8], at: u64) -> Result<usize, InputError> {
        loop {
            match self.file.read_at(buf, at) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r.map_err(|source| InputError::Read { path: self.name.clone(), source }),
            }
        }
    }
}

/// One bad line.
#[derive(Debug, Clone, PartialEq)]
pub struct LineError {
    pub input: String,
    /// 1-based line number in its input.
    pub line: u64,
    pub error: ParseError,
}

/// What reading found, besides the events themselves.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    /// Lines read, blank ones included (for CSV: rows, the header included; for a
    /// whole JSON document: its records).
    pub lines: u64,
    pub events: u64,
    pub parse_errors: u64,
    /// Records that are not LLM calls (OpenTelemetry spans of other operations).
    pub skipped: u64,
    /// `skipped` by reason, in the order of [`SkipReason::ALL`].
    pub skipped_reasons: [u64; 4],
    /// Fields that could not be read: each was dropped, its record kept.
    pub field_errors: u64,
    /// The first few bad lines, in input order.
    pub first_errors: Vec<LineError>,
    /// The first few unreadable fields, naming the field and the format.
    pub first_field_errors: Vec<LineError>,
    /// Inputs of which nothing could be read: one message each, saying what the input
    /// looks like (instead of an error for each of its lines).
    pub unreadable: Vec<String>,
    /// The parse errors of those inputs (counted in `parse_errors` too).
    pub unreadable_errors: u64,
}

impl Counts {
    /// The reasons records were skipped, by name, those with a count only.
    pub fn skipped_by_reason(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        SkipReason::ALL.iter().zip(self.skipped_reasons).filter(|(_, n)| *n > 0).map(|(r, n)| (r.name(), n))
    }
}

struct Range {
    input: usize,
    start: u64,
    end: u64,
    layout: Layout,
}

/// How an input is laid out, told by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Layout {
    /// One record a line, read in ranges on several workers.
    Lines,
    /// OpenTelemetry exports, one a line: read by one worker, in order, so that spans of
    /// one trace on different lines are seen together.
    Spans,
    /// A Helicone CSV export: read whole, by one worker, with a CSV reader.
    Csv,
    /// One JSON document: a value across lines, a JSON array of records, or several
    /// values one after another.
    Document,
}

/// What one range produced; line numbers inside are relative to the range.
#[derive(Default)]
struct RangeResult {
    /// Bytes read from the input (at least the range's, at most a line more; a long run
    /// without a newline is read once in all, not once per range it covers).
    bytes_read: u64,
    lines: u64,
    events: u64,
    skipped: [u64; 4],
    errors: u64,
    field_errors: u64,
    first_errors: Vec<(u64, ParseError)>,
    first_field_errors: Vec<(u64, ParseError)>,
}

/// What parsing one line gave: the outcome, and the first unreadable field's reason.
type LineOutcome = (Result<Parsed, ParseError>, Option<String>);

/// Parses a line with `parser`, keeping the reason of a field error when there is one.
fn parse_line(parser: &mut LineParser, line: &[u8], visit: &mut dyn FnMut(&Event)) -> LineOutcome {
    let r = parser.parse(line, visit);
    let why = match &r {
        Ok(p) if p.field_errors > 0 => parser.field_error().map(str::to_owned),
        _ => None,
    };
    (r, why)
}

impl RangeResult {
    /// Counts the outcome of the line just counted in `lines`.
    fn record(&mut self, (r, why): LineOutcome) {
        match r {
            Ok(p) => {
                self.add(p);
                if let Some(why) = why
                    && self.first_field_errors.len() < KEPT_ERRORS
                {
                    self.first_field_errors.push((self.lines, ParseError::Invalid(why)));
                }
            }
            Err(e) => self.error(self.lines, e),
        }
    }

    fn add(&mut self, p: Parsed) {
        self.events += u64::from(p.events);
        self.field_errors += u64::from(p.field_errors);
        for (a, b) in self.skipped.iter_mut().zip(p.skipped) {
            *a += u64::from(b);
        }
    }

    /// Counts a record that starts on `line` (of a document).
    fn record_at(&mut self, line: u64, outcome: LineOutcome) {
        let lines = self.lines;
        self.lines = line;
        self.record(outcome);
        self.lines = lines;
    }

    fn error(&mut self, line: u64, e: ParseError) {
        self.errors += 1;
        if self.first_errors.len() < KEPT_ERRORS {
            self.first_errors.push((line, e));
        }
    }
}

/// How an input is laid out: forced CSV, or told by its first bytes.
fn layout(input: &Input, forced: Option<Format>) -> Result<Layout, InputError> {
    if forced == Some(Format::HeliconeCsv) {
        return Ok(Layout::Csv);
    }
    let mut head = vec![0u8; (64 << 10).min(input.len as usize)];
    let n = input.read_at(&mut head, 0)?;
    let head = &head[..n];
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let first = head.split(|&b| b == b'\n').next().unwrap_or_default();
    if forced.is_none() && helicone::is_csv_header(&String::from_utf8_lossy(first)) {
        return Ok(Layout::Csv);
    }
    let text = head.iter().position(|b| !b.is_ascii_whitespace()).map_or(&head[..0], |i| &head[i..]);
    if text.first() == Some(&b'[') {
        return Ok(Layout::Document);
    }
    if text.first() == Some(&b'{') {
        // A first line that is not a whole JSON value, where the value goes on: a document.
        let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(line)
            && e.classify() == serde_json::error::Category::Eof
            && line.len() < text.len()
        {
            return Ok(Layout::Document);
        }
    }
    if memchr::memmem::find(head, b"\"resourceSpans\"").is_some()
        || memchr::memmem::find(head, b"\"scopeSpans\"").is_some()
    {
        return Ok(Layout::Spans);
    }
    Ok(Layout::Lines)
}

/// How to read inputs.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions<'a> {
    /// Workers; with one, events arrive in input order.
    pub threads: usize,
    /// `--input-format`: read every line as this format instead of detecting it.
    pub format: Option<Format>,
    /// Bytes read so far, for a progress bar.
    pub progress: Option<&'a AtomicU64>,
    /// `--tz`: the zone of timestamps written without an offset.
    pub zone: Zone,
}

/// Reads every input to its end on `opts.threads` workers, each line in the format it
/// is in. `make` creates a worker's state, `visit` folds one event into it; the states
/// come back for the caller to merge.
pub fn read_all<S, M, V>(inputs: &[Input], opts: ReadOptions, make: M, visit: V) -> Result<(Vec<S>, Counts), InputError>
where
    S: Send,
    M: Fn() -> S + Sync,
    V: Fn(&mut S, &Event) + Sync,
{
    let (threads, format) = (opts.threads, opts.format);
    let ranges = plan(inputs, format)?;
    let next = AtomicUsize::new(0);
    let threads = threads.clamp(1, ranges.len().max(1));
    let worker = || -> Result<(S, Vec<(usize, RangeResult)>), InputError> {
        let mut state = make();
        let mut parser = LineParser::new(format).with_zone(opts.zone);
        let mut buf = vec![0u8; MAX_LINE_BYTES + READ_BYTES];
        let mut done = Vec::new();
        loop {
            let r = next.fetch_add(1, Ordering::Relaxed);
            let Some(range) = ranges.get(r) else { break };
            let res = read_one(&inputs[range.input], range, &mut parser, &mut buf, opts.zone, &mut |ev| {
                visit(&mut state, ev)
            })?;
            if let Some(p) = opts.progress {
                p.fetch_add(range.end - range.start, Ordering::Relaxed);
            }
            done.push((r, res));
        }
        Ok((state, done))
    };
    let outcomes: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|_| s.spawn(worker)).collect();
        handles.into_iter().map(|h| h.join().expect("ingest worker panicked")).collect()
    });

    let mut states = Vec::with_capacity(threads);
    let mut results: Vec<Option<RangeResult>> = (0..ranges.len()).map(|_| None).collect();
    for outcome in outcomes {
        let (state, done) = outcome?;
        states.push(state);
        for (r, res) in done {
            results[r] = Some(res);
        }
    }
    let results = results.into_iter().map(|r| r.expect("every range was read")).collect();
    Ok((states, tally(inputs, &ranges, results)))
}

/// Reads every input to its end on this thread, in order, calling `visit` with each event.
pub fn read_each(inputs: &[Input], opts: ReadOptions, mut visit: impl FnMut(&Event)) -> Result<Counts, InputError> {
    let ranges = plan(inputs, opts.format)?;
    let mut parser = LineParser::new(opts.format).with_zone(opts.zone);
    let mut buf = vec![0u8; MAX_LINE_BYTES + READ_BYTES];
    let mut results = Vec::with_capacity(ranges.len());
    for range in &ranges {
        results.push(read_one(&inputs[range.input], range, &mut parser, &mut buf, opts.zone, &mut visit)?);
        if let Some(p) = opts.progress {
            p.fetch_add(range.end - range.start, Ordering::Relaxed);
        }
    }
    Ok(tally(inputs, &ranges, results))
}

/// Reads one range with its layout's reader; spans still held at its end are released.
fn read_one(
    input: &Input,
    range: &Range,
    parser: &mut LineParser,
    buf: &mut [u8],
    zone: Zone,
    visit: &mut dyn FnMut(&Event),
) -> Result<RangeResult, InputError> {
    let mut res = match range.layout {
        Layout::Csv => read_csv(input, zone, visit)?,
        Layout::Document => read_document(input, parser, visit)?,
        Layout::Lines | Layout::Spans => {
            read_range(input, range, buf, &mut |line| parse_line(parser, line, &mut *visit))?
        }
    };
    res.add(parser.finish(visit));
    Ok(res)
}

/// Cuts the inputs into ranges; a CSV export, a document or a file of spans is one range.
fn plan(inputs: &[Input], format: Option<Format>) -> Result<Vec<Range>, InputError> {
    let mut ranges = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        if input.len == 0 {
            continue;
        }
        let layout = layout(input, format)?;
        if layout != Layout::Lines {
            ranges.push(Range { input: i, start: 0, end: input.len, layout });
            continue;
        }
        let mut start = 0;
        while start < input.len {
            let end = (start + RANGE_BYTES).min(input.len);
            ranges.push(Range { input: i, start, end, layout });
            start = end;
        }
    }
    Ok(ranges)
}

/// Largest JSON document read whole.
const MAX_DOCUMENT_BYTES: u64 = 2 << 30;

/// Reads a JSON document: the records of a top-level array (a trailing comma, as some
/// export tools leave one, is forgiven), or the values that follow one another (a
/// pretty-printed export, or several). Each record counts as a line, numbered by the
/// line it starts on.
fn read_document(
    input: &Input,
    parser: &mut LineParser,
    visit: &mut dyn FnMut(&Event),
) -> Result<RangeResult, InputError> {
    let mut res = RangeResult::default();
    if input.len > MAX_DOCUMENT_BYTES {
        res.lines = 1;
        res.error(1, ParseError::Invalid(format!(
            "a JSON document of {} MiB is more than tokentop reads whole (2 GiB): write one record a line (JSON lines) instead",
            input.len >> 20
        )));
        return Ok(res);
    }
    let mut bytes = vec![0u8; input.len as usize];
    let mut got = 0;
    while got < bytes.len() {
        let n = input.read_at(&mut bytes[got..], got as u64)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    bytes.truncate(got);
    res.bytes_read = got as u64;
    let text = match std::str::from_utf8(&bytes) {
        Ok(t) => t.strip_prefix('\u{feff}').unwrap_or(t),
        Err(e) => {
            res.lines = 1;
            res.error(1, ParseError::Invalid(format!("the document is not valid UTF-8 (at byte {})", e.valid_up_to())));
            return Ok(res);
        }
    };
    let (mut at, mut line, mut counted) = (0usize, 1u64, 0usize);
    let skip_ws = |at: &mut usize, commas: bool| {
        while let Some(&b) = text.as_bytes().get(*at) {
            if b.is_ascii_whitespace() || (commas && b == b',') {
                *at += 1;
            } else {
                break;
            }
        }
    };
    skip_ws(&mut at, false);
    let array = text.as_bytes().get(at) == Some(&b'[');
    if array {
        at += 1;
    }
    loop {
        skip_ws(&mut at, array);
        if at >= text.len() || (array && text.as_bytes()[at] == b']') {
            break;
        }
        line += memchr::memchr_iter(b'\n', &text.as_bytes()[counted..at]).count() as u64;
        counted = at;
        let mut values = serde_json::Deserializer::from_str(&text[at..]).into_iter::<&serde_json::value::RawValue>();
        res.lines += 1;
        match values.next() {
            Some(Ok(raw)) => {
                let end = at + values.byte_offset();
                res.record_at(line, parse_line(parser, raw.get().as_bytes(), visit));
                at = end;
            }
            Some(Err(e)) => {
                res.error(line, ParseError::Invalid(format!("the document is not valid JSON: {}", json_at(&e, line))));
                break;
            }
            None => break,
        }
    }
    Ok(res)
}

/// serde_json's position, made relative to the whole document.
fn json_at(e: &serde_json::Error, first_line: u64) -> String {
    let msg = e.to_string();
    let msg = msg.rfind(" at line ").map_or(msg.as_str(), |i| &msg[..i]);
    format!("{msg} (line {})", first_line + e.line().saturating_sub(1) as u64)
}

/// Adds up what the ranges found, turning range-relative line numbers into real ones.
fn tally(inputs: &[Input], ranges: &[Range], results: Vec<RangeResult>) -> Counts {
    let mut counts = Counts::default();
    let mut line_base = 0;
    // Per input: (records read, errors) — an input with errors and nothing else is unreadable.
    let mut per_input = vec![(0u64, 0u64); inputs.len()];
    for (range, res) in ranges.iter().zip(results) {
        let seen = &mut per_input[range.input];
        seen.0 += res.events + res.skipped.iter().sum::<u64>();
        seen.1 += res.errors;
        if range.start == 0 {
            line_base = 0;
        }
        counts.lines += res.lines;
        counts.events += res.events;
        counts.skipped += res.skipped.iter().sum::<u64>();
        for (a, b) in counts.skipped_reasons.iter_mut().zip(res.skipped) {
            *a += b;
        }
        counts.parse_errors += res.errors;
        counts.field_errors += res.field_errors;
        let base = if range.layout == Layout::Document { 0 } else { line_base };
        let input = &inputs[range.input].name;
        for (line, error) in res.first_errors {
            if counts.first_errors.len() < KEPT_ERRORS {
                counts.first_errors.push(LineError { input: input.clone(), line: base + line, error });
            }
        }
        for (line, error) in res.first_field_errors {
            if counts.first_field_errors.len() < KEPT_ERRORS {
                counts.first_field_errors.push(LineError { input: input.clone(), line: base + line, error });
            }
        }
        line_base += res.lines;
    }
    for (input, (_, errors)) in inputs.iter().zip(&per_input).filter(|(_, (read, errors))| *read == 0 && *errors > 0) {
        counts.unreadable_errors += errors;
        let first = counts.first_errors.iter().find(|e| e.input == input.name).map(|e| e.error.to_string());
        counts.unreadable.push(format!("{}: nothing in it could be read: {}", input.name, looks_like(input, first)));
        counts.first_errors.retain(|e| e.input != input.name);
    }
    counts
}

/// What an input that yielded nothing looks like, and what to do about it.
fn looks_like(input: &Input, first: Option<String>) -> String {
    let mut head = vec![0u8; 4096.min(input.len as usize)];
    let n = input.read_at(&mut head, 0).unwrap_or(0);
    let head = &head[..n];
    let text = std::str::from_utf8(head).map(str::trim_start);
    let first = first.map_or(String::new(), |f| format!(" (the first record: {f})"));
    match text {
        Err(_) | Ok(_) if head.contains(&0) => format!(
            "it looks like binary data, not text; tokentop reads JSON lines, JSON documents, Helicone's CSV export, and gzip or zstd files of those{first}"
        ),
        Err(_) => format!("it is not UTF-8 text; tokentop reads JSON lines, JSON documents and CSV in UTF-8{first}"),
        Ok(t) if t.starts_with('{') || t.starts_with('[') => format!(
            "it is JSON, but no record has what a known format needs (tokentop: created_at; Helicone: request_created_at; LiteLLM: startTime; OpenTelemetry: resourceSpans); name the format with --input-format to see what is missing{first}"
        ),
        Ok(t) if t.lines().next().is_some_and(|l| l.contains(',')) => format!(
            "it looks like CSV, but its header is not Helicone's export (request_created_at, response_status, model, latency){first}"
        ),
        Ok(_) => format!(
            "it is text, but not JSON or CSV; tokentop reads JSON lines, JSON documents and Helicone's CSV export{first}"
        ),
    }
}

/// Reads the lines that start inside `range`, handing each non-blank one to `on_line`.
fn read_range(
    input: &Input,
    range: &Range,
    buf: &mut [u8],
    on_line: &mut dyn FnMut(&[u8]) -> LineOutcome,
) -> Result<RangeResult, InputError> {
    let mut res = RangeResult::default();
    // A range that does not start a file starts after the first newline at or past
    // `start - 1`: the line running into it belongs to the range before.
    let mut pos = range.start.saturating_sub(1);
    let mut skipping = range.start > 0;
    // Offset in the file of buf[0], and the filled part of buf.
    let mut base = pos;
    let (mut lo, mut hi) = (0usize, 0usize);
    let mut eof = false;
    loop {
        // Complete lines in the buffer.
        while let Some(nl) = memchr(b'\n', &buf[lo..hi]) {
            let line_start = base + lo as u64;
            let line = &buf[lo..lo + nl];
            lo += nl + 1;
            if skipping {
                skipping = false;
                continue;
            }
            if line_start >= range.end {
                return Ok(res);
            }
            res.lines += 1;
            if let Some(l) = trim_line(line) {
                res.record(on_line(l));
            }
        }
        if eof {
            // A last line without its newline.
            if lo < hi && !skipping && base + (lo as u64) < range.end {
                res.lines += 1;
                if let Some(l) = trim_line(&buf[lo..hi]) {
                    res.record(on_line(l));
                }
            }
            return Ok(res);
        }
        // Still inside a line that is not ours (it started before the range) or that
        // was counted as too long, and every byte up to the range's end was looked at:
        // no line starts in this range any more. Stopping here keeps a long run without
        // a newline (zeros after a crash) from being read by every range it covers.
        if skipping && base + hi as u64 >= range.end {
            return Ok(res);
        }
        // A line longer than the limit: count it (if ours) and drop bytes until its end.
        if hi - lo > MAX_LINE_BYTES {
            let line_start = base + lo as u64;
            if !skipping {
                if line_start >= range.end {
                    return Ok(res);
                }
                res.lines += 1;
                res.record((Err(ParseError::TooLong), None));
                skipping = true;
            }
            base += hi as u64;
            lo = 0;
            hi = 0;
        }
        // Keep the partial line, read more behind it.
        buf.copy_within(lo..hi, 0);
        base += lo as u64;
        hi -= lo;
        lo = 0;
        // Never past the length seen at open: a file that grows meanwhile is read as it was.
        let want = (buf.len() - hi).min(READ_BYTES).min((input.len - pos) as usize);
        let n = if want == 0 { 0 } else { input.read_at(&mut buf[hi..hi + want], pos)? };
        if n == 0 || pos + n as u64 >= input.len {
            eof = true;
        }
        pos += n as u64;
        hi += n;
        res.bytes_read += n as u64;
    }
}

/// `Read` over an input from its start, for the CSV reader.
struct ReadFrom<'a> {
    input: &'a Input,
    pos: u64,
}

impl Read for ReadFrom<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min(self.input.len.saturating_sub(self.pos) as usize);
        let n = if want == 0 { 0 } else { self.input.file.read_at(&mut buf[..want], self.pos)? };
        self.pos += n as u64;
        Ok(n)
    }
}

/// Reads a Helicone CSV export: quoted fields may span lines, so it is read whole.
fn read_csv(input: &Input, zone: Zone, visit: &mut dyn FnMut(&Event)) -> Result<RangeResult, InputError> {
    let mut res = RangeResult::default();
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(ReadFrom { input, pos: 0 });
    let cols = match rdr.byte_headers() {
        Ok(h) => CsvColumns::from_header(h),
        Err(e) => {
            res.lines = 1;
            res.error(1, ParseError::Invalid(format!("helicone-csv: cannot read the header: {e}")));
            return Ok(res);
        }
    };
    res.lines = 1;
    let mut rec = csv::ByteRecord::new();
    let mut props = Vec::new();
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {
                res.lines += 1;
                let line = rec.position().map_or(res.lines, |p| p.line());
                let mut ev = Event::with_properties(crate::event::recycle_properties(std::mem::take(&mut props)));
                let mut notes = crate::parse::json::Notes::default();
                match helicone::parse_csv_row(&cols, &rec, &mut ev, &mut notes) {
                    Ok(()) => {
                        crate::parse::settle(&mut ev, notes.naive_time, zone);
                        crate::parse::normalize(&mut ev);
                        visit(&ev);
                        res.events += 1;
                        res.field_errors += u64::from(notes.field_errors);
                        if let Some(why) = notes.first
                            && res.first_field_errors.len() < KEPT_ERRORS
                        {
                            res.first_field_errors
                                .push((line, ParseError::Invalid(format!("Helicone CSV row: {why}"))));
                        }
                    }
                    Err(e) => res.error(line, ParseError::Invalid(format!("helicone-csv: {e}"))),
                }
                props = crate::event::recycle_properties(ev.properties);
            }
            Err(e) => {
                if let csv::ErrorKind::Io(source) = e.kind() {
                    let source = io::Error::new(source.kind(), source.to_string());
                    return Err(InputError::Read { path: input.name.clone(), source });
                }
                res.lines += 1;
                let line = e.position().map_or(res.lines, |p| p.line());
                res.error(line, ParseError::Invalid(format!("helicone-csv: {e}")));
            }
        }
    }
    Ok(res)
}

/// Reads up to `bytes` from the end of an input and returns its whole lines, for a
/// cheap first look (the report's guess of the latest event time).
pub fn tail_lines(input: &Input, bytes: u64) -> Result<Vec<u8>, InputError> {
    let start = input.len.saturating_sub(bytes);
    let mut buf = vec![0u8; (input.len - start) as usize];
    let mut got = 0;
    while got < buf.len() {
        let n = input.read_at(&mut buf[got..], start + got as u64)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    buf.truncate(got);
    if start > 0 {
        let first = memchr(b'\n', &buf).map_or(buf.len(), |i| i + 1);
        buf.drain(..first);
    }
    Ok(buf)
}

/// Reads a whole small file (config, prices) with a helpful error.
pub fn read_to_string(path: &PathBuf) -> Result<String, InputError> {
    let mut s = String::new();
    File::open(path)
        .and_then(|mut f| f.read_to_string(&mut s))
        .map_err(|source| InputError::Open { path: path.display().to_string(), source })?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn input(bytes: &[u8]) -> (tempfile::NamedTempFile, Input) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        let i = Input::open(f.path().to_str().unwrap()).unwrap();
        (f, i)
    }

    fn lines_in(input: &Input, range_bytes: u64) -> (Vec<String>, RangeResult) {
        let mut all = Vec::new();
        let mut total = RangeResult::default();
        let mut buf = vec![0u8; MAX_LINE_BYTES + READ_BYTES];
        let mut start = 0;
        while start < input.len() {
            let end = (start + range_bytes).min(input.len());
            let r = read_range(input, &Range { input: 0, start, end, layout: Layout::Lines }, &mut buf, &mut |l| {
                all.push(String::from_utf8_lossy(l).into_owned());
                if l.starts_with(b"bad") {
                    (Err(ParseError::Invalid("bad".into())), None)
                } else {
                    (Ok(Parsed { events: 1, ..Parsed::default() }), None)
                }
            })
            .unwrap();
            total.lines += r.lines;
            total.events += r.events;
            total.errors += r.errors;
            start = end;
        }
        (all, total)
    }

    #[test]
    fn every_line_once_whatever_the_range_size() {
        let text = b"a1\nbb2\n\nbad\r\nccc3\n  \nlast";
        let (_f, inp) = input(text);
        for range in 1..=text.len() as u64 + 1 {
            let (lines, r) = lines_in(&inp, range);
            assert_eq!(lines, vec!["a1", "bb2", "bad", "ccc3", "last"], "range size {range}");
            assert_eq!((r.lines, r.events, r.errors), (7, 4, 1), "range size {range}");
        }
    }

    #[test]
    fn overlong_lines_are_counted_and_skipped() {
        let mut text = b"ok1\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES * 3));
        text.extend_from_slice(b"\nok2\n");
        let (_f, inp) = input(&text);
        for range in [1 << 20, 8 << 20] {
            let (lines, r) = lines_in(&inp, range);
            assert_eq!(lines, vec!["ok1", "ok2"]);
            assert_eq!((r.lines, r.events, r.errors), (3, 2, 1));
        }
    }

    #[test]
    fn a_long_run_without_newlines_is_read_once_in_all() {
        // 40 MiB of zeros (as a crash leaves them) between two lines, in 1 MiB ranges.
        let mut text = b"ok1\n".to_vec();
        text.extend(std::iter::repeat_n(0u8, 40 << 20));
        text.extend_from_slice(b"\nok2\n");
        let (_f, inp) = input(&text);
        let range_bytes = 1u64 << 20;
        let mut buf = vec![0u8; MAX_LINE_BYTES + READ_BYTES];
        let (mut read, mut lines) = (0, Vec::new());
        let mut start = 0;
        while start < inp.len() {
            let end = (start + range_bytes).min(inp.len());
            let r = read_range(&inp, &Range { input: 0, start, end, layout: Layout::Lines }, &mut buf, &mut |l| {
                lines.push(l.to_vec());
                (Ok(Parsed { events: 1, ..Parsed::default() }), None)
            })
            .unwrap();
            read += r.bytes_read;
            start = end;
        }
        assert_eq!(lines, vec![b"ok1".to_vec(), b"ok2".to_vec()]);
        // The range holding the run's start reads it to its end; the others stop at
        // their own end. Quadratic reading would be about 40 x 20 MiB.
        assert!(read < 3 * text.len() as u64, "read {read} bytes of {}", text.len());
    }

    #[test]
    fn read_all_numbers_lines_across_ranges() {
        let mut text = Vec::new();
        for i in 0..300_000u64 {
            if i == 250_000 {
                text.extend_from_slice(b"{broken\n");
            } else {
                writeln!(text, r#"{{"created_at":{i}}}"#).unwrap();
            }
        }
        let (_f, inp) = input(&text);
        let (states, counts) = read_all(
            &[inp],
            ReadOptions { threads: 2, ..ReadOptions::default() },
            || 0u64,
            |n: &mut u64, ev: &Event| *n += ev.created_at as u64 / 1000,
        )
        .unwrap();
        let expected: u64 = (0..300_000u64).filter(|&i| i != 250_000).sum();
        assert_eq!(states.iter().sum::<u64>(), expected);
        assert_eq!((counts.lines, counts.events, counts.parse_errors), (300_000, 299_999, 1));
        assert_eq!(counts.first_errors[0].line, 250_001);
    }

    #[test]
    fn tail_starts_at_a_line() {
        let (_f, inp) = input(b"first line\nsecond\nthird\n");
        assert_eq!(tail_lines(&inp, 10).unwrap(), b"third\n");
        assert_eq!(tail_lines(&inp, 100).unwrap(), b"first line\nsecond\nthird\n");
    }
}
