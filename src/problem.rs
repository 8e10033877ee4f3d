//! RFC 9457 problem details: the answers the filter gives by itself.

use crate::config::Service;
use serde::ser::{Serialize, SerializeMap, Serializer};

/// Response header listing the versions a service has deployed (also sent on rejections).
pub const SUPPORTED_VERSIONS_HEADER: &str = "api-supported-versions";
/// The media type of every answer the filter gives by itself.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";
/// Problem types are `urn:meshver:problem:<kind>`; the README lists every kind.
const TYPE_PREFIX: &str = "urn:meshver:problem:";
/// gRPC metadata naming the problem type, since a gRPC answer carries no problem+json body.
pub const PROBLEM_TYPE_METADATA: &str = "meshver-problem-type";

/// An answer the filter gives by itself, as the host sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status (200 for a gRPC answer: the gRPC status says what went wrong).
    pub status: u32,
    /// Response headers, or for a gRPC answer its metadata.
    pub headers: Vec<(&'static str, String)>,
    /// The problem+json body, or for a gRPC answer the status message.
    pub body: Vec<u8>,
    /// Set for a gRPC answer: the gRPC status code.
    pub grpc_status: Option<u32>,
    /// Why the proxy answered, for its access log (`%RESPONSE_CODE_DETAILS%`).
    pub details: String,
}

/// Why the filter answered a request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    /// A version source holds something that is not a version (400).
    MalformedVersion,
    /// Two sources (or two values of one) name different versions (400).
    VersionConflict,
    /// The request named no version and the service has no default (400).
    VersionRequired,
    /// No deployment serves the requested version (400).
    UnsupportedVersion,
    /// The caller identity headers from a trusted sidecar are unreadable (400).
    MalformedCaller,
    /// Deployments serve the version, but none within the caller's required range (503).
    NoCompatibleDeployment,
    /// Every deployment that could serve refuses this caller's version (409).
    IncompatibleCaller,
    /// Every deployment that could serve is past its sunset (410).
    VersionGone,
    /// A request body that a change or contract applies to is not JSON (400).
    MalformedBody,
    /// A request body breaks the contract of its version (422).
    ContractViolation,
    /// A request body is over the size the filter buffers to check or change it (413).
    BodyTooLarge,
    /// An upstream's response is over the size the filter buffers to change it back (502).
    ResponseTooLarge,
    /// The Accept header names versions, and no deployment serves one it accepts (406).
    NotAcceptable,
    /// A caller claim the connection's mTLS peer may not make, or one made without a client
    /// certificate, where claims are bound to the connection (403).
    CallerMismatch,
}

impl ProblemKind {
    /// Every kind, in a fixed order (metric slots depend on it).
    pub const ALL: [ProblemKind; 14] = [
        ProblemKind::MalformedVersion,
        ProblemKind::VersionConflict,
        ProblemKind::VersionRequired,
        ProblemKind::UnsupportedVersion,
        ProblemKind::MalformedCaller,
        ProblemKind::NoCompatibleDeployment,
        ProblemKind::IncompatibleCaller,
        ProblemKind::VersionGone,
        ProblemKind::MalformedBody,
        ProblemKind::ContractViolation,
        ProblemKind::BodyTooLarge,
        ProblemKind::ResponseTooLarge,
        ProblemKind::NotAcceptable,
        ProblemKind::CallerMismatch,
    ];

    pub fn status(self) -> u16 {
        match self {
            ProblemKind::MalformedVersion
            | ProblemKind::VersionConflict
            | ProblemKind::VersionRequired
            | ProblemKind::UnsupportedVersion
            | ProblemKind::MalformedCaller
            | ProblemKind::MalformedBody => 400,
            ProblemKind::CallerMismatch => 403,
            ProblemKind::NotAcceptable => 406,
            ProblemKind::IncompatibleCaller => 409,
            ProblemKind::BodyTooLarge => 413,
            ProblemKind::ContractViolation => 422,
            ProblemKind::ResponseTooLarge => 502,
            ProblemKind::VersionGone => 410,
            ProblemKind::NoCompatibleDeployment => 503,
        }
    }

