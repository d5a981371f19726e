//! A table's rollup: what `tokentop ship` keeps beside the events so that a console
//! over a day of a fleet's calls reads thousands of rows, not millions.
//!
//! Tables beside the events table `T` (created with it by `ship --create-table`):
//! - `T_minutes`: per minute, model, provider and status, the counters of an
//!   [`Agg`] and the latency and TTFT histograms in tokentop's buckets (as
//!   (bucket, count) arrays); `T_slots`: the same per 15 minutes, built from the
//!   minutes (what a day's window reads: ~100 slots, not ~1,500 minutes).
//! - `T_inserts` (a materialized view of `T`): the rows ever inserted per minute.
//! - `T_rollup_seen`: per minute and slot, how many rows had been inserted when it
//!   was filled, and the version of the rows the fill wrote.
//! - `T_users` per hour, `T_model_users` per hour, model and provider: the users
//!   seen (so that distinct users stay exact).
//!
//! The rollup is filled from `T` itself (`INSERT … SELECT … FINAL`), so it counts
//! each call once however often it was delivered; and every read checks it: a
//! minute into which rows were inserted since it was filled (rows that came late
//! from a spool, a batch delivered twice, a minute never filled) is read from `T`'s
//! rows instead, and only the rows of the version seen are read. The numbers are
//! exact whether the rollup is current or not; it only decides how fast they come.
//! (Rows deleted from `T` by hand are not noticed: truncate `T_rollup_seen` after
//! deleting, and `ship --fill-rollup` refills.) Measured in
//! `scripts/bench.sh clickhouse`.

use std::collections::{BTreeMap, HashMap};

use super::{Ask, LAT_US, Store, TTFT_US, bad_answer, bucket_sql, clean, int, moments_at, num, pico};
use crate::filter::{Filter, SqlFields};
use crate::report::ActiveUsers;
use crate::ship::{InsertError, Target};
use crate::stats::series::{Point, Series};
use crate::stats::{Agg, Dist, Stats};

const MINUTE_US: i64 = 60_000_000;
/// Minutes in a slot, the rollup's second level (what a day's window reads).
const SLOT: i64 = 15;
/// Minutes filled by one statement (bounds its time and memory).
const FILL_CHUNK: usize = 240;

/// The rollup tables of a table.
struct Names {
    /// Per minute, model, provider, status.
    minutes: String,
    /// The same per slot of [`SLOT`] minutes.
    slots: String,
    /// Rows inserted into each minute (and slot) when it was filled, and the
    /// version the fill wrote.
    seen: String,
    /// Users per hour.
    users: String,
    /// Users per hour, model and provider.
    model_users: String,
    /// Per slot, the latency and TTFT histograms of all its calls (what a window's
    /// chart and totals need, a fraction of the slots' per-group histograms).
    slot_latency: String,
    /// Rows ever inserted into the table per minute (a materialized view): what
    /// tells a minute changed since its rollup was filled, read in milliseconds
    /// where counting the table's rows scans a day of them.
    inserts: String,
}

impl Names {
    fn of(t: &Target) -> Names {
        let n = |s: &str| format!("{}.{}_{s}", t.database, t.table);
        Names {
            minutes: n("minutes"),
            slots: n("slots"),
            seen: n("rollup_seen"),
            users: n("users"),
            model_users: n("model_users"),
            slot_latency: n("slot_latency"),
            inserts: n("inserts"),
        }
    }

    /// Every rollup table.
    fn all(&self) -> [&str; 7] {
        [&self.minutes, &self.slots, &self.seen, &self.users, &self.model_users, &self.slot_latency, &self.inserts]
    }
}

/// What a row of the window query counts in: the series and the groups (a row of
/// the window's edges), the series only (the rollup summed per slot or minute), the
/// groups only (the rollup summed per model, provider and status).
const BOTH: u64 = 0;
const SERIES: u64 = 1;
const GROUPS: u64 = 2;

