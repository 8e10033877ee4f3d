//! Per-request context of the header filter: hands the request to
//! [`filter::on_request_headers`]. Nothing happens on the way back: the deprecation and sunset
//! of the deployment that served are announced by the mesh's route config (`meshver render`),
//! so a response never enters the VM.

use super::abi;
use super::plugin::Plugin;
use crate::filter::{self, Host, Verdict};
use crate::header_map;
use crate::metrics::Series;
use crate::problem::Answer;
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

/// Envoy's attribute for the first URI SAN of the downstream peer's certificate, as a
/// property path (segments joined by NUL).
const PEER_URI_SAN: &str = "connection\0uri_san_peer_certificate";
/// The ABI status for a property the host does not have.
const NOT_FOUND: abi::Refused = 1;

/// [`Host`] over the proxy-wasm ABI, for one request.
pub struct WasmHost<'p> {
    pub context_id: u32,
    pub plugin: &'p Plugin,
}

impl Host for WasmHost<'_> {
    fn request_header_map(&mut self) -> Option<Vec<u8>> {
        abi::header_map(MapType::HttpRequestHeaders).ok()
    }

    fn set_request_header(&mut self, name: &str, value: Option<&[u8]>) {
        if let Err(status) = abi::set_header(MapType::HttpRequestHeaders, name, value) {
            log::warn!("meshver[{}]: could not set request header {name}: status {status}", self.context_id);
        }
    }

    fn send_answer(&mut self, answer: &Answer) {
        let headers: Vec<(&[u8], &[u8])> = answer.headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())).collect();
        // An HTTP answer has no gRPC status: the ABI says so with -1.
        let grpc_status = answer.grpc_status.and_then(|code| i32::try_from(code).ok()).unwrap_or(-1);
        let serialised = header_map::serialise(&headers);
        let sent = abi::send_local_response(answer.status, &answer.details, &serialised, &answer.body, grpc_status);
        if let Err(status) = sent {
            log::warn!("meshver[{}]: could not send the {} answer: status {status}", self.context_id, answer.status);
        }
    }

    fn now(&self) -> i64 {
        self.plugin.now.get()
    }

    fn peer_uri_san(&mut self) -> Option<Vec<u8>> {
        match abi::property(PEER_URI_SAN) {
            Ok(id) => Some(id),
            // Envoy has no such property without a peer certificate with a URI SAN (plaintext).
            Err(NOT_FOUND) => None,
            Err(status) => {
                log::warn!("meshver[{}]: could not read the peer's URI SAN: status {status}", self.context_id);
                None
            }
        }
    }

    fn count(&mut self, series: Series) {
        self.plugin.counters.count(series);
    }

    fn debug(&self, message: std::fmt::Arguments<'_>) {
        log::debug!("meshver[{}]: {message}", self.context_id);
    }
}
