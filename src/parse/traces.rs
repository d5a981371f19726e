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
use crate::event::Event;

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
    /// (span id, arrival number, event).
    spans: Vec<(u64, u64, Held)>,
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
}

impl Traces {
    /// Holds an LLM span (already normalised) of `trace`.
    pub fn hold(&mut self, trace: &str, span: &str, parent: Option<&str>, ev: &Event) {
        let (trace, span) = (id(trace), id(span));
        self.arrivals += 1;
        let arrival = self.arrivals;
        let t = self.touch(trace);
        if let Some(p) = parent
            && t.parents.len() < MAX_LINKS
        {
            t.parents.insert(span, id(p));
        }
        t.spans.push((span, arrival, Held::new(ev)));
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

    fn touch(&mut self, trace: u64) -> &mut Trace {
        self.generation += 1;
        let generation = self.generation;
        self.queue.push_back((trace, generation));
        let now = Instant::now();
        let t = self.traces.entry(trace).or_insert_with(|| Trace {
            spans: Vec::new(),
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
            let mut kept = Vec::with_capacity(self.held);
            for (_, t) in self.traces.drain() {
                out.skipped[SkipReason::Nested as usize] += resolve(t, &mut |arrival, ev| kept.push((arrival, ev)));
            }
            kept.sort_unstable_by_key(|(arrival, _)| *arrival);
            for (_, held) in &kept {
                emit(&held.event());
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
            let due = match which {
                Release::All => true,
                Release::QuietSince(c) => t.touched <= c,
                Release::OverBound => false,
            };
            if !due && self.held <= MAX_HELD {
                break;
            }
            self.queue.pop_front();
            let t = self.traces.remove(&trace).expect("trace exists");
            self.held -= t.spans.len();
            let mut emitted = 0;
            let nested = resolve(t, &mut |_, held| {
                emit(&held.event());
                emitted += 1;
            });
            out.events += emitted;
            out.skipped[SkipReason::Nested as usize] += nested;
        }
        if self.traces.is_empty() {
            self.queue.clear();
        }
    }
}

/// Hands on the innermost LLM spans of a trace, in arrival order, and says how many
/// wrapped another (those are skipped).
fn resolve(t: Trace, keep: &mut dyn FnMut(u64, Held)) -> u32 {
    let mut outer: HashSet<u64> = HashSet::new();
    if !t.parents.is_empty() && t.spans.len() > 1 {
        let calls: HashSet<u64> = t.spans.iter().map(|(id, _, _)| *id).collect();
        for (id, _, _) in &t.spans {
            let mut at = *id;
            for _ in 0..MAX_DEPTH {
                let Some(&parent) = t.parents.get(&at) else { break };
                if calls.contains(&parent) {
                    outer.insert(parent);
                }
                at = parent;
            }
        }
    }
    let mut nested = 0;
    for (id, arrival, held) in t.spans {
        if outer.contains(&id) {
            nested += 1;
        } else {
            keep(arrival, held);
        }
    }
    nested
}

/// An event that owns its strings, to be held past its line: every string in one
/// buffer, so holding a span costs one allocation (two with properties).
struct Held {
    text: String,
    fields: [Option<Range<u32>>; 9],
    properties: Vec<(Range<u32>, Range<u32>)>,
    numbers: Event<'static>,
}

impl Held {
    fn new(ev: &Event) -> Held {
        let strings = [
            &ev.request_id,
            &ev.provider,
            &ev.provider_raw,
            &ev.model,
            &ev.user_id,
            &ev.session_id,
            &ev.session_name,
            &ev.session_path,
            &ev.error,
        ];
        let len = strings.iter().map(|s| s.as_deref().map_or(0, str::len)).sum::<usize>()
            + ev.properties.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        let mut text = String::with_capacity(len);
        let mut put = |s: &str| {
            let start = text.len() as u32;
            text.push_str(s);
            start..text.len() as u32
        };
        let fields = strings.map(|s| s.as_deref().map(&mut put));
        let properties = ev.properties.iter().map(|(k, v)| (put(k), put(v))).collect();
        let numbers = Event {
            created_at: ev.created_at,
            status: ev.status,
            latency_ms: ev.latency_ms,
            ttft_ms: ev.ttft_ms,
            prompt_tokens: ev.prompt_tokens,
            completion_tokens: ev.completion_tokens,
            cache_read_tokens: ev.cache_read_tokens,
            cache_write_tokens: ev.cache_write_tokens,
            reasoning_tokens: ev.reasoning_tokens,
            cost_usd: ev.cost_usd,
            cache_hit: ev.cache_hit,
            retry: ev.retry,
            feedback: ev.feedback,
            seq: ev.seq,
            ..Event::default()
        };
        Held { text, fields, properties, numbers }
    }

    fn event(&self) -> Event<'_> {
        let at = |r: &Range<u32>| Cow::Borrowed(&self.text[r.start as usize..r.end as usize]);
        let f = |i: usize| self.fields[i].as_ref().map(at);
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
            properties: self.properties.iter().map(|(k, v)| (at(k), at(v))).collect(),
            ..self.numbers.clone()
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
        t.hold("a", "provider", Some("chain"), &call("inner"));
        t.hold("b", "solo", None, &call("solo"));
        t.link("a", "chain", "agent");
        t.hold("a", "agent", None, &call("outer"));
        t.link("zzz", "x", "y");
        let (got, out) = models(&mut t, Release::All);
        assert_eq!(got, vec!["inner", "solo"], "in the order they were read");
        assert_eq!((out.events, out.skipped[SkipReason::Nested as usize]), (2, 1));
        assert!(t.is_empty());
    }

    #[test]
    fn live_traces_wait_until_quiet_and_the_oldest_go_beyond_the_bound() {
        let mut t = Traces::default();
        t.hold("a", "1", None, &call("a"));
        let before = Instant::now() - Duration::from_secs(1);
        assert!(models(&mut t, Release::QuietSince(before)).0.is_empty(), "touched after the cutoff");
        assert_eq!(models(&mut t, Release::QuietSince(Instant::now())).0, vec!["a"]);
        for i in 0..=MAX_HELD {
            t.hold(&format!("t{i}"), "s", None, &call("m"));
        }
        let (got, _) = models(&mut t, Release::OverBound);
        assert_eq!(got.len(), 1, "only what is over the bound");
        assert_eq!(t.held, MAX_HELD);
    }
}
