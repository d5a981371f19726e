//! Alert rules evaluated on live traffic, for the console.
//!
//! Every distinct (filter, window) of the rules gets a [`Ring`]: about 30 time buckets
//! of [`Stats`] covering the window (rules sharing both share the ring). At each bucket
//! boundary the complete buckets are merged once, evaluated, and kept; between
//! boundaries an evaluation (at most once a second, from the console's tick) merges
//! only that with the bucket being filled. So a rule sees a rolling window, fires
//! within a second, and its `for`, baselines and history follow the data's clock
//! also when a file is replayed fast with event time as the clock.
//!
//! Baselines are not re-read: the values each rule had at past boundaries are kept
//! (as far back as its baseline reaches), and a ratio or z-score looks them up.

use std::collections::VecDeque;

use super::{Evaluator, Kind, Rule, State, Values, measure, no_data, ratio, zscore};
use crate::event::Event;
use crate::filter::Filter;
use crate::report::Span;
use crate::stats::{Keys, Limits, Parts, Sample, Stats};
use crate::time::{MICROS_PER_SEC, Micros};

/// One day, for `baseline = "yesterday"`.
const DAY: Micros = 86_400 * MICROS_PER_SEC;

/// Past values kept per rule, at most (the groups kept per boundary shrink to fit).
const PAST_VALUES: usize = 200_000;

/// Boundaries evaluated at most when the clock jumps.
const MAX_GAP: i64 = 10_000;

/// Boundaries shown in a rule's trend sparkline.
const TREND: usize = 30;

/// The time buckets of one (filter, window).
struct Ring {
    filter: Option<Filter>,
    window: Micros,
    step: Micros,
    /// Buckets in the window: bucket `k` holds times in ((k-1)·step, k·step]; oldest first.
    buckets: VecDeque<(i64, Stats)>,
    /// The last boundary evaluated (a multiple of `step`), and the merge of the
    /// buckets of the window ending there.
    done: Option<(Micros, Stats)>,
    limits: Limits,
    /// What its rules group by (the totals are always kept).
    parts: Parts,
}

impl Ring {
    /// Buckets in a window.
    fn len(&self) -> i64 {
        (self.window + self.step - 1) / self.step
    }

    fn record(&mut self, t: Micros, ev: &Event, x: &Sample, keys: &Keys) {
        let k = (t + self.step - 1).div_euclid(self.step);
        let oldest = self.done.as_ref().map_or(i64::MIN, |(b, _)| b / self.step - self.len() + 1);
        if k < oldest {
            return;
        }
        let at = match self.buckets.iter().rposition(|(bk, _)| *bk <= k) {
            Some(i) if self.buckets[i].0 == k => i,
            found => {
                let i = found.map_or(0, |i| i + 1);
                self.buckets.insert(i, (k, Stats::new(self.limits)));
                i
            }
        };
        self.buckets[at].1.record_parts(ev, x, keys, self.parts);
        // A late event in a bucket already merged counts there too.
        if let Some((b, done)) = &mut self.done
            && k <= *b / self.step
        {
            done.record_parts(ev, x, keys, self.parts);
        }
    }

    /// Merges the window ending at boundary `b` (all its buckets complete) and drops
    /// the buckets that no later window needs.
    fn close(&mut self, b: Micros) {
        let (last, first) = (b / self.step, b / self.step - self.len() + 1);
        while self.buckets.front().is_some_and(|(k, _)| *k < first) {
            self.buckets.pop_front();
        }
        let mut merged = Stats::new(self.limits);
        for (_, s) in self.buckets.iter().take_while(|(k, _)| *k <= last) {
            merged.merge_ranked(s);
        }
        self.done = Some((b, merged));
    }

    /// The window of the buckets closed at boundary `b`, extended to `end`: windows are
    /// rounded up to whole buckets.
    fn span(&self, b: Micros, end: Micros) -> Span {
        Span { start: b - self.len() * self.step, end, start_inclusive: false }
    }

    /// The rolling window ending at `now`: the last closed window plus the bucket being filled.
    fn rolling(&self, now: Micros) -> Option<(Span, Stats)> {
        let (b, done) = self.done.as_ref()?;
        let mut stats = done.clone();
        for (_, s) in self.buckets.iter().filter(|(k, _)| *k > b / self.step) {
            stats.merge_ranked(s);
        }
        Some((self.span(*b, now.max(*b)), stats))
    }
}

