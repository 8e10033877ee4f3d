//! `meshver rollout SERVICE --to VERSION`: raise a deployment's weight step by step (through
//! the fleet's runtime folder or one Envoy's admin), check that every Envoy listed uses it,
//! judge each interval from the target cluster's numbers (one admin's stats, or Prometheus over
//! the fleet), and roll the line back to stable on a breach, a stalled Envoy, a lost judge, or
//! Ctrl-C.

pub mod progress;
mod shadow;

pub use shadow::Shadow;

use crate::admin::{line_weight_keys, retry, Admin};
use crate::catalog::{find_deployment, find_service, stable_index};
use crate::fail::{Fail, Outcome};
use crate::flags::{EnvoyFlags, Steps};
use crate::fleet::{Fleet, Source};
use crate::format::{millis, percent};
use crate::judge::{judge, JudgeError, JudgeSource, Limits, Mark, Observation};
use crate::prometheus::Prometheus;
use crate::weights;
use meshver::config::{Deployment, Line, Service};
use std::sync::atomic::AtomicBool;
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
    /// Judge each step from this Prometheus (every sidecar it scrapes) instead of an admin.
    pub prometheus: Option<String>,
    /// Label matchers added to every query (`job="mesh"`), or empty.
    pub prometheus_selector: String,
    /// Print the plan (weights, where they go, the judge's queries) and change nothing.
    pub dry_run: bool,
    pub envoy: &'a EnvoyFlags,
}

/// What a rollout moves: the new deployment (`target`, at `index` of its line's `deployments`)
/// and the line's stable one, which a rollback goes to.
pub struct Candidate<'a> {
    pub line: &'a Line,
    pub index: usize,
    pub deployments: &'a [Deployment],
    pub stable: usize,
    pub target: &'a Deployment,
    pub stable_deployment: &'a Deployment,
}

/// The deployment `version` of `service` as a rollout's candidate: refused when its contract
/// refuses bodies its line accepted (unless `force`), or when it is already the stable one.
pub fn candidate<'a>(service: &'a Service, version: &str, force: bool) -> Outcome<Candidate<'a>> {
    let (line, index) = find_deployment(service, version)?;
    let deployments = service.line_deployments(line);
    let stable = stable_index(deployments);
    let (Some(target), Some(stable_deployment)) = (deployments.get(index), deployments.get(stable)) else {
        return Err(Fail::new("the line has no such deployment", "check the catalog"));
    };
    crate::compat::refuse_breaking(service, target, force)?;
    if index == stable {
        return Err(Fail::new(
            format!(
                "{} {} is the stable deployment of {} (highest catalog weight)",
                service.name, target.version, line.route
            ),
            "roll out another version, or update the catalog's weights once a rollout is done",
        ));
    }
    Ok(Candidate { line, index, deployments, stable, target, stable_deployment })
}

