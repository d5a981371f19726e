//! Mergeable aggregates of events.
//!
//! Everything here can be built from any subset of events and merged with another
//! part: workers of a report aggregate their share and merge at the end; the live
//! engine keeps one [`Stats`] per time slab and merges the slabs of a window; a source
//! that sends pre-aggregated data can hand over a `Stats` of its own.

pub mod distinct;
pub mod hist;
mod recorder;
pub mod series;

use std::collections::BTreeMap;

use std::hash::{BuildHasherDefault, Hasher};

use hashbrown::HashMap;
use xxhash_rust::xxh3::xxh3_64;

use crate::event::Event;
use crate::pricing::Cost;
use crate::time::Micros;
pub use distinct::Distinct;
pub use hist::{Dist, Moments, ms_to_ns};
pub use recorder::Recorder;

/// An event's numbers converted once, for the several aggregates it lands in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub latency_ns: Option<u64>,
    pub ttft_ns: Option<u64>,
    /// What the request cost (0 for cache hits and unpriced requests).
    pub cost: Usd,
    pub saved: Usd,
    pub cache_hit: bool,
    pub unpriced: bool,
}

impl Sample {
    pub fn new(ev: &Event, cost: Cost) -> Sample {
        let (charged, saved) = match cost {
            Cost::Billed(c) | Cost::Priced(c) => (Usd::from_f64(c), Usd(0)),
            Cost::CacheHit { saved } => (Usd(0), Usd::from_f64(saved)),
            Cost::Unpriced => (Usd(0), Usd(0)),
        };
        Sample {
            latency_ns: ev.latency_ms.map(ms_to_ns),
            ttft_ns: ev.ttft_ms.map(ms_to_ns),
            cost: charged,
            saved,
            cache_hit: matches!(cost, Cost::CacheHit { .. }),
            unpriced: cost == Cost::Unpriced,
        }
    }
}

/// What the aggregates take from an event: its numbers, without its strings, so that
/// recording can happen after the line they came from is gone (see [`Recorder`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Numbers {
    pub created_at: Micros,
    pub status: u16,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
    pub retried: bool,
    pub feedback: Option<bool>,
    pub x: Sample,
}

impl Numbers {
    #[inline]
    pub fn of(ev: &Event, x: &Sample) -> Numbers {
        Numbers {
            created_at: ev.created_at,
            status: ev.status,
            prompt_tokens: ev.prompt_tokens,
            completion_tokens: ev.completion_tokens,
            cache_read_tokens: ev.cache_read_tokens,
            cache_write_tokens: ev.cache_write_tokens,
            reasoning_tokens: ev.reasoning_tokens,
            retried: ev.retry > 0,
            feedback: ev.feedback,
            x: *x,
        }
    }

    fn is_error(&self) -> bool {
        crate::event::is_error_status(self.status)
    }
}

/// How users and sessions rank for [`Capped::entry_ranked`]: spend in picodollars, and
/// requests (one a picodollar) to order those who spent nothing.
fn rank_of(cost: Usd, requests: u64) -> f64 {
    cost.0 as f64 + requests as f64
}

/// The row that high-cardinality keys fold into once a map reaches its cap.
pub const OTHER: &str = "(other)";

/// USD as an integer number of picodollars: sums are exact and independent of the
/// order events are merged in, so a report is the same however work was split.
/// Each event's cost is rounded to 1e-12 USD, far below the 1e-6 the contract asks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Usd(pub i128);

impl Usd {
    /// From a non-negative amount (costs are never negative), rounded to 1e-12.
    #[inline]
    pub fn from_f64(usd: f64) -> Self {
        let pico = usd * 1e12 + 0.5;
        // Through i64 where it fits (an amount below $9.2M): a float's conversion to
        // i128 is a library call, to i64 one instruction.
        Usd(if pico.abs() < 9.2e18 { pico as i64 as i128 } else { pico as i128 })
    }
    pub fn to_f64(self) -> f64 {
        self.0 as f64 / 1e12
    }
}

impl std::ops::AddAssign for Usd {
    fn add_assign(&mut self, o: Usd) {
        self.0 += o.0;
    }
}

/// Counters and the latency distribution of any set of requests: the whole window,
/// one model, one provider, one property value.
#[derive(Debug, Clone, Default)]
pub struct Agg {
    pub requests: u64,
    /// Status 200–299.
    pub ok: u64,
    /// Status ≥ 400 or 0.
    pub errors: u64,
    pub e4xx: u64,
    pub e5xx: u64,
    pub e429: u64,
    pub status0: u64,
    pub cost: Usd,
    pub cost_saved: Usd,
    pub unpriced: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
    pub cache_hits: u64,
    pub retries: u64,
    pub feedback_rated: u64,
    pub feedback_positive: u64,
    pub latency: Dist,
    pub ttft: Moments,
}

