//! The decision: request × catalog → forward (route key, rewrite) or answer (problem).
//!
//! Resolution: the request's version (or the service's default) stands for a caret range.
//! The deployments inside it are compatible. If they are the whole major line, the route key
//! is the line's (the mesh's weights pick a deployment); otherwise it is the newest
//! compatible deployment's (a pinned route).

use crate::config::{Catalog, DefaultVersion, Deployment, Service, OWNED_HEADER_PREFIX};
use crate::problem::{quote_raw, Problem, ProblemKind};
use crate::request::Request;
use crate::sources::{find_versions, query_pairs, Found, Source};
use crate::version::RequestedVersion;
use std::borrow::Cow;

/// What the host must do with a request.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan<'c> {
    /// Headers the client sent that the filter owns: removed before anything is set.
    pub remove_headers: Vec<String>,
    pub outcome: Outcome<'c>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome<'c> {
    /// No service matched: the request goes on unchanged.
    PassThrough,
    Forward(Forward<'c>),
    /// Answer with this problem; nothing reaches an upstream.
    Reject(Problem),
}

/// A request that goes on, rewritten.
#[derive(Debug, PartialEq, Eq)]
pub struct Forward<'c> {
    pub service: &'c str,
    pub route: &'c str,
    /// Headers to set (replacing any value), in order.
    pub set_headers: Vec<(&'c str, Cow<'c, [u8]>)>,
    /// A new `:path`, when the version was stripped from it.
    pub path: Option<Vec<u8>>,
}

/// Decides what happens to one request.
pub fn decide<'c>(catalog: &'c Catalog, request: &Request<'_>) -> Plan<'c> {
    let remove_headers = request
        .headers
        .iter()
        .filter(|(name, _)| name.starts_with(OWNED_HEADER_PREFIX))
        .map(|(name, _)| name.clone())
        .collect();
    let outcome = match catalog.services.iter().find(|s| service_matches(s, request)) {
        None => Outcome::PassThrough,
        Some(service) => match route(catalog, service, request) {
            Ok(forward) => Outcome::Forward(forward),
            Err(problem) => Outcome::Reject(problem),
        },
    };
    Plan { remove_headers, outcome }
}

fn route<'c>(catalog: &'c Catalog, service: &'c Service, request: &Request<'_>) -> Result<Forward<'c>, Problem> {
    let found = find_versions(service, request);
    let requested = requested_version(service, &found)?;
    let (version, applied) = match requested {
        Some(v) => (v, v.to_string()),
        None => default_version(service)?,
    };
    let compatible: Vec<&Deployment> =
        service.deployments.iter().filter(|d| version.is_served_by(&d.version)).collect();
    let Some(newest) = compatible.last() else {
        let detail = format!(
            "No deployment of {} serves version {applied} (semver range {}). Deployed: {}.",
            service.name,
            version.comparator(),
            service.supported_versions.join(", ")
        );
        return Err(problem(service, ProblemKind::UnsupportedVersion, detail, Some(applied)));
    };
    let whole_line = service.line(newest.version.major).filter(|line| line.size == compatible.len());
    let route = whole_line.map_or(newest.route.as_str(), |line| line.route.as_str());

    let mut set_headers = vec![(catalog.route_header.as_str(), Cow::Borrowed(route.as_bytes()))];
    if service.set_version_header {
        set_headers.push((service.version_header.as_str(), Cow::Owned(applied.into_bytes())));
    }
    let path = if service.strip_version { canonical_path(service, request, &found) } else { None };
    Ok(Forward { service: &service.name, route, set_headers, path })
}

