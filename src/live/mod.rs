//! Live ingest: turns what sources send into events for the engine, and keeps the
//! status of every source for the status bar. The console owns one [`Live`].

pub mod parsing;

pub use parsing::SAMPLES;

use crate::alert::watch::Watcher;
use crate::alert::{Change, Rule};
use crate::engine::{Clock, Config, Engine};
use crate::event::Event;
use crate::filter::Filter;
use crate::pricing::PriceTable;
use crate::source::{Feed, SourceState, Update};
use crate::stats::{Keys, Sample};
use crate::time::Micros;
use parsing::{Batch, Parsing};

/// One source as the status bar shows it.
#[derive(Debug, Clone)]
pub struct SourceStatus {
    pub name: String,
    pub state: SourceState,
    pub events: u64,
    /// Lines or records that were not events (bad JSON, wrong types, over 1 MiB).
    pub bad: u64,
    /// Fields that could not be read: dropped, their records kept.
    pub fields_dropped: u64,
    /// Records that are not LLM calls (spans of other operations, outer nested spans).
    pub skipped: u64,
    /// Events a relay could no longer replay.
    pub missed: u64,
    pub duplicates: u64,
    /// Times a relay came back as a new stream (events may be missing).
    pub restarts: u64,
    /// The latest problem, for the status bar.
    pub last_error: Option<String>,
    /// When the state last changed (a reconnect counts down from it).
    pub state_since: std::time::Instant,
    /// The first bad lines, each with why it was not read, for the sources panel.
    pub samples: Vec<String>,
}

/// The engine fed by sources, with an optional filtered view of the same traffic.
pub struct Live {
    pub engine: Engine,
    /// The engine of the current filter (drill-down), when one is set.
    pub filtered: Option<(Filter, Engine, FilteredSince)>,
    pub sources: Vec<SourceStatus>,
    /// Parses lines that come unparsed (when no parse stage runs before this).
    parsing: Parsing,
    prices: PriceTable,
    config: Config,
    /// Events ingested, for the ingest rate.
    pub total: u64,
    /// The alert rules, evaluated on the same traffic (unfiltered).
    pub alerts: Option<Watcher>,
    /// Every source has ended (read to its end, or failed for good).
    pub sources_ended: bool,
    /// Bytes read by sources and not yet ingested.
    pub backlog_bytes: u64,
    /// Reading a ClickHouse table: its latest answer, which the screen shows
    /// instead of the engine's numbers.
    pub store: Option<std::sync::Arc<crate::clickhouse::View>>,
}

/// Records an event (priced and its keys hashed by the parse stage) everywhere it
/// counts: the engine, the filtered view's engine and the alert rules.
fn ingest(
    engine: &mut Engine,
    filtered: &mut Option<(Filter, Engine, FilteredSince)>,
    alerts: &mut Option<Watcher>,
    (ev, x, keys): (&Event, &Sample, &Keys),
) {
    engine.ingest_sampled(ev, x, keys);
    if let Some((f, fe, _)) = filtered.as_mut()
        && f.matches(ev, x.cost.to_f64())
    {
        fe.ingest_sampled(ev, x, keys);
    }
    if let Some(w) = alerts.as_mut() {
        w.record(ev, x, keys);
    }
}

/// Where a filtered view's history begins.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FilteredSince {
    /// When the filter was set.
    pub at: Micros,
    /// Since when it holds every matching request: the recent requests replayed
    /// into it hold all requests from this time on.
    pub from: Micros,
    /// Recent requests replayed into it.
    pub backfilled: usize,
}

impl Live {
    pub fn new(names: Vec<String>, config: Config, prices: PriceTable, now: Micros) -> Live {
        let parsing = Parsing::new(names.len(), crate::time::Zone::Utc, prices.clone());
        let sources = names
            .into_iter()
            .map(|name| SourceStatus {
                name,
                state: SourceState::Starting,
                events: 0,
                bad: 0,
                fields_dropped: 0,
                skipped: 0,
                missed: 0,
                duplicates: 0,
                restarts: 0,
                last_error: None,
                state_since: std::time::Instant::now(),
                samples: Vec::new(),
            })
            .collect();
        Live {
            engine: Engine::new(config.clone(), prices.clone(), now),
            filtered: None,
            sources,
            parsing,
            prices,
            config,
            total: 0,
            alerts: None,
            sources_ended: false,
            backlog_bytes: 0,
            store: None,
        }
    }

    /// Evaluates `rules` on the traffic from now on.
    pub fn watch(&mut self, rules: Vec<Rule>) {
        let now = self.engine.now();
        self.alerts = (!rules.is_empty()).then(|| Watcher::new(rules, self.config.clock == Clock::EventTime, now));
    }