/// A rule's values at one past boundary.
struct Past {
    at: Micros,
    values: Values,
    /// False when only the busiest groups were kept (a missing group is unknown, not zero).
    complete: bool,
}

/// The live alert engine: rules, their rings and states.
pub struct Watcher {
    pub rules: Vec<Rule>,
    rings: Vec<Ring>,
    /// The ring of each rule.
    ring_of: Vec<usize>,
    past: Vec<VecDeque<Past>>,
    /// The values each rule compared last (for the Alerts view).
    latest: Vec<Values>,
    pub evaluator: Evaluator,
    now: Micros,
    /// The first event's time: baselines reaching before it are no data.
    first: Option<Micros>,
    /// When watching began (with the wall clock).
    started: Micros,
    /// Move the clock with the events (a replay) rather than with [`Watcher::tick`].
    event_time: bool,
}

impl Watcher {
    pub fn new(rules: Vec<Rule>, event_time: bool, now: Micros) -> Watcher {
        let mut rings: Vec<Ring> = Vec::new();
        let mut ring_of = Vec::new();
        for rule in &rules {
            let same = |r: &Ring| r.window == rule.window && r.filter == rule.filter;
            let i = match rings.iter().position(same) {
                Some(i) => i,
                None => {
                    rings.push(Ring {
                        filter: rule.filter.clone(),
                        window: rule.window,
                        step: step_for(rule.window),
                        buckets: VecDeque::new(),
                        done: None,
                        limits: Limits { distinct_exact: 0, ..Limits::LIVE_SLAB },
                        parts: Parts::default(),
                    });
                    rings.len() - 1
                }
            };
            ring_of.push(i);
        }
        let n = rules.len();
        let mut w = Watcher {
            rules,
            rings,
            ring_of,
            past: (0..n).map(|_| VecDeque::new()).collect(),
            latest: vec![Vec::new(); n],
            evaluator: Evaluator::default(),
            now,
            first: None,
            started: now,
            event_time,
        };
        w.fix_limits();
        if !event_time {
            w.start(now);
        }
        w
    }

    /// Each ring keeps only the groupings its rules use (users and sessions only where
    /// a rule groups by them, 1,000 to 10,000 a bucket).
    fn fix_limits(&mut self) {
        use super::GroupBy;
        for (ri, ring) in self.rings.iter_mut().enumerate() {
            let mine = || self.rules.iter().zip(&self.ring_of).filter(move |(_, i)| **i == ri).map(|(r, _)| r);
            let groups = |g: GroupBy| mine().any(|r| r.group_by.as_ref() == Some(&g));
            ring.parts = Parts {
                models: groups(GroupBy::Model),
                providers: groups(GroupBy::Provider),
                properties: mine().any(|r| matches!(r.group_by, Some(GroupBy::Property(_)))),
                users: groups(GroupBy::User),
                sessions: groups(GroupBy::Session),
                distinct_users: mine().any(|r| r.metric == "active_users"),
            };
            // About 250,000 users (or sessions) a window at most, spread over its buckets.
            let per_bucket = (250_000 / (ring.len() as usize + 1)).clamp(1_000, 10_000);
            ring.limits.users = if ring.parts.users { per_bucket } else { 0 };
            ring.limits.sessions = if ring.parts.sessions { per_bucket } else { 0 };
        }
    }

    /// Starts every ring's first window at `now`.
    fn start(&mut self, now: Micros) {
        for ring in &mut self.rings {
            ring.close(now.div_euclid(ring.step) * ring.step);
        }
    }

    /// Counts one event (its cost and group keys worked out by the caller).
    pub fn record(&mut self, ev: &Event, x: &Sample, keys: &Keys) {
        if self.event_time {
            if self.first.is_none() {
                self.start(ev.created_at);
            }
            if ev.created_at > self.now {
                self.advance(ev.created_at);
            }
        }
        let t = ev.created_at.min(self.now);
        self.first = Some(self.first.map_or(t, |f| f.min(t)));
        for ring in &mut self.rings {
            if ring.filter.as_ref().is_none_or(|f| f.matches(ev, x.cost.to_f64())) {
                ring.record(t, ev, x, keys);
            }
        }
    }

