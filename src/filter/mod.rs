//! The request path as plain Rust: what the filter does with one request, run against a
//! [`Host`]. The proxy-wasm adapter (`host/`, wasm only) is the one real host and decides
//! nothing; the tests drive the same function through an in-memory host.
//!
//! One pass over the request headers: read them as bytes, [`decide`], count, remove what
//! clients may not send, then set the route and rewrite, or answer (problem+json, or a gRPC
//! status for a gRPC call).

use crate::config::Catalog;
use crate::header_map;
use crate::metrics::{OutcomeLabel, Series};
use crate::problem::Answer;
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
    let plan = decide(catalog, &request, host.now());
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