/// The counters and histograms of a rollup row, in the order of its columns.
const COUNTER_COLUMNS: &str = "requests UInt64,
    cost_millions Int64,
    cost_rest Int64,
    saved_millions Int64,
    saved_rest Int64,
    unpriced UInt64,
    prompt_tokens UInt64,
    completion_tokens UInt64,
    cache_read_tokens UInt64,
    cache_write_tokens UInt64,
    reasoning_tokens UInt64,
    cache_hits UInt64,
    retries UInt64,
    feedback_rated UInt64,
    feedback_positive UInt64,
    latency_count UInt64,
    latency_sum_s UInt64,
    latency_sum_rest UInt64,
    latency_max_ns UInt64,
    ttft_count UInt64,
    ttft_sum_s UInt64,
    ttft_sum_rest UInt64,
    ttft_max_ns UInt64,
    latency_buckets Array(UInt16),
    latency_counts Array(UInt64),
    ttft_buckets Array(UInt16),
    ttft_counts Array(UInt64),
    first_us Int64,
    last_us Int64";

/// The DDL of the rollup tables of `t`'s table.
pub fn schemas(t: &Target) -> [String; 7] {
    let n = Names::of(t);
    let grouped = |name: &str| {
        format!(
            "CREATE TABLE IF NOT EXISTS {name} (
    minute DateTime,
    model String,
    provider String,
    status UInt16,
    {COUNTER_COLUMNS},
    version UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, model, provider, status)"
        )
    };
    [
        grouped(&n.minutes),
        grouped(&n.slots),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
    width UInt32,
    minute DateTime,
    rows UInt64,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (width, minute)",
            n.seen
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
    hour DateTime,
    user_id String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, user_id)",
            n.users
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
    hour DateTime,
    model String,
    provider String,
    user_id String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, model, provider, user_id)",
            n.model_users
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
    minute DateTime,
    latency_buckets Array(UInt16),
    latency_counts Array(UInt64),
    ttft_buckets Array(UInt16),
    ttft_counts Array(UInt64),
    version UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(minute)
ORDER BY minute",
            n.slot_latency
        ),
        // POPULATE counts the rows already there (a table shipped before the view).
        format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {} ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY minute
POPULATE AS SELECT toStartOfMinute(created_at) AS minute, count() AS rows FROM {} GROUP BY minute",
            n.inserts,
            t.name()
        ),
    ]
}

/// The aggregates of rows (the columns `inner` names) in the order of
/// [`COUNTER_COLUMNS`].
fn counters_sql() -> String {
    let hist = |has: &str, us: &str| {
        let map = format!(
            "sumMap(if({has}, [toUInt16({})], emptyArrayUInt16()), if({has}, [toUInt64(1)], emptyArrayUInt64()))",
            bucket_sql(us)
        );
        format!("tupleElement({map}, 1), tupleElement({map}, 2)")
    };
    format!(
        "count(), sum(intDiv(cost, 1000000)), sum(cost % 1000000), sum(intDiv(saved, 1000000)), sum(saved % 1000000), \
         sum(unpriced), sum(pt), sum(ct), sum(crt), sum(cwt), sum(rt), sum(hit), countIf(retry > 0), \
         countIf(fb != 2), countIf(fb = 1), \
         sum(has_lat), sum(intDiv(lat, 1000000000)), sum(lat % 1000000000), max(lat), \
         sum(has_ttft), sum(intDiv(ttft, 1000000000)), sum(ttft % 1000000000), max(ttft), \
         {}, {}, min(t), max(t)",
        hist("has_lat", LAT_US),
        hist("has_ttft", TTFT_US)
    )
}

/// The same aggregates over rollup rows (minutes into slots, or a window's rows
/// summed), with or without their histograms.
fn merge_sql(histograms: bool) -> String {
    const COUNTERS: &str = "sum(requests), sum(cost_millions), sum(cost_rest), sum(saved_millions), sum(saved_rest), \
        sum(unpriced), sum(prompt_tokens), sum(completion_tokens), sum(cache_read_tokens), sum(cache_write_tokens), \
        sum(reasoning_tokens), sum(cache_hits), sum(retries), sum(feedback_rated), sum(feedback_positive), \
        sum(latency_count), sum(latency_sum_s), sum(latency_sum_rest), max(latency_max_ns), \
        sum(ttft_count), sum(ttft_sum_s), sum(ttft_sum_rest), max(ttft_max_ns)";
    const HISTOGRAMS: &str = "tupleElement(sumMap(latency_buckets, latency_counts), 1), \
        tupleElement(sumMap(latency_buckets, latency_counts), 2), \
        tupleElement(sumMap(ttft_buckets, ttft_counts), 1), tupleElement(sumMap(ttft_buckets, ttft_counts), 2)";
    const NONE: &str = "emptyArrayUInt16(), emptyArrayUInt64(), emptyArrayUInt16(), emptyArrayUInt64()";
    format!("{COUNTERS}, {}, min(first_us), max(last_us)", if histograms { HISTOGRAMS } else { NONE })
}

