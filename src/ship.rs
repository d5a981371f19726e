//! `tokentop ship`: events from any source into a ClickHouse table, so that a fleet
//! of gateways and weeks of history live in one store every console can read.
//!
//! Events are normalised (any input format), priced, and inserted over ClickHouse's
//! HTTP interface as `JSONEachRow`, in batches (by rows and by time). Delivery is at
//! least once without duplicates in what is read: a batch that fails is retried with
//! backoff; while ClickHouse is down or slow, batches wait in a bounded spool on disk
//! (kept across restarts of `ship`); when the spool is full new batches are dropped
//! and counted. The table is a `ReplacingMergeTree` keyed by `request_id` (an event
//! without one gets the hash of its line), so a batch delivered twice (an insert that
//! succeeded but whose answer was lost) folds into one row per call; readers use
//! `FINAL` or count distinct ids.
//!
//! The SQL works on ClickHouse 18.16 (Debian's package: no `Map`, no `DateTime64`) and
//! on current releases: properties are two arrays, the time is a `DateTime` plus the
//! epoch microseconds.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::event::Event;
use crate::pricing::Cost;

/// Where events go, from `clickhouse://[USER@]HOST:PORT/DATABASE[?table=NAME]`
/// (`clickhouses://` for HTTPS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `http(s)://HOST:PORT/`.
    pub base: String,
    pub database: String,
    pub table: String,
    pub user: Option<String>,
    /// From `TOKENTOP_CLICKHOUSE_PASSWORD`; never shown.
    pub password: Option<String>,
}

/// The environment variable that holds the ClickHouse password.
pub const PASSWORD_ENV: &str = "TOKENTOP_CLICKHOUSE_PASSWORD";

impl Target {
    pub fn parse(url: &str, user: Option<String>, password: Option<String>) -> Result<Target, String> {
        let (scheme, rest) = if let Some(r) = url.strip_prefix("clickhouse://") {
            ("http", r)
        } else if let Some(r) = url.strip_prefix("clickhouses://") {
            ("https", r)
        } else {
            return Err(format!("`{url}`: give clickhouse://HOST:8123/DATABASE (or clickhouses:// for HTTPS)"));
        };
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, database) = rest.split_once('/').unwrap_or((rest, "default"));
        let (url_user, host) = match authority.rsplit_once('@') {
            Some((u, _)) if u.contains(':') => {
                return Err(format!("`{}`: no password in the URL; set {PASSWORD_ENV}", crate::text::redact_url(url)));
            }
            Some((u, h)) => (Some(u.to_string()), h),
            None => (None, authority),
        };
        if host.is_empty() {
            return Err(format!("`{url}`: no host"));
        }
        let host = if host.contains(':') { host.to_string() } else { format!("{host}:8123") };
        let mut table = "events".to_string();
        for kv in query.split('&').filter(|s| !s.is_empty()) {
            match kv.split_once('=') {
                Some(("table", t)) => table = t.to_string(),
                _ => return Err(format!("`{url}`: unknown parameter `{kv}` (only table=NAME)")),
            }
        }
        let database = if database.is_empty() { "default".to_string() } else { database.to_string() };
        for name in [&database, &table] {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("`{name}`: database and table names are letters, digits and _"));
            }
        }
        Ok(Target { base: format!("{scheme}://{host}/"), database, table, user: user.or(url_user), password })
    }

    /// `database.table`.
    pub fn name(&self) -> String {
        format!("{}.{}", self.database, self.table)
    }

    /// The table's DDL.
    pub fn schema(&self) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
    request_id String,
    created_at DateTime,
    created_at_us Int64,
    provider String,
    model String,
    status UInt16,
    latency_ms Nullable(Float64),
    ttft_ms Nullable(Float64),
    prompt_tokens UInt64,
    completion_tokens UInt64,
    cache_read_tokens UInt64,
    cache_write_tokens UInt64,
    reasoning_tokens UInt64,
    cost_usd Nullable(Float64),
    cost_billed UInt8,
    cache_hit UInt8,
    user_id String,
    session_id String,
    session_name String,
    session_path String,
    property_keys Array(String),
    property_values Array(String),
    retry UInt64,
    feedback Nullable(UInt8),
    error String,
    source String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(created_at)
