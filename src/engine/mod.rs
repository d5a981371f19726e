//! The live engine: rolling windows over a stream of events.
//!
//! Each window length the console can zoom to (1m … 30d) has a tier: a ring of about
//! twelve time slabs, each a [`Stats`] with per-slab caps, and a time series. An event
//! is recorded in the slab of its time in every tier that still holds that time, so
//! out-of-order events land where they belong; slabs that fall out of their window
//! are dropped, so memory depends on the windows and caps, never on how many events
//! have been seen. A window's numbers are the merge of the slabs that overlap it:
//! the window is its length rounded up to whole slabs (at most 1/12 longer).
//!
//! ```text
//!  tier 1h  │s│s│s│s│s│s│s│s│s│s│s│s│▌   12 × 5 min slabs + the current one
//!  tier 24h │  s  │  s  │ … │  s  │▌     12 × 2 h slabs + the current one
//!                                  ^ now (wall clock, or latest event time)
//! ```

mod drill;
mod recent;

use std::collections::VecDeque;
use std::hash::BuildHasherDefault;

use hashbrown::HashMap;
use hashbrown::hash_map::Entry;

use crate::event::Event;
use crate::pricing::{PriceCache, PriceTable, cost_of};
use crate::report::{self, ActiveUsers, IngestReport, Report, Span};
use crate::stats::series::{Point, Series, bucket_for_span};
use crate::stats::{Distinct, HashIsKey, Keys, Limits, Sample, Stats, key_hash};
use crate::time::{MICROS_PER_SEC, Micros};
pub use drill::{Drill, Known};
pub use recent::{RECENT_BYTES, RecentRequest, SLOWEST};
use recent::{Ring, Slowest};

/// What "now" is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Live sources: the wall clock, advanced with [`Engine::tick`].
    Wall,
    /// Replayed files: the latest event time seen.
    EventTime,
}

/// The window lengths a console zooms through by default.
pub const DEFAULT_WINDOWS: [Micros; 7] = [
    60 * MICROS_PER_SEC,
    300 * MICROS_PER_SEC,
    900 * MICROS_PER_SEC,
    3_600 * MICROS_PER_SEC,
    21_600 * MICROS_PER_SEC,
    86_400 * MICROS_PER_SEC,
    604_800 * MICROS_PER_SEC,
];

#[derive(Debug, Clone)]
pub struct Config {
    /// Window lengths kept, each in its own tier (1 minute to 30 days).
    pub windows: Vec<Micros>,
    pub slab_limits: Limits,
    /// How many recent requests the request list keeps.
    pub recent: usize,
    pub clock: Clock,
}

impl Default for Config {
    fn default() -> Self {
        Config { windows: DEFAULT_WINDOWS.to_vec(), slab_limits: Limits::LIVE_SLAB, recent: 10_000, clock: Clock::Wall }
    }
}

/// Slabs per window: the window's edge moves in steps of 1/12 of its length.
const SLABS: i64 = 12;

fn slab_width(window: Micros) -> Micros {
    (window / SLABS).max(MICROS_PER_SEC)
}

/// Users whose last request time the engine tracks, for exact active-user counts.
const EXACT_USERS: usize = 1_000_000;

/// First and last request time of every user seen within the longest window (24 bytes
/// a user): the active users of any window are counted exactly, to the microsecond,
/// and users new to the window are known.
/// Past [`EXACT_USERS`] new users are no longer tracked and counts come from the
/// slabs' HyperLogLog sketches until the untracked users have aged out.
struct LastSeen {
    /// user hash → (first seen, last seen)
    map: HashMap<u64, (Micros, Micros), BuildHasherDefault<HashIsKey>>,
    /// When a user was last turned away for lack of room.
    overflow_at: Option<Micros>,
    pruned_at: Micros,
}

impl LastSeen {
    fn record(&mut self, hash: u64, t: Micros) {
        let full = self.map.len() >= EXACT_USERS;
        match self.map.entry(hash) {
            Entry::Occupied(mut o) => {
                let (first, last) = o.get_mut();
                *first = (*first).min(t);
                *last = (*last).max(t);
            }
            Entry::Vacant(v) if !full => {
                v.insert((t, t));
            }
            Entry::Vacant(_) => self.overflow_at = Some(t),
        }
    }

    /// Drops users not seen within `horizon`, at most once per `every`.
    fn prune(&mut self, now: Micros, longest: Micros, every: Micros) {
        if now - self.pruned_at >= every {
            self.pruned_at = now;
            self.map.retain(|_, (_, last)| *last > now - longest);
            if self.overflow_at.is_some_and(|o| o <= now - longest) {
                self.overflow_at = None;
            }
        }
    }