/// The columns of [`merge_sql`] from a slot's own histograms (no calls counted).
const HISTOGRAMS_ONLY_SQL: &str = "toUInt64(0), toInt64(0), toInt64(0), toInt64(0), toInt64(0), toUInt64(0), \
    toUInt64(0), toUInt64(0), toUInt64(0), toUInt64(0), toUInt64(0), toUInt64(0), toUInt64(0), toUInt64(0), \
    toUInt64(0), toUInt64(0), toUInt64(0), toUInt64(0), toUInt64(0), toUInt64(0), toUInt64(0), toUInt64(0), \
    toUInt64(0), latency_buckets, latency_counts, ttft_buckets, ttft_counts, toInt64(0), toInt64(0)";

/// Half-open ranges of numbers (epoch minutes) from sorted numbers.
fn ranges_of(minutes: impl IntoIterator<Item = i64>) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for m in minutes {
        match out.last_mut() {
            Some(last) if last.1 == m => last.1 = m + 1,
            Some(last) if last.1 > m => {}
            _ => out.push((m, m + 1)),
        }
    }
    out
}

/// `col` (a `DateTime`) in any of `ranges` (minute numbers); `0` for none.
fn ranges_sql(col: &str, ranges: &[(i64, i64)]) -> String {
    if ranges.is_empty() {
        return "0".to_string();
    }
    let parts: Vec<String> = ranges
        .iter()
        .map(|(a, b)| format!("({col} >= toDateTime({}) AND {col} < toDateTime({}))", a * 60, b * 60))
        .collect();
    format!("({})", parts.join(" OR "))
}

/// A filter that [`Filter::on_groups`] as a condition on the rollup's columns.
fn rollup_filter(filter: Option<&Filter>) -> String {
    filter.map_or_else(
        || "1".to_string(),
        |f| {
            f.to_sql(&SqlFields {
                model: "model",
                provider: "provider",
                status: "status",
                user: "''",
                session: "''",
                cache_hit: "0",
                latency_ms: "NULL",
                ttft_ms: "NULL",
                cost_usd: "NULL",
                tokens: "NULL",
                error: "''",
                property_keys: "[]",
                property_values: "[]",
            })
        },
    )
}

/// How to read a window with the rollup.
#[derive(Debug)]
pub(super) struct Plan {
    /// The rows the rollup does not answer: a condition on the events table.
    raw: String,
    /// The slots and minutes it answers (their first minute's number), with the
    /// version of their rollup rows.
    slots: Vec<(i64, u64)>,
    minutes: Vec<(i64, u64)>,
    /// The hours whose users it answers (ranges of minute numbers), and from which
    /// table (none: a filter on status).
    hours: Vec<(i64, i64)>,
    users_table: Option<String>,
    pub minutes_rolled: u64,
}

/// Per minute number: the rows inserted into it, and what the minute's rollup saw
/// when filled; per slot (its first minute), what the slot's rollup saw.
#[derive(Debug, Default)]
struct Counts {
    minutes: BTreeMap<i64, Count>,
    slots: HashMap<i64, Seen>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Count {
    rows: u64,
    seen: Seen,
}

/// What the rollup of a minute or slot saw: the rows inserted, and the version
/// of the rollup rows filled from them (rows of other versions are not read).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Seen {
    rows: u64,
    version: u64,
}

impl Count {
    fn fresh(&self) -> bool {
        self.rows == self.seen.rows
    }
}

impl Store {
    /// This store read without `FINAL` (for what duplicates do not change).
    fn unfolded(&self) -> Store {
        let mut s = self.clone();
        s.layout.final_ = false;
        s
    }

    /// Whether the rollup tables are there.
    async fn has_rollup(&self) -> Result<bool, InsertError> {
        let t = self.target();
        let n = Names::of(t);
        let all = n.all();
        let prefix = format!("{}.", t.database);
        let names: Vec<String> =
            all.iter().map(|name| format!("'{}'", name.strip_prefix(&prefix).unwrap_or(name))).collect();
        let sql = format!(
            "SELECT count() FROM system.tables WHERE database = '{}' AND name IN ({})",
            t.database,
            names.join(", ")
        );
        let rows = self.rows(&sql).await?;
        Ok(rows.first().map(|r| num(r, 0)).transpose()?.unwrap_or(0) == all.len() as u64)
    }

