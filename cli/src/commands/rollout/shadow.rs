//! The shadow step of `meshver rollout --shadow N%`: before any real request reaches the new
//! deployment, Envoy mirrors a share of its line's requests to it (the route's request mirror
//! policies, turned on through the runtime like the weights), answers nobody from it, and the
//! step is judged from the shadow cluster's stats over one interval. A candidate that fails
//! stops the rollout before its first step: its weight was never raised.
//!
//! Only requests on the line's route are mirrored, and the filter sends a request there only
//! when every deployment of the line can serve the version it asked for (otherwise it pins the
//! request to a deployment): so the candidate is never sent a request it cannot serve by version.

use super::{progress, EXIT_INTERRUPTED};
use crate::admin::retry;
use crate::fail::{Fail, Outcome};
use crate::fleet::Fleet;
use crate::format::{millis, percent};
use crate::judge::{judge, JudgeError, JudgeSource, Limits, Observation};
use crate::prometheus;
use crate::render::envoy::{shadow_cluster, shadow_key, MirroredMethods};
use meshver::config::{Deployment, Line, Service};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What `--shadow` and `--shadow-all-methods` asked.
#[derive(Debug, Clone, Copy)]
pub struct Shadow {
    /// The share (1–100) of the line's requests mirrored to the candidate.
    pub percent: u32,
    /// Mirror every method, not only GET, HEAD and OPTIONS.
    pub all_methods: bool,
}

impl Shadow {
    /// Which requests are mirrored, for people.
    pub fn methods(&self) -> &'static str {
        if self.all_methods {
            "requests"
        } else {
            "GET, HEAD and OPTIONS requests"
        }
    }
}

/// The deployment in shadow and where it stands.
pub struct ShadowTarget<'a> {
    pub service: &'a Service,
    pub line: &'a Line,
    pub target: &'a Deployment,
    /// The candidate's live weight in its line now.
    pub live_weight: u32,
}

impl ShadowTarget<'_> {
    /// The runtime values that mirror `safe`% of the line's safe requests and `unsafe_share`% of
    /// the others to the candidate.
    fn keys(&self, safe: u32, unsafe_share: u32) -> Vec<(String, u32)> {
        vec![
            (shadow_key(self.line, self.target, MirroredMethods::Safe), safe),
            (shadow_key(self.line, self.target, MirroredMethods::Unsafe), unsafe_share),
        ]
    }
}

/// Refusals before anything changes: a share of 0, a candidate that already takes real
/// requests (a shadow step must come before them), or Envoys without a mirror policy for it
/// (rendered before shadow steps existed): their shadow cluster is unknown to the judge's source.
pub fn check(shadow: &Shadow, at: &ShadowTarget, judge_source: &JudgeSource, rollback: &str) -> Outcome {
    let name = format!("{} {}", at.service.name, at.target.version);
    if shadow.percent == 0 {
        return Err(Fail::new("--shadow 0% mirrors nothing", "give --shadow like 10%, or leave it out"));
    }
    if at.live_weight > 0 {
        return Err(Fail::new(
            format!(
                "{name} already takes {}% of {}: a shadow step comes before real requests",
                at.live_weight, at.line.route
            ),
            format!("roll the line back first (`{rollback}`), or leave out --shadow"),
        ));
    }
    let cluster = shadow_cluster(at.target);
    let known = match judge_source {
        JudgeSource::Admin(admin) => has_cluster(&admin.stats().map_err(|e| e.fail(admin))?, &cluster),
        JudgeSource::Prometheus { server, selector } => {
            let (quoted, extra) = (prometheus::escape(&cluster), prometheus::extra_matchers(selector));
            let query = format!("count(envoy_cluster_upstream_rq_total{{envoy_cluster_name=\"{quoted}\"{extra}}})");
            let count = server.scalar(&query).map_err(|e| {
                Fail::new(
                    format!("cannot read {} ({e})", judge_source.describe()),
                    "check --prometheus and that it answers",
                )
            })?;
            count.is_some_and(|n| n > 0.0)
        }
    };
    if !known {
        return Err(Fail::new(
            format!("{} knows no shadow cluster {cluster} to mirror {name} to", judge_source.describe()),
            "render the Envoys' bootstrap with \"shadow\": true in the mesh file (`meshver render envoy`) and restart them, or leave out --shadow",
        ));
    }
    Ok(())
}

/// Whether Envoy's stats name the cluster (every cluster has `upstream_rq_total` from its start).
fn has_cluster(stats: &Value, cluster: &str) -> bool {
    let wanted = format!("cluster.{cluster}.upstream_rq_total");
    stats
        .get("stats")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|entry| entry.get("name").and_then(Value::as_str) == Some(wanted.as_str()))
}

