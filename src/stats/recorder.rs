//! Recording events a little late, so that waiting for memory overlaps with parsing.
//!
//! With thousands of users, sessions and property values, most of an event's groups
//! are out of cache: recorded at once, the event waits for memory five or six times
//! in a row (taking the users, sessions and a 1,000-value property out of a file of
//! 5,000 users and 20,000 sessions took a third off a one-thread `report`).
//! The [`Recorder`] finds an event's groups while its strings are at hand (the maps'
//! indexes are small and stay in cache), asks the CPU to fetch the groups' values,
//! fetches the latency histograms' counters one event later (once a group's value
//! says where its counters are) and adds the event's numbers one event after that.
//! Meanwhile the next lines are parsed, and the memory arrives in the background.

use super::{Agg, Capped, Event, Keys, Mergeable, Numbers, Sample, Slot, Stats};

/// Events with more properties than this are recorded at once.
const MAX_PROPERTIES: usize = 8;

/// Maps of up to this many groups (an aggregate with its histogram is ~4 KiB) are
/// left to the cache.
const LARGE: usize = 16;

/// An event's numbers and where in a [`Stats`] they go.
#[derive(Debug, Clone, Copy)]
struct Landing {
    n: Numbers,
    model: Slot,
    provider: Slot,
    /// (key, value) slots per property.
    properties: [(Slot, Slot); MAX_PROPERTIES],
    property_count: u8,
    user: Option<Slot>,
    session: Option<Slot>,
}

/// Records events into one [`Stats`], each two events late; [`finish`](Self::finish)
/// records the last ones. The stats are complete only after `finish`, and the slots
/// held stay valid because the stats' maps only grow meanwhile (no ranked maps here).
#[derive(Debug, Default)]
pub struct Recorder {
    /// The last landings, the `landed`th (counting from 0) at `landed % 3`: kept in
    /// place rather than shifted, so a landing is written once.
    ring: [Option<Landing>; 3],
    landed: usize,
    /// Sessions kept without a name yet: a later request with a name names them.
    unnamed: hashbrown::HashSet<u64>,
}

impl Recorder {
    /// Like [`Stats::record_keyed`], the event's numbers added two events later.
    #[inline]
    pub fn record(&mut self, stats: &mut Stats, ev: &Event, x: &Sample, keys: &Keys) {
        if ev.properties.len() > MAX_PROPERTIES {
            stats.record_keyed(ev, x, keys);
            if let (Some(s), Some(h)) = (ev.session(), keys.session) {
                let slot = stats.sessions.slot(h, s).0;
                if stats.sessions.peek(slot).is_some_and(|a| a.name.is_none()) {
                    self.unnamed.insert(h);
                }
            }
            return;
        }
        let at = self.landed % 3;
        self.ring[at] = Some(self.land(stats, ev, x, keys));
        self.landed += 1;
        let [newest, middle, oldest] = [at, (at + 2) % 3, (at + 1) % 3].map(|i| &self.ring[i]);
        if let Some(l) = newest {
            fetch_values(stats, l);
        }
        if let Some(l) = middle {
            fetch_counters(stats, l);
        }
        if let Some(l) = oldest {
            add(stats, l);
        }
        self.ring[(at + 1) % 3] = None;
    }

    /// Records the events still waiting.
    pub fn finish(&mut self, stats: &mut Stats) {
        // The older first: a session is named by its first request with a name.
        for i in [self.landed + 1, self.landed + 2] {
            if let Some(l) = self.ring[i % 3].take() {
                add(stats, &l);
            }
        }
    }

