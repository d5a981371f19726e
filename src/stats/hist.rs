//! Latency distributions: exact count, sum and max, percentiles from an HDR histogram.

use hdrhistogram::Histogram;

/// Two significant digits: every recorded value lands in a bucket no wider than
/// 1/128 of it, and we report the bucket's midpoint, so a percentile is within
/// 0.4% of the exact nearest-rank value (exact below 0.256 ms, the 1 µs unit).
const SIGFIG: u8 = 2;

/// Exact moments of a duration field: the average and the max need no histogram.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Moments {
    pub count: u64,
    /// Sum in nanoseconds: an integer, so the total is the same whatever the order.
    pub sum_ns: u128,
    pub max_ms: f64,
}

impl Moments {
    pub fn record(&mut self, ms: f64) {
        self.count += 1;
        self.sum_ns += (ms * 1e6).round() as u128;
        if ms > self.max_ms {
            self.max_ms = ms;
        }
    }

    pub fn merge(&mut self, o: &Moments) {
        self.count += o.count;
        self.sum_ns += o.sum_ns;
        self.max_ms = self.max_ms.max(o.max_ms);
    }

    pub fn avg_ms(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_ns as f64 / 1e6 / self.count as f64)
    }

    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max_ms)
    }
}

/// A duration distribution: [`Moments`] plus an HDR histogram in microseconds.
#[derive(Debug, Clone)]
pub struct Dist {
    pub moments: Moments,
    hist: Histogram<u64>,
}

impl Default for Dist {
    fn default() -> Self {
        Self { moments: Moments::default(), hist: Histogram::new(SIGFIG).expect("valid sigfig") }
    }
}

impl Dist {
    pub fn record(&mut self, ms: f64) {
        self.moments.record(ms);
        // Auto-resizing histogram: this only fails for values beyond u64, which the
        // parser's 1e12 ms limit already excludes.
        let _ = self.hist.record((ms * 1000.0).round() as u64);
    }

    pub fn merge(&mut self, o: &Dist) {
        self.moments.merge(&o.moments);
        let _ = self.hist.add(&o.hist);
    }

    pub fn count(&self) -> u64 {
        self.moments.count
    }

    /// Nearest-rank percentile (`q` in 0..=100): the value at rank ⌈q/100 · n⌉.
    pub fn percentile(&self, q: f64) -> Option<f64> {
        let n = self.hist.len();
        if n == 0 {
            return None;
        }
        let rank = ((q / 100.0 * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for v in self.hist.iter_recorded() {
            seen += v.count_since_last_iteration();
            if seen >= rank {
                let us = self.hist.median_equivalent(v.value_iterated_to());
                // Never report above the exact maximum, which we know.
                return Some((us as f64 / 1000.0).min(self.moments.max_ms));
            }
        }
        Some(self.moments.max_ms)
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
            d.record(v);
        }
        vals.sort_by(f64::total_cmp);
        for q in [1.0, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0] {
            let (got, want) = (d.percentile(q).unwrap(), exact(&vals, q));
            assert!((got - want).abs() <= want * 0.01, "p{q}: {got} vs {want}");
        }
        assert_eq!(d.moments.max(), Some(*vals.last().unwrap()));
        let avg = vals.iter().sum::<f64>() / vals.len() as f64;
        assert!((d.moments.avg_ms().unwrap() - avg).abs() < 1e-6);
    }

    #[test]
    fn small_sets_and_merge() {
        let mut a = Dist::default();
        assert_eq!(a.percentile(50.0), None);
        for v in [10.0, 20.0, 30.0] {
            a.record(v);
        }
        let mut b = Dist::default();
        b.record(40.0);
        a.merge(&b);
        assert_eq!(a.count(), 4);
        let p50 = a.percentile(50.0).unwrap();
        assert!((p50 - 20.0).abs() <= 0.2, "{p50}");
        assert_eq!(a.percentile(100.0), Some(40.0));
        let p1 = a.percentile(1.0).unwrap();
        assert!((p1 - 10.0).abs() <= 0.1);
    }
}
