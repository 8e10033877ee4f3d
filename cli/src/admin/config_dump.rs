//! What `/config_dump` says about meshver: the catalogs its filters were given, and the
//! weighted routes with their configured weights.

use serde_json::Value;
use std::collections::BTreeMap;

const WASM_FILTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
/// The native host's filter (`render envoy --host native`).
const NATIVE_FILTER_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter";

/// What a config dump holds of meshver.
#[derive(Debug, Default)]
pub struct Discovered {
    /// The configuration strings of every meshver filter, first seen first, without repeats.
    pub catalogs: Vec<String>,
    /// Runtime key prefix of each weighted route → (cluster, configured weight).
    pub weighted: BTreeMap<String, Vec<(String, u32)>>,
}

/// Walks a config dump for meshver filter configurations (wasm or native) and weighted routes.
pub fn discover(dump: &Value) -> Discovered {
    let mut found = Discovered::default();
    walk(dump, &mut found);
    found
}

fn walk(value: &Value, found: &mut Discovered) {
    match value {
        Value::Object(map) => {
            let catalog = match map.get("@type").and_then(Value::as_str) {
                Some(WASM_FILTER_TYPE) => map.get("config").filter(|c| c.get("root_id") == Some(&"meshver".into())),
                Some(NATIVE_FILTER_TYPE) => Some(value).filter(|_| map.get("filter_name") == Some(&"meshver".into())),
                _ => None,
            };
            if let Some(config) = catalog {
                let text = ["/configuration/value", "/filter_config/value"].iter().find_map(|p| config.pointer(p));
                if let Some(text) = text.and_then(Value::as_str) {
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

    #[test]
    fn finds_the_native_hosts_catalog() {
        let filter = json!({"@type": NATIVE_FILTER_TYPE, "filter_name": "meshver",
            "filter_config": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": "{\"services\":[]}"}});
        let other = json!({"@type": NATIVE_FILTER_TYPE, "filter_name": "another",
            "filter_config": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": "{}"}});
        assert_eq!(discover(&json!([filter, other])).catalogs, ["{\"services\":[]}"]);
    }
}
