//! The tables' rows, built from a snapshot's report: display text and the raw
//! numbers behind it (for sorting and for CSV exports, which hold numbers, not text).

use super::app::{App, Segment, View};
use super::format::{count, ms, pct, usd};
use crate::report::{self, UserRow};
use crate::stats::{OTHER, SessionAgg};
use crate::text::sanitize;

/// What a column holds, which decides how it is sized, sorted and exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The row's name: takes the room left, cut with `…` when short of it.
    Name,
    /// A number: never cut; the column is dropped before that.
    Num,
    /// Other text (a session's name, a time of day).
    Text,
}

/// A table column: its header, kind, and priority (0 is kept longest when the
/// terminal is narrow; higher numbers go first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    pub priority: u8,
}

const fn col(name: &'static str, kind: Kind, priority: u8) -> Column {
    Column { name, kind, priority }
}

/// The columns of the Models, Providers and Properties tables.
pub const GROUP_COLUMNS: [Column; 14] = [
    col("NAME", Kind::Name, 0),
    col("REQS", Kind::Num, 0),
    col("SHARE", Kind::Num, 5),
    col("COST", Kind::Num, 1),
    col("COST/REQ", Kind::Num, 7),
    col("P50", Kind::Num, 4),
    col("P95", Kind::Num, 2),
    col("P99", Kind::Num, 3),
    col("TTFT", Kind::Num, 8),
    col("ERR%", Kind::Num, 1),
    col("429%", Kind::Num, 5),
    col("CACHE%", Kind::Num, 7),
    col("TOKENS", Kind::Num, 6),
    col("UNPRICED", Kind::Num, 2),
];

/// The columns of the Users table.
pub const USER_COLUMNS: [Column; 12] = [
    col("USER", Kind::Name, 0),
    col("REQS", Kind::Num, 0),
    col("SHARE", Kind::Num, 5),
    col("COST", Kind::Num, 1),
    col("COST/REQ", Kind::Num, 7),
    col("AVG", Kind::Num, 3),
    col("TTFT", Kind::Num, 8),
    col("ERR%", Kind::Num, 1),
    col("429%", Kind::Num, 5),
    col("CACHE%", Kind::Num, 7),
    col("TOKENS", Kind::Num, 6),
    col("LAST", Kind::Text, 4),
];

/// The columns of the Sessions table.
pub const SESSION_COLUMNS: [Column; 6] = [
    col("SESSION", Kind::Name, 0),
    col("NAME", Kind::Text, 5),
    col("DURATION", Kind::Num, 2),
    col("REQS", Kind::Num, 0),
    col("COST", Kind::Num, 1),
    col("ERRORS", Kind::Num, 1),
];

/// A table row: its name (for drill-down and copying), its cells as shown, and the
/// number behind each cell (`None` for text, or a number that is not known).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub key: String,
    pub cells: Vec<String>,
    pub values: Vec<Option<f64>>,
}

impl Row {
    /// The folded `(other)` row: listed last whatever the sort.
    pub fn is_other(&self) -> bool {
        self.key == OTHER
    }
}

/// Rows of models, providers or property values.
pub fn group_rows(groups: &[(String, report::Group)]) -> Vec<Row> {
    groups
        .iter()
        .map(|(name, g)| {
            let cost = g.known_cost();
            let per_req = cost.map(|_| g.cost_per_request);
            let cells = vec![
                sanitize(name).into_owned(),
                count(g.requests),
                pct(g.request_share),
                cost.map_or_else(|| "unpriced".into(), usd),
                per_req.map_or_else(|| "unpriced".into(), usd),
                ms(g.latency.p50),
                ms(g.latency.p95),
                ms(g.latency.p99),
                ms(g.ttft_avg),
                pct(g.error_rate),
                pct(g.rate_429),
                pct(g.cache_hit_rate),
                count(g.tokens),
                count(g.unpriced_requests),
            ];
            let values = vec![
                None,
                Some(g.requests as f64),
                Some(g.request_share),
                cost,
                per_req,
                g.latency.p50,
                g.latency.p95,
                g.latency.p99,
                g.ttft_avg,
                Some(g.error_rate),
                Some(g.rate_429),
                Some(g.cache_hit_rate),
                Some(g.tokens as f64),
                Some(g.unpriced_requests as f64),
            ];
            Row { key: name.clone(), cells, values }
        })
        .collect()
}

/// Rows of users; `clock` writes the last-active time.
pub fn user_rows(users: &[UserRow]) -> Vec<Row> {
    users
        .iter()
        .map(|u| Row {
            key: u.user_id.clone(),
            cells: vec![
                sanitize(&u.user_id).into_owned(),
                count(u.request_count),
                pct(u.request_share),
                usd(u.total_cost),
                usd(u.cost_per_request),
                ms(u.avg_latency),
                ms(u.ttft_avg),
                pct(u.error_rate),
                pct(u.rate_429),
                pct(u.cache_hit_rate),
                count(u.tokens),
                u.last_active.get(11..19).unwrap_or("").to_string(),
            ],
            values: vec![
                None,
                Some(u.request_count as f64),
                Some(u.request_share),
                Some(u.total_cost),
                Some(u.cost_per_request),
                u.avg_latency,
                u.ttft_avg,
                Some(u.error_rate),
                Some(u.rate_429),
                Some(u.cache_hit_rate),
                Some(u.tokens as f64),
                crate::time::parse_rfc3339(&u.last_active).ok().map(|t| t as f64),
            ],
        })
        .collect()
}

