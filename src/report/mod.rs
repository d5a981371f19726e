//! Reports: the metrics of a window as one value, printed as JSON or a table.
//!
//! [`Report::build`] turns a [`Stats`] and a [`Series`] into the numbers the contract
//! defines; [`run`] produces them from inputs read to their end. The live console's
//! snapshots go through the same `build`, so the screen and `report` never disagree.

pub mod table;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::ingest::{self, Counts, Input, InputError};
use crate::parse::{Format, LineParser};
use crate::pricing::{PriceCache, PriceTable, cost_of};
use crate::stats::series::{Series, bucket_for_span};
use crate::stats::{Agg, Capped, Keys, Limits, OTHER, Recorder, Sample, Stats, Usd, pct};
use crate::time::{MICROS_PER_SEC, Micros, format_rfc3339};

/// Which group sections a report includes (`--by`); all of them by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum By {
    Model,
    Provider,
    User,
    Session,
    /// One property key.
    Property(String),
}

impl std::str::FromStr for By {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "model" => By::Model,
            "provider" => By::Provider,
            "user" => By::User,
            "session" => By::Session,
            _ => match s.strip_prefix("property:").or_else(|| s.strip_prefix("prop.")) {
                Some(k) if !k.is_empty() => By::Property(k.to_string()),
                _ => return Err(format!("`{s}`: use model, provider, user, session or property:NAME")),
            },
        })
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// `None` means the whole input (`--window all`).
    pub window: Option<Micros>,
    pub top: usize,
    pub by: Vec<By>,
    pub threads: usize,
    pub prices: PriceTable,
    pub limits: Limits,
    /// `--input-format`: read every line as this format instead of detecting it.
    pub input_format: Option<Format>,
    /// The zone of timestamps written without an offset.
    pub zone: crate::time::Zone,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            window: Some(3600 * MICROS_PER_SEC),
            top: 20,
            by: Vec::new(),
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            prices: PriceTable::builtin(),
            limits: Limits::REPORT,
            input_format: None,
            zone: crate::time::Zone::Utc,
        }
    }
}

impl Options {
    fn shows(&self, by: &By) -> bool {
        self.by.is_empty() || self.by.contains(by)
    }

    fn shows_property(&self, key: &str) -> bool {
        self.by.is_empty() || self.by.iter().any(|b| matches!(b, By::Property(k) if k == key))
    }
}

/// The window a report covers: events with `start < t <= end`, or every event
/// (`first <= t <= last`) for `--window all`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    pub start: Micros,
    pub end: Micros,
    /// Whether `start` itself is inside (true only for `--window all`).
    pub start_inclusive: bool,
}

impl Span {
    pub fn seconds(&self) -> f64 {
        (self.end - self.start) as f64 / 1e6
    }
}

/// The distinct users of a window, and whether the count is exact or an estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveUsers {
    pub count: u64,
    pub exact: bool,
}

impl ActiveUsers {
    pub fn of(stats: &Stats) -> ActiveUsers {
        ActiveUsers { count: stats.active_users(), exact: stats.distinct_users.is_exact() }
    }
}

/// Counts about reading that sit beside the metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IngestReport {
    pub lines: u64,
    pub events: u64,
    pub parse_errors: u64,
    /// Live windows: events older than the window when they arrived.
    pub late: u64,
    /// Valid events outside the window.
    pub outside_window: u64,
    /// Records that are not LLM calls (OpenTelemetry spans of other operations).
    pub skipped: u64,
    /// `skipped` by reason (only reasons that occurred).
    pub skipped_reasons: std::collections::BTreeMap<&'static str, u64>,
    /// Fields that could not be read: each was dropped and its record kept.
    pub field_errors: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub window: WindowReport,
    pub summary: Summary,
    pub latency: Percentiles,
    pub ttft: Percentiles,
    pub errors: Errors,
    pub tokens: Tokens,
    pub cache: Cache,
    pub cost: CostReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_model: Option<Ranked<Group>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_provider: Option<Ranked<Group>>,
    pub by_property: Ranked<Ranked<Group>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<UserRow>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessions: Option<Sessions>,
    pub series_bucket_seconds: i64,
    pub series: Vec<SeriesPoint>,
    pub ingest: IngestReport,
}

