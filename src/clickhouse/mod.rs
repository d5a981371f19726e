//! Reading tokentop's numbers out of ClickHouse: the window's [`Stats`], series,
//! users and sessions, computed by the server as aggregates, never pulled as rows.
//!
//! Every histogram is computed in SQL with the buckets of [`crate::stats::hist`]
//! (`BUCKET_SQL`), so the rows the server returns merge into the same `Stats` local
//! events fill, and `report clickhouse://…` gives the numbers `report` gives on the
//! file that was shipped: counts and costs exact (costs are summed as integer
//! picodollars in two halves, so no sum overflows or rounds), percentiles equal.
//!
//! A [`Layout`] says where each field is in a table (SQL expressions over its
//! columns): tokentop's own table (what `ship` writes) and Helicone's
//! `request_response_rmt` are two layouts of the same queries. Filters and
//! drill-downs become `WHERE` clauses ([`Filter::to_sql`]), so they cover the whole
//! window. Queries carry a time limit and a bound on their result; a slow or failing
//! server is an error the caller shows, never a hang.

use std::collections::HashMap;
use std::time::Duration;

use crate::filter::{Filter, SqlFields, sql_string};
use crate::report::{ActiveUsers, Sessions, Span};
use crate::ship::{Client, InsertError, Target};
use crate::stats::series::{Point, Series, bucket_for_span};
use crate::stats::{Agg, Dist, Limits, Moments, OTHER, SessionAgg, Stats, Usd, UserAgg};
use crate::time::Micros;

pub mod rollup;

/// Where a table keeps each field tokentop reads, as SQL expressions.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub request_id: &'static str,
    /// Event time, epoch microseconds (Int64).
    pub time_us: &'static str,
    /// The time column of the table's sorting key (a `DateTime`), compared too so
    /// that the server reads only the parts of the window.
    pub time_key: &'static str,
    pub model: &'static str,
    pub provider: &'static str,
    pub status: &'static str,
    /// `''` when none.
    pub user: &'static str,
    pub session: &'static str,
    pub session_name: &'static str,
    pub session_path: &'static str,
    /// Milliseconds, NULL when unknown.
    pub latency_ms: &'static str,
    pub ttft_ms: &'static str,
    /// USD charged; NULL when unpriced; 0 for cache hits.
    pub cost_usd: &'static str,
    /// USD a cache hit saved (0 otherwise).
    pub saved_usd: &'static str,
    pub cache_hit: &'static str,
    pub prompt_tokens: &'static str,
    pub completion_tokens: &'static str,
    pub cache_read_tokens: &'static str,
    pub cache_write_tokens: &'static str,
    pub reasoning_tokens: &'static str,
    pub retry: &'static str,
    /// 1 good, 0 bad, NULL none.
    pub feedback: &'static str,
    pub error: &'static str,
    pub property_keys: &'static str,
    pub property_values: &'static str,
    /// Whether to read with `FINAL` (a `ReplacingMergeTree` whose duplicates must
    /// fold before they are counted).
    pub final_: bool,
    /// Whether `tokentop ship` keeps a rollup of the table (see [`rollup`]).
    pub rollup: bool,
}

/// A filter as a condition on `layout`'s columns.
pub fn filter_sql(l: &Layout, filter: &Filter) -> String {
    let tokens = format!("({} + {})", l.prompt_tokens, l.completion_tokens);
    let cost = format!("ifNull({}, 0)", l.cost_usd);
    filter.to_sql(&SqlFields {
        model: l.model,
        provider: l.provider,
        user: l.user,
        session: l.session,
        status: l.status,
        cache_hit: l.cache_hit,
        latency_ms: l.latency_ms,
        ttft_ms: l.ttft_ms,
        cost_usd: &cost,
        tokens: &tokens,
        error: l.error,
        property_keys: l.property_keys,
        property_values: l.property_values,
    })
}

/// The table `tokentop ship` writes (see [`Target::schema`]).
pub const TOKENTOP: Layout = Layout {
    request_id: "request_id",
    time_us: "created_at_us",
    time_key: "created_at",
    model: "model",
    provider: "provider",
    status: "status",
    user: "user_id",
    session: "session_id",
    session_name: "session_name",
    session_path: "session_path",
    latency_ms: "latency_ms",
    ttft_ms: "ttft_ms",
    cost_usd: "cost_usd",
    saved_usd: "cost_saved_usd",
    cache_hit: "cache_hit",
    prompt_tokens: "prompt_tokens",
    completion_tokens: "completion_tokens",
    cache_read_tokens: "cache_read_tokens",
    cache_write_tokens: "cache_write_tokens",
    reasoning_tokens: "reasoning_tokens",
    retry: "retry",
    feedback: "feedback",
    error: "error",
    property_keys: "property_keys",
    property_values: "property_values",
    final_: true,
    rollup: true,
};

/// A `Helicone-Session-*` property of Helicone's `properties` map ('' when none),
/// its key matched without regard to case as Helicone's export reader does.
macro_rules! helicone_session {
    ($name:literal) => {
        concat!(
            "arrayElement(mapValues(properties), indexOf(arrayMap(k -> lower(k), mapKeys(properties)), 'helicone-session-",
            $name,
            "'))"
        )
    };
}

/// The properties of a Helicone row: its `properties` map without the session keys,
/// and `country_code` (as the export reader counts them).
macro_rules! helicone_properties {
    ($part:literal, $country:literal) => {
        concat!(
            "arrayConcat(arrayFilter((x, k) -> NOT (lower(k) IN ('helicone-session-id', 'helicone-session-name', \
             'helicone-session-path')), ",
            $part,
            "(properties), mapKeys(properties)), if(ifNull(country_code, '') = '', [], [",
            $country,
            "]))"
        )
    };
}

/// Helicone's own table, `request_response_rmt` (`?schema=helicone`): a self-hosted
/// Helicone's requests, read as its export is (see [`crate::parse::helicone`]).
/// `cost` is USD × 10^9 (Helicone's `COST_PRECISION_MULTIPLIER`), NULL when it has
/// no price; a non-zero `cache_reference_id` is a cache hit, whose `cost` is what it
/// saved; prompt tokens include the cache's, which Helicone counts apart. Current
/// ClickHouse only (`Map`, `DateTime64`).
pub fn helicone() -> Layout {
    Layout { provider: helicone_provider(), ..HELICONE }
}

