//! The mesh file: where Envoy's admin, the wasm module, the endpoints and the listeners are.
//! Paths inside are relative to the mesh file's folder.

use crate::fail::{Fail, Outcome};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// A mesh file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mesh {
    /// Envoy's admin address, `host:port`.
    pub admin: String,
    /// The filter module (`meshver.wasm`).
    pub wasm: PathBuf,
    /// The body filter module, for catalogs with a `data` section. Default: `meshver_body.wasm`
    /// beside `wasm` (`make build` writes both).
    #[serde(default)]
    pub body_wasm: Option<PathBuf>,
    /// Route key of a deployment (its cluster name) → `host:port` of its upstream.
    pub endpoints: BTreeMap<String, String>,
    pub listeners: Vec<MeshListener>,
    /// What Envoy does when a filter's VM fails while serving. Default: closed.
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// The filters' config in files Envoy watches, which `meshver publish` changes live.
    /// Default: none (the config is in the bootstrap).
    #[serde(default)]
    pub live_config: Option<crate::render::live::LiveConfig>,
    /// Where the weights of a fleet rendered from this file come from. Default: none (each
    /// Envoy's own admin layer only).
    #[serde(default)]
    pub weights: Option<Weights>,
    /// Render what a `rollout --shadow` step needs: a mirror cluster per candidate and the
    /// line routes' mirror policies (off until a rollout sets their runtime keys). Default off:
    /// a mirror policy is looked up on every request of a line route, and the read-only route
    /// beside each line matches the method by regex, so a mesh that never shadows pays nothing.
    #[serde(default)]
    pub shadow: bool,
}

/// The mesh file's `weights`: a runtime folder shared by every Envoy rendered from it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Weights {
    /// The folder (relative to the mesh file's) whose `current` version each Envoy's `fleet`
    /// disk layer watches; `shift`, `rollback` and `rollout --runtime-dir` write it.
    pub runtime_dir: PathBuf,
}

/// What the proxy does with requests once a filter's VM has failed (trapped) while serving:
/// Envoy's `failure_policy`, Istio's `failStrategy`. A VM that cannot start (a catalog refused,
/// a module that does not load) is refused under every policy: the proxy keeps its old config,
/// or does not start.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Every request the failed VM would see is answered 503, until the proxy restarts or gets
    /// new config: no request escapes version policy.
    #[default]
    Closed,
    /// The failed filter is skipped: requests go on as if it were not there, unchecked.
    Open,
    /// Fail closed, and reload the VM (after a backoff from 1 s); once it is up, serve again.
    Reload,
}

impl FailurePolicy {
    /// Envoy's `envoy.extensions.wasm.v3.FailurePolicy` value.
    pub fn envoy(self) -> &'static str {
        match self {
            FailurePolicy::Closed => "FAIL_CLOSED",
            FailurePolicy::Open => "FAIL_OPEN",
            FailurePolicy::Reload => "FAIL_RELOAD",
        }
    }

    /// Istio's `WasmPlugin.spec.failStrategy` value.
    pub fn istio(self) -> &'static str {
        match self {
            FailurePolicy::Closed => "FAIL_CLOSE",
            FailurePolicy::Open => "FAIL_OPEN",
            FailurePolicy::Reload => "FAIL_RELOAD",
        }
    }
}

/// One listener: the filter with a catalog, then either routes by route key or a single
/// forward to another listener (a sidecar).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshListener {
    pub name: String,
    pub address: String,
    pub catalog: PathBuf,
    #[serde(default)]
    pub forward_to: Option<String>,
    /// Set on this listener's copy of the catalog: the caller a sidecar speaks for
    /// (`{"service": "order", "version": "2.0.0"}`), so one catalog serves every listener.
    #[serde(default)]
    pub caller: Option<serde_json::Value>,
    /// Set on this listener's copy of the catalog: trust identities stamped by sidecars.
    #[serde(default)]
    pub trust_caller_headers: bool,
    /// Set on this listener's copy of the catalog: the SPIFFE IDs of the mTLS peers that may
    /// claim each caller service (`{"order": ["spiffe://cluster.local/ns/shop/sa/order"]}`).
    #[serde(default)]
    pub caller_spiffe_ids: Option<serde_json::Value>,
    /// Serve this listener over TLS, by default requiring a client certificate (mTLS).
    #[serde(default)]
    pub tls: Option<ListenerTls>,
    /// Send to `forward_to` over mTLS, with this sidecar's own certificate.
    #[serde(default)]
    pub forward_tls: Option<ForwardTls>,
}