    /// The rows inserted into the minutes `ranges` covers, and what their rollup saw,
    /// in one query of two small tables.
    async fn counts(&self, ranges: &[(i64, i64)]) -> Result<Counts, InsertError> {
        let n = Names::of(self.target());
        let minutes = ranges_sql("minute", ranges);
        let sql = format!(
            "SELECT 0 AS width, intDiv(toUInt32(minute), 60) AS m, sum(rows), toUInt64(0) FROM {} WHERE {minutes} \
             GROUP BY m UNION ALL \
             SELECT width, intDiv(toUInt32(minute), 60) AS m, argMax(rows, version), max(version) FROM {} \
             WHERE {minutes} GROUP BY width, m",
            n.inserts, n.seen,
        );
        let mut out = Counts::default();
        for r in self.rows(&sql).await? {
            let (m, seen) = (int(&r, 1)?, Seen { rows: num(&r, 2)?, version: num(&r, 3)? });
            match r[0].as_str() {
                "0" => out.minutes.entry(m).or_default().rows = seen.rows,
                "60" => out.minutes.entry(m).or_default().seen = seen,
                _ => {
                    out.slots.insert(m, seen);
                }
            }
        }
        Ok(out)
    }

    /// Fills the rollup for the minutes (epoch minute numbers) whose rows changed
    /// since it last saw them, among `minutes` (all of the table's when `None`), and
    /// the slots they are in. Returns how many minutes it filled. Nothing to do when
    /// the rollup tables are not there.
    pub async fn fill_rollup(&self, minutes: Option<&[i64]>) -> Result<usize, InsertError> {
        if !self.layout.rollup || !self.has_rollup().await? {
            return Ok(0);
        }
        let ranges = match minutes {
            Some(m) => {
                let mut m = m.to_vec();
                m.sort_unstable();
                ranges_of(m)
            }
            None => vec![(0, i64::from(u32::MAX) / 60)],
        };
        if ranges.is_empty() {
            return Ok(0);
        }
        // Counted before the rollup is computed: rows coming in meanwhile make the
        // minute differ at the next look, never pass unseen.
        let stale: Vec<(i64, u64)> = self
            .counts(&ranges)
            .await?
            .minutes
            .into_iter()
            .filter(|(_, c)| !c.fresh() && c.rows > 0)
            .map(|(m, c)| (m, c.rows))
            .collect();
        // Duplicates fold before they are counted, whatever the reader's `final=`.
        let mut exact = self.clone();
        exact.layout.final_ = true;

        let n = Names::of(self.target());
        let counters = counters_sql();
        for chunk in stale.chunks(FILL_CHUNK) {
            let version = crate::time::now();
            let range = ranges_sql("created_at", &ranges_of(chunk.iter().map(|c| c.0)));
            let inner = exact.inner_where(&range, self.layout.time_us, None);
            let sql = format!(
                "INSERT INTO {} SELECT toDateTime(intDiv(t, {MINUTE_US}) * 60) AS minute, model, provider, status, \
                 {counters}, toUInt64({version}) FROM ({inner}) GROUP BY minute, model, provider, status",
                n.minutes
            );
            self.client.execute(&sql, Vec::new()).await?;
            // Users need no FINAL: a user seen twice is one user.
            let inner = self.unfolded().inner_where(&range, self.layout.time_us, None);
            let hour = format!("toDateTime(intDiv(t, {}) * 3600)", 60 * MINUTE_US);
            for (table, columns) in [(&n.users, "user"), (&n.model_users, "model, provider, user")] {
                let sql =
                    format!("INSERT INTO {table} SELECT DISTINCT {hour}, {columns} FROM ({inner}) WHERE user != ''");
                self.client.execute(&sql, Vec::new()).await?;
            }
            let values: Vec<String> =
                chunk.iter().map(|(m, rows)| format!("(60, toDateTime({}), {rows}, {version})", m * 60)).collect();
            self.client.execute(&format!("INSERT INTO {} VALUES {}", n.seen, values.join(", ")), Vec::new()).await?;
        }
        let slots = ranges_of(stale.iter().map(|(m, _)| m.div_euclid(SLOT)));
        for chunk in slots.chunks(FILL_CHUNK) {
            self.fill_slots(&n, chunk).await?;
        }
        Ok(stale.len())
    }

