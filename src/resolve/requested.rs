//! Which version a request names: every version its sources hold, the one they agree on
//! (or why not), and the default when it names none.

use crate::config::{DefaultVersion, Service};
use crate::problem::{quote_raw, Problem, ProblemKind};
use crate::request::Request;
use crate::sources::{accept_versions, grpc_package_version, query_values, Source};
use crate::version::{RequestedVersion, VersionError};

/// One version found in a request, valid or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found<'a> {
    pub source: Source,
    /// The bytes as sent, for error messages.
    pub raw: &'a [u8],
    pub version: Result<RequestedVersion, VersionError>,
}

/// Every version the service's enabled sources find in the request, in precedence order.
pub fn find_versions<'a>(service: &Service, request: &Request<'a>) -> Vec<Found<'a>> {
    let mut found = Vec::new();
    for source in &service.sources {
        let mut push =
            |raw: &'a [u8]| found.push(Found { source: *source, raw, version: RequestedVersion::parse(raw) });
        match source {
            Source::Header => request.values(&service.version_header).for_each(&mut push),
            Source::Path => request.leading_version.iter().for_each(|v| push(v.raw)),
            Source::Suffix => request.suffix_version.iter().for_each(|v| push(v.raw)),
            Source::Accept => {
                for value in request.values("accept") {
                    accept_versions(value, service.accept_vendor.as_deref()).for_each(&mut push);
                }
            }
            Source::Query => query_values(request.query, &service.query_param).for_each(&mut push),
            Source::Grpc => {
                if request.is_grpc() {
                    grpc_package_version(request.path).iter().for_each(|raw| push(raw));
                }
            }
        }
    }
    found
}

/// The one version the request names, if any; malformed or disagreeing values are refused.
pub(super) fn requested_version(service: &Service, found: &[Found<'_>]) -> Result<Option<RequestedVersion>, Problem> {
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
                return Err(Problem::for_service(service, ProblemKind::MalformedVersion, detail, None));
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
                return Err(Problem::for_service(service, ProblemKind::VersionConflict, detail, None));
            }
            Some(_) => {}
        }
    }
    Ok(chosen.map(|(v, _)| v))
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