    /// Moves the wall clock to `now`, evaluating the boundaries passed (with event
    /// time as the clock the events move it, and this does nothing).
    pub fn set_now(&mut self, now: Micros) {
        if !self.event_time && now > self.now {
            self.advance(now);
        }
    }

    /// Moves the clock to `now` (see [`Watcher::set_now`]) and evaluates every rule on
    /// its rolling window.
    pub fn tick(&mut self, now: Micros) {
        self.set_now(now);
        if self.event_time && self.first.is_none() {
            return;
        }
        for ri in 0..self.rings.len() {
            let Some((span, stats)) = self.rings[ri].rolling(self.now) else { continue };
            for i in 0..self.rules.len() {
                if self.ring_of[i] == ri {
                    self.evaluate(i, span, &stats, false);
                }
            }
        }
    }

    /// Evaluates, in order, every boundary before `to`, then sets the clock to `to`.
    fn advance(&mut self, to: Micros) {
        for ri in 0..self.rings.len() {
            let step = self.rings[ri].step;
            let Some(mut b) = self.rings[ri].done.as_ref().map(|d| d.0) else { continue };
            // Every boundary is evaluated (an empty window is cheap, and the time of a
            // "traffic stopped" depends on it), up to a bound: after a gap of more than
            // MAX_GAP boundaries (hours of replayed time) only the last are.
            let skip_to = (to - 1).div_euclid(step) * step - MAX_GAP * step;
            b = b.max(skip_to);
            while b + step < to {
                b += step;
                self.rings[ri].close(b);
                let span = self.rings[ri].span(b, b);
                // Lent out while its rules are evaluated (no copy of a merged window).
                let (at, stats) = self.rings[ri].done.take().expect("just closed");
                for i in 0..self.rules.len() {
                    if self.ring_of[i] == ri {
                        self.evaluate(i, span, &stats, true);
                    }
                }
                self.rings[ri].done = Some((at, stats));
            }
        }
        self.now = to;
    }

    /// Evaluates rule `i` over `stats` (the events of `span`); at a boundary, keeps its values.
    fn evaluate(&mut self, i: usize, span: Span, stats: &Stats, boundary: bool) {
        let rule = &self.rules[i];
        let at = span.end;
        let now = measure(rule, stats, span);
        let step = self.rings[self.ring_of[i]].step;
        let first = self.first.unwrap_or(at);
        let past = &self.past[i];
        // The values at the boundary `back` before `at`, if its window lies in the data.
        let find = |back: Micros| {
            let target = (at - back).div_euclid(step) * step;
            past.iter().rev().find(|p| p.at == target).filter(|p| p.at - rule.window + step > first)
        };
        let compared = match rule.kind {
            Kind::Threshold => now.clone(),
            Kind::Ratio(b) => {
                let back = match b {
                    super::Baseline::Previous => rule.window,
                    super::Baseline::Yesterday => DAY,
                };
                match find(back) {
                    Some(p) => ratio(now.clone(), &p.values),
                    None => no_data(now.clone()),
                }
            }
            Kind::ZScore(n) => {
                let windows: Vec<(&Values, bool)> =
                    (1..=n as i64).filter_map(|j| find(j * rule.window)).map(|p| (&p.values, p.complete)).collect();
                zscore(now.clone(), &windows)
            }
        };
        // A "less than" rule on a window that began before anything was watched would
        // take the unseen part for silence: no data until the window is whole.
        let observed = if self.event_time { first } else { self.started.min(first) };
        // The screen shows what is measured all the same: traffic that flows is seen.
        self.latest[i] = compared.clone();
        let compared = if rule.op.is_below() && at - rule.window < observed { no_data(compared) } else { compared };
        self.evaluator.evaluate_values(i, rule, at, compared);
        if boundary {
            self.remember(i, at, now);
        }
    }

