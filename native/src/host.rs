//! [`Host`] over the dynamic-modules ABI, for one request: what the wasm host does through
//! proxy-wasm, here in plain C calls on Envoy's own header map.

use crate::abi::{self, EnvoyBuffer, EnvoyHeader, FilterEnvoyPtr, LogLevel, ModuleBuffer, ModuleHeader};
use crate::config::NativeConfig;
use crate::log;
use meshver::filter::{BodyHost, Host};
use meshver::header_map;
use meshver::metrics::Series;
use meshver::problem::Answer;
use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

thread_local! {
    /// Whether the request hook running on this worker has answered its request: one that
    /// panics after answering must not answer again.
    static ANSWERED: Cell<bool> = const { Cell::new(false) };
}

/// Marks the start of a request hook (see [`answered`]).
pub fn hook_starts() {
    ANSWERED.with(|answered| answered.set(false));
}

/// Whether the request hook running has sent its answer.
pub fn answered() -> bool {
    ANSWERED.with(Cell::get)
}

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

impl<'c> NativeHost<'c> {
    pub fn new(filter: FilterEnvoyPtr, config: &'c NativeConfig) -> Self {
        NativeHost { filter, config, headers_changed: false }
    }
}

/// What makes the test-only `panic-probe` build panic: a request header of this name, or these
/// bytes in a body the body filter reads.
#[cfg(feature = "panic-probe")]
const PANIC_PROBE: &[u8] = b"x-meshver-test-panic";

/// One direction's body as Envoy holds it during a hook: what it buffered before (the hooks
/// that answered `STOP_AND_BUFFER`), and the chunk of this hook.
#[derive(Clone, Copy)]
struct Body {
    received: i32,
    buffered: i32,
    /// Whether this hook's chunk is Envoy's buffer itself (then the two are one body).
    is_one: unsafe extern "C" fn(FilterEnvoyPtr) -> bool,
}

const REQUEST_BODY: Body = Body {
    received: abi::RECEIVED_REQUEST_BODY,
    buffered: abi::BUFFERED_REQUEST_BODY,
    is_one: abi::envoy_dynamic_module_callback_http_received_buffered_request_body,
};
const RESPONSE_BODY: Body = Body {
    received: abi::RECEIVED_RESPONSE_BODY,
    buffered: abi::BUFFERED_RESPONSE_BODY,
    is_one: abi::envoy_dynamic_module_callback_http_received_buffered_response_body,
};

impl Body {
    /// The parts that make the body, in order: the buffer, then this hook's chunk.
    fn parts(self, filter: FilterEnvoyPtr) -> [Option<i32>; 2] {
        // SAFETY: `filter` is the live stream.
        let one = unsafe { (self.is_one)(filter) };
        [(!one).then_some(self.buffered), Some(self.received)]
    }

    /// Its size in bytes.
    fn size(self, filter: FilterEnvoyPtr) -> usize {
        // SAFETY: `filter` is the live stream; the call only returns a size.
        let part = |body_type| unsafe { abi::envoy_dynamic_module_callback_http_get_body_size(filter, body_type) };
        self.parts(filter).into_iter().flatten().map(part).sum()
    }

    /// Its first `size` bytes, copied out of Envoy's chunks.
    fn read(self, filter: FilterEnvoyPtr, size: usize) -> Vec<u8> {
        let mut body = Vec::new();
        for body_type in self.parts(filter).into_iter().flatten() {
            // SAFETY: Envoy fills exactly the count it just gave; the chunks stay Envoy's until
            // the body changes, and are copied before.
            unsafe {
                let count = abi::envoy_dynamic_module_callback_http_get_body_chunks_size(filter, body_type);
                let mut chunks = vec![EnvoyBuffer::NULL; count];
                if count == 0
                    || !abi::envoy_dynamic_module_callback_http_get_body_chunks(filter, body_type, chunks.as_mut_ptr())
                {
                    continue;
                }
                for chunk in chunks {
                    body.extend_from_slice(chunk.bytes());
                }
            }
        }
        body.truncate(size);
        #[cfg(feature = "panic-probe")]
        #[allow(clippy::panic)] // the probe's whole point
        if body.windows(PANIC_PROBE.len()).any(|window| window == PANIC_PROBE) {
            panic!("x-meshver-test-panic in a body: a panic inside the module, on purpose");
        }
        body
    }

