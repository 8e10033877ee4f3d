//! Live config: with a mesh file's `live_config`, every meshver filter of the bootstrap gets
//! its config from a file Envoy watches (file-based extension config discovery, ECDS: no
//! control plane), so that `meshver publish` changes catalogs while Envoy serves.
//!
//! The bootstrap is rendered as always; then each HTTP filter that runs meshver (found by the
//! root id of the wasm config inside it, whatever wraps it) keeps its place in the chain as
//! `config_discovery` on `<dir>/<vm id>.json`, and that file holds what the filter was: a
//! DiscoveryResponse with one `TypedExtensionConfig` named like the filter. Envoy watches the
//! folder and re-reads a file when one is moved into it, so every write here is a rename.
//! The folder also keeps the bootstrap it belongs to (`bootstrap.json`, which Envoy does not
//! read): a publish whose catalogs would need anything else of the bootstrap to change (routes,
//! clusters, the body filter's place) cannot go live and is refused.

use crate::fail::{Fail, Outcome};
use crate::mesh::MeshFile;
use meshver::filter::body::BODY_ROOT_ID;
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The mesh file's `live_config`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveConfig {
    /// The folder Envoy watches for the filters' config (relative to the mesh file's folder).
    pub dir: PathBuf,
}

/// The live folder of a mesh file (absolute), if it has one.
pub fn live_dir(mesh_path: &Path) -> Outcome<Option<PathBuf>> {
    let file = MeshFile::load(mesh_path)?;
    Ok(file.mesh.live_config.as_ref().map(|live| file.resolve(&live.dir)))
}

/// The file in the live folder that records the bootstrap its filter files belong to.
pub const BOOTSTRAP_FILE: &str = "bootstrap.json";
const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const EXTENSION_TYPE: &str = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";

/// A bootstrap whose meshver filters are discovered from files, and those files' content.
#[derive(Debug)]
pub struct LiveBootstrap {
    pub bootstrap: Value,
    pub filters: Vec<FilterFile>,
}

/// One filter's config as Envoy reads it from the live folder.
#[derive(Debug)]
pub struct FilterFile {
    /// The ECDS resource name: the HTTP filter's name, and the file's name without `.json`.
    pub name: String,
    /// A content hash, written as the DiscoveryResponse's `version_info` (Envoy shows it as the
    /// stat `extension_config_discovery.http_filter.<name>.version_text`).
    pub version: String,
    /// The DiscoveryResponse.
    pub response: Value,
}

impl LiveBootstrap {
    /// Takes the meshver filters of `bootstrap` out into files of `dir` (an absolute path).
    pub fn split(mut bootstrap: Value, dir: &Path) -> LiveBootstrap {
        let mut filters = Vec::new();
        for chain in http_filter_chains(&mut bootstrap) {
            for filter in chain {
                let Some(name) = meshver_vm_id(filter) else { continue };
                let typed = filter.get("typed_config").cloned().unwrap_or(Value::Null);
                let type_url = typed.get("@type").cloned().unwrap_or(Value::Null);
                let version = fnv1a_hex(typed.to_string().as_bytes());
                let path = dir.join(format!("{name}.json"));
                *filter = json!({
                    "name": name,
                    "config_discovery": {
                        "config_source": {
                            // The folder, not the file: a file swapped in by a rename (or a
                            // Kubernetes ConfigMap's symlink swap) is seen either way.
                            "path_config_source": {
                                "path": path.display().to_string(),
                                "watched_directory": {"path": dir.display().to_string()},
                            },
                            "resource_api_version": "V3",
                        },
                        // No default: the file is the only truth, and the listener waits for it.
                        "type_urls": [type_url],
                    },
                });
                let response = json!({
                    "version_info": version,
                    "resources": [{"@type": EXTENSION_TYPE, "name": name, "typed_config": typed}],
                });
                filters.push(FilterFile { name, version, response });
            }
        }
        if let Some(root) = bootstrap.as_object_mut() {
            // Envoy subscribes to config sources only with a node identity.
            root.entry("node").or_insert_with(|| json!({"id": "meshver", "cluster": "meshver"}));
        }
        LiveBootstrap { bootstrap, filters }
    }

    /// Writes every file into `dir` (created if missing): what `render envoy` does.
    pub fn write(&self, dir: &Path) -> Outcome {
        std::fs::create_dir_all(dir).map_err(|e| cannot_write(dir, &e))?;
        for filter in &self.filters {
            write_atomically(&dir.join(format!("{}.json", filter.name)), &filter.response)?;
        }
        write_atomically(&dir.join(BOOTSTRAP_FILE), &self.bootstrap)
    }

