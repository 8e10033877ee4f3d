//! Config loading: any bytes through `config::load`, the one entry point of the filter's
//! `on_configure` and the CLI's `check`. A config that loads is then used: its compatibility
//! findings, a few requests through the decision, and each version's body plan.

use super::plan::decided;
use meshver::config::{load, Catalog, HostPattern, Service};
use meshver::data::compatibility;
use meshver::header_map::Header;

/// Request headers besides the path, as name and value.
type Extra<'a> = &'a [(&'a str, &'a [u8])];

/// Requests tried on every service of a config that loads: what follows the service's first
/// path prefix (or a segment before it) and the headers, the version in each source.
const REQUESTS: &[(&str, Extra)] = &[
    ("", &[]),
    ("", &[("x-api-version", b"1")]),
    ("", &[("x-api-version", b"2.1")]),
    ("/v2", &[]),
    ("_v0.3", &[]),
    ("?api-version=1", &[]),
    ("", &[("accept", b"application/vnd.acme.v2+json;q=0.5, application/json;version=1")]),
    ("", &[("x-meshver-caller", b"order/2.0.0"), ("x-meshver-requires", b">=1, <3"), ("x-user-id", b"u")]),
];

pub fn check(data: &[u8]) {
    match load(data) {
        Err(errors) => {
            assert!(!errors.0.is_empty());
            for error in &errors.0 {
                assert!(error.path.starts_with('$') && !error.message.is_empty(), "{error}");
            }
        }
        Ok(catalog) => {
            for service in &catalog.services {
                check_service(service);
                requests(&catalog, service);
            }
        }
    }
}

fn check_service(service: &Service) {
    assert!(!service.deployments.is_empty());
    assert!(service.deployments.windows(2).all(|w| matches!(w, [a, b] if a.version < b.version)));
    let listed: Vec<String> = service.deployments.iter().map(|d| d.version.to_string()).collect();
    assert_eq!(service.supported_versions, listed);
    let Some(data) = &service.data else { return };
    for finding in compatibility(data) {
        assert!(!finding.to_string().is_empty());
    }
    let versions = service.supported_versions.iter().cloned().chain(data.served_versions().map(ToString::to_string));
    let paths: Vec<&str> = service.path_prefixes.iter().map(String::as_str).chain(["/"]).collect();
    for version in versions {
        for path in &paths {
            for method in [&b"POST"[..], b"GET", b"PUT"] {
                let Some(plan) = data.body_plan(&version, method, path.as_bytes()) else { continue };
                assert_eq!(data.decode_plan(&plan.id().encode()).map(|p| p.id()), Some(plan.id()));
                for body in [&b"{}"[..], b"", b"[1]", br#"{"a":{"b":[{"c":1}]}}"#] {
                    let _ = plan.request(body);
                    let _ = plan.response(body);
                }
            }
        }
    }
}

fn requests(catalog: &Catalog, service: &Service) {
    let prefix = service.path_prefixes.first().map_or("/x", String::as_str);
    let host = match service.hosts.first() {
        Some(HostPattern::Exact(host)) => host.clone(),
        Some(HostPattern::Subdomains(suffix)) => format!("a{suffix}"),
        None => String::new(),
    };
    for (suffix, extra) in REQUESTS {
        let path = match suffix.strip_prefix('/') {
            Some(segment) => format!("/{segment}{prefix}"),
            None => format!("{prefix}{suffix}"),
        };
        let mut headers: Vec<Header> = vec![(b":path", path.as_bytes()), (b":authority", host.as_bytes())];
        headers.extend(extra.iter().map(|(name, value)| (name.as_bytes(), *value)));
        decided(catalog, &headers);
    }
}
