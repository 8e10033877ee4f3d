//! The benchmark's request mix (bench/mix.json) as Envoy hands it to the filter: one
//! serialised header map per request (lower-case names, pseudo-headers included, raw bytes).

use std::path::Path;

/// One request of the mix: its kind's name and its header map as the host serialises it.
pub struct MixRequest {
    pub name: String,
    pub wire: Vec<u8>,
}

/// Reads bench/mix.json.
pub fn load_mix(path: &Path) -> Result<Vec<MixRequest>, String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_mix(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The mix from the text of bench/mix.json (bench/decide-wasm embeds it: no files in the VM).
pub fn parse_mix(text: &[u8]) -> Result<Vec<MixRequest>, String> {
    let mix: serde_json::Value = serde_json::from_slice(text).map_err(|e| e.to_string())?;
    let host = mix["host"].as_str().unwrap_or("bench.local");
    let kinds = mix["kinds"].as_array().ok_or("mix.json has no kinds")?;
    kinds
        .iter()
        .map(|kind| {
            let field = |name: &str| kind[name].as_str().ok_or(format!("a kind has no {name}"));
            let mut headers = vec![
                (":method".to_owned(), field("method")?.as_bytes().to_vec()),
                (":scheme".to_owned(), b"http".to_vec()),
                (":path".to_owned(), field("path")?.as_bytes().to_vec()),
                (":authority".to_owned(), host.as_bytes().to_vec()),
                ("user-agent".to_owned(), b"meshver-bench".to_vec()),
            ];
            if let Some(extra) = kind["headers"].as_object() {
                for (name, value) in extra {
                    headers.push((name.to_ascii_lowercase(), value.as_str().unwrap_or("").as_bytes().to_vec()));
                }
            }
            // What Envoy adds before the filter runs.
            headers.push(("x-forwarded-proto".to_owned(), b"http".to_vec()));
            headers.push(("x-request-id".to_owned(), b"0b9c3a6e-6d1f-4c55-9d0a-6c2f1d3e8a11".to_vec()));
            let borrowed: Vec<(&[u8], &[u8])> = headers.iter().map(|(n, v)| (n.as_bytes(), v.as_slice())).collect();
            Ok(MixRequest { name: field("name")?.to_owned(), wire: meshver::header_map::serialise(&borrowed) })
        })
        .collect()
}
