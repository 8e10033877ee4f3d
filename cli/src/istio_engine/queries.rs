//! Judging a step under Istio from Istio's standard metrics in Prometheus: requests
//! `istio_requests_total` by `destination_version` and `response_code`, latency
//! `istio_request_duration_milliseconds_bucket`, summed over every proxy that reports them.
//!
//! A step is judged as the callers saw it (`reporter="source"`: the gateway's and the callers'
//! sidecars, which count what never reached the deployment too, such as a refused connection).
//! A shadow step is judged as the candidate's own sidecar saw it (`reporter="destination"`): Envoy
//! sends mirrored requests from the router without a stream of their own, so no source proxy
//! reports them, and with the candidate's weight at 0 what its sidecar sees is the mirror (and
//! any request pinned to a version only it serves).

use crate::prometheus::{escape, extra_matchers, line_requests, range, StepQueries};
use std::time::Duration;

/// Who reports the requests a query counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reporter {
    Source,
    Destination,
}

/// The queries for one deployment (`service` at `version`, in `namespace` if given) over `window`,
/// summed over every series they match (narrowed by `selector`, e.g. `cluster="east"`); `line` is
/// the deployment's line route, for what the filters sent there.
pub fn istio_queries(
    service: &str,
    version: &str,
    namespace: Option<&str>,
    line: &str,
    selector: &str,
    reporter: Reporter,
    window: Duration,
) -> StepQueries {
    let reporter = match reporter {
        Reporter::Source => "source",
        Reporter::Destination => "destination",
    };
    let mut labels = format!(
        "reporter=\"{reporter}\",destination_service_name=\"{}\",destination_version=\"{}\"",
        escape(service),
        escape(version)
    );
    if let Some(ns) = namespace {
        labels.push_str(&format!(",destination_service_namespace=\"{}\"", escape(ns)));
    }
    let extra = extra_matchers(selector);
    labels.push_str(&extra);
    let range = range(window);
    StepQueries {
        requests: format!("sum(increase(istio_requests_total{{{labels}}}[{range}]))"),
        errors: format!("sum(increase(istio_requests_total{{{labels},response_code=~\"5..\"}}[{range}]))"),
        p99: format!(
            "histogram_quantile(0.99, sum by (le) (increase(istio_request_duration_milliseconds_bucket{{{labels}}}[{range}])))"
        ),
        line_requests: line_requests(line, &extra, &range),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_counts_what_callers_saw_a_shadow_what_the_candidate_saw() {
        let q = istio_queries("user", "2.1.0", Some("shop"), "user-v2", "", Reporter::Source, Duration::from_secs(30));
        let labels = r#"reporter="source",destination_service_name="user",destination_version="2.1.0",destination_service_namespace="shop""#;
        assert_eq!(q.requests, format!("sum(increase(istio_requests_total{{{labels}}}[30000ms]))"));
        assert_eq!(
            q.errors,
            format!(r#"sum(increase(istio_requests_total{{{labels},response_code=~"5.."}}[30000ms]))"#)
        );
        assert_eq!(
            q.p99,
            format!("histogram_quantile(0.99, sum by (le) (increase(istio_request_duration_milliseconds_bucket{{{labels}}}[30000ms])))")
        );
        assert_eq!(
            q.line_requests,
            r#"sum(increase(meshver_requests_total{route="user-v2",outcome="forwarded"}[30000ms]))"#
        );
        let shadow = istio_queries(
            "user",
            "2.1.0",
            None,
            "user-v2",
            r#"mesh="a""#,
            Reporter::Destination,
            Duration::from_millis(10),
        );
        assert_eq!(
            shadow.requests,
            r#"sum(increase(istio_requests_total{reporter="destination",destination_service_name="user",destination_version="2.1.0",mesh="a"}[1000ms]))"#
        );
    }
}
