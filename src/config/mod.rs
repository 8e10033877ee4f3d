//! Configuration: JSON → [`model`] (as written) → [`Catalog`] (validated, ready to use).
//!
//! [`load`] is the one entry point, shared by the filter's `on_configure` and the CLI's
//! `check`, so a config that passes one passes the other.

mod catalog;
mod compile;
pub mod model;

pub use catalog::{Caller, Catalog, DefaultVersion, Deployment, HostPattern, Line, Service};

use std::fmt;

/// Default header the filter writes the route key into.
pub const DEFAULT_ROUTE_HEADER: &str = "x-meshver-route";
/// Default header carrying the requested version.
pub const DEFAULT_VERSION_HEADER: &str = "x-api-version";
/// Default query parameter carrying the requested version.
pub const DEFAULT_QUERY_PARAM: &str = "api-version";
/// Prefix of every header the filter owns; clients cannot send these.
pub const OWNED_HEADER_PREFIX: &str = "x-meshver-";

/// One mistake in a configuration, with the JSON path where it is (`$.services[0].name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every mistake found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("; "))
    }
}

/// Parses and validates a plugin configuration.
pub fn load(json: &[u8]) -> Result<Catalog, ConfigErrors> {
    if json.trim_ascii().is_empty() {
        return Err(single("$", "the configuration is empty: give the catalog as JSON"));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let model: model::PluginConfig = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|e| single(&json_path(&e.path().to_string()), &e.inner().to_string()))?;
    deserializer.end().map_err(|e| single("$", &e.to_string()))?;
    compile::compile(model)
}

fn single(path: &str, message: &str) -> ConfigErrors {
    ConfigErrors(vec![ConfigError { path: path.to_owned(), message: message.to_owned() }])
}

/// serde_path_to_error writes `services[0].name` (or `.` for the root); we write `$.services[0].name`.
fn json_path(relative: &str) -> String {
    match relative {
        "" | "." => "$".to_owned(),
        p if p.starts_with('[') => format!("${p}"),
        p => format!("$.{p}"),
    }
}

#[cfg(test)]
mod tests;
