//! Which version a request names: every version its sources hold, the one they agree on
//! (or why not), and the default when it names none.
//!
//! The Accept header is a preference list, not a set of claims: its versions, weighted by
//! their media ranges' `q`, stand for the one of them the service serves that the client
//! prefers. Each other source names its versions outright, and they must agree.

use crate::config::{DefaultVersion, Service};
use crate::problem::{quote_raw, Problem, ProblemKind};
use crate::request::Request;
use crate::sources::{
    accept_versions, grpc_package_version, percent_decode, query_values, BadEscape, Source, FULL_WEIGHT,
};
use crate::version::{RequestedVersion, VersionError};
use std::cmp::Reverse;
use std::fmt;

/// One version found in a request, valid or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found<'a> {
    pub source: Source,
    /// The bytes as sent, for error messages.
    pub raw: &'a [u8],
    pub version: Result<RequestedVersion, Unreadable<'a>>,
    /// How much the client wants it: an Accept media range's `q` in thousandths, and
    /// [`FULL_WEIGHT`] from every other source.
    pub weight: u16,
}

/// Why a value found in a request stands for no version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreadable<'a> {
    /// The value, decoded, is not a version.
    Version(VersionError),
    /// A query value's `%` escape is broken.
    Escape(BadEscape),
    /// The Accept media range's weight, as sent, is not a q-value.
    Weight(&'a [u8]),
}

/// Every version the service's enabled sources find in the request, in precedence order
/// (an Accept header's in its order of ranges, several Accept lines as one list).
pub fn find_versions<'a>(service: &Service, request: &Request<'a>) -> Vec<Found<'a>> {
    let mut found = Vec::new();
    for source in &service.sources {
        let source = *source;
        let mut push = |raw: &'a [u8]| {
            found.push(Found {
                source,
                raw,
                version: RequestedVersion::parse(raw).map_err(Unreadable::Version),
                weight: FULL_WEIGHT,
            })
        };
        match source {
            Source::Header => request.values(&service.version_header).for_each(&mut push),
            Source::Path => request.leading_version.iter().for_each(|v| push(v.raw)),
            Source::Suffix => request.suffix_version.iter().for_each(|v| push(v.raw)),
            Source::Accept => {
                for value in request.values("accept") {
                    for accepted in accept_versions(value, service.accept_vendor.as_deref()) {
                        let (version, weight) = match accepted.weight {
                            Ok(weight) => (RequestedVersion::parse(accepted.raw).map_err(Unreadable::Version), weight),
                            Err(raw) => (Err(Unreadable::Weight(raw)), 0),
                        };
                        found.push(Found { source, raw: accepted.raw, version, weight });
                    }
                }
            }
            Source::Query => {
                for raw in query_values(request.query, &service.query_param) {
                    let version = match percent_decode(raw) {
                        Ok(decoded) => RequestedVersion::parse(&decoded).map_err(Unreadable::Version),
                        Err(escape) => Err(Unreadable::Escape(escape)),
                    };
                    found.push(Found { source, raw, version, weight: FULL_WEIGHT });
                }
            }
            Source::Grpc => {
                if request.is_grpc() {
                    grpc_package_version(request.path).iter().for_each(|raw| push(raw));
                }
            }
        }
    }
    found
}

