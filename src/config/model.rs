//! The plugin configuration as JSON (Envoy's `configuration`, Istio's `pluginConfig`),
//! deserialised as written. Unknown fields are refused; `compile` validates the rest.

use crate::data::model::DataConfig;
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
    /// Set when the filter runs in a caller's sidecar (outbound): who calls, and what it
    /// requires of the services it calls.
    #[serde(default)]
    pub caller: Option<CallerConfig>,
    /// Read the caller identity (`x-meshver-caller`, `x-meshver-requires`) stamped by the
    /// caller's sidecar. Only safe where sidecars are the trust boundary (mTLS between them);
    /// otherwise those headers are removed like every other `x-meshver-` header. Default false.
    #[serde(default)]
    pub trust_caller_headers: bool,
    /// Binds the claims `trust_caller_headers` reads to the connection: caller service → the
    /// SPIFFE IDs of the mTLS peers that may claim it (`{"order":
    /// ["spiffe://cluster.local/ns/shop/sa/order"]}`). A claim from any other peer, or over a
    /// connection without a client certificate, is refused. Default: claims are not bound.
    #[serde(default)]
    pub caller_spiffe_ids: Option<BTreeMap<String, Vec<String>>>,
}

/// The calling service, in an outbound sidecar.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerConfig {
    /// The caller's service name (`order`).
    pub service: String,
    /// The caller's own full semver (`2.0.0`).
    pub version: String,
    /// Semver ranges the caller requires, by callee service (`{"user": ">=2.1, <3"}`).
    /// Default: the `requires` of the caller's own deployment in this catalog.
    #[serde(default)]
    pub requires: Option<BTreeMap<String, String>>,
}

/// Deprecation and sunset of a deployment or a whole major line.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleConfig {
    /// When it is (or will be) deprecated: `2026-06-01` or `2026-06-01T12:00:00Z` (UTC).
    #[serde(default)]
    pub deprecated: Option<String>,
    /// When it stops serving: after this instant the filter answers 410 Gone.
    #[serde(default)]
    pub sunset: Option<String>,
    /// The version clients should move to (`2.1`), named in 410 answers.
    #[serde(default)]
    pub successor: Option<String>,
    /// A URL about the successor, sent as `Link: <url>; rel="successor-version"`.
    #[serde(default)]
    pub link: Option<String>,
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
    /// Sticky canary assignment: the client key to hash. Without it, the mesh picks randomly by weight.
    #[serde(default)]
    pub sticky: Option<StickyConfig>,
    /// The data half: body changes between versions, versions served by their successor,
    /// request body contracts (see `crate::data`).
    #[serde(default)]
    pub data: Option<DataConfig>,
}

/// Where a client's stable key is read from: exactly one of the two.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StickyConfig {
    /// A request header (`x-user-id`).
    #[serde(default)]
    pub header: Option<String>,
    /// A cookie name (`session`).
    #[serde(default)]
    pub cookie: Option<String>,
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
    /// What this deployment requires of the services it calls (`{"user": ">=2.1, <3"}`),
    /// enforced by its own sidecar (the one whose `caller` names it).
    #[serde(default)]
    pub requires: BTreeMap<String, String>,
    /// Caller versions this deployment accepts, by caller service (`{"order": "<2"}`).
    /// Callers not listed are accepted.
    #[serde(default)]
    pub accepts: BTreeMap<String, String>,
    /// Deprecation and sunset of this deployment (overrides its line's, field by field).
    #[serde(default)]
    pub lifecycle: LifecycleConfig,
}

/// Settings of one major line.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineConfig {
    /// Route key for requests any deployment of the line can serve. Default `<service>-v<major>`.
    #[serde(default)]
    pub route: Option<String>,
    /// Deprecation and sunset of every deployment of the line.
    #[serde(default)]
    pub lifecycle: LifecycleConfig,
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
