//! What a running Envoy holds: the catalogs its filters were given, the weighted routes and
//! their configured weights (from `/config_dump`), and live overrides (from `/runtime`).

use crate::admin::{Admin, AdminError};
use crate::catalog::{configured_weights, line_deployments, load_file, runtime_prefix};
use crate::fail::{Fail, Outcome};
use meshver::config::{Line, Service};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

const WASM_FILTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

/// What `/config_dump` says about meshver.
#[derive(Debug, Default)]
pub struct Discovered {
    /// The configuration strings of every meshver filter, first seen first, without repeats.
    pub catalogs: Vec<String>,
    /// Runtime key prefix of each weighted route → (cluster, configured weight).
    pub weighted: BTreeMap<String, Vec<(String, u32)>>,
}

/// Walks a config dump for wasm filter configurations and weighted routes.
pub fn discover(dump: &Value) -> Discovered {
    let mut found = Discovered::default();
    walk(dump, &mut found);
    found
}

fn walk(value: &Value, found: &mut Discovered) {
    match value {
        Value::Object(map) => {
            if map.get("@type").and_then(Value::as_str) == Some(WASM_FILTER_TYPE) {
                let config = map.get("config");
                let text = config.and_then(|c| c.pointer("/configuration/value")).and_then(Value::as_str);
                let is_meshver = config.and_then(|c| c.get("root_id")).and_then(Value::as_str) == Some("meshver");
                if let (Some(text), true) = (text, is_meshver) {
                    if !found.catalogs.iter().any(|c| c == text) {
                        found.catalogs.push(text.to_owned());
                    }
                }
            }
            if let Some(weighted) = map.get("weighted_clusters") {
                if let Some(prefix) = weighted.get("runtime_key_prefix").and_then(Value::as_str) {
                    let clusters = weighted
                        .get("clusters")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|c| {
                            let name = c.get("name").and_then(Value::as_str)?;
                            let weight = c.get("weight").and_then(Value::as_u64).unwrap_or(0);
                            Some((name.to_owned(), weight as u32))
                        })
                        .collect();
                    found.weighted.entry(prefix.to_owned()).or_insert(clusters);
                }
            }
            map.values().for_each(|v| walk(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
        _ => {}
    }
}

/// The services to operate on: from `--catalog`, or else every service in the catalogs of
/// the running Envoy's meshver filters (the first catalog naming a service wins).
pub fn services(catalog: Option<&Path>, discovered: &Discovered, admin: &Admin) -> Outcome<Vec<Service>> {
    if let Some(path) = catalog {
        return Ok(load_file(path)?.catalog.services);
    }
    let mut services: Vec<Service> = Vec::new();
    for text in &discovered.catalogs {
        let Ok(catalog) = meshver::config::load(text.as_bytes()) else { continue };
        for service in catalog.services {
            if !services.iter().any(|s| s.name == service.name) {
                services.push(service);
            }
        }
    }
    if services.is_empty() {
        return Err(Fail::new(
            format!("the Envoy at {} runs no meshver filter with a valid catalog", admin.url),
            "pass --catalog FILE, or point --admin at an Envoy rendered by `meshver render envoy`",
        ));
    }
    Ok(services)
}

/// Where a weight comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightSource {
    /// A runtime override (`POST /runtime_modify`).
    Runtime,
    /// The route config Envoy was started with.
    Config,
    /// The catalog (the route was not found in Envoy's config).
    Catalog,
}

impl WeightSource {
    pub fn name(self) -> &'static str {
        match self {
            WeightSource::Runtime => "runtime",
            WeightSource::Config => "config",
            WeightSource::Catalog => "catalog",
        }
    }
}

/// The live weight of each deployment of a line, oldest first.
pub fn line_weights(
    service: &Service,
    line: &Line,
    runtime: &BTreeMap<String, String>,
    discovered: &Discovered,
) -> Vec<(u32, WeightSource)> {
    let prefix = runtime_prefix(line);
    let deployments = line_deployments(service, line);
    let catalog = configured_weights(deployments);
    let configured = discovered.weighted.get(&prefix);
    deployments
        .iter()
        .zip(catalog)
        .map(|(d, fallback)| {
            if let Some(w) = runtime.get(&format!("{prefix}.{}", d.route)).and_then(|v| v.trim().parse::<u32>().ok()) {
                return (w, WeightSource::Runtime);
            }
            match configured.and_then(|c| c.iter().find(|(name, _)| *name == d.route)) {
                Some((_, w)) => (*w, WeightSource::Config),
                None => (fallback, WeightSource::Catalog),
            }
        })
        .collect()
}

/// Everything the operations need from Envoy, fetched once.
pub struct Snapshot {
    pub discovered: Discovered,
    pub runtime: BTreeMap<String, String>,
}

impl Snapshot {
    pub fn fetch(admin: &Admin) -> Result<Snapshot, AdminError> {
        Ok(Snapshot { discovered: discover(&admin.config_dump()?), runtime: admin.runtime()? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_catalogs_and_weighted_routes_anywhere() {
        let filter = json!({"@type": WASM_FILTER_TYPE, "config": {"root_id": "meshver",
            "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": "{\"services\":[]}"}}});
        let dump = json!({"configs": [
            {"listeners": [{"filters": [filter.clone()]}, {"filters": [filter]}]},
            {"routes": [{"route": {"weighted_clusters": {"runtime_key_prefix": "routing.user-v2",
                "clusters": [{"name": "user-2.1.0", "weight": 10}, {"name": "user-2.0.3", "weight": 90}]}}}]},
        ]});
        let found = discover(&dump);
        assert_eq!(found.catalogs, ["{\"services\":[]}"]);
        assert_eq!(found.weighted["routing.user-v2"], [("user-2.1.0".to_owned(), 10), ("user-2.0.3".to_owned(), 90)]);
    }
}
