//! Per-request context: read the headers as bytes, decide, apply the plan. Nothing happens
//! on the way back: the deprecation and sunset of the deployment that served are announced
//! by the mesh's route config (`meshver render`), so a response never enters the VM.
//!
//! Host calls go through `hostcalls` where the SDK's trait helpers would unwrap: a refused
//! call is logged, never a panic that traps the VM.

use super::root::Plugin;
use crate::header_map;
use crate::metrics;
use crate::problem::{Problem, SUPPORTED_VERSIONS_HEADER};
use crate::request::Request;
use crate::resolve::{decide, Outcome};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, GrpcStatusCode, MapType};
use std::rc::Rc;

pub struct MeshverHttp {
    pub context_id: u32,
    /// The configuration in force when the request began; none if none loaded.
    pub plugin: Option<Rc<Plugin>>,
}

impl Context for MeshverHttp {}

impl HttpContext for MeshverHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(plugin) = &self.plugin else {
            return Action::Continue;
        };
        let catalog = &plugin.catalog;
        // Bytes, read in place: the SDK's helpers panic on a non-UTF-8 name or value.
        let buffer = request_header_buffer();
        let Some(headers) = header_map::parse(&buffer) else {
            log::warn!("meshver[{}]: the host sent an unreadable header map; request left alone", self.context_id);
            return Action::Continue;
        };
        let request = Request::new(&headers);
        let plan = decide(catalog, &request, plugin.now.get());
        plugin.counters.count(metrics::slot(catalog, &plan));
        for name in &plan.remove_headers {
            self.set_request_header(name, None);
        }
        match plan.outcome {
            Outcome::PassThrough => Action::Continue,
            Outcome::Forward(forward) => {
                for (name, value) in &forward.set_headers {
                    self.set_request_header(name, Some(value));
                }
                if let Some(path) = &forward.path {
                    self.set_request_header(":path", Some(path));
                }
                log::debug!("meshver[{}]: {} -> route {}", self.context_id, forward.service, forward.route);
                Action::Continue
            }
            Outcome::Reject(problem) => {
                log::debug!(
                    "meshver[{}]: {} answered {}: {}",
                    self.context_id,
                    problem.service,
                    problem.status(),
                    problem.detail
                );
                self.answer(&problem, request.is_grpc());
                Action::Pause
            }
        }
    }
}

impl MeshverHttp {
    /// Sets (or with `None` removes) a request header; a refusal is logged.
    fn set_request_header(&self, name: &str, value: Option<&[u8]>) {
        if let Err(status) = hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, name, value) {
            log::warn!("meshver[{}]: could not set request header {name}: {status:?}", self.context_id);
        }
    }

    /// Answers the request: problem+json, or for a gRPC call the matching gRPC status (its
    /// client cannot read a JSON body) with the detail as the message.
    fn answer(&self, problem: &Problem, grpc: bool) {
        let sent = if grpc {
            let supported = problem.supported_versions.join(", ");
            let type_uri = problem.type_uri();
            let metadata =
                vec![(SUPPORTED_VERSIONS_HEADER, supported.as_bytes()), (PROBLEM_TYPE_METADATA, type_uri.as_bytes())];
            hostcalls::send_grpc_response(grpc_status(problem.kind.grpc_code()), Some(&problem.detail), metadata)
        } else {
            let headers = problem.headers();
            let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            hostcalls::send_http_response(u32::from(problem.status()), headers, Some(&problem.body()))
        };
        if let Err(status) = sent {
            log::warn!("meshver[{}]: could not send the {} answer: {status:?}", self.context_id, problem.status());
        }
    }
}

#[link(wasm_import_module = "env")]
extern "C" {
    // The ABI call behind the SDK's `get_map_bytes`, whose reader allocates per header and
    // unwraps names as UTF-8. Plain integers: the host's status need not be a known variant.
    fn proxy_get_header_map_pairs(map_type: u32, return_map_data: *mut *mut u8, return_map_size: *mut usize) -> u32;
}

/// The request's header map as the host serialises it ([`header_map`] reads it); empty when
/// the host refuses.
fn request_header_buffer() -> Vec<u8> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: on success the host has written a buffer of `size` bytes that it allocated
    // through the SDK's exported `proxy_on_memory_allocate` (a leaked `Vec<u8>` of capacity
    // `size`), which we now own, exactly as the SDK's own `get_map_bytes` does.
    unsafe {
        let status = proxy_get_header_map_pairs(MapType::HttpRequestHeaders as u32, &mut data, &mut size);
        if status != 0 || data.is_null() {
            return Vec::new();
        }
        Vec::from_raw_parts(data, size, size)
    }
}

/// gRPC metadata naming the problem type, since a gRPC answer carries no problem+json body.
const PROBLEM_TYPE_METADATA: &str = "meshver-problem-type";

fn grpc_status(code: u32) -> GrpcStatusCode {
    match code {
        3 => GrpcStatusCode::InvalidArgument,
        9 => GrpcStatusCode::FailedPrecondition,
        12 => GrpcStatusCode::Unimplemented,
        14 => GrpcStatusCode::Unavailable,
        _ => GrpcStatusCode::Unknown,
    }
}
