//! The shadow step of `meshver rollout --shadow N%`: before any real request reaches the new
//! deployment, Envoy mirrors a share of its line's requests to it (the route's request mirror
//! policies, turned on through the runtime like the weights), answers nobody from it, and the
//! step is judged from the shadow cluster's stats over one interval. A candidate that fails
//! stops the rollout before its first step: its weight was never raised.
//!
//! Only requests on the line's route are mirrored, and the filter sends a request there only
//! when every deployment of the line can serve the version it asked for (otherwise it pins the
//! request to a deployment): so the candidate is never sent a request it cannot serve by version.

use super::progress;
use crate::admin::{retry, Admin, AdminError};
use crate::fail::{Fail, Outcome};
use crate::format::{millis, percent};
use crate::judge::{judge, Limits};
use crate::render::envoy::{shadow_cluster, shadow_key, MirroredMethods};
use crate::stats::Stats;
use meshver::config::{Deployment, Line, Service};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Exit status after Ctrl-C (128 + SIGINT), once mirroring is off again.
const EXIT_INTERRUPTED: i32 = super::EXIT_INTERRUPTED;

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
    fn methods(&self) -> &'static str {
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
/// requests (a shadow step must come before them), or an Envoy whose config has no mirror
/// policy for it (rendered before shadow steps existed, or the candidate is the stable one).
pub fn check(shadow: &Shadow, at: &ShadowTarget, admin: &Admin) -> Outcome {
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
            format!(
                "roll the line back first (`meshver rollback {} --line {} --admin {}`), or leave out --shadow",
                at.service.name, at.line.major, admin.url
            ),
        ));
    }
    let stats = admin.stats().map_err(|e| e.fail(admin))?;
    let cluster = shadow_cluster(at.target);
    if !has_cluster(&stats, &cluster) {
        return Err(Fail::new(
            format!("the Envoy at {} has no shadow cluster {cluster} to mirror {name} to", admin.url),
            "render its bootstrap again with this meshver (`meshver render envoy`) and restart it, or leave out --shadow",
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

/// Mirrors for one interval, stops mirroring, and judges what the candidate answered. `Err` when
/// it failed (the rollout stops, no weight was changed), when interrupted, or when the admin
/// was lost.
pub fn run(
    shadow: &Shadow,
    at: &ShadowTarget,
    admin: &Admin,
    interval: Duration,
    limits: &Limits,
    interrupted: &AtomicBool,
) -> Outcome {
    let cluster = shadow_cluster(at.target);
    let name = format!("{} {}", at.service.name, at.target.version);
    let lost = |e: &AdminError| {
        let off: Vec<String> = at.keys(0, 0).iter().map(|(k, v)| format!("{k}={v}")).collect();
        Fail::new(
            format!(
                "lost the Envoy admin at {} ({e}) in the shadow step of {name}; no weight was changed, \
                 but mirroring to {cluster} may still be on",
                admin.url
            ),
            format!("turn it off with `curl -X POST '{}/runtime_modify?{}'`", admin.url, off.join("&")),
        )
    };
    let unsafe_share = if shadow.all_methods { shadow.percent } else { 0 };
    let before = retry(interrupted, || admin.stats()).map_err(|e| lost(&e))?;
    let before = Stats::parse(&before).cluster(&cluster);
    retry(interrupted, || admin.set_runtime(&at.keys(shadow.percent, unsafe_share))).map_err(|e| lost(&e))?;
    let label =
        format!("shadow: {} mirrors {}% of {}'s {}", at.target.route, shadow.percent, at.line.route, shadow.methods());
    let finished = progress::wait(interval, &label, admin, &cluster, &before, interrupted);
    // Mirroring stops whatever happened; retried even after Ctrl-C.
    retry(&AtomicBool::new(false), || admin.set_runtime(&at.keys(0, 0))).map_err(|e| lost(&e))?;
    if !finished || interrupted.load(Ordering::SeqCst) {
        return Err(Fail::new(
            format!("interrupted in the shadow step of {name}"),
            format!("mirroring is off and no weight was changed; roll out {name} again"),
        )
        .with_code(EXIT_INTERRUPTED));
    }
    // Mirrored requests still in flight when mirroring stopped are counted too.
    let after = retry(interrupted, || admin.stats()).map_err(|e| lost(&e))?;
    let delta = Stats::parse(&after).cluster(&cluster).since(&before);
    let interval_text = humantime::format_duration(interval).to_string();
    if let Err(reason) = judge(&delta, limits, &interval_text) {
        println!("{label}: {reason}");
        return Err(Fail::new(
            format!("stopped the rollout of {name} in shadow: {reason} (mirrored); it was sent no user's request and the weights are unchanged"),
            format!("fix {name} and roll out again"),
        ));
    }
    println!(
        "{label}: ok, {} mirrored requests, {} errors, p99 {}",
        delta.requests,
        percent(delta.error_rate()),
        delta.quantile_ms(0.99).map_or("-".to_owned(), millis)
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