ORDER BY (created_at, request_id)",
            self.name()
        )
    }
}

/// Appends one event as a `JSONEachRow` line. `source` names where it came from;
/// `fallback_id` is used when the event has no request id.
pub fn write_row(ev: &Event, cost: Cost, source: &str, fallback_id: &str, out: &mut Vec<u8>) {
    fn s(v: Option<&str>) -> &str {
        v.unwrap_or("")
    }
    let str_field = |out: &mut Vec<u8>, name: &str, v: &str| {
        let _ = write!(out, "\"{name}\":");
        let _ = serde_json::to_writer(&mut *out, v);
        out.push(b',');
    };
    out.push(b'{');
    str_field(out, "request_id", ev.request_id.as_deref().filter(|r| !r.is_empty()).unwrap_or(fallback_id));
    let secs = ev.created_at.div_euclid(1_000_000);
    let _ = write!(out, "\"created_at\":{},\"created_at_us\":{},", secs.max(0), ev.created_at);
    str_field(out, "provider", ev.provider());
    str_field(out, "model", ev.model());
    let _ = write!(out, "\"status\":{},", ev.status);
    let opt = |out: &mut Vec<u8>, name: &str, v: Option<f64>| {
        match v.filter(|v| v.is_finite()) {
            Some(v) => write!(out, "\"{name}\":{v:?},"),
            None => write!(out, "\"{name}\":null,"),
        }
        .ok();
    };
    opt(out, "latency_ms", ev.latency_ms);
    opt(out, "ttft_ms", ev.ttft_ms);
    let _ = write!(
        out,
        "\"prompt_tokens\":{},\"completion_tokens\":{},\"cache_read_tokens\":{},\"cache_write_tokens\":{},\"reasoning_tokens\":{},",
        ev.prompt_tokens, ev.completion_tokens, ev.cache_read_tokens, ev.cache_write_tokens, ev.reasoning_tokens
    );
    let (usd, billed) = match cost {
        Cost::Billed(c) => (Some(c), 1),
        Cost::Priced(c) => (Some(c), 0),
        Cost::CacheHit { .. } => (Some(0.0), 0),
        Cost::Unpriced => (None, 0),
    };
    opt(out, "cost_usd", usd);
    let _ = write!(out, "\"cost_billed\":{billed},\"cache_hit\":{},", u8::from(ev.cache_hit));
    str_field(out, "user_id", s(ev.user_id.as_deref()));
    str_field(out, "session_id", s(ev.session_id.as_deref()));
    str_field(out, "session_name", s(ev.session_name.as_deref()));
    str_field(out, "session_path", s(ev.session_path.as_deref()));
    let keys: Vec<&str> = ev.properties.iter().map(|(k, _)| k.as_ref()).collect();
    let values: Vec<&str> = ev.properties.iter().map(|(_, v)| v.as_ref()).collect();
    out.extend_from_slice(b"\"property_keys\":");
    let _ = serde_json::to_writer(&mut *out, &keys);
    out.extend_from_slice(b",\"property_values\":");
    let _ = serde_json::to_writer(&mut *out, &values);
    let _ = write!(out, ",\"retry\":{},", ev.retry);
    match ev.feedback {
        Some(f) => write!(out, "\"feedback\":{},", u8::from(f)),
        None => write!(out, "\"feedback\":null,"),
    }
    .ok();
    str_field(out, "error", s(ev.error.as_deref()));
    out.extend_from_slice(b"\"source\":");
    let _ = serde_json::to_writer(&mut *out, source);
    out.extend_from_slice(b"}\n");
}

/// Why an insert failed.
#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    /// ClickHouse answered with an error (its message, without credentials).
    #[error("ClickHouse answered {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("cannot reach ClickHouse: {0}")]
    Unreachable(String),
}

