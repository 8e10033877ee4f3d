//! Envoy's admin API, the only way the CLI touches a running Envoy: the HTTP client here,
//! what `/config_dump` says about meshver in [`config_dump`], and what the commands read of
//! a running Envoy at once (catalogs, live weights) in [`snapshot`].

pub mod config_dump;
pub mod snapshot;

use crate::catalog::runtime_key;
use crate::fail::Fail;
use meshver::config::{Deployment, Line};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A client of one Envoy admin endpoint.
pub struct Admin {
    pub url: String,
    agent: ureq::Agent,
}

/// Why an admin call failed (unreachable, bad status, unreadable answer).
#[derive(Debug)]
pub struct AdminError(pub String);

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl AdminError {
    /// The usual one-line failure for a command that needs the admin.
    pub fn fail(&self, admin: &Admin) -> Fail {
        Fail::new(
            format!("cannot use the Envoy admin at {} ({})", admin.url, self.0),
            "check --admin and that Envoy is running with its admin port open",
        )
    }
}

impl Admin {
    /// A client of the admin at `url` (`http://127.0.0.1:9901`, as `--admin` is parsed).
    pub fn new(url: &str) -> Admin {
        Admin::with_timeout(url, Duration::from_secs(5))
    }

    /// A client whose every call gives up after `timeout` (a fleet's convergence check must
    /// not wait on a stalled Envoy past its deadline).
    pub fn with_timeout(url: &str, timeout: Duration) -> Admin {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            // The admin is local infrastructure: never through an HTTP proxy from the environment.
            .proxy(None)
            .build();
        Admin { url: url.to_owned(), agent: ureq::Agent::new_with_config(config) }
    }

    fn get(&self, path: &str) -> Result<String, AdminError> {
        let mut answer = self.agent.get(format!("{}{path}", self.url)).call().map_err(|e| AdminError(e.to_string()))?;
        answer.body_mut().with_config().limit(64 << 20).read_to_string().map_err(|e| AdminError(e.to_string()))
    }

    fn get_json(&self, path: &str) -> Result<Value, AdminError> {
        serde_json::from_str(&self.get(path)?)
            .map_err(|e| AdminError(format!("GET {path} did not answer JSON: {e}; is this Envoy's admin port?")))
    }

    /// Whether the admin answers at all (and looks like Envoy's).
    pub fn ping(&self) -> Result<(), AdminError> {
        let info = self.get_json("/server_info")?;
        match info.get("state") {
            Some(_) => Ok(()),
            None => Err(AdminError("GET /server_info has no \"state\": is this Envoy's admin port?".into())),
        }
    }

    /// Final values of the runtime keys that have one.
    pub fn runtime(&self) -> Result<BTreeMap<String, String>, AdminError> {
        let body = self.get_json("/runtime")?;
        let mut values = BTreeMap::new();
        if let Some(entries) = body.get("entries").and_then(Value::as_object) {
            for (key, entry) in entries {
                if let Some(v) = entry.get("final_value").and_then(Value::as_str).filter(|v| !v.is_empty()) {
                    values.insert(key.clone(), v.to_owned());
                }
            }
        }
        Ok(values)
    }

    /// `GET /runtime` as Envoy answers it: the layers' names, and each key's value per layer.
    pub fn runtime_layers(&self) -> Result<Value, AdminError> {
        self.get_json("/runtime")
    }

    /// Removes keys from the admin layer (`POST /runtime_modify?k=`), so that lower layers show.
    pub fn clear_runtime(&self, keys: &[String]) -> Result<(), AdminError> {
        let query: Vec<String> = keys.iter().map(|k| format!("{k}=")).collect();
        self.post_runtime_modify(&query.join("&"))
    }

    /// Everything Envoy was configured with (listeners, filters, routes).
    pub fn config_dump(&self) -> Result<Value, AdminError> {
        self.get_json("/config_dump")
    }

    /// Cluster stats, with histograms as detailed buckets (for deltas), and the meshver
    /// filters' counters (`filter=^(cluster\.|wasmcustom\.meshver_)`).
    pub fn stats(&self) -> Result<Value, AdminError> {
        self.get_json(
            "/stats?format=json&filter=%5E%28cluster%5C.%7Cwasmcustom%5C.meshver_%29&histogram_buckets=detailed",
        )
    }

    /// Sets runtime keys in one request (`POST /runtime_modify?k=v&…`).
    pub fn set_runtime(&self, values: &[(String, u32)]) -> Result<(), AdminError> {
        let query: Vec<String> = values.iter().map(|(k, v)| format!("{k}={v}")).collect();
        self.post_runtime_modify(&query.join("&"))
    }

    fn post_runtime_modify(&self, query: &str) -> Result<(), AdminError> {
        let url = format!("{}/runtime_modify?{query}", self.url);
        let mut answer = self.agent.post(url).send_empty().map_err(|e| AdminError(e.to_string()))?;
        let text = answer.body_mut().read_to_string().unwrap_or_default();
        if text.trim() == "OK" {
            Ok(())
        } else {
            Err(AdminError(format!("POST /runtime_modify answered {:?}", text.trim())))
        }
    }
}

/// The runtime keys and values that put `weights` on a line's deployments.
pub fn line_weight_keys(line: &Line, deployments: &[Deployment], weights: &[u32]) -> Vec<(String, u32)> {
    deployments.iter().zip(weights).map(|(d, w)| (runtime_key(line, d), *w)).collect()
}

/// Tries a call up to 5 times, 1s apart (about 5s in all), unless interrupted.
pub fn retry<T, E>(interrupted: &AtomicBool, mut call: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    let mut attempt = 0;
    loop {
        match call() {
            Ok(v) => return Ok(v),
            Err(e) if attempt >= 4 || interrupted.load(Ordering::SeqCst) => return Err(e),
            Err(_) => {
                attempt += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}