    /// Timestamps without an offset are in `zone` (`--tz`).
    pub fn set_zone(&mut self, zone: crate::time::Zone) {
        self.parsing = Parsing::new(self.sources.len(), zone, self.prices.clone());
    }

    /// Moves every engine's clock, and ingests the spans whose traces went quiet.
    pub fn tick(&mut self, now: Micros) {
        self.release_held(false);
        self.engine.tick(now);
        if let Some((_, e, _)) = &mut self.filtered {
            e.tick(now);
        }
        if let Some(w) = &mut self.alerts {
            w.set_now(now);
        }
    }

    /// Evaluates the alert rules on their rolling windows (with event time as the
    /// clock, at the latest event's time), and returns what changed.
    pub fn evaluate_alerts(&mut self) -> Vec<Change> {
        let now = self.engine.now();
        match &mut self.alerts {
            Some(w) => {
                w.tick(now);
                w.evaluator.take_changes()
            }
            None => Vec::new(),
        }
    }

    /// Ingests the spans held for their traces: those quiet long enough, or all of them
    /// when the sources have ended.
    fn release_held(&mut self, all: bool) {
        for b in self.parsing.release(all) {
            self.ingest_batch(b);
        }
    }

    /// Applies one update from a source.
    pub fn feed(&mut self, feed: Feed) {
        match feed.update {
            Update::Lines(lines) => {
                let b = self.parsing.lines(feed.source, &lines);
                self.ingest_batch(b);
            }
            Update::Parsed(b) => self.ingest_batch(*b),
            Update::State(s) => {
                let status = &mut self.sources[feed.source];
                if let SourceState::Failed(e) | SourceState::Retrying(e) | SourceState::Reconnecting { error: e, .. } =
                    &s
                {
                    status.last_error = Some(e.clone());
                }
                if s != status.state {
                    status.state_since = std::time::Instant::now();
                }
                status.state = s;
            }
            other => {
                let status = &mut self.sources[feed.source];
                match &other {
                    Update::TooLong(n) => status.bad += n,
                    Update::Gap { missed, .. } => status.missed += missed,
                    Update::Duplicates(n) => status.duplicates += n,
                    Update::Restarted { .. } => status.restarts += 1,
                    Update::BadRecords { count, .. } => status.bad += count,
                    _ => {}
                }
                if let Some(text) = other.describe() {
                    if matches!(other, Update::TooLong(_) | Update::BadRecords { .. }) && status.samples.len() < SAMPLES
                    {
                        status.samples.push(text.clone());
                    }
                    status.last_error = Some(text);
                }
            }
        }
    }

    /// Ingests a batch of parsed events and counts it in its source's status.
    fn ingest_batch(&mut self, b: Batch) {
        let Live { engine, filtered, sources, total, alerts, .. } = self;
        let status = &mut sources[b.source];
        b.for_each(|ev, x, keys| ingest(engine, filtered, alerts, (ev, x, keys)));
        *total += b.len() as u64;
        status.events += b.len() as u64;
        status.skipped += b.skipped;
        status.fields_dropped += b.fields_dropped;
        status.bad += b.bad;
        for s in b.samples {
            if status.samples.len() < SAMPLES {
                status.samples.push(s);
            }
        }
        if b.last_error.is_some() {
            status.last_error = b.last_error;
        }
    }

    /// Every source has ended: what they hold is ingested.
    pub fn end_sources(&mut self) {
        self.sources_ended = true;
        self.release_held(true);
    }

    /// Takes a ClickHouse answer: its view for the screen, its timing or error for
    /// the status bar (the table is source 0).
    pub fn store_answer(&mut self, answer: crate::clickhouse::Answer) {
        let Some(src) = self.sources.first_mut() else { return };
        let state = match answer {
            crate::clickhouse::Answer::View(v) => {
                src.events = v.window.rows;
                let state = SourceState::Answered { ms: v.window.took.as_millis() as u64 };
                self.store = Some(v);
                state
            }
            crate::clickhouse::Answer::Failed { error } => {
                src.last_error = Some(error.clone());
                SourceState::Retrying(error)
            }
        };
        if std::mem::discriminant(&src.state) != std::mem::discriminant(&state) {
            src.state_since = std::time::Instant::now();
        }
        src.state = state;
    }

