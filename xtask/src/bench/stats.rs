//! Summaries of repeated measurements: median, spread, ratios.

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Spread {
    pub(super) median: f64,
    pub(super) min: f64,
    pub(super) max: f64,
    /// First and third quartiles (linear interpolation).
    pub(super) q1: f64,
    pub(super) q3: f64,
}

pub(super) fn spread(vals: &[f64]) -> Option<Spread> {
    let mut v: Vec<f64> = vals.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(Spread {
        median: quantile(&v, 0.5),
        min: v[0],
        max: v[v.len() - 1],
        q1: quantile(&v, 0.25),
        q3: quantile(&v, 0.75),
    })
}

pub(super) fn median(vals: &[f64]) -> Option<f64> {
    spread(vals).map(|s| s.median)
}

/// Quantile of sorted, non-empty data by linear interpolation between closest ranks.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

pub(super) fn ratio(value: f64, bare: f64) -> Option<f64> {
    (bare > 0.0 && value.is_finite() && bare.is_finite()).then(|| value / bare)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_spread() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 1.0]), Some(1.0));
        let s = spread(&[1.0, 2.0, 3.0, 4.0, 5.0]).expect("spread");
        assert_eq!(
            (s.min, s.q1, s.median, s.q3, s.max),
            (1.0, 2.0, 3.0, 4.0, 5.0)
        );
        assert_eq!(ratio(9.0, 10.0), Some(0.9));
        assert_eq!(ratio(9.0, 0.0), None);
    }
}