/// Talks to one ClickHouse server over HTTP.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    target: Target,
}

impl Client {
    pub fn new(target: Target) -> Result<Client, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("cannot set up HTTP: {e}"))?;
        Ok(Client { http, target })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Runs a statement with `body` as its data (none: the statement is the body);
    /// the answer's text.
    pub async fn execute(&self, query: &str, body: impl Into<bytes::Bytes>) -> Result<String, InsertError> {
        let body: bytes::Bytes = body.into();
        let mut req = if body.is_empty() {
            self.http.post(&self.target.base).body(query.to_string())
        } else {
            let url = reqwest::Url::parse_with_params(&self.target.base, &[("query", query)])
                .map_err(|e| InsertError::Unreachable(e.to_string()))?;
            self.http.post(url).body(body)
        };
        if let Some(u) = &self.target.user {
            req = req.basic_auth(u, self.target.password.as_deref());
        }
        let r = req.send().await.map_err(|e| InsertError::Unreachable(crate::text::http_error(&e)))?;
        let status = r.status().as_u16();
        let text = r.text().await.map_err(|e| InsertError::Unreachable(crate::text::http_error(&e)))?;
        if status == 200 {
            Ok(text)
        } else {
            let mut message = text.trim().to_string();
            if let Some(p) = &self.target.password
                && !p.is_empty()
            {
                message = message.replace(p.as_str(), "***");
            }
            message.truncate(500);
            Err(InsertError::Refused { status, message })
        }
    }

    /// Inserts `JSONEachRow` lines.
    pub async fn insert(&self, rows: bytes::Bytes) -> Result<(), InsertError> {
        let query = format!("INSERT INTO {} FORMAT JSONEachRow", self.target.name());
        self.execute(&query, rows).await.map(|_| ())
    }
}

/// Batches waiting on disk while ClickHouse cannot take them: one file a batch,
/// shipped oldest first, at most `max` bytes in all.
pub struct Spool {
    dir: PathBuf,
    max: u64,
    bytes: u64,
    next: u64,
}