    /// Rebuilds slots (ranges of slot numbers) from their minutes' rollup.
    async fn fill_slots(&self, n: &Names, slots: &[(i64, i64)]) -> Result<(), InsertError> {
        let minutes: Vec<(i64, i64)> = slots.iter().map(|(a, b)| (a * SLOT, b * SLOT)).collect();
        // What the minutes saw, taken first: a minute filled again meanwhile makes
        // the slot differ from its minutes, so it is not read until rebuilt.
        let sql = format!(
            "SELECT intDiv(m, {SLOT}) * {SLOT} AS s, sum(r) FROM (SELECT intDiv(toUInt32(minute), 60) AS m, \
             argMax(rows, version) AS r FROM {} WHERE width = 60 AND {} GROUP BY m) GROUP BY s",
            n.seen,
            ranges_sql("minute", &minutes)
        );
        let seen = self.rows(&sql).await?;
        let version = crate::time::now();
        let sql = format!(
            "INSERT INTO {} SELECT toDateTime(intDiv(toUInt32(minute), {secs}) * {secs}) AS slot, model, provider, status, \
             {}, toUInt64({version}) FROM {} FINAL WHERE {} GROUP BY slot, model, provider, status",
            n.slots,
            merge_sql(true),
            n.minutes,
            ranges_sql("minute", &minutes),
            secs = SLOT * 60,
        );
        self.client.execute(&sql, Vec::new()).await?;
        // The slots' own histograms, from the rows just written.
        let sql = format!(
            "INSERT INTO {} SELECT minute, tupleElement(sumMap(latency_buckets, latency_counts), 1), \
             tupleElement(sumMap(latency_buckets, latency_counts), 2), tupleElement(sumMap(ttft_buckets, ttft_counts), 1), \
             tupleElement(sumMap(ttft_buckets, ttft_counts), 2), toUInt64({version}) FROM {} \
             WHERE {} AND version = {version} GROUP BY minute",
            n.slot_latency,
            n.slots,
            ranges_sql("minute", &minutes),
        );
        self.client.execute(&sql, Vec::new()).await?;
        let values: Vec<String> = seen
            .iter()
            .map(|r| Ok(format!("({}, toDateTime({}), {}, {version})", SLOT * 60, int(r, 0)? * 60, num(r, 1)?)))
            .collect::<Result<_, InsertError>>()?;
        if !values.is_empty() {
            self.client.execute(&format!("INSERT INTO {} VALUES {}", n.seen, values.join(", ")), Vec::new()).await?;
        }
        Ok(())
    }