impl Agg {
    #[inline]
    pub fn record(&mut self, ev: &Event, x: &Sample) {
        self.add(&Numbers::of(ev, x));
    }

    #[inline]
    pub fn add(&mut self, n: &Numbers) {
        let (s, x) = (n.status, &n.x);
        self.requests += 1;
        self.ok += u64::from((200..300).contains(&s));
        self.errors += u64::from(n.is_error());
        self.e4xx += u64::from((400..500).contains(&s));
        self.e5xx += u64::from((500..600).contains(&s));
        self.e429 += u64::from(s == 429);
        self.status0 += u64::from(s == 0);
        self.cost += x.cost;
        self.cost_saved += x.saved;
        self.cache_hits += u64::from(x.cache_hit);
        self.unpriced += u64::from(x.unpriced);
        self.prompt_tokens += n.prompt_tokens;
        self.completion_tokens += n.completion_tokens;
        self.cache_read_tokens += n.cache_read_tokens;
        self.cache_write_tokens += n.cache_write_tokens;
        self.reasoning_tokens += n.reasoning_tokens;
        self.retries += u64::from(n.retried);
        if let Some(f) = n.feedback {
            self.feedback_rated += 1;
            self.feedback_positive += u64::from(f);
        }
        if let Some(l) = x.latency_ns {
            self.latency.record(l);
        }
        if let Some(t) = x.ttft_ns {
            self.ttft.record(t);
        }
    }

    pub fn merge(&mut self, o: &Agg) {
        self.requests += o.requests;
        self.ok += o.ok;
        self.errors += o.errors;
        self.e4xx += o.e4xx;
        self.e5xx += o.e5xx;
        self.e429 += o.e429;
        self.status0 += o.status0;
        self.cost += o.cost;
        self.cost_saved += o.cost_saved;
        self.unpriced += o.unpriced;
        self.prompt_tokens += o.prompt_tokens;
        self.completion_tokens += o.completion_tokens;
        self.cache_read_tokens += o.cache_read_tokens;
        self.cache_write_tokens += o.cache_write_tokens;
        self.reasoning_tokens += o.reasoning_tokens;
        self.cache_hits += o.cache_hits;
        self.retries += o.retries;
        self.feedback_rated += o.feedback_rated;
        self.feedback_positive += o.feedback_positive;
        self.latency.merge(&o.latency);
        self.ttft.merge(&o.ttft);
    }

    pub fn tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }

    /// Percent of `part` in this group's requests (0 when there are none).
    pub fn pct(&self, part: u64) -> f64 {
        pct(part, self.requests)
    }
}

pub fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 * 100.0 / whole as f64 }
}

/// Per-user numbers for the users table. Counters and exact averages only: a latency
/// histogram per user (per time slab) would not fit the memory bound at 100,000 users.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserAgg {
    pub requests: u64,
    pub errors: u64,
    pub e4xx: u64,
    pub e5xx: u64,
    pub e429: u64,
    pub cache_hits: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: Usd,
    pub latency: Moments,
    pub ttft: Moments,
    pub last_active: Micros,
}

impl UserAgg {
    /// Who is kept when there are too many: the biggest spenders, then the busiest.
    pub fn rank(&self) -> f64 {
        rank_of(self.cost, self.requests)
    }

    pub fn tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }

    fn add(&mut self, n: &Numbers) {
        let (s, x) = (n.status, &n.x);
        self.requests += 1;
        self.errors += u64::from(n.is_error());
        self.e4xx += u64::from((400..500).contains(&s));
        self.e5xx += u64::from((500..600).contains(&s));
        self.e429 += u64::from(s == 429);
        self.cache_hits += u64::from(x.cache_hit);
        self.prompt_tokens += n.prompt_tokens;
        self.completion_tokens += n.completion_tokens;
        self.cost += x.cost;
        if let Some(l) = x.latency_ns {
            self.latency.record(l);
        }
        if let Some(t) = x.ttft_ns {
            self.ttft.record(t);
        }
        self.last_active = self.last_active.max(n.created_at);
    }

    fn merge(&mut self, o: &UserAgg) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.e4xx += o.e4xx;
        self.e5xx += o.e5xx;
        self.e429 += o.e429;
        self.cache_hits += o.cache_hits;
        self.prompt_tokens += o.prompt_tokens;
        self.completion_tokens += o.completion_tokens;
        self.cost += o.cost;
        self.latency.merge(&o.latency);
        self.ttft.merge(&o.ttft);
        self.last_active = self.last_active.max(o.last_active);
    }
}

