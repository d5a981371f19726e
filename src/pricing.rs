//! Model prices and the cost of one event.
//!
//! The built-in table (`assets/pricing.json`) is derived from LiteLLM's MIT-licensed
//! price list by `scripts/gen-pricing.py`; a user file can override or add entries.

use hashbrown::HashMap;
use serde::Deserialize;
use thiserror::Error;

use crate::event::Event;
use crate::stats::Keys;

const BUILTIN: &str = include_str!("../assets/pricing.json");

/// USD per token. Missing cache prices already fell back to the input price.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    pub cache_read: f64,
    pub cache_write: f64,
}

#[derive(Debug, Error)]
pub enum PricingError {
    #[error("price file is not valid JSON in tokentop's pricing format ({0}); see assets/pricing.json for the shape")]
    Format(#[from] serde_json::Error),
    #[error("price for `{0}` is negative or not finite")]
    BadPrice(String),
}

#[derive(Deserialize)]
struct File {
    models: std::collections::HashMap<String, Entry>,
}

#[derive(Deserialize)]
struct Entry {
    input: f64,
    #[serde(default)]
    output: f64,
    cache_read: Option<f64>,
    cache_write: Option<f64>,
}

/// Prices by model name.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    models: HashMap<Box<str>, Price>,
}

impl PriceTable {
    /// The table shipped in the binary.
    pub fn builtin() -> Self {
        Self::from_json(BUILTIN).expect("assets/pricing.json is valid")
    }

    /// Reads a table in the shape of `assets/pricing.json`.
    pub fn from_json(json: &str) -> Result<Self, PricingError> {
        let file: File = serde_json::from_str(json)?;
        let mut models = HashMap::with_capacity(file.models.len());
        for (name, e) in file.models {
            let price = Price {
                input: e.input,
                output: e.output,
                cache_read: e.cache_read.unwrap_or(e.input),
                cache_write: e.cache_write.unwrap_or(e.input),
            };
            let ok = [price.input, price.output, price.cache_read, price.cache_write]
                .iter()
                .all(|p| p.is_finite() && *p >= 0.0);
            if !ok {
                return Err(PricingError::BadPrice(name));
            }
            models.insert(name.into_boxed_str(), price);
        }
        Ok(Self { models })
    }

    /// Adds or replaces entries from `other` (a user's price file).
    pub fn extend(&mut self, other: PriceTable) {
        self.models.extend(other.models);
    }

    pub fn len(&self) -> usize {
        self.models.len()
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// Looks a model up by the contract's rules, first hit wins: as given; without a
    /// leading `provider/`; without a trailing date; both; then `PROVIDER/model` with the
    /// event's provider. A name that merely starts with a priced name is not that model.
    pub fn lookup(&self, provider: &str, model: &str) -> Option<Price> {
        let no_prefix = model.split_once('/').map(|(_, rest)| rest);
        let no_date = strip_date(model);
        let both = no_prefix.and_then(strip_date);
        for name in [Some(model), no_prefix, no_date, both].into_iter().flatten() {
            if let Some(p) = self.models.get(name) {
                return Some(*p);
            }
        }
        if provider.is_empty() {
            return None;
        }
        let mut buf = String::with_capacity(provider.len() + 1 + model.len());
        for name in [Some(model), no_date, no_prefix, both].into_iter().flatten() {
            buf.clear();
            buf.push_str(provider);
            buf.push('/');
            buf.push_str(name);
            if let Some(p) = self.models.get(buf.as_str()) {
                return Some(*p);
            }
        }
        None
    }
}

/// Removes a trailing `-2024-08-06`, `-20241022` or `@20241022`.
fn strip_date(model: &str) -> Option<&str> {
    let b = model.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let n = b.len();
    if n > 11 && b[n - 11] == b'-' && b[n - 6] == b'-' && b[n - 3] == b'-' {
        let d = &b[n - 10..];
        if digits(&d[..4]) && digits(&d[5..7]) && digits(&d[8..]) {
            return Some(&model[..n - 11]);
        }
    }
    if n > 9 && matches!(b[n - 9], b'-' | b'@') && digits(&b[n - 8..]) {
        return Some(&model[..n - 9]);
    }
    None
}

/// What one event costs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cost {
    /// `cost_usd` as the source billed it (never re-priced).
    Billed(f64),
    /// Computed from tokens and the price table.
    Priced(f64),
    /// Served from cache: costs 0; `saved` is its list price.
    CacheHit { saved: f64 },
    /// No bill, no price: counted and shown, never silently $0.
    Unpriced,
}