    /// How the rollup answers `ask`, or `None` when it cannot (another layout, a
    /// filter on more than model, provider and status, series buckets finer than a
    /// minute, no whole minute in the window, no rollup tables, nothing filled).
    pub(super) async fn rollup_plan(&self, ask: &Ask) -> Result<Option<Plan>, InsertError> {
        if !self.layout.rollup || ask.bucket % MINUTE_US != 0 {
            return Ok(None);
        }
        let Some((_, by_status)) = ask.filter.as_ref().map_or(Some((false, false)), Filter::on_groups) else {
            return Ok(None);
        };
        // Whole minutes of the window: the first starts in it, the last ends in it.
        let s = &ask.span;
        let first = if s.start_inclusive {
            (s.start + MINUTE_US - 1).div_euclid(MINUTE_US)
        } else {
            s.start.div_euclid(MINUTE_US) + 1
        };
        let end = (s.end + 1).div_euclid(MINUTE_US);
        if first >= end || !self.has_rollup().await? {
            return Ok(None);
        }
        let whole = [(first, end)];
        let counts = self.counts(&whole).await?;
        let fresh = |m: &i64| counts.minutes.get(m).is_none_or(Count::fresh);
        let stale = ranges_of(counts.minutes.keys().copied().filter(|m| !fresh(m)));
        // Slots whose minutes are all as their rollup saw them, and which were built
        // from those minutes (a series as fine as the slots, at least).
        let mut slots: Vec<(i64, u64)> = Vec::new();
        if ask.bucket % (SLOT * MINUTE_US) == 0 {
            for slot in (first + SLOT - 1).div_euclid(SLOT)..end.div_euclid(SLOT) {
                let ms = slot * SLOT..(slot + 1) * SLOT;
                let seen: u64 = ms.clone().filter_map(|m| counts.minutes.get(&m)).map(|c| c.seen.rows).sum();
                let built = counts.slots.get(&(slot * SLOT)).copied().unwrap_or_default();
                if ms.clone().all(|m| fresh(&m)) && built.rows == seen && seen > 0 {
                    slots.push((slot * SLOT, built.version));
                }
            }
        }
        let in_slot = |m: i64| slots.binary_search_by_key(&(m - m.rem_euclid(SLOT)), |s| s.0).is_ok();
        let minutes: Vec<(i64, u64)> = counts
            .minutes
            .iter()
            .filter(|(m, c)| c.rows > 0 && c.fresh() && !in_slot(**m))
            .map(|(m, c)| (*m, c.seen.version))
            .collect();
        let rolled = counts.minutes.values().filter(|c| c.fresh() && c.rows > 0).count() as u64;
        if rolled == 0 {
            return Ok(None);
        }
        let raw = format!(
            "created_at < toDateTime({}) OR created_at >= toDateTime({}) OR {}",
            first * 60,
            end * 60,
            ranges_sql("created_at", &stale)
        );
        // Whole hours without a stale minute give their users from the users tables
        // (which know no status: a filter on status reads its users from the rows).
        let n = Names::of(self.target());
        let users_table = match ask.filter.as_ref().and_then(Filter::on_groups) {
            _ if by_status => None,
            Some((true, _)) => Some(n.model_users),
            _ => Some(n.users),
        };
        let hours = if users_table.is_none() {
            Vec::new()
        } else {
            let whole_hours = ((first + 59).div_euclid(60)..end.div_euclid(60))
                .map(|h| h * 60..h * 60 + 60)
                .filter(|hour| !stale.iter().any(|&(x, y)| x < hour.end && hour.start < y));
            ranges_of(whole_hours.flatten())
        };
        Ok(Some(Plan { raw, slots, minutes, hours, users_table, minutes_rolled: rolled }))
    }