/// The one version the request names, if any; malformed or disagreeing values are refused.
fn requested_version(service: &Service, found: &[Found<'_>]) -> Result<Option<RequestedVersion>, Problem> {
    let mut chosen: Option<(RequestedVersion, &Found<'_>)> = None;
    for f in found {
        let version = match &f.version {
            Ok(v) => *v,
            Err(e) => {
                let detail = format!(
                    "The {} gives {}, which is not a version: {e}.",
                    describe(service, f.source),
                    quote_raw(f.raw)
                );
                return Err(problem(service, ProblemKind::MalformedVersion, detail, None));
            }
        };
        match chosen {
            None => chosen = Some((version, f)),
            Some((first, first_found)) if !first.same_range(&version) => {
                let detail = format!(
                    "The {} asks for version {first} but the {} asks for version {version}; send one version.",
                    describe(service, first_found.source),
                    describe(service, f.source)
                );
                return Err(problem(service, ProblemKind::VersionConflict, detail, None));
            }
            Some(_) => {}
        }
    }
    Ok(chosen.map(|(v, _)| v))
}

/// The version a request that names none gets, and its text for the version header.
fn default_version(service: &Service) -> Result<(RequestedVersion, String), Problem> {
    match &service.default_version {
        DefaultVersion::Fixed(v) => Ok((*v, v.to_string())),
        DefaultVersion::Latest => {
            let major = service.lines.last().map_or(0, |l| l.major);
            Ok((RequestedVersion { major, minor: None, patch: None }, major.to_string()))
        }
        DefaultVersion::Reject => {
            let detail = format!(
                "{} needs an API version; name one, for example with the {} header.",
                service.name, service.version_header
            );
            Err(problem(service, ProblemKind::VersionRequired, detail, None))
        }
    }
}

/// The path the upstream sees: without the segment, suffix or query parameter that named
/// the version. `None` when nothing changes.
fn canonical_path(service: &Service, request: &Request<'_>, found: &[Found<'_>]) -> Option<Vec<u8>> {
    let used = |source: Source| found.iter().any(|f| f.source == source);
    let (strip_leading, strip_suffix, strip_query) = (used(Source::Path), used(Source::Suffix), used(Source::Query));
    if !(strip_leading || strip_suffix || strip_query) {
        return None;
    }
    let mut path = request.path;
    if strip_leading {
        path = request.leading_version.map_or(path, |v| v.remainder);
    }
    if strip_suffix {
        if let Some(suffix) = request.suffix_version {
            let cut = request.path.len().saturating_sub(suffix.remainder.len());
            path = path.get(..path.len().saturating_sub(cut)).unwrap_or(path);
        }
    }
    let mut out = if path.is_empty() { b"/".to_vec() } else { path.to_vec() };
    if let Some(query) = request.query {
        let kept: Vec<&[u8]> = if strip_query {
            query
                .split(|b| *b == b'&')
                .filter(|pair| query_pairs(pair).all(|(key, _)| key != service.query_param.as_bytes()))
                .collect()
        } else {
            vec![query]
        };
        let joined = kept.join(&b'&');
        if !joined.is_empty() {
            out.push(b'?');
            out.extend_from_slice(&joined);
        }
    }
    Some(out)
}

fn service_matches(service: &Service, request: &Request<'_>) -> bool {
    let host_ok = service.hosts.is_empty() || service.hosts.iter().any(|h| h.matches(request.host));
    host_ok
        && (service.path_prefixes.is_empty()
            || path_views(service, request)
                .any(|view| service.path_prefixes.iter().any(|p| view.starts_with(p.as_bytes()))))
}

/// The path as sent, and with each enabled path source's version taken out.
fn path_views<'r>(service: &Service, request: &Request<'r>) -> impl Iterator<Item = &'r [u8]> {
    let on = |s: Source| service.sources.contains(&s);
    let leading = request.leading_version.filter(|_| on(Source::Path)).map(|v| v.remainder);
    let suffix = request.suffix_version.filter(|_| on(Source::Suffix));
    let both = leading.zip(suffix).and_then(|(rest, suffix)| {
        let cut = request.path.len().saturating_sub(suffix.remainder.len());
        rest.get(..rest.len().checked_sub(cut)?)
    });
    [Some(request.path), leading, suffix.map(|v| v.remainder), both].into_iter().flatten()
}

fn describe(service: &Service, source: Source) -> String {
    match source {
        Source::Header => format!("header {}", service.version_header),
        Source::Path => "path segment".to_owned(),
        Source::Suffix => "path suffix".to_owned(),
        Source::Accept => "Accept header".to_owned(),
        Source::Query => format!("query parameter {}", service.query_param),
        Source::Grpc => "gRPC package".to_owned(),
    }
}

fn problem(service: &Service, kind: ProblemKind, detail: String, requested: Option<String>) -> Problem {
    Problem {
        kind,
        detail,
        service: service.name.clone(),
        supported_versions: service.supported_versions.clone(),
        requested_version: requested,
    }
}

#[cfg(test)]
mod tests;