pub fn run(args: &RolloutArgs) -> Outcome {
    let limits = &args.limits;
    let fleet = Fleet::open(args.envoy)?;
    let service = find_service(&fleet.services, args.service)?;
    let Candidate { line, index, deployments, stable, target, stable_deployment } =
        candidate(service, args.to, args.force)?;
    let judge_source = judge_source(args, &fleet)?;

    let mut current = fleet.snapshot.line_weight_values(service, line);
    let shadow_target =
        shadow::ShadowTarget { service, line, target, live_weight: current.get(index).copied().unwrap_or(0) };
    let rollback_command = format!("meshver rollback {} --line {} {}", service.name, line.major, fleet.flags());
    if let Some(shadow) = &args.shadow {
        shadow::check(shadow, &shadow_target, &judge_source, &rollback_command)?;
    }
    if args.dry_run {
        print_plan(args, &fleet, &judge_source, line, deployments, index, &current);
        return Ok(());
    }
    judge_source.check(&target.route, &line.route, args.interval).map_err(|e| {
        Fail::new(format!("cannot read {} ({e})", judge_source.describe()), "check --prometheus and that it answers")
    })?;

    let interrupted = crate::commands::interrupt_flag()?;

    let mut last_set: Option<u32> = None;
    let state = |last_set: Option<u32>| match last_set {
        Some(w) => format!("after setting {} to {w}% of {}", target.route, line.route),
        None => "before any weight was set".to_owned(),
    };
    let lost = |e: &dyn std::fmt::Display, last_set: Option<u32>| match &fleet.source {
        Source::Admin(admin) => Fail::new(
            format!(
                "lost the Envoy admin at {} ({e}) {}; the live weights are unknown and left as they are",
                admin.url,
                state(last_set)
            ),
            format!("check with `meshver status --admin {}` and roll back with `{rollback_command}`", admin.url),
        ),
        Source::Folder(_) => Fail::new(
            format!(
                "cannot write {} ({e}) {}; the fleet keeps the weights last written",
                fleet.describe(),
                state(last_set)
            ),
            format!("check the folder and roll back with `{rollback_command}`"),
        ),
    };
    // All of the line on stable; what it says of the Envoys that did not follow.
    let roll_back = |last_set: Option<u32>| -> Outcome<Vec<String>> {
        let all_on_stable = weights::all_on(deployments.len(), stable);
        let keys = line_weight_keys(line, deployments, &all_on_stable);
        let written = retry(&AtomicBool::new(false), || fleet.set(&keys)).map_err(|e| lost(&e, last_set))?;
        Ok(fleet.lagging(&written))
    };
    let rolled_back = format!("rolled back {} to {}", service.name, stable_deployment.version);
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
        shadow::run(shadow, &shadow_target, &fleet, &judge_source, args.interval, limits, &interrupted)?;
    }
    for (n, step) in args.steps.percents.iter().enumerate() {
        let next = weights::shift(&current, index, *step);
        let keys = line_weight_keys(line, deployments, &next);
        let written = retry(&interrupted, || fleet.set(&keys)).map_err(|e| lost(&e, last_set))?;
        last_set = Some(*step);
        current = next;
        let label = format!("step {}/{total}: {} at {step}%", n + 1, target.route);
        let lagging = fleet.lagging(&written);
        if !lagging.is_empty() {
            let after = roll_back(last_set)?;
            let fail = fleet.lagging_failure(
                &lagging,
                &rolled_back,
                &format!("use the weights of {label}"),
                "fix or restart them (they keep their last weights), then roll out again",
            );
            return Err(with_lagging(fail, after));
        }
        // The judge's reads are retried like the admin's; a judge lost for good rolls back where
        // the weights can still be written (the folder, or an admin other than the judge).
        let judge_lost = |e: JudgeError| -> Fail {
            if matches!((&fleet.source, &judge_source), (Source::Admin(_), JudgeSource::Admin(_))) {
                return lost(&e, last_set);
            }
            match roll_back(last_set) {
                Ok(after) => with_lagging(
                    Fail::new(
                        format!("lost {} ({e}) at {label}: cannot judge it", judge_source.describe()),
                        format!("{rolled_back} (all of {}); roll out again once it answers", line.route),
                    ),
                    after,
                ),
                Err(fail) => fail,
            }
        };
        let mark = retry(&interrupted, || judge_source.begin(&target.route)).map_err(judge_lost)?;
        let live = || {
            let seen = judge_source.observe(&target.route, &line.route, &mark).ok()?;
            Some(format!("{} requests, {} 5xx", seen.observed.requests, seen.observed.errors))
        };
        // A fleet's judge waits for --min-requests, up to WAIT_INTERVALS more intervals.
        let seen = progress::measure_after(
            args.interval,
            &label,
            &interrupted,
            live,
            || retry(&interrupted, || judge_source.observe(&target.route, &line.route, &mark)).map_err(&judge_lost),
            |seen: &Observation| !judge_source.is_patient() || seen.observed.requests >= limits.min_requests,
            |seen| {
                println!(
                    "{label}: {} requests so far{}, fewer than --min-requests {}; waiting up to {} more",
                    seen.observed.requests,
                    seen.line_requests.map_or(String::new(), |n| format!(" ({n} on {})", line.route)),
                    limits.min_requests,
                    humantime::format_duration(args.interval * WAIT_INTERVALS)
                );
            },
        )?;
        let Some(seen) = seen else {
            let after = roll_back(last_set)?;
            return Err(with_lagging(
                Fail::new(format!("interrupted at {label}"), format!("{rolled_back} (all of {})", line.route))
                    .with_code(EXIT_INTERRUPTED),
                after,
            ));
        };
        let window = match &mark {
            Mark::Since(start) => {
                humantime::format_duration(Duration::from_secs(start.elapsed().as_secs())).to_string()
            }
            Mark::Stats(_) => interval_text.clone(),
        };
        if let Err(reason) = judge(seen.observed.clone(), limits, &window) {
            let after = roll_back(last_set)?;
            println!("{label}: {reason}");
            return Err(with_lagging(
                Fail::new(
                    format!("{rolled_back}: {reason}"),
                    format!("fix {} {} and roll out again", service.name, target.version),
                ),
                after,
            ));
        }
        println!(
            "{label}: ok, {} requests, {} errors, p99 {}",
            seen.observed.requests,
            percent(seen.observed.error_rate()),
            seen.observed.p99_ms.map_or("-".to_owned(), millis)
        );
    }
    println!("{} {} now takes {}% of {}", service.name, target.version, current.get(index).unwrap_or(&0), line.route);
    Ok(())
}

