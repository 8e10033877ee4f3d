//! Caller identity between sidecars: the caller's filter stamps who calls and what it
//! requires; the callee's filter (when it trusts sidecar headers) reads them back, and, when
//! the catalog binds claims to the connection ([`PeerBinding`]), accepts a claim only from an
//! mTLS peer whose SPIFFE ID may make it.

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

/// Which mTLS peers may claim which caller services: each service with the SPIFFE IDs (the URI
/// SAN of a client certificate, `spiffe://cluster.local/ns/shop/sa/order`) that may speak for it.
/// A service not listed can be claimed by no peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerBinding {
    by_service: Vec<(String, Vec<String>)>,
}

/// Why a claim is refused on a listener that binds claims to the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimRefused {
    /// The connection has no peer identity: plaintext, or TLS without a client certificate
    /// (or one without a URI SAN).
    NoPeerIdentity,
    /// The peer's SPIFFE ID may not speak for the claimed service.
    OtherPeer,
}

impl PeerBinding {
    /// The binding as validated by `config` (services and IDs checked there).
    pub fn new(by_service: Vec<(String, Vec<String>)>) -> PeerBinding {
        PeerBinding { by_service }
    }

    /// Whether the peer (the first URI SAN of its certificate, as the proxy reports it; `None`
    /// when there is none) may claim to be `service`. IDs compare byte for byte.
    pub fn check(&self, service: &str, peer: Option<&[u8]>) -> Result<(), ClaimRefused> {
        let peer = peer.filter(|id| !id.is_empty()).ok_or(ClaimRefused::NoPeerIdentity)?;
        let allowed = self.by_service.iter().find(|(name, _)| name == service).map_or(&[][..], |(_, ids)| ids);
        if allowed.iter().any(|id| id.as_bytes() == peer) {
            Ok(())
        } else {
            Err(ClaimRefused::OtherPeer)
        }
    }
}

/// The longest SPIFFE ID the SPIFFE standard allows.
pub const MAX_SPIFFE_ID: usize = 2048;

/// Checks a workload's SPIFFE ID as the SPIFFE standard writes them (and Istio issues them):
/// `spiffe://`, a trust domain of lower-case letters, digits, `.`, `-` and `_`, then a path of
/// one or more `/`-separated segments of letters, digits, `.`, `-` and `_` (none empty, `.` or
/// `..`), nothing else. Returns what is wrong.
pub fn check_spiffe_id(id: &str) -> Result<(), &'static str> {
    let rest = id.strip_prefix("spiffe://").ok_or("does not start with spiffe://")?;
    if id.len() > MAX_SPIFFE_ID {
        return Err("is longer than 2048 bytes");
    }
    let (domain, path) = rest.split_once('/').ok_or("has no path after the trust domain (like /ns/shop/sa/order)")?;
    let domain_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_');
    if domain.is_empty() || !domain.bytes().all(domain_ok) {
        return Err("has a trust domain that is not lower-case letters, digits, '.', '-' or '_'");
    }
    let segment_ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_');
    for segment in path.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." || !segment.bytes().all(segment_ok) {
            return Err("has a path segment that is empty, '.', '..' or not letters, digits, '.', '-' or '_'");
        }
    }
    Ok(())
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
    fn a_claim_binds_to_the_peers_spiffe_id() {
        let order = "spiffe://cluster.local/ns/shop/sa/order";
        let binding =
            PeerBinding::new(vec![("order".into(), vec![order.into(), "spiffe://other.example/order".into()])]);
        assert_eq!(binding.check("order", Some(order.as_bytes())), Ok(()));
        assert_eq!(binding.check("order", Some(b"spiffe://other.example/order")), Ok(()));
        for (service, peer, refused) in [
            ("order", None, ClaimRefused::NoPeerIdentity),
            ("order", Some(&b""[..]), ClaimRefused::NoPeerIdentity),
            ("order", Some(b"spiffe://cluster.local/ns/shop/sa/user"), ClaimRefused::OtherPeer),
            ("order", Some(b"spiffe://cluster.local/ns/shop/sa/order/"), ClaimRefused::OtherPeer),
            ("order", Some(b"SPIFFE://cluster.local/ns/shop/sa/order"), ClaimRefused::OtherPeer),
            // A service nobody may claim, even with a peer that may claim another.
            ("user", Some(order.as_bytes()), ClaimRefused::OtherPeer),
        ] {
            assert_eq!(binding.check(service, peer), Err(refused), "{service} by {peer:?}");
        }
    }

    #[test]
    fn spiffe_ids_are_checked_as_the_standard_writes_them() {
        for good in ["spiffe://cluster.local/ns/shop/sa/order", "spiffe://example.org/a", "spiffe://td_1-x/A.b-c_d/e"] {
            assert_eq!(check_spiffe_id(good), Ok(()), "{good}");
        }
        let long = format!("spiffe://example.org/{}", "a".repeat(MAX_SPIFFE_ID));
        for bad in [
            "",
            "order",
            "https://cluster.local/ns/shop/sa/order",
            "spiffe://cluster.local",
            "spiffe://cluster.local/",
            "spiffe:///ns/shop",
            "spiffe://Cluster.local/ns/shop",
            "spiffe://cluster.local:8080/ns/shop",
            "spiffe://user@cluster.local/ns/shop",
            "spiffe://cluster.local/ns//shop",
            "spiffe://cluster.local/ns/shop/",
            "spiffe://cluster.local/ns/../sa",
            "spiffe://cluster.local/ns/./sa",
            "spiffe://cluster.local/ns/shop?x=1",
            "spiffe://cluster.local/ns/shop#x",
            "spiffe://cluster.local/ns/sh%6Fp",
            long.as_str(),
        ] {
            assert!(check_spiffe_id(bad).is_err(), "{bad}");
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
