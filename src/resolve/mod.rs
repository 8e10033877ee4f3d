//! The decision: request × catalog → forward (route key, rewrite) or answer (problem).
//!
//! Resolution: the request's version (or the service's default) stands for a caret range.
//! The deployments inside it are compatible. If they are the whole major line, the route key
//! is the line's (the mesh's weights pick a deployment); otherwise it is the newest
//! compatible deployment's (a pinned route).
//!
//! Candidates narrow in this order, each step with its own answer when nothing is left:
//! requested version (400 unsupported-version) → the caller's required range (503
//! no-compatible-deployment) → what deployments accept of the caller (409
//! incompatible-caller) → sunset (410 version-gone).

#![allow(clippy::result_large_err)] // A rejection is the rare path, answered once: boxing buys nothing.

use crate::caller::{parse_requirement, CallerIdentity, CALLER_HEADER, REQUIRES_HEADER};
use crate::config::{Catalog, Deployment, Service, OWNED_HEADER_PREFIX};
use crate::data::BODY_HEADER;
use crate::metrics::{caller_label, route_label, version_label, CallerLabel, RequestLabels, VersionLabel};
use crate::problem::{quote_raw, Problem, ProblemKind};
use crate::request::Request;
use crate::sources::{names_param, query_pairs, Source};
use crate::sticky::{bucket, STICKY_HEADER};
use crate::version::RequestedVersion;
use requested::{default_version, find_versions, requested_version, Found};
use semver::VersionReq;
use std::borrow::Cow;

/// What the host must do with a request.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan<'c> {
    /// Headers the client sent that the filter owns: removed before anything is set.
    pub remove_headers: Vec<String>,
    /// Index of the service that matched, if any.
    pub service: Option<usize>,
    pub outcome: Outcome<'c>,
    /// What the request is counted under, as far as it was read.
    pub labels: RequestLabels,
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
    /// The major line when every deployment the route key may reach is deprecated.
    pub deprecated_line: Option<u64>,
}

impl Forward<'_> {
    /// Whether the request carries body work for the body filter (the mark is set).
    pub fn marks_body(&self) -> bool {
        self.set_headers.iter().any(|(name, _)| *name == BODY_HEADER)
    }

    /// Whether the request was given a sticky bucket.
    pub fn assigns_sticky(&self) -> bool {
        self.set_headers.iter().any(|(name, _)| *name == STICKY_HEADER)
    }
}

/// Decides what happens to one request at `now` (unix seconds, the proxy's clock).
pub fn decide<'c>(catalog: &'c Catalog, request: &Request<'_>, now: i64) -> Plan<'c> {
    let remove_headers = request
        .headers
        .iter()
        .filter(|(name, _)| name.starts_with(OWNED_HEADER_PREFIX.as_bytes()))
        .map(|(name, _)| String::from_utf8_lossy(name).into_owned())
        .collect();
    let matched = catalog.services.iter().enumerate().find(|(_, s)| service_matches(s, request));
    let mut labels = RequestLabels::unmatched(catalog);
    let outcome = match matched {
        None => Outcome::PassThrough,
        Some((index, service)) => {
            // Nothing read yet: a request refused before its version is read counts as `other`.
            labels.service = u32::try_from(index).unwrap_or(u32::MAX);
            labels.version = VersionLabel::Other;
            match route(catalog, service, request, now, &mut labels) {
                Ok(forward) => Outcome::Forward(forward),
                Err(problem) => Outcome::Reject(problem),
            }
        }
    };
    Plan { remove_headers, service: matched.map(|(index, _)| index), outcome, labels }
}

