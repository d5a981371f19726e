//! What the screen shows, taken from the engine a few times a second: the report of
//! the window, its chart, the request list, and what those numbers cover.

use std::collections::{HashMap, HashSet};

use super::rows::{Row, session_rows};
use crate::engine::{Engine, Known, RecentRequest};
use crate::live::Live;
use crate::report::{self, ActiveUsers, Report, Span};
use crate::stats::series::{Point, Series};
use crate::time::Micros;

/// What the numbers on screen cover.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scope {
    /// All traffic of the window.
    All,
    /// The groups a drill-down selects (a model, a user, …) over the whole window,
    /// from what the engine keeps per group: `known` says which numbers that holds.
    Groups { known: Known },
    /// A filter the groups cannot answer: the matching requests from `from` on (the
    /// recent requests replayed when it was set, then live traffic). `whole` when
    /// that reaches back over the whole window.
    Since { from: Micros, replayed: usize, whole: bool },
}

/// How the request list is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListMode {
    Newest,
    /// The slowest of the whole window.
    Slowest,
    /// A session's requests, oldest first.
    Timeline,
}

/// One bucket of the Overview's charts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChartPoint {
    /// Buckets from the window's start (the x axis).
    pub x: f64,
    /// Seconds of this bucket that were watched: less than its width for the bucket
    /// now filling, and for the first one after start. Rates divide by this.
    pub secs: f64,
    pub requests: u64,
    pub cost: f64,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub other_4xx: u64,
    pub e5xx: u64,
    pub e429: u64,
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub report: Report,
    pub scope: Scope,
    /// Active users of the previous window (an estimate), for the tile's change.
    pub previous_users: Option<u64>,
    pub chart: Vec<ChartPoint>,
    /// The chart's bucket width.
    pub bucket: Micros,
    pub previous: Point,
    pub window: Micros,
    pub now: Micros,
    /// The request list, in the order shown.
    pub requests: Vec<RecentRequest>,
    pub list: ListMode,
    pub sessions: Vec<Row>,
    /// Users first seen within the window.
    pub new_users: HashSet<String>,
    /// Requests by latency range (see [`LATENCY_EDGES`]).
    pub latency_bins: Vec<u64>,
    /// Requests per slab of the window, oldest first, by row key (`model:…`, `user:…`).
    pub trends: HashMap<String, Vec<u64>>,
}

/// The latency histogram's edges, in ms.
pub const LATENCY_EDGES: [f64; 9] = [100.0, 250.0, 500.0, 1_000.0, 2_000.0, 5_000.0, 10_000.0, 30_000.0, 60_000.0];

/// Requests the newest-first list holds at most.
pub const LIST_MAX: usize = 2_000;

/// What a snapshot is taken for.
#[derive(Debug, Clone, Copy)]
pub struct Want {
    pub window: Micros,
    /// The Overview (a drill-down's whole-window numbers), a table, or the request list.
    pub overview: bool,
    pub list: Option<ListMode>,
}

impl Snapshot {
    pub fn take(live: &Live, want: Want) -> Snapshot {
        if let Some(view) = &live.store {
            return Snapshot::of_store(view, want);
        }
        let window = want.window;
        let opts = report::Options { top: 500, ..report::Options::default() };
        let group = live.filtered.as_ref().and_then(|(f, ..)| f.group());
        let engine = live.view();
        let ingest =
            report::IngestReport { events: engine.counts().events, late: engine.counts().late, ..Default::default() };
        let (report, series, scope, stats) = match (&group, want.overview) {
            (Some(g), true) => {
                let d = live.engine.drill(window, g);
                let users = d.users.unwrap_or(ActiveUsers { count: 0, exact: false });
                let report = Report::build(&d.stats, &d.series, Some(d.span), users, ingest, &opts);
                (report, d.series, Scope::Groups { known: d.known }, d.stats)
            }
            _ => {
                let (stats, series, span, users) = engine.window_stats(window);
                let report = Report::build(&stats, &series, Some(span), users, ingest, &opts);
                let scope = match &live.filtered {
                    Some((_, _, since)) => Scope::Since {
                        from: since.from,
                        replayed: since.backfilled,
                        whole: since.from <= engine.now() - window,
                    },
                    None => Scope::All,
                };
                (report, series, scope, stats)
            }
        };
        let drilled = matches!(scope, Scope::Groups { .. });
        let span = engine.covered(window);
        let chart = chart(&series, span, engine.since(), window);
        let mut sessions: Vec<(&str, &crate::stats::SessionAgg)> = stats.sessions.iter().collect();
        sessions.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then_with(|| a.0.cmp(b.0)));
        sessions.truncate(500);
        let new_users = report
            .users
            .iter()
            .flatten()
            .filter(|u| engine.first_seen(&u.user_id).is_some_and(|t| t > span.start))
            .map(|u| u.user_id.clone())
            .collect();
        let requests = match want.list {
            None => Vec::new(),
            Some(ListMode::Newest) => engine.recent().rev().take(LIST_MAX).cloned().collect(),
            Some(ListMode::Timeline) => engine.recent().take(LIST_MAX).cloned().collect(),
            Some(ListMode::Slowest) => engine.slowest(window).into_iter().cloned().collect(),
        };
        Snapshot {
            previous_users: if drilled { None } else { engine.previous_users(window) },
            previous: if drilled { Point::default() } else { engine.previous(window) },
            latency_bins: stats.total.latency.bins(&LATENCY_EDGES),
            trends: trends(engine, &report, window),
            sessions: session_rows(sessions.into_iter()),
            report,
            scope,
            chart,
            bucket: series.width(),
            window,
            now: engine.now(),
            requests,
            list: want.list.unwrap_or(ListMode::Newest),
            new_users,
        }
    }
}

