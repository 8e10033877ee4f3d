//! Istio as the engine: on Kubernetes, `shift`, `rollback` and `rollout --istio` change the
//! VirtualService that `meshver render istio` made, not an Envoy's runtime. A VirtualService's
//! `http` routes are a list, which a JSON merge patch replaces whole, so every change is the whole
//! list rendered from the catalog with the new weights (and a shadow step's mirror): the same
//! routes `render istio` writes, sticky buckets included. Weights are read back from the live
//! VirtualService, which is where they live under Istio.

mod commands;
mod kubectl;
mod queries;

pub use commands::{rollback, rollout, shift};

use crate::render::istio::{http_routes, sanitize, subset_names, Routing};
use meshver::config::Service;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The flags that make `shift`, `rollback` and `rollout` act on Istio's resources.
#[derive(Debug, clap::Args)]
pub struct IstioFlags {
    /// Change the VirtualService that `meshver render istio` made (with kubectl), not Envoy admins;
    /// needs --catalog.
    #[arg(long, requires = "catalog", conflicts_with_all = ["admin", "fleet", "runtime_dir"])]
    pub istio: bool,
    /// The namespace of the VirtualServices, as given to `render istio` (default: kubectl's).
    #[arg(long, requires = "istio")]
    pub namespace: Option<String>,
    /// Patch the VirtualService with kubectl; without it the merge patch is printed.
    #[arg(long, requires = "istio")]
    pub apply: bool,
    /// The kubectl to run.
    #[arg(long, value_name = "PATH", default_value = "kubectl")]
    pub kubectl: String,
    /// kubectl's --context.
    #[arg(long, requires = "istio")]
    pub context: Option<String>,
}

/// The VirtualService's name for a service (`render istio` names it after the service).
pub fn virtual_service_name(service: &Service) -> &str {
    &service.name
}

/// The live weights of each line of `service` in a VirtualService (`kubectl get -o json`), oldest
/// deployment first, read from the line's weighted route; a line whose route is missing or does not
/// name every deployment of the line is left out (it takes the catalog's).
pub fn live_weights(service: &Service, virtual_service: &Value) -> BTreeMap<String, Vec<u32>> {
    let subsets = subset_names(service);
    let routes = virtual_service["spec"]["http"].as_array().cloned().unwrap_or_default();
    let mut found = BTreeMap::new();
    for line in service.lines.iter().filter(|l| l.size > 1) {
        let Some(route) = routes.iter().find(|r| r["name"].as_str() == Some(sanitize(&line.route).as_str())) else {
            continue;
        };
        let by_subset: BTreeMap<&str, u32> = route["route"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|to| {
                let subset = to["destination"]["subset"].as_str()?;
                let weight = to.get("weight").map_or(Some(0), |w| w.as_u64().and_then(|w| u32::try_from(w).ok()))?;
                Some((subset, weight))
            })
            .collect();
        let weights: Option<Vec<u32>> = service
            .line_deployments(line)
            .iter()
            .map(|d| {
                let index = service.deployments.iter().position(|x| x.route == d.route)?;
                by_subset.get(subsets.get(index)?.as_str()).copied()
            })
            .collect();
        if let Some(weights) = weights.filter(|w| w.iter().sum::<u32>() == 100) {
            found.insert(line.route.clone(), weights);
        }
    }
    found
}

/// The JSON merge patch (`kubectl patch --type merge`) that gives a service's VirtualService the
/// routes for `routing`.
pub fn merge_patch(service: &Service, route_header: &str, namespace: Option<&str>, routing: &Routing) -> Value {
    json!({"spec": {"http": http_routes(service, route_header, namespace, routing)}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::istio::Mirror;

    fn service() -> Service {
        let catalog = meshver::config::load(
            br#"{"services":[{"name":"user","match":{"path_prefixes":["/"]},"default_version":"2","deployments":[
            {"version":"1.4.0"},{"version":"2.0.3","weight":90},{"version":"2.1.0","weight":10},{"version":"2.2.0","weight":0}]}]}"#,
        )
        .unwrap();
        catalog.services.into_iter().next().unwrap()
    }

    #[test]
    fn the_weights_a_patch_writes_are_read_back() {
        let service = service();
        for weights in [vec![90, 10, 0], vec![0, 25, 75], vec![34, 33, 33], vec![0, 0, 100]] {
            let routing = Routing { weights: BTreeMap::from([("user-v2".to_owned(), weights.clone())]), mirror: None };
            let patch = merge_patch(&service, "x-meshver-route", Some("shop"), &routing);
            assert_eq!(live_weights(&service, &patch), BTreeMap::from([("user-v2".to_owned(), weights)]));
        }
        // A route list that is not meshver's: nothing read, the catalog's weights stand.
        assert!(live_weights(&service, &json!({"spec": {"http": [{"name": "user-v2", "route": []}]}})).is_empty());
    }

    #[test]
    fn a_shadow_mirrors_the_lines_routes_only() {
        let service = service();
        let mirror = |all_methods| Routing {
            weights: BTreeMap::new(),
            mirror: Some(Mirror { line_route: "user-v2".into(), to: "user-2.2.0".into(), percent: 10, all_methods }),
        };
        let plain = merge_patch(&service, "x-meshver-route", None, &Routing::catalog())["spec"]["http"].clone();
        let safe = merge_patch(&service, "x-meshver-route", None, &mirror(false))["spec"]["http"].clone();
        let all = merge_patch(&service, "x-meshver-route", None, &mirror(true))["spec"]["http"].clone();
        let of_line = |routes: &Value| -> usize {
            routes
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["match"][0]["headers"]["x-meshver-route"]["exact"] == "user-v2")
                .count()
        };
        let mirrored = |routes: &Value| routes.as_array().unwrap().iter().filter(|r| r.get("mirror").is_some()).count();
        // Every route of the line mirrors; with safe methods only, through a copy before each.
        assert_eq!((mirrored(&all), all.as_array().unwrap().len()), (of_line(&plain), plain.as_array().unwrap().len()));
        assert_eq!(mirrored(&safe), of_line(&plain));
        assert_eq!(safe.as_array().unwrap().len(), plain.as_array().unwrap().len() + of_line(&plain));
        for route in safe.as_array().unwrap().iter().filter(|r| r.get("mirror").is_some()) {
            assert_eq!(route["mirror"], json!({"host": "user", "subset": "user-2-2-0"}));
            assert_eq!(route["mirrorPercentage"], json!({"value": 10.0}));
            assert_eq!(route["match"][0]["method"], json!({"regex": "^(GET|HEAD|OPTIONS)$"}));
            assert!(route["name"].as_str().unwrap().ends_with("-safe-methods"));
        }
    }
}
