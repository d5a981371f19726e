//! Alerts: rules on cost, latency, errors and traffic, evaluated over windows.
//!
//! Each rule (and each group, with `group_by`) moves OK → pending (the condition holds,
//! `for` not yet elapsed) → firing (warning or critical) → resolved. [`check`] runs the
//! rules over inputs read to their end, with event time as the clock.

pub mod notify;
pub mod rule;
pub mod watch;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::report::{ActiveUsers, By, IngestReport, Options, Report, Span};
use crate::stats::series::{Series, bucket_for_span};
use crate::stats::{Keys, Limits, Stats};
use crate::time::{Micros, format_rfc3339};
pub use rule::{Baseline, GroupBy, Kind, Missing, Op, Rule, parse_rules, parse_rules_str};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Firing,
    Pending,
    Ok,
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
    /// When it was last notified (for `renotify`).
    notified: Micros,
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

/// What happened to an alert at one evaluation: what notifications are sent for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Fired,
    /// Still firing after its rule's `renotify` interval.
    Reminder,
    Resolved,
}

/// One alert changing state, for notifications and the terminal bell.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub transition: Transition,
    /// Index of the rule.
    pub rule: usize,
    pub firing: Firing,
    pub at: Micros,
}

/// Past firings kept (the oldest resolved ones go first).
const HISTORY_CAP: usize = 1_000;

/// (group, requests, value) for every group a rule watches at one evaluation.
pub type Values = Vec<(String, u64, Option<f64>)>;

/// The states of every rule and group, and the history of firings.
#[derive(Debug, Default)]
pub struct Evaluator {
    tracks: BTreeMap<(usize, String), Track>,
    pub history: Vec<Firing>,
    /// What changed since the caller last took them (see [`Evaluator::take_changes`]).
    changes: Vec<Change>,
}

impl Evaluator {
    /// Evaluates rule `i` at `at` on (group, requests, value) of every group.
    pub fn evaluate_values(&mut self, i: usize, rule: &Rule, at: Micros, values: Values) {
        let mut seen = std::collections::HashSet::with_capacity(values.len());
        for (group, requests, value) in values {
            let enough = requests >= rule.min_requests;
            let Some(v) = value.filter(|_| enough) else {
                self.missing(i, rule, &group, at);
                seen.insert(group);
                continue;
            };
            let level = if rule.op.holds(v, rule.threshold) {
                Some(rule.severity.as_str())
            } else if rule.warning.is_some_and(|w| rule.op.holds(v, w)) {
                Some("warning")
            } else {
                None
            };
            let key = (i, group);
            match level {
                Some(severity) => self.holds(i, rule, key.clone(), at, v, severity),
                None => self.resolve(&key, at),
            }
            seen.insert(key.1);
        }
        // Groups that disappeared from the window resolve too.
        let gone: Vec<(usize, String)> =
            self.tracks.keys().filter(|(r, g)| *r == i && !seen.contains(g)).cloned().collect();
        for key in gone {
            self.resolve(&key, at);
        }
        self.trim_history();
    }