    /// The window's totals, statuses, models, providers and series: from the
    /// rollup's slots and minutes `plan` gives, and the rest of its rows aggregated
    /// alike, in one query.
    pub(super) async fn rolled_groups(
        &self,
        ask: &Ask,
        plan: &Plan,
        stats: &mut Stats,
        series: &mut Series,
    ) -> Result<(), InsertError> {
        let n = Names::of(self.target());
        let width = ask.bucket;
        let (range, time) = self.span_sql(Some(&ask.span));
        let raw = self.inner_where(&format!("{range} AND ({})", plan.raw), &time, ask.filter.as_ref());
        let filter = rollup_filter(ask.filter.as_ref());
        // Rows of the window's edges count in the series and the groups; the
        // rollup's are summed per slot or minute and status for the series and per
        // group for the groups: a day is a few hundred rows, not a slot's every group.
        let mut parts = vec![format!(
            "SELECT intDiv(t, {width}) * {width} AS b, model, provider, status, {}, toUInt8({BOTH}) FROM ({raw}) \
             GROUP BY b, model, provider, status",
            counters_sql()
        )];
        // Each minute and slot at the version its counts were checked against (no
        // FINAL needed: one version's rows are one fill's). The series' rows name no
        // model or provider under those names, or the filter would read the blanks.
        // Without a filter, the series of slots take the slots' own histograms.
        let light = ask.filter.is_none();
        let group_latency = ask.parts.group_latency;
        for (table, rolled, len) in [(&n.slots, &plan.slots, SLOT), (&n.minutes, &plan.minutes, 1)] {
            if rolled.is_empty() {
                continue;
            }
            let ranges = ranges_sql("minute", &ranges_of(rolled.iter().flat_map(|&(m, _)| m..m + len)));
            let which: Vec<String> = rolled.iter().map(|(m, v)| format!("({}, {v})", m * 60)).collect();
            let which = format!("(toUInt32(minute), version) IN ({})", which.join(", "));
            let own = light && len == SLOT;
            parts.push(format!(
                "SELECT toInt64(toUInt32(minute)) * 1000000 AS b, '' AS any_model, '' AS any_provider, status, \
                 {}, toUInt8({SERIES}) FROM {table} WHERE {ranges} AND {which} AND {filter} GROUP BY minute, status",
                merge_sql(!own)
            ));
            parts.push(format!(
                "SELECT toInt64(0) AS b, model, provider, status, {}, toUInt8({GROUPS}) FROM {table} \
                 WHERE {ranges} AND {which} AND {filter} GROUP BY model, provider, status",
                merge_sql(group_latency)
            ));
            if own {
                parts.push(format!(
                    "SELECT toInt64(toUInt32(minute)) * 1000000 AS b, '' AS any_model, '' AS any_provider, toUInt16(0) AS any_status, \
                     {HISTOGRAMS_ONLY_SQL}, toUInt8({SERIES}) FROM {} WHERE {ranges} AND {which}",
                    n.slot_latency
                ));
            }
        }
        // Histograms are added bucket by bucket to each group they count in (a
        // row's own distribution is never built: a day's rows hold millions of
        // buckets).
        let mut lat_series: HashMap<i64, Dist> = HashMap::new();
        let mut ttft_series: HashMap<i64, Dist> = HashMap::new();
        // Values of rows read without histograms, and values in the slots' own
        // histograms: the same, or the rollup is not whole.
        let mut without: BTreeMap<i64, u64> = BTreeMap::new();
        let mut beside: BTreeMap<i64, u64> = BTreeMap::new();
        for r in self.rows(&parts.join(" UNION ALL ")).await? {
            let status: u16 = r[3].parse().map_err(|_| bad_answer(&r[3]))?;
            let n = num(&r, 4)?;
            let b = int(&r, 0)?.div_euclid(width) * width;
            let part = num(&r, 33)?;
            if n == 0 {
                // A slot's own histograms: its calls are counted in its series row.
                let lat_b = lat_series.entry(b).or_default();
                for (i, c) in pairs(&r[27], &r[28])? {
                    stats.total.latency.add_bucket(i, c);
                    lat_b.add_bucket(i, c);
                    *beside.entry(b).or_default() += u64::from(c);
                }
                let ttft_b = ttft_series.entry(b).or_default();
                for (i, c) in pairs(&r[29], &r[30])? {
                    stats.ttft.add_bucket(i, c);
                    ttft_b.add_bucket(i, c);
                    *beside.entry(b).or_default() += u64::from(c);
                }
                continue;
            }
            let when = |yes: bool| if yes { n } else { 0 };
            let moments = |i: usize| moments_at(&r, i);
            let agg = Agg {
                requests: n,
                ok: when((200..300).contains(&status)),
                errors: when(status >= 400 || status == 0),
                e4xx: when((400..500).contains(&status)),
                e5xx: when((500..600).contains(&status)),
                e429: when(status == 429),
                status0: when(status == 0),
                cost: pico(int(&r, 5)?, int(&r, 6)?),
                cost_saved: pico(int(&r, 7)?, int(&r, 8)?),
                unpriced: num(&r, 9)?,
                prompt_tokens: num(&r, 10)?,
                completion_tokens: num(&r, 11)?,
                cache_read_tokens: num(&r, 12)?,
                cache_write_tokens: num(&r, 13)?,
                reasoning_tokens: num(&r, 14)?,
                cache_hits: num(&r, 15)?,
                retries: num(&r, 16)?,
                feedback_rated: num(&r, 17)?,
                feedback_positive: num(&r, 18)?,
                latency: Dist::from_moments(moments(19)?),
                ttft: moments(23)?,
            };
            let latency = pairs(&r[27], &r[28])?;
            let ttft = pairs(&r[29], &r[30])?;
            stats.first = stats.first.min(int(&r, 31)?);
            stats.last = stats.last.max(int(&r, 32)?);
            if part != GROUPS {
                // The series, and the window's histograms.
                if latency.is_empty() && agg.latency.moments.count > 0 {
                    *without.entry(b).or_default() += agg.latency.moments.count;
                }
                if ttft.is_empty() && agg.ttft.count > 0 {
                    *without.entry(b).or_default() += agg.ttft.count;
                }
                series.merge_point_at(b, &Point::of(&agg, agg.latency.clone(), Dist::from_moments(agg.ttft)));
                let lat_b = lat_series.entry(b).or_default();
                for &(i, c) in &latency {
                    stats.total.latency.add_bucket(i, c);
                    lat_b.add_bucket(i, c);
                }
                let ttft_b = ttft_series.entry(b).or_default();
                for &(i, c) in &ttft {
                    stats.ttft.add_bucket(i, c);
                    ttft_b.add_bucket(i, c);
                }
            }
            if part != SERIES {
                // The window's counters per status, model and provider; the groups'
                // percentiles only when asked (the rows of the edges alone would
                // make them wrong).
                *stats.by_status.entry(status).or_insert(0) += n;
                stats.ttft.merge(&Dist::from_moments(agg.ttft));
                stats.total.merge(&agg);
                for group in [stats.by_model.entry(&clean(&r[1])), stats.by_provider.entry(&clean(&r[2]))] {
                    group.merge(&agg);
                    if group_latency {
                        latency.iter().for_each(|&(i, c)| group.latency.add_bucket(i, c));
                    }
                }
            }
        }
        let differ = without.keys().chain(beside.keys()).find(|b| without.get(b) != beside.get(b));
        if let Some(&b) = differ {
            let (w, h) = (without.get(&b).copied().unwrap_or(0), beside.get(&b).copied().unwrap_or(0));
            return Err(InsertError::Refused {
                status: 200,
                message: format!(
                    "the rollup's slots from {} count {w} latencies but their histograms hold {h}: \
                     run tokentop ship --fill-rollup",
                    crate::time::format_rfc3339(b)
                ),
            });
        }
        for (b, latency) in lat_series {
            let ttft = ttft_series.remove(&b).unwrap_or_default();
            series.merge_point_at(b, &Point { latency, ttft, ..Point::default() });
        }
        Ok(())
    }

