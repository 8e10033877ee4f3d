//! Envoy's stats (`/stats?format=json&histogram_buckets=detailed`): counters and latency
//! histograms per cluster, their deltas over an interval, and quantiles; and what the meshver
//! filters counted, read back from their labelled counters' names (`meshver::metrics`).

use meshver::metrics::{parse_stat_name, Family, Label};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// One latency bucket of Envoy's detailed histogram (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub lower: f64,
    pub width: f64,
    pub count: u64,
}

/// Counters and cumulative histograms, by full stat name.
#[derive(Debug, Default)]
pub struct Stats {
    counters: BTreeMap<String, u64>,
    histograms: BTreeMap<String, Vec<Bucket>>,
}

impl Stats {
    /// Parses `GET /stats?format=json&histogram_buckets=detailed`.
    pub fn parse(body: &Value) -> Stats {
        let mut stats = Stats::default();
        for entry in body.get("stats").and_then(Value::as_array).into_iter().flatten() {
            if let (Some(name), Some(value)) = (entry.get("name").and_then(Value::as_str), entry.get("value")) {
                stats.counters.insert(name.to_owned(), value.as_u64().unwrap_or(0));
            }
            let details = entry.get("histograms").and_then(|h| h.get("details")).and_then(Value::as_array);
            for histogram in details.into_iter().flatten() {
                let Some(name) = histogram.get("name").and_then(Value::as_str) else { continue };
                let buckets = histogram
                    .get("totals")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|b| Bucket {
                        lower: b.get("lower_bound").and_then(Value::as_f64).unwrap_or(0.0),
                        width: b.get("width").and_then(Value::as_f64).unwrap_or(0.0),
                        count: b.get("count").and_then(Value::as_u64).unwrap_or(0),
                    })
                    .collect();
                stats.histograms.insert(name.to_owned(), buckets);
            }
        }
        stats
    }

    /// A counter's value; Envoy creates some (like `upstream_rq_5xx`) only when first hit, so absent is 0.
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    /// What the meshver filters of this Envoy counted for one service, summed over every
    /// listener (a request through a sidecar and an inbound listener counts in each).
    pub fn filter_counts(&self, service: &str) -> FilterCounts {
        let mut counts = FilterCounts::default();
        for (name, count) in &self.counters {
            let Some((family, labels)) = parse_stat_name(name) else { continue };
            let label = |l: Label| labels.iter().find(|(n, _)| *n == l.name()).map_or("", |(_, v)| *v);
            if label(Label::Service) != service {
                continue;
            }
            match (family, label(Label::Outcome)) {
                (Family::Requests, "forwarded") => counts.forwarded += count,
                (Family::Requests, kind) => *counts.refused.entry(kind.to_owned()).or_default() += count,
                (Family::DeprecatedRequests, _) => {
                    let by_caller = counts.deprecated.entry(label(Label::Version).to_owned()).or_default();
                    *by_caller.entry(label(Label::Caller).to_owned()).or_default() += count;
                }
                _ => {}
            }
        }
        counts.refused.retain(|_, count| *count > 0);
        counts.deprecated.retain(|_, by_caller| {
            by_caller.retain(|_, count| *count > 0);
            !by_caller.is_empty()
        });
        counts
    }

    /// What the CLI reads about one cluster (a deployment).
    pub fn cluster(&self, cluster: &str) -> ClusterSample {
        ClusterSample {
            // Completed, not started: 5xx count on completion, so over an interval a request
            // started before it would otherwise count as an error but not as a request.
            requests: self.counter(&format!("cluster.{cluster}.upstream_rq_completed")),
            errors: self.counter(&format!("cluster.{cluster}.upstream_rq_5xx")),
            latency: self.histograms.get(&format!("cluster.{cluster}.upstream_rq_time")).cloned().unwrap_or_default(),
        }
    }
}

/// What the filters counted for a service since Envoy started (`meshver_requests_total` and
/// `meshver_deprecated_requests_total`, summed over the labels not kept here).
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct FilterCounts {
    /// Requests let through with a route key.
    pub forwarded: u64,
    /// Requests answered by the filter, by problem kind (`unsupported_version`).
    pub refused: BTreeMap<String, u64>,
    /// Uses of a deprecated version, by its line and then by calling service (`none` when
    /// no caller is known).
    pub deprecated: BTreeMap<String, BTreeMap<String, u64>>,
}

/// Requests, 5xx answers and latency buckets of a cluster: cumulative, or over an interval.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterSample {
    pub requests: u64,
    pub errors: u64,
    pub latency: Vec<Bucket>,
}

impl ClusterSample {
    /// What happened between `earlier` and `self` (counters and buckets subtracted).
    pub fn since(&self, earlier: &ClusterSample) -> ClusterSample {
        let latency = self
            .latency
            .iter()
            .map(|b| {
                let before =
                    earlier.latency.iter().find(|e| e.lower == b.lower && e.width == b.width).map_or(0, |e| e.count);
                Bucket { count: b.count.saturating_sub(before), ..*b }
            })
            .filter(|b| b.count > 0)
            .collect();
        let requests = self.requests.saturating_sub(earlier.requests);
        // Envoy bumps a request's 5xx and completed counters one after the other, so a read can
        // fall between them: never more errors than requests (seen: "1165 of 1164").
        ClusterSample { requests, errors: self.errors.saturating_sub(earlier.errors).min(requests), latency }
    }

