//! The rollout judge: whether one step's interval stayed within the limits, and where its
//! numbers come from: the deltas of one Envoy's cluster stats through its admin, or PromQL over
//! every sidecar Prometheus scrapes ([`JudgeSource`]).

use crate::admin::{Admin, AdminError};
use crate::format::{millis, percent};
use crate::prometheus::{self, Prometheus, PrometheusError};
use crate::stats::{ClusterSample, Stats};
use std::time::{Duration, Instant};

/// What a rollout step must stay within.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Highest acceptable share of 5xx (0.01 for 1%).
    pub max_error_rate: f64,
    pub max_p99_ms: Option<f64>,
    /// Fewer requests than this in an interval cannot be judged: through an admin the step
    /// fails; from Prometheus it waits for more (see [`JudgeSource::is_patient`]).
    pub min_requests: u64,
}

/// What one interval measured of a deployment, whatever measured it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    pub requests: u64,
    /// Never more than `requests`.
    pub errors: u64,
    pub p99_ms: Option<f64>,
}

impl Observed {
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }
}

impl From<&ClusterSample> for Observed {
    fn from(delta: &ClusterSample) -> Observed {
        Observed { requests: delta.requests, errors: delta.errors.min(delta.requests), p99_ms: delta.quantile_ms(0.99) }
    }
}

impl From<&prometheus::Measured> for Observed {
    /// Prometheus' increases are extrapolated to the window's edges: rounded to whole requests.
    fn from(m: &prometheus::Measured) -> Observed {
        let requests = m.requests.max(0.0).round() as u64;
        Observed { requests, errors: (m.errors.max(0.0).round() as u64).min(requests), p99_ms: m.p99_ms }
    }
}

/// Judges one interval's numbers; `Err` holds the reason, e.g.
/// `error rate 38.0% > 1.0% over the last 30s (41 of 108 requests)`.
pub fn judge<'a>(observed: impl Into<Observed> + 'a, limits: &Limits, interval: &str) -> Result<(), String> {
    let delta: Observed = observed.into();
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
    if let (Some(max), Some(p99)) = (limits.max_p99_ms, delta.p99_ms) {
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

/// Where a rollout step's numbers come from.
pub enum JudgeSource {
    /// One Envoy's cluster stats (`/stats`), before and after the interval: that Envoy only.
    Admin(Admin),
    /// PromQL over every sidecar the server scrapes; `selector` narrows the series (`job="mesh"`).
    Prometheus { server: Prometheus, selector: String },
}

/// Where a step's interval started, as its source needs to know it.
pub enum Mark {
    /// The cluster's stats at the start.
    Stats(ClusterSample),
    /// The moment it started (Prometheus' window reaches back to it).
    Since(Instant),
}

/// Why numbers could not be read.
#[derive(Debug)]
pub struct JudgeError(pub String);

impl std::fmt::Display for JudgeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<AdminError> for JudgeError {
    fn from(e: AdminError) -> Self {
        JudgeError(e.0)
    }
}

impl From<PrometheusError> for JudgeError {
    fn from(e: PrometheusError) -> Self {
        JudgeError(e.0)
    }
}

/// One step's numbers, with what the filters sent on the line (from Prometheus only).
#[derive(Debug, Clone, Default)]
pub struct Observation {
    pub observed: Observed,
    pub line_requests: Option<u64>,
}

impl JudgeSource {
    /// `the Envoy admin at … (that Envoy only)` or `Prometheus at … (every sidecar it scrapes)`.
    pub fn describe(&self) -> String {
        match self {
            JudgeSource::Admin(admin) => format!("the Envoy admin at {} (that Envoy only)", admin.url),
            JudgeSource::Prometheus { server, selector } if selector.is_empty() => {
                format!("Prometheus at {} (every sidecar it scrapes)", server.url)
            }
            JudgeSource::Prometheus { server, selector } => {
                format!("Prometheus at {} (the sidecars of {{{selector}}})", server.url)
            }
        }
    }

    /// Whether a step with fewer than `--min-requests` waits for more (Prometheus, where a fleet's
    /// traffic is summed) rather than failing at once (one Envoy's admin).
    pub fn is_patient(&self) -> bool {
        matches!(self, JudgeSource::Prometheus { .. })
    }

    /// Checks, before anything changes, that the source answers, and for Prometheus that it
    /// takes the step's queries of `cluster` on line `route` (a bad `--prometheus-selector`).
    pub fn check(&self, cluster: &str, route: &str, interval: Duration) -> Result<(), JudgeError> {
        match self {
            JudgeSource::Admin(admin) => Ok(admin.ping()?),
            JudgeSource::Prometheus { server, selector } => {
                prometheus::measure(server, &prometheus::step_queries(cluster, route, selector, interval))?;
                Ok(())
            }
        }
    }

    /// Marks the start of an interval of `cluster`.
    pub fn begin(&self, cluster: &str) -> Result<Mark, JudgeError> {
        match self {
            JudgeSource::Admin(admin) => Ok(Mark::Stats(Stats::parse(&admin.stats()?).cluster(cluster))),
            JudgeSource::Prometheus { .. } => Ok(Mark::Since(Instant::now())),
        }
    }

    /// The numbers of `cluster` (on line `route`) since `mark`.
    pub fn observe(&self, cluster: &str, route: &str, mark: &Mark) -> Result<Observation, JudgeError> {
        match (self, mark) {
            (JudgeSource::Admin(admin), Mark::Stats(before)) => {
                let delta = Stats::parse(&admin.stats()?).cluster(cluster).since(before);
                Ok(Observation { observed: Observed::from(&delta), line_requests: None })
            }
            (JudgeSource::Prometheus { server, selector }, Mark::Since(start)) => {
                let queries = prometheus::step_queries(cluster, route, selector, start.elapsed());
                let measured = prometheus::measure(server, &queries)?;
                let line_requests = Some(measured.line_requests.max(0.0).round() as u64);
                Ok(Observation { observed: Observed::from(&measured), line_requests })
            }
            _ => Err(JudgeError("a mark of another source".to_owned())),
        }
    }

    /// What `--dry-run` shows of how a step of `cluster` is judged over `interval`.
    pub fn plan(&self, cluster: &str, route: &str, interval: Duration) -> Vec<String> {
        match self {
            JudgeSource::Admin(admin) => vec![format!(
                "GET {}/stats?format=json&histogram_buckets=detailed at the start and end of each interval: \
                 cluster.{cluster}.upstream_rq_completed, upstream_rq_5xx, upstream_rq_time",
                admin.url
            )],
            JudgeSource::Prometheus { selector, .. } => {
                let q = prometheus::step_queries(cluster, route, selector, interval);
                vec![
                    format!("requests: {}", q.requests),
                    format!("5xx:      {}", q.errors),
                    format!("p99 (ms): {}", q.p99),
                    format!("line:     {}", q.line_requests),
                ]
            }
        }
    }
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