fn route<'c>(
    catalog: &'c Catalog,
    service: &'c Service,
    request: &Request<'_>,
    now: i64,
    labels: &mut RequestLabels,
) -> Result<Forward<'c>, Problem> {
    let found = find_versions(service, request);
    let requested = requested_version(service, &found)?;
    labels.version = version_label(service, requested.as_ref());
    let (caller, requirement) =
        caller_and_requirement(catalog, service, request).inspect_err(|_| labels.caller = CallerLabel::Other)?;
    // A sidecar's own identity is labelled already (`RequestLabels::unmatched`); one read from
    // the headers is labelled here.
    if let Some(Cow::Owned(caller)) = &caller {
        labels.caller = caller_label(catalog, &caller.service);
    }

    // 1. What the request asks for (or the default). A caller's requirement, when the request
    //    names no version, replaces the default: it knows better what the caller needs.
    let asked = match (requested, &requirement) {
        (Some(v), _) => Some((v, v.to_string())),
        (None, Some(range)) => served_meeting(service, range).map(|v| (v, v.to_string())),
        (None, None) => Some(default_version(service)?),
    };
    // A version with no deployment of its own, served by its successor through body changes,
    // resolves as if the successor had been asked for; the upstream is told the successor.
    let successor = asked.as_ref().and_then(|(v, _)| service.data.as_ref()?.successor_for(v).copied());
    let asked_version: Option<RequestedVersion> = asked.as_ref().map(|(v, _)| *v);
    // The version deployments are picked by (no text, no allocation: the hot path).
    let serving: Option<RequestedVersion> = successor.or(asked_version);
    let mut candidates: Vec<&Deployment> =
        service.deployments.iter().filter(|d| serving.is_none_or(|v| v.is_served_by(&d.version))).collect();
    if candidates.is_empty() {
        let (version, text) = asked.unwrap_or((RequestedVersion { major: 0, minor: None, patch: None }, String::new()));
        let detail = format!(
            "No deployment of {} serves version {text} (semver range {}). Deployed: {}.",
            service.name,
            version.comparator(),
            service.supported_versions.join(", ")
        );
        return Err(Problem::for_service(service, ProblemKind::UnsupportedVersion, detail, Some(text)));
    }

    // 2. The caller's requirement.
    // A version served by its successor that meets the requirement stands for the
    // successor's deployments.
    let met_by_served =
        |range: &VersionReq| successor.is_some() && asked_version.is_some_and(|v| range.matches(&lowest(&v)));
    if let Some(range) = requirement.as_ref().filter(|range| !met_by_served(range)) {
        candidates.retain(|d| range.matches(&d.version));
        if candidates.is_empty() {
            let who = caller.as_ref().map_or_else(|| "the caller".to_owned(), ToString::to_string);
            let asked_text = asked.as_ref().map_or(String::new(), |(_, t)| format!(" and version {t} was requested"));
            let detail = format!(
                "{who} requires {} {range}{asked_text}, but no deployed version satisfies that. Deployed: {}.",
                service.name,
                service.supported_versions.join(", ")
            );
            let mut p =
                Problem::for_service(service, ProblemKind::NoCompatibleDeployment, detail, asked.map(|(_, t)| t));
            p.extensions.push(("required_range", range.to_string().into()));
            if let Some(c) = &caller {
                p.extensions.push(("caller", c.to_string().into()));
            }
            return Err(p);
        }
    }

    // 3. What the deployments accept of this caller.
    if let Some(caller) = &caller {
        let refusals: Vec<(&Deployment, String)> =
            candidates.iter().filter_map(|d| d.refuses(caller).map(|r| (*d, r.to_string()))).collect();
        candidates.retain(|d| d.refuses(caller).is_none());
        if candidates.is_empty() {
            let why: Vec<String> = refusals
                .iter()
                .map(|(d, r)| format!("{} {} accepts {} {r}", service.name, d.version, caller.service))
                .collect();
            let detail = format!("{caller} cannot call {}: {}.", service.name, why.join("; "));
            let mut p = Problem::for_service(service, ProblemKind::IncompatibleCaller, detail, asked.map(|(_, t)| t));
            p.extensions.push(("caller", caller.to_string().into()));
            let refused: Vec<serde_json::Value> = refusals
                .iter()
                .map(|(d, r)| serde_json::json!({"version": d.version.to_string(), "accepts": r}))
                .collect();
            p.extensions.push(("refused_by", refused.into()));
            return Err(p);
        }
    }

    // 4. Sunset.
    let gone = |d: &Deployment| d.lifecycle.is_gone(now);
    let sunset: Vec<&Deployment> = candidates.iter().filter(|d| gone(d)).copied().collect();
    candidates.retain(|d| !gone(d));
    let Some(&newest) = candidates.last() else {
        let successor = sunset.iter().rev().find_map(|d| d.lifecycle.successor.clone());
        let versions: Vec<String> = sunset.iter().map(|d| d.version.to_string()).collect();
        let advice = successor.as_ref().map_or(String::new(), |s| format!(" Move to version {s}."));
        let detail = format!("{} {} is past its sunset.{advice}", service.name, versions.join(", "));
        let mut p = Problem::for_service(service, ProblemKind::VersionGone, detail, asked.map(|(_, t)| t));
        if let Some(s) = successor {
            p.extensions.push(("successor", s.into()));
        }
        return Err(p);
    };

    // 5. The whole line → the line's route (the mesh's weights decide); otherwise pinned.
    let major = newest.version.major;
    let whole_line = service.line(major).filter(|line| line.size == candidates.len());
    let route = whole_line.map_or(newest.route.as_str(), |line| line.route.as_str());
    labels.route = route_label(service, whole_line, newest);
    // Deprecated use: whatever deployment the route key reaches is deprecated.
    let deprecated = match whole_line {
        Some(_) => candidates.iter().all(|d| d.lifecycle.is_deprecated(now)),
        None => newest.lifecycle.is_deprecated(now),
    };
    let deprecated_line = deprecated.then_some(major);

    let path = if service.strip_version { canonical_path(service, request, &found) } else { None };
    // Body work for the body filter (services with `data` only), decided on the path as the
    // upstream sees it, without the query.
    let body_mark = match (&service.data, &asked) {
        (Some(data), Some((version, text))) => {
            let upstream_path = path.as_deref().map_or(request.path, |p| p.split(|b| *b == b'?').next().unwrap_or(p));
            let method = request.first(":method").unwrap_or_default();
            data.body_plan_for(version, method, upstream_path)
                .map(|plan| format!("{} {} {text} {}", service.name, plan.id().encode(), labels.mark()))
        }
        _ => None,
    };

    let mut set_headers = vec![(catalog.route_header.as_str(), Cow::Borrowed(route.as_bytes()))];
    if service.set_version_header {
        let applied = match (successor, asked) {
            (Some(s), _) => s.to_string(),
            (None, Some((_, text))) => text,
            (None, None) => major.to_string(),
        };
        // A client that already sent exactly the normalised value once costs no header write.
        let mut sent = request.values(&service.version_header);
        if !(sent.next() == Some(applied.as_bytes()) && sent.next().is_none()) {
            set_headers.push((service.version_header.as_str(), Cow::Owned(applied.into_bytes())));
        }
    }
    if let Some(caller) = &caller {
        set_headers.push((CALLER_HEADER, Cow::Owned(caller.to_string().into_bytes())));
    }
    // A requirement met by a version served by its successor is settled here: the callee is
    // sent the successor's version, which the range was never about.
    let own_requirement = catalog.caller.as_ref().and_then(|c| c.requirement(&service.name));
    if let Some(range) = own_requirement.filter(|range| !met_by_served(range)) {
        set_headers.push((REQUIRES_HEADER, Cow::Owned(range.to_string().into_bytes())));
    }
    if let Some(key) = service.sticky.as_ref().and_then(|s| s.find(request)) {
        set_headers.push((STICKY_HEADER, Cow::Owned(bucket(key).into_bytes())));
    }
    if let Some(mark) = body_mark {
        set_headers.push((BODY_HEADER, Cow::Owned(mark.into_bytes())));
    }
    Ok(Forward { service: &service.name, route, set_headers, path, deprecated_line })
}