/// How many more intervals a Prometheus-judged step waits for `--min-requests` before it rolls
/// back as "cannot judge".
pub const WAIT_INTERVALS: u32 = 3;

/// The judge: `--prometheus`, else the one admin (the weight source's, or a fleet's only one).
fn judge_source(args: &RolloutArgs, fleet: &Fleet) -> Outcome<JudgeSource> {
    if let Some(url) = &args.prometheus {
        let selector = args.prometheus_selector.trim().to_owned();
        return Ok(JudgeSource::Prometheus { server: Prometheus::new(url), selector });
    }
    match (&fleet.source, fleet.members.as_slice()) {
        (Source::Admin(admin), _) => Ok(JudgeSource::Admin(Admin::new(&admin.url))),
        (Source::Folder(_), [one]) => Ok(JudgeSource::Admin(Admin::new(&one.url))),
        (Source::Folder(_), members) => Err(Fail::new(
            format!("a fleet's steps are judged from Prometheus, and {} admins were given", members.len()),
            "give --prometheus URL (or one --admin to judge from that Envoy alone)",
        )),
    }
}

/// The Envoys that did not follow a rollback, under its failure.
fn with_lagging(mut fail: Fail, lagging: Vec<String>) -> Fail {
    if !lagging.is_empty() {
        fail.lines.push(format!("  {} Envoys do not use the rollback yet:", lagging.len()));
        fail.lines.extend(lagging.into_iter().map(|l| format!("  {l}")));
    }
    fail
}

/// `--dry-run`: the weights of each step, where they go, and how each step is judged.
fn print_plan(
    args: &RolloutArgs,
    fleet: &Fleet,
    judge_source: &JudgeSource,
    line: &Line,
    deployments: &[Deployment],
    index: usize,
    current: &[u32],
) {
    let Some(target) = deployments.get(index) else { return };
    println!("dry run: nothing is changed");
    let checked: Vec<&str> = fleet.members.iter().map(|m| m.name.as_str()).collect();
    println!(
        "weights go to {}; Envoys checked within {}: {}",
        fleet.describe(),
        humantime::format_duration(fleet.converge_timeout),
        if checked.is_empty() { "none".to_owned() } else { checked.join(", ") }
    );
    if let Some(shadow) = &args.shadow {
        let cluster = crate::render::envoy::shadow_cluster(target);
        println!(
            "shadow first: {}% of {}'s {} mirrored to {cluster} for {}, judged as a step by",
            shadow.percent,
            line.route,
            shadow.methods(),
            humantime::format_duration(args.interval)
        );
        for query in judge_source.plan(&cluster, &line.route, args.interval) {
            println!("  {query}");
        }
    }
    let mut weights = current.to_vec();
    for (n, step) in args.steps.percents.iter().enumerate() {
        weights = weights::shift(&weights, index, *step);
        println!(
            "step {}/{}: {} {}",
            n + 1,
            args.steps.percents.len(),
            line.route,
            super::shift::describe(deployments, &weights)
        );
    }
    let limits = &args.limits;
    let wait = if judge_source.is_patient() {
        format!(
            " (a step with fewer waits up to {} more, then rolls back)",
            humantime::format_duration(args.interval * WAIT_INTERVALS)
        )
    } else {
        " (fewer fail the step)".to_owned()
    };
    println!(
        "each step judged after {} from {}: max error rate {}{}, at least {} requests{wait}",
        humantime::format_duration(args.interval),
        judge_source.describe(),
        percent(limits.max_error_rate),
        limits.max_p99_ms.map_or(String::new(), |p| format!(", max p99 {}", millis(p))),
        limits.min_requests,
    );
    for query in judge_source.plan(&target.route, &line.route, args.interval) {
        println!("  {query}");
    }
}