    /// Records what is cheap now (the totals, in cache), finds the groups (admitting
    /// new keys, which needs their names) and names new sessions.
    fn land(&mut self, stats: &mut Stats, ev: &Event, x: &Sample, keys: &Keys) -> Landing {
        stats.record_totals(ev, x);
        let mut properties = [(Slot::OTHER, Slot::OTHER); MAX_PROPERTIES];
        for (((k, v), (hk, hv)), out) in ev.properties.iter().zip(&keys.properties).zip(&mut properties) {
            let key = stats.by_property.slot(*hk, k).0;
            *out = (key, stats.by_property.at(key).slot(*hv, v).0);
        }
        let user = match (ev.user(), keys.user) {
            (Some(u), Some(h)) => {
                stats.distinct_users.insert_hash(h);
                Some(stats.users.slot(h, u).0)
            }
            _ => None,
        };
        let session = match (ev.session(), keys.session) {
            (Some(s), Some(h)) => {
                let (slot, admitted) = stats.sessions.slot(h, s);
                let named = ev.session_name.as_deref().is_some_and(|n| !n.is_empty());
                if named && (admitted || slot == Slot::OTHER || self.unnamed.remove(&h)) {
                    stats.sessions.at(slot).name_if_unnamed(ev);
                } else if admitted {
                    self.unnamed.insert(h);
                }
                Some(slot)
            }
            _ => None,
        };
        Landing {
            n: Numbers::of(ev, x),
            model: stats.by_model.slot(keys.model, ev.model()).0,
            provider: stats.by_provider.slot(keys.provider, ev.provider()).0,
            properties,
            property_count: ev.properties.len() as u8,
            user,
            session,
        }
    }
}

impl Landing {
    /// The property groups: (key slot, value slot).
    fn properties(&self) -> &[(Slot, Slot)] {
        &self.properties[..usize::from(self.property_count)]
    }
}

/// Asks for the values of the landing's groups, in the maps too big to stay in the
/// nearest cache (asking for what is there already costs more than it saves).
fn fetch_values(stats: &Stats, l: &Landing) {
    fetch(large(&stats.by_model).and_then(|m| m.peek(l.model)));
    fetch(large(&stats.by_provider).and_then(|m| m.peek(l.provider)));
    for &(k, v) in l.properties() {
        fetch(stats.by_property.peek(k).and_then(large).and_then(|m| m.peek(v)));
    }
    if let Some(u) = l.user {
        fetch(large(&stats.users).and_then(|m| m.peek(u)));
    }
    if let Some(s) = l.session {
        fetch(large(&stats.sessions).and_then(|m| m.peek(s)));
    }
}

/// `map` if it holds more groups than the nearest cache does.
fn large<V: Mergeable>(map: &Capped<V>) -> Option<&Capped<V>> {
    (map.len() > LARGE).then_some(map)
}

/// Asks for the latency counters the landing's groups will add to (their values
/// have arrived by now, so where the counters are is known).
fn fetch_counters(stats: &Stats, l: &Landing) {
    let Some(ns) = l.n.x.latency_ns else { return };
    let counter = |a: Option<&Agg>| fetch(a.and_then(|a| a.latency.counter(ns)));
    counter(large(&stats.by_model).and_then(|m| m.peek(l.model)));
    counter(large(&stats.by_provider).and_then(|m| m.peek(l.provider)));
    for &(k, v) in l.properties() {
        counter(stats.by_property.peek(k).and_then(large).and_then(|m| m.peek(v)));
    }
}

/// Adds the landing's numbers to its groups.
fn add(stats: &mut Stats, l: &Landing) {
    stats.by_model.at(l.model).add(&l.n);
    stats.by_provider.at(l.provider).add(&l.n);
    for &(k, v) in l.properties() {
        stats.by_property.at(k).at(v).add(&l.n);
    }
    if let Some(u) = l.user {
        stats.users.at(u).add(&l.n);
    }
    if let Some(s) = l.session {
        stats.sessions.at(s).add(&l.n);
    }
}