    /// Narrows the view to `filter` (or back to everything with `None`). The filtered
    /// engine starts from the recent requests that match, then follows live traffic.
    pub fn set_filter(&mut self, filter: Option<Filter>) {
        self.filtered = filter.filter(|f| !f.is_empty()).map(|f| {
            let now = self.engine.now();
            let mut fe =
                Engine::new(Config { clock: self.config.clock, ..self.config.clone() }, self.prices.clone(), now);
            let from = self.engine.recent_since();
            fe.set_since(from);
            let mut n = 0;
            for r in self.engine.recent() {
                let ev = r.as_event();
                if f.matches(&ev, r.cost) {
                    fe.ingest(&ev);
                    n += 1;
                }
            }
            (f, fe, FilteredSince { at: now, from, backfilled: n })
        });
    }

    /// The engine the screen shows: the filtered one when a filter is set.
    pub fn view(&self) -> &Engine {
        self.filtered.as_ref().map_or(&self.engine, |(_, e, _)| e)
    }

    pub fn clock(&self) -> Clock {
        self.config.clock
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::MICROS_PER_SEC;

    fn live() -> Live {
        let config = Config { windows: vec![3_600 * MICROS_PER_SEC], clock: Clock::EventTime, ..Config::default() };
        Live::new(vec!["test".into()], config, PriceTable::default(), 0)
    }

    fn lines(events: &[(&str, u16)]) -> Feed {
        let text: String = events
            .iter()
            .enumerate()
            .map(|(i, (m, s))| {
                format!(r#"{{"created_at":{},"model":"{m}","status":{s},"cost_usd":0.5}}"#, 1_000 + i) + "\n"
            })
            .collect();
        Feed { source: 0, update: Update::Lines(text.into_bytes()) }
    }

    /// One OTLP export line holding one span (`parent` optional).
    fn span(trace: &str, id: &str, parent: Option<&str>, system: &str, tokens: u64) -> Feed {
        let parent = parent.map_or(String::new(), |p| format!(r#""parentSpanId":"{p}","#));
        let line = format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"{trace}","spanId":"{id}",{parent}"startTimeUnixNano":"1000000000","endTimeUnixNano":"2000000000","attributes":[{{"key":"gen_ai.operation.name","value":{{"stringValue":"chat"}}}},{{"key":"gen_ai.system","value":{{"stringValue":"{system}"}}}},{{"key":"gen_ai.request.model","value":{{"stringValue":"gpt-4o"}}}},{{"key":"gen_ai.usage.input_tokens","value":{{"intValue":"{tokens}"}}}}]}}]}}]}}]}}"#
        );
        Feed { source: 0, update: Update::Lines(format!("{line}\n").into_bytes()) }
    }

    #[test]
    fn nested_spans_arriving_in_different_batches_count_once() {
        let mut l = live();
        // The provider's span first (it ends first), its framework span a batch later.
        l.feed(span("t1", "inner", Some("outer"), "openai", 100));
        assert_eq!(l.total, 0, "held until the trace is known");
        l.feed(span("t1", "outer", None, "langchain", 999));
        l.end_sources();
        assert_eq!((l.total, l.sources[0].events, l.sources[0].skipped), (1, 1, 1));
        let (stats, ..) = l.engine.window_stats(3_600 * MICROS_PER_SEC);
        assert_eq!((stats.total.requests, stats.total.prompt_tokens), (1, 100), "the inner call's tokens only");
    }

    #[test]
    fn feeds_events_and_counts_bad_lines() {
        let mut l = live();
        l.feed(lines(&[("a", 200), ("b", 500)]));
        l.feed(Feed { source: 0, update: Update::Lines(b"{broken\n".to_vec()) });
        assert_eq!((l.sources[0].events, l.sources[0].bad, l.total), (2, 1, 2));
        let (stats, ..) = l.engine.window_stats(3_600 * MICROS_PER_SEC);
        assert_eq!(stats.total.requests, 2);
    }

    #[test]
    fn a_filter_backfills_from_recent_requests_then_follows() {
        let mut l = live();
        l.feed(lines(&[("a", 200), ("b", 500), ("a", 429)]));
        l.set_filter(Some("model:a".parse().unwrap()));
        assert_eq!(l.filtered.as_ref().unwrap().2.backfilled, 2);
        l.feed(lines(&[("a", 200), ("b", 200)]));
        let (stats, ..) = l.view().window_stats(3_600 * MICROS_PER_SEC);
        assert_eq!(stats.total.requests, 3);
        assert_eq!(stats.total.cost.to_f64(), 1.5);
        l.set_filter(None);
        assert_eq!(l.view().window_stats(3_600 * MICROS_PER_SEC).0.total.requests, 5);
    }
}