    /// Exact count of users seen after `horizon`, if every such user is tracked.
    fn count_since(&self, horizon: Micros) -> Option<u64> {
        if self.overflow_at.is_some_and(|o| o > horizon) {
            return None;
        }
        Some(self.map.values().filter(|(_, last)| *last > horizon).count() as u64)
    }
}

struct Slab {
    start: Micros,
    stats: Stats,
    slowest: Slowest,
}

impl Slab {
    fn new(start: Micros, limits: Limits) -> Slab {
        Slab { start, stats: Stats::new(limits), slowest: Slowest::default() }
    }

    fn record(&mut self, ev: &Event, x: &Sample, keys: &Keys) {
        self.stats.record_keyed(ev, x, keys);
        self.slowest.offer(ev, x);
    }
}

struct Tier {
    window: Micros,
    width: Micros,
    /// Sorted by start; the oldest first.
    slabs: VecDeque<Slab>,
    series: Series,
    /// The distinct-user sketches of slabs that left the window, kept one more window
    /// (for the change in active users against the previous window).
    past_users: VecDeque<(Micros, Distinct)>,
}

impl Tier {
    fn new(window: Micros) -> Tier {
        Tier {
            window,
            width: slab_width(window),
            slabs: VecDeque::new(),
            series: Series::new(bucket_for_span(window)),
            past_users: VecDeque::new(),
        }
    }

    /// Whether time `t` is still inside this tier's slabs at `now`.
    fn holds(&self, t: Micros, now: Micros) -> bool {
        t > now - self.window - self.width
    }

    /// Whether time `t` is still inside this tier's series (two windows).
    fn holds_in_series(&self, t: Micros, now: Micros) -> bool {
        t > now - 2 * self.window - self.width
    }

    /// The slab holding time `t`, created if need be.
    fn slab_at(&mut self, t: Micros, limits: Limits) -> &mut Slab {
        let start = self.slab_start(t);
        // Events arrive mostly in order: look from the newest slab backwards.
        let pos = self.slabs.iter().rposition(|s| s.start <= start);
        match pos {
            Some(i) if self.slabs[i].start == start => &mut self.slabs[i],
            _ => {
                let at = pos.map_or(0, |i| i + 1);
                self.slabs.insert(at, Slab::new(start, limits));
                &mut self.slabs[at]
            }
        }
    }

    fn has_slab(&self, start: Micros) -> bool {
        self.slabs.iter().rev().any(|s| s.start == start)
    }

    /// Puts a whole slab in its place (there is none at its start yet).
    fn insert_slab(&mut self, slab: Slab) {
        let at = self.slabs.iter().rposition(|s| s.start < slab.start).map_or(0, |i| i + 1);
        self.slabs.insert(at, slab);
    }

    /// The slabs overlapping the window of length `window` ending at `now`.
    fn in_window(&self, window: Micros, now: Micros) -> impl Iterator<Item = &Slab> {
        let horizon = now - window;
        self.slabs.iter().filter(move |s| s.start + self.width > horizon)
    }

    fn record(&mut self, t: Micros, ev: &Event, x: &Sample, keys: &Keys, now: Micros, limits: Limits) {
        if self.holds(t, now) {
            self.slab_at(t, limits).record(ev, x, keys);
        }
    }

    /// The start of the slab that holds time `t`.
    fn slab_start(&self, t: Micros) -> Micros {
        t.div_euclid(self.width) * self.width
    }

    fn evict(&mut self, now: Micros) {
        let horizon = now - self.window;
        while self.slabs.front().is_some_and(|s| s.start + self.width <= horizon) {
            if let Some(slab) = self.slabs.pop_front() {
                self.past_users.push_back((slab.start, slab.stats.distinct_users));
            }
        }
        while self.past_users.front().is_some_and(|(start, _)| *start + self.width <= horizon - self.window) {
            self.past_users.pop_front();
        }
        // The series keeps the window before too, for the screen's ▲/▼ changes.
        self.series.prune_before(horizon - self.window - self.width);
    }
}

/// Counts the engine keeps about what it was fed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineCounts {
    pub events: u64,
    /// Older than the longest window when they arrived: counted, not recorded.
    pub late: u64,
    /// Stamped after "now" (clock skew): recorded as arriving now.
    pub future: u64,
}

