//! The request path as plain Rust: what the filter does with one request, run against a
//! [`Host`]. The proxy-wasm adapter (`host/`, wasm only) is the one real host and decides
//! nothing; the tests drive the same function through an in-memory host.
//!
//! One pass over the request headers: read them as bytes, [`decide`], hold a caller claim to
//! the connection's mTLS peer where the catalog binds claims, count, remove what clients may
//! not send, then set the route and rewrite, or answer (problem+json, or a gRPC status for a
//! gRPC call).

use crate::caller::{CallerIdentity, ClaimRefused, CALLER_HEADER, MAX_SPIFFE_ID};
use crate::config::Catalog;
use crate::header_map;
use crate::metrics::{CallerLabel, OutcomeLabel, Series, NO_ROUTE};
use crate::problem::{Answer, Problem, ProblemKind};
use crate::request::Request;
use crate::resolve::{decide, Outcome, Plan};

pub mod body;

/// What the request path needs of the proxy.
pub trait Host {
    /// The request's headers as the host serialises them ([`header_map`]'s format); `None`
    /// when the host refuses.
    fn request_header_map(&mut self) -> Option<Vec<u8>>;
    /// Sets a request header, replacing every value; `None` removes it.
    fn set_request_header(&mut self, name: &str, value: Option<&[u8]>);
    /// Answers the request; nothing reaches an upstream.
    fn send_answer(&mut self, answer: &Answer);
    /// The proxy's clock, unix seconds.
    fn now(&self) -> i64;
    /// The connection's mTLS peer: the first URI SAN of the client certificate the proxy
    /// verified (in a mesh, a SPIFFE ID). `None` on a plaintext connection, without a client
    /// certificate, or for one without a URI SAN. Asked only for a request that carries a
    /// caller claim on a listener that binds claims: no other request pays for it.
    fn peer_uri_san(&mut self) -> Option<Vec<u8>>;
    /// Counts the request in one counter (see [`crate::metrics`]), in memory.
    fn count(&mut self, series: Series);
    /// A line for the proxy's debug log.
    fn debug(&self, message: std::fmt::Arguments<'_>);
}

/// What the body filter needs of the proxy besides a [`Host`]'s request headers.
pub trait BodyHost: Host {
    /// The first `size` bytes of the buffered request body (all of it when it is shorter).
    fn request_body(&mut self, size: usize) -> Option<Vec<u8>>;
    /// Replaces the whole buffered request body (`old_size` bytes).
    fn set_request_body(&mut self, old_size: usize, body: &[u8]);
    /// The response's headers, serialised like the request's.
    fn response_header_map(&mut self) -> Option<Vec<u8>>;
    /// Sets a response header, replacing every value; `None` removes it.
    fn set_response_header(&mut self, name: &str, value: Option<&[u8]>);
    /// The first `size` bytes of the buffered response body.
    fn response_body(&mut self, size: usize) -> Option<Vec<u8>>;
    /// Replaces the whole buffered response body (`old_size` bytes).
    fn set_response_body(&mut self, old_size: usize, body: &[u8]);
}

/// Whether the request goes on through the filter chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    /// The filter answered; the request stops here.
    Answered,
}

/// Runs one request's headers through the catalog.
pub fn on_request_headers(host: &mut impl Host, catalog: &Catalog) -> Verdict {
    let Some(buffer) = host.request_header_map() else {
        host.debug(format_args!("the host refused the header map; request left alone"));
        return Verdict::Continue;
    };
    let Some(headers) = header_map::parse(&buffer) else {
        host.debug(format_args!("the host sent an unreadable header map; request left alone"));
        return Verdict::Continue;
    };
    let request = Request::new(&headers);
    let mut plan = decide(catalog, &request, host.now());
    bind_claim(host, catalog, &request, &mut plan);
    count(host, &plan);
    for name in &plan.remove_headers {
        host.set_request_header(name, None);
    }
    match plan.outcome {
        Outcome::PassThrough => Verdict::Continue,
        Outcome::Forward(forward) => {
            for (name, value) in &forward.set_headers {
                host.set_request_header(name, Some(value));
            }
            if let Some(path) = &forward.path {
                host.set_request_header(":path", Some(path));
            }
            host.debug(format_args!("{} -> route {}", forward.service, forward.route));
            Verdict::Continue
        }
        Outcome::Reject(problem) => {
            host.debug(format_args!("{} answered {}: {}", problem.service, problem.status(), problem.detail));
            host.send_answer(&problem.answer(request.is_grpc()));
            Verdict::Answered
        }
    }
}

/// Where the catalog binds caller claims to the connection, refuses a request whose
/// `x-meshver-caller` the mTLS peer may not make, whatever `decide` made of it: the claim is
/// not the caller's, so nothing decided from it stands. Only a request that carries a readable
/// claim, to a service of the catalog, asks the host for the peer (an unreadable one is
/// `decide`'s 400; without a service the header is only removed).
fn bind_claim(host: &mut impl Host, catalog: &Catalog, request: &Request<'_>, plan: &mut Plan<'_>) {
    let Some(binding) = catalog.claim_binding() else { return };
    let Some(service) = plan.service.and_then(|index| catalog.services.get(index)) else { return };
    let Some(claim) = request.first(CALLER_HEADER).and_then(CallerIdentity::parse) else { return };
    let peer = host.peer_uri_san();
    let Err(refused) = binding.check(&claim.service, peer.as_deref()) else { return };
    // A peer ID past the standard's length is no SPIFFE ID: it is not echoed.
    let peer = peer
        .filter(|id| !id.is_empty() && id.len() <= MAX_SPIFFE_ID)
        .map(|id| String::from_utf8_lossy(&id).into_owned());
    let detail = match (refused, &peer) {
        (ClaimRefused::OtherPeer, Some(id)) => {
            format!("The {CALLER_HEADER} header claims {claim}, but the connection's peer is {id}, which may not speak for {}.", claim.service)
        }
        _ => format!(
            "The {CALLER_HEADER} header claims {claim}, but the connection has no client certificate with a SPIFFE ID: claims are accepted over mTLS only."
        ),
    };
    let mut problem = Problem::for_service(service, ProblemKind::CallerMismatch, detail, None);
    problem.extensions.push(("caller", claim.to_string().into()));
    problem.extensions.push(("peer", peer.map_or(serde_json::Value::Null, Into::into)));
    plan.outcome = Outcome::Reject(problem);
    plan.labels.caller = CallerLabel::Other;
    plan.labels.route = NO_ROUTE;
}

/// Counts a decided request once under its outcome, unless it is marked for the body filter,
/// which counts it once its body is decided; and a forwarded one's deprecated use and sticky
/// assignment.
fn count(host: &mut impl Host, plan: &Plan<'_>) {
    let labels = plan.labels;
    match &plan.outcome {
        Outcome::PassThrough => host.count(Series::request(labels, OutcomeLabel::Unmatched)),
        Outcome::Reject(problem) => host.count(Series::request(labels, OutcomeLabel::Rejected(problem.kind))),
        Outcome::Forward(forward) => {
            if !forward.marks_body() {
                host.count(Series::request(labels, OutcomeLabel::Forwarded));
            }
            if let Some(major) = forward.deprecated_line {
                host.count(Series::deprecated(labels, major));
            }
            if forward.assigns_sticky() {
                host.count(Series::sticky(labels));
            }
        }
    }
}

#[cfg(test)]
mod body_tests;
#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod tests;