/// Per-session numbers: a session lasts from its first request's start to its last
/// request's end (start + latency).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionAgg {
    pub requests: u64,
    pub errors: u64,
    pub cost: Usd,
    pub first_start: Micros,
    pub last_end: Micros,
    pub name: Option<Box<str>>,
}

impl Default for SessionAgg {
    fn default() -> Self {
        Self { requests: 0, errors: 0, cost: Usd(0), first_start: Micros::MAX, last_end: Micros::MIN, name: None }
    }
}

impl SessionAgg {
    /// Which sessions are kept when there are too many: as for users.
    pub fn rank(&self) -> f64 {
        rank_of(self.cost, self.requests)
    }

    fn record(&mut self, ev: &Event, x: &Sample) {
        self.add(&Numbers::of(ev, x));
        self.name_if_unnamed(ev);
    }

    fn add(&mut self, n: &Numbers) {
        self.requests += 1;
        self.errors += u64::from(n.is_error());
        self.cost += n.x.cost;
        self.first_start = self.first_start.min(n.created_at);
        let end = n.created_at + n.x.latency_ns.map_or(0, |ns| ((ns + 500) / 1000) as i64);
        self.last_end = self.last_end.max(end);
    }

    /// A session is named by the first of its requests that has a name.
    fn name_if_unnamed(&mut self, ev: &Event) {
        if self.name.is_none() {
            self.name = ev.session_name.as_deref().filter(|s| !s.is_empty()).map(Into::into);
        }
    }

    fn merge(&mut self, o: &SessionAgg) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.cost += o.cost;
        self.first_start = self.first_start.min(o.first_start);
        self.last_end = self.last_end.max(o.last_end);
        if self.name.is_none() {
            self.name.clone_from(&o.name);
        }
    }

    pub fn duration_micros(&self) -> i64 {
        (self.last_end - self.first_start).max(0)
    }
}

/// Values that can be folded together.
pub trait Mergeable: Clone {
    fn merge_from(&mut self, o: &Self);
}

impl Mergeable for Agg {
    fn merge_from(&mut self, o: &Self) {
        self.merge(o)
    }
}
impl Mergeable for UserAgg {
    fn merge_from(&mut self, o: &Self) {
        self.merge(o)
    }
}
impl Mergeable for SessionAgg {
    fn merge_from(&mut self, o: &Self) {
        self.merge(o)
    }
}

/// A map from key to aggregate holding at most `cap` keys; keys beyond the cap are
/// folded into one `(other)` row, so a flood of distinct ids cannot exhaust memory.
///
/// Entries are found by the 64-bit xxh3 hash of their name, with the name kept beside
/// the value: a lookup compares integers, never strings through a pointer (which was a
/// cache miss per event with 20,000 sessions). Two names sharing a hash would share a
/// row; among a million names that happens with probability below 1e-7.
#[derive(Debug, Clone)]
pub struct Capped<V> {
    /// Key hash to position in `entries`: small (16 bytes a key), so finding a key
    /// stays in cache even when the values do not.
    index: HashMap<u64, u32, BuildHasherDefault<HashIsKey>>,
    entries: Vec<Kept<V>>,
    other: Option<V>,
    cap: usize,
    /// What a new entry starts as (an empty aggregate, or an empty capped map).
    empty: V,
    /// The smallest rank kept at the last [`compact`](Self::compact).
    floor: f64,
    /// With [`counting`](Self::counting): every key seen, once a key was folded, so
    /// the number of distinct keys stays known past the cap (for maps filled by
    /// `entry` and `merge`).
    seen: Option<Box<Distinct>>,
    counting: bool,
}

#[derive(Debug, Clone)]
struct Kept<V> {
    hash: u64,
    key: Box<str>,
    value: V,
}

/// Where a key's value is in a [`Capped`]: a position, or the `(other)` row. Stays
/// valid while keys are only added (not across [`Capped::compact`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(u32);

impl Slot {
    pub const OTHER: Slot = Slot(u32::MAX);
}

/// The keys are already hashes: pass them through.
#[derive(Default)]
pub struct HashIsKey(u64);