/// Helicone's provider names (`OPENAI`, `GOOGLE`) as tokentop's ids: lower-case,
/// through the aliases of [`crate::parse::normalize`].
fn helicone_provider() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        let aliases = crate::parse::PROVIDER_ALIASES;
        let from: Vec<String> = aliases.iter().map(|(alias, _)| sql_string(alias)).collect();
        let to: Vec<String> = aliases.iter().map(|(_, id)| sql_string(id)).collect();
        format!(
            "if(provider = '', 'unknown', transform(lower(toString(provider)), [{}], [{}], lower(toString(provider))))",
            from.join(", "),
            to.join(", ")
        )
    })
}

const HELICONE: Layout = Layout {
    request_id: "toString(request_id)",
    time_us: "toUnixTimestamp64Micro(request_created_at)",
    time_key: "request_created_at",
    model: "if(model = '', 'unknown', toString(model))",
    provider: "if(provider = '', 'unknown', toString(provider))",
    status: "if(status < 0, 0, status)",
    user: "toString(user_id)",
    session: helicone_session!("id"),
    session_name: helicone_session!("name"),
    session_path: helicone_session!("path"),
    latency_ms: "toFloat64(latency)",
    // A first token at 0 or at the end of the call was not measured (as the export
    // reader has it).
    ttft_ms: "if(time_to_first_token <= 0 OR (latency > 0 AND time_to_first_token >= latency), NULL, \
              toFloat64(time_to_first_token))",
    cost_usd: "if(cache_reference_id != toUUID('00000000-0000-0000-0000-000000000000'), 0, cost / 1000000000)",
    saved_usd: "if(cache_reference_id != toUUID('00000000-0000-0000-0000-000000000000'), ifNull(cost, 0) / 1000000000, 0)",
    cache_hit: "cache_reference_id != toUUID('00000000-0000-0000-0000-000000000000')",
    prompt_tokens: "ifNull(prompt_tokens, 0) + prompt_cache_read_tokens + prompt_cache_write_tokens",
    completion_tokens: "ifNull(completion_tokens, 0)",
    cache_read_tokens: "prompt_cache_read_tokens",
    cache_write_tokens: "prompt_cache_write_tokens",
    reasoning_tokens: "0",
    retry: "toUInt64(0)",
    feedback: "CAST(NULL, 'Nullable(UInt8)')",
    error: "''",
    property_keys: helicone_properties!("mapKeys", "'country_code'"),
    property_values: helicone_properties!("mapValues", "assumeNotNull(country_code)"),
    final_: true,
    rollup: false,
};

/// The layout `?schema=` names (tokentop's by default).
pub fn layout_named(name: Option<&str>) -> Result<Layout, String> {
    match name {
        None | Some("tokentop") => Ok(TOKENTOP),
        Some("helicone") => Ok(helicone()),
        Some(other) => Err(format!("schema `{other}`: use tokentop (what `tokentop ship` writes) or helicone")),
    }
}

/// The histogram bucket of `us` (a UInt64 of microseconds), as
/// [`crate::stats::hist::bucket_index`] computes it: exact below 128, then 64
/// sub-buckets per power of two. `floor(log2)` is exact for values below 2^40 µs
/// (12 days).
pub fn bucket_sql(us: &str) -> String {
    format!(
        "if({us} < 128, {us}, toUInt64(floor(log2(greatest({us}, 128))) - 6) * 64 + bitShiftRight({us}, toUInt64(floor(log2(greatest({us}, 128))) - 6)))"
    )
}

/// The counters and moments of [`Agg`], in the order [`agg_from`] reads them,
/// over the columns [`Query::inner`] names.
const AGG_SQL: &str = "count(), countIf(status >= 200 AND status < 300), countIf(status >= 400 OR status = 0), \
    countIf(status >= 400 AND status < 500), countIf(status >= 500 AND status < 600), countIf(status = 429), \
    countIf(status = 0), sum(intDiv(cost, 1000000)), sum(cost % 1000000), \
    sum(intDiv(saved, 1000000)), sum(saved % 1000000), sum(unpriced), \
    sum(pt), sum(ct), sum(crt), sum(cwt), sum(rt), sum(hit), countIf(retry > 0), countIf(fb != 2), countIf(fb = 1), \
    sum(has_lat), sum(intDiv(lat, 1000000000)), sum(lat % 1000000000), max(lat), \
    sum(has_ttft), sum(intDiv(ttft, 1000000000)), sum(ttft % 1000000000), max(ttft), \
    min(t), max(t)";
const AGG_COLUMNS: usize = 31;

/// What a window's numbers are asked for.
#[derive(Debug, Clone)]
pub struct Ask {
    pub span: Span,
    /// Series bucket width.
    pub bucket: Micros,
    pub filter: Option<Filter>,
    /// Property values and users listed one by one (the rest fold into `(other)`).
    pub top: usize,
    pub limits: Limits,
    pub parts: Parts,
}

/// What a window is asked for besides its totals, statuses, models, providers,
/// series and active users (which it always gets): the rest costs a pass over the
/// window's rows each, which a screen that does not show them should not pay for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    /// Property values.
    pub properties: bool,
    /// The top users and sessions, and the sessions summary.
    pub people: bool,
    /// Latency percentiles of each model and provider (the window's own and its
    /// series' always come).
    pub group_latency: bool,
}

impl Parts {
    pub const ALL: Parts = Parts { properties: true, people: true, group_latency: true };
}

/// A row's latency and TTFT in whole microseconds (as the histograms file them).
const LAT_US: &str = "intDiv(lat + 500, 1000)";
const TTFT_US: &str = "intDiv(ttft + 500, 1000)";

/// The numbers of one window, as the engine's would be.
#[derive(Debug, Clone)]
pub struct Window {
    pub stats: Stats,
    pub series: Series,
    pub span: Span,
    pub users: ActiveUsers,
    pub sessions: Sessions,
    /// Rows in the window.
    pub rows: u64,
    /// Minutes of the window read from the rollup.
    pub rolled: u64,
    /// How long the server took, all queries together.
    pub took: Duration,
}

