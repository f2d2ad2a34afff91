//! Summaries of repeated measurements.

use serde::Serialize;

/// min / median / p95 / max of a set of samples (same unit as the samples).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Stats {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) p95: f64,
    pub(crate) max: f64,
    pub(crate) samples: Vec<f64>,
}

impl Stats {
    /// Summarise `samples`; `None` when there are none.
    pub(crate) fn of(samples: &[f64]) -> Option<Stats> {
        if samples.is_empty() {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort_by(|a, b| a.total_cmp(b));
        let n = s.len();
        let median = if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        };
        // Nearest-rank percentile.
        let rank = ((0.95 * n as f64).ceil() as usize).clamp(1, n);
        Some(Stats {
            median,
            min: s[0],
            p95: s[rank - 1],
            max: s[n - 1],
            samples: samples.to_vec(),
        })
    }

    /// Relative spread (max - min) / median, as a percentage.
    pub(crate) fn spread_pct(&self) -> f64 {
        if self.median == 0.0 {
            0.0
        } else {
            (self.max - self.min) / self.median * 100.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_p95_of_odd_and_even() {
        let s = Stats::of(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!((s.min, s.median, s.max), (1.0, 3.0, 5.0));
        let s = Stats::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(s.median, 2.5);
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(Stats::of(&v).unwrap().p95, 19.0);
        assert!(Stats::of(&[]).is_none());
    }

    #[test]
    fn spread_is_relative() {
        let s = Stats::of(&[90.0, 100.0, 110.0]).unwrap();
        assert!((s.spread_pct() - 20.0).abs() < 1e-9);
    }
}