    /// Writes the filter files that changed into `dir`, after checking that the bootstrap is
    /// the one the folder was rendered for; returns each filter with whether it changed.
    pub fn publish(&self, dir: &Path) -> Outcome<Vec<(&FilterFile, bool)>> {
        let recorded = read_json(&dir.join(BOOTSTRAP_FILE))?;
        if let Some(path) = first_difference(&recorded, &self.bootstrap, "$") {
            return Err(Fail::new(
                format!(
                    "these catalogs need a bootstrap other than the one Envoy runs (they change {path}): \
                     only the filters' config can change live"
                ),
                "move weights with `meshver shift`; for anything else render the bootstrap again and restart Envoy",
            ));
        }
        let mut published = Vec::new();
        for filter in &self.filters {
            let path = dir.join(format!("{}.json", filter.name));
            let live = read_json(&path).ok();
            let changed = live.as_ref() != Some(&filter.response);
            if changed {
                write_atomically(&path, &filter.response)?;
            }
            published.push((filter, changed));
        }
        Ok(published)
    }
}

/// The `http_filters` list of every HTTP connection manager in the bootstrap's listeners.
fn http_filter_chains(bootstrap: &mut Value) -> Vec<&mut Vec<Value>> {
    let listeners = bootstrap.pointer_mut("/static_resources/listeners").and_then(Value::as_array_mut);
    listeners
        .into_iter()
        .flatten()
        .filter_map(|l| l.get_mut("filter_chains").and_then(Value::as_array_mut))
        .flatten()
        .filter_map(|c| c.get_mut("filters").and_then(Value::as_array_mut))
        .flatten()
        .filter_map(|f| f.pointer_mut("/typed_config/http_filters").and_then(Value::as_array_mut))
        .collect()
}

/// The vm id of the meshver wasm config inside an HTTP filter (itself or wrapped, as the body
/// filter is in its matcher): `meshver-<listener>`, `meshver-body-<listener>`.
fn meshver_vm_id(value: &Value) -> Option<String> {
    match value {
        Value::Object(map) => {
            let config = map.get("config").filter(|_| map.get("@type").and_then(Value::as_str) == Some(WASM_TYPE));
            let root_id = config.and_then(|c| c.get("root_id")).and_then(Value::as_str);
            if let (Some(config), Some("meshver" | BODY_ROOT_ID)) = (config, root_id) {
                return config.pointer("/vm_config/vm_id").and_then(Value::as_str).map(str::to_owned);
            }
            map.values().find_map(meshver_vm_id)
        }
        Value::Array(items) => items.iter().find_map(meshver_vm_id),
        _ => None,
    }
}

/// The JSON path of the first place where two values differ, or None when they are equal.
fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|key| match (x.get(key), y.get(key)) {
                (Some(u), Some(v)) => first_difference(u, v, &format!("{path}.{key}")),
                _ => Some(format!("{path}.{key}")),
            })
        }
        (Value::Array(x), Value::Array(y)) => {
            let pairs = x.iter().zip(y).enumerate();
            let inner = pairs.into_iter().find_map(|(i, (u, v))| first_difference(u, v, &format!("{path}[{i}]")));
            inner.or_else(|| (x.len() != y.len()).then(|| format!("{path}[{}]", x.len().min(y.len()))))
        }
        _ => (a != b).then(|| path.to_owned()),
    }
}

/// Writes `value` as JSON to a temporary file beside `path`, then renames it over `path`: a
/// watcher never sees half a file, and Envoy's folder watch fires on the rename.
fn write_atomically(path: &Path, value: &Value) -> Outcome {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Fail::new(format!("cannot write JSON: {e}"), "report this as a bug"))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&temporary, text + "\n").map_err(|e| cannot_write(&temporary, &e))?;
    std::fs::rename(&temporary, path).map_err(|e| cannot_write(path, &e))
}

fn read_json(path: &Path) -> Outcome<Value> {
    let text = std::fs::read(path).map_err(|e| {
        Fail::new(
            format!("cannot read {}: {e}", path.display()),
            "render the bootstrap with `meshver render envoy` first (it writes the live folder)",
        )
    })?;
    serde_json::from_slice(&text).map_err(|e| {
        Fail::new(format!("{}: {e}", path.display()), "render the bootstrap again with `meshver render envoy`")
    })
}

fn cannot_write(path: &Path, error: &std::io::Error) -> Fail {
    Fail::new(format!("cannot write {}: {error}", path.display()), "check the folder exists and is writable")
}

