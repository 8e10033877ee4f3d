//! `meshver shift`, `rollback` and `rollout`: weight changes through Envoy's admin runtime.

use crate::admin::{Admin, AdminError};
use crate::catalog::{find_deployment, find_service, line_deployments, runtime_prefix, stable_index};
use crate::fail::{Fail, Outcome};
use crate::live::{self, Snapshot};
use crate::stats::{judge, millis, percent, ClusterSample, Limits, Stats};
use crate::weights;
use meshver::config::{Deployment, Line, Service};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Exit status after Ctrl-C (128 + SIGINT), once the line is rolled back.
pub const EXIT_INTERRUPTED: i32 = 130;

/// The admin, what it runs, and the services to act on.
struct Context {
    admin: Admin,
    snapshot: Snapshot,
    services: Vec<Service>,
}

impl Context {
    fn open(admin_url: &str, catalog: Option<&Path>) -> Outcome<Context> {
        let admin = Admin::new(admin_url);
        admin.ping().map_err(|e| e.fail(&admin))?;
        let snapshot = Snapshot::fetch(&admin).map_err(|e| e.fail(&admin))?;
        let services = live::services(catalog, &snapshot.discovered, &admin)?;
        Ok(Context { admin, snapshot, services })
    }
}

/// The runtime keys and values that put `weights` on a line's deployments.
fn runtime_values(line: &Line, deployments: &[Deployment], weights: &[u32]) -> Vec<(String, u32)> {
    let prefix = runtime_prefix(line);
    deployments.iter().zip(weights).map(|(d, w)| (format!("{prefix}.{}", d.route), *w)).collect()
}

fn describe(deployments: &[Deployment], weights: &[u32]) -> String {
    let parts: Vec<String> =
        deployments.iter().zip(weights).rev().map(|(d, w)| format!("{} {w}%", d.version)).collect();
    parts.join(", ")
}

/// Parses a weight given on the command line (0–100).
pub fn parse_weight(text: &str) -> Outcome<u32> {
    text.trim()
        .trim_end_matches('%')
        .parse::<u32>()
        .ok()
        .filter(|w| *w <= 100)
        .ok_or_else(|| Fail::new(format!("weight {text:?} is not a whole percentage"), "give --weight from 0 to 100"))
}

pub fn shift(service: &str, to: &str, weight: &str, admin_url: &str, catalog: Option<&Path>) -> Outcome {
    let weight = parse_weight(weight)?;
    let ctx = Context::open(admin_url, catalog)?;
    let service = find_service(&ctx.services, service)?;
    let (line, index) = find_deployment(service, to)?;
    let deployments = line_deployments(service, line);
    let current: Vec<u32> = live::line_weights(service, line, &ctx.snapshot.runtime, &ctx.snapshot.discovered)
        .into_iter()
        .map(|(w, _)| w)
        .collect();
    let next = weights::shift(&current, index, weight);
    ctx.admin.set_runtime(&runtime_values(line, deployments, &next)).map_err(|e| e.fail(&ctx.admin))?;
    println!("{} {}: {}", service.name, line.route, describe(deployments, &next));
    Ok(())
}

pub fn rollback(service: &str, major: Option<u64>, admin_url: &str, catalog: Option<&Path>) -> Outcome {
    let ctx = Context::open(admin_url, catalog)?;
    let service = find_service(&ctx.services, service)?;
    let lines: Vec<&Line> = match major {
        Some(major) => vec![service.line(major).ok_or_else(|| {
            let known: Vec<String> = service.lines.iter().map(|l| l.major.to_string()).collect();
            Fail::new(
                format!("{} has no {major}.x line", service.name),
                format!("use --line {}", known.join(" or --line ")),
            )
        })?],
        // Every line that has something to roll back (more than one deployment).
        None => service.lines.iter().filter(|l| l.size > 1).collect(),
    };
    let mut values = Vec::new();
    let mut done = Vec::new();
    for line in lines {
        let deployments = line_deployments(service, line);
        let stable = stable_index(deployments);
        values.extend(runtime_values(line, deployments, &weights::all_on(deployments.len(), stable)));
        if let Some(d) = deployments.get(stable) {
            done.push(format!("{} {}: {} 100%", service.name, line.route, d.version));
        }
    }
    if values.is_empty() {
        println!("{}: no line has more than one deployment; nothing to roll back", service.name);
        return Ok(());
    }
    ctx.admin.set_runtime(&values).map_err(|e| e.fail(&ctx.admin))?;
    for line in done {
        println!("rolled back {line}");
    }
    Ok(())
}

