//! What the commands read of a running Envoy at once: the catalogs and weighted routes it
//! was configured with, and the runtime overrides; from them, the services to act on and the
//! live weight of each deployment.

use super::config_dump::{discover, Discovered};
use super::{Admin, AdminError};
use crate::catalog::{configured_weights, load_file, runtime_key, runtime_prefix};
use crate::fail::{Fail, Outcome};
use meshver::config::{Line, Service};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// What a running Envoy holds, fetched once.
pub struct Snapshot {
    pub discovered: Discovered,
    /// Final values of the runtime keys that have one.
    pub runtime: BTreeMap<String, String>,
}

/// Where a live weight comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightSource {
    /// A runtime override (`POST /runtime_modify`).
    Runtime,
    /// The route config Envoy was started with.
    Config,
    /// The catalog (the route was not found in Envoy's config).
    Catalog,
}

impl Snapshot {
    pub fn fetch(admin: &Admin) -> Result<Snapshot, AdminError> {
        Ok(Snapshot { discovered: discover(&admin.config_dump()?), runtime: admin.runtime()? })
    }

    /// The services to operate on: from `--catalog`, or else every service in the catalogs of
    /// the running Envoy's meshver filters (the first catalog naming a service wins).
    pub fn services(&self, catalog: Option<&Path>, admin: &Admin) -> Outcome<Vec<Service>> {
        if let Some(path) = catalog {
            return Ok(load_file(path)?.catalog.services);
        }
        let mut services: Vec<Service> = Vec::new();
        for text in &self.discovered.catalogs {
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

    /// The live weight of each deployment of a line, oldest first: the runtime override, else
    /// the weight in Envoy's route config, else the catalog's.
    pub fn line_weights(&self, service: &Service, line: &Line) -> Vec<(u32, WeightSource)> {
        let deployments = service.line_deployments(line);
        let catalog = configured_weights(deployments);
        let configured = self.discovered.weighted.get(&runtime_prefix(line));
        deployments
            .iter()
            .zip(catalog)
            .map(|(d, fallback)| {
                let runtime = self.runtime.get(&runtime_key(line, d)).and_then(|v| v.trim().parse::<u32>().ok());
                if let Some(w) = runtime {
                    return (w, WeightSource::Runtime);
                }
                match configured.and_then(|c| c.iter().find(|(name, _)| *name == d.route)) {
                    Some((_, w)) => (*w, WeightSource::Config),
                    None => (fallback, WeightSource::Catalog),
                }
            })
            .collect()
    }

    /// The live weights of a line alone, oldest first.
    pub fn line_weight_values(&self, service: &Service, line: &Line) -> Vec<u32> {
        self.line_weights(service, line).into_iter().map(|(w, _)| w).collect()
    }
}
