//! The compiled catalog as `meshver check --json` prints it: route keys, defaults, effective
//! weights and lifecycles exactly as the filter and the renderers use them, so that scripts,
//! tests and the benchmark read them instead of re-deriving any rule.
//!
//! The shape is a contract (see cli/README.md): fields are only ever added.

use crate::catalog::configured_weights;
use meshver::config::{Catalog, DefaultVersion, Deployment, HostPattern, Line, Service};
use meshver::sticky::StickyKey;
use serde::{Serialize, Serializer};
use std::fmt::Display;

/// The whole catalog.
#[derive(Debug, Serialize)]
pub struct CompiledCatalog<'a> {
    route_header: &'a str,
    caller: Option<CompiledCaller>,
    trust_caller_headers: bool,
    services: Vec<CompiledService<'a>>,
}

/// Who calls, in an outbound sidecar's catalog.
#[derive(Debug, Serialize)]
struct CompiledCaller {
    service: String,
    version: String,
}

#[derive(Debug, Serialize)]
struct CompiledService<'a> {
    name: &'a str,
    path_prefixes: &'a [String],
    hosts: Vec<String>,
    /// `"1"`, `"latest"` or `"reject"`.
    default_version: String,
    sources: Vec<&'static str>,
    version_header: &'a str,
    query_param: &'a str,
    accept_vendor: Option<&'a str>,
    strip_version: bool,
    set_version_header: bool,
    sticky: Option<Sticky<'a>>,
    supported_versions: &'a [String],
    /// What the catalog's caller requires of this service.
    caller_requires: Option<String>,
    lines: Vec<CompiledLine<'a>>,
    /// Oldest first.
    deployments: Vec<CompiledDeployment<'a>>,
}

/// `{"header": "x-user-id"}` or `{"cookie": "session"}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "lowercase")]
enum Sticky<'a> {
    Header(&'a str),
    Cookie(&'a str),
}

#[derive(Debug, Serialize)]
struct CompiledLine<'a> {
    major: u64,
    route: &'a str,
    /// Route keys of its deployments, oldest first.
    deployments: Vec<&'a str>,
    /// Route key → effective starting weight, oldest first.
    weights: Pairs<&'a str, u32>,
}

#[derive(Debug, Serialize)]
struct CompiledDeployment<'a> {
    version: String,
    route: &'a str,
    major: u64,
    /// The weight its line starts with: the catalog's, or the even split when it gives none.
    weight: u32,
    /// The weight as the catalog gives it.
    weight_configured: Option<u32>,
    requires: Pairs<&'a str, String>,
    accepts: Pairs<&'a str, String>,
    lifecycle: CompiledLifecycle<'a>,
}

#[derive(Debug, Serialize)]
struct CompiledLifecycle<'a> {
    sunset_at: Option<i64>,
    successor: Option<&'a str>,
    /// Header name → value, in the order they are sent.
    response_headers: Pairs<&'a str, &'a str>,
}

/// Pairs written as a JSON object, in their order (a map would sort them).
#[derive(Debug)]
struct Pairs<K, V>(Vec<(K, V)>);

impl<K: Serialize, V: Serialize> Serialize for Pairs<K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// Names with their ranges (`requires`, `accepts`) as `{"user": ">=2.1, <3"}`.
fn ranges(list: &[(String, impl Display)]) -> Pairs<&str, String> {
    Pairs(list.iter().map(|(name, range)| (name.as_str(), range.to_string())).collect())
}

impl<'a> CompiledCatalog<'a> {
    pub fn new(catalog: &'a Catalog) -> Self {
        CompiledCatalog {
            route_header: &catalog.route_header,
            caller: catalog.caller.as_ref().map(|c| CompiledCaller {
                service: c.identity.service.clone(),
                version: c.identity.version.to_string(),
            }),
            trust_caller_headers: catalog.trust_caller_headers,
            services: catalog
                .services
                .iter()
                .map(|service| {
                    let caller_requires = catalog.caller.as_ref().and_then(|c| c.requirement(&service.name));
                    CompiledService::new(service, caller_requires.map(ToString::to_string))
                })
                .collect(),
        }
    }
}

impl<'a> CompiledService<'a> {
    fn new(service: &'a Service, caller_requires: Option<String>) -> Self {
        let mut lines = Vec::new();
        let mut deployments = Vec::new();
        for line in &service.lines {
            let (compiled, weighted) = CompiledLine::new(service, line);
            lines.push(compiled);
            deployments.extend(weighted.into_iter().map(|(d, weight)| CompiledDeployment::new(d, weight)));
        }
        CompiledService {
            name: &service.name,
            path_prefixes: &service.path_prefixes,
            hosts: service
                .hosts
                .iter()
                .map(|host| match host {
                    HostPattern::Exact(name) => name.clone(),
                    HostPattern::Subdomains(suffix) => format!("*{suffix}"),
                })
                .collect(),
            default_version: match &service.default_version {
                DefaultVersion::Fixed(version) => version.to_string(),
                DefaultVersion::Latest => "latest".to_owned(),
                DefaultVersion::Reject => "reject".to_owned(),
            },
            sources: service.sources.iter().map(|s| s.name()).collect(),
            version_header: &service.version_header,
            query_param: &service.query_param,
            accept_vendor: service.accept_vendor.as_deref(),
            strip_version: service.strip_version,
            set_version_header: service.set_version_header,
            sticky: service.sticky.as_ref().map(|key| match key {
                StickyKey::Header(name) => Sticky::Header(name),
                StickyKey::Cookie(name) => Sticky::Cookie(name),
            }),
            supported_versions: &service.supported_versions,
            caller_requires,
            lines,
            deployments,
        }
    }
}

