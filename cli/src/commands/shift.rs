//! `meshver shift SERVICE --to VERSION --weight N`: one deployment's share of its line, the
//! rest shared among the others in proportion to their live weights, in one runtime change:
//! to the fleet's runtime folder (`--runtime-dir`), or to one Envoy's admin layer.

use crate::admin::line_weight_keys;
use crate::catalog::{find_deployment, find_service};
use crate::fail::Outcome;
use crate::flags::EnvoyFlags;
use crate::fleet::Fleet;
use crate::weights;
use meshver::config::Deployment;

pub fn run(service: &str, to: &str, weight: u32, force: bool, envoy: &EnvoyFlags) -> Outcome {
    let fleet = Fleet::open(envoy)?;
    let service = find_service(&fleet.services, service)?;
    let (line, index) = find_deployment(service, to)?;
    let deployments = service.line_deployments(line);
    if let Some(target) = deployments.get(index).filter(|_| weight > 0) {
        crate::compat::refuse_breaking(service, target, force)?;
    }
    let next = weights::shift(&fleet.snapshot.line_weight_values(service, line), index, weight);
    let written = fleet.set(&line_weight_keys(line, deployments, &next)).map_err(|e| {
        crate::fail::Fail::new(
            format!("cannot write to {} ({e})", fleet.describe()),
            "nothing was changed; check it and try again",
        )
    })?;
    println!("{} {}: {}", service.name, line.route, describe(deployments, &next));
    fleet.settle(&written)
}

/// `2.1.0 25%, 2.0.3 75%`: newest first.
pub fn describe(deployments: &[Deployment], weights: &[u32]) -> String {
    let parts: Vec<String> =
        deployments.iter().zip(weights).rev().map(|(d, w)| format!("{} {w}%", d.version)).collect();
    parts.join(", ")
}
