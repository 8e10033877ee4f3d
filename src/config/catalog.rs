//! The validated catalog the filter decides with: versions parsed, route keys filled in,
//! lists sorted, so that nothing is parsed or allocated per request.

use crate::caller::{CallerIdentity, PeerBinding};
use crate::data::ServiceData;
use crate::lifecycle::Lifecycle;
use crate::sources::Source;
use crate::sticky::StickyKey;
use crate::version::RequestedVersion;
use semver::{Version, VersionReq};

/// All services, in match order.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub route_header: String,
    pub services: Vec<Service>,
    /// Set in a caller's (outbound) sidecar: who calls, and what it requires.
    pub caller: Option<Caller>,
    /// Read caller identity headers stamped by another sidecar.
    pub trust_caller_headers: bool,
    /// When set, a claim read from those headers must match the connection's mTLS peer.
    pub caller_spiffe_ids: Option<PeerBinding>,
}

impl Catalog {
    /// The binding a caller claim must pass here: set where claims are read from headers (a
    /// listener that trusts them, not a caller's own sidecar) and bound to the connection.
    pub fn claim_binding(&self) -> Option<&PeerBinding> {
        self.caller_spiffe_ids.as_ref().filter(|_| self.trust_caller_headers && self.caller.is_none())
    }
}

/// One service, ready for requests.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub path_prefixes: Vec<String>,
    pub hosts: Vec<HostPattern>,
    /// Sorted by version, oldest first.
    pub deployments: Vec<Deployment>,
    /// One per major that has deployments, sorted by major.
    pub lines: Vec<Line>,
    pub default_version: DefaultVersion,
    /// The sources that are on, in precedence order.
    pub sources: Vec<Source>,
    pub version_header: String,
    pub query_param: String,
    pub accept_vendor: Option<String>,
    pub strip_version: bool,
    pub set_version_header: bool,
    /// Deployed versions, oldest first, as listed in errors and `api-supported-versions`.
    pub supported_versions: Vec<String>,
    pub sticky: Option<StickyKey>,
    /// Body changes, successors and contracts; none for a header-only service.
    pub data: Option<ServiceData>,
}

/// One deployed version.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub version: Version,
    pub route: String,
    pub weight: Option<u32>,
    /// Caller ranges it accepts, by caller service; callers not listed are accepted.
    pub accepts: Vec<(String, VersionReq)>,
    /// What it requires of the services it calls, by callee service (its own sidecar
    /// enforces them when its `caller` names this deployment).
    pub requires: Vec<(String, VersionReq)>,
    /// Its own lifecycle merged over its line's.
    pub lifecycle: Lifecycle,
}

impl Deployment {
    /// The range it refuses this caller with, if it does.
    pub fn refuses(&self, caller: &CallerIdentity) -> Option<&VersionReq> {
        self.accepts
            .iter()
            .find(|(service, _)| *service == caller.service)
            .map(|(_, range)| range)
            .filter(|range| !range.matches(&caller.version))
    }
}

/// The calling service of an outbound sidecar.
#[derive(Debug, Clone)]
pub struct Caller {
    pub identity: CallerIdentity,
    /// Semver ranges it requires, by callee service.
    pub requires: Vec<(String, VersionReq)>,
}

impl Caller {
    /// The range it requires of a service, if any.
    pub fn requirement(&self, service: &str) -> Option<&VersionReq> {
        self.requires.iter().find(|(name, _)| name == service).map(|(_, range)| range)
    }
}

/// The deployments that share a major version.
#[derive(Debug, Clone)]
pub struct Line {
    pub major: u64,
    pub route: String,
    /// How many deployments the line has (they are contiguous in `Service::deployments`).
    pub size: usize,
}

/// What a request that names no version gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefaultVersion {
    Fixed(RequestedVersion),
    /// The newest major line, as if the request had named that major.
    Latest,
    Reject,
}

/// A host the service answers to: exact, or `*.suffix` for any subdomain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    /// Holds the suffix with its leading dot (`.example.com`).
    Subdomains(String),
}

impl HostPattern {
    /// Whether an `:authority` value (port removed) is this host, ignoring case.
    pub fn matches(&self, host: &[u8]) -> bool {
        match self {
            HostPattern::Exact(name) => host.eq_ignore_ascii_case(name.as_bytes()),
            HostPattern::Subdomains(suffix) => {
                host.len() > suffix.len()
                    && host
                        .get(host.len() - suffix.len()..)
                        .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix.as_bytes()))
            }
        }
    }
}

impl Service {
    /// The line of a major, if any deployment has it.
    pub fn line(&self, major: u64) -> Option<&Line> {
        self.lines.iter().find(|l| l.major == major)
    }

    /// The deployments of a line, oldest first (they are contiguous).
    pub fn line_deployments(&self, line: &Line) -> &[Deployment] {
        let start = self.deployments.iter().position(|d| d.version.major == line.major).unwrap_or(0);
        self.deployments.get(start..start + line.size).unwrap_or_default()
    }
}