/// The events of the newest moment: recorded once, and merged into the slab of every
/// tier when the moment is over (or read with them until then). Recording each event
/// into every tier's slab was most of the live ingest's work (seven windows, seven
/// times the same groups); a moment is short enough (the finest slab, 5 s by default)
/// that merging it is cheap next to that.
struct Moment {
    /// The times it covers, `[from, to)`: inside one slab of every tier.
    from: Micros,
    to: Micros,
    slab: Slab,
    /// Its chart buckets, as fine as the finest tier's (their widths divide each other).
    series: Series,
}

impl Moment {
    /// The moment holding time `t`: the overlap of the slabs holding it in every tier.
    fn at(t: Micros, tiers: &[Tier], limits: Limits) -> Moment {
        let from = tiers.iter().map(|tier| tier.slab_start(t)).max().unwrap_or(t);
        let to = tiers.iter().map(|tier| tier.slab_start(t) + tier.width).min().unwrap_or(t + 1);
        let width = tiers.iter().map(|tier| tier.series.width()).min().unwrap_or(MICROS_PER_SEC);
        Moment { from, to, slab: Slab::new(from, limits), series: Series::new(width) }
    }

    fn record(&mut self, t: Micros, ev: &Event, x: &Sample, keys: &Keys) {
        self.slab.record(ev, x, keys);
        self.series.record_at(t, ev, x);
    }
}

pub struct Engine {
    tiers: Vec<Tier>,
    /// Events of the newest moment, not yet merged into the tiers' slabs.
    moment: Option<Moment>,
    recent: Ring,
    now: Micros,
    /// Since when traffic has been watched: the engine's start (wall clock) or the
    /// earliest event recorded, whichever is earlier. Rates divide by the time
    /// watched, not by a window longer than that.
    since: Micros,
    clock: Clock,
    limits: Limits,
    prices: PriceTable,
    cache: PriceCache,
    counts: EngineCounts,
    last_seen: LastSeen,
    /// Reused per event: the group keys hashed once for all tiers.
    keys: Keys,
}

impl Engine {
    pub fn new(mut config: Config, prices: PriceTable, now: Micros) -> Engine {
        config.windows.sort_unstable();
        config.windows.dedup();
        Engine {
            tiers: config.windows.iter().map(|&w| Tier::new(w)).collect(),
            moment: None,
            recent: Ring::new(config.recent),
            now,
            since: match config.clock {
                Clock::Wall => now,
                Clock::EventTime => Micros::MAX,
            },
            clock: config.clock,
            limits: config.slab_limits,
            prices,
            cache: PriceCache::default(),
            counts: EngineCounts::default(),
            last_seen: LastSeen { map: HashMap::default(), overflow_at: None, pruned_at: now },
            keys: Keys::default(),
        }
    }

    pub fn now(&self) -> Micros {
        self.now
    }

    pub fn counts(&self) -> EngineCounts {
        self.counts
    }