impl Hasher for HashIsKey {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 keys are hashed")
    }
    fn write_u64(&mut self, h: u64) {
        self.0 = h;
    }
}

pub fn key_hash(key: &str) -> u64 {
    xxh3_64(key.as_bytes())
}

/// The hashes of one event's group keys (model, provider, properties, user,
/// session). Kept by the caller and refilled per event, so hashing allocates nothing.
#[derive(Debug, Default)]
pub struct Keys {
    pub model: u64,
    pub provider: u64,
    /// (key hash, value hash) per property, in the event's order.
    pub properties: Vec<(u64, u64)>,
    pub user: Option<u64>,
    pub session: Option<u64>,
}

impl Keys {
    pub fn hash(&mut self, ev: &Event) {
        self.model = key_hash(ev.model());
        self.provider = key_hash(ev.provider());
        self.properties.clear();
        self.properties.extend(ev.properties.iter().map(|(k, v)| (key_hash(k), key_hash(v))));
        self.user = ev.user().map(key_hash);
        self.session = ev.session().map(key_hash);
    }
}

impl<V: Mergeable + Default> Capped<V> {
    pub fn new(cap: usize) -> Self {
        Self::with_empty(cap, V::default())
    }
}

impl<V: Mergeable> Capped<V> {
    pub fn with_empty(cap: usize, empty: V) -> Self {
        Self {
            index: HashMap::default(),
            entries: Vec::new(),
            other: None,
            cap,
            empty,
            floor: 0.0,
            seen: None,
            counting: false,
        }
    }

    /// A map that also counts the distinct keys it folds (exactly up to four times its
    /// cap, then as an estimate).
    pub fn counting(mut self) -> Self {
        self.counting = true;
        self
    }

    /// The entry for `key`; allocates only when a new key is admitted.
    #[inline]
    pub fn entry(&mut self, key: &str) -> &mut V {
        self.entry_hashed(key_hash(key), key)
    }

    /// Like [`entry`](Self::entry) when the caller already has `key_hash(key)`.
    #[inline]
    pub fn entry_hashed(&mut self, hash: u64, key: &str) -> &mut V {
        let slot = self.slot(hash, key).0;
        self.at(slot)
    }

    /// Where `key` (hashed) lives, admitting it if there is room, and whether it was
    /// admitted just now. Reads only the index, not the values.
    #[inline]
    pub fn slot(&mut self, hash: u64, key: &str) -> (Slot, bool) {
        if let Some(&i) = self.index.get(&hash) {
            return (Slot(i), false);
        }
        if self.entries.len() >= self.cap {
            if self.counting {
                self.seen_keys().insert_hash(hash);
            }
            return (Slot::OTHER, false);
        }
        (self.admit(hash, key), true)
    }

    fn admit(&mut self, hash: u64, key: &str) -> Slot {
        let i = self.entries.len() as u32;
        self.entries.push(Kept { hash, key: key.into(), value: self.empty.clone() });
        self.index.insert(hash, i);
        Slot(i)
    }

    /// The value in `slot` (the `(other)` row made if need be).
    #[inline]
    pub fn at(&mut self, slot: Slot) -> &mut V {
        match self.entries.get_mut(slot.0 as usize) {
            Some(e) => &mut e.value,
            None => self.other.get_or_insert_with(|| self.empty.clone()),
        }
    }

    /// The value in `slot` if it exists yet, for reading ahead.
    #[inline]
    pub fn peek(&self, slot: Slot) -> Option<&V> {
        match self.entries.get(slot.0 as usize) {
            Some(e) => Some(&e.value),
            None => self.other.as_ref(),
        }
    }

    /// The set of keys seen, started from the keys kept when the first one folds.
    fn seen_keys(&mut self) -> &mut Distinct {
        let entries = &self.entries;
        self.seen.get_or_insert_with(|| {
            let mut d = Distinct::new(self.cap.saturating_mul(4));
            entries.iter().for_each(|e| d.insert_hash(e.hash));
            Box::new(d)
        })
    }

    /// Distinct keys seen, folded ones included: exact until the cap is passed, then
    /// an estimate (see [`Distinct`]).
    pub fn distinct_keys(&self) -> (u64, bool) {
        match &self.seen {
            Some(d) => (d.count(), d.is_exact()),
            None => (self.entries.len() as u64, true),
        }
    }

    /// The entries in the index's order, which depends on the keys only (not on when
    /// each arrived): merges admit keys in it, so which keys a full map keeps does not
    /// depend on arrival either.
    fn in_order(&self) -> impl Iterator<Item = &Kept<V>> {
        self.index.values().map(|&i| &self.entries[i as usize])
    }

