//! The parse stage of live sources: lines in, events out, on a thread of its own.
//!
//! Parsing a gateway's 1 KB line costs about as much as aggregating its event, so the
//! console parses on one thread and aggregates on another: sources send lines, this
//! stage sends [`Batch`]es of owned events (and what the status bar counts) on to
//! [`Live`], in the order their lines came. What can be worked out from an event alone
//! is worked out here too: its price and the hashes of its group keys.
//!
//! [`Live`]: super::Live

use std::sync::Arc;
use std::time::Duration;

use crate::event::{Event, EventBuf};
use crate::metrics::Metrics;
use crate::parse::LineParser;
use crate::pricing::{PriceCache, PriceTable, cost_of};
use crate::source::{Feed, FeedReceiver, FeedSender, Update};
use crate::stats::{Keys, Sample};
use crate::time::Zone;

/// Bad lines a source keeps as examples.
pub const SAMPLES: usize = 10;

/// How often spans held for their traces are looked at (those quiet long enough go on).
const RELEASE_EVERY: Duration = Duration::from_secs(1);

/// What a source's lines (or its held spans) gave.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    pub source: usize,
    /// Bytes of lines it was parsed from: the queue counts them until it is ingested.
    pub bytes: usize,
    events: EventBuf,
    /// Each event's price and measures, in the order of `events`.
    measures: Vec<Sample>,
    /// Each event's group keys, hashed (see [`Keys`]): model, provider, user, session.
    keys: Vec<(u64, u64, Option<u64>, Option<u64>)>,
    /// The (key, value) hashes of every event's properties, one after the other.
    property_keys: Vec<(u64, u64)>,
    /// Records read that are not LLM calls.
    pub skipped: u64,
    /// Fields that could not be read: dropped, their records kept.
    pub fields_dropped: u64,
    /// Lines that were not events.
    pub bad: u64,
    /// The first bad lines of the source, each with why (at most [`SAMPLES`] a source).
    pub samples: Vec<String>,
    /// The batch's latest problem.
    pub last_error: Option<String>,
}

impl Batch {
    fn push(
        &mut self,
        ev: &Event,
        prices: &PriceTable,
        cache: &mut PriceCache,
        keys: &mut Keys,
        metrics: Option<&Metrics>,
    ) {
        keys.hash(ev);
        let price = cache.get_keyed(prices, ev, keys);
        let cost = cost_of(ev, price.as_ref());
        if let Some(m) = metrics {
            m.record(ev, cost);
        }
        self.measures.push(Sample::new(ev, cost));
        self.keys.push((keys.model, keys.provider, keys.user, keys.session));
        self.property_keys.extend_from_slice(&keys.properties);
        self.events.push(ev);
    }

    /// Events in the batch.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Calls `f` with every event, its sample and its keys, in order.
    pub fn for_each(&self, mut f: impl FnMut(&Event, &Sample, &Keys)) {
        let mut keys = Keys::default();
        let (mut i, mut p) = (0, 0);
        self.events.for_each(|ev| {
            (keys.model, keys.provider, keys.user, keys.session) = self.keys[i];
            keys.properties.clear();
            keys.properties.extend_from_slice(&self.property_keys[p..p + ev.properties.len()]);
            f(ev, &self.measures[i], &keys);
            i += 1;
            p += ev.properties.len();
        });
    }
}

/// A bad line as the sources panel lists it: the reason, then the line's start.
fn sample(why: &str, line: &[u8]) -> String {
    let text = String::from_utf8_lossy(&line[..line.len().min(120)]);
    format!("{why} · {}", crate::text::sanitize(&text))
}

/// One parser a source (each keeps its own format and held spans), and the prices.
pub struct Parsing {
    parsers: Vec<LineParser>,
    /// Bad lines sampled so far, a source.
    sampled: Vec<usize>,
    prices: PriceTable,
    cache: PriceCache,
    keys: Keys,
    metrics: Option<Arc<Metrics>>,
}

impl Parsing {
    pub fn new(sources: usize, zone: Zone, prices: PriceTable) -> Parsing {
        Parsing {
            parsers: (0..sources).map(|_| LineParser::new(None).with_zone(zone)).collect(),
            sampled: vec![0; sources],
            prices,
            cache: PriceCache::default(),
            keys: Keys::default(),
            metrics: None,
        }
    }

    /// Counts every event parsed in `metrics` too (`--metrics`).
    pub fn with_metrics(mut self, metrics: Option<Arc<Metrics>>) -> Parsing {
        self.metrics = metrics;
        self
    }