/// Rows of sessions.
pub fn session_rows<'a>(sessions: impl Iterator<Item = (&'a str, &'a SessionAgg)>) -> Vec<Row> {
    sessions
        .map(|(id, s)| {
            let secs = s.duration_micros() as f64 / 1e6;
            Row {
                key: id.to_string(),
                cells: vec![
                    sanitize(id).into_owned(),
                    s.name.as_deref().map(|n| sanitize(n).into_owned()).unwrap_or_default(),
                    ms(Some(secs * 1_000.0)),
                    count(s.requests),
                    usd(s.cost.to_f64()),
                    count(s.errors),
                ],
                values: vec![
                    None,
                    None,
                    Some(secs),
                    Some(s.requests as f64),
                    Some(s.cost.to_f64()),
                    Some(s.errors as f64),
                ],
            }
        })
        .collect()
}

/// Sorts rows by column `col` (numbers by value, unknown last; text by name), and
/// keeps the folded `(other)` row last.
pub fn sort(rows: &mut [Row], col: usize, desc: bool) {
    rows.sort_by(|a, b| {
        let ord = match (a.values.get(col).copied().flatten(), b.values.get(col).copied().flatten()) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Greater,
            (None, Some(_)) => std::cmp::Ordering::Less,
            (None, None) => a.cells.get(col).cmp(&b.cells.get(col)),
        };
        let ord = if desc { ord.reverse() } else { ord };
        a.is_other().cmp(&b.is_other()).then(ord)
    });
}

impl App {
    /// The users of the current segment.
    fn segment_rows(&self, mut rows: Vec<Row>) -> Vec<Row> {
        let Some(snap) = &self.snapshot else { return rows };
        // The folded `(other)` row is not a user.
        rows.retain(|r| !r.is_other());
        match self.segment {
            Segment::All => {}
            Segment::Power => {
                // Users are listed by requests already; keep the top tenth (at least one).
                rows.sort_by(|a, b| b.values[1].unwrap_or(0.0).total_cmp(&a.values[1].unwrap_or(0.0)));
                let keep = snap.report.summary.active_users.div_ceil(10).max(1) as usize;
                rows.truncate(keep);
            }
            Segment::New => rows.retain(|r| snap.new_users.contains(&r.key)),
            Segment::AtRisk => rows.retain(|r| {
                self.trend(r).is_some_and(|t| {
                    let (a, b) = t.split_at(t.len() / 2);
                    let (first, second): (u64, u64) = (a.iter().sum(), b.iter().sum());
                    first >= 2 && second * 2 < first
                })
            }),
        }
        rows
    }

    /// A row's sparkline data, if any.
    pub fn trend(&self, row: &Row) -> Option<&Vec<u64>> {
        let snap = self.snapshot.as_ref()?;
        let prefix = match self.view {
            View::Models => "model:",
            View::Providers => "provider:",
            View::Users => "user:",
            View::Properties => "prop:",
            _ => return None,
        };
        snap.trends.get(&format!("{prefix}{}", row.key))
    }

    /// The rows of the current table view, sorted as chosen.
    pub fn rows(&self) -> Vec<Row> {
        let Some(snap) = &self.snapshot else { return Vec::new() };
        let r = &snap.report;
        let mut rows = match self.view {
            View::Models => r.by_model.as_ref().map(|g| group_rows(&g.0)).unwrap_or_default(),
            View::Providers => r.by_provider.as_ref().map(|g| group_rows(&g.0)).unwrap_or_default(),
            View::Properties => r
                .by_property
                .0
                .iter()
                .flat_map(|(k, values)| {
                    group_rows(&values.0).into_iter().map(move |mut row| {
                        row.key = format!("{k}={}", row.key);
                        row.cells[0] = sanitize(&row.key).into_owned();
                        row
                    })
                })
                .collect(),
            View::Users => r.users.as_deref().map(user_rows).unwrap_or_default(),
            View::Sessions => snap.sessions.clone(),
            _ => Vec::new(),
        };
        if self.view == View::Users && self.segment != Segment::All {
            rows = self.segment_rows(rows);
        }
        let (col, desc) = self.sort[self.view.index()];
        sort(&mut rows, col, desc);
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, v: Option<f64>) -> Row {
        Row { key: key.into(), cells: vec![key.into(), String::new()], values: vec![None, v] }
    }

    #[test]
    fn other_stays_last_and_unknown_numbers_sort_below_known() {
        let mut rows = vec![row(OTHER, Some(9e9)), row("b", Some(2.0)), row("a", None), row("c", Some(7_380.0))];
        sort(&mut rows, 1, true);
        let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, vec!["c", "b", "a", OTHER]);
        sort(&mut rows, 0, false);
        let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, vec!["a", "b", "c", OTHER], "names A→Z under ▲");
    }

    #[test]
    fn an_unpriced_model_shows_unpriced_and_exports_no_number() {
        let g = report::Group {
            requests: 85,
            request_share: 2.1,
            cost: 0.0,
            percentage: 0.0,
            latency: report::GroupLatency { p50: Some(4_014.0), p95: None, p99: None, avg: None },
            ttft_avg: None,
            error_rate: 9.4,
            errors: 8,
            rate_429: 8.2,
            cost_per_request: 0.0,
            tokens: 190_097,
            cache_hit_rate: 17.6,
            unpriced_requests: 85,
        };
        let r = &group_rows(&[("claude-3-7-sonnet-20250219".into(), g)])[0];
        assert_eq!(r.cells[3], "unpriced");
        assert_eq!(r.values[3], None);
        assert_eq!(r.cells[12], "190k");
        assert_eq!(r.values[12], Some(190_097.0));
        assert_eq!(r.cells[13], "85");
    }
}