    pub fn merge(&mut self, o: &Capped<V>) {
        for e in o.in_order() {
            self.entry_hashed(e.hash, &e.key).merge_from(&e.value);
        }
        if let Some(v) = &o.other {
            self.other.get_or_insert_with(|| self.empty.clone()).merge_from(v);
        }
        if let Some(d) = &o.seen {
            self.seen_keys().merge(d);
        }
    }

    /// Like [`entry_hashed`](Self::entry_hashed), but past the cap a new key is let in
    /// when its first event alone (`incoming`) outranks the smallest entry kept; once the
    /// map is a quarter past its cap, the entries ranking lowest by `rank` fold into
    /// `(other)`. A top-K with replacement: a key that arrives late and big (a user who
    /// spends a lot) is still kept, while the many small newcomers go straight to
    /// `(other)`; what a key had before it was folded stays there.
    pub fn entry_ranked(&mut self, hash: u64, key: &str, rank: impl Fn(&V) -> f64, incoming: f64) -> &mut V {
        if let Some(&i) = self.index.get(&hash) {
            return &mut self.entries[i as usize].value;
        }
        if self.entries.len() >= self.cap {
            if incoming <= self.floor {
                return self.other.get_or_insert_with(|| self.empty.clone());
            }
            if self.entries.len() >= self.cap + self.cap / 4 {
                self.compact(&rank);
            }
        }
        let slot = self.admit(hash, key);
        self.at(slot)
    }

    /// Merges `o` in as [`entry_ranked`](Self::entry_ranked) admits keys.
    pub fn merge_ranked(&mut self, o: &Capped<V>, rank: impl Fn(&V) -> f64) {
        for e in o.in_order() {
            self.entry_ranked(e.hash, &e.key, &rank, rank(&e.value)).merge_from(&e.value);
        }
        if let Some(v) = &o.other {
            self.other.get_or_insert_with(|| self.empty.clone()).merge_from(v);
        }
    }

    /// Folds the entries ranking lowest by `rank` into `(other)`, down to the cap, and
    /// remembers the smallest rank kept. Moves entries: slots taken before are void.
    pub fn compact(&mut self, rank: impl Fn(&V) -> f64) {
        if self.entries.len() <= self.cap || self.cap == 0 {
            return;
        }
        let mut ranked: Vec<(f64, u64, usize)> =
            self.entries.iter().enumerate().map(|(i, e)| (rank(&e.value), e.hash, i)).collect();
        let by_rank = |a: &(f64, u64, usize), b: &(f64, u64, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        ranked.select_nth_unstable_by(self.cap - 1, by_rank);
        self.floor = ranked[self.cap - 1].0;
        // Each entry's position after the fold (`u32::MAX`: folded), marked kept first.
        let mut moved = vec![u32::MAX; self.entries.len()];
        ranked[..self.cap].iter().for_each(|&(_, _, i)| moved[i] = 0);
        let (mut from, mut to) = (0, 0);
        self.entries.retain(|e| {
            let kept = moved[from] != u32::MAX;
            if kept {
                moved[from] = to;
                to += 1;
            } else {
                self.other.get_or_insert_with(|| self.empty.clone()).merge_from(&e.value);
            }
            from += 1;
            kept
        });
        self.index.retain(|_, i| {
            *i = moved[*i as usize];
            *i != u32::MAX
        });
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.index.get(&key_hash(key)).map(|&i| &self.entries[i as usize].value)
    }

    /// The stored keys, without the `(other)` row.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.in_order().map(|e| (&*e.key, &e.value))
    }

    /// The `(other)` row, made empty if there is none: for aggregates computed
    /// elsewhere (a ClickHouse query) that fold some keys themselves.
    pub fn other_mut(&mut self) -> &mut V {
        self.other.get_or_insert_with(|| self.empty.clone())
    }

    /// What was folded because the cap was reached.
    pub fn other(&self) -> Option<&V> {
        self.other.as_ref()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.other.is_none()
    }
}

/// Caps that bound memory whatever the cardinality of the input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Models, providers, and values of each property key.
    pub groups: usize,
    /// Distinct property keys.
    pub property_keys: usize,
    pub users: usize,
    pub sessions: usize,
    /// Distinct users counted exactly before switching to an estimate.
    pub distinct_exact: usize,
}