    /// Parses whole lines of source number `source`.
    pub fn lines(&mut self, source: usize, lines: &[u8]) -> Batch {
        let mut b = Batch { source, bytes: lines.len(), ..Batch::default() };
        let Parsing { parsers, prices, cache, keys, metrics, .. } = self;
        let parser = &mut parsers[source];
        for line in crate::parse::lines(lines) {
            let batch = &mut b;
            match parser.parse(line, &mut |ev| batch.push(ev, prices, cache, keys, metrics.as_deref())) {
                Ok(p) => {
                    b.skipped += u64::from(p.skipped_total());
                    if p.field_errors > 0 {
                        b.fields_dropped += u64::from(p.field_errors);
                        b.last_error = parser.field_error().map(|e| format!("dropped a field: {e}"));
                    }
                }
                Err(e) => {
                    b.bad += 1;
                    let why = e.to_string();
                    if self.sampled[source] < SAMPLES {
                        self.sampled[source] += 1;
                        b.samples.push(sample(&why, line));
                    }
                    b.last_error = Some(why);
                }
            }
        }
        b
    }

    /// The spans held for their traces: those quiet long enough, or all of them when
    /// the sources have ended. One batch a source that had some.
    pub fn release(&mut self, all: bool) -> Vec<Batch> {
        let mut out = Vec::new();
        let Parsing { parsers, prices, cache, keys, metrics, .. } = self;
        for (source, parser) in parsers.iter_mut().enumerate() {
            let mut b = Batch { source, ..Batch::default() };
            let batch = &mut b;
            let mut push = |ev: &Event| batch.push(ev, prices, cache, keys, metrics.as_deref());
            let p = if all { parser.finish(&mut push) } else { parser.release_quiet(&mut push) };
            b.skipped = u64::from(p.skipped_total());
            if !b.is_empty() || b.skipped > 0 {
                out.push(b);
            }
        }
        out
    }
}

