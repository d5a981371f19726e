//! Requests kept whole: the ring of the latest ones (the request list), and the
//! slowest of each time slab (the list's "slowest first", over the whole window).

use std::borrow::Cow;
use std::collections::VecDeque;

use crate::event::Event;
use crate::stats::Sample;
use crate::time::Micros;

/// One request as the request list shows it. Buffers are reused when the ring
/// wraps, so keeping recent requests allocates nothing at steady state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecentRequest {
    pub request_id: String,
    pub created_at: Micros,
    pub provider: String,
    pub model: String,
    pub status: u16,
    pub latency_ms: Option<f64>,
    pub ttft_ms: Option<f64>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cache_read_tokens: u64,
    pub reasoning_tokens: u64,
    /// USD charged (0 for cache hits and unpriced requests).
    pub cost: f64,
    pub unpriced: bool,
    pub cache_hit: bool,
    pub user_id: String,
    pub session_id: String,
    pub session_path: String,
    pub retry: u64,
    pub error: String,
    pub properties: Vec<(String, String)>,
}

fn set(dst: &mut String, src: Option<&str>) {
    dst.clear();
    dst.push_str(src.unwrap_or(""));
}

impl RecentRequest {
    pub(super) fn fill(&mut self, ev: &Event, x: &Sample) {
        set(&mut self.request_id, ev.request_id.as_deref());
        self.created_at = ev.created_at;
        set(&mut self.provider, Some(ev.provider()));
        set(&mut self.model, Some(ev.model()));
        self.status = ev.status;
        self.latency_ms = ev.latency_ms;
        self.ttft_ms = ev.ttft_ms;
        self.prompt_tokens = ev.prompt_tokens;
        self.completion_tokens = ev.completion_tokens;
        self.cache_read_tokens = ev.cache_read_tokens;
        self.reasoning_tokens = ev.reasoning_tokens;
        self.cost = x.cost.to_f64();
        self.unpriced = x.unpriced;
        self.cache_hit = ev.cache_hit;
        set(&mut self.user_id, ev.user());
        set(&mut self.session_id, ev.session());
        set(&mut self.session_path, ev.session_path.as_deref());
        self.retry = ev.retry;
        set(&mut self.error, ev.error.as_deref());
        self.properties.truncate(ev.properties.len());
        for (i, (k, v)) in ev.properties.iter().enumerate() {
            match self.properties.get_mut(i) {
                Some((pk, pv)) => {
                    set(pk, Some(k));
                    set(pv, Some(v));
                }
                None => self.properties.push((k.to_string(), v.to_string())),
            }
        }
        // A reused slot gives back room an earlier, larger request left in it.
        if self.properties.capacity() > 2 * self.properties.len() + 8 {
            self.properties.shrink_to(self.properties.len());
        }
    }

    /// Heap bytes held, for the ring's bound in bytes.
    pub(super) fn heap_bytes(&self) -> usize {
        let strings: usize = [
            &self.request_id,
            &self.provider,
            &self.model,
            &self.user_id,
            &self.session_id,
            &self.session_path,
            &self.error,
        ]
        .iter()
        .map(|s| s.capacity())
        .sum();
        let props = self.properties.capacity() * std::mem::size_of::<(String, String)>()
            + self.properties.iter().map(|(k, v)| k.capacity() + v.capacity()).sum::<usize>();
        strings + props
    }
}

/// Bytes the recent-request ring may hold besides its slots: the ring keeps fewer
/// requests rather than more memory when requests carry many or long strings.
pub const RECENT_BYTES: usize = 64 << 20;

/// The latest requests, bounded in count and in bytes.
pub(super) struct Ring {
    pub(super) items: VecDeque<RecentRequest>,
    cap: usize,
    /// Heap bytes held by `items` (see [`RECENT_BYTES`]).
    pub(super) bytes: usize,
    /// Whether a request has been let go (the ring no longer holds all of them).
    pub(super) dropped: bool,
}

impl Ring {
    pub(super) fn new(cap: usize) -> Ring {
        Ring { items: VecDeque::with_capacity(cap.min(1 << 16)), cap, bytes: 0, dropped: false }
    }

    pub(super) fn push(&mut self, ev: &Event, x: &Sample) {
        if self.cap == 0 {
            return;
        }
        let full = self.items.len() >= self.cap;
        match self.items.front_mut() {
            // Full: the oldest is refilled where it is and becomes the newest (a ring
            // at its capacity rotates without moving a request).
            Some(slot) if full => {
                self.bytes -= slot.heap_bytes();
                slot.fill(ev, x);
                self.bytes += slot.heap_bytes();
                self.items.rotate_left(1);
            }
            _ => {
                let mut slot = RecentRequest::default();
                slot.fill(ev, x);
                self.bytes += slot.heap_bytes();
                self.items.push_back(slot);
            }
        }
        while self.bytes > RECENT_BYTES && self.items.len() > 1 {
            let old = self.items.pop_front().expect("more than one");
            self.bytes -= old.heap_bytes();
            self.dropped = true;
        }
    }
}