/// FNV-1a, 64 bits, as 16 hex digits: a stable name for a config's content.
fn fnv1a_hex(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wasm(root_id: &str, vm_id: &str) -> Value {
        json!({"@type": WASM_TYPE, "config": {"root_id": root_id, "vm_config": {"vm_id": vm_id},
            "configuration": {"value": "{}"}}})
    }

    fn bootstrap(filters: Value) -> Value {
        json!({"static_resources": {"listeners": [{"filter_chains": [{"filters": [
            {"typed_config": {"http_filters": filters}}]}]}]}})
    }

    #[test]
    fn meshver_filters_become_discovered_wrapped_or_not() {
        let matcher = json!({"@type": "type.googleapis.com/envoy.extensions.common.matching.v3.ExtensionWithMatcher",
            "extension_config": {"name": "x", "typed_config": wasm(BODY_ROOT_ID, "meshver-body-edge")}});
        let other = json!({"name": "other", "typed_config": wasm("other", "other-edge")});
        let filters = json!([
            other,
            {"name": "envoy.filters.http.wasm", "typed_config": wasm("meshver", "meshver-edge")},
            {"name": "meshver-body", "typed_config": matcher},
            {"name": "envoy.filters.http.router", "typed_config": {}},
        ]);
        let live = LiveBootstrap::split(bootstrap(filters), Path::new("/live"));
        let chain = live
            .bootstrap
            .pointer("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters")
            .unwrap();
        assert_eq!(chain[0], other, "a filter that is not meshver's stays as it is");
        assert_eq!(chain[1]["name"], "meshver-edge");
        let source = &chain[1]["config_discovery"]["config_source"]["path_config_source"];
        assert_eq!(source["path"], "/live/meshver-edge.json");
        assert_eq!(source["watched_directory"]["path"], "/live");
        assert_eq!(chain[1]["config_discovery"]["type_urls"], json!([WASM_TYPE]));
        assert_eq!(chain[2]["name"], "meshver-body-edge");
        assert_eq!(chain[2]["config_discovery"]["type_urls"], json!([matcher["@type"]]));
        assert_eq!(chain[3]["name"], "envoy.filters.http.router");
        assert!(live.bootstrap["node"]["id"].is_string());

        let names: Vec<&str> = live.filters.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["meshver-edge", "meshver-body-edge"]);
        let resource = &live.filters[1].response["resources"][0];
        assert_eq!(
            (resource["@type"].as_str(), resource["name"].as_str()),
            (Some(EXTENSION_TYPE), Some("meshver-body-edge"))
        );
        assert_eq!(resource["typed_config"], matcher);
        assert_eq!(live.filters[1].response["version_info"], live.filters[1].version.as_str());
        assert_ne!(live.filters[0].version, live.filters[1].version);
    }

    #[test]
    fn differences_are_named_by_their_json_path() {
        let a = json!({"a": [1, {"b": 2}], "c": 3});
        assert_eq!(first_difference(&a, &a.clone(), "$"), None);
        assert_eq!(first_difference(&a, &json!({"a": [1, {"b": 5}], "c": 3}), "$").as_deref(), Some("$.a[1].b"));
        assert_eq!(first_difference(&a, &json!({"a": [1], "c": 3}), "$").as_deref(), Some("$.a[1]"));
        assert_eq!(first_difference(&a, &json!({"a": [1, {"b": 2}]}), "$").as_deref(), Some("$.c"));
    }

    #[test]
    fn publishing_writes_only_what_changed_and_only_onto_its_own_bootstrap() {
        let dir = std::env::temp_dir().join(format!("meshver-live-test-{}", std::process::id()));
        let render = |catalog: &str, route: &str| {
            let mut filter = wasm("meshver", "meshver-edge");
            filter["config"]["configuration"]["value"] = json!(catalog);
            let mut b = bootstrap(json!([{"name": "envoy.filters.http.wasm", "typed_config": filter}]));
            b["routes"] = json!(route);
            LiveBootstrap::split(b, &dir)
        };
        render("{}", "r1").write(&dir).unwrap();
        let file = dir.join("meshver-edge.json");
        let same = render("{}", "r1");
        assert!(!same.publish(&dir).unwrap()[0].1, "the same config is not written again");
        let next = render("{\"services\":[]}", "r1");
        assert!(next.publish(&dir).unwrap()[0].1);
        assert_eq!(read_json(&file).unwrap(), next.filters[0].response);
        let refused = render("{}", "r2").publish(&dir).unwrap_err();
        assert!(refused.lines[0].contains("they change $.routes"), "{:?}", refused.lines);
        assert_eq!(read_json(&file).unwrap(), next.filters[0].response, "a refused publish writes nothing");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