/// A listener's TLS: its certificate and key, and the CA its clients' certificates are
/// verified against (PEM files).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    /// Refuse a connection without a client certificate of `ca`. Default true: the filter can
    /// only bind a caller claim to a peer that presented one.
    #[serde(default = "required")]
    pub require_client_certificate: bool,
}

fn required() -> bool {
    true
}

/// A sidecar's TLS toward `forward_to`: its own certificate and key (the identity the
/// listener there reads), and the CA that listener's certificate is verified against.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    /// The SPIFFE ID (URI SAN) the listener's certificate must carry. Default: any of `ca`.
    #[serde(default)]
    pub server_spiffe_id: Option<String>,
}

impl MeshListener {
    /// The catalog fields this listener sets on top of its catalog file.
    pub fn overlay(&self) -> Vec<(&'static str, serde_json::Value)> {
        let mut fields = Vec::new();
        if let Some(caller) = &self.caller {
            fields.push(("caller", caller.clone()));
        }
        if self.trust_caller_headers {
            fields.push(("trust_caller_headers", serde_json::Value::Bool(true)));
        }
        if let Some(ids) = &self.caller_spiffe_ids {
            fields.push(("caller_spiffe_ids", ids.clone()));
        }
        fields
    }
}

/// A mesh file read, with its folder (the base of relative paths).
pub struct MeshFile {
    pub mesh: Mesh,
    pub dir: PathBuf,
}

impl MeshFile {
    pub fn load(path: &Path) -> Outcome<MeshFile> {
        let text = std::fs::read(path).map_err(|e| {
            Fail::new(format!("cannot read mesh file {}: {e}", path.display()), "give the path of a mesh JSON file")
        })?;
        let mesh: Mesh = serde_json::from_slice(&text).map_err(|e| {
            Fail::new(format!("{}: {e}", path.display()), "fix the mesh file (see cli/README.md, \"Mesh file\")")
        })?;
        let dir = absolute(path.parent().unwrap_or(Path::new(".")))?;
        Ok(MeshFile { mesh, dir })
    }

    /// A path from the mesh file, made absolute against the mesh file's folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        normalize(&self.dir.join(path))
    }
}

/// An absolute, lexically normalised path (no `.` or `..`), existing or not.
pub fn absolute(path: &Path) -> Outcome<PathBuf> {
    let cwd = std::env::current_dir()
        .map_err(|e| Fail::new(format!("cannot read the current directory: {e}"), "run from an existing directory"))?;
    Ok(normalize(&cwd.join(path)))
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `host:port` → (host, port), or a one-line error naming the field.
pub fn socket_address(text: &str, what: &str) -> Outcome<(String, u16)> {
    let parsed = text.rsplit_once(':').and_then(|(host, port)| {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        (!host.is_empty()).then_some(())?;
        Some((host.to_owned(), port.parse::<u16>().ok()?))
    });
    parsed.ok_or_else(|| Fail::new(format!("{what} {text:?} is not host:port"), "write it like 127.0.0.1:10000"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_paths() {
        assert_eq!(socket_address("127.0.0.1:9901", "admin").unwrap(), ("127.0.0.1".to_owned(), 9901));
        assert_eq!(socket_address("[::1]:80", "admin").unwrap(), ("::1".to_owned(), 80));
        assert!(socket_address("127.0.0.1", "admin").is_err());
        assert!(socket_address(":80", "admin").is_err());
        assert_eq!(normalize(Path::new("/a/b/../c/./d")), PathBuf::from("/a/c/d"));
    }

    #[test]
    fn failure_policy_is_closed_unless_the_mesh_file_says_otherwise() {
        let mesh = |extra: &str| {
            serde_json::from_str::<Mesh>(&format!(
                r#"{{"admin":"127.0.0.1:9901","wasm":"m.wasm","endpoints":{{}},"listeners":[]{extra}}}"#
            ))
        };
        assert_eq!(mesh("").unwrap().failure_policy, FailurePolicy::Closed);
        let policies = [
            ("closed", "FAIL_CLOSED", "FAIL_CLOSE"),
            ("open", "FAIL_OPEN", "FAIL_OPEN"),
            ("reload", "FAIL_RELOAD", "FAIL_RELOAD"),
        ];
        for (written, envoy, istio) in policies {
            let policy = mesh(&format!(r#","failure_policy":"{written}""#)).unwrap().failure_policy;
            assert_eq!((policy.envoy(), policy.istio()), (envoy, istio));
        }
        let refused = mesh(r#","failure_policy":"FAIL_OPEN""#).unwrap_err().to_string();
        assert!(refused.contains("expected one of `closed`, `open`, `reload`"), "{refused}");
    }
}