impl Cost {
    pub fn usd(self) -> f64 {
        match self {
            Cost::Billed(c) | Cost::Priced(c) => c,
            Cost::CacheHit { .. } | Cost::Unpriced => 0.0,
        }
    }
}

/// The list price of an event's tokens. Reasoning tokens are inside completion tokens.
pub fn list_price(price: &Price, ev: &Event) -> f64 {
    let uncached = ev.prompt_tokens.saturating_sub(ev.cache_read_tokens).saturating_sub(ev.cache_write_tokens);
    uncached as f64 * price.input
        + ev.cache_read_tokens as f64 * price.cache_read
        + ev.cache_write_tokens as f64 * price.cache_write
        + ev.completion_tokens as f64 * price.output
}

pub fn cost_of(ev: &Event, price: Option<&Price>) -> Cost {
    if ev.cache_hit {
        let saved = price.map(|p| list_price(p, ev)).or(ev.cost_usd).unwrap_or(0.0);
        return Cost::CacheHit { saved };
    }
    match (ev.cost_usd, price) {
        (Some(c), _) => Cost::Billed(c),
        (None, Some(p)) => Cost::Priced(list_price(p, ev)),
        (None, None) => Cost::Unpriced,
    }
}

/// Memoises lookups per (provider, model), so the ingest path does one hash lookup
/// per event and allocates only the first time it meets a pair. Model names come from
/// the traffic: past [`PriceCache::MAX`] pairs, new ones are looked up each time
/// rather than kept, so memory stays bounded whatever a source sends.
#[derive(Default)]
pub struct PriceCache {
    seen: hashbrown::HashTable<Seen>,
}

/// A pair looked up, found by its [`pair_hash`].
struct Seen {
    hash: u64,
    provider: Box<str>,
    model: Box<str>,
    price: Option<Price>,
}

/// A pair's hash, from the names' own hashes as [`crate::stats::key_hash`] makes them.
#[inline]
fn pair_hash(provider: u64, model: u64) -> u64 {
    provider.rotate_left(29) ^ model
}

impl PriceCache {
    /// Pairs kept at most.
    pub const MAX: usize = 4_096;

    pub fn get(&mut self, table: &PriceTable, provider: &str, model: &str) -> Option<Price> {
        let hash = pair_hash(crate::stats::key_hash(provider), crate::stats::key_hash(model));
        self.get_hashed(table, provider, model, hash)
    }

    /// [`get`](Self::get) for an event whose group keys are hashed already
    /// ([`Keys::hash`]): the ingest paths have the names' hashes, so they are not
    /// hashed again.
    #[inline]
    pub fn get_keyed(&mut self, table: &PriceTable, ev: &Event, keys: &Keys) -> Option<Price> {
        self.get_hashed(table, ev.provider(), ev.model(), pair_hash(keys.provider, keys.model))
    }