impl<'a> CompiledLine<'a> {
    /// The line, and its deployments with their effective weights (oldest first).
    fn new(service: &'a Service, line: &'a Line) -> (Self, Vec<(&'a Deployment, u32)>) {
        let deployments = service.line_deployments(line);
        let weighted: Vec<(&Deployment, u32)> = deployments.iter().zip(configured_weights(deployments)).collect();
        let compiled = CompiledLine {
            major: line.major,
            route: &line.route,
            deployments: deployments.iter().map(|d| d.route.as_str()).collect(),
            weights: Pairs(weighted.iter().map(|(d, w)| (d.route.as_str(), *w)).collect()),
        };
        (compiled, weighted)
    }
}

impl<'a> CompiledDeployment<'a> {
    fn new(deployment: &'a Deployment, weight: u32) -> Self {
        let lifecycle = &deployment.lifecycle;
        CompiledDeployment {
            version: deployment.version.to_string(),
            route: &deployment.route,
            major: deployment.version.major,
            weight,
            weight_configured: deployment.weight,
            requires: ranges(&deployment.requires),
            accepts: ranges(&deployment.accepts),
            lifecycle: CompiledLifecycle {
                sunset_at: lifecycle.sunset_at,
                successor: lifecycle.successor.as_deref(),
                response_headers: Pairs(
                    lifecycle.response_headers.iter().map(|(name, value)| (*name, value.as_str())).collect(),
                ),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn compiled(json: &[u8]) -> Value {
        let catalog = meshver::config::load(json).unwrap();
        serde_json::to_value(CompiledCatalog::new(&catalog)).unwrap()
    }

    #[test]
    fn the_example_catalog() {
        let text = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/catalog.json")).unwrap();
        let c = compiled(&text);
        assert_eq!(c["route_header"], "x-meshver-route");
        assert_eq!(c["caller"], Value::Null);
        assert_eq!(c["trust_caller_headers"], false);
        let user = &c["services"][0];
        assert_eq!(user["name"], "user");
        assert_eq!(user["default_version"], "1");
        assert_eq!(user["sources"], json!(["header", "path", "suffix", "accept", "query", "grpc"]));
        assert_eq!(user["sticky"], json!({"header": "x-user-id"}));
        assert_eq!(user["supported_versions"], json!(["1.4.0", "2.0.3", "2.1.0"]));
        assert_eq!(user["caller_requires"], Value::Null);
        assert_eq!(
            user["lines"][1],
            json!({"major": 2, "route": "user-v2", "deployments": ["user-2.0.3", "user-2.1.0"],
                   "weights": {"user-2.0.3": 90, "user-2.1.0": 10}})
        );
        let v1 = &user["deployments"][0];
        assert_eq!((&v1["version"], &v1["route"], &v1["major"]), (&json!("1.4.0"), &json!("user-1.4.0"), &json!(1)));
        assert_eq!(v1["accepts"], json!({"order": "<2"}));
        // The line's lifecycle, merged into its deployment: 2026-01-01 and 2027-06-30 (UTC).
        assert_eq!(v1["lifecycle"]["sunset_at"], 1_814_313_600);
        assert_eq!(v1["lifecycle"]["successor"], "2");
        // Headers in the order they are sent (a JSON object, written in order).
        let catalog = meshver::config::load(&text).unwrap();
        let written = serde_json::to_string(&CompiledCatalog::new(&catalog)).unwrap();
        let headers =
            r#""response_headers":{"deprecation":"@1767225600","sunset":"Wed, 30 Jun 2027 00:00:00 GMT","link":"#;
        assert!(written.contains(headers), "{written}");
        assert_eq!(v1["lifecycle"]["response_headers"]["deprecation"], "@1767225600");
        let v21 = &user["deployments"][2];
        assert_eq!((&v21["weight"], &v21["weight_configured"]), (&json!(10), &json!(10)));
        assert_eq!(v21["lifecycle"], json!({"sunset_at": null, "successor": null, "response_headers": {}}));
        let order = &c["services"][1];
        assert_eq!(order["deployments"][1]["requires"], json!({"user": ">=2.1, <3"}));
    }

    #[test]
    fn even_split_caller_and_hosts() {
        let c = compiled(
            br#"{"caller": {"service": "order", "version": "2.0.0", "requires": {"user": "^2.1"}},
                "services": [{"name": "user", "match": {"hosts": ["*.example.com", "api.example.com"]},
                "default_version": "latest", "sticky": {"cookie": "session"},
                "deployments": [{"version": "2.2.0"}, {"version": "2.0.0"}, {"version": "2.1.0"}]}]}"#,
        );
        assert_eq!(c["caller"], json!({"service": "order", "version": "2.0.0"}));
        let user = &c["services"][0];
        assert_eq!(user["hosts"], json!(["*.example.com", "api.example.com"]));
        assert_eq!(user["default_version"], "latest");
        assert_eq!(user["sticky"], json!({"cookie": "session"}));
        assert_eq!(user["caller_requires"], "^2.1");
        let weights: Vec<&Value> = user["deployments"].as_array().unwrap().iter().map(|d| &d["weight"]).collect();
        assert_eq!(weights, [&json!(34), &json!(33), &json!(33)]);
        assert_eq!(user["deployments"][0]["version"], "2.0.0");
        assert_eq!(user["deployments"][0]["weight_configured"], Value::Null);
        assert_eq!(user["lines"][0]["weights"], json!({"user-2.0.0": 34, "user-2.1.0": 33, "user-2.2.0": 33}));
    }
}
