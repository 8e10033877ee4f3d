//! Mesh config from catalogs: a plain Envoy bootstrap, or Istio resources.

pub mod buckets;
pub mod envoy;
pub mod istio;
pub mod live;
pub mod yaml;

/// Header the filter writes a client's stable number (0000–9999) into, for sticky weights.
pub use meshver::sticky::STICKY_HEADER;

/// The file name of the body filter module beside the header filter's (`meshver.wasm`).
pub const BODY_WASM_FILE: &str = "meshver_body.wasm";
/// What a listener buffers beyond the largest body a service buffers.
const BUFFER_HEADROOM: usize = 64 * 1024;

/// The per-connection buffer limit a listener needs when the catalog has body work: the
/// largest body a service buffers plus room, so that the filter, not Envoy's own buffer limit,
/// answers a body that is over it. None when no service has `data` (Envoy's default stands).
pub fn buffer_limit(catalog: &meshver::config::Catalog) -> Option<usize> {
    let largest = catalog.services.iter().filter_map(|s| s.data.as_ref()).map(|d| d.max_body_bytes()).max()?;
    Some(largest + BUFFER_HEADROOM)
}

/// A JSON text without insignificant whitespace, byte for byte otherwise (order kept).
pub fn compact_json(text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn compaction_keeps_strings() {
        let text = br#"{ "a" : [1, 2],
            "b": "x y \" z" }"#;
        assert_eq!(super::compact_json(text), r#"{"a":[1,2],"b":"x y \" z"}"#);
    }
}
