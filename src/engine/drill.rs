//! Drill-down over a whole window: the numbers of one model, provider, user,
//! session or property value, merged from the groups every time slab keeps.
//!
//! A table row is the merge of one group over the window's slabs; its drill-down
//! is the merge of the very same groups, so the two always agree, at any window the
//! engine keeps and without keeping anything more. The groups hold less than the
//! whole traffic does (users keep averages, sessions counts), so a [`Drill`] says
//! what it knows; its chart has one point a slab.

use std::collections::HashSet;

use super::Engine;
use crate::filter::{GroupDim, GroupFilter};
use crate::report::{ActiveUsers, Span};
use crate::stats::hist::Dist;
use crate::stats::series::{Point, Series};
use crate::stats::{Agg, Limits, SessionAgg, Stats, UserAgg};
use crate::time::Micros;

/// What the groups of a dimension keep, beyond requests, errors and cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    /// Latency and TTFT averages, tokens, cache hits, errors by class.
    pub detail: bool,
    /// Latency percentiles (models, providers and property values keep a histogram).
    pub percentiles: bool,
}

/// The numbers of the groups a filter selects, over a window.
#[derive(Debug, Clone)]
pub struct Drill {
    /// Totals in `stats.total` (and TTFT moments in `stats.ttft`); nothing per group.
    pub stats: Stats,
    /// One point a slab of the window.
    pub series: Series,
    pub span: Span,
    /// Distinct users, when the dimension is users (else unknown).
    pub users: Option<ActiveUsers>,
    pub known: Known,
    /// Groups of the dimension that matched, over the window.
    pub groups: usize,
}

fn from_user(u: &UserAgg) -> Agg {
    Agg {
        requests: u.requests,
        ok: u.requests - u.errors,
        errors: u.errors,
        e4xx: u.e4xx,
        e5xx: u.e5xx,
        e429: u.e429,
        cost: u.cost,
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        cache_hits: u.cache_hits,
        latency: Dist::from_moments(u.latency),
        ttft: u.ttft,
        ..Agg::default()
    }
}

fn from_session(s: &SessionAgg) -> Agg {
    Agg { requests: s.requests, ok: s.requests - s.errors, errors: s.errors, cost: s.cost, ..Agg::default() }
}

