//! Where Istio fetches a module (a WasmPlugin's `url`) and what it checks the fetch against
//! (its `sha256`). Istio's agent compares `sha256` with the sha256 of what it fetched: for an
//! `oci://` image that is the image manifest's digest (the registry's `Docker-Content-Digest`,
//! what `make oci` prints as the image digest), not the module's own sha256; for `https://` it is
//! the module file's. A `file://` module is handed to Envoy as a local file, which nothing checks.

use crate::fail::{Fail, Outcome};

/// A WasmPlugin's `url` and `sha256`.
pub struct ModuleSource {
    pub url: String,
    /// 64 lowercase hex digits.
    pub sha256: Option<String>,
}

const OCI: &str = "oci://";
const SHA256_PREFIX: &str = "sha256:";

/// The module at `url` (a reference without a scheme is an OCI image, as Istio reads it, and is
/// written with `oci://`), checked against `digest` (`sha256:<hex>` or the bare hex) if given.
/// `flag` names the digest's flag in messages.
pub fn module_source(url: &str, digest: Option<&str>, flag: &str) -> Outcome<ModuleSource> {
    let url = if url.contains("://") { url.to_owned() } else { format!("{OCI}{url}") };
    let Some(digest) = digest else {
        return Ok(ModuleSource { url, sha256: None });
    };
    let hex = digest.strip_prefix(SHA256_PREFIX).unwrap_or(digest).to_ascii_lowercase();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Fail::new(
            format!("{flag} {digest} is not a sha256 digest"),
            "give sha256:<64 hex digits>, as `make oci` prints the image digest",
        ));
    }
    if url.starts_with("file://") {
        return Err(Fail::new(
            format!("Istio checks no digest of a file:// module ({url}): Envoy reads the file as it is"),
            format!("drop {flag}, or name an oci:// or https:// module"),
        ));
    }
    // Istio requires a digest in the URL and `sha256` to agree.
    if let Some((_, pinned)) = url.strip_prefix(OCI).and_then(|reference| reference.rsplit_once("@sha256:")) {
        if !pinned.eq_ignore_ascii_case(&hex) {
            return Err(Fail::new(
                format!("{url} names the image by digest sha256:{pinned}, and {flag} is sha256:{hex}"),
                format!("give the image's one digest (or drop {flag}: the URL's digest is checked)"),
            ));
        }
    }
    Ok(ModuleSource { url, sha256: Some(hex) })
}

#[cfg(test)]
mod tests {
    use super::module_source;

    const HEX: &str = "012b017f4bd9a686b4bcf3fa4ff117a18f3b07770795bf937e63400d7f5e21ad";

    fn source(url: &str, digest: Option<&str>) -> Result<(String, Option<String>), String> {
        module_source(url, digest, "--image-digest").map(|s| (s.url, s.sha256)).map_err(|f| f.lines.join(" "))
    }

    #[test]
    fn a_digest_is_written_as_the_hex_istio_compares() {
        let tagged = "oci://registry.example.com/meshver:0.1.0";
        assert_eq!(source(tagged, None).unwrap(), (tagged.to_owned(), None));
        for given in [format!("sha256:{HEX}"), HEX.to_owned(), format!("sha256:{}", HEX.to_uppercase())] {
            assert_eq!(source(tagged, Some(&given)).unwrap(), (tagged.to_owned(), Some(HEX.to_owned())), "{given}");
        }
        // The module file's sha256 over https.
        assert_eq!(source("https://files.example.com/meshver.wasm", Some(HEX)).unwrap().1.as_deref(), Some(HEX));
    }

    #[test]
    fn a_reference_without_a_scheme_is_an_oci_image() {
        let url = |given| source(given, None).unwrap().0;
        assert_eq!(url("registry.example.com/meshver:0.1.0"), "oci://registry.example.com/meshver:0.1.0");
        let local = "file:///etc/istio/extensions/meshver.wasm";
        assert_eq!(url(local), local);
    }

    #[test]
    fn digests_istio_would_not_check_or_would_refuse_are_refused() {
        for bad in ["sha256:abc", "md5:0123", &format!("sha512:{HEX}"), &format!("{HEX}0"), &HEX.replace('0', "g")] {
            let refused = source("oci://r.example.com/meshver:1", Some(bad)).unwrap_err();
            assert!(refused.contains("is not a sha256 digest"), "{bad}: {refused}");
        }
        let local = source("file:///etc/istio/extensions/meshver.wasm", Some(HEX)).unwrap_err();
        assert!(local.contains("drop --image-digest"), "{local}");
        let pinned = format!("oci://r.example.com/meshver@sha256:{HEX}");
        assert_eq!(source(&pinned, Some(HEX)).unwrap().1.as_deref(), Some(HEX));
        let other = source(&pinned, Some(&"0".repeat(64))).unwrap_err();
        assert!(other.contains("names the image by digest"), "{other}");
    }
}
