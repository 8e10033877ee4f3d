//! `meshver rollback SERVICE [--line MAJOR]`: all of a line's weight back on its stable
//! deployment and nothing mirrored, every line in one runtime change (to the fleet's runtime
//! folder, or to one Envoy's admin layer).

use crate::admin::line_weight_keys;
use crate::catalog::{find_service, stable_index};
use crate::fail::{Fail, Outcome};
use crate::flags::EnvoyFlags;
use crate::fleet::Fleet;
use crate::render::envoy::{shadow_candidates, shadow_key, MirroredMethods};
use crate::weights;
use meshver::config::{Line, Service};

pub fn run(service: &str, major: Option<u64>, envoy: &EnvoyFlags) -> Outcome {
    let fleet = Fleet::open(envoy)?;
    let service = find_service(&fleet.services, service)?;
    let lines = lines_to_roll_back(service, major)?;
    let mut values = Vec::new();
    let mut done = Vec::new();
    for line in lines {
        let deployments = service.line_deployments(line);
        let stable = stable_index(deployments);
        values.extend(line_weight_keys(line, deployments, &weights::all_on(deployments.len(), stable)));
        // And no mirroring: a shadow step cut short may have left it on.
        for (_, d) in shadow_candidates(service).filter(|(l, _)| l.route == line.route) {
            values.extend([MirroredMethods::Safe, MirroredMethods::Unsafe].map(|m| (shadow_key(line, d, m), 0)));
        }
        if let Some(d) = deployments.get(stable) {
            done.push(format!("{} {}: {} 100%", service.name, line.route, d.version));
        }
    }
    if values.is_empty() {
        println!("{}: no line has more than one deployment; nothing to roll back", service.name);
        return Ok(());
    }
    let written = fleet.set(&values).map_err(|e| {
        Fail::new(format!("cannot write to {} ({e})", fleet.describe()), "nothing was changed; check it and try again")
    })?;
    for line in done {
        println!("rolled back {line}");
    }
    fleet.settle(&written)
}

/// The line `--line MAJOR` names, or without it every line that has something to roll back (more
/// than one deployment).
pub fn lines_to_roll_back(service: &Service, major: Option<u64>) -> Outcome<Vec<&Line>> {
    match major {
        Some(major) => Ok(vec![service.line(major).ok_or_else(|| {
            let known: Vec<String> = service.lines.iter().map(|l| l.major.to_string()).collect();
            Fail::new(
                format!("{} has no {major}.x line", service.name),
                format!("use --line {}", known.join(" or --line ")),
            )
        })?]),
        None => Ok(service.lines.iter().filter(|l| l.size > 1).collect()),
    }
}