/// Rows in the whole table and their time range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Extent {
    pub rows: u64,
    pub first: Micros,
    pub last: Micros,
}

/// A table read through one [`Layout`].
#[derive(Clone)]
pub struct Store {
    client: Client,
    layout: Layout,
    /// Seconds a query may run.
    pub timeout: u64,
}

/// Names the table only: the target holds the password.
impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({}{})", self.target().base, self.target().name())
    }
}

impl Store {
    pub fn new(target: Target, mut layout: Layout) -> Result<Store, String> {
        if let Some(f) = target.final_ {
            layout.final_ = f;
        }
        if target.rollup == Some(false) {
            layout.rollup = false;
        }
        Ok(Store { client: Client::new(target)?, layout, timeout: 30 })
    }

    pub fn target(&self) -> &Target {
        self.client.target()
    }

    /// A `SELECT`'s rows (TSV, unescaped), bounded in time and size.
    async fn rows(&self, sql: &str) -> Result<Vec<Vec<String>>, InsertError> {
        let settings = [
            ("max_execution_time", self.timeout.to_string()),
            ("max_result_rows", "2000000".to_string()),
            ("result_overflow_mode", "throw".to_string()),
            ("max_query_size", "4194304".to_string()),
        ];
        let t0 = std::time::Instant::now();
        let text = self.client.select(&format!("{sql} FORMAT TabSeparated"), &settings).await?;
        if std::env::var_os("TT_SQL_DEBUG").is_some() {
            eprintln!("{:?} {} bytes {}", t0.elapsed(), text.len(), &sql[..sql.len().min(100)]);
            if std::env::var_os("TT_SQL_FULL").is_some() {
                eprintln!("{sql}");
            }
        }
        Ok(text.lines().map(|l| l.split('\t').map(unescape).collect()).collect())
    }

    fn filter_sql(&self, filter: Option<&Filter>) -> String {
        filter.map_or_else(|| "1".to_string(), |f| filter_sql(&self.layout, f))
    }

    /// The rows of `span` (all rows without one) that pass `filter`, with tokentop's
    /// fields under short names: the subquery every aggregate reads.
    fn inner(&self, span: Option<&Span>, filter: Option<&Filter>) -> String {
        let (range, time) = self.span_sql(span);
        self.inner_where(&range, &time, filter)
    }

    /// The condition keeping the rows of `span` (all without one), and the time
    /// each row counts at.
    fn span_sql(&self, span: Option<&Span>) -> (String, String) {
        let l = &self.layout;
        // Rows stamped after the span's end (a gateway's clock ahead) count as
        // happening at its end, as the live engine files them under "now".
        match span {
            Some(s) => {
                let lo = s.start.div_euclid(1_000_000);
                let gt = if s.start_inclusive { ">=" } else { ">" };
                let range = format!(
                    "{tk} >= toDateTime({lo}) AND {t} {gt} {start}",
                    tk = l.time_key,
                    t = l.time_us,
                    start = s.start
                );
                (range, format!("least({}, toInt64({}))", l.time_us, s.end))
            }
            None => ("1".to_string(), l.time_us.to_string()),
        }
    }

    /// Like [`inner`](Self::inner), for the rows `range` (a condition on the
    /// table's columns) keeps, each counted at `time`.
    fn inner_where(&self, range: &str, time: &str, filter: Option<&Filter>) -> String {
        let l = &self.layout;
        let time = time.to_string();
        // Nullable columns are read once into a value (0 when NULL) and a flag:
        // aggregates over plain columns run about a third faster on ClickHouse 18.
        let ns = |ms: &str| format!("ifNull(toUInt64({ms} * 1000000 + 0.5), 0)");
        let pico = |usd: &str| format!("ifNull(toInt64({usd} * 1000000000000 + 0.5), 0)");
        let columns: [(&str, String); 29] = [
            ("t", time),
            ("model", l.model.to_string()),
            ("provider", l.provider.to_string()),
            ("status", format!("toUInt16({})", l.status)),
            ("user", l.user.to_string()),
            ("session", l.session.to_string()),
            ("lat", ns(l.latency_ms)),
            ("has_lat", format!("isNotNull({})", l.latency_ms)),
            ("ttft", ns(l.ttft_ms)),
            ("has_ttft", format!("isNotNull({})", l.ttft_ms)),
            ("cost", pico(l.cost_usd)),
            ("unpriced", format!("isNull({})", l.cost_usd)),
            ("saved", pico(l.saved_usd)),
            ("hit", format!("toUInt8({})", l.cache_hit)),
            ("pt", format!("toUInt64({})", l.prompt_tokens)),
            ("ct", format!("toUInt64({})", l.completion_tokens)),
            ("crt", format!("toUInt64({})", l.cache_read_tokens)),
            ("cwt", format!("toUInt64({})", l.cache_write_tokens)),
            ("rt", format!("toUInt64({})", l.reasoning_tokens)),
            ("retry", format!("toUInt64({})", l.retry)),
            ("fb", format!("ifNull({}, 2)", l.feedback)),
            ("pk", l.property_keys.to_string()),
            ("pv", l.property_values.to_string()),
            ("rid", l.request_id.to_string()),
            ("lat_ms", l.latency_ms.to_string()),
            ("ttft_ms", l.ttft_ms.to_string()),
            ("err", l.error.to_string()),
            ("sname", l.session_name.to_string()),
            ("spath", l.session_path.to_string()),
        ];
        // Computed under names no table has (`tt_…`), then renamed one level up: a
        // short name such as `cost` must not stand for a table's column of that name
        // inside the expressions (ClickHouse resolves aliases before columns).
        let computed: Vec<String> = columns.iter().map(|(name, expr)| format!("{expr} AS tt_{name}")).collect();
        let renamed: Vec<String> = columns.iter().map(|(name, _)| format!("tt_{name} AS {name}")).collect();
        format!(
            "SELECT {} FROM (SELECT {} FROM {} {} WHERE {range} AND {})",
            renamed.join(", "),
            computed.join(", "),
            self.target().name(),
            if l.final_ { "FINAL" } else { "" },
            self.filter_sql(filter),
        )
    }