impl Limits {
    /// For one-shot reports: generous, exact for any realistic input.
    pub const REPORT: Limits =
        Limits { groups: 10_000, property_keys: 256, users: 1_000_000, sessions: 1_000_000, distinct_exact: 1_000_000 };

    /// For each time slab of a live window (a window holds 12 or 13): the first 100
    /// models, providers and values of each property key, and the first 1,000 users
    /// and sessions, are exact; later ones fold into `(other)`. Slabs count distinct
    /// users with a sketch only: the engine counts them exactly on its own.
    /// Sized so that a day of 1,000 requests/s stays under 200 MiB (see the README).
    pub const LIVE_SLAB: Limits =
        Limits { groups: 100, property_keys: 64, users: 1_000, sessions: 1_000, distinct_exact: 0 };
}

/// The parts of [`Stats`] beyond the totals that [`Stats::record_parts`] fills.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Parts {
    pub models: bool,
    pub providers: bool,
    pub properties: bool,
    pub users: bool,
    pub sessions: bool,
    pub distinct_users: bool,
}

/// Everything tokentop knows about a set of requests.
#[derive(Debug, Clone)]
pub struct Stats {
    pub total: Agg,
    pub ttft: Dist,
    pub by_status: BTreeMap<u16, u64>,
    pub by_model: Capped<Agg>,
    pub by_provider: Capped<Agg>,
    pub by_property: Capped<Capped<Agg>>,
    pub users: Capped<UserAgg>,
    pub sessions: Capped<SessionAgg>,
    pub distinct_users: Distinct,
    /// Earliest and latest event time seen (MAX / MIN when empty).
    pub first: Micros,
    pub last: Micros,
    limits: Limits,
}

impl Mergeable for Capped<Agg> {
    fn merge_from(&mut self, o: &Self) {
        self.merge(o)
    }
}

