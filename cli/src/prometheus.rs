//! Judging a rollout step from Prometheus: the PromQL that measures a deployment across every
//! sidecar Prometheus scrapes, and the HTTP client that asks it (`GET /api/v1/query`).
//!
//! The numbers come from Envoy's own cluster stats as `/stats/prometheus` exposes them, each
//! deployment's cluster named whole by the `envoy_cluster_name` tag `render envoy` writes:
//! requests `envoy_cluster_upstream_rq_total`, 5xx `envoy_cluster_upstream_rq_xx` of class 5,
//! latency `envoy_cluster_upstream_rq_time_bucket`; and the line's requests as the filters
//! counted them, `meshver_requests_total`. Every query sums over all the series it matches: all
//! sidecars (narrowed with `--prometheus-selector`).

use std::time::Duration;

/// A Prometheus server's query API.
pub struct Prometheus {
    pub url: String,
    agent: ureq::Agent,
}

/// Why a query failed (unreachable, refused, or an answer that is not a query result).
#[derive(Debug)]
pub struct PrometheusError(pub String);

impl std::fmt::Display for PrometheusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Prometheus {
    /// A client of the server at `url` (`http://127.0.0.1:9090`; a URL without a scheme is http).
    pub fn new(url: &str) -> Prometheus {
        let url = crate::flags::base_url(url);
        // A refused query is answered 400 with the reason in the JSON body: read it, not the status.
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .proxy(None)
            .http_status_as_error(false)
            .build();
        Prometheus { url, agent: ureq::Agent::new_with_config(config) }
    }

    /// The value of an instant query that sums to one sample; None when nothing matched or the
    /// value is not a number (a quantile of no requests).
    pub fn scalar(&self, expr: &str) -> Result<Option<f64>, PrometheusError> {
        let failed = |e: &dyn std::fmt::Display| PrometheusError(format!("{e}"));
        let mut answer =
            self.agent.get(format!("{}/api/v1/query", self.url)).query("query", expr).call().map_err(|e| failed(&e))?;
        let text = answer.body_mut().read_to_string().map_err(|e| failed(&e))?;
        let body: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            PrometheusError(format!("GET /api/v1/query did not answer JSON ({e}): is this Prometheus?"))
        })?;
        if body.get("status").and_then(|s| s.as_str()) != Some("success") {
            let why = body.get("error").and_then(|e| e.as_str()).unwrap_or("no reason given");
            return Err(PrometheusError(format!("the query {expr} was refused: {why}")));
        }
        let value = body.pointer("/data/result/0/value/1").and_then(|v| v.as_str());
        Ok(value.and_then(|v| v.parse::<f64>().ok()).filter(|v| v.is_finite()))
    }
}

/// The PromQL that measures one deployment's cluster over a window, summed across sidecars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepQueries {
    pub requests: String,
    pub errors: String,
    pub p99: String,
    /// What the filters sent on the deployment's line (for the "too few requests" message).
    pub line_requests: String,
}

/// The queries for `cluster` (a deployment's route key) on its line `route` over `window`;
/// `selector` adds label matchers (`job="mesh"`), or is empty.
pub fn step_queries(cluster: &str, route: &str, selector: &str, window: Duration) -> StepQueries {
    let extra = extra_matchers(selector);
    let cluster = format!("envoy_cluster_name=\"{}\"{extra}", escape(cluster));
    let range = range(window);
    StepQueries {
        requests: format!("sum(increase(envoy_cluster_upstream_rq_total{{{cluster}}}[{range}]))"),
        errors: format!(
            "sum(increase(envoy_cluster_upstream_rq_xx{{{cluster},envoy_response_code_class=\"5\"}}[{range}]))"
        ),
        p99: format!(
            "histogram_quantile(0.99, sum by (le) (increase(envoy_cluster_upstream_rq_time_bucket{{{cluster}}}[{range}])))"
        ),
        line_requests: line_requests(route, &extra, &range),
    }
}

/// What the filters forwarded on the line `route` over `range` (`extra`: [`extra_matchers`]).
pub fn line_requests(route: &str, extra: &str, range: &str) -> String {
    format!(
        "sum(increase(meshver_requests_total{{route=\"{}\",outcome=\"forwarded\"{extra}}}[{range}]))",
        escape(route)
    )
}

/// A selector's label matchers (`job="mesh"`) to follow others inside braces: `,job="mesh"`, or
/// nothing for an empty selector.
pub fn extra_matchers(selector: &str) -> String {
    let selector = selector.trim();
    if selector.is_empty() {
        String::new()
    } else {
        format!(",{selector}")
    }
}

/// A PromQL range for `window`, a second at least.
pub fn range(window: Duration) -> String {
    format!("{}ms", window.as_millis().max(1000))
}

/// A label value inside PromQL double quotes.
pub fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

/// What a step measured from Prometheus.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measured {
    pub requests: f64,
    pub errors: f64,
    pub p99_ms: Option<f64>,
    pub line_requests: f64,
}

/// Runs the step's queries.
pub fn measure(prometheus: &Prometheus, queries: &StepQueries) -> Result<Measured, PrometheusError> {
    Ok(Measured {
        requests: prometheus.scalar(&queries.requests)?.unwrap_or(0.0),
        errors: prometheus.scalar(&queries.errors)?.unwrap_or(0.0),
        p99_ms: prometheus.scalar(&queries.p99)?,
        line_requests: prometheus.scalar(&queries.line_requests)?.unwrap_or(0.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_sum_the_deployments_cluster_across_sidecars() {
        let q = step_queries("user-2.1.0", "user-v2", "", Duration::from_secs(30));
        assert_eq!(
            q.requests,
            r#"sum(increase(envoy_cluster_upstream_rq_total{envoy_cluster_name="user-2.1.0"}[30000ms]))"#
        );
        assert_eq!(
            q.errors,
            r#"sum(increase(envoy_cluster_upstream_rq_xx{envoy_cluster_name="user-2.1.0",envoy_response_code_class="5"}[30000ms]))"#
        );
        assert_eq!(
            q.p99,
            r#"histogram_quantile(0.99, sum by (le) (increase(envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="user-2.1.0"}[30000ms])))"#
        );
        assert_eq!(
            q.line_requests,
            r#"sum(increase(meshver_requests_total{route="user-v2",outcome="forwarded"}[30000ms]))"#
        );
        let narrowed = step_queries("a\"b", "l", r#"job="mesh""#, Duration::from_millis(1500));
        assert!(
            narrowed.requests.contains(r#"{envoy_cluster_name="a\"b",job="mesh"}[1500ms]"#),
            "{}",
            narrowed.requests
        );
        assert!(narrowed.line_requests.contains(r#"outcome="forwarded",job="mesh"}"#));
    }

    #[test]
    fn an_unreachable_server_is_an_error_not_a_zero() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("127.0.0.1:{}", closed.local_addr().unwrap().port());
        drop(closed);
        assert!(Prometheus::new(&url).scalar("up").is_err());
    }
}