    /// How many rows the table holds and their time range (`first`/`last` are
    /// MAX/MIN when it is empty).
    pub async fn extent(&self) -> Result<Extent, InsertError> {
        let rows = self.rows(&format!("SELECT count(), min(t), max(t) FROM ({})", self.inner(None, None))).await?;
        let r = rows.first().ok_or_else(|| bad_answer("no row"))?;
        let n = num(r, 0)?;
        Ok(if n == 0 {
            Extent { rows: 0, first: Micros::MAX, last: Micros::MIN }
        } else {
            Extent { rows: n, first: int(r, 1)?, last: int(r, 2)? }
        })
    }

    /// The numbers of a window. Whole minutes the table's rollup holds (see
    /// [`rollup`]) are read from it; the rest from the rows.
    pub async fn window(&self, ask: &Ask) -> Result<Window, InsertError> {
        let started = std::time::Instant::now();
        let whole = self.inner(Some(&ask.span), ask.filter.as_ref());
        let mut stats = Stats::new(ask.limits);
        let mut series = Series::new(ask.bucket);
        let plan = self.rollup_plan(ask).await?;
        let users = match &plan {
            Some(plan) => {
                // Both are small next to what they replace: asked together.
                let (groups, users) =
                    tokio::join!(self.rolled_groups(ask, plan, &mut stats, &mut series), self.rolled_users(ask, plan));
                groups?;
                users?
            }
            None => {
                self.groups(ask, &whole, &mut stats, &mut series).await?;
                self.distinct_users(&whole).await?
            }
        };
        if ask.parts.properties {
            self.properties(ask, &whole, &mut stats).await?;
        }
        let mut sessions = Sessions::default();
        if ask.parts.people {
            for (id, u) in self.users(&whole, ask.top).await? {
                *stats.users.entry(&id) = u;
            }
            sessions = self.sessions(&whole).await?;
            for (id, s) in self.top_sessions(&whole, ask.top).await? {
                *stats.sessions.entry(&id) = s;
            }
        }
        Ok(Window {
            rows: stats.total.requests,
            stats,
            series,
            span: ask.span,
            users,
            sessions,
            rolled: plan.map_or(0, |p| p.minutes_rolled),
            took: started.elapsed(),
        })
    }

    /// Distinct users of the rows of `inner`.
    async fn distinct_users(&self, inner: &str) -> Result<ActiveUsers, InsertError> {
        let rows = self.rows(&format!("SELECT uniqExact(user) FROM ({inner}) WHERE user != ''")).await?;
        let r = rows.first().ok_or_else(|| bad_answer("no row"))?;
        Ok(ActiveUsers { count: num(r, 0)?, exact: true })
    }

    /// Totals, statuses, models, providers and the series of the rows of `inner`,
    /// with their latency histograms and the TTFT histograms of the total and series.
    async fn groups(&self, ask: &Ask, inner: &str, stats: &mut Stats, series: &mut Series) -> Result<(), InsertError> {
        let width = ask.bucket;
        // One branch per dimension, each a plain GROUP BY (one ARRAY JOIN of every
        // dimension made ClickHouse aggregate each row several times over, 4x
        // slower): (kind, b) is t the total, s a status, m a model, p a provider,
        // b a series bucket.
        let groups = ask.limits.groups.max(1);
        let branch = |kind: &str, b: &str, tail: &str| {
            format!("SELECT * FROM (SELECT '{kind}' AS kind, {b} AS b, {AGG_SQL} FROM ({inner}) {tail})")
        };
        let top = |by: &str| format!("GROUP BY {by} ORDER BY count() DESC, {by} LIMIT {groups}");
        let sql = [
            branch("t", "''", ""),
            branch("s", "toString(status)", "GROUP BY b"),
            branch("m", "model", &top("model")),
            branch("p", "provider", &top("provider")),
            branch("b", &format!("toString(intDiv(t, {width}))"), "GROUP BY b"),
        ]
        .join(" UNION ALL ");
        for r in &self.rows(&sql).await? {
            let agg = agg_from(&r[2..])?;
            let (kind, b) = (r[0].as_str(), r[1].as_str());
            match kind {
                "t" => {
                    // An empty window answers min/max 0: keep "no time seen".
                    if agg.requests > 0 {
                        stats.first = stats.first.min(int(r, 2 + AGG_COLUMNS - 2)?);
                        stats.last = stats.last.max(int(r, 2 + AGG_COLUMNS - 1)?);
                    }
                    stats.total = agg;
                }
                "s" => {
                    let s = b.parse().map_err(|_| bad_answer(b))?;
                    stats.by_status.insert(s, agg.requests);
                }
                "m" => *stats.by_model.entry(&clean(b)) = agg,
                "p" => *stats.by_provider.entry(&clean(b)) = agg,
                "b" => {
                    let idx: i64 = b.parse().map_err(|_| bad_answer(b))?;
                    series.merge_point_at(
                        idx * width,
                        &Point::of(&agg, Dist::from_moments(agg.latency.moments), Dist::from_moments(agg.ttft)),
                    );
                }
                _ => return Err(bad_answer(kind)),
            }
        }
        self.histograms(ask, inner, stats, series).await
    }

