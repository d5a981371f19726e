//! Alerts: rules on cost, latency, errors and traffic, evaluated over windows.
//!
//! Each rule (and each group, with `group_by`) moves OK → pending (the condition holds,
//! `for` not yet elapsed) → firing (warning or critical) → resolved. [`check`] runs the
//! rules over inputs read to their end, with event time as the clock.

pub mod notify;
pub mod rule;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::report::{ActiveUsers, IngestReport, Options, Report, Span};
use crate::stats::series::{Series, bucket_for_span};
use crate::stats::{Keys, Limits, Stats};
use crate::time::{Micros, format_rfc3339};
pub use rule::{Baseline, GroupBy, Kind, Missing, Op, Rule, parse_rules};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Ok,
    Pending,
    Firing,
    NoData,
}

/// Where one rule stands for one group.
#[derive(Debug, Clone)]
struct Track {
    state: State,
    /// When the condition started holding.
    since: Micros,
    severity: String,
    value: f64,
    peak: f64,
    /// Index of its open entry in the history, while firing.
    open: Option<usize>,
}

/// A firing now, or one in the history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Firing {
    pub rule: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub severity: String,
    pub metric: String,
    pub value: f64,
    pub threshold: f64,
    pub peak: f64,
    pub start: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
}

/// The states of every rule and group, and the history of firings.
#[derive(Debug, Default)]
pub struct Evaluator {
    tracks: BTreeMap<(usize, String), Track>,
    pub history: Vec<Firing>,
}

impl Evaluator {
    /// Evaluates a threshold rule (number `i`) at time `at` on `report`, its window's numbers.
    pub fn evaluate(&mut self, i: usize, rule: &Rule, at: Micros, report: &Report) {
        let secs = report.window.seconds.max(1e-9);
        self.evaluate_values(i, rule, at, values(rule, report, secs));
    }

    /// Evaluates rule `i` at `at` on (group, requests, value) of every group.
    pub fn evaluate_values(&mut self, i: usize, rule: &Rule, at: Micros, values: Vec<(String, u64, Option<f64>)>) {
        let mut seen = Vec::new();
        for (group, requests, value) in values {
            seen.push(group.clone());
            let enough = requests >= rule.min_requests;
            if !enough || value.is_none() {
                self.missing(i, rule, &group, at);
                continue;
            }
            let level = match value {
                Some(v) if enough && rule.op.holds(v, rule.threshold) => Some((false, v)),
                Some(v) if enough && rule.warning.is_some_and(|w| rule.op.holds(v, w)) => Some((true, v)),
                _ => None,
            };
            let key = (i, group.clone());
            match level {
                Some((warning, v)) => {
                    let severity = if warning { "warning".to_string() } else { rule.severity.clone() };
                    let t = self.tracks.entry(key).or_insert(Track {
                        state: State::Pending,
                        since: at,
                        severity: severity.clone(),
                        value: v,
                        peak: v,
                        open: None,
                    });
                    if t.state == State::NoData {
                        *t = Track {
                            state: State::Pending,
                            since: at,
                            severity: severity.clone(),
                            value: v,
                            peak: v,
                            open: None,
                        };
                    }
                    t.value = v;
                    t.severity = severity;
                    t.peak = if rule.op.holds(v, t.peak) { v } else { t.peak };
                    if t.state == State::Pending && at - t.since >= rule.for_ {
                        t.state = State::Firing;
                        self.history.push(Firing {
                            rule: rule.name.clone(),
                            group: (!group.is_empty()).then(|| group.clone()),
                            severity: t.severity.clone(),
                            metric: rule.metric.clone(),
                            value: v,
                            threshold: rule.threshold,
                            peak: t.peak,
                            start: format_rfc3339(at),
                            end: None,
                        });
                        t.open = Some(self.history.len() - 1);
                    }
                    if let Some(h) = t.open {
                        let f = &mut self.history[h];
                        f.value = v;
                        f.peak = t.peak;
                        // A warning that grows critical is recorded as critical.
                        if t.severity == rule.severity {
                            f.severity = t.severity.clone();
                        }
                    }
                }
                None => self.resolve(&key, at),
            }
        }
        // Groups that disappeared from the window resolve too.
        let gone: Vec<(usize, String)> =
            self.tracks.keys().filter(|(r, g)| *r == i && !seen.contains(g)).cloned().collect();
        for key in gone {
            self.resolve(&key, at);
        }
    }

    /// No (or too little) data for a group: as the rule says.
    fn missing(&mut self, i: usize, rule: &Rule, group: &str, at: Micros) {
        let key = (i, group.to_string());
        match rule.missing {
            Missing::Keep => {}
            Missing::Ok => self.resolve(&key, at),
            Missing::NoData => {
                self.resolve(&key, at);
                self.tracks.insert(
                    key,
                    Track {
                        state: State::NoData,
                        since: at,
                        severity: rule.severity.clone(),
                        value: f64::NAN,
                        peak: f64::NAN,
                        open: None,
                    },
                );
            }
        }
    }

