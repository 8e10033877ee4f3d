//! `shift`, `rollback` and `rollout` with `--istio`: the same choices as on Envoy, written into the
//! VirtualService by a merge patch (printed, or applied with kubectl when `--apply` is given).

use super::kubectl::Kubectl;
use super::{live_weights, merge_patch, virtual_service_name, IstioFlags};
use crate::catalog::{configured_weights, find_deployment, find_service, load_file, stable_index, CatalogFile};
use crate::commands::to_json;
use crate::fail::{Fail, Outcome};
use crate::flags::EnvoyFlags;
use crate::render::istio::Routing;
use crate::weights;
use meshver::config::{Line, Service};
use std::collections::BTreeMap;

/// The catalog (`--catalog`, which `--istio` requires) and kubectl.
struct Engine {
    catalog: CatalogFile,
    kubectl: Kubectl,
}

impl Engine {
    fn open(envoy: &EnvoyFlags) -> Outcome<Engine> {
        let Some(path) = &envoy.catalog else {
            return Err(Fail::new(
                "--istio needs the catalog the VirtualServices were rendered from",
                "give --catalog FILE",
            ));
        };
        Ok(Engine { catalog: load_file(path)?, kubectl: Kubectl::new(&envoy.istio) })
    }

    /// Every line's live weights (the catalog's where the VirtualService does not say).
    fn live(&self, service: &Service) -> Outcome<BTreeMap<String, Vec<u32>>> {
        let found = live_weights(service, &self.kubectl.get_virtual_service(virtual_service_name(service))?);
        Ok(service
            .lines
            .iter()
            .map(|line| {
                let weights = found
                    .get(&line.route)
                    .cloned()
                    .unwrap_or_else(|| configured_weights(service.line_deployments(line)));
                (line.route.clone(), weights)
            })
            .collect())
    }

    /// Applies `routing` to the service's VirtualService, or prints its merge patch.
    fn write(&self, service: &Service, routing: &Routing, istio: &IstioFlags) -> Outcome<bool> {
        let patch = merge_patch(service, &self.catalog.catalog.route_header, istio.namespace.as_deref(), routing);
        if istio.apply {
            self.kubectl.patch_virtual_service(virtual_service_name(service), &patch)?;
        } else {
            crate::commands::emit(None, &to_json(&patch)?)?;
        }
        Ok(istio.apply)
    }

    fn service<'a>(&'a self, name: &str) -> Outcome<&'a Service> {
        find_service(&self.catalog.catalog.services, name)
    }
}

/// What was done, for the line printed after an applied change.
fn applied(service: &Service, istio: &IstioFlags) -> String {
    let ns = istio.namespace.as_deref().map_or(String::new(), |ns| format!(" in {ns}"));
    format!("(VirtualService {}{ns} patched)", virtual_service_name(service))
}

/// `shift SERVICE --to VERSION --weight N --istio`.
pub fn shift(service: &str, to: &str, weight: u32, force: bool, envoy: &EnvoyFlags) -> Outcome {
    let engine = Engine::open(envoy)?;
    let istio = &envoy.istio;
    let service = engine.service(service)?;
    let (line, index) = find_deployment(service, to)?;
    let deployments = service.line_deployments(line);
    if let Some(target) = deployments.get(index).filter(|_| weight > 0) {
        crate::compat::refuse_breaking(service, target, force)?;
    }
    let mut live = engine.live(service)?;
    let current = live.get(&line.route).cloned().unwrap_or_else(|| configured_weights(deployments));
    let next = weights::shift(&current, index, weight);
    live.insert(line.route.clone(), next.clone());
    if engine.write(service, &Routing { weights: live, mirror: None }, istio)? {
        let described = crate::commands::shift::describe(deployments, &next);
        println!("{} {}: {described} {}", service.name, line.route, applied(service, istio));
    }
    Ok(())
}

/// `rollback SERVICE [--line MAJOR] --istio`: the line (or every line of several deployments) all on
/// its stable deployment; a shadow step's mirror goes too.
pub fn rollback(service: &str, major: Option<u64>, envoy: &EnvoyFlags) -> Outcome {
    let engine = Engine::open(envoy)?;
    let istio = &envoy.istio;
    let service = engine.service(service)?;
    let lines: Vec<&Line> = match major {
        Some(major) => vec![service.line(major).ok_or_else(|| {
            let known: Vec<String> = service.lines.iter().map(|l| l.major.to_string()).collect();
            Fail::new(
                format!("{} has no {major}.x line", service.name),
                format!("use --line {}", known.join(" or --line ")),
            )
        })?],
        None => service.lines.iter().filter(|l| l.size > 1).collect(),
    };
    let mut live = engine.live(service)?;
    let mut done = Vec::new();
    for line in lines {
        let deployments = service.line_deployments(line);
        let stable = stable_index(deployments);
        live.insert(line.route.clone(), weights::all_on(deployments.len(), stable));
        if let Some(d) = deployments.get(stable) {
            done.push(format!("{} {}: {} 100%", service.name, line.route, d.version));
        }
    }
    if engine.write(service, &Routing { weights: live, mirror: None }, istio)? {
        for line in done {
            println!("rolled back {line} {}", applied(service, istio));
        }
    }
    Ok(())
}