/// Parses what `rx` brings on a thread of its own and sends it on to `tx`: lines as
/// [`Update::Parsed`], everything else as it came. Ends when the sources have ended
/// (after the spans they held) or when the consumer is gone.
pub fn spawn(mut rx: FeedReceiver, tx: FeedSender, mut parsing: Parsing) {
    let run = async move {
        let mut release = tokio::time::interval(RELEASE_EVERY);
        loop {
            let feed = tokio::select! {
                feed = rx.recv() => feed,
                _ = release.tick() => {
                    for b in parsing.release(false) {
                        if !tx.send(Feed { source: b.source, update: Update::Parsed(Box::new(b)) }).await {
                            return;
                        }
                    }
                    continue;
                }
            };
            let Some(Feed { source, update }) = feed else { break };
            let update = match update {
                Update::Lines(lines) => Update::Parsed(Box::new(parsing.lines(source, &lines))),
                other => other,
            };
            if !tx.send(Feed { source, update }).await {
                return;
            }
        }
        for b in parsing.release(true) {
            if !tx.send(Feed { source: b.source, update: Update::Parsed(Box::new(b)) }).await {
                return;
            }
        }
    };
    // A runtime of its own (for its timer): the console's runtime shuts down when the
    // user quits, and a timer of a runtime that is shutting down panics.
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a runtime for the parse thread");
    std::thread::Builder::new().name("parse".into()).spawn(move || rt.block_on(run)).expect("spawn the parse thread");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Clock, Config};
    use crate::live::Live;
    use crate::source::{SourceState, channel};
    use crate::time::MICROS_PER_SEC;

    /// Two sources: tokentop lines with a bad one and a field that cannot be read, and
    /// an OTLP span held for its trace until the input ends.
    fn feeds() -> Vec<Feed> {
        let good = |i: u32, model: &str| {
            format!(
                r#"{{"created_at":{},"model":"{model}","provider":"openai","status":200,"prompt_tokens":{i},"latency_ms":{}}}"#,
                1_000 + i,
                100 + i
            )
        };
        let mut lines = String::new();
        for i in 0..50 {
            lines += &good(i, if i % 3 == 0 { "gpt-4o" } else { "gpt-4o-mini" });
            lines += "\n";
        }
        lines += "{broken\n";
        lines += r#"{"request_created_at":"1970-01-01T00:00:01Z","request_model":"gpt-4o","delay_ms":"slow","response_status":200}"#;
        lines += "\n";
        let span = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"t1","spanId":"s1","parentSpanId":"p","startTimeUnixNano":"1000000000","endTimeUnixNano":"2000000000","attributes":[{"key":"gen_ai.operation.name","value":{"stringValue":"chat"}},{"key":"gen_ai.system","value":{"stringValue":"openai"}},{"key":"gen_ai.request.model","value":{"stringValue":"gpt-4o"}},{"key":"gen_ai.usage.input_tokens","value":{"intValue":"7"}}]}]}]}]}"#;
        vec![
            Feed { source: 0, update: Update::State(SourceState::Following) },
            Feed { source: 0, update: Update::Lines(lines.into_bytes()) },
            Feed { source: 1, update: Update::Lines(format!("{span}\n").into_bytes()) },
            Feed { source: 0, update: Update::TooLong(2) },
            Feed { source: 0, update: Update::Lines(format!("{}\n", good(99, "o3")).into_bytes()) },
        ]
    }

    fn live() -> Live {
        let config = Config { windows: vec![3_600 * MICROS_PER_SEC], clock: Clock::EventTime, ..Config::default() };
        Live::new(vec!["a".into(), "b".into()], config, PriceTable::builtin(), 0)
    }

    /// What a person would compare: per source counts and problems, and the numbers.
    fn seen(l: &Live) -> String {
        let (stats, ..) = l.engine.window_stats(3_600 * MICROS_PER_SEC);
        let sources: Vec<_> = l
            .sources
            .iter()
            .map(|s| (s.state.to_string(), s.events, s.bad, s.fields_dropped, s.samples.clone(), s.last_error.clone()))
            .collect();
        format!(
            "{sources:?} total {} requests {} cost {:.9} prompt {} p50 {:?}",
            l.total,
            stats.total.requests,
            stats.total.cost.to_f64(),
            stats.total.prompt_tokens,
            stats.total.latency.percentile(50.0)
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_stage_hands_on_what_parsing_in_place_gives_in_order() {
        let (tx, rx) = channel(4, 1 << 20);
        let (parsed_tx, mut parsed) = channel(4, 1 << 20);
        spawn(rx, parsed_tx, Parsing::new(2, Zone::Utc, PriceTable::builtin()));
        let sender = tokio::spawn(async move {
            for f in feeds() {
                assert!(tx.send(f).await);
            }
        });
        let mut staged = live();
        let mut kinds = Vec::new();
        while let Some(f) = parsed.recv().await {
            kinds.push(match &f.update {
                Update::Parsed(b) => format!("{}:{}", f.source, b.len()),
                Update::Lines(_) => "lines".into(),
                _ => format!("{}:other", f.source),
            });
            staged.feed(f);
        }
        sender.await.unwrap();
        staged.end_sources();
        // Lines arrive parsed, in order, the other updates between them; the held span
        // comes when the sources end.
        assert_eq!(kinds, ["0:other", "0:51", "1:0", "0:other", "0:1", "1:1"]);

        let mut in_place = live();
        for f in feeds() {
            in_place.feed(f);
        }
        in_place.end_sources();
        assert_eq!(seen(&staged), seen(&in_place));
        let s = &staged.sources[0];
        assert_eq!((s.events, s.bad, s.fields_dropped, staged.total), (52, 3, 1, 53));
        assert_eq!(s.samples.len(), 2, "{:?}", s.samples);
        assert!(s.samples[0].contains("{broken"), "{:?}", s.samples);
    }
}

#[cfg(test)]
mod metrics_tests {
    use super::*;

    #[test]
    fn with_metrics_every_event_parsed_is_counted_priced() {
        let m = Metrics::new(&[]).unwrap();
        let mut p = Parsing::new(1, Zone::Utc, PriceTable::builtin()).with_metrics(Some(m.clone()));
        let lines = concat!(
            r#"{"created_at":1000,"provider":"openai","model":"gpt-4o","prompt_tokens":1000000,"completion_tokens":0}"#,
            "\nnot json\n",
            r#"{"created_at":2000,"provider":"openai","model":"gpt-4o","status":503,"cost_usd":0.5}"#,
            "\n"
        );
        let b = p.lines(0, lines.as_bytes());
        assert_eq!((b.len(), b.bad), (2, 1));
        let text = m.render();
        // A million prompt tokens of gpt-4o at the built-in price, plus the billed 0.5.
        let price = PriceTable::builtin().lookup("openai", "gpt-4o").unwrap().input * 1e6;
        let cost = format!(r#"tokentop_cost_usd_total{{provider="openai",model="gpt-4o"}} {:?}"#, price + 0.5);
        for want in [
            "tokentop_events_total 2",
            r#"tokentop_requests_total{provider="openai",model="gpt-4o",status_class="5xx"} 1"#,
            cost.as_str(),
        ] {
            assert!(text.lines().any(|l| l == want), "missing {want}\n{text}");
        }
    }
}