impl Engine {
    /// The groups `filter` selects, over the window of length `window` ending now.
    pub fn drill<'a>(&'a self, window: Micros, filter: &GroupFilter) -> Drill {
        let tier = self.tier_for(window);
        let mut total = Agg::default();
        let mut series = Series::new(tier.width);
        let mut names: HashSet<&str> = HashSet::new();
        for (start, slab) in self.slabs_in(tier, window) {
            let s = &slab.stats;
            let mut part = Agg::default();
            let mut add = |name: &'a str, a: Agg| {
                if a.requests > 0 && filter.matches(name) {
                    part.merge(&a);
                    names.insert(name);
                }
            };
            match &filter.dim {
                GroupDim::Model => s.by_model.iter().for_each(|(n, a)| add(n, a.clone())),
                GroupDim::Provider => s.by_provider.iter().for_each(|(n, a)| add(n, a.clone())),
                GroupDim::Property(key) => {
                    if let Some(values) = s.by_property.get(key) {
                        values.iter().for_each(|(n, a)| add(n, a.clone()));
                    }
                }
                GroupDim::User => s.users.iter().for_each(|(n, u)| add(n, from_user(u))),
                GroupDim::Session => s.sessions.iter().for_each(|(n, x)| add(n, from_session(x))),
            }
            series.merge_point_at(start, &Point::of(&part, part.latency.clone(), Dist::default()));
            total.merge(&part);
        }
        let mut stats = Stats::new(Limits::REPORT);
        stats.ttft = Dist::from_moments(total.ttft);
        stats.total = total;
        let known = match filter.dim {
            GroupDim::User => Known { detail: true, percentiles: false },
            GroupDim::Session => Known { detail: false, percentiles: false },
            _ => Known { detail: true, percentiles: true },
        };
        let users = (filter.dim == GroupDim::User).then_some(ActiveUsers { count: names.len() as u64, exact: true });
        Drill { stats, series, span: self.covered(window), users, known, groups: names.len() }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::engine::{Clock, Config};
    use crate::event::Event;
    use crate::pricing::PriceTable;
    use crate::report::{self, IngestReport};
    use crate::time::MICROS_PER_SEC;

    const S: Micros = MICROS_PER_SEC;

    /// An hour of traffic: 3 models, 4 users, an `env` property, errors and latencies
    /// that differ by model.
    fn engine() -> Engine {
        let config = Config { clock: Clock::EventTime, ..Config::default() };
        let mut e = Engine::new(config, PriceTable::default(), 0);
        for i in 0..7_200i64 {
            let model = ["a", "b", "c"][(i % 3) as usize];
            let ev = Event {
                created_at: 1_000_000 * S + i * S / 2,
                model: Some(Cow::Borrowed(model)),
                provider: Some(Cow::Borrowed(if model == "c" { "p2" } else { "p1" })),
                user_id: Some(Cow::Owned(format!("u{}", i % 4))),
                latency_ms: Some((i % 97) as f64 * 10.0 + if model == "b" { 5_000.0 } else { 0.0 }),
                ttft_ms: Some(50.0),
                status: if i % 11 == 0 {
                    500
                } else if i % 13 == 0 {
                    429
                } else {
                    200
                },
                cost_usd: Some(0.001 * (1 + i % 5) as f64),
                prompt_tokens: 10,
                completion_tokens: 5,
                properties: vec![(Cow::Borrowed("env"), Cow::Borrowed(if i % 2 == 0 { "prod" } else { "dev" }))],
                ..Default::default()
            };
            e.ingest(&ev);
        }
        e
    }

    fn filter(s: &str) -> GroupFilter {
        s.parse::<crate::filter::Filter>().unwrap().group().unwrap()
    }

    #[test]
    fn a_drill_equals_the_row_it_came_from_at_every_window() {
        let e = engine();
        for window in crate::engine::DEFAULT_WINDOWS {
            let r = e.report(window, &report::Options::default(), IngestReport::default());
            for (name, row) in &r.by_model.as_ref().unwrap().0 {
                let d = e.drill(window, &filter(&format!("model:{name}")));
                let t = &d.stats.total;
                assert_eq!(t.requests, row.requests, "{name} at {window}");
                assert!((t.cost.to_f64() - row.cost).abs() < 1e-9);
                assert_eq!(t.errors, row.errors);
                assert_eq!(t.latency.percentile(95.0), row.latency.p95);
                assert_eq!(t.latency.percentile(99.0), row.latency.p99);
                assert_eq!(d.series.merged(i64::MIN, i64::MAX).requests, row.requests, "the chart sums to it");
            }
            for (name, row) in &r.by_property.get("env").unwrap().0 {
                let d = e.drill(window, &filter(&format!("prop.env={name}")));
                assert_eq!(d.stats.total.requests, row.requests);
            }
            for u in r.users.as_ref().unwrap() {
                let d = e.drill(window, &filter(&format!("user:{}", u.user_id)));
                assert_eq!(d.stats.total.requests, u.request_count);
                assert!((d.stats.total.cost.to_f64() - u.total_cost).abs() < 1e-9);
                assert_eq!(d.stats.total.latency.moments.avg_ms(), u.avg_latency);
                assert_eq!(d.users, Some(ActiveUsers { count: 1, exact: true }));
            }
        }
    }

    #[test]
    fn an_hour_is_the_whole_hour_not_the_latest_requests() {
        let e = engine();
        let d = e.drill(3_600 * S, &filter("model:b"));
        assert_eq!(d.stats.total.requests, 2_400, "every third of 7,200");
        assert_eq!(d.groups, 1);
        let both = e.drill(3_600 * S, &filter("model:a model:B"));
        assert_eq!(both.stats.total.requests, 4_800, "alternatives, case-insensitive");
        assert_eq!(e.drill(3_600 * S, &filter("model:*")).stats.total.requests, 7_200);
        assert_eq!(e.drill(3_600 * S, &filter("model:nope")).stats.total.requests, 0);
        // Half an hour: the slabs overlapping its last 30 minutes, as the table has them.
        let half = e.drill(1_800 * S, &filter("provider:p1")).stats.total.requests;
        let row = e.report(1_800 * S, &report::Options::default(), IngestReport::default());
        assert_eq!(half, row.by_provider.unwrap().get("p1").unwrap().requests);
    }
}