    /// Replaces it whole: both parts drained, the new body in this hook's chunk (or, in a hook
    /// without one, the buffer).
    fn replace(self, filter: FilterEnvoyPtr, new_body: &[u8]) -> bool {
        // SAFETY: `filter` is the live stream; `new_body` is live for the call (Envoy copies it).
        unsafe {
            for body_type in self.parts(filter).into_iter().flatten() {
                abi::envoy_dynamic_module_callback_http_drain_body(filter, body_type, usize::MAX);
            }
            let data = ModuleBuffer::of(new_body);
            abi::envoy_dynamic_module_callback_http_append_body(filter, self.received, data)
                || abi::envoy_dynamic_module_callback_http_append_body(filter, self.buffered, data)
        }
    }
}

/// A header map of the stream, serialised as the core reads it.
fn header_map(filter: FilterEnvoyPtr, header_type: i32) -> Option<Vec<u8>> {
    // SAFETY: `filter` is the live stream of the hook that made this host; Envoy fills exactly
    // `size` entries (the count it just gave) and the bytes they point at stay Envoy's until a
    // header is set, which is after they are copied into the map below.
    unsafe {
        let size = abi::envoy_dynamic_module_callback_http_get_headers_size(filter, header_type);
        let mut headers = vec![EnvoyHeader { key: EnvoyBuffer::NULL, value: EnvoyBuffer::NULL }; size];
        if size > 0 && !abi::envoy_dynamic_module_callback_http_get_headers(filter, header_type, headers.as_mut_ptr()) {
            return None;
        }
        let pairs: Vec<(&[u8], &[u8])> = headers.iter().map(|h| (h.key.bytes(), h.value.bytes())).collect();
        #[cfg(feature = "panic-probe")]
        #[allow(clippy::panic)] // the probe's whole point
        if pairs.iter().any(|(name, _)| *name == PANIC_PROBE) {
            panic!("x-meshver-test-panic: a panic inside the module, on purpose");
        }
        Some(header_map::serialise(&pairs))
    }
}

/// Sets (or with `None` removes) a header of the stream; whether Envoy did.
fn set_header(filter: FilterEnvoyPtr, header_type: i32, name: &str, value: Option<&[u8]>) -> bool {
    let value = value.map_or(ModuleBuffer::NULL, ModuleBuffer::of);
    // SAFETY: both buffers are live for the call; Envoy copies them.
    unsafe {
        abi::envoy_dynamic_module_callback_http_set_header(
            filter,
            header_type,
            ModuleBuffer::of(name.as_bytes()),
            value,
        )
    }
}

impl Host for NativeHost<'_> {
    fn request_header_map(&mut self) -> Option<Vec<u8>> {
        header_map(self.filter, abi::REQUEST_HEADERS)
    }

    fn set_request_header(&mut self, name: &str, value: Option<&[u8]>) {
        self.headers_changed = true;
        if !set_header(self.filter, abi::REQUEST_HEADERS, name, value) {
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

impl BodyHost for NativeHost<'_> {
    fn request_body(&mut self, size: usize) -> Option<Vec<u8>> {
        Some(REQUEST_BODY.read(self.filter, size))
    }

    fn set_request_body(&mut self, _old_size: usize, body: &[u8]) {
        if !REQUEST_BODY.replace(self.filter, body) {
            log(LogLevel::Warn, format_args!("meshver: could not replace the request body"));
        }
    }

    fn response_header_map(&mut self) -> Option<Vec<u8>> {
        header_map(self.filter, abi::RESPONSE_HEADERS)
    }

    fn set_response_header(&mut self, name: &str, value: Option<&[u8]>) {
        if !set_header(self.filter, abi::RESPONSE_HEADERS, name, value) {
            log(LogLevel::Warn, format_args!("meshver: could not set response header {name}"));
        }
    }

    fn response_body(&mut self, size: usize) -> Option<Vec<u8>> {
        Some(RESPONSE_BODY.read(self.filter, size))
    }

    fn set_response_body(&mut self, _old_size: usize, body: &[u8]) {
        if !RESPONSE_BODY.replace(self.filter, body) {
            log(LogLevel::Warn, format_args!("meshver: could not replace the response body"));
        }
    }
}

/// The size of the request body Envoy holds in this hook.
pub fn request_body_size(filter: FilterEnvoyPtr) -> usize {
    REQUEST_BODY.size(filter)
}

/// The size of the response body Envoy holds in this hook.
pub fn response_body_size(filter: FilterEnvoyPtr) -> usize {
    RESPONSE_BODY.size(filter)
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
    ANSWERED.with(|answered| answered.set(true));
}