    #[inline]
    fn get_hashed(&mut self, table: &PriceTable, provider: &str, model: &str, hash: u64) -> Option<Price> {
        let same = |e: &Seen| e.hash == hash && *e.provider == *provider && *e.model == *model;
        if let Some(e) = self.seen.find(hash, same) {
            return e.price;
        }
        let price = table.lookup(provider, model);
        if self.seen.len() < Self::MAX {
            let seen = Seen { hash, provider: provider.into(), model: model.into(), price };
            self.seen.insert_unique(hash, seen, |e| e.hash);
        }
        price
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> PriceTable {
        PriceTable::from_json(
            r#"{"models":{
            "gpt-4o":{"input":2.5e-6,"output":1e-5,"cache_read":1.25e-6},
            "claude-3-5-sonnet":{"input":3e-6,"output":1.5e-5,"cache_read":3e-7,"cache_write":3.75e-6},
            "mistral/mistral-large-latest":{"input":2e-6,"output":6e-6}}}"#,
        )
        .unwrap()
    }

    #[test]
    fn the_cache_is_bounded_and_prices_past_its_bound() {
        let t = table();
        let mut cache = PriceCache::default();
        for i in 0..3 * PriceCache::MAX {
            assert_eq!(cache.get(&t, "openai", &format!("made-up-{i}")), None);
            assert!(cache.len() <= PriceCache::MAX);
        }
        assert_eq!(cache.len(), PriceCache::MAX);
        // A known model met only after the cache is full is still priced, every time.
        for _ in 0..2 {
            assert_eq!(cache.get(&t, "openai", "gpt-4o"), t.lookup("openai", "gpt-4o"));
            assert!(cache.get(&t, "openai", "gpt-4o").is_some());
        }
    }

    #[test]
    fn an_event_keyed_already_finds_the_pair_its_names_find() {
        let t = table();
        let mut cache = PriceCache::default();
        let mut keys = Keys::default();
        for (provider, model) in
            [("openai", "gpt-4o"), ("mistral", "mistral-large-latest"), ("", "nope"), ("openai", "gpt-4o")]
        {
            let mut ev = Event::with_properties(Vec::new());
            ev.provider = Some(provider.into());
            ev.model = Some(model.into());
            keys.hash(&ev);
            let keyed = cache.get_keyed(&t, &ev, &keys);
            assert_eq!(keyed, t.lookup(ev.provider(), ev.model()), "{provider}/{model}");
            assert_eq!(cache.get(&t, ev.provider(), ev.model()), keyed, "the same entry by name");
        }
        assert_eq!(cache.len(), 3, "one entry a pair, whichever way it was found");
    }

    #[test]
    fn lookup_rules() {
        let t = table();
        let gpt = t.lookup("", "gpt-4o").unwrap();
        assert_eq!(gpt.cache_write, 2.5e-6, "missing cache-write price falls back to input");
        assert_eq!(t.lookup("", "openai/gpt-4o"), Some(gpt));
        assert_eq!(t.lookup("", "gpt-4o-2024-08-06"), Some(gpt));
        assert_eq!(t.lookup("", "openai/gpt-4o-2024-08-06"), Some(gpt));
        assert!(t.lookup("", "claude-3-5-sonnet-20241022").is_some());
        assert!(t.lookup("", "claude-3-5-sonnet@20241022").is_some());
        assert!(t.lookup("mistral", "mistral-large-latest").is_some());
        assert_eq!(t.lookup("", "mistral-large-latest"), None);
        assert_eq!(t.lookup("openai", "gpt-4o-internal"), None, "prefix is not a match");
        assert_eq!(t.lookup("openai", "gpt-4"), None);
    }

    #[test]
    fn builtin_table_has_the_common_models() {
        let t = PriceTable::builtin();
        assert!(t.len() > 1000);
        let p = t.lookup("openai", "gpt-4o").unwrap();
        assert_eq!((p.input, p.output), (2.5e-6, 1e-5));
        assert!(t.lookup("anthropic", "claude-sonnet-4-5").is_some());
    }

    #[test]
    fn cost_formula() {
        let t = table();
        let p = t.lookup("", "claude-3-5-sonnet").unwrap();
        let ev = Event {
            prompt_tokens: 1000,
            cache_read_tokens: 300,
            cache_write_tokens: 200,
            completion_tokens: 100,
            reasoning_tokens: 40,
            ..Default::default()
        };
        let expected = 500.0 * 3e-6 + 300.0 * 3e-7 + 200.0 * 3.75e-6 + 100.0 * 1.5e-5;
        assert!((cost_of(&ev, Some(&p)).usd() - expected).abs() < 1e-12);
        let billed = Event { cost_usd: Some(0.5), ..ev.clone() };
        assert_eq!(cost_of(&billed, Some(&p)), Cost::Billed(0.5));
        let hit = Event { cache_hit: true, cost_usd: Some(0.5), ..ev.clone() };
        match cost_of(&hit, Some(&p)) {
            Cost::CacheHit { saved } => assert!((saved - expected).abs() < 1e-12),
            other => panic!("{other:?}"),
        }
        assert_eq!(cost_of(&ev, None), Cost::Unpriced);
        let odd = Event { prompt_tokens: 10, cache_read_tokens: 50, ..Default::default() };
        assert!((cost_of(&odd, Some(&p)).usd() - 50.0 * 3e-7).abs() < 1e-15, "uncached input never negative");
    }

    #[test]
    fn cache_memoises() {
        let t = table();
        let mut c = PriceCache::default();
        assert!(c.get(&t, "openai", "gpt-4o").is_some());
        assert!(c.get(&t, "openai", "gpt-4o").is_some());
        assert!(c.get(&t, "x", "nope").is_none());
        assert_eq!(c.seen.len(), 2);
    }
}
