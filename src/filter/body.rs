//! The body half of the request path, run by the second plugin instance (the body filter)
//! only on requests the header filter marked with [`BODY_HEADER`]: the mesh config puts the
//! body filter inside Envoy's `composite` filter, which creates it only for a marked request,
//! so every other request never enters its VM and the header-only path pays nothing for bodies.
//!
//! A marked request's JSON body is buffered (up to the service's limit), checked against its
//! version's contract and upgraded along the change chain; the response's JSON body is
//! buffered and walked back. Anything else passes through byte for byte: a body that is not
//! `application/json` or `+json`, and a compressed one (`content-encoding` other than
//! `identity`). So that responses come back uncompressed where a downgrade applies, the
//! request's `accept-encoding` is removed.

use super::{BodyHost, Host};
use crate::config::{Catalog, Service};
use crate::data::{BodyError, BodyPlan, PlanId, Violation};
use crate::header_map;
use crate::metrics::{OutcomeLabel, RequestLabels, Series};
use crate::problem::{Problem, ProblemKind};
use crate::request::Request;

pub use crate::data::{BODY_HEADER, BODY_ROOT_ID};

/// What the proxy does next with the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Continue,
    /// Hold this chunk with the rest of the body.
    Buffer,
    /// The filter answered; the stream stops here.
    Answered,
}

/// One marked request's body work, between callbacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyExchange {
    service: usize,
    plan: PlanId,
    /// The version the client asked for, for messages.
    version: String,
    /// What the header filter labelled the request with.
    labels: RequestLabels,
    /// The request body is being buffered to be checked and upgraded.
    request_pending: bool,
    /// The response body is being buffered to be walked back.
    response_pending: bool,
}

impl BodyExchange {
    /// Reads the header filter's mark; `None` (and the request goes on) when there is none
    /// or nothing applies to this request's bodies.
    pub fn start(host: &mut impl BodyHost, catalog: &Catalog, end_of_stream: bool) -> (Option<BodyExchange>, Step) {
        let Some(buffer) = host.request_header_map() else {
            return (None, Step::Continue);
        };
        let Some(headers) = header_map::parse(&buffer) else {
            return (None, Step::Continue);
        };
        let request = Request::new(&headers);
        let Some(mark) = request.first(BODY_HEADER) else {
            return (None, Step::Continue);
        };
        let mark = String::from_utf8_lossy(mark).into_owned();
        host.set_request_header(BODY_HEADER, None);
        let mut parts = mark.split(' ');
        let (Some(name), Some(plan), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
            return (None, Step::Continue);
        };
        let labels = parts.next();
        let Some((index, service)) = catalog.services.iter().enumerate().find(|(_, s)| s.name == name) else {
            return (None, Step::Continue);
        };
        let Some(plan) = PlanId::decode(plan) else {
            return (None, Step::Continue);
        };
        let mut exchange = BodyExchange {
            service: index,
            plan,
            version: version.to_owned(),
            labels: RequestLabels::from_mark(catalog, index, labels),
            request_pending: false,
            response_pending: false,
        };
        let Some(plan) = exchange.plan(service) else {
            host.count(exchange.series(OutcomeLabel::Forwarded));
            return (None, Step::Continue);
        };
        if plan.has_response_steps() && request.first("accept-encoding").is_some() {
            // An encoded response could not be walked back.
            host.set_request_header("accept-encoding", None);
        }
        let json = is_plain_json(request.first("content-type"), request.first("content-encoding"));
        let step = if !plan.checks_request() || !json {
            host.count(exchange.series(OutcomeLabel::Forwarded));
            Step::Continue
        } else if end_of_stream {
            // A request with no body at all: its (empty) body is checked as it stands.
            exchange.replace_request_body(host, service, &[])
        } else {
            // The body will change size: the upstream gets it chunked (the headers go on now;
            // Envoy's wasm host cannot hold them and still hand the filter the body).
            exchange.request_pending = true;
            if request.first("content-length").is_some() {
                host.set_request_header("content-length", None);
            }
            Step::Continue
        };
        (Some(exchange), step)
    }

    /// Answers the request itself with a problem of the service, counted under its kind.
    fn answer(
        &self,
        host: &mut impl Host,
        service: &Service,
        kind: ProblemKind,
        detail: String,
        errors: Option<serde_json::Value>,
    ) {
        let mut problem = Problem::for_service(service, kind, detail, Some(self.version.clone()));
        problem.extensions.extend(errors.map(|errors| ("errors", errors)));
        host.count(self.series(OutcomeLabel::Rejected(kind)));
        host.send_answer(&problem.answer(false));
    }

    /// The request's count under the body filter's outcome.
    fn series(&self, outcome: OutcomeLabel) -> Series {
        Series::request(self.labels, outcome)
    }

