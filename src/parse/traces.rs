//! One call, one request: LLM spans held per trace until their nesting is known.
//!
//! Frameworks wrap the provider's call in a span of their own that looks like an LLM
//! call too (OpenLIT's LangChain `chat` span around the OpenAI `chat` span, OpenLLMetry's
//! `ChatOpenAI.chat` around `openai.chat`). Counting both doubles the requests and adds
//! the framework's estimated tokens to the real ones, so only the innermost LLM span of
//! a nesting counts; the outer ones are skipped as [`SkipReason::Nested`].
//!
//! The spans of one trace arrive in any order, on different lines and, from a live
//! source, seconds apart (an SDK exports in batches, every 5 s by default). So LLM spans
//! that belong to a trace are held, with the parent links of the trace's other spans,
//! until the trace has been quiet for [`HOLD`] (live sources) or the input ends (files);
//! at most [`MAX_HELD`] spans are held, the traces quiet the longest released first.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::ops::Range;
use std::time::{Duration, Instant};

use hashbrown::{HashMap, HashSet};

use super::{Parsed, SkipReason};
use crate::event::{Event, recycle_properties};

/// How long a live trace's LLM spans wait for the rest of the trace.
pub const HOLD: Duration = Duration::from_secs(6);
/// LLM spans held at most, over all traces.
pub const MAX_HELD: usize = 20_000;
/// Parent links remembered per trace (spans beyond are not followed).
const MAX_LINKS: usize = 4_096;
/// Parents followed up from a span.
const MAX_DEPTH: usize = 64;

/// Trace and span ids are kept as 64-bit hashes: no copies of the strings, and two ids
/// that collide are as rare as a duplicate span id.
fn id(s: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(s.as_bytes())
}

struct Trace {
    /// The held calls, in arrival order.
    spans: Vec<Held>,
    /// Their strings and properties, one arena a trace: holding a span allocates nothing
    /// of its own.
    text: String,
    properties: Vec<(Range<u32>, Range<u32>)>,
    /// span id → parent span id, for every span of the trace seen while it was held.
    parents: HashMap<u64, u64>,
    touched: Instant,
    /// Bumped at every touch, so stale entries in the release queue are recognised.
    generation: u64,
}

/// Which held traces to release.
#[derive(Debug, Clone, Copy)]
pub enum Release {
    /// Every trace: the input ended.
    All,
    /// Traces not touched since this instant.
    QuietSince(Instant),
    /// Only the oldest traces beyond [`MAX_HELD`].
    OverBound,
}

/// The LLM spans waiting for their traces.
#[derive(Default)]
pub struct Traces {
    traces: HashMap<u64, Trace>,
    /// (trace, generation) in the order traces were last touched.
    queue: VecDeque<(u64, u64)>,
    held: usize,
    generation: u64,
    arrivals: u64,
    /// A property buffer recycled between the events released.
    spare: Vec<(Cow<'static, str>, Cow<'static, str>)>,
}

impl Traces {
    /// Holds an LLM span (already normalised) of `trace`, read at `now`.
    pub fn hold(&mut self, trace: &str, span: &str, parent: Option<&str>, ev: &Event, now: Instant) {
        let (trace, span) = (id(trace), id(span));
        self.arrivals += 1;
        let arrival = self.arrivals;
        let t = self.touch(trace, now);
        if let Some(p) = parent
            && t.parents.len() < MAX_LINKS
        {
            t.parents.insert(span, id(p));
        }
        let held = Held::new(span, arrival, ev, &mut t.text, &mut t.properties);
        t.spans.push(held);
        self.held += 1;
    }