impl Spool {
    /// Opens (or creates) the directory; batches left by an earlier run are kept.
    pub fn open(dir: &Path, max: u64) -> Result<Spool, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create the spool {}: {e}", dir.display()))?;
        let mut s = Spool { dir: dir.to_path_buf(), max, bytes: 0, next: 0 };
        for (n, size) in s.files()? {
            s.bytes += size;
            s.next = s.next.max(n + 1);
        }
        Ok(s)
    }

    fn files(&self) -> Result<Vec<(u64, u64)>, String> {
        let mut out = Vec::new();
        let rd =
            std::fs::read_dir(&self.dir).map_err(|e| format!("cannot read the spool {}: {e}", self.dir.display()))?;
        for entry in rd.flatten() {
            let name = entry.file_name();
            let Some(n) = name.to_str().and_then(|n| n.strip_suffix(".jsonl")).and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            out.push((n, entry.metadata().map(|m| m.len()).unwrap_or(0)));
        }
        out.sort_unstable();
        Ok(out)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Keeps a batch; `false` (nothing written) when it does not fit.
    pub fn push(&mut self, batch: &[u8]) -> Result<bool, String> {
        if self.bytes + batch.len() as u64 > self.max {
            return Ok(false);
        }
        let path = self.dir.join(format!("{:012}.jsonl", self.next));
        let tmp = self.dir.join(format!("{:012}.tmp", self.next));
        std::fs::write(&tmp, batch)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("cannot write the spool {}: {e}", self.dir.display()))?;
        self.next += 1;
        self.bytes += batch.len() as u64;
        Ok(true)
    }

    /// The oldest batch, with its number.
    pub fn oldest(&self) -> Result<Option<(u64, Vec<u8>)>, String> {
        let Some(&(n, _)) = self.files()?.first() else { return Ok(None) };
        let path = self.dir.join(format!("{n:012}.jsonl"));
        let data = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Ok(Some((n, data)))
    }

    /// Forgets a batch once ClickHouse has it.
    pub fn remove(&mut self, n: u64, len: usize) -> Result<(), String> {
        let path = self.dir.join(format!("{n:012}.jsonl"));
        std::fs::remove_file(&path).map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
        self.bytes = self.bytes.saturating_sub(len as u64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn urls_name_the_server_database_and_table() {
        let t = Target::parse("clickhouse://ch.internal/llm?table=calls", None, None).unwrap();
        assert_eq!((t.base.as_str(), t.name()), ("http://ch.internal:8123/", "llm.calls".to_string()));
        let t = Target::parse("clickhouses://ops@ch:8443/", None, Some("pw".into())).unwrap();
        assert_eq!(
            (t.base.as_str(), t.name(), t.user.as_deref()),
            ("https://ch:8443/", "default.events".into(), Some("ops"))
        );
        let e = Target::parse("clickhouse://ops:hunter2@ch/db", None, None).unwrap_err();
        assert!(e.contains(PASSWORD_ENV) && !e.contains("hunter2"), "{e}");
        assert!(Target::parse("clickhouse://ch/db;drop", None, None).is_err());
        assert!(Target::parse("http://ch/db", None, None).is_err());
    }

    #[test]
    fn a_row_has_every_column_of_the_schema() {
        let ev = Event {
            request_id: None,
            created_at: 1_764_662_400_123_456,
            provider: Some(Cow::Borrowed("openai")),
            model: Some(Cow::Borrowed("gpt-4o")),
            status: 200,
            latency_ms: Some(812.5),
            prompt_tokens: 10,
            user_id: Some(Cow::Borrowed("u\"1")),
            properties: vec![(Cow::Borrowed("feature"), Cow::Borrowed("search"))],
            feedback: Some(true),
            ..Event::default()
        };
        let mut out = Vec::new();
        write_row(&ev, Cost::Priced(0.25), "gw.jsonl", "tt-abc", &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["request_id"], "tt-abc");
        assert_eq!(
            (v["created_at"].as_i64(), v["created_at_us"].as_i64()),
            (Some(1_764_662_400), Some(1_764_662_400_123_456))
        );
        assert_eq!((v["cost_usd"].as_f64(), v["cost_billed"].as_u64()), (Some(0.25), Some(0)));
        assert_eq!(v["ttft_ms"], serde_json::Value::Null);
        assert_eq!(v["user_id"], "u\"1");
        assert_eq!(
            (v["property_keys"][0].as_str(), v["property_values"][0].as_str()),
            (Some("feature"), Some("search"))
        );
        // Every column of the schema, and nothing else.
        let t = Target::parse("clickhouse://h/db", None, None).unwrap();
        let schema = t.schema();
        let columns: Vec<&str> = schema.lines().filter_map(|l| l.strip_prefix("    ")?.split(' ').next()).collect();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut cols = columns.clone();
        keys.sort_unstable();
        cols.sort_unstable();
        assert_eq!(keys, cols);
    }

    #[test]
    fn the_spool_is_bounded_and_kept_across_runs() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 100).unwrap();
        assert!(s.push(&[b'a'; 60]).unwrap());
        assert!(!s.push(&[b'b'; 60]).unwrap(), "over the bound");
        assert!(s.push(&[b'c'; 40]).unwrap());
        drop(s);
        let mut s = Spool::open(dir.path(), 100).unwrap();
        assert_eq!(s.bytes(), 100);
        let (n, data) = s.oldest().unwrap().unwrap();
        assert_eq!(data, [b'a'; 60]);
        s.remove(n, data.len()).unwrap();
        let (n, data) = s.oldest().unwrap().unwrap();
        assert_eq!(data, [b'c'; 40]);
        s.remove(n, data.len()).unwrap();
        assert!(s.oldest().unwrap().is_none());
        assert_eq!(s.bytes(), 0);
    }
}