    /// The condition holds for one group, at `severity`.
    fn holds(&mut self, i: usize, rule: &Rule, key: (usize, String), at: Micros, v: f64, severity: &str) {
        let fresh = || Track {
            state: State::Pending,
            since: at,
            severity: severity.into(),
            value: v,
            peak: v,
            open: None,
            notified: at,
        };
        let t = self.tracks.entry(key.clone()).or_insert_with(fresh);
        if t.state == State::NoData {
            *t = fresh();
        }
        t.value = v;
        t.severity = severity.into();
        t.peak = if rule.op.holds(v, t.peak) { v } else { t.peak };
        let mut transition = None;
        if t.state == State::Pending && at - t.since >= rule.for_ {
            t.state = State::Firing;
            t.notified = at;
            self.history.push(Firing {
                rule: rule.name.clone(),
                group: (!key.1.is_empty()).then(|| key.1.clone()),
                severity: t.severity.clone(),
                metric: rule.metric.clone(),
                value: v,
                threshold: rule.threshold,
                peak: t.peak,
                start: format_rfc3339(at),
                end: None,
            });
            t.open = Some(self.history.len() - 1);
            transition = Some(Transition::Fired);
        } else if t.state == State::Firing && rule.renotify.is_some_and(|r| at - t.notified >= r) {
            t.notified = at;
            transition = Some(Transition::Reminder);
        }
        if let Some(h) = t.open {
            let f = &mut self.history[h];
            f.value = v;
            f.peak = t.peak;
            // A warning that grows critical is recorded as critical.
            if t.severity == rule.severity {
                f.severity = t.severity.clone();
            }
            if let Some(transition) = transition {
                let mut firing = f.clone();
                firing.severity = t.severity.clone();
                self.changes.push(Change { transition, rule: i, firing, at });
            }
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
                        notified: at,
                    },
                );
            }
        }
    }

    fn resolve(&mut self, key: &(usize, String), at: Micros) {
        if let Some(t) = self.tracks.remove(key)
            && let Some(h) = t.open
        {
            let f = &mut self.history[h];
            f.end = Some(format_rfc3339(at));
            self.changes.push(Change { transition: Transition::Resolved, rule: key.0, firing: f.clone(), at });
        }
    }

    /// Drops the oldest resolved firings beyond [`HISTORY_CAP`] (open ones stay).
    fn trim_history(&mut self) {
        if self.history.len() <= HISTORY_CAP {
            return;
        }
        let excess = self.history.len() - HISTORY_CAP;
        let mut dropped = 0;
        let mut map = vec![None; self.history.len()];
        let mut kept = Vec::with_capacity(HISTORY_CAP);
        for (old, f) in std::mem::take(&mut self.history).into_iter().enumerate() {
            if dropped < excess && f.end.is_some() {
                dropped += 1;
                continue;
            }
            map[old] = Some(kept.len());
            kept.push(f);
        }
        self.history = kept;
        for t in self.tracks.values_mut() {
            t.open = t.open.and_then(|h| map[h]);
        }
    }

    /// The changes since the last call, oldest first.
    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    /// What is firing now.
    pub fn firing(&self) -> Vec<Firing> {
        self.tracks.values().filter_map(|t| t.open.map(|h| self.history[h].clone())).collect()
    }

    /// The state, severity and value of rule `i` for `group` (OK when it has no track).
    pub fn state(&self, i: usize, group: &str) -> Option<(State, &str, f64)> {
        self.tracks.get(&(i, group.to_string())).map(|t| (t.state, t.severity.as_str(), t.value))
    }

    /// The groups of rule `i` that are not OK.
    pub fn not_ok(&self, i: usize) -> impl Iterator<Item = (&str, State, &str, f64)> {
        self.tracks
            .range((i, String::new())..)
            .take_while(move |((r, _), _)| *r == i)
            .map(|((_, g), t)| (g.as_str(), t.state, t.severity.as_str(), t.value))
    }
}

/// The numbers rule `rule` compares for every group it watches (one unnamed group
/// without `group_by`), from `report` and `stats`, its window's numbers over `secs` seconds.
/// What a cap folded into `(other)` is not watched: the sum of many groups is no group,
/// and would fire a per-user limit for nobody in particular.
pub fn values(rule: &Rule, report: &Report, stats: &Stats, secs: f64) -> Values {
    let aggs = |c: &crate::stats::Capped<crate::stats::Agg>| -> Values {
        c.iter()
            .map(|(n, a)| {
                let g = crate::report::group(a, &stats.total);
                (n.to_string(), a.requests, rule::of_group(&g, &rule.metric, secs))
            })
            .collect()
    };
    match &rule.group_by {
        None => vec![(String::new(), report.summary.total_requests, rule::overall(report, &rule.metric))],
        Some(GroupBy::Model) => aggs(&stats.by_model),
        Some(GroupBy::Provider) => aggs(&stats.by_provider),
        Some(GroupBy::Property(k)) => stats
            .by_property
            .get(k)
            .map(|c| aggs(c).into_iter().map(|(n, r, v)| (format!("{k}={n}"), r, v)).collect())
            .unwrap_or_default(),
        Some(GroupBy::User) => stats
            .users
            .iter()
            .map(|(id, u)| (id.to_string(), u.requests, rule::of_user(u, &rule.metric, secs)))
            .collect(),
        Some(GroupBy::Session) => stats
            .sessions
            .iter()
            .map(|(id, s)| (id.to_string(), s.requests, rule::of_session(s, &rule.metric, secs)))
            .collect(),
    }
}

/// The numbers `rule` compares, over `stats`: the events of `span`.
pub fn measure(rule: &Rule, stats: &Stats, span: Span) -> Values {
    // Only the overall numbers come from the report: leave out its per-user and per-property tables.
    let opts = Options {
        window: None,
        top: 1,
        by: vec![By::Provider],
        threads: 1,
        prices: crate::pricing::PriceTable::default(),
        limits: Limits::REPORT,
        input_format: None,
        zone: crate::time::Zone::Utc,
    };
    let report = Report::build(
        stats,
        &Series::new(span.end - span.start),
        Some(span),
        ActiveUsers::of(stats),
        IngestReport::default(),
        &opts,
    );
    values(rule, &report, stats, span.seconds())
}

/// The same groups with no values (a window that cannot be judged yet).
pub fn no_data(values: Values) -> Values {
    values.into_iter().map(|(g, n, _)| (g, n, None)).collect()
}