    /// Property values: the top of each key one by one, the rest folded into
    /// `(other)`, each with its latency histogram.
    async fn properties(&self, ask: &Ask, inner: &str, stats: &mut Stats) -> Result<(), InsertError> {
        let groups = ask.limits.groups.max(1);
        let sql = format!(
            "SELECT k, v, {AGG_SQL} FROM ({inner}) ARRAY JOIN pk AS k, pv AS v \
             GROUP BY k, v ORDER BY k, count() DESC, v LIMIT {groups} BY k"
        );
        let mut values: HashMap<String, Vec<(String, Agg)>> = HashMap::new();
        for r in &self.rows(&sql).await? {
            values.entry(clean(&r[0])).or_default().push((clean(&r[1]), agg_from(&r[2..])?));
        }
        // Keys with more values than the server listed: their totals, for the rest.
        let mut key_totals: HashMap<String, Agg> = HashMap::new();
        let cut: Vec<String> = values.iter().filter(|(_, v)| v.len() >= groups).map(|(k, _)| sql_string(k)).collect();
        if !cut.is_empty() {
            let sql = format!(
                "SELECT k, {AGG_SQL} FROM ({inner}) ARRAY JOIN pk AS k WHERE k IN ({}) GROUP BY k",
                cut.join(", ")
            );
            for r in self.rows(&sql).await? {
                key_totals.insert(clean(&r[0]), agg_from(&r[1..])?);
            }
        }
        // Values past `top` fold into `(other)`, and so do those past the groups
        // bound the server left out: their counters are the key's total less the
        // values listed; the histogram query files all of them under `(other)`.
        let mut shown: Vec<(String, String)> = Vec::new();
        for (key, mut vals) in values {
            vals.sort_by(|x, y| y.1.requests.cmp(&x.1.requests).then_with(|| x.0.cmp(&y.0)));
            let map = stats.by_property.entry(&key);
            let mut folded: Option<Agg> = None;
            let mut listed = Agg::default();
            for (i, (v, agg)) in vals.into_iter().enumerate() {
                listed.merge(&agg);
                if i < ask.top {
                    shown.push((key.clone(), v.clone()));
                    *map.entry(&v) = agg;
                } else {
                    folded.get_or_insert_with(Agg::default).merge(&agg);
                }
            }
            if let Some(total) = key_totals.get(&key)
                && total.requests > listed.requests
            {
                let rest = folded.get_or_insert_with(Agg::default);
                rest.merge(&subtract(total, &listed));
            }
            if let Some(mut rest) = folded {
                rest.latency = Dist::from_moments(rest.latency.moments);
                *map.other_mut() = rest;
            }
        }
        let listed = if shown.is_empty() {
            "0".to_string()
        } else {
            let tuples: Vec<String> =
                shown.iter().map(|(k, v)| format!("({}, {})", sql_string(k), sql_string(v))).collect();
            format!("(k, v) IN ({})", tuples.join(", "))
        };
        let sql = format!(
            "SELECT k, if({listed}, v, '{OTHER}') AS b, {idx} AS i, count() FROM ({inner}) \
             ARRAY JOIN pk AS k, pv AS v WHERE has_lat GROUP BY k, b, i",
            idx = bucket_sql(LAT_US)
        );
        for r in self.rows(&sql).await? {
            let (i, n) = (num(&r, 2)? as usize, num(&r, 3)? as u32);
            let values = stats.by_property.entry(&clean(&r[0]));
            let dist = match r[1].as_str() {
                OTHER => &mut values.other_mut().latency,
                v => &mut values.entry(&clean(v)).latency,
            };
            dist.add_bucket(i, n);
        }
        Ok(())
    }

    /// Latency histograms of the total, models, providers and series; TTFT of the
    /// total and the series.
    async fn histograms(
        &self,
        ask: &Ask,
        inner: &str,
        stats: &mut Stats,
        series: &mut Series,
    ) -> Result<(), InsertError> {
        let width = ask.bucket;
        let branch = |kind: &str, b: &str, by: &str| {
            format!(
                "SELECT '{kind}' AS kind, {b} AS b, {idx} AS i, count() FROM ({inner}) WHERE has_lat GROUP BY {by}i",
                idx = bucket_sql(LAT_US)
            )
        };
        let sql = [
            branch("t", "''", ""),
            branch("m", "model", "model, "),
            branch("p", "provider", "provider, "),
            branch("b", &format!("toString(intDiv(t, {width}))"), "b, "),
        ]
        .join(" UNION ALL ");
        let mut series_lat: HashMap<i64, Dist> = HashMap::new();
        for r in self.rows(&sql).await? {
            let (i, n) = (num(&r, 2)? as usize, num(&r, 3)? as u32);
            let dist = match r[0].as_str() {
                "t" => &mut stats.total.latency,
                "m" => &mut stats.by_model.entry(&clean(&r[1])).latency,
                "p" => &mut stats.by_provider.entry(&clean(&r[1])).latency,
                "b" => series_lat.entry(r[1].parse().map_err(|_| bad_answer(&r[1]))?).or_default(),
                k => return Err(bad_answer(k)),
            };
            dist.add_bucket(i, n);
        }
        let sql = format!(
            "SELECT if(d = -1, 't', 'b') AS kind, d, {idx} AS i, count() FROM ({inner}) \
             ARRAY JOIN [-1, intDiv(t, {width})] AS d WHERE has_ttft GROUP BY kind, d, i",
            idx = bucket_sql(TTFT_US)
        );
        let mut series_ttft: HashMap<i64, Dist> = HashMap::new();
        stats.ttft = Dist::from_moments(stats.total.ttft);
        for r in self.rows(&sql).await? {
            let (i, n) = (num(&r, 2)? as usize, num(&r, 3)? as u32);
            match r[0].as_str() {
                "t" => stats.ttft.add_bucket(i, n),
                _ => series_ttft.entry(int(&r, 1)?).or_default().add_bucket(i, n),
            }
        }
        // Series points got their moments with the counters; add the histograms.
        let keys: Vec<i64> = series_lat.keys().chain(series_ttft.keys()).copied().collect();
        for idx in keys {
            let mut p = Point::default();
            if let Some(d) = series_lat.remove(&idx) {
                p.latency = d;
            }
            if let Some(d) = series_ttft.remove(&idx) {
                p.ttft = d;
            }
            series.merge_point_at(idx * width, &p);
        }
        Ok(())
    }

    /// The `top` users by requests (ties by id).
    async fn users(&self, inner: &str, top: usize) -> Result<Vec<(String, UserAgg)>, InsertError> {
        let sql = format!(
            "SELECT user, {AGG_SQL} FROM ({inner}) WHERE user != '' GROUP BY user ORDER BY count() DESC, user LIMIT {top}"
        );
        self.rows(&sql)
            .await?
            .iter()
            .map(|r| {
                let u = user_of(&agg_from(&r[1..])?, int(r, AGG_COLUMNS)?);
                Ok((clean(&r[0]), u))
            })
            .collect()
    }

