//! Per-request context: hands the request to [`filter::on_request_headers`] through the ABI.
//! Nothing happens on the way back: the deprecation and sunset of the deployment that served
//! are announced by the mesh's route config (`meshver render`), so a response never enters
//! the VM.
//!
//! Host calls go through `hostcalls` or the raw ABI where the SDK's helpers would unwrap: a
//! refused call is logged, never a panic that traps the VM.

use super::plugin::Plugin;
use crate::filter::{self, Host, Verdict};
use crate::header_map;
use crate::problem::Answer;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};
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
        let mut host = WasmHost { context_id: self.context_id, plugin };
        match filter::on_request_headers(&mut host, &plugin.catalog) {
            Verdict::Continue => Action::Continue,
            Verdict::Answered => Action::Pause,
        }
    }
}

/// [`Host`] over the proxy-wasm ABI, for one request.
struct WasmHost<'p> {
    context_id: u32,
    plugin: &'p Plugin,
}

impl Host for WasmHost<'_> {
    fn request_header_map(&mut self) -> Option<Vec<u8>> {
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size: usize = 0;
        // SAFETY: on success the host has written a buffer of `size` bytes that it allocated
        // through the SDK's exported `proxy_on_memory_allocate` (a leaked `Vec<u8>` of capacity
        // `size`), which we now own, exactly as the SDK's own `get_map_bytes` does.
        unsafe {
            let status = proxy_get_header_map_pairs(MapType::HttpRequestHeaders as u32, &mut data, &mut size);
            if status != 0 {
                return None;
            }
            if data.is_null() {
                return Some(Vec::new());
            }
            Some(Vec::from_raw_parts(data, size, size))
        }
    }

    fn set_request_header(&mut self, name: &str, value: Option<&[u8]>) {
        if let Err(status) = hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, name, value) {
            log::warn!("meshver[{}]: could not set request header {name}: {status:?}", self.context_id);
        }
    }

    fn send_answer(&mut self, answer: &Answer) {
        let headers: Vec<(&[u8], &[u8])> = answer.headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())).collect();
        let headers = header_map::serialise(&headers);
        // An HTTP answer has no gRPC status: the ABI says so with -1.
        let grpc_status = answer.grpc_status.and_then(|code| i32::try_from(code).ok()).unwrap_or(-1);
        // SAFETY: every pointer is to a live buffer of the length passed with it; the host
        // copies them before returning.
        let status = unsafe {
            proxy_send_local_response(
                answer.status,
                std::ptr::null(),
                0,
                answer.body.as_ptr(),
                answer.body.len(),
                headers.as_ptr(),
                headers.len(),
                grpc_status,
            )
        };
        if status != 0 {
            log::warn!("meshver[{}]: could not send the {} answer: status {status}", self.context_id, answer.status);
        }
    }

    fn now(&self) -> i64 {
        self.plugin.now.get()
    }

    fn count(&mut self, slot: usize) {
        self.plugin.counters.count(slot);
    }

    fn debug(&self, message: std::fmt::Arguments<'_>) {
        log::debug!("meshver[{}]: {message}", self.context_id);
    }
}

// The ABI calls behind the SDK's `get_map_bytes` (whose reader allocates per header and
// unwraps names as UTF-8) and `send_http_response`/`send_grpc_response` (one call for both,
// so the core alone chooses between them). Plain integers: the host's status need not be a
// known variant.
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(map_type: u32, return_map_data: *mut *mut u8, return_map_size: *mut usize) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
}
