//! Latency distributions: exact count, sum and max, percentiles from a log-linear
//! (HDR) histogram.
//!
//! The histogram uses HdrHistogram's log-linear bucketing: values in microseconds,
//! exact below 128 µs, and above that 64 linear sub-buckets per power of two, so a
//! bucket is never wider than 1/64 of its values. Reporting a bucket's midpoint puts
//! every percentile within 0.78% of the exact nearest-rank value (the contract asks
//! for 1%); 64 rather than 128 sub-buckets halves the memory of a live window.
//!
//! It is written here rather than taken from the `hdrhistogram` crate because it is
//! recorded into about ten times per event (overall, model, provider, each property,
//! the time series): with the crate that was 15% of `report`'s time; this one inlines
//! to an index computation and one increment. Counts are `u32` (half the memory) and
//! saturate rather than wrap.

/// Milliseconds (≥ 0, as the parser guarantees) to whole nanoseconds, rounded.
///
/// `+ 0.5` and a cast instead of `f64::round`, which is a libm call on baseline x86-64.
#[inline]
pub fn ms_to_ns(ms: f64) -> u64 {
    (ms * 1e6 + 0.5) as u64
}

/// Exact moments of a duration field: the average and the max need no histogram.
/// Integer nanoseconds, so totals are the same whatever order events are merged in.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Moments {
    pub count: u64,
    pub sum_ns: u128,
    pub max_ns: u64,
}

impl Moments {
    #[inline]
    pub fn record(&mut self, ns: u64) {
        self.count += 1;
        self.sum_ns += u128::from(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    pub fn merge(&mut self, o: &Moments) {
        self.count += o.count;
        self.sum_ns += o.sum_ns;
        self.max_ns = self.max_ns.max(o.max_ns);
    }

    pub fn avg_ms(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_ns as f64 / 1e6 / self.count as f64)
    }

    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then(|| self.max_ns as f64 / 1e6)
    }
}

/// Sub-buckets per power of two (6 bits of mantissa).
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Values below this are their own bucket.
const LINEAR: u64 = 2 * SUB;

/// The histogram bucket of a value in microseconds (ClickHouse computes the same
/// with `clickhouse::BUCKET_SQL`, so stored rows merge into local histograms).
pub fn bucket_index(us: u64) -> usize {
    if us < LINEAR {
        return us as usize;
    }
    let e = 63 - us.leading_zeros(); // floor(log2 us) > SUB_BITS
    let sub = (us >> (e - SUB_BITS)) - SUB; // 0..SUB
    (LINEAR + u64::from(e - SUB_BITS - 1) * SUB + sub) as usize
}

/// The smallest value of bucket `i` and the bucket's width.
fn bucket(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < LINEAR {
        return (i, 1);
    }
    let e = (i - LINEAR) / SUB + u64::from(SUB_BITS) + 1;
    let sub = (i - LINEAR) % SUB;
    let width = 1u64 << (e - u64::from(SUB_BITS));
    ((SUB + sub) * width, width)
}

/// Sparse histograms hold at most this many buckets (512 bytes) before turning dense
/// (about 3.5 KiB for latencies between 5 ms and 60 s): most groups of a
/// high-cardinality key see few requests, and a live window holds one histogram per
/// group per time slab.
const SPARSE_MAX: usize = 64;

#[derive(Debug, Clone)]
enum Counts {
    /// (bucket, count), sorted by bucket.
    Sparse(Vec<(u16, u32)>),
    /// `counts[i]` is bucket `base + i`, from the lowest to the highest recorded.
    Dense { base: usize, counts: Vec<u32> },
}

/// A duration distribution: [`Moments`] plus a histogram in microseconds.
#[derive(Debug, Clone)]
pub struct Dist {
    pub moments: Moments,
    counts: Counts,
}

impl Default for Dist {
    fn default() -> Self {
        Dist { moments: Moments::default(), counts: Counts::Sparse(Vec::new()) }
    }
}

impl Counts {
    /// The common case inline (a dense histogram that already spans the bucket), the
    /// rest out of line.
    #[inline]
    fn add(&mut self, i: usize, n: u32) {
        if let Counts::Dense { base, counts } = self
            && let Some(c) = i.checked_sub(*base).and_then(|j| counts.get_mut(j))
        {
            *c = c.saturating_add(n);
            return;
        }
        self.add_slow(i, n);
    }

