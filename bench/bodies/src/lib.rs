//! The bodies of `make bench`'s body arms (bench/body.json), for the benches that run the data
//! engine without Envoy: bench/body (criterion, natively) and bench/body-wasm (in V8). bench/run.py
//! builds the same bytes in Python for the arms inside Envoy (bench/meshver_bench/body.py).

use serde_json::Value;

/// bench/body.json, read.
pub struct BodySpec {
    spec: Value,
}

/// One body size: its name (`1k`) and how many items an order of that size holds.
pub struct Size {
    pub name: String,
    pub count: usize,
}

/// A client of the upstream: how many change steps lie between them, and its version.
pub struct Client {
    pub steps: u64,
    pub version: String,
}

impl BodySpec {
    /// Parses the text of bench/body.json.
    pub fn parse(text: &[u8]) -> Result<BodySpec, String> {
        let spec: Value = serde_json::from_slice(text).map_err(|e| e.to_string())?;
        for field in ["catalog", "shapes", "sizes", "clients", "path", "upstream_version"] {
            if spec.get(field).is_none() {
                return Err(format!("body.json has no {field}"));
            }
        }
        Ok(BodySpec { spec })
    }

    /// The catalog of the body arms, as JSON text (for `meshver::config::load`).
    pub fn catalog_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.spec["catalog"]).unwrap_or_default()
    }

    /// The path of a size's requests (`/orders/1k`).
    pub fn path(&self, size: &Size) -> String {
        format!("{}/{}", self.spec["path"].as_str().unwrap_or_default(), size.name)
    }

    /// The version the upstream speaks.
    pub fn upstream_version(&self) -> &str {
        self.spec["upstream_version"].as_str().unwrap_or_default()
    }

    pub fn sizes(&self) -> Vec<Size> {
        let sizes = self.spec["sizes"].as_array().map(Vec::as_slice).unwrap_or_default();
        sizes
            .iter()
            .map(|s| Size {
                name: s["name"].as_str().unwrap_or_default().to_owned(),
                count: s["count"].as_u64().unwrap_or_default() as usize,
            })
            .collect()
    }

    pub fn clients(&self) -> Vec<Client> {
        let clients = self.spec["clients"].as_array().map(Vec::as_slice).unwrap_or_default();
        clients
            .iter()
            .map(|c| Client {
                steps: c["steps"].as_u64().unwrap_or_default(),
                version: c["version"].as_str().unwrap_or_default().to_owned(),
            })
            .collect()
    }

    /// One order in the shape of `version` with `count` items numbered by `id`, as compact JSON
    /// with members in key order (as bench/run.py writes it).
    pub fn body(&self, version: &str, count: usize) -> Vec<u8> {
        let shape = &self.spec["shapes"][version];
        let mut order = shape["head"].clone();
        let items = (0..count)
            .map(|id| {
                let mut item = shape["item"].clone();
                item["id"] = id.into();
                item
            })
            .collect();
        order["items"] = Value::Array(items);
        serde_json::to_vec(&order).unwrap_or_default()
    }
}