    /// Distinct users of the window of `ask`: from the users tables for the hours
    /// `plan` gives, from the rows for the rest.
    pub(super) async fn rolled_users(&self, ask: &Ask, plan: &Plan) -> Result<ActiveUsers, InsertError> {
        let (range, time) = self.span_sql(Some(&ask.span));
        let raw = format!("{range} AND NOT {}", ranges_sql("created_at", &plan.hours));
        // No FINAL: a user seen twice is one user.
        let inner = self.unfolded().inner_where(&raw, &time, ask.filter.as_ref());
        let mut parts = vec![format!("SELECT user AS u FROM ({inner}) WHERE user != ''")];
        if let Some(table) = plan.users_table.as_ref().filter(|_| !plan.hours.is_empty()) {
            parts.push(format!(
                "SELECT user_id AS u FROM {table} WHERE {} AND {}",
                ranges_sql("hour", &plan.hours),
                rollup_filter(ask.filter.as_ref())
            ));
        }
        let sql = format!("SELECT uniqExact(u) FROM ({})", parts.join(" UNION ALL "));
        let rows = self.rows(&sql).await?;
        let r = rows.first().ok_or_else(|| bad_answer("no row"))?;
        Ok(ActiveUsers { count: num(r, 0)?, exact: true })
    }
}

/// (bucket, count) pairs from two ClickHouse arrays as text (`[1,2]`, `[3,4]`).
fn pairs(keys: &str, counts: &str) -> Result<Vec<(usize, u32)>, InsertError> {
    let list = |s: &str| -> Result<Vec<u64>, InsertError> {
        let inner = s.strip_prefix('[').and_then(|s| s.strip_suffix(']')).ok_or_else(|| bad_answer(s))?;
        inner.split(',').filter(|x| !x.is_empty()).map(|x| x.parse().map_err(|_| bad_answer(x))).collect()
    };
    let (k, c) = (list(keys)?, list(counts)?);
    if k.len() != c.len() {
        return Err(bad_answer("histogram arrays of different lengths"));
    }
    Ok(k.into_iter().zip(c).map(|(i, n)| (i as usize, n.min(u64::from(u32::MAX)) as u32)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_make_ranges() {
        assert_eq!(ranges_of([1, 2, 3, 5, 7, 8]), vec![(1, 4), (5, 6), (7, 9)]);
        assert_eq!(ranges_of([]), Vec::<(i64, i64)>::new());
        assert_eq!(ranges_sql("m", &[]), "0");
        assert_eq!(ranges_sql("m", &[(1, 2)]), "((m >= toDateTime(60) AND m < toDateTime(120)))");
    }

    #[test]
    fn histogram_arrays_are_read_as_pairs() {
        assert_eq!(pairs("[3,130]", "[2,1]").unwrap(), vec![(3, 2), (130, 1)]);
        assert_eq!(pairs("[]", "[]").unwrap(), vec![]);
        assert!(pairs("[1]", "[]").is_err());
        assert!(pairs("1", "2").is_err());
    }
}