    /// The `top` sessions by requests (ties by id).
    async fn top_sessions(&self, inner: &str, top: usize) -> Result<Vec<(String, SessionAgg)>, InsertError> {
        let sql = format!(
            "SELECT session, count(), countIf(status >= 400 OR status = 0), sum(intDiv(cost, 1000000)), \
             sum(cost % 1000000), min(t), max(t + toInt64(intDiv(lat + 500, 1000))), \
             anyIf(sname, sname != '') FROM ({inner}) WHERE session != '' GROUP BY session \
             ORDER BY count() DESC, session LIMIT {top}"
        );
        self.rows(&sql)
            .await?
            .iter()
            .map(|r| {
                let s = SessionAgg {
                    requests: num(r, 1)?,
                    errors: num(r, 2)?,
                    cost: pico(int(r, 3)?, int(r, 4)?),
                    first_start: int(r, 5)?,
                    last_end: int(r, 6)?,
                    name: r.get(7).filter(|n| !n.is_empty()).map(|n| clean(n).into()),
                };
                Ok((clean(&r[0]), s))
            })
            .collect()
    }

    /// The sessions summary, over every session of the window.
    async fn sessions(&self, inner: &str) -> Result<Sessions, InsertError> {
        let sql = format!(
            "SELECT count(), sum(n), sum(chi), sum(clo), sum(dur), countIf(errs = 0) FROM (\
             SELECT session, count() AS n, countIf(status >= 400 OR status = 0) AS errs, \
             sum(intDiv(cost, 1000000)) AS chi, sum(cost % 1000000) AS clo, \
             greatest(max(t + toInt64(intDiv(lat + 500, 1000))) - min(t), 0) AS dur \
             FROM ({inner}) WHERE session != '' GROUP BY session)"
        );
        let rows = self.rows(&sql).await?;
        let r = rows.first().ok_or_else(|| bad_answer("no row"))?;
        let k = num(r, 0)?;
        let cost = pico(int(r, 2)?, int(r, 3)?);
        let kf = k as f64;
        let div = |a: f64, b: f64| if b == 0.0 { 0.0 } else { a / b };
        Ok(Sessions {
            total_sessions: k,
            estimated: false,
            avg_duration: div(int(r, 4)? as f64 / 1e6, kf),
            avg_cost: div(cost.to_f64(), kf),
            avg_request_count: div(num(r, 1)? as f64, kf),
            success_rate: if k == 0 { 0.0 } else { num(r, 5)? as f64 * 100.0 / kf },
        })
    }
}

/// The span a report covers: `window` back from the table's latest row, or all of
/// it; `None` when the table is empty.
fn report_span(extent: &Extent, window: Option<Micros>) -> Option<Span> {
    (extent.rows > 0).then(|| match window {
        Some(d) => Span { start: extent.last - d, end: extent.last, start_inclusive: false },
        None => Span { start: extent.first, end: extent.last, start_inclusive: true },
    })
}

/// The series bucket of a report over `span` (`report`'s rule).
fn report_bucket(span: &Span, window: Option<Micros>) -> Micros {
    match window {
        Some(w) => bucket_for_span(w),
        None => bucket_for_span(span.end - span.start),
    }
}

/// A user's row from the aggregate of their requests, last seen at `last_active`.
fn user_of(a: &Agg, last_active: Micros) -> UserAgg {
    UserAgg {
        requests: a.requests,
        errors: a.errors,
        e4xx: a.e4xx,
        e5xx: a.e5xx,
        e429: a.e429,
        cache_hits: a.cache_hits,
        prompt_tokens: a.prompt_tokens,
        completion_tokens: a.completion_tokens,
        cost: a.cost,
        latency: a.latency.moments,
        ttft: a.ttft,
        last_active,
    }
}

/// `total` less `part` (part of it): counters and sums; the max stays the total's.
fn subtract(total: &Agg, part: &Agg) -> Agg {
    let m = |t: &Moments, p: &Moments| Moments {
        count: t.count - p.count.min(t.count),
        sum_ns: t.sum_ns - p.sum_ns.min(t.sum_ns),
        max_ns: t.max_ns,
    };
    let d = |t: u64, p: u64| t.saturating_sub(p);
    Agg {
        requests: d(total.requests, part.requests),
        ok: d(total.ok, part.ok),
        errors: d(total.errors, part.errors),
        e4xx: d(total.e4xx, part.e4xx),
        e5xx: d(total.e5xx, part.e5xx),
        e429: d(total.e429, part.e429),
        status0: d(total.status0, part.status0),
        cost: Usd(total.cost.0 - part.cost.0),
        cost_saved: Usd(total.cost_saved.0 - part.cost_saved.0),
        unpriced: d(total.unpriced, part.unpriced),
        prompt_tokens: d(total.prompt_tokens, part.prompt_tokens),
        completion_tokens: d(total.completion_tokens, part.completion_tokens),
        cache_read_tokens: d(total.cache_read_tokens, part.cache_read_tokens),
        cache_write_tokens: d(total.cache_write_tokens, part.cache_write_tokens),
        reasoning_tokens: d(total.reasoning_tokens, part.reasoning_tokens),
        cache_hits: d(total.cache_hits, part.cache_hits),
        retries: d(total.retries, part.retries),
        feedback_rated: d(total.feedback_rated, part.feedback_rated),
        feedback_positive: d(total.feedback_positive, part.feedback_positive),
        latency: Dist::from_moments(m(&total.latency.moments, &part.latency.moments)),
        ttft: m(&total.ttft, &part.ttft),
    }
}

/// An [`Agg`] from the columns of [`AGG_SQL`].
fn agg_from(r: &[String]) -> Result<Agg, InsertError> {
    if r.len() < AGG_COLUMNS {
        return Err(bad_answer(&format!("{} columns", r.len())));
    }
    let n = |i: usize| num(r, i);
    let moments = |i: usize| moments_at(r, i);
    Ok(Agg {
        requests: n(0)?,
        ok: n(1)?,
        errors: n(2)?,
        e4xx: n(3)?,
        e5xx: n(4)?,
        e429: n(5)?,
        status0: n(6)?,
        cost: pico(int(r, 7)?, int(r, 8)?),
        cost_saved: pico(int(r, 9)?, int(r, 10)?),
        unpriced: n(11)?,
        prompt_tokens: n(12)?,
        completion_tokens: n(13)?,
        cache_read_tokens: n(14)?,
        cache_write_tokens: n(15)?,
        reasoning_tokens: n(16)?,
        cache_hits: n(17)?,
        retries: n(18)?,
        feedback_rated: n(19)?,
        feedback_positive: n(20)?,
        latency: Dist::from_moments(moments(21)?),
        ttft: moments(25)?,
    })
}