/// Mirrors for one interval, stops mirroring, and judges what the candidate answered. The shadow
/// keys go where the weights go (the fleet's runtime folder, or one admin), so every Envoy of the
/// fleet mirrors; the judge reads the shadow cluster as a step reads the deployment's. `Err` when
/// it failed (the rollout stops, no weight was changed), when an Envoy did not start mirroring,
/// when interrupted, or when the weight source or the judge was lost.
pub fn run(
    shadow: &Shadow,
    at: &ShadowTarget,
    fleet: &Fleet,
    judge_source: &JudgeSource,
    interval: Duration,
    limits: &Limits,
    interrupted: &AtomicBool,
) -> Outcome {
    let cluster = shadow_cluster(at.target);
    let name = format!("{} {}", at.service.name, at.target.version);
    let off = at.keys(0, 0);
    let turn_off = || retry(&AtomicBool::new(false), || fleet.set(&off)).map(|_| ());
    let lost = |what: String| {
        let keys: Vec<String> = off.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Fail::new(
            format!("{what} in the shadow step of {name}; no weight was changed, but mirroring to {cluster} may still be on"),
            format!("turn it off by setting {} through {}", keys.join(" "), fleet.describe()),
        )
    };
    let unsafe_share = if shadow.all_methods { shadow.percent } else { 0 };
    let mark = retry(interrupted, || judge_source.begin(&cluster))
        .map_err(|e| Fail::new(format!("cannot read {} ({e})", judge_source.describe()), "check that it answers"))?;
    let written = retry(interrupted, || fleet.set(&at.keys(shadow.percent, unsafe_share)))
        .map_err(|e| lost(format!("cannot write {} ({e})", fleet.describe())))?;
    let lagging = fleet.lagging(&written);
    if !lagging.is_empty() {
        turn_off().map_err(|e| lost(format!("cannot write {} ({e})", fleet.describe())))?;
        return Err(fleet.lagging_failure(
            &lagging,
            &format!("stopped the rollout of {name}"),
            "start mirroring",
            "mirroring is off and no weight was changed; fix or restart them, then roll out again",
        ));
    }
    let label =
        format!("shadow: {} mirrors {}% of {}'s {}", at.target.route, shadow.percent, at.line.route, shadow.methods());
    let live = || {
        let seen = judge_source.observe(&cluster, &at.line.route, &mark).ok()?;
        Some(format!("{} mirrored, {} 5xx", seen.observed.requests, seen.observed.errors))
    };
    // Mirror for the interval; a fleet's judge (Prometheus) that has seen fewer than
    // --min-requests copies keeps mirroring up to WAIT_INTERVALS more intervals, as a step waits.
    // None: interrupted.
    let observed = progress::measure_after(
        interval,
        &label,
        interrupted,
        live,
        || retry(interrupted, || judge_source.observe(&cluster, &at.line.route, &mark)),
        |seen: &Observation| !judge_source.is_patient() || seen.observed.requests >= limits.min_requests,
        |_| (),
    );
    // Mirroring stops whatever happened; retried even after Ctrl-C.
    turn_off().map_err(|e| lost(format!("cannot write {} ({e})", fleet.describe())))?;
    let seen = observed.map_err(|e: JudgeError| {
        Fail::new(
            format!("lost {} ({e}) in the shadow step of {name}: cannot judge it", judge_source.describe()),
            "mirroring is off and no weight was changed; roll out again once it answers",
        )
    })?;
    let Some(seen) = seen.filter(|_| !interrupted.load(Ordering::SeqCst)) else {
        return Err(Fail::new(
            format!("interrupted in the shadow step of {name}"),
            format!("mirroring is off and no weight was changed; roll out {name} again"),
        )
        .with_code(EXIT_INTERRUPTED));
    };
    let interval_text = humantime::format_duration(interval).to_string();
    if let Err(reason) = judge(seen.observed.clone(), limits, &interval_text) {
        println!("{label}: {reason}");
        return Err(Fail::new(
            format!(
                "stopped the rollout of {name} in shadow: {reason} (mirrored); it was sent no user's request and the weights are unchanged"
            ),
            format!("fix {name} and roll out again"),
        ));
    }
    println!(
        "{label}: ok, {} mirrored requests, {} errors, p99 {}",
        seen.observed.requests,
        percent(seen.observed.error_rate()),
        seen.observed.p99_ms.map_or("-".to_owned(), millis)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::has_cluster;
    use serde_json::json;

    #[test]
    fn a_cluster_is_known_by_its_request_counter() {
        let stats = json!({"stats": [{"name": "cluster.user-2.1.0-shadow.upstream_rq_total", "value": 0}]});
        assert!(has_cluster(&stats, "user-2.1.0-shadow"));
        assert!(!has_cluster(&stats, "user-2.1.0"));
        assert!(!has_cluster(&json!({}), "user-2.1.0-shadow"));
    }
}
