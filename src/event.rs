//! The event model: one LLM request as every source and format normalises it.

use std::borrow::Cow;

use crate::time::Micros;

/// One LLM request. Strings borrow from the input line when they can, so parsing
/// allocates nothing for ordinary lines; `properties` is a buffer that the parser
/// recycles between lines.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Event<'a> {
    pub request_id: Option<Cow<'a, str>>,
    pub created_at: Micros,
    /// Normalised to LiteLLM's provider ids (`openai`, `azure`, `bedrock`, …).
    pub provider: Option<Cow<'a, str>>,
    /// The provider as the source named it, when normalising changed it.
    pub provider_raw: Option<Cow<'a, str>>,
    pub model: Option<Cow<'a, str>>,
    /// HTTP status; 0 means no response (network error, timeout).
    pub status: u16,
    pub latency_ms: Option<f64>,
    pub ttft_ms: Option<f64>,
    /// Input tokens including cached ones (OpenAI / OpenTelemetry convention).
    pub prompt_tokens: u64,
    /// Output tokens including reasoning tokens.
    pub completion_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
    /// Cost as billed; when absent it is computed from the pricing table.
    pub cost_usd: Option<f64>,
    /// Served from a gateway cache: costs nothing.
    pub cache_hit: bool,
    pub user_id: Option<Cow<'a, str>>,
    pub session_id: Option<Cow<'a, str>>,
    pub session_name: Option<Cow<'a, str>>,
    pub session_path: Option<Cow<'a, str>>,
    pub properties: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    pub retry: u64,
    pub feedback: Option<bool>,
    pub error: Option<Cow<'a, str>>,
    pub seq: Option<u64>,
}

/// The name shown for a missing provider or model.
pub const UNKNOWN: &str = "unknown";

/// Longest id or name kept (request, user and session ids, model, provider, session
/// name and path, property keys and values), in bytes. Anything kept beyond the event
/// at hand (group tables, the recent requests, the relay's buffer) is bounded by it.
pub const MAX_NAME_BYTES: usize = 256;
/// Longest error text kept, in bytes.
pub const MAX_ERROR_BYTES: usize = 1024;

/// Cuts a string longer than `max` bytes to a prefix, a visible `…` and a hash of the
/// whole (`prefix…#1a2b3c4d`), so two long values that differ only at the end stay
/// two values.
#[inline]
pub fn bound(s: &mut Cow<'_, str>, max: usize) {
    if s.len() > max {
        shorten(s, max);
    }
}

/// [`bound`]'s rare case, kept out of line so the common check inlines.
#[cold]
#[inline(never)]
fn shorten(s: &mut Cow<'_, str>, max: usize) {
    let mut cut = max.saturating_sub(12);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    let hash = xxhash_rust::xxh3::xxh3_64(s.as_bytes()) as u32;
    *s = Cow::Owned(format!("{}…#{hash:08x}", &s[..cut]));
}

impl<'a> Event<'a> {
    /// An empty event (status 200) that fills a recycled property buffer.
    pub fn with_properties(properties: Vec<(Cow<'a, str>, Cow<'a, str>)>) -> Event<'a> {
        Event { status: 200, properties, ..Event::default() }
    }

    /// Bounds every string to [`MAX_NAME_BYTES`] (errors to [`MAX_ERROR_BYTES`]).
    pub fn bound_strings(&mut self) {
        for s in [
            &mut self.request_id,
            &mut self.provider,
            &mut self.provider_raw,
            &mut self.model,
            &mut self.user_id,
            &mut self.session_id,
            &mut self.session_name,
            &mut self.session_path,
        ]
        .into_iter()
        .flatten()
        {
            bound(s, MAX_NAME_BYTES);
        }
        for (k, v) in &mut self.properties {
            bound(k, MAX_NAME_BYTES);
            bound(v, MAX_NAME_BYTES);
        }
        if let Some(e) = &mut self.error {
            bound(e, MAX_ERROR_BYTES);
        }
    }

    /// Sets a property; a key given again replaces its earlier value (last one wins).
    #[inline]
    pub fn set_property(&mut self, key: Cow<'a, str>, value: Cow<'a, str>) {
        match self.properties.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.properties.push((key, value)),
        }
    }

    pub fn provider(&self) -> &str {
        self.provider.as_deref().filter(|s| !s.is_empty()).unwrap_or(UNKNOWN)
    }

    pub fn model(&self) -> &str {
        self.model.as_deref().filter(|s| !s.is_empty()).unwrap_or(UNKNOWN)
    }

    /// The user, if the event names a non-empty one.
    pub fn user(&self) -> Option<&str> {
        self.user_id.as_deref().filter(|s| !s.is_empty())
    }

    pub fn session(&self) -> Option<&str> {
        self.session_id.as_deref().filter(|s| !s.is_empty())
    }

    /// Error = status ≥ 400 or status 0 (no response).
    pub fn is_error(&self) -> bool {
        is_error_status(self.status)
    }
}