/// [`Moments`] from four columns from `i`: count, the sum in whole seconds and the
/// rest in nanoseconds (summed apart so that no sum overflows), the maximum.
fn moments_at(r: &[String], i: usize) -> Result<Moments, InsertError> {
    Ok(Moments {
        count: num(r, i)?,
        sum_ns: u128::from(num(r, i + 1)?) * 1_000_000_000 + u128::from(num(r, i + 2)?),
        max_ns: num(r, i + 3)?,
    })
}

/// Picodollars from the sums of their millions and of their remainders.
fn pico(millions: i64, rest: i64) -> Usd {
    Usd(i128::from(millions) * 1_000_000 + i128::from(rest))
}

fn num(r: &[String], i: usize) -> Result<u64, InsertError> {
    let s = r.get(i).ok_or_else(|| bad_answer("a short row"))?;
    s.parse().map_err(|_| bad_answer(s))
}

fn int(r: &[String], i: usize) -> Result<i64, InsertError> {
    let s = r.get(i).ok_or_else(|| bad_answer("a short row"))?;
    s.parse().map_err(|_| bad_answer(s))
}

fn bad_answer(what: &str) -> InsertError {
    InsertError::Refused {
        status: 200,
        message: format!("an answer tokentop cannot read ({})", crate::text::truncate(what, 80)),
    }
}

/// Text from the table is untrusted: no control characters or escapes reach the screen.
fn clean(s: &str) -> String {
    crate::text::sanitize(s).into_owned()
}

/// A `TabSeparated` field's text.
fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some(o) => out.push(o),
            None => out.push('\\'),
        }
    }
    out
}

impl Store {
    /// `report`'s numbers from the table: the window ends at its latest row, as a
    /// report on the shipped files ends at their latest event.
    pub async fn report(&self, opts: &crate::report::Options) -> Result<crate::report::Report, InsertError> {
        use crate::report::{IngestReport, Report};
        let extent = self.extent().await?;
        let Some(span) = report_span(&extent, opts.window) else {
            let empty = Stats::new(opts.limits);
            let series = Series::new(bucket_for_span(opts.window.unwrap_or(0)));
            return Ok(Report::build(
                &empty,
                &series,
                None,
                ActiveUsers { count: 0, exact: true },
                IngestReport::default(),
                opts,
            ));
        };
        let ask = Ask {
            span,
            bucket: report_bucket(&span, opts.window),
            filter: None,
            top: opts.top,
            limits: opts.limits,
            parts: Parts::ALL,
        };
        let w = self.window(&ask).await?;
        let ingest = IngestReport {
            events: extent.rows,
            outside_window: extent.rows.saturating_sub(w.rows),
            ..IngestReport::default()
        };
        let mut report = Report::build(&w.stats, &w.series, Some(span), w.users, ingest, opts);
        if report.sessions.is_some() {
            report.sessions = Some(w.sessions);
        }
        Ok(report)
    }
}

/// What the console asks of the table: the window back from now, and its filter.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewAsk {
    pub window: Micros,
    pub filter: Option<Filter>,
    /// The request list is shown (newest and slowest requests are asked for too).
    pub list: bool,
    /// Parts of the window the screen shows.
    pub parts: Parts,
}

/// One answer to the console: the numbers of a window as its snapshot needs them.
#[derive(Debug, Clone)]
pub struct View {
    pub ask: ViewAsk,
    pub window: Window,
    /// Newest first.
    pub newest: Vec<crate::engine::RecentRequest>,
    /// Slowest first.
    pub slowest: Vec<crate::engine::RecentRequest>,
    pub now: Micros,
}

/// Requests the console lists at most (newest, and slowest).
const LIST_ROWS: usize = 2_000;
const SLOWEST_ROWS: usize = 500;
/// Groups the console lists one by one.
const VIEW_TOP: usize = 500;

impl Store {
    /// The numbers of the window ending `now`.
    pub async fn view(&self, ask: &ViewAsk, now: Micros) -> Result<View, InsertError> {
        let span = Span { start: now - ask.window, end: now, start_inclusive: false };
        let a = Ask {
            span,
            bucket: bucket_for_span(ask.window),
            filter: ask.filter.clone(),
            top: VIEW_TOP,
            limits: Limits::REPORT,
            parts: ask.parts,
        };
        let mut window = self.window(&a).await?;
        let (mut newest, mut slowest) = (Vec::new(), Vec::new());
        if ask.list {
            let started = std::time::Instant::now();
            let inner = self.inner(Some(&span), ask.filter.as_ref());
            newest = self.requests(&inner, "t DESC", LIST_ROWS).await?;
            slowest = self.requests(&inner, "lat DESC, t DESC", SLOWEST_ROWS).await?;
            window.took += started.elapsed();
        }
        Ok(View { ask: ask.clone(), window, newest, slowest, now })
    }

    /// Whole requests, in `order`.
    async fn requests(
        &self,
        inner: &str,
        order: &str,
        limit: usize,
    ) -> Result<Vec<crate::engine::RecentRequest>, InsertError> {
        let sql = format!(
            "SELECT rid, t, provider, model, status, ifNull(toString(lat_ms), ''), ifNull(toString(ttft_ms), ''), \
             pt, ct, crt, rt, cost, unpriced, hit, user, session, spath, retry, err, \
             arrayStringConcat(pk, '\\0'), arrayStringConcat(pv, '\\0') \
             FROM ({inner}) ORDER BY {order} LIMIT {limit}"
        );
        let opt = |s: &str| -> Option<f64> { s.parse().ok() };
        self.rows(&sql)
            .await?
            .iter()
            .map(|r| {
                let keys: Vec<&str> = r[19].split('\0').filter(|s| !s.is_empty()).collect();
                let values = r[20].split('\0');
                Ok(crate::engine::RecentRequest {
                    request_id: clean(&r[0]),
                    created_at: int(r, 1)?,
                    provider: clean(&r[2]),
                    model: clean(&r[3]),
                    status: num(r, 4)? as u16,
                    latency_ms: opt(&r[5]),
                    ttft_ms: opt(&r[6]),
                    prompt_tokens: num(r, 7)?,
                    completion_tokens: num(r, 8)?,
                    cache_read_tokens: num(r, 9)?,
                    reasoning_tokens: num(r, 10)?,
                    cost: int(r, 11)? as f64 / 1e12,
                    unpriced: r[12] == "1",
                    cache_hit: r[13] == "1",
                    user_id: clean(&r[14]),
                    session_id: clean(&r[15]),
                    session_path: clean(&r[16]),
                    retry: num(r, 17)?,
                    error: clean(&r[18]),
                    properties: keys.into_iter().zip(values).map(|(k, v)| (clean(k), clean(v))).collect(),
                })
            })
            .collect()
    }
}