/// Each group's value over its baseline's (no baseline or a zero one: no data).
pub fn ratio(now: Values, base: &[(String, u64, Option<f64>)]) -> Values {
    now.into_iter()
        .map(|(g, n, v)| {
            let b = base.iter().find(|(bg, _, _)| *bg == g).and_then(|x| x.2).filter(|b| *b > 0.0);
            let r = v.zip(b).map(|(v, b)| v / b);
            (g, n, r)
        })
        .collect()
}

/// Each group's z-score against its values over past windows (a group missing from a
/// complete past window counts 0 there, from one with only the busiest groups kept it
/// is left out; fewer than two past windows: no data).
pub fn zscore(now: Values, past: &[(&Values, bool)]) -> Values {
    now.into_iter()
        .map(|(g, n, v)| {
            let xs: Vec<f64> = past
                .iter()
                .filter_map(|(w, complete)| match w.iter().find(|(pg, _, _)| *pg == g) {
                    Some(x) => Some(x.2.unwrap_or(0.0)),
                    None => complete.then_some(0.0),
                })
                .collect();
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
    let mut keys = Keys::default();
    visit_all(&mut |ev, x| {
        first = first.min(ev.created_at);
        last = last.max(ev.created_at);
        let k = (ev.created_at + base - 1).div_euclid(base);
        keys.hash(ev);
        for (i, rule) in rules.iter().enumerate() {
            if rule.filter.as_ref().is_none_or(|f| f.matches(ev, x.cost.to_f64())) {
                per_rule[i].entry(k).or_insert_with(|| Stats::new(CHECK_LIMITS)).record_keyed(ev, &x, &keys);
            }
        }
    });
    check_buckets(rules, &per_rule, first, last)
}

/// The caps of the stats `check` keeps per second and rule.
pub const CHECK_LIMITS: Limits = Limits { users: 100_000, sessions: 10_000, ..Limits::REPORT };

/// The step at which `check` evaluates rules over events from `first` to `last`.
pub fn check_step(first: Micros, last: Micros) -> Micros {
    bucket_for_span(last - first).max(crate::time::MICROS_PER_SEC)
}

/// Evaluates the rules at every step from `first` to `last` over stats kept per rule
/// and time bucket: the key of a bucket is its end in seconds (it holds the times
/// just before), its length at most the step; ClickHouse gives whole steps.
pub fn check_buckets(rules: &[Rule], per_rule: &[BTreeMap<i64, Stats>], first: Micros, last: Micros) -> CheckResult {
    let base = crate::time::MICROS_PER_SEC;
    let limits = CHECK_LIMITS;
    let mut ev = Evaluator::default();
    if first > last {
        return CheckResult { firing: Vec::new(), history: Vec::new() };
    }
    let step = check_step(first, last);
    let (k0, k1) = ((first + step - 1).div_euclid(step), (last + step - 1).div_euclid(step));
    for k in k0..=k1 {
        let at = k * step;
        for (i, rule) in rules.iter().enumerate() {
            let w = (rule.window + step - 1) / step * step;
            // The rule's numbers over the window ending at `end`.
            let values_at = |end: Micros| {
                let mut stats = Stats::new(limits);
                for (_, s) in per_rule[i]
                    .range((end - w).div_euclid(base) + 1..=end.div_euclid(base).max((end - w).div_euclid(base) + 1))
                {
                    stats.merge(s);
                }
                measure(rule, &stats, Span { start: end - w, end, start_inclusive: false })
            };
            let now = values_at(at);
            let compared = match rule.kind {
                Kind::Threshold => now,
                // A baseline must lie wholly inside the data: a window that begins before the
                // first event would look like a spike that is only the start of the log.
                Kind::Ratio(b) => {
                    let back = match b {
                        Baseline::Previous => w,
                        Baseline::Yesterday => 86_400_000_000,
                    };
                    if at - back - w + step <= first { no_data(now) } else { ratio(now, &values_at(at - back)) }
                }
                Kind::ZScore(n) => {
                    let past: Vec<Values> = (1..=n as i64)
                        .filter(|j| at - (j + 1) * w + step > first)
                        .map(|j| values_at(at - j * w))
                        .collect();
                    zscore(now, &past.iter().map(|p| (p, true)).collect::<Vec<_>>())
                }
            };
            // A "less than" rule on a window beginning before the first event would take
            // the time before the log for silence.
            let compared = if rule.op.is_below() && at - w + step <= first { no_data(compared) } else { compared };
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
        let (r, e) = parse_rules_str(text).unwrap();
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
            assert_eq!(ev.state(0, "").map(|s| s.0), state, "{missing}");
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

    #[test]
    fn changes_on_firing_reminder_and_resolve() {
        let rule = rules(
            "[[alerts]]\nname = \"slow\"\nmetric = \"latency_p95\"\nthreshold = 10\nwindow = \"1m\"\nrenotify = \"2m\"\n",
        )
        .remove(0);
        let mut ev = Evaluator::default();
        let mut seen = Vec::new();
        for m in 1..=10 {
            let v = if (3..8).contains(&m) { 50.0 } else { 5.0 };
            ev.evaluate_values(0, &rule, m * MIN, vec![(String::new(), 5, Some(v))]);
            seen.extend(ev.take_changes().into_iter().map(|c| (c.transition, c.at / MIN)));
        }
        assert_eq!(
            seen,
            [(Transition::Fired, 3), (Transition::Reminder, 5), (Transition::Reminder, 7), (Transition::Resolved, 8)]
        );
        assert_eq!(ev.history.len(), 1);
        assert_eq!(ev.history[0].end.as_deref(), Some(format_rfc3339(8 * MIN).as_str()));
    }

    #[test]
    fn group_by_user_sees_every_user_and_sessions_group_too() {
        // 40 users with 10 cheap requests each, and one with a single $5 request: the
        // big spender is not among the busiest users, and must still be seen.
        let mut events = Vec::new();
        for u in 0..40 {
            for s in 0..10 {
                events.push((format!("u{u}"), format!("s{u}"), u * 10 + s, 0.001));
            }
        }
        events.push(("whale".into(), "sw".into(), 500, 5.0));
        let r = rules(
            r#"[[alerts]]
            name = "user-spend"
            metric = "total_cost"
            threshold = 1
            window = "1h"
            group_by = "user"

            [[alerts]]
            name = "session-spend"
            metric = "total_cost"
            threshold = 1
            window = "1h"
            group_by = "session"
            "#,
        );
        let out = check(&r, |visit| {
            for (user, session, s, cost) in &events {
                let e = Event {
                    created_at: s * 1_000_000 + 1,
                    user_id: Some(Cow::Borrowed(user.as_str())),
                    session_id: Some(Cow::Borrowed(session.as_str())),
                    ..Default::default()
                };
                visit(&e, Sample::new(&e, Cost::Billed(*cost)));
            }
        });
        let mut got: Vec<(&str, Option<&str>, f64)> =
            out.firing.iter().map(|f| (f.rule.as_str(), f.group.as_deref(), f.value)).collect();
        got.sort_by(|a, b| a.0.cmp(b.0));
        assert_eq!(got, [("session-spend", Some("sw"), 5.0), ("user-spend", Some("whale"), 5.0)]);
    }

    #[test]
    fn what_a_cap_folded_is_no_group() {
        let rule =
            rules("[[alerts]]\nname = \"u\"\nmetric = \"total_cost\"\nthreshold = 2\ngroup_by = \"user\"\n").remove(0);
        let mut stats = Stats::new(Limits { users: 2, ..Limits::LIVE_SLAB });
        for u in ["a", "b", "c", "d", "e"] {
            let e = Event { created_at: 1, user_id: Some(Cow::Borrowed(u)), ..Default::default() };
            stats.record(&e, &Sample::new(&e, Cost::Billed(1.0)));
        }
        let span = Span { start: 0, end: 60_000_000, start_inclusive: false };
        let got = measure(&rule, &stats, span);
        assert_eq!(got.len(), 2, "the two users kept, not the three folded ($3 together): {got:?}");
        assert!(got.iter().all(|(_, n, v)| *n == 1 && *v == Some(1.0)));
    }

    #[test]
    fn history_keeps_the_newest_thousand_and_open_firings() {
        let r = rules(
            "[[alerts]]\nname = \"a\"\nmetric = \"error_rate\"\nthreshold = 1\n\n[[alerts]]\nname = \"b\"\nmetric = \"error_rate\"\nthreshold = 1\n",
        );
        let mut ev = Evaluator::default();
        // Rule b fires first and stays firing while rule a fires and resolves 1,200 times.
        ev.evaluate_values(1, &r[1], 0, vec![(String::new(), 5, Some(9.0))]);
        for k in 1..=2_400 {
            let v = if k % 2 == 1 { 9.0 } else { 0.0 };
            ev.evaluate_values(0, &r[0], k * MIN, vec![(String::new(), 5, Some(v))]);
        }
        assert_eq!(ev.history.len(), HISTORY_CAP);
        assert_eq!(ev.history.last().unwrap().start, format_rfc3339(2_399 * MIN), "the newest kept");
        let open: Vec<Firing> = ev.firing();
        assert_eq!(open.len(), 1);
        assert_eq!((open[0].rule.as_str(), open[0].start.as_str()), ("b", format_rfc3339(0).as_str()));
        ev.evaluate_values(1, &r[1], 2_401 * MIN, vec![(String::new(), 5, Some(0.0))]);
        let b = ev.history.iter().find(|h| h.rule == "b").unwrap();
        assert_eq!(b.end.as_deref(), Some(format_rfc3339(2_401 * MIN).as_str()), "the open one resolved in place");
    }
}