#[derive(Debug, Clone, Serialize)]
pub struct WindowReport {
    pub start: Option<String>,
    pub end: Option<String>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub total_requests: u64,
    pub total_cost: f64,
    pub avg_latency: Option<f64>,
    pub error_rate: f64,
    pub success_rate: f64,
    pub active_users: u64,
    /// False once distinct users passed the exact cap and the count is an estimate.
    pub active_users_exact: bool,
    pub requests_per_second: f64,
    pub requests_per_user: f64,
    pub retry_rate: f64,
    pub avg_response_length: f64,
    pub feedback: Feedback,
}

#[derive(Debug, Clone, Serialize)]
pub struct Feedback {
    pub rated: u64,
    pub positive_rate: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub avg: Option<f64>,
    pub max: Option<f64>,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Errors {
    pub total_requests: u64,
    pub successful: u64,
    pub errors: ErrorClasses,
    pub by_status: Ranked<u64>,
    pub error_rate: f64,
    pub rate_4xx: f64,
    pub rate_5xx: f64,
    pub rate_429: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorClasses {
    #[serde(rename = "4xx")]
    pub e4xx: u64,
    #[serde(rename = "5xx")]
    pub e5xx: u64,
    #[serde(rename = "429")]
    pub e429: u64,
    pub status_0: u64,
    pub total: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Tokens {
    pub total_tokens: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
    pub avg_tokens_per_request: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cache {
    pub total_requests: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub hit_rate: f64,
    pub cost_saved: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CostReport {
    pub total: f64,
    pub unpriced_requests: u64,
    pub avg_cost_per_user: f64,
    pub avg_cost_per_request: f64,
}

/// One model, provider or property value.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub requests: u64,
    pub request_share: f64,
    pub cost: f64,
    pub percentage: f64,
    pub latency: GroupLatency,
    pub ttft_avg: Option<f64>,
    pub error_rate: f64,
    pub errors: u64,
    pub rate_429: f64,
    pub cost_per_request: f64,
    pub tokens: u64,
    pub cache_hit_rate: f64,
    pub unpriced_requests: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupLatency {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub avg: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserRow {
    pub user_id: String,
    pub request_count: u64,
    pub request_share: f64,
    pub total_cost: f64,
    pub cost_per_request: f64,
    pub avg_latency: Option<f64>,
    pub ttft_avg: Option<f64>,
    pub error_rate: f64,
    pub rate_429: f64,
    pub cache_hit_rate: f64,
    pub tokens: u64,
    pub last_active: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Sessions {
    /// Distinct sessions, also past the million kept one by one (then an estimate).
    pub total_sessions: u64,
    /// `total_sessions` is a HyperLogLog estimate (over 1,000,000 sessions); the
    /// averages are over the sessions kept one by one.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub estimated: bool,
    pub avg_duration: f64,
    pub avg_cost: f64,
    pub avg_request_count: f64,
    pub success_rate: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SeriesPoint {
    pub time: String,
    pub requests: u64,
    pub errors: u64,
    pub cost: f64,
    pub tokens: u64,
    pub p95: Option<f64>,
}

/// Named rows in a chosen order (by requests, descending), written as a JSON object.
#[derive(Debug, Clone, Default)]
pub struct Ranked<V>(pub Vec<(String, V)>);

impl<V: Serialize> Serialize for Ranked<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<V> Ranked<V> {
    pub fn get(&self, key: &str) -> Option<&V> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

fn percentiles(d: &crate::stats::Dist) -> Percentiles {
    Percentiles {
        p50: d.percentile(50.0),
        p95: d.percentile(95.0),
        p99: d.percentile(99.0),
        avg: d.moments.avg_ms(),
        max: d.moments.max(),
        count: d.count(),
    }
}

fn div(a: f64, b: f64) -> f64 {
    if b == 0.0 { 0.0 } else { a / b }
}

impl Group {
    /// The group's cost, or `None` when it has none to show: its requests have no
    /// price (cache hits cost nothing, so a partly priced group can still be at $0).
    pub fn known_cost(&self) -> Option<f64> {
        let unpriced = self.unpriced_requests > 0 && (self.unpriced_requests == self.requests || self.cost == 0.0);
        (!unpriced).then_some(self.cost)
    }
}

/// One group's numbers (shares against `total`).
pub fn group(a: &Agg, total: &Agg) -> Group {
    let cost = a.cost.to_f64();
    Group {
        requests: a.requests,
        request_share: pct(a.requests, total.requests),
        cost,
        percentage: if total.cost.0 == 0 { 0.0 } else { a.cost.0 as f64 * 100.0 / total.cost.0 as f64 },
        latency: GroupLatency {
            p50: a.latency.percentile(50.0),
            p95: a.latency.percentile(95.0),
            p99: a.latency.percentile(99.0),
            avg: a.latency.moments.avg_ms(),
        },
        ttft_avg: a.ttft.avg_ms(),
        error_rate: a.pct(a.errors),
        errors: a.errors,
        rate_429: a.pct(a.e429),
        cost_per_request: div(cost, a.requests as f64),
        tokens: a.tokens(),
        cache_hit_rate: a.pct(a.cache_hits),
        unpriced_requests: a.unpriced,
    }
}

/// Rows by requests descending (ties by name), the top `top` kept and the rest,
/// with whatever a cap already folded, merged into `(other)`.
fn ranked(groups: &Capped<Agg>, total: &Agg, top: Option<usize>) -> Ranked<Group> {
    let mut rows: Vec<(&str, &Agg)> = groups.iter().collect();
    rows.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then_with(|| a.0.cmp(b.0)));
    let keep = top.unwrap_or(usize::MAX).min(rows.len());
    let mut other = groups.other().cloned();
    for (_, a) in &rows[keep..] {
        other.get_or_insert_with(Agg::default).merge(a);
    }
    let mut out: Vec<(String, Group)> = rows[..keep].iter().map(|(k, a)| (k.to_string(), group(a, total))).collect();
    if let Some(o) = other {
        out.push((OTHER.to_string(), group(&o, total)));
    }
    Ranked(out)
}

impl Report {
    /// The numbers of one window. `stats` holds exactly the window's events.
    pub fn build(
        stats: &Stats,
        series: &Series,
        span: Option<Span>,
        active: ActiveUsers,
        ingest: IngestReport,
        opts: &Options,
    ) -> Report {
        let t = &stats.total;
        let n = t.requests;
        let cost = t.cost.to_f64();
        let users = active.count;
        let seconds = span.map_or(0.0, |s| s.seconds());
        let by_status = Ranked(stats.by_status.iter().map(|(s, c)| (s.to_string(), *c)).collect());

        let mut props: Vec<(&str, &Capped<Agg>)> =
            stats.by_property.iter().filter(|(k, _)| opts.shows_property(k)).collect();
        props.sort_by(|a, b| a.0.cmp(b.0));
        let mut by_property: Vec<(String, Ranked<Group>)> =
            props.into_iter().map(|(k, v)| (k.to_string(), ranked(v, t, Some(opts.top)))).collect();
        if let (Some(o), true) = (stats.by_property.other(), opts.by.is_empty()) {
            by_property.push((OTHER.to_string(), ranked(o, t, Some(opts.top))));
        }

        let users_rows = opts.shows(&By::User).then(|| {
            let mut rows: Vec<(&str, &crate::stats::UserAgg)> = stats.users.iter().collect();
            if let Some(o) = stats.users.other() {
                rows.push((OTHER, o));
            }
            rows.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then_with(|| a.0.cmp(b.0)));
            rows.truncate(opts.top);
            rows.into_iter()
                .map(|(id, u)| UserRow {
                    user_id: id.to_string(),
                    request_count: u.requests,
                    request_share: pct(u.requests, n),
                    total_cost: u.cost.to_f64(),
                    cost_per_request: div(u.cost.to_f64(), u.requests as f64),
                    avg_latency: u.latency.avg_ms(),
                    ttft_avg: u.ttft.avg_ms(),
                    error_rate: pct(u.errors, u.requests),
                    rate_429: pct(u.e429, u.requests),
                    cache_hit_rate: pct(u.cache_hits, u.requests),
                    tokens: u.tokens(),
                    last_active: format_rfc3339(u.last_active),
                })
                .collect()
        });

        let sessions = opts.shows(&By::Session).then(|| {
            let mut all: Vec<&crate::stats::SessionAgg> = stats.sessions.iter().map(|(_, s)| s).collect();
            all.extend(stats.sessions.other());
            let k = all.len() as f64;
            let total_cost: Usd = all.iter().fold(Usd(0), |mut acc, s| {
                acc += s.cost;
                acc
            });
            let (distinct, exact) = stats.sessions.distinct_keys();
            Sessions {
                total_sessions: distinct,
                estimated: !exact,
                avg_duration: div(all.iter().map(|s| s.duration_micros()).sum::<i64>() as f64 / 1e6, k),
                avg_cost: div(total_cost.to_f64(), k),
                avg_request_count: div(all.iter().map(|s| s.requests as f64).sum(), k),
                success_rate: if all.is_empty() {
                    0.0
                } else {
                    all.iter().filter(|s| s.errors == 0).count() as f64 * 100.0 / k
                },
            }
        });

        let series_points = match span {
            Some(s) => {
                let from = if s.start_inclusive { s.start } else { s.start + 1 };
                series
                    .points(from, s.end)
                    .into_iter()
                    .map(|(time, p)| SeriesPoint {
                        time: format_rfc3339(time),
                        requests: p.requests,
                        errors: p.errors,
                        cost: p.cost.to_f64(),
                        tokens: p.tokens,
                        p95: p.latency.percentile(95.0),
                    })
                    .collect()
            }
            None => Vec::new(),
        };

        Report {
            window: WindowReport {
                start: span.map(|s| format_rfc3339(s.start)),
                end: span.map(|s| format_rfc3339(s.end)),
                seconds,
            },
            summary: Summary {
                total_requests: n,
                total_cost: cost,
                avg_latency: t.latency.moments.avg_ms(),
                error_rate: t.pct(t.errors),
                success_rate: t.pct(t.ok),
                active_users: users,
                active_users_exact: active.exact,
                requests_per_second: div(n as f64, seconds),
                requests_per_user: div(n as f64, users as f64),
                retry_rate: t.pct(t.retries),
                avg_response_length: div(t.completion_tokens as f64, n as f64),
                feedback: Feedback {
                    rated: t.feedback_rated,
                    positive_rate: pct(t.feedback_positive, t.feedback_rated),
                },
            },
            latency: percentiles(&t.latency),
            ttft: percentiles(&stats.ttft),
            errors: Errors {
                total_requests: n,
                successful: t.ok,
                errors: ErrorClasses { e4xx: t.e4xx, e5xx: t.e5xx, e429: t.e429, status_0: t.status0, total: t.errors },
                by_status,
                error_rate: t.pct(t.errors),
                rate_4xx: t.pct(t.e4xx),
                rate_5xx: t.pct(t.e5xx),
                rate_429: t.pct(t.e429),
            },
            tokens: Tokens {
                total_tokens: t.tokens(),
                prompt_tokens: t.prompt_tokens,
                completion_tokens: t.completion_tokens,
                cache_read_tokens: t.cache_read_tokens,
                cache_write_tokens: t.cache_write_tokens,
                reasoning_tokens: t.reasoning_tokens,
                avg_tokens_per_request: div(t.tokens() as f64, n as f64),
            },
            cache: Cache {
                total_requests: n,
                cache_hits: t.cache_hits,
                cache_misses: n - t.cache_hits,
                hit_rate: t.pct(t.cache_hits),
                cost_saved: t.cost_saved.to_f64(),
            },
            cost: CostReport {
                total: cost,
                unpriced_requests: t.unpriced,
                avg_cost_per_user: div(cost, users as f64),
                avg_cost_per_request: div(cost, n as f64),
            },
            by_model: opts.shows(&By::Model).then(|| ranked(&stats.by_model, t, None)),
            by_provider: opts.shows(&By::Provider).then(|| ranked(&stats.by_provider, t, None)),
            by_property: Ranked(by_property),
            users: users_rows,
            sessions,
            series_bucket_seconds: series.width() / MICROS_PER_SEC,
            series: series_points,
            ingest,
        }
    }
}

/// One worker's share of a pass over the inputs.
struct Part {
    stats: Stats,
    /// Fills `stats`; finished when the worker is done.
    recorder: Recorder,
    series: Series,
    prices: PriceCache,
    keys: Keys,
    first: Micros,
    last: Micros,
    outside: u64,
}

/// The outcome of reading inputs for a report.
pub struct Outcome {
    pub report: Report,
    /// Reading counts, with the first bad lines for the message on stderr.
    pub counts: Counts,
    /// Passes over the input: 1, or 2 when the guessed end of the window was wrong.
    pub passes: u32,
}

/// Reads `inputs` to their end and reports on the window.
///
/// The window ends at the latest event time, which is known only at the end. Rather
/// than read everything twice, the first pass guesses it from the last lines of each
/// input (logs are written in time order); if an event later than the guess turns up,
/// a second pass with the true end keeps the answer exact.
pub fn run(inputs: &[Input], opts: &Options) -> Result<Outcome, InputError> {
    let guess = match opts.window {
        Some(_) => latest_in_tails(inputs, opts.input_format, opts.zone)?,
        None => None,
    };
    let mut passes = 1;
    let (mut parts, mut counts) = pass(inputs, opts, guess)?;
    let last = parts.iter().map(|p| p.last).max().unwrap_or(Micros::MIN);
    if opts.window.is_some() && last != Micros::MIN && guess != Some(last) {
        passes = 2;
        (parts, counts) = pass(inputs, opts, Some(last))?;
    }
    let mut it = parts.into_iter();
    let mut acc = it.next().expect("at least one worker");
    for p in it {
        acc.stats.merge(&p.stats);
        acc.series.merge(&p.series);
        acc.first = acc.first.min(p.first);
        acc.last = acc.last.max(p.last);
        acc.outside += p.outside;
    }
    let span = (acc.last != Micros::MIN).then(|| match opts.window {
        Some(d) => Span { start: acc.last - d, end: acc.last, start_inclusive: false },
        None => Span { start: acc.first, end: acc.last, start_inclusive: true },
    });
    if opts.window.is_none() && acc.last != Micros::MIN {
        acc.series.coarsen_to(bucket_for_span(acc.last - acc.first));
    }
    let ingest = IngestReport {
        lines: counts.lines,
        events: counts.events,
        parse_errors: counts.parse_errors,
        late: 0,
        outside_window: acc.outside,
        skipped: counts.skipped,
        skipped_reasons: counts.skipped_by_reason().collect(),
        field_errors: counts.field_errors,
    };
    let report = Report::build(&acc.stats, &acc.series, span, ActiveUsers::of(&acc.stats), ingest, opts);
    Ok(Outcome { report, counts, passes })
}

/// One pass: events with `t <= end - window` are counted as outside.
fn pass(inputs: &[Input], opts: &Options, end: Option<Micros>) -> Result<(Vec<Part>, Counts), InputError> {
    let start = opts.window.zip(end).map(|(d, e)| e - d);
    let width = opts.window.map_or(MICROS_PER_SEC, bucket_for_span);
    let read =
        ingest::ReadOptions { threads: opts.threads, format: opts.input_format, progress: None, zone: opts.zone };
    ingest::read_all(
        inputs,
        read,
        || Part {
            stats: Stats::new(opts.limits),
            recorder: Recorder::default(),
            series: Series::new(width),
            prices: PriceCache::default(),
            keys: Keys::default(),
            first: Micros::MAX,
            last: Micros::MIN,
            outside: 0,
        },
        |p, ev| {
            let t = ev.created_at;
            p.first = p.first.min(t);
            p.last = p.last.max(t);
            if start.is_some_and(|s| t <= s) {
                p.outside += 1;
                return;
            }
            p.keys.hash(ev);
            let price = p.prices.get_keyed(&opts.prices, ev, &p.keys);
            let x = Sample::new(ev, cost_of(ev, price.as_ref()));
            p.recorder.record(&mut p.stats, ev, &x, &p.keys);
            p.series.record(ev, &x);
        },
    )
    .map(|(mut parts, counts)| {
        parts.iter_mut().for_each(|p| p.recorder.finish(&mut p.stats));
        (parts, counts)
    })
}

/// The latest event time in the last 256 KiB of each input (a guess: lines cut by the
/// 256 KiB boundary, or CSV rows spanning lines, are simply not counted in it).
fn latest_in_tails(
    inputs: &[Input],
    format: Option<Format>,
    zone: crate::time::Zone,
) -> Result<Option<Micros>, InputError> {
    let mut parser = LineParser::new(format.filter(|f| *f != Format::HeliconeCsv)).without_holding().with_zone(zone);
    let mut latest = None;
    for input in inputs {
        let tail = ingest::tail_lines(input, 256 << 10)?;
        for line in crate::parse::lines(&tail) {
            let _ = parser.parse(line, &mut |ev| latest = latest.max(Some(ev.created_at)));
        }
    }
    Ok(latest)
}