    /// The gRPC status a gRPC client gets instead (it cannot read a problem+json body).
    pub fn grpc_code(self) -> u32 {
        match self {
            ProblemKind::MalformedVersion
            | ProblemKind::VersionConflict
            | ProblemKind::VersionRequired
            | ProblemKind::MalformedCaller
            | ProblemKind::MalformedBody
            | ProblemKind::ContractViolation => 3, // INVALID_ARGUMENT
            ProblemKind::BodyTooLarge | ProblemKind::ResponseTooLarge => 8, // RESOURCE_EXHAUSTED
            ProblemKind::UnsupportedVersion | ProblemKind::VersionGone | ProblemKind::NotAcceptable => 12, // UNIMPLEMENTED
            ProblemKind::CallerMismatch => 7,          // PERMISSION_DENIED
            ProblemKind::IncompatibleCaller => 9,      // FAILED_PRECONDITION
            ProblemKind::NoCompatibleDeployment => 14, // UNAVAILABLE
        }
    }

    pub fn slug(self) -> &'static str {
        match self {
            ProblemKind::MalformedVersion => "malformed-version",
            ProblemKind::VersionConflict => "version-conflict",
            ProblemKind::VersionRequired => "version-required",
            ProblemKind::UnsupportedVersion => "unsupported-version",
            ProblemKind::MalformedCaller => "malformed-caller",
            ProblemKind::NoCompatibleDeployment => "no-compatible-deployment",
            ProblemKind::IncompatibleCaller => "incompatible-caller",
            ProblemKind::VersionGone => "version-gone",
            ProblemKind::MalformedBody => "malformed-body",
            ProblemKind::ContractViolation => "contract-violation",
            ProblemKind::BodyTooLarge => "body-too-large",
            ProblemKind::ResponseTooLarge => "response-too-large",
            ProblemKind::NotAcceptable => "not-acceptable",
            ProblemKind::CallerMismatch => "caller-mismatch",
        }
    }

    /// The kind in a metric label and in response code details: the slug with `_` for `-`
    /// (`unsupported_version`), written out so that an answer allocates nothing for it.
    pub fn label(self) -> &'static str {
        match self {
            ProblemKind::MalformedVersion => "malformed_version",
            ProblemKind::VersionConflict => "version_conflict",
            ProblemKind::VersionRequired => "version_required",
            ProblemKind::UnsupportedVersion => "unsupported_version",
            ProblemKind::MalformedCaller => "malformed_caller",
            ProblemKind::NoCompatibleDeployment => "no_compatible_deployment",
            ProblemKind::IncompatibleCaller => "incompatible_caller",
            ProblemKind::VersionGone => "version_gone",
            ProblemKind::MalformedBody => "malformed_body",
            ProblemKind::ContractViolation => "contract_violation",
            ProblemKind::BodyTooLarge => "body_too_large",
            ProblemKind::ResponseTooLarge => "response_too_large",
            ProblemKind::NotAcceptable => "not_acceptable",
            ProblemKind::CallerMismatch => "caller_mismatch",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            ProblemKind::MalformedVersion => "Malformed API version",
            ProblemKind::VersionConflict => "Conflicting API versions",
            ProblemKind::VersionRequired => "API version required",
            ProblemKind::UnsupportedVersion => "Unsupported API version",
            ProblemKind::MalformedCaller => "Malformed caller identity",
            ProblemKind::NoCompatibleDeployment => "No compatible deployment",
            ProblemKind::IncompatibleCaller => "Incompatible caller",
            ProblemKind::VersionGone => "API version gone",
            ProblemKind::MalformedBody => "Malformed JSON body",
            ProblemKind::ContractViolation => "Body breaks the version's contract",
            ProblemKind::BodyTooLarge => "Body too large",
            ProblemKind::ResponseTooLarge => "Response too large to change back",
            ProblemKind::NotAcceptable => "No acceptable API version",
            ProblemKind::CallerMismatch => "Caller claim not made by the connection's peer",
        }
    }
}