    fn service<'c>(&self, catalog: &'c Catalog) -> Option<&'c Service> {
        catalog.services.get(self.service)
    }

    fn plan<'c>(&self, service: &'c Service) -> Option<BodyPlan<'c>> {
        service.data.as_ref()?.plan(self.plan)
    }

    /// A chunk of the request body (`size`: all that is buffered so far).
    pub fn on_request_body(&mut self, host: &mut impl BodyHost, catalog: &Catalog, size: usize, end: bool) -> Step {
        if !self.request_pending {
            return Step::Continue;
        }
        let Some(service) = self.service(catalog) else {
            return Step::Continue;
        };
        let Some(plan) = self.plan(service) else {
            return Step::Continue;
        };
        if size > plan.max_body_bytes() {
            self.request_pending = false;
            let detail = format!(
                "The request body is over {} bytes, the most {} buffers to check and change it.",
                plan.max_body_bytes(),
                service.name
            );
            self.answer(host, service, ProblemKind::BodyTooLarge, detail, None);
            return Step::Answered;
        }
        if !end {
            return Step::Buffer;
        }
        self.request_pending = false;
        let body = host.request_body(size).unwrap_or_default();
        self.replace_request_body(host, service, &body)
    }

    /// Trailers end a request whose body is buffered (HTTP/2 or chunked HTTP/1.1 with
    /// trailers): the body is whole now.
    pub fn on_request_trailers(&mut self, host: &mut impl BodyHost, catalog: &Catalog) -> Step {
        if !self.request_pending {
            return Step::Continue;
        }
        self.request_pending = false;
        let Some(service) = self.service(catalog) else {
            return Step::Continue;
        };
        let body = host.request_body(usize::MAX).unwrap_or_default();
        self.replace_request_body(host, service, &body)
    }

    fn replace_request_body(&self, host: &mut impl BodyHost, service: &Service, body: &[u8]) -> Step {
        let step = match self.finish_request(host, service, body) {
            Some(Some(new_body)) => {
                host.set_request_body(body.len(), &new_body);
                Step::Continue
            }
            Some(None) => Step::Continue,
            None => return Step::Answered,
        };
        host.count(self.series(OutcomeLabel::Forwarded));
        step
    }

    /// Checks and upgrades a whole request body: `Some(Some(new body))`, `Some(None)` when it
    /// goes on unchanged, `None` when the filter answered.
    fn finish_request(&self, host: &mut impl Host, service: &Service, body: &[u8]) -> Option<Option<Vec<u8>>> {
        let plan = self.plan(service)?;
        match plan.request(body) {
            Ok(rewrite) => Some(rewrite),
            Err(BodyError::Malformed(why)) => {
                let detail = format!("The request body is not valid JSON: {}.", why.trim_end_matches('.'));
                self.answer(host, service, ProblemKind::MalformedBody, detail, None);
                None
            }
            Err(BodyError::Contract(violations)) => {
                let detail = format!(
                    "The request body breaks the contract of {} version {}: {} field(s) fail.",
                    service.name,
                    self.version,
                    Violation::count(&violations)
                );
                let errors: Vec<serde_json::Value> =
                    violations.iter().map(|v| serde_json::json!({"pointer": v.pointer, "detail": v.message})).collect();
                let kind = ProblemKind::ContractViolation;
                self.answer(host, service, kind, detail, Some(errors.into()));
                None
            }
        }
    }

    /// The response's headers: a JSON, uncompressed response to walk back is held.
    pub fn on_response_headers(&mut self, host: &mut impl BodyHost, catalog: &Catalog, end: bool) -> Step {
        let Some(service) = self.service(catalog) else {
            return Step::Continue;
        };
        if end || !self.plan(service).is_some_and(|p| p.has_response_steps()) {
            return Step::Continue;
        }
        let Some(buffer) = host.response_header_map() else {
            return Step::Continue;
        };
        let Some(headers) = header_map::parse(&buffer) else {
            return Step::Continue;
        };
        let response = Request::new(&headers);
        if !is_plain_json(response.first("content-type"), response.first("content-encoding")) {
            return Step::Continue;
        }
        self.response_pending = true;
        // As for requests: the headers go on now, without a length the new body would break.
        host.set_response_header("content-length", None);
        Step::Continue
    }

    /// A chunk of the response body.
    pub fn on_response_body(&mut self, host: &mut impl BodyHost, catalog: &Catalog, size: usize, end: bool) -> Step {
        if !self.response_pending {
            return Step::Continue;
        }
        let Some(plan) = self.service(catalog).and_then(|s| self.plan(s)) else {
            return Step::Continue;
        };
        if size > plan.max_body_bytes() {
            // Too large to walk back, and the headers are out: the bytes go on as they are (never
            // half changed), counted and logged.
            self.response_pending = false;
            host.count(Series::response_too_large(self.labels));
            host.debug(format_args!("response over {} bytes passed on unchanged", plan.max_body_bytes()));
            return Step::Continue;
        }
        if !end {
            return Step::Buffer;
        }
        self.response_pending = false;
        let body = host.response_body(size).unwrap_or_default();
        // Unchanged, or not JSON after all: the upstream's bytes go on as they are.
        if let Ok(Some(new_body)) = plan.response(&body) {
            host.set_response_body(size, &new_body);
        }
        Step::Continue
    }
}

/// Whether a body is JSON (`application/json` or any `+json` type) and not compressed.
fn is_plain_json(content_type: Option<&[u8]>, content_encoding: Option<&[u8]>) -> bool {
    let encoded = content_encoding.is_some_and(|e| !e.trim_ascii().eq_ignore_ascii_case(b"identity"));
    let Some(content_type) = content_type else {
        return false;
    };
    let media_type = content_type.split(|b| *b == b';').next().unwrap_or_default().trim_ascii();
    let json = media_type.eq_ignore_ascii_case(b"application/json")
        || (media_type.len() > 5
            && media_type.get(media_type.len() - 5..).is_some_and(|tail| tail.eq_ignore_ascii_case(b"+json")));
    json && !encoded
}
