//! Caller identity between sidecars: the caller's filter stamps who calls and what it
//! requires; the callee's filter (when it trusts sidecar headers) reads them back.

use semver::{Version, VersionReq};
use std::fmt;

/// Header holding the caller as `<service>/<version>` (`order/2.0.0`).
pub const CALLER_HEADER: &str = "x-meshver-caller";
/// Header holding the semver range the caller requires of the callee (`>=2.1, <3`).
pub const REQUIRES_HEADER: &str = "x-meshver-requires";

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdentity {
    pub service: String,
    pub version: Version,
}

impl CallerIdentity {
    /// Parses `order/2.0.0`; anything else is not an identity.
    pub fn parse(raw: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(raw).ok()?.trim();
        let (service, version) = text.split_once('/')?;
        let valid_name = !service.is_empty() && service.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !valid_name || text.len() > 128 {
            return None;
        }
        Some(CallerIdentity { service: service.to_owned(), version: Version::parse(version).ok()? })
    }
}

impl fmt::Display for CallerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.service, self.version)
    }
}

/// Parses a stamped requirement; bounded so a hostile value costs nothing.
pub fn parse_requirement(raw: &[u8]) -> Option<VersionReq> {
    if raw.len() > 128 {
        return None;
    }
    VersionReq::parse(std::str::from_utf8(raw).ok()?.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_identities() {
        let id = CallerIdentity::parse(b" order/2.0.0 ").unwrap();
        assert_eq!((id.service.as_str(), id.version.to_string().as_str()), ("order", "2.0.0"));
        assert_eq!(id.to_string(), "order/2.0.0");
        for bad in [&b"order"[..], b"order/2", b"/2.0.0", b"or der/2.0.0", b"order/2.0.0/x", b"\xff/1.0.0", b""] {
            assert_eq!(CallerIdentity::parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn reads_requirements() {
        assert!(parse_requirement(b">=2.1, <3").unwrap().matches(&Version::new(2, 1, 0)));
        assert!(parse_requirement(b"^1").unwrap().matches(&Version::new(1, 4, 0)));
        assert_eq!(parse_requirement(b"two"), None);
        assert_eq!(parse_requirement(&[b'1'; 200]), None);
    }
}