/// The one version the request names, if any. Unreadable values are refused first, then
/// sources that disagree, then an Accept header none of whose versions is served.
pub(super) fn requested_version(service: &Service, found: &[Found<'_>]) -> Result<Option<RequestedVersion>, Problem> {
    if let Some((f, why)) = found.iter().find_map(|f| Some((f, f.version.as_ref().err()?))) {
        let detail = format!("The {} gives {}{}.", describe(service, f.source), quote_raw(f.raw), Why(why, f.raw));
        return Err(Problem::for_service(service, ProblemKind::MalformedVersion, detail, None));
    }
    let accept = AcceptChoice::of(service, found);
    let mut chosen: Option<(RequestedVersion, Source)> = None;
    let mut accept_seen = false;
    for f in found {
        // Each source's version in precedence order; the Accept header's stands at its first entry.
        let (version, source) = match (f.source, &f.version) {
            (Source::Accept, _) if accept_seen => continue,
            (Source::Accept, _) => {
                accept_seen = true;
                match accept.named() {
                    Some(version) => (version, f.source),
                    None => continue,
                }
            }
            (_, Ok(version)) => (*version, f.source),
            (_, Err(_)) => continue,
        };
        match chosen {
            None => chosen = Some((version, source)),
            Some((first, first_source)) if !first.same_range(&version) => {
                let detail = format!(
                    "The {} asks for version {first} but the {} asks for version {version}; send one version.",
                    describe(service, first_source),
                    describe(service, source)
                );
                return Err(Problem::for_service(service, ProblemKind::VersionConflict, detail, None));
            }
            Some(_) => {}
        }
    }
    if let AcceptChoice::NoneServed(offered) = accept {
        return Err(not_acceptable(service, &offered));
    }
    Ok(chosen.map(|(v, _)| v))
}

/// What the Accept header's versions come to.
enum AcceptChoice {
    /// It names no version (no header, or only ranges like `*/*` and `text/html`).
    Silent,
    /// The version the client weighs most among those the service serves.
    Picked(RequestedVersion),
    /// It names versions, but the service serves none it accepts (`q` above 0). They are
    /// listed by preference.
    NoneServed(Vec<(RequestedVersion, u16)>),
}

impl AcceptChoice {
    /// RFC 9110 §12.5.1: the highest `q` wins, equal weights in the order sent, `q=0` means
    /// "not acceptable". Every value is readable by now.
    fn of(service: &Service, found: &[Found<'_>]) -> AcceptChoice {
        let mut offered: Vec<(RequestedVersion, u16)> = found
            .iter()
            .filter(|f| f.source == Source::Accept)
            .filter_map(|f| Some((f.version.clone().ok()?, f.weight)))
            .collect();
        if offered.is_empty() {
            return AcceptChoice::Silent;
        }
        offered.retain(|(_, weight)| *weight > 0);
        // A stable sort: equal weights keep the header's order.
        offered.sort_by_key(|(_, weight)| Reverse(*weight));
        match offered.iter().find(|(version, _)| serves(service, version)) {
            Some((version, _)) => AcceptChoice::Picked(*version),
            None => AcceptChoice::NoneServed(offered),
        }
    }

    /// The version the Accept header stands for when compared with other sources: its pick,
    /// or with none served the client's first preference.
    fn named(&self) -> Option<RequestedVersion> {
        match self {
            AcceptChoice::Silent => None,
            AcceptChoice::Picked(version) => Some(*version),
            AcceptChoice::NoneServed(offered) => offered.first().map(|(version, _)| *version),
        }
    }
}

/// Whether a deployment of the service, or a successor through body changes, serves `version`.
fn serves(service: &Service, version: &RequestedVersion) -> bool {
    service.deployments.iter().any(|d| version.is_served_by(&d.version))
        || service.data.as_ref().is_some_and(|data| data.successor_for(version).is_some())
}

/// 406: the Accept header names versions, and the service serves none the client accepts.
fn not_acceptable(service: &Service, offered: &[(RequestedVersion, u16)]) -> Problem {
    let deployed = service.supported_versions.join(", ");
    let detail = if offered.is_empty() {
        format!("The Accept header refuses (q=0) every version of {} it names. Deployed: {deployed}.", service.name)
    } else {
        let listed: Vec<String> = offered.iter().map(|(v, weight)| format!("{v} (q={})", Weight(*weight))).collect();
        format!(
            "No deployment of {} serves a version the Accept header accepts: {}. Deployed: {deployed}.",
            service.name,
            listed.join(", ")
        )
    };
    let mut problem = Problem::for_service(service, ProblemKind::NotAcceptable, detail, None);
    let acceptable: Vec<serde_json::Value> = offered.iter().map(|(v, _)| v.to_string().into()).collect();
    problem.extensions.push(("acceptable_versions", acceptable.into()));
    problem
}

/// A weight in thousandths as a q-value: `500` → `0.5`, `1000` → `1`.
struct Weight(u16);

impl fmt::Display for Weight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, thousandths) = (self.0 / 1000, self.0 % 1000);
        if thousandths == 0 {
            return write!(f, "{whole}");
        }
        let digits = format!("{thousandths:03}");
        write!(f, "{whole}.{}", digits.trim_end_matches('0'))
    }
}

/// Why a value is unreadable, completing "The <source> gives <raw>…".
struct Why<'w, 'a>(&'w Unreadable<'a>, &'a [u8]);

impl fmt::Display for Why<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Unreadable::Version(e) => write!(f, ", which is not a version: {e}"),
            Unreadable::Escape(escape) => write!(
                f,
                ", which cannot be percent-decoded: {} is not a % followed by two hex digits",
                quote_raw(escape.text(self.1))
            ),
            Unreadable::Weight(q) => write!(
                f,
                " with the weight q={}, which is not a q-value (0 to 1, at most three decimals)",
                quote_raw(q)
            ),
        }
    }
}

/// The version a request that names none gets, and its text for the version header.
pub(super) fn default_version(service: &Service) -> Result<(RequestedVersion, String), Problem> {
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
            Err(Problem::for_service(service, ProblemKind::VersionRequired, detail, None))
        }
    }
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