    /// Remembers where a span that is not an LLM call sits, if its trace is held.
    pub fn link(&mut self, trace: &str, span: &str, parent: &str) {
        if let Some(t) = self.traces.get_mut(&id(trace))
            && t.parents.len() < MAX_LINKS
        {
            t.parents.insert(id(span), id(parent));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.held == 0
    }

    fn touch(&mut self, trace: u64, now: Instant) -> &mut Trace {
        // Spans of one trace mostly come together: the newest entry of the queue is then
        // this trace's already, and stays its newest.
        let generation = match self.queue.back() {
            Some(&(t, g)) if t == trace && self.traces.contains_key(&trace) => g,
            _ => {
                self.generation += 1;
                self.queue.push_back((trace, self.generation));
                self.generation
            }
        };
        let t = self.traces.entry(trace).or_insert_with(|| Trace {
            spans: Vec::new(),
            text: String::new(),
            properties: Vec::new(),
            parents: HashMap::new(),
            touched: now,
            generation,
        });
        t.touched = now;
        t.generation = generation;
        t
    }

    /// Releases the traces that `which` says, and the oldest beyond [`MAX_HELD`]. At
    /// the end of an input the calls come out in the order they were read.
    pub fn release(&mut self, which: Release, emit: &mut dyn FnMut(&Event), out: &mut Parsed) {
        if let Release::All = which {
            let traces: Vec<Trace> = self.traces.drain().map(|(_, t)| t).collect();
            // (arrival, trace, span) of every call that counts, in the order read.
            let mut kept = Vec::with_capacity(self.held);
            for (i, t) in traces.iter().enumerate() {
                let outer = outer_spans(t);
                for (j, h) in t.spans.iter().enumerate() {
                    if outer.contains(&h.span) {
                        out.skip(SkipReason::Nested);
                    } else {
                        kept.push((h.arrival, i as u32, j as u32));
                    }
                }
            }
            if !kept.is_sorted_by_key(|k| k.0) {
                kept.sort_unstable_by_key(|k| k.0);
            }
            for &(_, i, j) in &kept {
                let t = &traces[i as usize];
                self.emit(t, &t.spans[j as usize], emit);
            }
            out.events += kept.len() as u32;
            self.queue.clear();
            self.held = 0;
            return;
        }
        while let Some(&(trace, generation)) = self.queue.front() {
            let Some(t) = self.traces.get(&trace) else {
                self.queue.pop_front();
                continue;
            };
            if t.generation != generation {
                self.queue.pop_front();
                continue;
            }
            let due = matches!(which, Release::QuietSince(cutoff) if t.touched <= cutoff);
            if !due && self.held <= MAX_HELD {
                break;
            }
            self.queue.pop_front();
            let t = self.traces.remove(&trace).expect("trace exists");
            self.held -= t.spans.len();
            let outer = outer_spans(&t);
            for h in &t.spans {
                if outer.contains(&h.span) {
                    out.skip(SkipReason::Nested);
                } else {
                    self.emit(&t, h, emit);
                    out.events += 1;
                }
            }
        }
        if self.traces.is_empty() {
            self.queue.clear();
        }
    }

    /// Emits a held call, its properties in the recycled buffer.
    fn emit(&mut self, t: &Trace, h: &Held, emit: &mut dyn FnMut(&Event)) {
        let ev = h.event(t, recycle_properties(std::mem::take(&mut self.spare)));
        emit(&ev);
        self.spare = recycle_properties(ev.properties);
    }
}

/// The calls of a trace that wrap another call of it: only the innermost counts.
fn outer_spans(t: &Trace) -> HashSet<u64> {
    let mut outer = HashSet::new();
    if t.parents.is_empty() || t.spans.len() < 2 {
        return outer;
    }
    let calls: HashSet<u64> = t.spans.iter().map(|h| h.span).collect();
    for h in &t.spans {
        let mut at = h.span;
        for _ in 0..MAX_DEPTH {
            let Some(&parent) = t.parents.get(&at) else { break };
            if calls.contains(&parent) {
                outer.insert(parent);
            }
            at = parent;
        }
    }
    outer
}

/// A held call: its numbers, and where its strings are in its trace's arena.
struct Held {
    span: u64,
    arrival: u64,
    fields: [Option<Range<u32>>; 9],
    properties: Range<u32>,
    numbers: Numbers,
}

/// The fields of an event that are not strings.
#[derive(Clone, Copy)]
struct Numbers {
    created_at: crate::time::Micros,
    status: u16,
    latency_ms: Option<f64>,
    ttft_ms: Option<f64>,
    tokens: [u64; 5],
    cost_usd: Option<f64>,
    cache_hit: bool,
    retry: u64,
    feedback: Option<bool>,
    seq: Option<u64>,
}

impl Held {
    fn new(span: u64, arrival: u64, ev: &Event, text: &mut String, props: &mut Vec<(Range<u32>, Range<u32>)>) -> Held {
        let mut put = |s: &str| {
            let start = text.len() as u32;
            text.push_str(s);
            start..text.len() as u32
        };
        let fields = [
            &ev.request_id,
            &ev.provider,
            &ev.provider_raw,
            &ev.model,
            &ev.user_id,
            &ev.session_id,
            &ev.session_name,
            &ev.session_path,
            &ev.error,
        ]
        .map(|s| s.as_deref().map(&mut put));
        let first = props.len() as u32;
        for (k, v) in &ev.properties {
            let kv = (put(k), put(v));
            props.push(kv);
        }
        let numbers = Numbers {
            created_at: ev.created_at,
            status: ev.status,
            latency_ms: ev.latency_ms,
            ttft_ms: ev.ttft_ms,
            tokens: [
                ev.prompt_tokens,
                ev.completion_tokens,
                ev.cache_read_tokens,
                ev.cache_write_tokens,
                ev.reasoning_tokens,
            ],
            cost_usd: ev.cost_usd,
            cache_hit: ev.cache_hit,
            retry: ev.retry,
            feedback: ev.feedback,
            seq: ev.seq,
        };
        Held { span, arrival, fields, properties: first..props.len() as u32, numbers }
    }