/// The slowest requests each slab keeps: a window's slowest `SLOWEST` are exactly
/// the slowest of its slabs' together.
pub const SLOWEST: usize = 50;

/// The slowest requests of one slab, slowest first. An event slower than the
/// slowest kept is rare once the slab has filled, so this costs one comparison
/// an event; a place given up is reused for the newcomer.
#[derive(Default)]
pub(super) struct Slowest {
    items: Vec<RecentRequest>,
}

impl Slowest {
    #[inline]
    pub(super) fn offer(&mut self, ev: &Event, x: &Sample) {
        let Some(latency) = ev.latency_ms else { return };
        let full = self.items.len() >= SLOWEST;
        if full && self.items.last().and_then(|r| r.latency_ms).is_some_and(|min| latency <= min) {
            return;
        }
        let mut slot = if full { self.items.pop().unwrap_or_default() } else { RecentRequest::default() };
        slot.fill(ev, x);
        let at = self.items.partition_point(|r| r.latency_ms.unwrap_or(0.0) >= latency);
        self.items.insert(at, slot);
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &RecentRequest> {
        self.items.iter()
    }

    /// Keeps the slowest of both (the slowest of a union are among each side's slowest).
    pub(super) fn merge(&mut self, o: &Slowest) {
        for r in &o.items {
            let Some(latency) = r.latency_ms else { continue };
            if self.items.len() >= SLOWEST {
                if self.items.last().and_then(|m| m.latency_ms).is_some_and(|min| latency <= min) {
                    continue;
                }
                self.items.pop();
            }
            let at = self.items.partition_point(|m| m.latency_ms.unwrap_or(0.0) >= latency);
            self.items.insert(at, r.clone());
        }
    }
}

impl RecentRequest {
    /// The request as an event again (for replaying into a filtered view).
    pub fn as_event(&self) -> Event<'_> {
        fn s(v: &str) -> Option<Cow<'_, str>> {
            (!v.is_empty()).then_some(Cow::Borrowed(v))
        }
        Event {
            request_id: s(&self.request_id),
            created_at: self.created_at,
            provider: s(&self.provider),
            provider_raw: None,
            model: s(&self.model),
            status: self.status,
            latency_ms: self.latency_ms,
            ttft_ms: self.ttft_ms,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            cache_read_tokens: self.cache_read_tokens,
            cache_write_tokens: 0,
            reasoning_tokens: self.reasoning_tokens,
            // What it cost is known: replay it as billed (cache hits and unpriced stay so).
            cost_usd: (!self.unpriced && !self.cache_hit).then_some(self.cost),
            cache_hit: self.cache_hit,
            user_id: s(&self.user_id),
            session_id: s(&self.session_id),
            session_name: None,
            session_path: s(&self.session_path),
            properties: self
                .properties
                .iter()
                .map(|(k, v)| (Cow::Borrowed(k.as_str()), Cow::Borrowed(v.as_str())))
                .collect(),
            retry: self.retry,
            feedback: None,
            error: s(&self.error),
            seq: None,
        }
    }

    /// What identifies this request in a list that moves: its id, or its time and
    /// model when it has none.
    pub fn identity(&self) -> (Micros, &str, &str) {
        (self.created_at, self.request_id.as_str(), self.model.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_ring_keeps_the_newest_in_order() {
        for cap in [1, 3, 7] {
            let mut ring = Ring::new(cap);
            for i in 0..20u64 {
                let id = format!("r{i}");
                let ev = Event { request_id: Some(Cow::Borrowed(&id)), prompt_tokens: i, ..Event::default() };
                let x = Sample::new(&ev, crate::pricing::Cost::Unpriced);
                ring.push(&ev, &x);
                let kept: Vec<u64> = ring.items.iter().map(|r| r.prompt_tokens).collect();
                let want: Vec<u64> = (i.saturating_sub(cap as u64 - 1)..=i).collect();
                assert_eq!(kept, want, "cap {cap}");
                assert!(ring.items.iter().all(|r| r.request_id == format!("r{}", r.prompt_tokens)));
            }
            let bytes: usize = ring.items.iter().map(RecentRequest::heap_bytes).sum();
            assert_eq!(ring.bytes, bytes, "the byte count follows refilled slots");
        }
    }
}