    /// Keeps rule `i`'s values at boundary `at`, as far back as its baseline and trend reach.
    fn remember(&mut self, i: usize, at: Micros, mut values: Values) {
        let rule = &self.rules[i];
        let step = self.rings[self.ring_of[i]].step;
        let reach = match rule.kind {
            Kind::Threshold => 0,
            Kind::Ratio(super::Baseline::Previous) => rule.window,
            Kind::Ratio(super::Baseline::Yesterday) => DAY,
            Kind::ZScore(n) => n as i64 * rule.window,
        }
        .max(TREND as i64 * step)
            + step;
        let entries = (reach / step + 1) as usize;
        let cap = (PAST_VALUES / entries).clamp(10, 10_000);
        let complete = values.len() <= cap;
        if !complete {
            values.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            values.truncate(cap);
        }
        let past = &mut self.past[i];
        past.push_back(Past { at, values, complete });
        while past.front().is_some_and(|p| p.at < at - reach) {
            past.pop_front();
        }
    }

    /// Every rule's state for the Alerts view: one row per rule, or per group that is
    /// not OK (a grouped rule with every group OK shows its worst value).
    pub fn status(&self) -> Vec<Status> {
        let mut rows = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let what = match rule.kind {
                Kind::Threshold => rule.metric.clone(),
                Kind::Ratio(super::Baseline::Previous) => format!("{} ÷ previous", rule.metric),
                Kind::Ratio(super::Baseline::Yesterday) => format!("{} ÷ yesterday", rule.metric),
                Kind::ZScore(n) => format!("{} z-score ({n})", rule.metric),
            };
            let trend = |group: &str| -> Vec<f64> {
                let past = &self.past[i];
                past.iter()
                    .skip(past.len().saturating_sub(TREND))
                    .map(|p| p.values.iter().find(|v| v.0 == group).and_then(|v| v.2).unwrap_or(0.0))
                    .collect()
            };
            let row = |group: &str, state: State, severity: &str, value: Option<f64>| Status {
                rule: rule.name.clone(),
                group: (!group.is_empty()).then(|| group.to_string()),
                state,
                severity: severity.to_string(),
                what: what.clone(),
                op: rule.op.symbol(),
                value,
                // The line that was crossed: the warning level when the value is past
                // it but not past the threshold (whatever the rule's severity is named).
                threshold: match (rule.warning, value) {
                    (Some(w), Some(v))
                        if state != State::Ok && !rule.op.holds(v, rule.threshold) && rule.op.holds(v, w) =>
                    {
                        w
                    }
                    _ => rule.threshold,
                },
                limit: rule.threshold,
                unit: match rule.kind {
                    Kind::Threshold => super::rule::unit(&rule.metric),
                    Kind::Ratio(_) => "×",
                    Kind::ZScore(_) => "σ",
                },
                trend: if rule.kind == Kind::Threshold { trend(group) } else { Vec::new() },
                drill: drill(rule, group),
            };
            let latest = |group: &str| self.latest[i].iter().find(|v| v.0 == group).and_then(|v| v.2);
            if rule.group_by.is_none() {
                let (state, severity) =
                    self.evaluator.state(i, "").map_or((State::Ok, rule.severity.as_str()), |s| (s.0, s.1));
                rows.push(row("", state, severity, latest("")));
                continue;
            }
            let bad: Vec<_> = self.evaluator.not_ok(i).collect();
            if bad.is_empty() {
                let worst = self.latest[i]
                    .iter()
                    .filter_map(|v| v.2.map(|x| (v.0.as_str(), x)))
                    .reduce(|a, b| if rule.op.holds(b.1, a.1) { b } else { a });
                let n = self.latest[i].len();
                let mut r = row("", State::Ok, &rule.severity, worst.map(|w| w.1));
                r.group = Some(worst.map_or_else(|| format!("{n} groups"), |w| format!("{} (worst of {n})", w.0)));
                r.trend = Vec::new();
                r.drill = drill(rule, "");
                rows.push(r);
            }
            for (group, state, severity, _) in bad.into_iter().take(50) {
                rows.push(row(group, state, severity, latest(group)));
            }
        }
        rows
    }
}