pub fn is_error_status(status: u16) -> bool {
    status >= 400 || status == 0
}

/// Empties a property buffer and hands back its allocation for another line's lifetime.
///
/// `into_iter().map().collect()` over a `Vec` of same-layout items reuses the
/// allocation in place, so this moves no data and allocates nothing.
pub fn recycle_properties<'b>(mut v: Vec<(Cow<'_, str>, Cow<'_, str>)>) -> Vec<(Cow<'b, str>, Cow<'b, str>)> {
    v.clear();
    v.into_iter().map(|_| unreachable!("vector was cleared")).collect()
}

/// Events owned in one buffer: how parsed events go from the thread that parses them
/// to the one that aggregates them. Their strings share one text, so a batch costs a
/// few allocations however many events it holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventBuf {
    text: String,
    events: Vec<Packed>,
    properties: Vec<(Str, Str)>,
}

/// A string of an event: its place in the buffer's text, or [`Str::NONE`].
#[derive(Debug, Clone, Copy, PartialEq)]
struct Str {
    start: u32,
    len: u32,
}

impl Str {
    const NONE: Str = Str { start: u32::MAX, len: 0 };
}

/// An [`Event`] with its strings in the buffer's text.
#[derive(Debug, Clone, PartialEq)]
struct Packed {
    created_at: Micros,
    status: u16,
    latency_ms: Option<f64>,
    ttft_ms: Option<f64>,
    prompt_tokens: u64,
    completion_tokens: u64,
    cache_read_tokens: u64,
    cache_write_tokens: u64,
    reasoning_tokens: u64,
    cost_usd: Option<f64>,
    cache_hit: bool,
    retry: u64,
    feedback: Option<bool>,
    seq: Option<u64>,
    request_id: Str,
    provider: Str,
    provider_raw: Str,
    model: Str,
    user_id: Str,
    session_id: Str,
    session_name: Str,
    session_path: Str,
    error: Str,
    /// Its properties: `properties[from..to]`.
    properties: (u32, u32),
}

impl EventBuf {
    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    fn put(&mut self, s: Option<&str>) -> Str {
        match s {
            Some(s) => {
                let start = self.text.len() as u32;
                self.text.push_str(s);
                Str { start, len: s.len() as u32 }
            }
            None => Str::NONE,
        }
    }

