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
pub fn bound(s: &mut Cow<'_, str>, max: usize) {
    if s.len() <= max {
        return;
    }
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
}