/// A rule (or one of its groups) as the banner and the Alerts view show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub rule: String,
    /// The group the rule watches (`provider=anthropic`), if it is grouped.
    pub group: Option<String>,
    pub state: State,
    /// `critical`, `warning`, …
    pub severity: String,
    /// What is compared: the metric, or its ratio to a baseline or z-score.
    pub what: String,
    /// The comparison (`>`, `<=`, …).
    pub op: &'static str,
    /// `None`: no data.
    pub value: Option<f64>,
    /// The line the value is compared with: the warning level while only that is crossed.
    pub threshold: f64,
    /// The rule's own threshold (the same as `threshold` unless a warning level was crossed).
    pub limit: f64,
    /// The metric's unit: `%`, `ms`, `$`, `/s`, `×`, `σ`, or empty for counts.
    pub unit: &'static str,
    /// Values at the last boundaries, oldest first, for a sparkline.
    pub trend: Vec<f64>,
    /// The filter showing the traffic it watches (its filter and group), for drill-down.
    pub drill: Option<String>,
}

/// The filter for the traffic a rule watches in `group` (`None` when it cannot be
/// written: a name with spaces, or the folded `(other)`).
fn drill(rule: &Rule, group: &str) -> Option<String> {
    use super::GroupBy;
    let mut terms: Vec<String> = rule.filter.iter().map(|f| f.to_string()).filter(|f| !f.is_empty()).collect();
    if !group.is_empty() {
        if group.contains(char::is_whitespace) || group == crate::stats::OTHER {
            return None;
        }
        terms.push(match &rule.group_by {
            Some(GroupBy::Model) => format!("model:{group}"),
            Some(GroupBy::Provider) => format!("provider:{group}"),
            Some(GroupBy::User) => format!("user:{group}"),
            Some(GroupBy::Session) => format!("session:{group}"),
            Some(GroupBy::Property(_)) => format!("prop.{group}"),
            None => return None,
        });
    }
    (!terms.is_empty()).then(|| terms.join(" ")).filter(|t| t.parse::<Filter>().is_ok())
}