/// What the console is told after each query: the view, or what went wrong.
#[derive(Debug, Clone)]
pub enum Answer {
    View(std::sync::Arc<View>),
    Failed { error: String },
}

/// Answers the console's asks, one query at a time: at once when the ask changes (a
/// drill-down, another window), else once every `every`, or twice as long as the
/// last answer took (a slow server is not asked again and again). Runs until the
/// console goes away.
pub async fn follow(
    store: Store,
    mut asks: tokio::sync::watch::Receiver<ViewAsk>,
    answers: tokio::sync::watch::Sender<Option<Answer>>,
    every: Duration,
) {
    loop {
        let ask = asks.borrow_and_update().clone();
        let started = std::time::Instant::now();
        let answer = match store.view(&ask, crate::time::now()).await {
            Ok(v) => Answer::View(std::sync::Arc::new(v)),
            Err(e) => Answer::Failed { error: e.to_string() },
        };
        if answers.send(Some(answer)).is_err() {
            return;
        }
        tokio::select! {
            changed = asks.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(every.max(2 * started.elapsed()).saturating_sub(started.elapsed())) => {}
        }
    }
}

impl Store {
    /// The stats of each `step` of `span` for `check` (keyed by the step's end in
    /// seconds: step k holds the times in ((k-1)·step, k·step]): totals, statuses,
    /// models, providers, property values and users, with latency histograms, as
    /// `check` keeps them from events.
    pub async fn step_stats(
        &self,
        span: &Span,
        step: Micros,
        filter: Option<&Filter>,
        limits: Limits,
    ) -> Result<std::collections::BTreeMap<i64, Stats>, InsertError> {
        let inner = self.inner(Some(span), filter);
        let key = format!("intDiv(t + {step} - 1, {step})");
        let branch = |kind: &str, a: &str, b: &str, from: &str, by: &str| {
            format!(
                "SELECT * FROM (SELECT {key} AS k, '{kind}' AS kind, {a} AS a, {b} AS b, {AGG_SQL} \
                 FROM ({inner}) {from} {where_} GROUP BY k{by})",
                where_ = if kind == "u" { "WHERE user != ''" } else { "" }
            )
        };
        let sql = [
            branch("t", "''", "''", "", ""),
            branch("s", "''", "toString(status)", "", ", b"),
            branch("m", "''", "model", "", ", b"),
            branch("p", "''", "provider", "", ", b"),
            branch("v", "k2", "v2", "ARRAY JOIN pk AS k2, pv AS v2", ", a, b"),
            branch("u", "''", "user", "", ", b"),
        ]
        .join(" UNION ALL ");
        let mut out: std::collections::BTreeMap<i64, Stats> = std::collections::BTreeMap::new();
        let secs = |k: i64| k * step / crate::time::MICROS_PER_SEC;
        for r in self.rows(&sql).await? {
            let stats = out.entry(secs(int(&r, 0)?)).or_insert_with(|| Stats::new(limits));
            let agg = agg_from(&r[4..])?;
            let (a, b) = (clean(&r[2]), clean(&r[3]));
            match r[1].as_str() {
                "t" => {
                    stats.first = int(&r, 4 + AGG_COLUMNS - 2)?;
                    stats.last = int(&r, 4 + AGG_COLUMNS - 1)?;
                    stats.ttft = Dist::from_moments(agg.ttft);
                    stats.total = agg;
                }
                "s" => {
                    stats.by_status.insert(b.parse().map_err(|_| bad_answer(&b))?, agg.requests);
                }
                "m" => *stats.by_model.entry(&b) = agg,
                "p" => *stats.by_provider.entry(&b) = agg,
                "v" => *stats.by_property.entry(&a).entry(&b) = agg,
                "u" => {
                    stats.distinct_users.insert(&b);
                    *stats.users.entry(&b) = user_of(&agg, int(&r, 4 + AGG_COLUMNS - 1)?);
                }
                k => return Err(bad_answer(k)),
            }
        }
        let lat = "intDiv(lat + 500, 1000)";
        let hist = |kind: &str, a: &str, b: &str, from: &str, by: &str, has: &str, us: &str| {
            format!(
                "SELECT {key} AS k, '{kind}' AS kind, {a} AS a, {b} AS b, {idx} AS i, count() FROM ({inner}) {from} \
                 WHERE {has} GROUP BY k{by}, i",
                idx = bucket_sql(us)
            )
        };
        let sql = [
            hist("t", "''", "''", "", "", "has_lat", lat),
            hist("m", "''", "model", "", ", b", "has_lat", lat),
            hist("p", "''", "provider", "", ", b", "has_lat", lat),
            hist("v", "k2", "v2", "ARRAY JOIN pk AS k2, pv AS v2", ", a, b", "has_lat", lat),
            hist("f", "''", "''", "", "", "has_ttft", "intDiv(ttft + 500, 1000)"),
        ]
        .join(" UNION ALL ");
        for r in self.rows(&sql).await? {
            let Some(stats) = out.get_mut(&secs(int(&r, 0)?)) else { continue };
            let (i, n) = (num(&r, 4)? as usize, num(&r, 5)? as u32);
            let dist = match r[1].as_str() {
                "t" => &mut stats.total.latency,
                "m" => &mut stats.by_model.entry(&clean(&r[3])).latency,
                "p" => &mut stats.by_provider.entry(&clean(&r[3])).latency,
                "v" => &mut stats.by_property.entry(&clean(&r[2])).entry(&clean(&r[3])).latency,
                _ => &mut stats.ttft,
            };
            dist.add_bucket(i, n);
        }
        Ok(out)
    }
}