    /// The event, its properties in `props` (a recycled buffer).
    fn event<'a>(&self, t: &'a Trace, mut props: Vec<(Cow<'a, str>, Cow<'a, str>)>) -> Event<'a> {
        let at = |r: &Range<u32>| Cow::Borrowed(&t.text[r.start as usize..r.end as usize]);
        let f = |i: usize| self.fields[i].as_ref().map(at);
        let range = self.properties.start as usize..self.properties.end as usize;
        props.extend(t.properties[range].iter().map(|(k, v)| (at(k), at(v))));
        let n = self.numbers;
        Event {
            request_id: f(0),
            provider: f(1),
            provider_raw: f(2),
            model: f(3),
            user_id: f(4),
            session_id: f(5),
            session_name: f(6),
            session_path: f(7),
            error: f(8),
            properties: props,
            created_at: n.created_at,
            status: n.status,
            latency_ms: n.latency_ms,
            ttft_ms: n.ttft_ms,
            prompt_tokens: n.tokens[0],
            completion_tokens: n.tokens[1],
            cache_read_tokens: n.tokens[2],
            cache_write_tokens: n.tokens[3],
            reasoning_tokens: n.tokens[4],
            cost_usd: n.cost_usd,
            cache_hit: n.cache_hit,
            retry: n.retry,
            feedback: n.feedback,
            seq: n.seq,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(model: &str) -> Event<'_> {
        Event { model: Some(Cow::Borrowed(model)), ..Event::with_properties(Vec::new()) }
    }

    fn models(t: &mut Traces, which: Release) -> (Vec<String>, Parsed) {
        let (mut got, mut out) = (Vec::new(), Parsed::default());
        t.release(which, &mut |e| got.push(e.model().to_string()), &mut out);
        (got, out)
    }

    #[test]
    fn the_innermost_call_counts_through_spans_that_are_not_calls() {
        let mut t = Traces::default();
        // agent (call) → chain (not a call) → provider (call); a second trace alone.
        t.hold("a", "provider", Some("chain"), &call("inner"), Instant::now());
        t.hold("b", "solo", None, &call("solo"), Instant::now());
        t.link("a", "chain", "agent");
        t.hold("a", "agent", None, &call("outer"), Instant::now());
        t.link("zzz", "x", "y");
        let (got, out) = models(&mut t, Release::All);
        assert_eq!(got, vec!["inner", "solo"], "in the order they were read");
        assert_eq!((out.events, out.skipped[SkipReason::Nested as usize]), (2, 1));
        assert!(t.is_empty());
    }

    #[test]
    fn live_traces_wait_until_quiet_and_the_oldest_go_beyond_the_bound() {
        let mut t = Traces::default();
        t.hold("a", "1", None, &call("a"), Instant::now());
        let before = Instant::now() - Duration::from_secs(1);
        assert!(models(&mut t, Release::QuietSince(before)).0.is_empty(), "touched after the cutoff");
        assert_eq!(models(&mut t, Release::QuietSince(Instant::now())).0, vec!["a"]);
        for i in 0..=MAX_HELD {
            t.hold(&format!("t{i}"), "s", None, &call("m"), Instant::now());
        }
        let (got, _) = models(&mut t, Release::OverBound);
        assert_eq!(got.len(), 1, "only what is over the bound");
        assert_eq!(t.held, MAX_HELD);
    }
}
