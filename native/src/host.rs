//! [`Host`] over the dynamic-modules ABI, for one request: what the wasm host does through
//! proxy-wasm, here in plain C calls on Envoy's own header map.

use crate::abi::{self, EnvoyBuffer, EnvoyHeader, FilterEnvoyPtr, LogLevel, ModuleBuffer, ModuleHeader};
use crate::config::NativeConfig;
use crate::log;
use meshver::filter::Host;
use meshver::header_map;
use meshver::metrics::Series;
use meshver::problem::Answer;
use std::time::{SystemTime, UNIX_EPOCH};

/// The metadata that carries a gRPC answer's status. Envoy keeps a `grpc-status` the filter
/// sets on a local reply to a gRPC call (`send_response` takes no gRPC status of its own), and
/// turns the body into the percent-encoded `grpc-message`, as for the wasm host's answer.
const GRPC_STATUS: &str = "grpc-status";

pub struct NativeHost<'c> {
    pub filter: FilterEnvoyPtr,
    pub config: &'c NativeConfig,
    /// Whether a request header was set or removed: the route Envoy picked before the filter
    /// ran is then recomputed.
    pub headers_changed: bool,
}

impl Host for NativeHost<'_> {
    fn request_header_map(&mut self) -> Option<Vec<u8>> {
        // SAFETY: `filter` is the live stream of the hook that made this host; Envoy fills
        // exactly `size` entries (the count it just gave) and the bytes they point at stay
        // Envoy's until a header is set, which is after they are copied into the map below.
        unsafe {
            let size = abi::envoy_dynamic_module_callback_http_get_headers_size(self.filter, abi::REQUEST_HEADERS);
            let mut headers = vec![EnvoyHeader { key: EnvoyBuffer::NULL, value: EnvoyBuffer::NULL }; size];
            if size > 0
                && !abi::envoy_dynamic_module_callback_http_get_headers(
                    self.filter,
                    abi::REQUEST_HEADERS,
                    headers.as_mut_ptr(),
                )
            {
                return None;
            }
            let pairs: Vec<(&[u8], &[u8])> = headers.iter().map(|h| (h.key.bytes(), h.value.bytes())).collect();
            #[cfg(feature = "panic-probe")]
            if pairs.iter().any(|(name, _)| *name == b"x-meshver-test-panic") {
                panic!("x-meshver-test-panic: a panic inside the module, on purpose");
            }
            Some(header_map::serialise(&pairs))
        }
    }

    fn set_request_header(&mut self, name: &str, value: Option<&[u8]>) {
        let value = value.map_or(ModuleBuffer::NULL, ModuleBuffer::of);
        // SAFETY: both buffers are live for the call; Envoy copies them.
        let set = unsafe {
            abi::envoy_dynamic_module_callback_http_set_header(
                self.filter,
                abi::REQUEST_HEADERS,
                ModuleBuffer::of(name.as_bytes()),
                value,
            )
        };
        self.headers_changed = true;
        if !set {
            log(LogLevel::Warn, format_args!("meshver: could not set request header {name}"));
        }
    }

    fn send_answer(&mut self, answer: &Answer) {
        send(self.filter, answer);
    }

    fn now(&self) -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }

    fn peer_uri_san(&mut self) -> Option<Vec<u8>> {
        let mut san = EnvoyBuffer::NULL;
        // SAFETY: `san` is a live local; the bytes are Envoy's until the hook returns and are
        // copied at once. Envoy answers false without a peer certificate with a URI SAN.
        unsafe {
            abi::envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.filter,
                abi::ATTRIBUTE_PEER_URI_SAN,
                &mut san,
            )
            .then(|| san.bytes().to_vec())
        }
    }

    fn count(&mut self, series: Series) {
        self.config.counters.count(series);
    }

    fn debug(&self, message: std::fmt::Arguments<'_>) {
        log(LogLevel::Debug, format_args!("meshver: {message}"));
    }
}

/// Answers the request locally: problem+json, or a gRPC status with its metadata.
pub fn send(filter: FilterEnvoyPtr, answer: &Answer) {
    let grpc_status = answer.grpc_status.map(|code| code.to_string());
    let mut headers: Vec<ModuleHeader> = answer
        .headers
        .iter()
        .map(|(name, value)| ModuleHeader {
            key: ModuleBuffer::of(name.as_bytes()),
            value: ModuleBuffer::of(value.as_bytes()),
        })
        .collect();
    if let Some(code) = &grpc_status {
        headers.push(ModuleHeader {
            key: ModuleBuffer::of(GRPC_STATUS.as_bytes()),
            value: ModuleBuffer::of(code.as_bytes()),
        });
    }
    // SAFETY: every buffer is live for the call; Envoy copies what it keeps.
    unsafe {
        abi::envoy_dynamic_module_callback_http_send_response(
            filter,
            answer.status,
            headers.as_ptr(),
            headers.len(),
            ModuleBuffer::of(&answer.body),
            ModuleBuffer::of(answer.details.as_bytes()),
        );
    }
}
