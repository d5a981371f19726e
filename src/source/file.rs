//! Following files like `tail -F`.
//!
//! A file is read from its start (so a window is filled with history), then followed:
//! appended lines are read as they arrive; a rotated file (renamed, a new one created
//! at the path) is read to its end before the new one is opened; a truncated file
//! (copytruncate) is read again from its start; a path that does not exist yet is
//! waited for; a path that cannot be read (a directory, no permission) is shown with
//! its reason and tried again; a pipe, FIFO or device is read as a stream to its end,
//! and so is a gzip or zstd file, decompressed (told by its first bytes).
//! A partial last line is held until its newline arrives. A glob follows every
//! matching file, including files created later.
//!
//! Followers poll (every 100 ms by default, at once again while there is data): a
//! `stat` per file and poll is negligible when idle, and it works on every file system,
//! network mounts included, where change notifications do not.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::lines::LineSplitter;
use super::{SourceState, Update};

/// Bytes read at a time.
const READ_BYTES: usize = 256 << 10;
/// A path that cannot be read (a directory, no permission) is tried again this often.
const RETRY_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
pub struct FollowOptions {
    /// Keep following at the end (`false`: stop there, like `--no-follow`).
    pub follow: bool,
    pub poll: Duration,
}

impl Default for FollowOptions {
    fn default() -> Self {
        FollowOptions { follow: true, poll: Duration::from_millis(100) }
    }
}

/// Where a follower stands with the file at its path.
struct Open {
    file: File,
    dev_ino: (u64, u64),
    pos: u64,
}

/// gzip or zstd, told by a file's first bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Compression {
    Gzip,
    Zstd,
}

fn compression(file: &File) -> Option<Compression> {
    use std::os::unix::fs::FileExt;
    let mut magic = [0u8; 4];
    match file.read_at(&mut magic, 0) {
        Ok(n) if n >= 2 && magic[..2] == [0x1f, 0x8b] => Some(Compression::Gzip),
        Ok(4) if magic == [0x28, 0xb5, 0x2f, 0xfd] => Some(Compression::Zstd),
        _ => None,
    }
}

/// A reader of what a compressed file holds.
fn compression_of(name: &str, file: io::BufReader<File>) -> Result<Box<dyn Read + Send>, String> {
    match compression(file.get_ref()) {
        Some(Compression::Gzip) => Ok(Box::new(flate2::read::MultiGzDecoder::new(file))),
        Some(Compression::Zstd) => ruzstd::decoding::StreamingDecoder::new(file)
            .map(|d| Box::new(d) as Box<dyn Read + Send>)
            .map_err(|e| format!("{name}: cannot decompress it: {e}")),
        None => Ok(Box::new(file)),
    }
}

fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

