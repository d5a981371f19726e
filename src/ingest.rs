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
use crate::parse::{Format, LineParser, MAX_LINE_BYTES, ParseError, Parsed, trim_line};

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
        if !meta.is_file() {
            return Input::spool(path, &mut file);
        }
        Ok(Input { name: path.into(), file, len: meta.len() })
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
    /// Lines read, blank ones included (for CSV: rows, the header included).
    pub lines: u64,
    pub events: u64,
    pub parse_errors: u64,
    /// Records that are not LLM calls (OpenTelemetry spans of other operations).
    pub skipped: u64,
    /// The first few bad lines, in input order.
    pub first_errors: Vec<LineError>,
}

struct Range {
    input: usize,
    start: u64,
    end: u64,
    /// A Helicone CSV export: read whole, by one worker, with a CSV reader.
    csv: bool,
}

/// What one range produced; line numbers inside are relative to the range.
#[derive(Default)]
struct RangeResult {
    /// Bytes read from the input (at least the range's, at most a line more; a long run
    /// without a newline is read once in all, not once per range it covers).
    bytes_read: u64,
    lines: u64,
    events: u64,
    skipped: u64,
    errors: u64,
    first_errors: Vec<(u64, ParseError)>,
}

impl RangeResult {
    /// Counts the outcome of the line just counted in `lines`.
    fn record(&mut self, r: Result<Parsed, ParseError>) {
        match r {
            Ok(p) => {
                self.events += u64::from(p.events);
                self.skipped += u64::from(p.skipped);
            }
            Err(e) => self.error(self.lines, e),
        }
    }

    fn error(&mut self, line: u64, e: ParseError) {
        self.errors += 1;
        if self.first_errors.len() < KEPT_ERRORS {
            self.first_errors.push((line, e));
        }
    }
}

/// Whether an input is a Helicone CSV export: forced, or recognised by its header.
fn is_csv(input: &Input, forced: Option<Format>) -> Result<bool, InputError> {
    match forced {
        Some(f) => Ok(f == Format::HeliconeCsv),
        None => {
            let mut head = vec![0u8; 4096.min(input.len as usize)];
            let n = input.read_at(&mut head, 0)?;
            let first = head[..n].split(|&b| b == b'\n').next().unwrap_or_default();
            Ok(helicone::is_csv_header(&String::from_utf8_lossy(first)))
        }
    }
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
        let mut parser = LineParser::new(format);
        let mut buf = vec![0u8; MAX_LINE_BYTES + READ_BYTES];
        let mut done = Vec::new();
        loop {
            let r = next.fetch_add(1, Ordering::Relaxed);
            let Some(range) = ranges.get(r) else { break };
            let input = &inputs[range.input];
            let res = if range.csv {
                read_csv(input, &mut |ev| visit(&mut state, ev))?
            } else {
                read_range(input, range, &mut buf, &mut |line| parser.parse(line, &mut |ev| visit(&mut state, ev)))?
            };
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
    let mut parser = LineParser::new(opts.format);
    let mut buf = vec![0u8; MAX_LINE_BYTES + READ_BYTES];
    let mut results = Vec::with_capacity(ranges.len());
    for range in &ranges {
        let input = &inputs[range.input];
        results.push(if range.csv {
            read_csv(input, &mut visit)?
        } else {
            read_range(input, range, &mut buf, &mut |line| parser.parse(line, &mut visit))?
        });
        if let Some(p) = opts.progress {
            p.fetch_add(range.end - range.start, Ordering::Relaxed);
        }
    }
    Ok(tally(inputs, &ranges, results))
}

/// Cuts the inputs into ranges; a Helicone CSV export is one range.
fn plan(inputs: &[Input], format: Option<Format>) -> Result<Vec<Range>, InputError> {
    let mut ranges = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        if input.len > 0 && is_csv(input, format)? {
            ranges.push(Range { input: i, start: 0, end: input.len, csv: true });
            continue;
        }
        let mut start = 0;
        while start < input.len {
            let end = (start + RANGE_BYTES).min(input.len);
            ranges.push(Range { input: i, start, end, csv: false });
            start = end;
        }
    }
    Ok(ranges)
}

/// Adds up what the ranges found, turning range-relative line numbers into real ones.
fn tally(inputs: &[Input], ranges: &[Range], results: Vec<RangeResult>) -> Counts {
    let mut counts = Counts::default();
    let mut line_base = 0;
    for (range, res) in ranges.iter().zip(results) {
        if range.start == 0 {
            line_base = 0;
        }
        counts.lines += res.lines;
        counts.events += res.events;
        counts.skipped += res.skipped;
        counts.parse_errors += res.errors;
        for (line, error) in res.first_errors {
            if counts.first_errors.len() < KEPT_ERRORS {
                let input = inputs[range.input].name.clone();
                counts.first_errors.push(LineError { input, line: line_base + line, error });
            }
        }
        line_base += res.lines;
    }
    counts
}

/// Reads the lines that start inside `range`, handing each non-blank one to `on_line`.
fn read_range(
    input: &Input,
    range: &Range,
    buf: &mut [u8],
    on_line: &mut dyn FnMut(&[u8]) -> Result<Parsed, ParseError>,
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
                res.record(Err(ParseError::TooLong));
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
fn read_csv(input: &Input, visit: &mut dyn FnMut(&Event)) -> Result<RangeResult, InputError> {
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
                match helicone::parse_csv_row(&cols, &rec, &mut ev) {
                    Ok(()) => {
                        crate::parse::normalize(&mut ev);
                        visit(&ev);
                        res.events += 1;
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
            let r = read_range(input, &Range { input: 0, start, end, csv: false }, &mut buf, &mut |l| {
                all.push(String::from_utf8_lossy(l).into_owned());
                if l.starts_with(b"bad") {
                    Err(ParseError::Invalid("bad".into()))
                } else {
                    Ok(Parsed { events: 1, skipped: 0 })
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
            let r = read_range(&inp, &Range { input: 0, start, end, csv: false }, &mut buf, &mut |l| {
                lines.push(l.to_vec());
                Ok(Parsed { events: 1, skipped: 0 })
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
