//! Time series: per-bucket requests, errors, cost, tokens and latency.
//!
//! Buckets are aligned to the epoch and sized from a fixed ladder where each size
//! divides the next, so a series can coarsen (merge neighbouring buckets) as its span
//! grows and two series can always be brought to a common size and merged.

use std::collections::VecDeque;

use super::{Dist, Sample, Usd};
use crate::event::Event;
use crate::time::{MICROS_PER_SEC, Micros};

/// At most this many buckets; beyond it the series coarsens to the next size.
pub const MAX_BUCKETS: i64 = 180;

/// Bucket sizes in seconds; each divides the next.
const LADDER: [i64; 12] = [1, 5, 10, 60, 300, 900, 3_600, 21_600, 86_400, 604_800, 2_419_200, 29_030_400];

/// The bucket size for a span: the smallest size that covers it in at most
/// [`MAX_BUCKETS`] buckets (1 minute for an hour, 15 minutes for a day, 1 hour for a week).
pub fn bucket_for_span(span: Micros) -> Micros {
    LADDER
        .iter()
        .map(|s| s * MICROS_PER_SEC)
        .find(|w| span / w < MAX_BUCKETS)
        .unwrap_or(LADDER[LADDER.len() - 1] * MICROS_PER_SEC)
}

fn next_size(w: Micros) -> Option<Micros> {
    LADDER.iter().map(|s| s * MICROS_PER_SEC).find(|&s| s > w)
}

#[derive(Debug, Clone, Default)]
pub struct Point {
    pub requests: u64,
    pub errors: u64,
    pub e4xx: u64,
    pub e5xx: u64,
    pub e429: u64,
    pub cache_hits: u64,
    pub cost: Usd,
    pub tokens: u64,
    pub latency: Dist,
    pub ttft: Dist,
}

impl Point {
    /// The counters of `a` as one point, with its latency and TTFT distributions.
    pub fn of(a: &super::Agg, latency: Dist, ttft: Dist) -> Point {
        Point {
            requests: a.requests,
            errors: a.errors,
            e4xx: a.e4xx,
            e5xx: a.e5xx,
            e429: a.e429,
            cache_hits: a.cache_hits,
            cost: a.cost,
            tokens: a.tokens(),
            latency,
            ttft,
        }
    }

    fn record(&mut self, ev: &Event, x: &Sample) {
        self.requests += 1;
        self.errors += u64::from(ev.is_error());
        self.e4xx += u64::from((400..500).contains(&ev.status));
        self.e5xx += u64::from((500..600).contains(&ev.status));
        self.e429 += u64::from(ev.status == 429);
        self.cache_hits += u64::from(x.cache_hit);
        self.cost += x.cost;
        self.tokens += ev.prompt_tokens + ev.completion_tokens;
        if let Some(l) = x.latency_ns {
            self.latency.record(l);
        }
        if let Some(t) = x.ttft_ns {
            self.ttft.record(t);
        }
    }

    pub fn merge(&mut self, o: &Point) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.e4xx += o.e4xx;
        self.e5xx += o.e5xx;
        self.e429 += o.e429;
        self.cache_hits += o.cache_hits;
        self.cost += o.cost;
        self.tokens += o.tokens;
        self.latency.merge(&o.latency);
        self.ttft.merge(&o.ttft);
    }
}

/// A contiguous run of buckets (empty ones included) covering every event recorded.
#[derive(Debug, Clone)]
pub struct Series {
    width: Micros,
    /// Index (time / width) of the first bucket.
    start: i64,
    points: VecDeque<Point>,
}

impl Series {
    /// A series whose buckets are at least `width` wide.
    pub fn new(width: Micros) -> Self {
        Self { width, start: 0, points: VecDeque::new() }
    }

    pub fn width(&self) -> Micros {
        self.width
    }

    pub fn record(&mut self, ev: &Event, x: &Sample) {
        self.record_at(ev.created_at, ev, x);
    }

    /// Records `ev` in the bucket of time `t` (the live engine files events from a
    /// skewed clock under "now").
    pub fn record_at(&mut self, t: Micros, ev: &Event, x: &Sample) {
        let idx = t.div_euclid(self.width);
        self.point_at(idx).record(ev, x);
        if self.points.len() as i64 > MAX_BUCKETS {
            self.coarsen_to(next_size(self.width).unwrap_or(self.width * 12));
        }
    }

    fn point_at(&mut self, idx: i64) -> &mut Point {
        if self.points.is_empty() {
            self.start = idx;
            self.points.push_back(Point::default());
        }
        while idx < self.start {
            self.start -= 1;
            self.points.push_front(Point::default());
        }
        while idx >= self.start + self.points.len() as i64 {
            self.points.push_back(Point::default());
        }
        &mut self.points[(idx - self.start) as usize]
    }