/// A version served by its successor that meets a caller's requirement no deployment meets.
fn served_meeting(service: &Service, range: &VersionReq) -> Option<RequestedVersion> {
    if service.deployments.iter().any(|d| range.matches(&d.version)) {
        return None;
    }
    service.data.as_ref()?.served_versions().find(|v| range.matches(&lowest(v))).copied()
}

/// The lowest full version a requested version stands for (`1` → `1.0.0`).
fn lowest(version: &RequestedVersion) -> semver::Version {
    semver::Version::new(version.major, version.minor.unwrap_or(0), version.patch.unwrap_or(0))
}

type CallerAndRequirement<'c> = (Option<Cow<'c, CallerIdentity>>, Option<Cow<'c, VersionReq>>);

/// Who calls and what it requires: from this sidecar's own config (outbound), or from the
/// headers a trusted caller sidecar stamped (inbound).
fn caller_and_requirement<'c>(
    catalog: &'c Catalog,
    service: &'c Service,
    request: &Request<'_>,
) -> Result<CallerAndRequirement<'c>, Problem> {
    if let Some(own) = &catalog.caller {
        return Ok((Some(Cow::Borrowed(&own.identity)), own.requirement(&service.name).map(Cow::Borrowed)));
    }
    if !catalog.trust_caller_headers {
        return Ok((None, None));
    }
    let malformed = |header: &str, raw: &[u8]| {
        let detail = format!("The {header} header holds {}, which cannot be read.", quote_raw(raw));
        Problem::for_service(service, ProblemKind::MalformedCaller, detail, None)
    };
    let caller = match request.first(CALLER_HEADER) {
        Some(raw) => Some(Cow::Owned(CallerIdentity::parse(raw).ok_or_else(|| malformed(CALLER_HEADER, raw))?)),
        None => None,
    };
    let requirement = match request.first(REQUIRES_HEADER) {
        Some(raw) => Some(Cow::Owned(parse_requirement(raw).ok_or_else(|| malformed(REQUIRES_HEADER, raw))?)),
        None => None,
    };
    Ok((caller, requirement))
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
                .filter(|pair| query_pairs(pair).all(|(key, _)| !names_param(key, &service.query_param)))
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

mod requested;

#[cfg(test)]
mod tests;