    #[inline(never)]
    fn add_slow(&mut self, i: usize, n: u32) {
        match self {
            Counts::Dense { base, counts } => {
                if i < *base {
                    counts.splice(0..0, std::iter::repeat_n(0, *base - i));
                    *base = i;
                }
                let j = i - *base;
                if j >= counts.len() {
                    counts.resize(j + 1, 0);
                }
                counts[j] = counts[j].saturating_add(n);
            }
            Counts::Sparse(v) => match v.binary_search_by_key(&(i as u16), |e| e.0) {
                Ok(p) => v[p].1 = v[p].1.saturating_add(n),
                Err(p) if v.len() < SPARSE_MAX => v.insert(p, (i as u16, n)),
                Err(_) => {
                    self.densify();
                    self.add(i, n);
                }
            },
        }
    }

    fn densify(&mut self) {
        if let Counts::Sparse(v) = self {
            let base = v.first().map_or(0, |e| e.0 as usize);
            let mut counts = vec![0u32; v.last().map_or(0, |e| e.0 as usize + 1 - base)];
            for &(i, c) in v.iter() {
                counts[i as usize - base] = c;
            }
            *self = Counts::Dense { base, counts };
        }
    }

    /// (bucket, count) in bucket order, zero counts skipped.
    fn iter(&self) -> Box<dyn Iterator<Item = (usize, u32)> + '_> {
        match self {
            Counts::Sparse(v) => Box::new(v.iter().map(|&(i, c)| (i as usize, c))),
            Counts::Dense { base, counts } => {
                Box::new(counts.iter().enumerate().filter(|e| *e.1 > 0).map(move |(i, &c)| (base + i, c)))
            }
        }
    }
}

impl Dist {
    /// A distribution of which only the moments are known (no percentiles).
    pub fn from_moments(moments: Moments) -> Dist {
        Dist { moments, counts: Counts::Sparse(Vec::new()) }
    }

    #[inline]
    pub fn record(&mut self, ns: u64) {
        self.moments.record(ns);
        self.counts.add(bucket_index((ns + 500) / 1000), 1);
    }

    /// The counter that [`record`](Self::record)`(ns)` would add to, when the histogram
    /// already spans it: its address, to fetch it into cache ahead of the add.
    #[inline]
    pub fn counter(&self, ns: u64) -> Option<&u32> {
        match &self.counts {
            Counts::Dense { base, counts } => {
                bucket_index((ns + 500) / 1000).checked_sub(*base).and_then(|j| counts.get(j))
            }
            Counts::Sparse(_) => None,
        }
    }

    /// Adds `n` values to bucket `index` (see [`bucket_index`]) without touching the
    /// moments: for histograms computed elsewhere, whose moments come separately.
    pub fn add_bucket(&mut self, index: usize, n: u32) {
        self.counts.add(index, n);
    }

    pub fn merge(&mut self, o: &Dist) {
        self.moments.merge(&o.moments);
        if let Counts::Dense { base, counts } = &o.counts {
            // Widen to the other's range once, then add slice to slice.
            if !counts.is_empty() {
                self.counts.densify();
                self.counts.add(*base, 0);
                self.counts.add(base + counts.len() - 1, 0);
            }
            if let Counts::Dense { base: b, counts: mine } = &mut self.counts {
                let off = base - *b;
                for (x, y) in mine[off..].iter_mut().zip(counts) {
                    *x = x.saturating_add(*y);
                }
                return;
            }
        }
        o.counts.iter().for_each(|(i, c)| self.counts.add(i, c));
    }

    pub fn count(&self) -> u64 {
        self.moments.count
    }

