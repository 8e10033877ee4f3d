//! The samples `status --watch` keeps: each deployment's cumulative cluster counters and latency
//! buckets, taken every interval, as far back as the window reaches. Everything it shows is a
//! difference between two samples, so it covers the window (or each interval), never "since
//! Envoy started".

use crate::stats::{ClusterSample, Stats};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// One reading of the admin stats: each watched cluster's cumulative sample.
struct Sample {
    at: Instant,
    clusters: BTreeMap<String, ClusterSample>,
}

/// The samples of the last `span`, oldest first.
pub struct Window {
    span: Duration,
    samples: VecDeque<Sample>,
}

/// Requests and 5xx answers of one cluster within one interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    pub requests: u64,
    pub errors: u64,
}

impl Window {
    pub fn new(span: Duration) -> Window {
        Window { span, samples: VecDeque::new() }
    }

    /// Adds a reading of `routes`' clusters, and forgets the samples older than the window.
    pub fn push<'a>(&mut self, at: Instant, stats: &Stats, routes: impl IntoIterator<Item = &'a str>) {
        let clusters = routes.into_iter().map(|route| (route.to_owned(), stats.cluster(route))).collect();
        self.samples.push_back(Sample { at, clusters });
        while self.samples.front().is_some_and(|oldest| at.duration_since(oldest.at) > self.span) {
            self.samples.pop_front();
        }
    }

    /// How much time the kept samples span (at most the window).
    pub fn covered(&self) -> Duration {
        match (self.samples.front(), self.samples.back()) {
            (Some(oldest), Some(newest)) => newest.at.duration_since(oldest.at),
            _ => Duration::ZERO,
        }
    }

    /// What `route`'s cluster did over the window: requests, 5xx and the latency buckets of the
    /// newest sample less those of the oldest (nothing yet with fewer than two samples).
    pub fn over(&self, route: &str) -> ClusterSample {
        match (self.samples.front(), self.samples.back()) {
            (Some(oldest), Some(newest)) => cluster(newest, route).since(&cluster(oldest, route)),
            _ => ClusterSample::default(),
        }
    }

    /// Requests per second over the window.
    pub fn rate(&self, requests: u64) -> f64 {
        let seconds = self.covered().as_secs_f64();
        if seconds > 0.0 {
            requests as f64 / seconds
        } else {
            0.0
        }
    }

    /// `route`'s requests and 5xx in each interval between samples, newest first, at most `last`.
    pub fn ticks(&self, route: &str, last: usize) -> Vec<Tick> {
        let newest_first: Vec<&Sample> = self.samples.iter().rev().collect();
        newest_first
            .windows(2)
            .take(last)
            .filter_map(|pair| match pair {
                [later, earlier] => {
                    let delta = cluster(later, route).since(&cluster(earlier, route));
                    Some(Tick { requests: delta.requests, errors: delta.errors })
                }
                _ => None,
            })
            .collect()
    }
}

fn cluster(sample: &Sample, route: &str) -> ClusterSample {
    sample.clusters.get(route).cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Envoy's stats with `route`'s cumulative counters and one latency bucket per value.
    fn stats(route: &str, requests: u64, errors: u64, latencies_ms: &[(f64, u64)]) -> Stats {
        let buckets: Vec<_> = latencies_ms
            .iter()
            .map(|(lower, count)| json!({"lower_bound": lower, "width": 1, "count": count}))
            .collect();
        Stats::parse(&json!({"stats": [
            {"name": format!("cluster.{route}.upstream_rq_completed"), "value": requests},
            {"name": format!("cluster.{route}.upstream_rq_5xx"), "value": errors},
            {"histograms": {"details": [{"name": format!("cluster.{route}.upstream_rq_time"), "totals": buckets}]}}]}))
    }

    #[test]
    fn numbers_cover_the_window_and_ticks_each_interval() {
        let start = Instant::now();
        let second = |n: u64| start + Duration::from_secs(n);
        let mut window = Window::new(Duration::from_secs(3));
        assert_eq!(window.over("a"), ClusterSample::default());
        window.push(second(0), &stats("a", 100, 0, &[(500.0, 100)]), ["a"]);
        assert_eq!((window.over("a").requests, window.covered()), (0, Duration::ZERO));
        window.push(second(1), &stats("a", 110, 0, &[(500.0, 100), (5.0, 10)]), ["a"]);
        window.push(second(2), &stats("a", 130, 5, &[(500.0, 100), (5.0, 30)]), ["a"]);
        let over = window.over("a");
        assert_eq!((over.requests, over.errors), (30, 5));
        // The slow requests before the first sample are not in the window's p99.
        assert_eq!(over.quantile_ms(0.99), Some(6.0));
        assert_eq!(window.rate(over.requests), 15.0);
        assert_eq!(window.ticks("a", 10), [Tick { requests: 20, errors: 5 }, Tick { requests: 10, errors: 0 }]);
        assert_eq!(window.ticks("a", 1), [Tick { requests: 20, errors: 5 }]);
        // Two more seconds: the samples at 0s and 1s fall out of the 3s window.
        window.push(second(3), &stats("a", 130, 5, &[]), ["a"]);
        window.push(second(5), &stats("a", 131, 5, &[]), ["a"]);
        assert_eq!(window.covered(), Duration::from_secs(3));
        assert_eq!((window.over("a").requests, window.over("a").errors), (1, 0));
        assert_eq!(window.over("unwatched"), ClusterSample::default());
    }
}
