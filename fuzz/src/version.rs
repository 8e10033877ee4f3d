//! Version parsing: what a client writes as a version (`v2.1`), and the other small parsers
//! of request and config values (caller identity, required range, gRPC package, instants).

use meshver::caller::{parse_requirement, CallerIdentity};
use meshver::lifecycle::{http_date, parse_instant};
use meshver::sources::grpc_package_version;
use meshver::version::RequestedVersion;
use semver::{Version, VersionReq};

pub fn check(data: &[u8]) {
    if let Ok(version) = RequestedVersion::parse(data) {
        // The normalised form the upstream sees reads back as the same version.
        let text = version.to_string();
        assert_eq!(RequestedVersion::parse(text.as_bytes()), Ok(version), "{text}");
        assert!(version.same_range(&version));
        // Its range is one semver reads, and the lowest version in it is served by it.
        let range = version.comparator().to_string();
        assert!(VersionReq::parse(&range).is_ok(), "{range}");
        let lowest = Version::new(version.major, version.minor.unwrap_or(0), version.patch.unwrap_or(0));
        assert!(version.is_served_by(&lowest), "{text} does not serve {lowest}");
    }
    if let Some(caller) = CallerIdentity::parse(data) {
        assert_eq!(CallerIdentity::parse(caller.to_string().as_bytes()), Some(caller));
    }
    if let Some(range) = parse_requirement(data) {
        assert_eq!(VersionReq::parse(&range.to_string()).ok(), Some(range));
    }
    if let Some(label) = grpc_package_version(data) {
        assert!(super::is_within(label, data));
        let digits = label.strip_prefix(b"v").or_else(|| label.strip_prefix(b"V")).unwrap_or_default();
        assert!(!digits.is_empty() && digits.iter().all(u8::is_ascii_digit), "{:?}", String::from_utf8_lossy(label));
    }
    if let Some(instant) = std::str::from_utf8(data).ok().and_then(parse_instant) {
        assert!(http_date(instant).ends_with(" GMT"));
    }
}
