//! `meshver rollout SERVICE --to VERSION`: raise a deployment's weight step by step, judge
//! each interval from the target cluster's stats, and roll the line back to stable on a
//! breach or on Ctrl-C.

mod progress;
mod shadow;

pub use shadow::Shadow;

use super::Connected;
use crate::admin::{retry, AdminError};
use crate::catalog::{find_deployment, find_service, stable_index};
use crate::fail::{Fail, Outcome};
use crate::flags::{EnvoyFlags, Steps};
use crate::format::{millis, percent};
use crate::judge::{judge, Limits};
use crate::stats::Stats;
use crate::weights;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Exit status after Ctrl-C (128 + SIGINT), once the line is rolled back.
pub const EXIT_INTERRUPTED: i32 = 130;

/// What `meshver rollout` was asked.
pub struct RolloutArgs<'a> {
    pub service: &'a str,
    pub to: &'a str,
    pub steps: &'a Steps,
    pub interval: Duration,
    pub limits: Limits,
    /// Roll out even a deployment whose contract refuses bodies its line accepted.
    pub force: bool,
    /// A shadow step before the first real one (`--shadow`).
    pub shadow: Option<Shadow>,
    pub envoy: &'a EnvoyFlags,
}

pub fn run(args: &RolloutArgs) -> Outcome {
    let limits = &args.limits;
    let live = Connected::open(args.envoy)?;
    let service = find_service(&live.services, args.service)?;
    let (line, index) = find_deployment(service, args.to)?;
    let deployments = service.line_deployments(line);
    let stable = stable_index(deployments);
    let (Some(target), Some(stable_deployment)) = (deployments.get(index), deployments.get(stable)) else {
        return Err(Fail::new("the line has no such deployment", "check the catalog"));
    };
    crate::compat::refuse_breaking(service, target, args.force)?;
    if index == stable {
        return Err(Fail::new(
            format!(
                "{} {} is the stable deployment of {} (highest catalog weight)",
                service.name, target.version, line.route
            ),
            "roll out another version, or update the catalog's weights once a rollout is done",
        ));
    }

    let mut current = live.snapshot.line_weight_values(service, line);
    let shadow_target =
        shadow::ShadowTarget { service, line, target, live_weight: current.get(index).copied().unwrap_or(0) };
    if let Some(shadow) = &args.shadow {
        shadow::check(shadow, &shadow_target, &live.admin)?;
    }

    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .map_err(|e| Fail::new(format!("cannot handle Ctrl-C: {e}"), "run meshver from a normal shell"))?;

    let admin = &live.admin;
    let mut last_set: Option<u32> = None;
    let lost = |e: &AdminError, last_set: Option<u32>| {
        let state = match last_set {
            Some(w) => format!("after setting {} to {w}% of {}", target.route, line.route),
            None => "before any weight was set".to_owned(),
        };
        Fail::new(
            format!("lost the Envoy admin at {} ({e}) {state}; the live weights are unknown and left as they are", admin.url),
            format!(
                "check with `meshver status --admin {0}` and roll back with `meshver rollback {1} --line {2} --admin {0}`",
                admin.url, service.name, line.major
            ),
        )
    };
    let roll_back = |last_set: Option<u32>| -> Outcome {
        let all_on_stable = weights::all_on(deployments.len(), stable);
        retry(&AtomicBool::new(false), || admin.set_line_weights(line, deployments, &all_on_stable))
            .map_err(|e| lost(&e, last_set))
    };
    let interval_text = humantime::format_duration(args.interval).to_string();
    let total = args.steps.percents.len();
    println!(
        "rolling out {} {} on {}: steps {} every {interval_text}, max error rate {}{}",
        service.name,
        target.version,
        line.route,
        args.steps.text,
        percent(limits.max_error_rate),
        limits.max_p99_ms.map_or(String::new(), |p| format!(", max p99 {}", millis(p))),
    );
    if let Some(shadow) = &args.shadow {
        shadow::run(shadow, &shadow_target, admin, args.interval, limits, &interrupted)?;
    }
    for (n, step) in args.steps.percents.iter().enumerate() {
        let next = weights::shift(&current, index, *step);
        retry(&interrupted, || admin.set_line_weights(line, deployments, &next)).map_err(|e| lost(&e, last_set))?;
        last_set = Some(*step);
        current = next;
        let before = retry(&interrupted, || admin.stats()).map_err(|e| lost(&e, last_set))?;
        let before = Stats::parse(&before).cluster(&target.route);
        let label = format!("step {}/{total}: {} at {step}%", n + 1, target.route);
        if !progress::wait(args.interval, &label, admin, &target.route, &before, &interrupted) {
            roll_back(last_set)?;
            return Err(Fail::new(
                format!("interrupted at {label}"),
                format!("rolled back {} to {} (all of {})", service.name, stable_deployment.version, line.route),
            )
            .with_code(EXIT_INTERRUPTED));
        }
        let after = retry(&interrupted, || admin.stats()).map_err(|e| lost(&e, last_set))?;
        let delta = Stats::parse(&after).cluster(&target.route).since(&before);
        if let Err(reason) = judge(&delta, limits, &interval_text) {
            roll_back(last_set)?;
            println!("{label}: {reason}");
            return Err(Fail::new(
                format!("rolled back {} to {}: {reason}", service.name, stable_deployment.version),
                format!("fix {} {} and roll out again", service.name, target.version),
            ));
        }
        println!(
            "{label}: ok, {} requests, {} errors, p99 {}",
            delta.requests,
            percent(delta.error_rate()),
            delta.quantile_ms(0.99).map_or("-".to_owned(), millis)
        );
    }
    println!("{} {} now takes {}% of {}", service.name, target.version, current.get(index).unwrap_or(&0), line.route);
    Ok(())
}
