//! The `data` object of a service as written, deserialised with serde. Unknown fields are
//! refused; [`super::compile`] validates the rest. Schemas stay raw JSON here, since their
//! keywords are checked by hand (so every unknown keyword is named with its path).

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// The value of a service's `"data"` key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Largest request or response body the filter buffers and rewrites, in bytes.
    /// 1 to 16 MiB; default 1 MiB.
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// Versions with no live deployment, served by the first version along their chain of
    /// changes that has deployments (`["1"]`).
    #[serde(default)]
    pub served_by_successor: Vec<String>,
    /// Body changes between adjacent API versions.
    #[serde(default)]
    pub changes: Vec<ChangeConfig>,
    /// Request body contracts (JSON Schema subset), by version, path prefix and method.
    #[serde(default)]
    pub contracts: Vec<ContractConfig>,
}

/// What changed in the bodies from one version to the next.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeConfig {
    /// The older version (`"1"`, `"2.1"`): a major or major.minor.
    pub from: String,
    /// The newer version it leads to.
    pub to: String,
    /// Upper-case HTTP methods the step applies to. Default: all.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Path prefixes the step applies to. Default: all paths.
    #[serde(default)]
    pub path_prefixes: Option<Vec<String>>,
    /// Ops that upgrade a request body from `from` to `to`, in order.
    #[serde(default)]
    pub request: Vec<OpConfig>,
    /// Ops that downgrade a response body from `to` back to `from`, in order.
    #[serde(default)]
    pub response: Vec<OpConfig>,
}

/// One body operation; pointers are RFC 6901 JSON pointers where a `*` segment means every
/// element of an array.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum OpConfig {
    /// Move the value at `from` to `to` (creating missing objects on the way).
    Rename { from: String, to: String },
    /// Set `path` to `value` when it is absent.
    Add { path: String, value: Value },
    /// Remove `path`.
    Remove { path: String },
    /// Replace a string at `path` found among the keys of `values` by its value.
    Map { path: String, values: BTreeMap<String, String> },
    /// The value at `path` becomes `{"<into>": value}`.
    Wrap { path: String, into: String },
    /// The object at `path` becomes its member `from`, when it has one.
    Unwrap { path: String, from: String },
}

/// The contract of request bodies for one version, path prefix and methods.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractConfig {
    /// The version it applies to: a major, major.minor or full version.
    pub version: String,
    /// The path prefix it applies to. Default `/`.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Upper-case HTTP methods it applies to. Default: all.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// The schema request bodies must satisfy (the documented subset of JSON Schema).
    pub schema: Value,
}
