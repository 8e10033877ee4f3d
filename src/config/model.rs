//! The plugin configuration as JSON (Envoy's `configuration`, Istio's `pluginConfig`),
//! deserialised as written. Unknown fields are refused; `compile` validates the rest.

use crate::sources::Source;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The whole plugin configuration: a catalog of services.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Request header the filter writes the route key into, for Envoy's routes to match.
    /// Must start with `x-meshver-` (the filter owns those). Default `x-meshver-route`.
    #[serde(default)]
    pub route_header: Option<String>,
    /// The services this filter manages, tried in order; the first that matches wins.
    pub services: Vec<ServiceConfig>,
}

/// One service and its deployed versions.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Service name: lower-case letters, digits and `-`. Also the prefix of default route keys.
    pub name: String,
    /// How the service's requests are recognised.
    #[serde(rename = "match")]
    pub matcher: MatchConfig,
    /// What is deployed: at least one deployment.
    pub deployments: Vec<DeploymentConfig>,
    /// Optional per-major-line settings, keyed by the major as a string (`"2"`).
    #[serde(default)]
    pub lines: BTreeMap<String, LineConfig>,
    /// What a request that names no version gets: a version (`"1"`, `"2.1"`), `"latest"`
    /// (the newest major line) or `"reject"` (400).
    pub default_version: String,
    /// Version sources that are on, in order of precedence (used for the normalised value
    /// when several agree). Default: all six.
    #[serde(default)]
    pub sources: Option<Vec<Source>>,
    /// Header carrying the version, read by the `header` source and written for the upstream.
    /// Default `x-api-version`.
    #[serde(default)]
    pub version_header: Option<String>,
    /// Query parameter read by the `query` source. Default `api-version`.
    #[serde(default)]
    pub query_param: Option<String>,
    /// Vendor in `application/vnd.<vendor>.v2+json` for the `accept` source. Default: any.
    #[serde(default)]
    pub accept_vendor: Option<String>,
    /// How the request is rewritten for the upstream.
    #[serde(default)]
    pub rewrite: RewriteConfig,
}

/// Request recognition. At least one of the two must be given; when both are, both must match.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// Path prefixes, matched like Envoy's `prefix` against the path with any version
    /// segment or suffix removed (`/register` matches `/v2/register` and `/register_v2`).
    #[serde(default)]
    pub path_prefixes: Vec<String>,
    /// Hosts (`:authority` without port, case-insensitive); `*.example.com` matches subdomains.
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// One deployed version of a service.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    /// Full semver of the deployment (`2.1.0`).
    pub version: String,
    /// Route key for requests pinned to this deployment. Default `<service>-<version>`.
    #[serde(default)]
    pub route: Option<String>,
    /// Share of its major line's traffic (0–100) that rendered mesh config starts with.
    /// The filter itself never balances; the mesh does.
    #[serde(default)]
    pub weight: Option<u32>,
}

/// Settings of one major line.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineConfig {
    /// Route key for requests any deployment of the line can serve. Default `<service>-v<major>`.
    #[serde(default)]
    pub route: Option<String>,
}

/// Rewriting for the upstream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteConfig {
    /// Remove the path segment, suffix or query parameter that carried the version. Default true.
    #[serde(default = "yes")]
    pub strip_version: bool,
    /// Set the version header to the normalised version (or the default applied). Default true.
    #[serde(default = "yes")]
    pub set_version_header: bool,
}

impl Default for RewriteConfig {
    fn default() -> Self {
        RewriteConfig { strip_version: true, set_version_header: true }
    }
}

fn yes() -> bool {
    true
}