impl Stats {
    pub fn new(limits: Limits) -> Self {
        Self {
            total: Agg::default(),
            ttft: Dist::default(),
            by_status: BTreeMap::new(),
            by_model: Capped::new(limits.groups),
            by_provider: Capped::new(limits.groups),
            by_property: Capped::with_empty(limits.property_keys, Capped::new(limits.groups)),
            users: Capped::new(limits.users),
            // The report counts every session; live slabs need not.
            sessions: match limits.distinct_exact {
                0 => Capped::new(limits.sessions),
                _ => Capped::new(limits.sessions).counting(),
            },
            distinct_users: Distinct::new(limits.distinct_exact),
            first: Micros::MAX,
            last: Micros::MIN,
            limits,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn record(&mut self, ev: &Event, x: &Sample) {
        let mut keys = Keys::default();
        keys.hash(ev);
        self.record_keyed(ev, x, &keys);
    }

    /// Like [`record`](Self::record) with the event's keys already hashed, so that
    /// the engine hashes each key once per event rather than once per tier.
    pub fn record_keyed(&mut self, ev: &Event, x: &Sample, keys: &Keys) {
        self.record_totals(ev, x);
        self.by_model.entry_hashed(keys.model, ev.model()).record(ev, x);
        self.by_provider.entry_hashed(keys.provider, ev.provider()).record(ev, x);
        for ((k, v), (hk, hv)) in ev.properties.iter().zip(&keys.properties) {
            self.by_property.entry_hashed(*hk, k).entry_hashed(*hv, v).record(ev, x);
        }
        if let (Some(u), Some(h)) = (ev.user(), keys.user) {
            self.users.entry_hashed(h, u).add(&Numbers::of(ev, x));
            self.distinct_users.insert_hash(h);
        }
        if let (Some(s), Some(h)) = (ev.session(), keys.session) {
            self.sessions.entry_hashed(h, s).record(ev, x);
        }
    }

    /// What an event adds outside its groups: the totals, time to first token, its
    /// status and the span of times seen.
    pub(crate) fn record_totals(&mut self, ev: &Event, x: &Sample) {
        self.total.record(ev, x);
        if let Some(t) = x.ttft_ns {
            self.ttft.record(t);
        }
        *self.by_status.entry(ev.status).or_insert(0) += 1;
        self.first = self.first.min(ev.created_at);
        self.last = self.last.max(ev.created_at);
    }

    /// Records only the totals and the `parts` asked for: alert rules each need one
    /// grouping at most, and skipping the rest makes ingest cheaper.
    pub fn record_parts(&mut self, ev: &Event, x: &Sample, keys: &Keys, parts: Parts) {
        self.total.record(ev, x);
        if let Some(t) = x.ttft_ns {
            self.ttft.record(t);
        }
        if parts.models {
            self.by_model.entry_hashed(keys.model, ev.model()).record(ev, x);
        }
        if parts.providers {
            self.by_provider.entry_hashed(keys.provider, ev.provider()).record(ev, x);
        }
        if parts.properties {
            for ((k, v), (hk, hv)) in ev.properties.iter().zip(&keys.properties) {
                self.by_property.entry_hashed(*hk, k).entry_hashed(*hv, v).record(ev, x);
            }
        }
        if let (true, Some(u), Some(h)) = (parts.users, ev.user(), keys.user) {
            self.users.entry_ranked(h, u, UserAgg::rank, rank_of(x.cost, 1)).add(&Numbers::of(ev, x));
        }
        if let (true, Some(h)) = (parts.distinct_users, keys.user) {
            self.distinct_users.insert_hash(h);
        }
        if let (true, Some(s), Some(h)) = (parts.sessions, ev.session(), keys.session) {
            self.sessions.entry_ranked(h, s, SessionAgg::rank, rank_of(x.cost, 1)).record(ev, x);
        }
        self.first = self.first.min(ev.created_at);
        self.last = self.last.max(ev.created_at);
    }

    pub fn merge(&mut self, o: &Stats) {
        self.merge_but_people(o);
        self.users.merge(&o.users);
        self.sessions.merge(&o.sessions);
    }

    /// Like [`merge`](Self::merge), with users and sessions kept by rank (see
    /// [`Capped::entry_ranked`]): for stats filled by [`record_parts`](Self::record_parts).
    pub fn merge_ranked(&mut self, o: &Stats) {
        self.merge_but_people(o);
        self.users.merge_ranked(&o.users, UserAgg::rank);
        self.sessions.merge_ranked(&o.sessions, SessionAgg::rank);
    }

    /// Everything but users and sessions.
    fn merge_but_people(&mut self, o: &Stats) {
        self.total.merge(&o.total);
        self.ttft.merge(&o.ttft);
        for (s, n) in &o.by_status {
            *self.by_status.entry(*s).or_insert(0) += n;
        }
        self.by_model.merge(&o.by_model);
        self.by_provider.merge(&o.by_provider);
        self.by_property.merge(&o.by_property);
        self.distinct_users.merge(&o.distinct_users);
        self.first = self.first.min(o.first);
        self.last = self.last.max(o.last);
    }

    pub fn active_users(&self) -> u64 {
        self.distinct_users.count()
    }

    /// These stats as one time-series point.
    pub fn as_point(&self) -> series::Point {
        series::Point::of(&self.total, self.total.latency.clone(), self.ttft.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    #[test]
    fn amounts_are_converted_alike_on_either_side_of_the_i64_range() {
        for usd in
            [0.0, 1e-12, 0.3, 827.757560856, 9.1999e6, 9.2e6, 9.3e6, 1e9, 1e30, -2.5, -1e30, f64::NAN, f64::INFINITY]
        {
            assert_eq!(Usd::from_f64(usd).0, (usd * 1e12 + 0.5) as i128, "{usd}");
        }
    }

    fn ev(model: &'static str, user: &'static str, status: u16, latency: f64) -> Event<'static> {
        Event {
            created_at: 1_000,
            model: Some(Cow::Borrowed(model)),
            user_id: Some(Cow::Borrowed(user)),
            status,
            latency_ms: Some(latency),
            prompt_tokens: 10,
            completion_tokens: 5,
            ..Default::default()
        }
    }

    #[test]
    fn counts_errors_by_class() {
        let mut s = Stats::new(Limits::REPORT);
        for status in [200, 201, 301, 400, 429, 500, 503, 0] {
            let e = ev("m", "u", status, 1.0);
            s.record(&e, &Sample::new(&e, Cost::Billed(0.001)));
        }
        let t = &s.total;
        assert_eq!((t.requests, t.ok, t.errors, t.e4xx, t.e5xx, t.e429, t.status0), (8, 2, 5, 2, 2, 1, 1));
        assert_eq!(s.by_status.len(), 8);
        assert_eq!(t.cost, Usd(8_000_000_000));
    }

    #[test]
    fn distinct_keys_are_counted_past_the_cap() {
        let mut a: Capped<Agg> = Capped::new(10).counting();
        let mut b: Capped<Agg> = Capped::new(10).counting();
        for i in 0..25 {
            a.entry(&format!("s{i}"));
        }
        for i in 20..40 {
            b.entry(&format!("s{i}"));
        }
        assert_eq!(a.len(), 10);
        assert_eq!(a.distinct_keys(), (25, true));
        a.merge(&b);
        assert_eq!(a.distinct_keys(), (40, true), "s20..s24 are in both");
        let mut small: Capped<Agg> = Capped::new(10);
        small.entry("x");
        assert_eq!(small.distinct_keys(), (1, true));
    }

    #[test]
    fn caps_fold_into_other() {
        let mut s = Stats::new(Limits { groups: 2, users: 3, ..Limits::REPORT });
        for (m, u) in [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4"), ("a", "5")] {
            let e = ev(m, u, 200, 1.0);
            s.record(&e, &Sample::new(&e, Cost::Unpriced));
        }
        assert_eq!(s.by_model.len(), 2);
        assert_eq!(s.by_model.get("a").unwrap().requests, 2);
        assert_eq!(s.by_model.other().unwrap().requests, 2);
        assert_eq!(s.users.len(), 3);
        assert_eq!(s.users.other().unwrap().requests, 2);
        assert_eq!(s.active_users(), 5, "distinct count is not capped by the users table");
        assert_eq!(s.total.unpriced, 5);
    }

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let events: Vec<_> = (0..100u32)
            .map(|i| {
                let mut e = ev(
                    ["x", "y", "z"][i as usize % 3],
                    ["p", "q"][i as usize % 2],
                    [200, 500][(i % 7 == 0) as usize],
                    f64::from(i),
                );
                e.created_at = i64::from(i) * 1000;
                e.session_id = Some(Cow::Owned(format!("s{}", i % 5)));
                e
            })
            .collect();
        let mut one = Stats::new(Limits::REPORT);
        let (mut a, mut b) = (Stats::new(Limits::REPORT), Stats::new(Limits::REPORT));
        for (i, e) in events.iter().enumerate() {
            let x = Sample::new(e, Cost::Priced(0.01 * i as f64));
            one.record(e, &x);
            if i % 2 == 0 { &mut a } else { &mut b }.record(e, &x);
        }
        a.merge(&b);
        assert_eq!(a.total.requests, one.total.requests);
        assert_eq!(a.total.cost, one.total.cost);
        assert_eq!(a.total.latency.moments, one.total.latency.moments);
        assert_eq!(a.by_model.get("y").unwrap().requests, one.by_model.get("y").unwrap().requests);
        assert_eq!(a.users.get("q"), one.users.get("q"));
        assert_eq!(a.sessions.get("s3"), one.sessions.get("s3"));
        assert_eq!((a.first, a.last), (one.first, one.last));
        assert_eq!(a.total.latency.percentile(95.0), one.total.latency.percentile(95.0));
    }

    #[test]
    fn ranked_maps_keep_a_late_big_spender() {
        let mut users: Capped<UserAgg> = Capped::new(4);
        let mut spend = |name: &str, cost: f64| {
            let e = Event { user_id: Some(Cow::Owned(name.to_string())), ..Default::default() };
            let x = Sample::new(&e, crate::pricing::Cost::Billed(cost));
            users.entry_ranked(key_hash(name), name, UserAgg::rank, rank_of(x.cost, 1)).add(&Numbers::of(&e, &x));
        };
        for i in 0..100 {
            spend(&format!("u{i}"), 0.01);
        }
        spend("whale", 5.0);
        spend("whale", 5.0);
        for i in 100..200 {
            spend(&format!("u{i}"), 0.01);
        }
        assert!(users.len() <= 5, "bounded: {}", users.len());
        assert_eq!(users.get("whale").map(|u| (u.requests, u.cost.to_f64())), Some((2, 10.0)));
        let folded = users.other().unwrap();
        assert_eq!(folded.requests + users.iter().map(|(_, u)| u.requests).sum::<u64>(), 202, "nothing lost");

        let mut merged: Capped<UserAgg> = Capped::new(4);
        let mut small: Capped<UserAgg> = Capped::new(1000);
        for i in 0..50 {
            let e = Event { user_id: Some(Cow::Owned(format!("s{i}"))), ..Default::default() };
            small.entry(&format!("s{i}")).add(&Numbers::of(&e, &Sample::new(&e, crate::pricing::Cost::Billed(0.5))));
        }
        merged.merge_ranked(&small, UserAgg::rank);
        merged.merge_ranked(&users, UserAgg::rank);
        merged.compact(UserAgg::rank);
        assert_eq!(merged.len(), 4);
        assert!(merged.get("whale").is_some(), "the biggest spender survives the merge");
    }
}
