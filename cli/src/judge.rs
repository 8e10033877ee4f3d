//! The rollout judge: whether one step's interval stayed within the limits, from the deltas
//! of the target cluster's counters and latency histogram.

use crate::format::{millis, percent};
use crate::stats::ClusterSample;

/// What a rollout step must stay within.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Highest acceptable share of 5xx (0.01 for 1%).
    pub max_error_rate: f64,
    pub max_p99_ms: Option<f64>,
    /// Fewer requests than this in an interval cannot be judged: the step fails.
    pub min_requests: u64,
}

/// Judges one interval's deltas; `Err` holds the reason, e.g.
/// `error rate 38.0% > 1.0% over the last 30s (41 of 108 requests)`.
pub fn judge(delta: &ClusterSample, limits: &Limits, interval: &str) -> Result<(), String> {
    if delta.requests < limits.min_requests {
        return Err(format!(
            "only {} requests over the last {interval}, fewer than --min-requests {}",
            delta.requests, limits.min_requests
        ));
    }
    let rate = delta.error_rate();
    if delta.requests > 0 && rate > limits.max_error_rate {
        return Err(format!(
            "error rate {} > {} over the last {interval} ({} of {} requests)",
            percent(rate),
            percent(limits.max_error_rate),
            delta.errors,
            delta.requests
        ));
    }
    if let (Some(max), Some(p99)) = (limits.max_p99_ms, delta.quantile_ms(0.99)) {
        if p99 > max {
            return Err(format!(
                "p99 latency {} > {} over the last {interval} ({} requests)",
                millis(p99),
                millis(max),
                delta.requests
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{tests::interval, Bucket};

    #[test]
    fn judgments() {
        let (before, after) = interval();
        let delta = after.since(&before);
        let limits = Limits { max_error_rate: 0.01, max_p99_ms: Some(250.0), min_requests: 0 };
        assert_eq!(
            judge(&delta, &limits, "30s").unwrap_err(),
            "error rate 38.0% > 1.0% over the last 30s (41 of 108 requests)"
        );
        let healthy = ClusterSample { errors: 1, ..delta.clone() };
        assert!(judge(&healthy, &limits, "30s").is_ok());
        let slow = ClusterSample {
            errors: 0,
            latency: vec![Bucket { lower: 300.0, width: 10.0, count: 108 }],
            ..delta.clone()
        };
        assert_eq!(
            judge(&slow, &limits, "30s").unwrap_err(),
            "p99 latency 310ms > 250ms over the last 30s (108 requests)"
        );
        let quiet = ClusterSample::default();
        assert!(judge(&quiet, &limits, "30s").is_ok());
        let strict = Limits { min_requests: 20, ..limits };
        assert_eq!(
            judge(&quiet, &strict, "30s").unwrap_err(),
            "only 0 requests over the last 30s, fewer than --min-requests 20"
        );
    }
}