/// What `meshver rollout` was asked.
pub struct RolloutArgs<'a> {
    pub service: &'a str,
    pub to: &'a str,
    pub steps: &'a str,
    pub interval: &'a str,
    pub max_error_rate: &'a str,
    pub max_p99: Option<&'a str>,
    pub min_requests: u64,
    pub admin: &'a str,
    pub catalog: Option<&'a Path>,
}

/// Steps like `5,25,50,100`: strictly increasing, each 1–100.
pub fn parse_steps(text: &str) -> Outcome<Vec<u32>> {
    let bad = || {
        Fail::new(
            format!("steps {text:?} are not increasing percentages"),
            "give --steps like 5,25,50,100 (each 1 to 100, increasing)",
        )
    };
    let steps: Vec<u32> = text
        .split(',')
        .map(|s| s.trim().trim_end_matches('%').parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let increasing = steps.windows(2).all(|w| matches!(w, [a, b] if a < b));
    if steps.is_empty() || !increasing || steps.iter().any(|s| !(1..=100).contains(s)) {
        return Err(bad());
    }
    Ok(steps)
}

/// `1%`, `0.5%` or `1` (a percentage either way) → a fraction.
pub fn parse_percent(text: &str, flag: &str) -> Outcome<f64> {
    text.trim()
        .trim_end_matches('%')
        .parse::<f64>()
        .ok()
        .filter(|p| (0.0..=100.0).contains(p))
        .map(|p| p / 100.0)
        .ok_or_else(|| {
            Fail::new(format!("{flag} {text:?} is not a percentage"), format!("give {flag} like 1% (0 to 100)"))
        })
}

/// `30s`, `1m30s`, `250ms`.
pub fn parse_duration(text: &str, flag: &str) -> Outcome<Duration> {
    humantime::parse_duration(text).ok().filter(|d| !d.is_zero()).ok_or_else(|| {
        Fail::new(format!("{flag} {text:?} is not a duration"), format!("give {flag} like 30s, 2m or 250ms"))
    })
}

/// Tries an admin call up to 5 times, 1s apart (about 5s in all), unless interrupted.
fn retry<T>(interrupted: &AtomicBool, mut call: impl FnMut() -> Result<T, AdminError>) -> Result<T, AdminError> {
    let mut attempt = 0;
    loop {
        match call() {
            Ok(v) => return Ok(v),
            Err(e) if attempt >= 4 || interrupted.load(Ordering::SeqCst) => return Err(e),
            Err(_) => {
                attempt += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

pub fn rollout(args: &RolloutArgs) -> Outcome {
    let steps = parse_steps(args.steps)?;
    let interval = parse_duration(args.interval, "--interval")?;
    let limits = Limits {
        max_error_rate: parse_percent(args.max_error_rate, "--max-error-rate")?,
        max_p99_ms: match args.max_p99 {
            Some(text) => Some(parse_duration(text, "--max-p99")?.as_secs_f64() * 1000.0),
            None => None,
        },
        min_requests: args.min_requests,
    };
    let ctx = Context::open(args.admin, args.catalog)?;
    let service = find_service(&ctx.services, args.service)?;
    let (line, index) = find_deployment(service, args.to)?;
    let deployments = line_deployments(service, line);
    let stable = stable_index(deployments);
    let (Some(target), Some(stable_deployment)) = (deployments.get(index), deployments.get(stable)) else {
        return Err(Fail::new("the line has no such deployment", "check the catalog"));
    };
    if index == stable {
        return Err(Fail::new(
            format!(
                "{} {} is the stable deployment of {} (highest catalog weight)",
                service.name, target.version, line.route
            ),
            "roll out another version, or update the catalog's weights once a rollout is done",
        ));
    }

    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .map_err(|e| Fail::new(format!("cannot handle Ctrl-C: {e}"), "run meshver from a normal shell"))?;

    let admin = &ctx.admin;
    let mut current: Vec<u32> = live::line_weights(service, line, &ctx.snapshot.runtime, &ctx.snapshot.discovered)
        .into_iter()
        .map(|(w, _)| w)
        .collect();
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
        let values = runtime_values(line, deployments, &weights::all_on(deployments.len(), stable));
        retry(&AtomicBool::new(false), || admin.set_runtime(&values)).map_err(|e| lost(&e, last_set))
    };
    let interval_text = humantime::format_duration(interval).to_string();
    let total = steps.len();
    println!(
        "rolling out {} {} on {}: steps {} every {interval_text}, max error rate {}{}",
        service.name,
        target.version,
        line.route,
        args.steps,
        percent(limits.max_error_rate),
        limits.max_p99_ms.map_or(String::new(), |p| format!(", max p99 {}", millis(p))),
    );
    for (n, step) in steps.iter().enumerate() {
        let next = weights::shift(&current, index, *step);
        retry(&interrupted, || admin.set_runtime(&runtime_values(line, deployments, &next)))
            .map_err(|e| lost(&e, last_set))?;
        last_set = Some(*step);
        current = next;
        let before = retry(&interrupted, || admin.stats()).map_err(|e| lost(&e, last_set))?;
        let before = Stats::parse(&before).cluster(&target.route);
        let label = format!("step {}/{total}: {} at {step}%", n + 1, target.route);
        if !wait(interval, &label, admin, &target.route, &before, &interrupted) {
            roll_back(last_set)?;
            return Err(Fail::new(
                format!("interrupted at {label}"),
                format!("rolled back {} to {} (all of {})", service.name, stable_deployment.version, line.route),
            )
            .with_code(EXIT_INTERRUPTED));
        }
        let after = retry(&interrupted, || admin.stats()).map_err(|e| lost(&e, last_set))?;
        let delta = Stats::parse(&after).cluster(&target.route).since(&before);
        if let Err(reason) = judge(&delta, &limits, &interval_text) {
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

/// Waits one interval, showing progress and the target's live counts; false if interrupted.
fn wait(
    interval: Duration,
    label: &str,
    admin: &Admin,
    cluster: &str,
    before: &ClusterSample,
    interrupted: &AtomicBool,
) -> bool {
    let bar = indicatif::ProgressBar::new(interval.as_millis() as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {elapsed}/{duration} {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(label.to_owned());
    let start = Instant::now();
    let mut last_poll = start;
    while start.elapsed() < interval {
        if interrupted.load(Ordering::SeqCst) {
            bar.abandon();
            return false;
        }
        if !bar.is_hidden() && last_poll.elapsed() >= Duration::from_secs(1) {
            last_poll = Instant::now();
            if let Ok(body) = admin.stats() {
                let delta = Stats::parse(&body).cluster(cluster).since(before);
                bar.set_message(format!("{} requests, {} 5xx", delta.requests, delta.errors));
            }
        }
        bar.set_position(start.elapsed().as_millis() as u64);
        std::thread::sleep(Duration::from_millis(50).min(interval.saturating_sub(start.elapsed())));
    }
    bar.finish_and_clear();
    !interrupted.load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_must_increase_within_1_to_100() {
        assert_eq!(parse_steps("5,25,50,100").unwrap(), [5, 25, 50, 100]);
        assert_eq!(parse_steps("50% , 100%").unwrap(), [50, 100]);
        for bad in ["", "0,50", "50,50", "50,25", "5,101", "a,b", "5,,10"] {
            assert!(parse_steps(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn percentages_durations_weights() {
        assert_eq!(parse_percent("1%", "--max-error-rate").unwrap(), 0.01);
        assert_eq!(parse_percent("0.5", "--max-error-rate").unwrap(), 0.005);
        assert!(parse_percent("101%", "--max-error-rate").is_err());
        assert_eq!(parse_duration("250ms", "--max-p99").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("soon", "--interval").is_err());
        assert_eq!(parse_weight("100").unwrap(), 100);
        assert!(parse_weight("101").unwrap_err().lines[0].starts_with("meshver: weight \"101\""));
    }
}