/// About 30 buckets a window, on round steps (1 s up to 1 day).
fn step_for(window: Micros) -> Micros {
    const STEPS: [i64; 17] = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200];
    let want = window / 30;
    let s = STEPS.iter().rev().map(|s| s * MICROS_PER_SEC).find(|s| *s <= want).unwrap_or(MICROS_PER_SEC);
    if window >= 30 * DAY { DAY } else { s }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::alert::{Transition, parse_rules_str};
    use crate::pricing::Cost;

    const SEC: Micros = MICROS_PER_SEC;
    const T0: Micros = 1_800_000_000 * SEC;

    fn rules(text: &str) -> Vec<Rule> {
        let (r, e) = parse_rules_str(text).unwrap();
        assert!(e.is_empty(), "{e:?}");
        r
    }

    fn event(t: Micros, provider: &'static str, status: u16, latency: f64) -> Event<'static> {
        Event {
            created_at: t,
            provider: Some(Cow::Borrowed(provider)),
            model: Some(Cow::Borrowed("m")),
            status,
            latency_ms: Some(latency),
            ..Default::default()
        }
    }

    fn feed(w: &mut Watcher, events: &[Event<'static>]) -> Vec<(Transition, Micros)> {
        let mut keys = Keys::default();
        let mut out = Vec::new();
        for e in events {
            keys.hash(e);
            w.record(e, &Sample::new(e, Cost::Billed(0.001)), &keys);
            out.extend(w.evaluator.take_changes().into_iter().map(|c| (c.transition, c.at)));
        }
        out
    }

    /// One request a second; anthropic (every other one) fails from `bad.start` to `bad.end` seconds.
    fn traffic(seconds: i64, bad: std::ops::Range<i64>) -> Vec<Event<'static>> {
        (0..seconds)
            .map(|s| {
                let provider = if s % 2 == 0 { "openai" } else { "anthropic" };
                let status = if bad.contains(&s) && provider == "anthropic" { 500 } else { 200 };
                event(T0 + s * SEC + 1, provider, status, 100.0)
            })
            .collect()
    }

    #[test]
    fn replayed_events_fire_and_resolve_on_bucket_boundaries() {
        let r = rules(
            "[[alerts]]\nname = \"errors\"\nmetric = \"error_rate\"\nthreshold = 20\nwindow = \"1m\"\nfor = \"2m\"\n",
        );
        let events = traffic(1800, 600..1200);
        let mut w = Watcher::new(r, true, 0);
        let changes = feed(&mut w, &events);
        // Worked out independently: the error rate over (b - 60 s, b] at every 2 s boundary b.
        let rate = |b: Micros| {
            let inside: Vec<_> = events.iter().filter(|e| e.created_at > b - 60 * SEC && e.created_at <= b).collect();
            inside.iter().filter(|e| e.status >= 500).count() as f64 * 100.0 / inside.len().max(1) as f64
        };
        let boundaries: Vec<Micros> = (0..900).map(|j| T0 + j * 2 * SEC).collect();
        let holds_from = *boundaries.iter().find(|b| rate(**b) > 20.0).unwrap();
        let fired = *boundaries.iter().find(|b| **b >= holds_from + 120 * SEC).unwrap();
        let resolved = *boundaries.iter().find(|b| **b > fired && rate(**b) <= 20.0).unwrap();
        assert_eq!(changes, [(Transition::Fired, fired), (Transition::Resolved, resolved)]);
        let h = &w.evaluator.history[0];
        assert_eq!(h.peak, 50.0);
    }

    #[test]
    fn live_traffic_fires_within_a_tick_on_the_rolling_window() {
        let r = rules(
            "[[alerts]]\nname = \"slow\"\nmetric = \"latency_p95\"\nthreshold = 1000\nwindow = \"5m\"\ngroup_by = \"provider\"\n",
        );
        let mut w = Watcher::new(r, false, T0);
        let mut events: Vec<_> = (0..100).map(|i| event(T0 + i * 10_000, "openai", 200, 200.0)).collect();
        events.extend((0..100).map(|i| event(T0 + i * 10_000, "anthropic", 200, 3000.0)));
        assert!(feed(&mut w, &events).is_empty(), "nothing evaluated before the tick");
        w.tick(T0 + SEC + SEC / 2);
        let changes = w.evaluator.take_changes();
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!((changes[0].transition, changes[0].firing.group.as_deref()), (Transition::Fired, Some("anthropic")));
        let rows = w.status();
        assert_eq!(rows.len(), 1, "only the firing group: {rows:?}");
        assert_eq!(rows[0].state, State::Firing);
        assert!((rows[0].value.unwrap() - 3000.0).abs() <= 3000.0 * 0.008, "within HDR precision: {rows:?}");
        // Ten minutes of fast requests later the slow ones have left the window.
        let mut changes = Vec::new();
        for s in 0..600 {
            let e = event(T0 + 2 * SEC + s * SEC, "anthropic", 200, 100.0);
            w.tick(e.created_at);
            changes.extend(w.evaluator.take_changes());
            feed(&mut w, &[e]);
        }
        assert_eq!(changes.iter().map(|c| c.transition).collect::<Vec<_>>(), [Transition::Resolved]);
        let rows = w.status();
        assert_eq!(rows[0].state, State::Ok);
        assert_eq!(rows[0].group.as_deref(), Some("anthropic (worst of 1)"));
    }

    #[test]
    fn late_events_count_in_their_bucket() {
        let r = rules("[[alerts]]\nname = \"n\"\nmetric = \"request_count\"\nthreshold = 150\nwindow = \"1m\"\n");
        let mut w = Watcher::new(r, false, T0);
        w.tick(T0 + 10 * SEC);
        // 200 requests that happened a few seconds ago arrive now.
        let late: Vec<_> = (0..200).map(|i| event(T0 + 5 * SEC + i, "openai", 200, 1.0)).collect();
        feed(&mut w, &late);
        w.tick(T0 + 11 * SEC);
        assert_eq!(w.status()[0].value, Some(200.0));
        assert_eq!(w.status()[0].state, State::Firing);
    }

    #[test]
    fn change_rules_use_remembered_baselines() {
        let r = rules(
            r#"[[alerts]]
            name = "spike"
            metric = "request_count"
            threshold = 3
            window = "1m"
            baseline = "previous"

            [[alerts]]
            name = "unusual"
            metric = "request_count"
            threshold = 4
            window = "1m"
            zscore = 5
            "#,
        );
        // 1 request/s for 10 minutes, then 5/s.
        let mut events = traffic(600, 0..0);
        events.extend((0..600).map(|i| event(T0 + 600 * SEC + i * SEC / 5 + 1, "openai", 200, 1.0)));
        let mut w = Watcher::new(r.clone(), true, 0);
        let changes = feed(&mut w, &events[..600]);
        assert!(changes.is_empty(), "steady traffic: {changes:?}");
        let changes = feed(&mut w, &events[600..]);
        assert!(changes.iter().any(|c| c.0 == Transition::Fired), "{changes:?}");
        let rules_fired: std::collections::BTreeSet<&str> =
            w.evaluator.history.iter().map(|h| h.rule.as_str()).collect();
        assert_eq!(rules_fired.into_iter().collect::<Vec<_>>(), ["spike", "unusual"]);
        let spike = w.evaluator.history.iter().find(|h| h.rule == "spike").unwrap();
        assert!(spike.peak >= 4.9, "{spike:?}");
    }

    #[test]
    fn traffic_stopped_waits_for_a_whole_window_of_silence() {
        let r = rules(
            "[[alerts]]\nname = \"stopped\"\nmetric = \"request_count\"\nop = \"<\"\nthreshold = 1\nwindow = \"1m\"\nmin_requests = 0\n",
        );
        let mut w = Watcher::new(r.clone(), false, T0);
        // Just started: the minute before was not watched, so it is not silence.
        for s in 1..60 {
            w.tick(T0 + s * SEC);
        }
        assert!(w.evaluator.take_changes().is_empty());
        // What was measured is shown (traffic that flows is seen), without firing.
        assert_eq!(w.status()[0].value, Some(0.0));
        assert_ne!(w.status()[0].state, State::Firing);
        w.tick(T0 + 64 * SEC);
        let changes = w.evaluator.take_changes();
        assert_eq!(changes.iter().map(|c| c.transition).collect::<Vec<_>>(), [Transition::Fired]);

        // Replayed: traffic for 10 minutes and then none; fires once the gap is a window long.
        let mut w = Watcher::new(r, true, 0);
        let mut events = traffic(600, 0..0);
        events.push(event(T0 + 900 * SEC, "openai", 200, 1.0));
        let changes = feed(&mut w, &events);
        assert_eq!(changes.first().map(|c| c.0), Some(Transition::Fired), "{changes:?}");
        assert!(changes[0].1 >= T0 + 660 * SEC && changes[0].1 <= T0 + 664 * SEC, "{changes:?}");
    }

    #[test]
    fn a_late_big_spender_among_many_users_is_seen() {
        let r = rules(
            "[[alerts]]\nname = \"user-spend\"\nmetric = \"total_cost\"\nthreshold = 50\nwindow = \"1h\"\ngroup_by = \"user\"\n",
        );
        let mut w = Watcher::new(r, true, 0);
        let names: Vec<String> = (0..15_000).map(|i| format!("user-{i}")).collect();
        let mut keys = Keys::default();
        let mut spend = |w: &mut Watcher, t: Micros, user: &str, cost: f64| {
            let e = Event { created_at: t, user_id: Some(Cow::Borrowed(user)), ..Default::default() };
            keys.hash(&e);
            w.record(&e, &Sample::new(&e, Cost::Billed(cost)), &keys);
        };
        // 15,000 users in the first minute (more than the 10,000 a bucket keeps), then one
        // who spends $60 after them.
        for (i, u) in names.iter().enumerate() {
            spend(&mut w, T0 + i as i64 * 4_000, u, 0.001);
        }
        spend(&mut w, T0 + 61 * SEC, "whale", 60.0);
        spend(&mut w, T0 + 200 * SEC, "user-1", 0.001);
        w.tick(0);
        let firing = w.evaluator.firing();
        assert_eq!(firing.len(), 1, "{firing:?}");
        assert_eq!((firing[0].group.as_deref(), firing[0].value), (Some("whale"), 60.0));
    }

    #[test]
    fn steps_are_round_and_about_a_thirtieth_of_the_window() {
        assert_eq!(step_for(30 * SEC), SEC);
        assert_eq!(step_for(60 * SEC), 2 * SEC);
        assert_eq!(step_for(300 * SEC), 10 * SEC);
        assert_eq!(step_for(86_400 * SEC), 1_800 * SEC);
        assert_eq!(step_for(30 * DAY), DAY);
    }
}
