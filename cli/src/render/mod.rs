//! Mesh config from catalogs: a plain Envoy bootstrap, or Istio resources.

pub mod buckets;
pub mod envoy;
pub mod istio;

/// Header the filter writes a client's stable number (0000–9999) into, for sticky weights.
pub use meshver::sticky::STICKY_HEADER;

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