/// Asks the CPU to bring every cache line of `value` in, without waiting for it.
#[inline]
fn fetch<T>(value: Option<&T>) {
    #[cfg(target_arch = "x86_64")]
    if let Some(v) = value {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let start = (v as *const T).cast::<i8>();
        let end = start.wrapping_add(size_of::<T>());
        let mut line = start.wrapping_sub(start as usize % 64);
        while line < end {
            // SAFETY: a prefetch is a hint that never faults; the lines overlap `value`.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line) };
            line = line.wrapping_add(64);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::pricing::Cost;
    use crate::stats::Limits;

    /// Everything a [`Stats`] holds, in an order that does not depend on arrival.
    fn dump(s: &Stats) -> Vec<String> {
        fn sorted<V: std::fmt::Debug + Mergeable>(name: &str, m: &Capped<V>) -> Vec<String> {
            let mut rows: Vec<String> = m.iter().map(|(k, v)| format!("{name} {k}: {v:?}")).collect();
            rows.sort();
            rows.push(format!("{name} (other): {:?}", m.other()));
            rows.push(format!("{name} distinct: {:?}", m.distinct_keys()));
            rows
        }
        let mut out = vec![
            format!("total {:?}", s.total),
            format!("ttft {:?}", s.ttft),
            format!("status {:?}", s.by_status),
            format!("span {} {}", s.first, s.last),
            format!("users {}", s.active_users()),
        ];
        out.extend(sorted("model", &s.by_model));
        out.extend(sorted("provider", &s.by_provider));
        for (k, m) in s.by_property.iter() {
            out.extend(sorted(&format!("property {k}"), m));
        }
        out.extend(s.by_property.other().map(|m| sorted("property (other)", m)).unwrap_or_default());
        out.extend(sorted("user", &s.users));
        out.extend(sorted("session", &s.sessions));
        out
    }

    #[test]
    fn recording_late_ends_where_recording_at_once_does() {
        // Small caps so that models, values, users and sessions overflow into (other);
        // sessions named on a later request (a third never), events with more properties than a
        // landing holds, requests without latency, user or session.
        let limits = Limits { groups: 6, property_keys: 5, users: 30, sessions: 40, distinct_exact: 1_000 };
        let (mut at_once, mut late) = (Stats::new(limits), Stats::new(limits));
        let mut recorder = Recorder::default();
        let mut keys = Keys::default();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut named = 0;
        for i in 0..20_000 {
            let session = next(60);
            // One event in 20 has more properties than a landing holds (all of the
            // first 3,000 of sessions 50 to 59, which only those carry): those never
            // name their session, so that sessions first seen by either path are named
            // by a later landing.
            let many = (session >= 50 && i < 3_000) || next(20) == 0;
            let properties = (0..if many { 9 + next(3) } else { next(7) })
                .map(|p| (Cow::Owned(format!("k{}", (p + next(3)) % 9)), Cow::Owned(format!("v{}", next(15)))))
                .collect();
            let ev = Event {
                created_at: 1_000_000 + i * 1_000 - next(5_000) as i64,
                model: Some(Cow::Owned(format!("m{}", next(10)))),
                provider: Some(Cow::Owned(format!("p{}", next(4)))),
                user_id: (next(10) > 0).then(|| Cow::Owned(format!("u{}", next(50)))),
                session_id: (next(10) > 0 && (!many || session >= 50)).then(|| Cow::Owned(format!("s{session}"))),
                session_name: (!many && session % 3 > 0 && next(4) == 0)
                    .then(|| Cow::Owned(format!("name of s{session}"))),
                status: [200, 200, 200, 429, 500, 0, 404][next(7) as usize],
                latency_ms: (next(8) > 0).then(|| next(30_000) as f64 / 7.0),
                ttft_ms: (next(2) > 0).then(|| next(3_000) as f64 / 3.0),
                prompt_tokens: next(4_000),
                completion_tokens: next(900),
                retry: next(3),
                feedback: [None, Some(true), Some(false)][next(3) as usize],
                properties,
                ..Default::default()
            };
            named += u64::from(ev.session_name.is_some());
            let cost = match next(4) {
                0 => Cost::Unpriced,
                1 => Cost::CacheHit { saved: next(1_000) as f64 * 1e-6 },
                _ => Cost::Priced(next(100_000) as f64 * 1e-7),
            };
            let x = Sample::new(&ev, cost);
            keys.hash(&ev);
            at_once.record_keyed(&ev, &x, &keys);
            recorder.record(&mut late, &ev, &x, &keys);
        }
        recorder.finish(&mut late);
        let (a, b) = (dump(&at_once), dump(&late));
        assert_eq!(a.len(), b.len());
        for (a, b) in a.iter().zip(&b) {
            assert_eq!(a, b);
        }
        // The test covers what it says: folded rows, and sessions both named and not.
        assert!(at_once.sessions.other().is_some() && at_once.users.other().is_some());
        assert!(at_once.by_model.other().is_some() && at_once.by_property.other().is_some());
        let names = at_once.sessions.iter().filter(|(_, s)| s.name.is_some()).count();
        assert!(names > 0 && names < at_once.sessions.len() && named > 1_000, "{names} named");
        assert_eq!(at_once.total.requests, 20_000);
    }
}