/// Follows `path` until `send` reports the receiver gone (or, without `follow`, until the
/// end). `send` gets whole lines (and state changes); it blocks when the consumer is
/// behind, which slows reading down instead of dropping lines.
pub fn follow(path: &Path, opts: FollowOptions, send: &mut dyn FnMut(Update) -> bool) {
    let mut splitter = LineSplitter::default();
    let mut open: Option<Open> = None;
    let mut buf = vec![0u8; READ_BYTES];
    let mut reported_too_long = 0;
    let mut state = SourceState::Starting;
    let mut set_state = |s: SourceState, send: &mut dyn FnMut(Update) -> bool| -> bool {
        if s != state {
            state = s.clone();
            return send(Update::State(s));
        }
        true
    };
    loop {
        let Some(cur) = open.as_mut() else {
            // What cannot be read now is retried like `tail -F` when following.
            let mut unreadable = |why: String, send: &mut dyn FnMut(Update) -> bool| -> bool {
                if opts.follow {
                    let ok = set_state(SourceState::Retrying(why), send);
                    std::thread::sleep(opts.poll.max(RETRY_EVERY));
                    ok
                } else {
                    let _ = set_state(SourceState::Failed(why), send);
                    false
                }
            };
            match std::fs::metadata(path) {
                Ok(meta) if meta.is_dir() => {
                    let why = format!(
                        "{} is a directory (give a file, or a quoted glob such as 'dir/*.jsonl')",
                        path.display()
                    );
                    if !unreadable(why, send) {
                        return;
                    }
                    continue;
                }
                Ok(meta) if !meta.is_file() => {
                    // A pipe, a FIFO, a device: a stream, read to its end.
                    if !set_state(SourceState::Following, send) {
                        return;
                    }
                    match File::open(path) {
                        Ok(f) => super::read_stream(f, &path.display().to_string(), send),
                        Err(e) => {
                            let _ = set_state(SourceState::Failed(open_error(path, &e)), send);
                        }
                    }
                    return;
                }
                _ => {}
            }
            match File::open(path).and_then(|f| f.metadata().map(|m| (f, m))) {
                Ok((file, meta)) if meta.is_file() && compression(&file).is_some() => {
                    // A compressed log is finished: read it decompressed, to its end.
                    if !set_state(SourceState::Following, send) {
                        return;
                    }
                    let name = path.display().to_string();
                    let file = io::BufReader::new(file);
                    match compression_of(&name, file) {
                        Ok(reader) => super::read_stream(reader, &name, send),
                        Err(e) => {
                            let _ = set_state(SourceState::Failed(e), send);
                        }
                    }
                    return;
                }
                Ok((file, meta)) if meta.is_file() => {
                    open = Some(Open { file, dev_ino: identity(&meta), pos: 0 });
                    if !set_state(SourceState::Following, send) {
                        return;
                    }
                }
                // Replaced between the look and the open: look again.
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound && opts.follow => {
                    if !set_state(SourceState::Waiting, send) {
                        return;
                    }
                    std::thread::sleep(opts.poll);
                }
                Err(e) => {
                    if !unreadable(open_error(path, &e), send) {
                        return;
                    }
                }
            }
            continue;
        };
        // Read everything there is.
        let mut lines = Vec::new();
        let mut read_any = false;
        loop {
            match cur.file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    read_any = true;
                    cur.pos += n as u64;
                    splitter.push(&buf[..n], &mut lines);
                    if lines.len() >= READ_BYTES {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = set_state(SourceState::Failed(format!("cannot read {}: {e}", path.display())), send);
                    return;
                }
            }
        }
        if splitter.too_long > reported_too_long {
            if !send(Update::TooLong(splitter.too_long - reported_too_long)) {
                return;
            }
            reported_too_long = splitter.too_long;
        }
        if !lines.is_empty() && !send(Update::Lines(lines)) {
            return;
        }
        if read_any {
            continue;
        }
        // At the end of what the open file holds.
        if !opts.follow {
            let mut last = Vec::new();
            splitter.finish(&mut last);
            if !last.is_empty() {
                send(Update::Lines(last));
            }
            let _ = set_state(SourceState::AtEnd, send);
            return;
        }
        match std::fs::metadata(path) {
            Ok(meta) if identity(&meta) != cur.dev_ino => {
                // Rotated: the old file is read to its end (writers may still have been
                // finishing a line), its last line is complete, the new file starts now.
                let mut last = Vec::new();
                splitter.finish(&mut last);
                if !last.is_empty() && !send(Update::Lines(last)) {
                    return;
                }
                open = None;
                continue;
            }
            Ok(meta) if meta.len() < cur.pos => {
                // Truncated in place: whatever was partial is gone; read from the start.
                splitter.reset();
                if let Err(e) = io::Seek::seek(&mut cur.file, io::SeekFrom::Start(0)) {
                    let _ = set_state(SourceState::Failed(format!("cannot rewind {}: {e}", path.display())), send);
                    return;
                }
                cur.pos = 0;
                if !send(Update::Truncated) {
                    return;
                }
                continue;
            }
            // Deleted and not (yet) recreated: keep the old file, wait for a new one.
            Ok(_) | Err(_) => {}
        }
        if !set_state(SourceState::Following, send) {
            return;
        }
        std::thread::sleep(opts.poll);
    }
}

fn open_error(path: &Path, e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => {
            format!("{} does not exist (check the path, or follow it to wait for it)", path.display())
        }
        io::ErrorKind::PermissionDenied => {
            format!("{}: permission denied (run as a user that may read it, or fix its permissions)", path.display())
        }
        _ => format!("cannot open {}: {e}", path.display()),
    }
}

/// Whether a source spec is a glob pattern rather than a path.
pub fn is_glob(spec: &str) -> bool {
    spec.contains(['*', '?', '['])
}

/// The paths a glob matches now, sorted.
pub fn expand(pattern: &str) -> Result<Vec<PathBuf>, String> {
    let paths = glob::glob(pattern).map_err(|e| format!("`{pattern}` is not a valid glob: {e}"))?;
    let mut out: Vec<PathBuf> = paths.filter_map(Result::ok).filter(|p| p.is_file()).collect();
    out.sort();
    Ok(out)
}