    fn get(&self, s: Str) -> Option<Cow<'_, str>> {
        (s != Str::NONE).then(|| Cow::Borrowed(&self.text[s.start as usize..(s.start + s.len) as usize]))
    }

    /// Adds a copy of `ev`.
    pub fn push(&mut self, ev: &Event) {
        let from = self.properties.len() as u32;
        for (k, v) in &ev.properties {
            let kv = (self.put(Some(k)), self.put(Some(v)));
            self.properties.push(kv);
        }
        let packed = Packed {
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
            request_id: self.put(ev.request_id.as_deref()),
            provider: self.put(ev.provider.as_deref()),
            provider_raw: self.put(ev.provider_raw.as_deref()),
            model: self.put(ev.model.as_deref()),
            user_id: self.put(ev.user_id.as_deref()),
            session_id: self.put(ev.session_id.as_deref()),
            session_name: self.put(ev.session_name.as_deref()),
            session_path: self.put(ev.session_path.as_deref()),
            error: self.put(ev.error.as_deref()),
            properties: (from, self.properties.len() as u32),
        };
        self.events.push(packed);
    }

    /// Calls `f` with every event, in the order they were pushed.
    pub fn for_each(&self, mut f: impl FnMut(&Event)) {
        let mut properties = Vec::new();
        for p in &self.events {
            let (from, to) = (p.properties.0 as usize, p.properties.1 as usize);
            properties
                .extend(self.properties[from..to].iter().map(|&(k, v)| (self.get(k).unwrap(), self.get(v).unwrap())));
            // Every field by name: a field added to `Event` must be added here too.
            let ev = Event {
                request_id: self.get(p.request_id),
                created_at: p.created_at,
                provider: self.get(p.provider),
                provider_raw: self.get(p.provider_raw),
                model: self.get(p.model),
                status: p.status,
                latency_ms: p.latency_ms,
                ttft_ms: p.ttft_ms,
                prompt_tokens: p.prompt_tokens,
                completion_tokens: p.completion_tokens,
                cache_read_tokens: p.cache_read_tokens,
                cache_write_tokens: p.cache_write_tokens,
                reasoning_tokens: p.reasoning_tokens,
                cost_usd: p.cost_usd,
                cache_hit: p.cache_hit,
                user_id: self.get(p.user_id),
                session_id: self.get(p.session_id),
                session_name: self.get(p.session_name),
                session_path: self.get(p.session_path),
                properties,
                retry: p.retry,
                feedback: p.feedback,
                error: self.get(p.error),
                seq: p.seq,
            };
            f(&ev);
            properties = ev.properties;
            properties.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycling_keeps_the_allocation() {
        let line = String::from("k");
        let mut v: Vec<(Cow<str>, Cow<str>)> = Vec::with_capacity(8);
        v.push((Cow::Borrowed(&line), Cow::Borrowed(&line)));
        let cap = v.capacity();
        let ptr = v.as_ptr() as usize;
        let w: Vec<(Cow<'static, str>, Cow<'static, str>)> = recycle_properties(v);
        assert_eq!(w.capacity(), cap);
        assert_eq!(w.as_ptr() as usize, ptr);
        assert!(w.is_empty());
    }

    #[test]
    fn long_strings_are_bounded_and_stay_distinct() {
        let a = format!("{}a", "é".repeat(30_000));
        let b = format!("{}b", "é".repeat(30_000));
        let mut e = Event {
            user_id: Some(Cow::Borrowed(&a)),
            model: Some(Cow::Borrowed("gpt-4o")),
            error: Some(Cow::Owned("x".repeat(5000))),
            properties: vec![(Cow::Borrowed("k"), Cow::Borrowed(&b))],
            ..Default::default()
        };
        e.bound_strings();
        let user = e.user().unwrap();
        assert!(user.len() <= MAX_NAME_BYTES && user.starts_with("éé") && user.contains("…#"), "{user}");
        assert_eq!(e.model(), "gpt-4o", "short strings are untouched");
        assert!(matches!(e.model, Some(Cow::Borrowed(_))), "and not copied");
        assert!(e.error.as_ref().unwrap().len() <= MAX_ERROR_BYTES);
        let mut other = Event { user_id: Some(Cow::Borrowed(&b)), ..Default::default() };
        other.bound_strings();
        assert_ne!(other.user(), e.user(), "values that differ past the cut stay different");
        assert_eq!(e.properties[0].1, other.user().unwrap(), "the same value is cut the same way");
    }

    #[test]
    fn missing_names_are_unknown() {
        let e = Event { model: Some(Cow::Borrowed("")), ..Default::default() };
        assert_eq!(e.model(), "unknown");
        assert_eq!(e.provider(), "unknown");
        assert!(Event { status: 0, ..Default::default() }.is_error());
        assert!(Event { status: 429, ..Default::default() }.is_error());
        assert!(!Event { status: 204, ..Default::default() }.is_error());
    }
    #[test]
    fn a_buffer_gives_back_every_field_of_every_event() {
        let full = Event {
            request_id: Some(Cow::Borrowed("r1")),
            created_at: 1_700_000_000_123_456,
            provider: Some(Cow::Borrowed("azure")),
            provider_raw: Some(Cow::Borrowed("Azure OpenAI")),
            model: Some(Cow::Owned("gpt-4o".into())),
            status: 429,
            latency_ms: Some(812.5),
            ttft_ms: Some(90.25),
            prompt_tokens: 1,
            completion_tokens: 2,
            cache_read_tokens: 3,
            cache_write_tokens: 4,
            reasoning_tokens: 5,
            cost_usd: Some(0.000_123),
            cache_hit: true,
            user_id: Some(Cow::Borrowed("ü")),
            session_id: Some(Cow::Borrowed("")),
            session_name: Some(Cow::Borrowed("n")),
            session_path: Some(Cow::Borrowed("/a/b")),
            properties: vec![(Cow::Borrowed("k"), Cow::Borrowed("v")), (Cow::Borrowed(""), Cow::Borrowed("é"))],
            retry: 6,
            feedback: Some(false),
            error: Some(Cow::Borrowed("rate limited")),
            seq: Some(7),
        };
        let events = [
            full.clone(),
            Event::default(),
            Event { properties: vec![(Cow::Borrowed("x"), Cow::Borrowed("y"))], ..full },
        ];
        let mut buf = EventBuf::default();
        for ev in &events {
            buf.push(ev);
        }
        assert_eq!(buf.len(), 3);
        let mut back = Vec::new();
        buf.for_each(|ev| back.push(format!("{ev:?}")));
        let sent: Vec<String> = events.iter().map(|ev| format!("{ev:?}")).collect();
        assert_eq!(back, sent, "Some(\"\") stays apart from None, properties stay with their event");
    }
}