    /// Adds a pre-aggregated point to the bucket of time `t`.
    pub fn merge_point_at(&mut self, t: Micros, p: &Point) {
        let idx = t.div_euclid(self.width);
        self.point_at(idx).merge(p);
    }

    /// Drops the buckets that end at or before `t`.
    pub fn prune_before(&mut self, t: Micros) {
        while !self.points.is_empty() && (self.start + 1) * self.width <= t {
            self.points.pop_front();
            self.start += 1;
        }
    }

    /// Re-buckets into `width`, a multiple of the current width.
    pub fn coarsen_to(&mut self, width: Micros) {
        if width <= self.width {
            return;
        }
        let old = std::mem::take(&mut self.points);
        let (old_start, old_width) = (self.start, self.width);
        self.width = width;
        for (i, p) in old.into_iter().enumerate() {
            let t = (old_start + i as i64) * old_width;
            self.point_at(t.div_euclid(width)).merge(&p);
        }
    }

    pub fn merge(&mut self, o: &Series) {
        let mut o = o.clone();
        let w = self.width.max(o.width);
        self.coarsen_to(w);
        o.coarsen_to(w);
        for (i, p) in o.points.iter().enumerate() {
            if p.requests > 0 {
                self.point_at(o.start + i as i64).merge(p);
            }
        }
    }

    /// All buckets whose start lies in `(after, upto]`, merged into one point.
    pub fn merged(&self, after: Micros, upto: Micros) -> Point {
        let mut out = Point::default();
        for (i, p) in self.points.iter().enumerate() {
            let t = (self.start + i as i64) * self.width;
            if t > after && t <= upto {
                out.merge(p);
            }
        }
        out
    }

    /// Adds every bucket of `o` (whose width divides this one's) to this series.
    pub fn merge_finer(&mut self, o: &Series) {
        debug_assert!(self.width % o.width == 0, "bucket widths divide each other");
        for (i, p) in o.points.iter().enumerate() {
            if p.requests > 0 {
                self.merge_point_at((o.start + i as i64) * o.width, p);
            }
        }
    }

    /// The buckets whose start lies in `[from, to]`, with empty ones filled in:
    /// `(bucket start, point)`.
    pub fn points(&self, from: Micros, to: Micros) -> Vec<(Micros, Point)> {
        let (a, b) = (from.div_euclid(self.width), to.div_euclid(self.width));
        (a..=b)
            .map(|idx| {
                let p = usize::try_from(idx - self.start)
                    .ok()
                    .and_then(|i| self.points.get(i))
                    .cloned()
                    .unwrap_or_default();
                (idx * self.width, p)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::Cost;

    fn rec(s: &mut Series, ev: &Event, cost: Cost) {
        s.record(ev, &Sample::new(ev, cost));
    }

    fn at(t: Micros) -> Event<'static> {
        Event { created_at: t, latency_ms: Some(10.0), status: 200, ..Default::default() }
    }

    #[test]
    fn bucket_sizes_follow_the_window() {
        let min = 60 * MICROS_PER_SEC;
        assert_eq!(bucket_for_span(min), MICROS_PER_SEC);
        assert_eq!(bucket_for_span(60 * min), min);
        assert_eq!(bucket_for_span(24 * 60 * min), 15 * min);
        assert_eq!(bucket_for_span(7 * 24 * 60 * min), 60 * min);
    }

    #[test]
    fn coarsens_as_the_span_grows_and_keeps_counts() {
        let mut s = Series::new(MICROS_PER_SEC);
        for i in 0..3600 {
            rec(&mut s, &at(i * MICROS_PER_SEC), Cost::Billed(0.5));
        }
        assert_eq!(s.width(), 60 * MICROS_PER_SEC);
        let pts = s.points(0, 3599 * MICROS_PER_SEC);
        assert_eq!(pts.len(), 60);
        assert!(pts.iter().all(|(_, p)| p.requests == 60 && p.cost == Usd::from_f64(30.0)));
    }

    #[test]
    fn out_of_order_and_merge() {
        let mut a = Series::new(MICROS_PER_SEC);
        rec(&mut a, &at(10 * MICROS_PER_SEC), Cost::Unpriced);
        rec(&mut a, &at(2 * MICROS_PER_SEC), Cost::Unpriced);
        let mut b = Series::new(5 * MICROS_PER_SEC);
        rec(&mut b, &at(11 * MICROS_PER_SEC), Cost::Unpriced);
        a.merge(&b);
        assert_eq!(a.width(), 5 * MICROS_PER_SEC);
        let pts = a.points(0, 14 * MICROS_PER_SEC);
        let counts: Vec<_> = pts.iter().map(|(t, p)| (*t / MICROS_PER_SEC, p.requests)).collect();
        assert_eq!(counts, vec![(0, 1), (5, 0), (10, 2)]);
    }
}