    /// Share of 5xx answers, 0 when there were no requests.
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }

    /// The `q` quantile (0.99 for p99) in milliseconds, as the upper edge of the bucket that
    /// holds it: never below the true value, at most one bucket width (≤ ~10%) above it.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let mut buckets = self.latency.clone();
        buckets.sort_by(|a, b| a.lower.total_cmp(&b.lower));
        let total: u64 = buckets.iter().map(|b| b.count).sum();
        if total == 0 {
            return None;
        }
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for b in &buckets {
            seen += b.count;
            if seen >= rank {
                return Some(b.lower + b.width);
            }
        }
        buckets.last().map(|b| b.lower + b.width)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Captured from Envoy 1.40: `/stats?format=json&histogram_buckets=detailed`, trimmed.
    const SAMPLE: &str = r#"{"stats":[
        {"name":"cluster.user-2.1.0.upstream_rq_completed","value":108},
        {"name":"cluster.user-2.1.0.upstream_rq_5xx","value":41},
        {"name":"cluster.user-2.0.3.upstream_rq_completed","value":32},
        {"histograms":{"supported_percentiles":[0,25,50,75,90,95,99,99.5,99.9,100],"details":[
          {"name":"cluster.user-2.1.0.upstream_rq_time","totals":[
            {"lower_bound":0,"width":0,"count":8},{"lower_bound":41,"width":1,"count":2},
            {"lower_bound":42,"width":1,"count":5},{"lower_bound":300,"width":10,"count":5}],
           "intervals":[],"percentiles":[]}]}}]}"#;

    fn sample() -> Stats {
        Stats::parse(&serde_json::from_str(SAMPLE).unwrap())
    }

    #[test]
    fn reads_what_the_filters_counted() {
        let stats = Stats::parse(&serde_json::json!({"stats": [
            {"name": "wasmcustom.meshver_requests_total;service=user;version=2;route=user-v2;outcome=forwarded;caller=none", "value": 7},
            {"name": "wasmcustom.meshver_requests_total;service=user;version=none;route=user-v1;outcome=forwarded;caller=order", "value": 2},
            {"name": "wasmcustom.meshver_requests_total;service=user;version=other;route=none;outcome=unsupported_version;caller=none", "value": 3},
            {"name": "wasmcustom.meshver_requests_total;service=user;version=other;route=none;outcome=malformed_version;caller=none", "value": 0},
            {"name": "wasmcustom.meshver_requests_total;service=order;version=1;route=order-v1;outcome=forwarded;caller=none", "value": 5},
            {"name": "wasmcustom.meshver_deprecated_requests_total;service=user;version=1;caller=order", "value": 2},
            {"name": "wasmcustom.meshver_sticky_assignments_total;service=user;route=user-v2", "value": 4},
            {"name": "cluster.user-v2.upstream_rq_completed", "value": 9}]}));
        let user = stats.filter_counts("user");
        assert_eq!(user.forwarded, 9);
        assert_eq!(user.refused, BTreeMap::from([("unsupported_version".to_owned(), 3)]));
        assert_eq!(user.deprecated["1"], BTreeMap::from([("order".to_owned(), 2)]));
        assert_eq!(stats.filter_counts("order").forwarded, 5);
        assert_eq!(stats.filter_counts("nobody"), FilterCounts::default());
    }

    #[test]
    fn reads_counters_and_histograms() {
        let stats = sample();
        let user = stats.cluster("user-2.1.0");
        assert_eq!((user.requests, user.errors, user.latency.len()), (108, 41, 4));
        let old = stats.cluster("user-2.0.3");
        assert_eq!((old.requests, old.errors, old.latency.len()), (32, 0, 0));
        assert_eq!(stats.cluster("nope"), ClusterSample::default());
    }

    #[test]
    fn quantiles_are_upper_bucket_edges() {
        let user = sample().cluster("user-2.1.0");
        // 20 samples: rank 10 is the last in 41..42, rank 20 in 300..310.
        assert_eq!(user.quantile_ms(0.5), Some(42.0));
        assert_eq!(user.quantile_ms(0.75), Some(43.0));
        assert_eq!(user.quantile_ms(0.99), Some(310.0));
        assert_eq!(ClusterSample::default().quantile_ms(0.99), None);
    }

    #[test]
    fn deltas_subtract_counters_and_buckets() {
        let (before, after) = interval();
        let delta = after.since(&before);
        assert_eq!((delta.requests, delta.errors), (108, 41));
        // The old slow request is not in the interval: p99 over the interval is 43ms.
        assert_eq!(delta.quantile_ms(0.99), Some(43.0));
        assert_eq!(after.quantile_ms(0.999), Some(310.0));
    }

    #[test]
    fn a_read_between_two_counters_never_makes_more_errors_than_requests() {
        let before = ClusterSample { requests: 10, errors: 10, latency: vec![] };
        let after = ClusterSample { requests: 1174, errors: 1175, latency: vec![] };
        let delta = after.since(&before);
        assert_eq!((delta.requests, delta.errors), (1164, 1164));
        assert_eq!(delta.error_rate(), 1.0);
    }

    /// Samples of one cluster at the start and the end of an interval.
    pub fn interval() -> (ClusterSample, ClusterSample) {
        let before = ClusterSample {
            requests: 100,
            errors: 1,
            latency: vec![
                Bucket { lower: 42.0, width: 1.0, count: 99 },
                Bucket { lower: 300.0, width: 10.0, count: 1 },
            ],
        };
        let after = ClusterSample {
            requests: 208,
            errors: 42,
            latency: vec![
                Bucket { lower: 42.0, width: 1.0, count: 207 },
                Bucket { lower: 300.0, width: 10.0, count: 1 },
            ],
        };
        (before, after)
    }
}