    /// The window lengths this engine keeps.
    pub fn windows(&self) -> impl Iterator<Item = Micros> + '_ {
        self.tiers.iter().map(|t| t.window)
    }

    /// Moves "now" forward (never back) and drops what fell out of every window.
    pub fn tick(&mut self, now: Micros) {
        if now > self.now {
            self.now = now;
            if self.moment.as_ref().is_some_and(|m| now >= m.to) {
                self.close_moment();
            }
            for tier in &mut self.tiers {
                tier.evict(now);
            }
            if let (Some(short), Some(long)) = (self.tiers.first(), self.tiers.last()) {
                self.last_seen.prune(now, long.window, short.width.max(long.width / 4));
            }
        }
    }

    pub fn ingest(&mut self, ev: &Event) {
        let mut keys = std::mem::take(&mut self.keys);
        keys.hash(ev);
        let price = self.cache.get_keyed(&self.prices, ev, &keys);
        let x = Sample::new(ev, cost_of(ev, price.as_ref()));
        self.ingest_sampled(ev, &x, &keys);
        self.keys = keys;
    }

    /// Counts an event whose cost and group keys the caller has worked out (once for
    /// several engines and the alert rules).
    pub fn ingest_sampled(&mut self, ev: &Event, x: &Sample, keys: &Keys) {
        self.counts.events += 1;
        if self.clock == Clock::EventTime {
            self.tick(ev.created_at);
        }
        let mut t = ev.created_at;
        if t > self.now {
            self.counts.future += 1;
            t = self.now;
        }
        if !self.tiers.iter().any(|tier| tier.holds(t, self.now)) {
            self.counts.late += 1;
            return;
        }
        match &mut self.moment {
            Some(m) if (m.from..m.to).contains(&t) => m.record(t, ev, x, keys),
            // Older than the moment (out of order): straight into the tiers.
            Some(m) if t < m.from => {
                for tier in &mut self.tiers {
                    if tier.holds_in_series(t, self.now) {
                        tier.series.record_at(t, ev, x);
                    }
                    tier.record(t, ev, x, keys, self.now, self.limits);
                }
            }
            _ => {
                self.close_moment();
                let mut m = Moment::at(t, &self.tiers, self.limits);
                m.record(t, ev, x, keys);
                self.moment = Some(m);
            }
        }
        if let Some(h) = keys.user {
            self.last_seen.record(h, t);
        }
        self.since = self.since.min(t);
        self.recent.push(ev, x);
    }

    /// Merges the moment into the slab of every tier that still holds it.
    fn close_moment(&mut self) {
        let Some(m) = self.moment.take() else { return };
        let now = self.now;
        // The finest tier's slab is the moment's own when no late event made it first:
        // it moves in whole instead of being merged.
        let owner = self
            .tiers
            .iter()
            .position(|tier| tier.width == m.to - m.from && tier.holds(m.to - 1, now) && !tier.has_slab(m.from));
        for (i, tier) in self.tiers.iter_mut().enumerate() {
            if tier.holds_in_series(m.to - 1, now) {
                tier.series.merge_finer(&m.series);
            }
            if Some(i) != owner && tier.holds(m.to - 1, now) {
                let slab = tier.slab_at(m.from, self.limits);
                slab.stats.merge(&m.slab.stats);
                slab.slowest.merge(&m.slab.slowest);
            }
        }
        if let Some(i) = owner {
            self.tiers[i].insert_slab(m.slab);
        }
    }

    /// The slabs of `tier` overlapping the window, then the moment not yet merged into
    /// them, each with the start of the tier's slab it belongs to.
    fn slabs_in<'a>(&'a self, tier: &'a Tier, window: Micros) -> impl Iterator<Item = (Micros, &'a Slab)> {
        let moment = self.moment.as_ref().map(|m| (tier.slab_start(m.from), &m.slab));
        tier.in_window(window, self.now).map(|s| (s.start, s)).chain(moment)
    }

    /// Adds requests that a source aggregated itself (say a fleet's pre-computed
    /// minute), as if their events had all happened at time `t`.
    pub fn ingest_aggregate(&mut self, t: Micros, stats: &Stats) {
        self.counts.events += stats.total.requests;
        if self.clock == Clock::EventTime {
            self.tick(t);
        }
        let t = t.min(self.now);
        if !self.tiers.iter().any(|tier| tier.holds(t, self.now)) {
            self.counts.late += stats.total.requests;
            return;
        }
        self.since = self.since.min(t);
        let point = stats.as_point();
        for tier in &mut self.tiers {
            if tier.holds(t, self.now) {
                tier.slab_at(t, self.limits).stats.merge(stats);
                tier.series.merge_point_at(t, &point);
            }
        }
        for (user, agg) in stats.users.iter() {
            self.last_seen.record(key_hash(user), agg.last_active.min(self.now));
        }
        if stats.users.other().is_some() {
            // Users folded away upstream cannot be counted exactly.
            self.last_seen.overflow_at = Some(t);
        }
    }

    /// Recent requests, oldest first.
    pub fn recent(&self) -> impl DoubleEndedIterator<Item = &RecentRequest> + ExactSizeIterator {
        self.recent.items.iter()
    }

    /// Since when the recent requests are all there: the engine's start while none
    /// has been let go, then the oldest one kept.
    pub fn recent_since(&self) -> Micros {
        match (self.recent.dropped, self.recent.items.front()) {
            (true, Some(oldest)) => oldest.created_at,
            (true, None) => self.now,
            (false, _) => self.since.min(self.now),
        }
    }

    /// Since when traffic has been watched (see [`Engine::covered`]).
    pub fn since(&self) -> Micros {
        self.since.min(self.now)
    }

    /// Counts time watched from `t` (a view that starts from the recent requests).
    pub fn set_since(&mut self, t: Micros) {
        self.since = t;
    }

    /// The tier that answers for a window: the smallest kept window covering it.
    fn tier_for(&self, window: Micros) -> &Tier {
        self.tiers.iter().find(|t| t.window >= window).or(self.tiers.last()).expect("an engine has at least one window")
    }

    /// The span a window's numbers cover: the window rounded out to whole slabs, or
    /// less when traffic has been watched for less time (its start is exclusive).
    pub fn covered(&self, window: Micros) -> Span {
        // The slabs merged for a window reach back to the start of the one holding
        // its start: that is the span its numbers cover.
        let width = self.tier_for(window).width;
        let first_slab = (self.now - window).div_euclid(width) * width;
        let start = first_slab.max(self.since.saturating_sub(1)).min(self.now);
        Span { start, end: self.now, start_inclusive: false }
    }

    /// The slowest requests of the window, slowest first (exact up to [`SLOWEST`]).
    pub fn slowest(&self, window: Micros) -> Vec<&RecentRequest> {
        let tier = self.tier_for(window);
        let horizon = self.now - window;
        let mut all: Vec<&RecentRequest> = self
            .slabs_in(tier, window)
            .flat_map(|(_, s)| s.slowest.iter())
            .filter(|r| r.created_at > horizon)
            .collect();
        all.sort_by(|a, b| b.latency_ms.unwrap_or(0.0).total_cmp(&a.latency_ms.unwrap_or(0.0)));
        all.truncate(SLOWEST);
        all
    }

    /// The merged numbers of the window of length `window` ending now (the tier of the
    /// smallest kept window that covers it).
    pub fn window_stats(&self, window: Micros) -> (Stats, Series, Span, ActiveUsers) {
        let tier = self.tier_for(window);
        let horizon = self.now - window;
        let mut stats = Stats::new(Limits::REPORT);
        for (_, slab) in self.slabs_in(tier, window) {
            stats.merge(&slab.stats);
        }
        let span = self.covered(window);
        let users = match self.last_seen.count_since(horizon) {
            Some(count) => ActiveUsers { count, exact: true },
            None => ActiveUsers::of(&stats),
        };
        let mut series = tier.series.clone();
        if let Some(m) = &self.moment {
            series.merge_finer(&m.series);
        }
        (stats, series, span, users)
    }

    /// When a user was first seen (within the longest window kept).
    pub fn first_seen(&self, user: &str) -> Option<Micros> {
        self.last_seen.map.get(&key_hash(user)).map(|(first, _)| *first)
    }

    /// A number per slab of the window ending now, oldest first (a row's sparkline).
    pub fn trend(&self, window: Micros, pick: impl Fn(&Stats) -> u64) -> Vec<u64> {
        let mut out: Vec<(Micros, u64)> = Vec::new();
        for (start, slab) in self.slabs_in(self.tier_for(window), window) {
            match out.last_mut() {
                Some((s, n)) if *s == start => *n += pick(&slab.stats),
                _ => out.push((start, pick(&slab.stats))),
            }
        }
        out.into_iter().map(|(_, n)| n).collect()
    }

    /// The window of length `window` before the current one, as one series point (for
    /// the change shown on each KPI tile). Time-bucketed, so edges are bucket-aligned.
    pub fn previous(&self, window: Micros) -> Point {
        self.tier_for(window).series.merged(self.now - 2 * window, self.now - window)
    }

    /// Active users of the window before the current one: an estimate (HyperLogLog,
    /// about 0.4%) from the sketches of the slabs that left, or `None` before there
    /// is a whole previous window.
    pub fn previous_users(&self, window: Micros) -> Option<u64> {
        let tier = self.tier_for(window);
        let (from, to) = (self.now - 2 * window, self.now - window);
        let mut users = Distinct::new(0);
        let mut any = false;
        let slabs = tier
            .past_users
            .iter()
            .map(|(s, d)| (*s, d))
            .chain(tier.slabs.iter().map(|s| (s.start, &s.stats.distinct_users)));
        for (start, d) in slabs {
            if start + tier.width > from && start < to {
                users.merge(d);
                any = true;
            }
        }
        any.then(|| users.count())
    }

    /// The same report `tokentop report` prints, for the window ending now.
    pub fn report(&self, window: Micros, opts: &report::Options, mut ingest: IngestReport) -> Report {
        let (stats, series, span, users) = self.window_stats(window);
        ingest.events = ingest.events.max(self.counts.events);
        ingest.late = self.counts.late;
        Report::build(&stats, &series, Some(span), users, ingest, opts)
    }

    /// Slabs held across all tiers (bounded by the windows, whatever the traffic).
    pub fn slab_count(&self) -> usize {
        self.tiers.iter().map(|t| t.slabs.len()).sum::<usize>() + usize::from(self.moment.is_some())
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    const S: Micros = MICROS_PER_SEC;

    fn ev(t: Micros, user: &str, latency: f64) -> Event<'static> {
        Event {
            created_at: t,
            model: Some(Cow::Borrowed("gpt-4o")),
            provider: Some(Cow::Borrowed("openai")),
            user_id: Some(Cow::Owned(user.to_string())),
            latency_ms: Some(latency),
            cost_usd: Some(0.25),
            status: 200,
            ..Default::default()
        }
    }

    fn engine(clock: Clock, now: Micros) -> Engine {
        let config = Config { windows: vec![60 * S, 3_600 * S], clock, recent: 3, ..Config::default() };
        Engine::new(config, PriceTable::default(), now)
    }

    #[test]
    fn slab_widths() {
        assert_eq!(slab_width(60 * S), 5 * S);
        assert_eq!(slab_width(3_600 * S), 300 * S);
        assert_eq!(slab_width(86_400 * S), 7_200 * S);
        assert_eq!(slab_width(30 * 86_400 * S), 216_000 * S);
    }

    #[test]
    fn windows_roll_with_the_clock() {
        let mut e = engine(Clock::Wall, 1_000 * S);
        for i in 0..100 {
            e.ingest(&ev(1_000 * S - i * S, "u", 10.0));
        }
        let (m, ..) = e.window_stats(60 * S);
        // 60 s rounded up to 5 s slabs: events from t-0 to t-64 fall in the overlapping slabs.
        assert!((60..=65).contains(&m.total.requests), "{}", m.total.requests);
        let (h, ..) = e.window_stats(3_600 * S);
        assert_eq!(h.total.requests, 100);
        assert_eq!(h.total.cost.to_f64(), 25.0);

        e.tick(1_000 * S + 120 * S);
        assert_eq!(e.window_stats(60 * S).0.total.requests, 0);
        assert_eq!(e.window_stats(3_600 * S).0.total.requests, 100);
        e.tick(1_000 * S + 4_000 * S);
        assert_eq!(e.window_stats(3_600 * S).0.total.requests, 0);
        assert_eq!(e.slab_count(), 0, "old slabs are dropped");
    }

    #[test]
    fn late_and_future_events_are_counted() {
        let mut e = engine(Clock::Wall, 10_000 * S);
        e.ingest(&ev(10_000 * S - 5_000 * S, "u", 1.0));
        e.ingest(&ev(10_000 * S + 30 * S, "u", 1.0));
        e.ingest(&ev(10_000 * S - 30 * S, "u", 1.0));
        assert_eq!(e.counts(), EngineCounts { events: 3, late: 1, future: 1 });
        assert_eq!(e.window_stats(60 * S).0.total.requests, 2);
    }

    #[test]
    fn event_time_clock_follows_the_data() {
        let mut e = engine(Clock::EventTime, 0);
        for i in 0..10 {
            e.ingest(&ev(100 * S + i * S, "u", 1.0));
        }
        assert_eq!(e.now(), 109 * S);
        assert_eq!(e.window_stats(60 * S).0.total.requests, 10);
    }

    #[test]
    fn out_of_order_events_land_in_their_slab() {
        let mut e = engine(Clock::Wall, 1_000 * S);
        e.ingest(&ev(990 * S, "a", 1.0));
        e.ingest(&ev(950 * S, "b", 1.0));
        e.ingest(&ev(995 * S, "c", 1.0));
        // The latest event is in the moment not yet merged; it reads as its slab.
        let starts: Vec<_> = e.slabs_in(&e.tiers[0], 60 * S).map(|(start, _)| start / S).collect();
        assert_eq!(starts, vec![950, 990, 995]);
        e.tick(1_005 * S);
        let starts: Vec<_> = e.tiers[0].slabs.iter().map(|s| s.start / S).collect();
        assert_eq!(starts, vec![950, 990, 995], "merged into its slab once the moment is over");
        assert_eq!(e.window_stats(60 * S).3, ActiveUsers { count: 3, exact: true });
        assert_eq!(e.window_stats(60 * S).0.active_users(), 3, "the slabs' sketches agree");
    }

    #[test]
    fn active_users_are_exact_to_the_microsecond() {
        let mut e = engine(Clock::Wall, 1_000 * S);
        e.ingest(&ev(1_000 * S - 60 * S, "old", 1.0));
        e.ingest(&ev(1_000 * S - 60 * S + 1, "edge", 1.0));
        e.ingest(&ev(1_000 * S, "new", 1.0));
        // "old" is in an overlapping slab but not in the last 60 s.
        assert_eq!(e.window_stats(60 * S).3, ActiveUsers { count: 2, exact: true });
        assert_eq!(e.window_stats(3_600 * S).3, ActiveUsers { count: 3, exact: true });
    }

    #[test]
    fn pre_aggregated_data_merges_like_events() {
        let events: Vec<_> =
            (0..20i32).map(|i| ev(1_000 * S - i64::from(i) * S, &format!("u{}", i % 4), f64::from(i))).collect();
        let mut one = engine(Clock::Wall, 1_000 * S);
        events.iter().for_each(|e| one.ingest(e));
        // The same events, aggregated upstream per 10 s and handed over as two parts.
        let mut two = engine(Clock::Wall, 1_000 * S);
        for chunk in events.chunks(10) {
            let mut part = Stats::new(Limits::REPORT);
            for e in chunk {
                part.record(e, &Sample::new(e, cost_of(e, None)));
            }
            two.ingest_aggregate(chunk[0].created_at, &part);
        }
        let (a, b) = (
            one.report(3_600 * S, &report::Options::default(), IngestReport::default()),
            two.report(3_600 * S, &report::Options::default(), IngestReport::default()),
        );
        assert_eq!(a.summary.total_requests, b.summary.total_requests);
        assert_eq!(a.summary.total_cost, b.summary.total_cost);
        assert_eq!(a.summary.active_users, b.summary.active_users);
        assert_eq!(a.latency.p95, b.latency.p95);
        assert_eq!(b.series.iter().map(|p| p.requests).sum::<u64>(), 20);
    }

    #[test]
    fn the_previous_window_is_kept_for_changes() {
        let mut e = engine(Clock::Wall, 10_000 * S);
        for i in 0..120 {
            e.ingest(&ev(10_000 * S - i * S, "u", 10.0));
        }
        // 60 events in the last minute and 60 in the minute before.
        assert_eq!(e.previous(60 * S).requests, 60);
        assert_eq!(e.window_stats(60 * S).1.merged(10_000 * S - 60 * S, 10_000 * S).requests, 60);
    }

    #[test]
    fn previous_window_users_come_from_kept_sketches() {
        // 30 users in the minute before last (arriving as they happen), 10 in the last one.
        let mut e = engine(Clock::Wall, 10_000 * S - 60 * S);
        for i in 0..30 {
            e.ingest(&ev(10_000 * S - 90 * S + i * S, &format!("old-{i}"), 1.0));
        }
        e.tick(10_000 * S);
        for i in 0..10 {
            e.ingest(&ev(10_000 * S - 20 * S + i * S, &format!("new-{i}"), 1.0));
        }
        e.tick(10_000 * S + 1);
        assert_eq!(e.previous_users(60 * S), Some(30));
        assert_eq!(e.window_stats(60 * S).3.count, 10);
    }

    #[test]
    fn recent_ring_is_bounded_and_reuses_buffers() {
        let mut e = engine(Clock::Wall, 1_000 * S);
        for i in 0..5 {
            e.ingest(&ev(1_000 * S, &format!("user-{i}"), f64::from(i)));
        }
        let users: Vec<_> = e.recent().map(|r| r.user_id.as_str()).collect();
        assert_eq!(users, vec!["user-2", "user-3", "user-4"]);
        assert_eq!(e.recent().last().unwrap().cost, 0.25);
    }

    #[test]
    fn recent_ring_is_bounded_in_bytes() {
        let config = Config { windows: vec![60 * S], recent: 20_000, ..Config::default() };
        let mut e = Engine::new(config, PriceTable::default(), 1_000 * S);
        let value = "v".repeat(crate::event::MAX_NAME_BYTES);
        let mut big = ev(1_000 * S, "u", 1.0);
        big.properties = (0..200).map(|i| (Cow::Owned(format!("key-{i}")), Cow::Owned(value.clone()))).collect();
        for _ in 0..3_000 {
            e.ingest(&big);
        }
        // 3,000 such requests hold about 170 MB: the ring keeps fewer.
        assert!(e.recent.bytes <= RECENT_BYTES, "{}", e.recent.bytes);
        assert!(e.recent().len() < 3_000 && e.recent().len() > 100, "{}", e.recent().len());
        // Small requests again: the ring fills up to its count and gives the bytes back.
        for i in 0..20_000 {
            e.ingest(&ev(1_000 * S, &format!("u{i}"), 1.0));
        }
        assert_eq!(e.recent().len(), 20_000);
        assert!(e.recent.bytes < 2 << 20, "{}", e.recent.bytes);
    }

    /// Every window's numbers are those of its slabs' events, whether the latest are
    /// still in the moment or merged (out-of-order events included), read at any time.
    #[test]
    fn the_moment_reads_as_if_recorded_in_every_slab() {
        let start = 100_000 * S;
        let mut synth = crate::synth::Synth::new(3, start, 400.0).with_cardinality(50, 200);
        let mut e = Engine::new(Config { clock: Clock::EventTime, ..Config::default() }, PriceTable::default(), start);
        let mut all: Vec<Event<'static>> = Vec::new();
        for i in 0..40_000 {
            let mut ev = synth.next_event();
            if i % 97 == 0 {
                ev.created_at -= 7 * S; // a late one, into an older slab
            }
            e.ingest(&ev);
            all.push(ev);
            if i % 9_973 == 0 || i == 39_999 {
                for &window in &DEFAULT_WINDOWS[..4] {
                    let span = e.covered(window);
                    let mut want = Stats::new(Limits::REPORT);
                    let (got, got_series, ..) = e.window_stats(window);
                    let mut want_series = Series::new(got_series.width());
                    let (prices, mut cache) = (PriceTable::default(), PriceCache::default());
                    for ev in &all {
                        let price = cache.get(&prices, ev.provider(), ev.model());
                        let x = Sample::new(ev, cost_of(ev, price.as_ref()));
                        want_series.record(ev, &x);
                        if ev.created_at > span.start && ev.created_at <= span.end {
                            want.record(ev, &x);
                        }
                    }
                    // The chart: every bucket of the two windows it keeps.
                    let from = e.now() - 2 * window + got_series.width();
                    for ((t, a), (_, b)) in
                        got_series.points(from, e.now()).iter().zip(want_series.points(from, e.now()))
                    {
                        let (a, b) = ((a.requests, a.cost, a.latency.count()), (b.requests, b.cost, b.latency.count()));
                        assert_eq!(a, b, "{window} bucket {t} at {i}");
                    }
                    assert_eq!(got.total.requests, want.total.requests, "{window} at {i}");
                    assert_eq!(got.total.cost, want.total.cost, "{window} at {i}");
                    assert_eq!(got.total.latency.percentile(99.0), want.total.latency.percentile(99.0));
                    for (model, a) in want.by_model.iter() {
                        assert_eq!(got.by_model.get(model).map(|g| g.requests), Some(a.requests), "{model}");
                    }
                    let slowest = all
                        .iter()
                        .filter(|ev| ev.created_at > e.now() - window && ev.created_at <= span.end)
                        .filter_map(|ev| ev.latency_ms)
                        .fold(0.0, f64::max);
                    assert_eq!(e.slowest(window).first().and_then(|r| r.latency_ms), Some(slowest));
                }
            }
        }
    }

    #[test]
    fn report_matches_the_engine() {
        let mut e = engine(Clock::Wall, 1_000 * S);
        for i in 0..10 {
            e.ingest(&ev(1_000 * S - i * S, &format!("u{}", i % 3), 100.0));
        }
        let r = e.report(60 * S, &report::Options::default(), IngestReport::default());
        assert_eq!(r.summary.total_requests, 10);
        assert_eq!(r.summary.active_users, 3);
        assert!((r.summary.total_cost - 2.5).abs() < 1e-9);
        assert_eq!(r.ingest.events, 10);
    }

    #[test]
    fn slowest_covers_the_whole_window() {
        let mut e = engine(Clock::Wall, 10_000 * S);
        // 3,000 requests over the last 50 minutes; the slowest is the oldest.
        for i in 0..3_000i64 {
            e.ingest(&ev(10_000 * S - 3_000 * S + i * S, "u", 100_000.0 - i as f64));
        }
        let top = e.slowest(3_600 * S);
        assert_eq!(top.len(), SLOWEST);
        let latencies: Vec<f64> = top.iter().map(|r| r.latency_ms.unwrap()).collect();
        let expected: Vec<f64> = (0..SLOWEST).map(|i| 100_000.0 - i as f64).collect();
        assert_eq!(latencies, expected, "exactly the window's slowest, slowest first");
        // The last minute has only the fastest.
        assert_eq!(e.slowest(60 * S)[0].latency_ms, Some(100_000.0 - 2_941.0));
    }

    #[test]
    fn rates_divide_by_the_time_watched() {
        let mut e = engine(Clock::Wall, 10_000 * S);
        e.tick(10_000 * S + 100 * S);
        let span = e.covered(3_600 * S);
        assert!((span.seconds() - 100.0).abs() < 1e-5, "started 100 s ago: not a whole hour");
        // Older events (a log read from its start) widen what was watched.
        e.ingest(&ev(10_000 * S - 1_000 * S, "u", 1.0));
        assert!((e.covered(3_600 * S).seconds() - 1_100.0).abs() < 1e-5);
        e.tick(20_000 * S);
        // Watched long enough: the hour's slabs, from the start of the one holding
        // 16,400 s (5-minute slabs: 16,200 s).
        assert_eq!(e.covered(3_600 * S).seconds(), 3_800.0);
    }
}