impl Snapshot {
    /// The snapshot of a ClickHouse answer: every number over the whole window
    /// (filters and drill-downs were `WHERE` clauses).
    fn of_store(view: &crate::clickhouse::View, want: Want) -> Snapshot {
        let w = &view.window;
        let opts = report::Options { top: 500, ..report::Options::default() };
        let ingest = report::IngestReport { events: w.rows, ..Default::default() };
        let mut report = Report::build(&w.stats, &w.series, Some(w.span), w.users, ingest, &opts);
        if report.sessions.is_some() {
            report.sessions = Some(w.sessions.clone());
        }
        let scope = match &view.ask.filter {
            None => Scope::All,
            Some(_) => Scope::Since { from: w.span.start, replayed: 0, whole: true },
        };
        let mut sessions: Vec<(&str, &crate::stats::SessionAgg)> = w.stats.sessions.iter().collect();
        sessions.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then_with(|| a.0.cmp(b.0)));
        let requests = match want.list {
            None => Vec::new(),
            Some(ListMode::Newest) => view.newest.clone(),
            Some(ListMode::Timeline) => view.newest.iter().rev().cloned().collect(),
            Some(ListMode::Slowest) => view.slowest.clone(),
        };
        Snapshot {
            previous_users: None,
            previous: Point::default(),
            latency_bins: w.stats.total.latency.bins(&LATENCY_EDGES),
            trends: HashMap::new(),
            sessions: session_rows(sessions.into_iter()),
            chart: chart(&w.series, w.span, w.span.start, view.ask.window),
            bucket: w.series.width(),
            report,
            scope,
            window: view.ask.window,
            now: view.now,
            requests,
            list: want.list.unwrap_or(ListMode::Newest),
            new_users: HashSet::new(),
        }
    }
}

/// The chart's buckets over the window: only those watched (since `since`), each
/// with the seconds of it that were, so the bucket now filling is a rate, not a
/// drop. A bucket across the window's start is whole: it holds all its requests.
fn chart(series: &Series, span: Span, since: Micros, window: Micros) -> Vec<ChartPoint> {
    let w = series.width();
    let origin = span.end - window;
    series
        .points(span.start + 1, span.end)
        .into_iter()
        .filter_map(|(t, p)| {
            let watched = (t + w).min(span.end) - t.max(since);
            (watched > 0).then(|| ChartPoint {
                x: (t - origin) as f64 / w as f64,
                secs: watched as f64 / 1e6,
                requests: p.requests,
                cost: p.cost.to_f64(),
                p50: p.latency.percentile(50.0),
                p95: p.latency.percentile(95.0),
                p99: p.latency.percentile(99.0),
                other_4xx: p.e4xx - p.e429,
                e5xx: p.e5xx,
                e429: p.e429,
            })
        })
        .collect()
}

/// Sparklines for the rows of every table: requests per slab.
fn trends(engine: &Engine, report: &Report, window: Micros) -> HashMap<String, Vec<u64>> {
    let mut trends = HashMap::new();
    for (name, _) in report.by_model.iter().flat_map(|g| &g.0) {
        trends
            .insert(format!("model:{name}"), engine.trend(window, |s| s.by_model.get(name).map_or(0, |a| a.requests)));
    }
    for (name, _) in report.by_provider.iter().flat_map(|g| &g.0) {
        let t = engine.trend(window, |s| s.by_provider.get(name).map_or(0, |a| a.requests));
        trends.insert(format!("provider:{name}"), t);
    }
    for (key, values) in &report.by_property.0 {
        for (value, _) in &values.0 {
            let t =
                engine.trend(window, |s| s.by_property.get(key).and_then(|v| v.get(value)).map_or(0, |a| a.requests));
            trends.insert(format!("prop:{key}={value}"), t);
        }
    }
    for u in report.users.iter().flatten() {
        let t = engine.trend(window, |s| s.users.get(&u.user_id).map_or(0, |a| a.requests));
        trends.insert(format!("user:{}", u.user_id), t);
    }
    trends
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::series::Series;
    use crate::time::MICROS_PER_SEC;

    #[test]
    fn buckets_not_watched_are_left_out_and_the_filling_one_is_partial() {
        const S: Micros = MICROS_PER_SEC;
        let series = Series::new(60 * S);
        // Watched for the last 150 s of an hour ending 30 s into a minute.
        let end = 1_000 * 60 * S + 30 * S;
        let span = Span { start: end - 150 * S, end, start_inclusive: false };
        let pts = chart(&series, span, end - 150 * S, 3_600 * S);
        let secs: Vec<f64> = pts.iter().map(|p| p.secs).collect();
        assert_eq!(secs, vec![60.0, 60.0, 30.0], "a whole minute, a whole one, the filling half");
        assert_eq!(pts[0].x, 57.5, "placed at its minute of the window");
        // Watched all along: the bucket across the window's start counts whole.
        let span = Span { start: end - 3_600 * S, end, start_inclusive: false };
        let pts = chart(&series, span, 0, 3_600 * S);
        assert_eq!((pts.len(), pts[0].secs, pts[0].x), (61, 60.0, -0.5));
    }
}