    fn resolve(&mut self, key: &(usize, String), at: Micros) {
        if let Some(t) = self.tracks.remove(key)
            && let Some(h) = t.open
        {
            self.history[h].end = Some(format_rfc3339(at));
        }
    }

    /// What is firing now.
    pub fn firing(&self) -> Vec<Firing> {
        self.tracks.values().filter_map(|t| t.open.map(|h| self.history[h].clone())).collect()
    }

    /// The state of every rule and group (for the console's Alerts view).
    pub fn states(&self) -> Vec<(usize, String, State, String, f64)> {
        self.tracks.iter().map(|((i, g), t)| (*i, g.clone(), t.state, t.severity.clone(), t.value)).collect()
    }
}

/// (group, requests, value) for every group the rule watches (one unnamed group without `group_by`).
fn values(rule: &Rule, r: &Report, secs: f64) -> Vec<(String, u64, Option<f64>)> {
    let groups = |g: &Option<crate::report::Ranked<crate::report::Group>>| -> Vec<(String, u64, Option<f64>)> {
        g.as_ref()
            .map(|g| g.0.iter().map(|(n, g)| (n.clone(), g.requests, rule::of_group(g, &rule.metric, secs))).collect())
            .unwrap_or_default()
    };
    match &rule.group_by {
        None => vec![(String::new(), r.summary.total_requests, rule::overall(r, &rule.metric))],
        Some(GroupBy::Model) => groups(&r.by_model),
        Some(GroupBy::Provider) => groups(&r.by_provider),
        Some(GroupBy::Property(k)) => r
            .by_property
            .get(k)
            .map(|v| {
                v.0.iter()
                    .map(|(n, g)| (format!("{k}={n}"), g.requests, rule::of_group(g, &rule.metric, secs)))
                    .collect()
            })
            .unwrap_or_default(),
        Some(GroupBy::User) => r
            .users
            .iter()
            .flatten()
            .map(|u| {
                let v = match rule.metric.as_str() {
                    "request_count" => Some(u.request_count as f64),
                    "requests_per_second" => Some(u.request_count as f64 / secs),
                    "total_cost" => Some(u.total_cost),
                    "cost_per_request" => Some(u.cost_per_request),
                    "error_rate" => Some(u.error_rate),
                    "rate_429" => Some(u.rate_429),
                    "latency_avg" => u.avg_latency,
                    "ttft_avg" => u.ttft_avg,
                    "total_tokens" => Some(u.tokens as f64),
                    "cache_hit_rate" => Some(u.cache_hit_rate),
                    _ => None,
                };
                (u.user_id.clone(), u.request_count, v)
            })
            .collect(),
    }
}

/// Each group's value over its baseline's (no baseline or a zero one: no data).
fn ratio(now: Vec<(String, u64, Option<f64>)>, base: &[(String, u64, Option<f64>)]) -> Vec<(String, u64, Option<f64>)> {
    now.into_iter()
        .map(|(g, n, v)| {
            let b = base.iter().find(|(bg, _, _)| *bg == g).and_then(|x| x.2).filter(|b| *b > 0.0);
            let r = v.zip(b).map(|(v, b)| v / b);
            (g, n, r)
        })
        .collect()
}

/// Each group's z-score against its values over past windows (a group missing from a
/// past window counts 0 there; fewer than two past windows: no data).
fn zscore(
    now: Vec<(String, u64, Option<f64>)>,
    past: &[Vec<(String, u64, Option<f64>)>],
) -> Vec<(String, u64, Option<f64>)> {
    now.into_iter()
        .map(|(g, n, v)| {
            let xs: Vec<f64> =
                past.iter().map(|w| w.iter().find(|(pg, _, _)| *pg == g).and_then(|x| x.2).unwrap_or(0.0)).collect();
            let mean = xs.iter().sum::<f64>() / xs.len().max(1) as f64;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (xs.len().max(2) - 1) as f64;
            let sd = var.sqrt();
            // A steady history (no spread): the same value is 0, any other infinitely far.
            let z = v.filter(|_| xs.len() >= 2).map(|v| match (v - mean, sd > 0.0) {
                (d, true) => d / sd,
                (0.0, false) => 0.0,
                (d, false) => f64::INFINITY.copysign(d),
            });
            (g, n, z)
        })
        .collect()
}

/// What `check` found.
#[derive(Debug, Serialize)]
pub struct CheckResult {
    pub firing: Vec<Firing>,
    pub history: Vec<Firing>,
}