/// A problem+json answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    pub detail: String,
    pub service: String,
    /// Deployed versions of the service, oldest first.
    pub supported_versions: Vec<String>,
    /// The version the request asked for, normalised, when it could be read.
    pub requested_version: Option<String>,
    /// Further members for this kind (`caller`, `required_range`, `successor`, …).
    pub extensions: Vec<(&'static str, serde_json::Value)>,
}

/// The problem+json members in RFC 9457's order, then the kind's extensions, written
/// straight from the problem (no intermediate map).
struct Body<'a>(&'a Problem);

impl Serialize for Body<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("type", &p.type_uri())?;
        map.serialize_entry("title", p.kind.title())?;
        map.serialize_entry("status", &p.status())?;
        map.serialize_entry("detail", &p.detail)?;
        map.serialize_entry("service", &p.service)?;
        map.serialize_entry("supported_versions", &p.supported_versions)?;
        if let Some(requested) = &p.requested_version {
            map.serialize_entry("requested_version", requested)?;
        }
        for (name, value) in &p.extensions {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl Problem {
    /// A problem with a service's answer: its name and deployed versions, and the version the
    /// request asked for when it could be read.
    pub fn for_service(service: &Service, kind: ProblemKind, detail: String, requested: Option<String>) -> Problem {
        Problem {
            kind,
            detail,
            service: service.name.clone(),
            supported_versions: service.supported_versions.clone(),
            requested_version: requested,
            extensions: Vec::new(),
        }
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    /// The JSON body.
    pub fn body(&self) -> Vec<u8> {
        // Serialising plain strings and numbers cannot fail; an empty body is the fallback anyway.
        serde_json::to_vec(&Body(self)).unwrap_or_default()
    }

    /// The problem's type URI.
    pub fn type_uri(&self) -> String {
        format!("{TYPE_PREFIX}{}", self.kind.slug())
    }

    /// The answer to send: problem+json, or for a gRPC call (whose client cannot read a JSON
    /// body) the matching gRPC status with the detail as its message.
    pub fn answer(&self, grpc: bool) -> Answer {
        if grpc {
            let metadata = vec![
                (SUPPORTED_VERSIONS_HEADER, self.supported_versions.join(", ")),
                (PROBLEM_TYPE_METADATA, self.type_uri()),
            ];
            Answer {
                status: 200,
                headers: metadata,
                body: self.detail.clone().into_bytes(),
                grpc_status: Some(self.kind.grpc_code()),
                details: self.details(),
            }
        } else {
            Answer {
                status: u32::from(self.status()),
                headers: self.headers(),
                body: self.body(),
                grpc_status: None,
                details: self.details(),
            }
        }
    }

    /// The answer's response code details, in Envoy's style (one token, no spaces):
    /// `meshver_<kind>{<service>}`, or `meshver_<kind>{<service>,<requested version>}` when the
    /// version could be read, e.g. `meshver_unsupported_version{user,3}`.
    pub fn details(&self) -> String {
        let kind = self.kind.label();
        match &self.requested_version {
            Some(version) => format!("meshver_{kind}{{{},{version}}}", self.service),
            None => format!("meshver_{kind}{{{}}}", self.service),
        }
    }

    /// The response headers that go with the body.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        vec![
            ("content-type", PROBLEM_CONTENT_TYPE.to_owned()),
            (SUPPORTED_VERSIONS_HEADER, self.supported_versions.join(", ")),
            ("cache-control", "no-store".to_owned()),
        ]
    }
}

/// Raw request bytes as they may appear in a message: lossy UTF-8, at most 64 characters.
pub fn quote_raw(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut shown: String = text.chars().take(64).collect();
    if text.chars().nth(64).is_some() {
        shown.push('…');
    }
    format!("{shown:?}")
}