    /// Nearest-rank percentile (`q` in 0..=100): the value at rank ⌈q/100 · n⌉.
    pub fn percentile(&self, q: f64) -> Option<f64> {
        let n: u64 = self.counts.iter().map(|(_, c)| u64::from(c)).sum();
        if n == 0 {
            return None;
        }
        let rank = ((q / 100.0 * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for (i, c) in self.counts.iter() {
            seen += u64::from(c);
            if seen >= rank {
                let (low, width) = bucket(i);
                let mid = low as f64 + (width - 1) as f64 / 2.0;
                // Never report above the exact maximum, which we know.
                return Some((mid / 1000.0).min(self.moments.max_ns as f64 / 1e6));
            }
        }
        self.moments.max()
    }

    /// How many values fall below each edge (ms) and above the previous one; the last
    /// bin holds what is above the last edge. Bucket midpoints decide (exact below 128 µs).
    pub fn bins(&self, edges_ms: &[f64]) -> Vec<u64> {
        let mut out = vec![0u64; edges_ms.len() + 1];
        for (i, c) in self.counts.iter() {
            let (low, width) = bucket(i);
            let ms = (low as f64 + (width - 1) as f64 / 2.0) / 1000.0;
            let bin = edges_ms.iter().position(|e| ms < *e).unwrap_or(edges_ms.len());
            out[bin] += u64::from(c);
        }
        out
    }

    /// Bytes held on the heap (for memory accounting in benchmarks).
    pub fn heap_bytes(&self) -> usize {
        match &self.counts {
            Counts::Sparse(v) => v.capacity() * 8,
            Counts::Dense { counts, .. } => counts.capacity() * 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(sorted: &[f64], q: f64) -> f64 {
        let rank = ((q / 100.0 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    #[test]
    fn percentiles_within_one_percent_of_nearest_rank() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut vals = Vec::new();
        let mut d = Dist::default();
        for _ in 0..50_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Spread over five orders of magnitude with fractional milliseconds.
            let v = ((x % 1_000_000) as f64 / 1000.0).powf(1.7) + 0.3;
            vals.push(v);
            d.record(ms_to_ns(v));
        }
        vals.sort_by(f64::total_cmp);
        for q in [1.0, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0] {
            let (got, want) = (d.percentile(q).unwrap(), exact(&vals, q));
            assert!((got - want).abs() <= want * 0.01, "p{q}: {got} vs {want}");
        }
        assert!((d.moments.max().unwrap() - vals.last().unwrap()).abs() < 1e-6, "max is exact to the nanosecond");
        let avg = vals.iter().sum::<f64>() / vals.len() as f64;
        assert!((d.moments.avg_ms().unwrap() - avg).abs() < 1e-6);
    }

    #[test]
    fn buckets_tile_the_number_line() {
        let mut expect_low = 0;
        // Up to 2^63 µs, the last full power of two.
        for i in 0..bucket_index(1 << 62) + 64 {
            let (low, width) = bucket(i);
            assert_eq!(low, expect_low, "bucket {i}");
            assert_eq!(bucket_index(low), i);
            assert_eq!(bucket_index(low + width - 1), i);
            assert!(low < LINEAR || width as f64 <= low as f64 / 64.0);
            expect_low = low + width;
        }
    }

    #[test]
    fn sparse_and_dense_agree() {
        let values: Vec<u64> = (0..5_000u64).map(|i| (i * 7919) % 40_000_000 + 1).collect();
        let mut one = Dist::default();
        let (mut a, mut b) = (Dist::default(), Dist::default());
        for (k, &v) in values.iter().enumerate() {
            one.record(v * 1000);
            if k < 60 { &mut a } else { &mut b }.record(v * 1000);
        }
        assert!(matches!(a.counts, Counts::Sparse(_)));
        assert!(matches!(b.counts, Counts::Dense { .. }));
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        for q in [1.0, 50.0, 99.0, 100.0] {
            assert_eq!(ab.percentile(q), one.percentile(q));
            assert_eq!(ba.percentile(q), one.percentile(q));
        }
        assert!(a.heap_bytes() <= SPARSE_MAX * 8);
    }

    #[test]
    fn bins_count_every_value_once() {
        let mut d = Dist::default();
        for ms in [5.0, 50.0, 150.0, 150.0, 900.0, 4_000.0, 60_000.0] {
            d.record(ms_to_ns(ms));
        }
        assert_eq!(d.bins(&[100.0, 1_000.0, 10_000.0]), vec![2, 3, 1, 1]);
    }

    #[test]
    fn small_sets_and_merge() {
        let mut a = Dist::default();
        assert_eq!(a.percentile(50.0), None);
        for v in [10.0, 20.0, 30.0] {
            a.record(ms_to_ns(v));
        }
        let mut b = Dist::default();
        b.record(ms_to_ns(40.0));
        a.merge(&b);
        assert_eq!(a.count(), 4);
        let p50 = a.percentile(50.0).unwrap();
        assert!((p50 - 20.0).abs() <= 0.2, "{p50}");
        assert_eq!(a.percentile(100.0), Some(40.0));
        let p1 = a.percentile(1.0).unwrap();
        assert!((p1 - 10.0).abs() <= 0.1);
    }
}