/// Runs `rules` over the events `visit_all` feeds (any order), evaluating every rule at
/// each bucket boundary across the events' time span. A rule's window is counted in
/// whole buckets (rounded up).
pub fn check(
    rules: &[Rule],
    visit_all: impl FnOnce(&mut dyn FnMut(&crate::event::Event, crate::stats::Sample)),
) -> CheckResult {
    // Per rule: the bucket index → stats of its (filtered) events. Bucket k holds
    // times in ((k-1)·step, k·step], so a window ending on a boundary is whole buckets.
    let mut per_rule: Vec<BTreeMap<i64, Stats>> = vec![BTreeMap::new(); rules.len()];
    let mut first = Micros::MAX;
    let mut last = Micros::MIN;
    // The step depends on the span, known only at the end: collect at 1 s, then coarsen.
    let base = crate::time::MICROS_PER_SEC;
    let limits = Limits { users: 100_000, sessions: 10_000, ..Limits::REPORT };
    let mut keys = Keys::default();
    visit_all(&mut |ev, x| {
        first = first.min(ev.created_at);
        last = last.max(ev.created_at);
        let k = (ev.created_at + base - 1).div_euclid(base);
        keys.hash(ev);
        for (i, rule) in rules.iter().enumerate() {
            if rule.filter.as_ref().is_none_or(|f| f.matches(ev, x.cost.to_f64())) {
                per_rule[i].entry(k).or_insert_with(|| Stats::new(limits)).record_keyed(ev, &x, &keys);
            }
        }
    });
    let mut ev = Evaluator::default();
    if first > last {
        return CheckResult { firing: Vec::new(), history: Vec::new() };
    }
    let step = bucket_for_span(last - first).max(base);
    let opts = Options::default();
    let (k0, k1) = ((first + step - 1).div_euclid(step), (last + step - 1).div_euclid(step));
    for k in k0..=k1 {
        let at = k * step;
        for (i, rule) in rules.iter().enumerate() {
            let w = (rule.window + step - 1) / step * step;
            // The rule's numbers over the window ending at `end`.
            let report_at = |end: Micros| {
                let mut stats = Stats::new(limits);
                for (_, s) in per_rule[i]
                    .range((end - w).div_euclid(base) + 1..=end.div_euclid(base).max((end - w).div_euclid(base) + 1))
                {
                    stats.merge(s);
                }
                let span = Span { start: end - w, end, start_inclusive: false };
                Report::build(
                    &stats,
                    &Series::new(step),
                    Some(span),
                    ActiveUsers::of(&stats),
                    IngestReport::default(),
                    &opts,
                )
            };
            let secs = w as f64 / 1e6;
            let now = values(rule, &report_at(at), secs);
            let compared = match rule.kind {
                Kind::Threshold => now,
                // A baseline must lie wholly inside the data: a window that begins before the
                // first event would look like a spike that is only the start of the log.
                Kind::Ratio(b) => {
                    let back = match b {
                        Baseline::Previous => w,
                        Baseline::Yesterday => 86_400_000_000,
                    };
                    if at - back - w + step <= first {
                        now.into_iter().map(|(g, n, _)| (g, n, None)).collect()
                    } else {
                        ratio(now, &values(rule, &report_at(at - back), secs))
                    }
                }
                Kind::ZScore(n) => {
                    let past: Vec<Vec<(String, u64, Option<f64>)>> = (1..=n as i64)
                        .filter(|j| at - (j + 1) * w + step > first)
                        .map(|j| values(rule, &report_at(at - j * w), secs))
                        .collect();
                    zscore(now, &past)
                }
            };
            ev.evaluate_values(i, rule, at, compared);
        }
    }
    CheckResult { firing: ev.firing(), history: ev.history }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::event::Event;
    use crate::pricing::Cost;
    use crate::stats::Sample;

    const MIN: Micros = 60_000_000;

    fn rules(text: &str) -> Vec<Rule> {
        let t: toml::Table = toml::from_str(text).unwrap();
        let tables: Vec<toml::Table> =
            t["alerts"].as_array().unwrap().iter().map(|v| v.as_table().unwrap().clone()).collect();
        let (r, e) = parse_rules(&tables);
        assert!(e.is_empty(), "{e:?}");
        r
    }

    /// One request a second for `minutes`; errors (status 500 on `provider`) during
    /// the minutes in `bad`.
    fn traffic(minutes: i64, bad: std::ops::Range<i64>) -> Vec<Event<'static>> {
        (0..minutes * 60)
            .map(|s| {
                let provider = if s % 2 == 0 { "openai" } else { "anthropic" };
                let failing = bad.contains(&(s / 60)) && provider == "anthropic";
                Event {
                    created_at: s * 1_000_000 + 1,
                    provider: Some(Cow::Borrowed(provider)),
                    model: Some(Cow::Borrowed("m")),
                    status: if failing { 500 } else { 200 },
                    latency_ms: Some(100.0),
                    ..Default::default()
                }
            })
            .collect()
    }

    fn run(rules: &[Rule], events: &[Event<'static>]) -> CheckResult {
        check(rules, |visit| {
            for e in events {
                visit(e, Sample::new(e, Cost::Billed(0.001)));
            }
        })
    }

    #[test]
    fn change_rules_compare_with_a_baseline() {
        // 1 request/s for 30 minutes, then 4 per second for 5 minutes.
        let mut events = traffic(30, 0..0);
        for s in 0..300i64 {
            for j in 0..3 {
                events.push(Event { created_at: 30 * MIN + s * 1_000_000 + 1 + j, ..events[0].clone() });
            }
            events.push(Event { created_at: 30 * MIN + s * 1_000_000 + 5, ..events[0].clone() });
        }
        let r = rules(
            r#"[[alerts]]
            name = "spike"
            metric = "request_count"
            threshold = 3
            window = "5m"
            baseline = "previous"

            [[alerts]]
            name = "unusual"
            metric = "request_count"
            threshold = 3
            window = "1m"
            zscore = 10
            "#,
        );
        let out = run(&r, &events);
        let spike = out.history.iter().find(|h| h.rule == "spike").expect("the ratio rule fires");
        assert!(spike.peak >= 3.0, "{spike:?}");
        assert!(out.history.iter().any(|h| h.rule == "unusual"), "the z-score rule fires: {:?}", out.history);
        // Steady traffic alone fires neither.
        let quiet = run(&r, &traffic(30, 0..0));
        assert!(quiet.history.is_empty(), "{:?}", quiet.history);
    }

    #[test]
    fn missing_data_follows_the_rule() {
        let mk = |missing: &str| {
            rules(&format!("[[alerts]]\nname = \"x\"\nmetric = \"latency_p95\"\nthreshold = 10\nwindow = \"1m\"\nmissing = \"{missing}\"\n"))
                .remove(0)
        };
        for (missing, still_firing, state) in
            [("ok", false, None), ("keep", true, Some(State::Firing)), ("nodata", false, Some(State::NoData))]
        {
            let rule = mk(missing);
            let mut ev = Evaluator::default();
            ev.evaluate_values(0, &rule, MIN, vec![(String::new(), 5, Some(50.0))]);
            assert_eq!(ev.firing().len(), 1, "{missing}");
            ev.evaluate_values(0, &rule, 2 * MIN, vec![(String::new(), 0, None)]);
            assert_eq!(!ev.firing().is_empty(), still_firing, "{missing}");
            assert_eq!(ev.states().first().map(|s| s.2), state, "{missing}");
        }
    }

    #[test]
    fn fires_after_for_and_resolves() {
        let r = rules(
            r#"[[alerts]]
            name = "errors"
            metric = "error_rate"
            threshold = 20
            window = "1m"
            for = "2m"
            "#,
        );
        // anthropic fails in minutes 10..20: half the traffic, a 50% error rate.
        let out = run(&r, &traffic(40, 10..20));
        assert_eq!(out.history.len(), 1);
        let f = &out.history[0];
        // The condition holds from the boundary at minute 11; `for` 2m → firing at 13.
        assert_eq!(f.start, format_rfc3339(13 * MIN));
        assert_eq!(f.end.as_deref(), Some(format_rfc3339(21 * MIN).as_str()));
        assert_eq!(f.peak, 50.0);
        assert!(out.firing.is_empty(), "resolved by the end");
    }

    #[test]
    fn group_by_min_requests_warning_and_still_firing() {
        let r = rules(
            r#"[[alerts]]
            name = "provider-errors"
            metric = "error_rate"
            threshold = 100
            warning = 50
            window = "1m"
            group_by = "provider"
            min_requests = 10
            severity = "critical"

            [[alerts]]
            name = "quiet"
            metric = "request_count"
            threshold = 1000
            window = "1m"
            min_requests = 1000
            "#,
        );
        let out = run(&r, &traffic(30, 20..30));
        assert_eq!(out.firing.len(), 1, "{:?}", out.firing);
        let f = &out.firing[0];
        assert_eq!(
            (f.rule.as_str(), f.group.as_deref(), f.severity.as_str()),
            ("provider-errors", Some("anthropic"), "warning")
        );
        assert_eq!(f.value, 100.0, "above the warning (50), not above the threshold (100)");
        assert!(out.history.iter().all(|h| h.rule != "quiet"), "min_requests keeps a rule quiet");
    }
}
