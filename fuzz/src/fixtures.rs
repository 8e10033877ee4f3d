//! The catalogs the targets decide requests over, loaded once per process.

use meshver::config::{self, Catalog};
use serde_json::{json, Value};
use std::sync::OnceLock;

/// The proxy's clock for every decision: the demo's 1.x line is deprecated, not yet gone.
pub const NOW: i64 = 1_790_000_000;

fn load(json: &[u8]) -> Catalog {
    config::load(json).unwrap_or_else(|e| panic!("a fuzz fixture does not load: {e}"))
}

/// The demo catalog with `overlay`'s top-level fields set, as `meshver render envoy` does for
/// each listener.
fn demo_with(overlay: Value) -> Catalog {
    let mut catalog: Value = serde_json::from_slice(include_bytes!("../../examples/catalog.json")).unwrap_or_default();
    if let (Some(fields), Some(target)) = (overlay.as_object(), catalog.as_object_mut()) {
        target.extend(fields.clone());
    }
    load(catalog.to_string().as_bytes())
}

/// examples/catalog.json at the edge.
pub fn demo() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| demo_with(json!({})))
}

/// The demo's listeners: the edge, the callee side that trusts stamped caller identities,
/// and order 2.0.0's outbound sidecar.
pub fn demo_listeners() -> [&'static Catalog; 3] {
    static INBOUND: OnceLock<Catalog> = OnceLock::new();
    static SIDECAR: OnceLock<Catalog> = OnceLock::new();
    [
        demo(),
        INBOUND.get_or_init(|| demo_with(json!({"trust_caller_headers": true}))),
        SIDECAR.get_or_init(|| demo_with(json!({"caller": {"service": "order", "version": "2.0.0"}}))),
    ]
}

/// examples/catalog-served.json: user 1 served by 2.x through body changes, with contracts.
pub fn served() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| load(include_bytes!("../../examples/catalog-served.json")))
}

/// catalogs/catch_all.json: one service on every path, every source in another order, a
/// 0.x line, a sticky cookie.
pub fn catch_all() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| load(include_bytes!("../catalogs/catch_all.json")))
}

/// catalogs/body.json: a chain 1 → 2 → 3 using every op, and contracts using every keyword.
pub fn body() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| load(include_bytes!("../catalogs/body.json")))
}
