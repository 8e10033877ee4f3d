//! The part of Envoy's dynamic-modules C ABI ("v0.2.0", Envoy 1.40) that meshver uses, declared
//! by hand: the ABI's Rust SDK is not published for this version. Each declaration follows the
//! ABI's header and is proven against the real binary by the end-to-end tests, which run every
//! call below through Envoy 1.40.0; `tests/test_native.py` checks that each symbol the library
//! imports is one the pinned binary exports.
//!
//! Ownership: every buffer the module passes is the module's and only read during the call;
//! every buffer Envoy hands back is Envoy's, valid until the hook returns (or a header is set),
//! and is copied before that. Nothing allocated on one side is freed on the other.

use std::ffi::c_void;
use std::os::raw::c_char;

/// The ABI version this module is built against, as `on_program_init` returns it.
pub const ABI_VERSION: &[u8] = b"v0.2.0\0";

/// Envoy's `DynamicModuleHttpFilterConfig` (owned by Envoy).
pub type ConfigEnvoyPtr = *mut c_void;
/// Envoy's `DynamicModuleHttpFilter`, one per stream (owned by Envoy).
pub type FilterEnvoyPtr = *mut c_void;
/// A scheduler that runs `on_http_filter_config_scheduled` on Envoy's main thread (made by Envoy,
/// deleted by the module).
pub type ConfigSchedulerPtr = *mut c_void;

/// A buffer of the module's: `envoy_dynamic_module_type_module_buffer`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleBuffer {
    pub ptr: *const c_char,
    pub length: usize,
}

impl ModuleBuffer {
    pub fn of(bytes: &[u8]) -> ModuleBuffer {
        ModuleBuffer { ptr: bytes.as_ptr().cast(), length: bytes.len() }
    }

    /// The null buffer: for `set_header`, "remove the header".
    pub const NULL: ModuleBuffer = ModuleBuffer { ptr: std::ptr::null(), length: 0 };
}

/// A buffer of Envoy's: `envoy_dynamic_module_type_envoy_buffer`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    pub ptr: *const c_char,
    pub length: usize,
}

impl EnvoyBuffer {
    pub const NULL: EnvoyBuffer = EnvoyBuffer { ptr: std::ptr::null(), length: 0 };

    /// The bytes it points at.
    ///
    /// SAFETY: Envoy's buffer must be live for `'a` (the hook that received it).
    pub unsafe fn bytes<'a>(self) -> &'a [u8] {
        if self.ptr.is_null() || self.length == 0 {
            &[]
        } else {
            std::slice::from_raw_parts(self.ptr.cast(), self.length)
        }
    }
}

/// A header Envoy holds: `envoy_dynamic_module_type_envoy_http_header`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyHeader {
    pub key: EnvoyBuffer,
    pub value: EnvoyBuffer,
}

/// A header the module passes: `envoy_dynamic_module_type_module_http_header`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleHeader {
    pub key: ModuleBuffer,
    pub value: ModuleBuffer,
}

/// `envoy_dynamic_module_type_http_header_type_RequestHeader`.
pub const REQUEST_HEADERS: i32 = 0;
/// `envoy_dynamic_module_type_http_header_type_ResponseHeader`.
pub const RESPONSE_HEADERS: i32 = 2;

/// `envoy_dynamic_module_type_http_body_type`: the chunk of this body hook, and what Envoy
/// buffered before it (a hook that returned `STOP_AND_BUFFER`), of each direction.
pub const RECEIVED_REQUEST_BODY: i32 = 0;
pub const BUFFERED_REQUEST_BODY: i32 = 1;
pub const RECEIVED_RESPONSE_BODY: i32 = 2;
pub const BUFFERED_RESPONSE_BODY: i32 = 3;

/// `envoy_dynamic_module_type_log_level`.
#[derive(Clone, Copy)]
#[repr(i32)]
pub enum LogLevel {
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

/// `envoy_dynamic_module_type_metrics_result_Success`.
pub const METRICS_SUCCESS: i32 = 0;

/// `envoy_dynamic_module_type_attribute_id_ConnectionUriSanPeerCertificate`: the first URI SAN
/// of the downstream peer's certificate (`connection.uri_san_peer_certificate`).
pub const ATTRIBUTE_PEER_URI_SAN: i32 = 37;

/// `envoy_dynamic_module_type_on_http_filter_*_status_Continue` (every phase's is 0).
pub const CONTINUE: i32 = 0;
/// `envoy_dynamic_module_type_on_http_filter_request_headers_status_StopIteration`.
pub const STOP_ITERATION: i32 = 1;
/// `envoy_dynamic_module_type_on_http_filter_{request,response}_body_status_StopIterationAndBuffer`.
pub const STOP_AND_BUFFER: i32 = 1;
/// `envoy_dynamic_module_type_on_http_filter_{request,response}_body_status_StopIterationNoBuffer`.
pub const STOP_NO_BUFFER: i32 = 3;

extern "C" {
    pub fn envoy_dynamic_module_callback_log(level: LogLevel, message: ModuleBuffer);
    pub fn envoy_dynamic_module_callback_log_enabled(level: LogLevel) -> bool;
    pub fn envoy_dynamic_module_callback_is_validation_mode() -> bool;

    pub fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: ConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *const ModuleBuffer,
        label_names_length: usize,
        counter_id: *mut usize,
    ) -> i32;
    pub fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        config: ConfigEnvoyPtr,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> i32;

    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(config: ConfigEnvoyPtr)
        -> ConfigSchedulerPtr;
    /// Any thread: posts `on_http_filter_config_scheduled(…, event_id)` to the main thread.
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler: ConfigSchedulerPtr,
        event_id: u64,
    );
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(scheduler: ConfigSchedulerPtr);

    pub fn envoy_dynamic_module_callback_http_get_headers_size(filter: FilterEnvoyPtr, header_type: i32) -> usize;
    pub fn envoy_dynamic_module_callback_http_get_headers(
        filter: FilterEnvoyPtr,
        header_type: i32,
        result_headers: *mut EnvoyHeader,
    ) -> bool;
    /// Replaces every value of the header; a null (or empty) value removes it.
    pub fn envoy_dynamic_module_callback_http_set_header(
        filter: FilterEnvoyPtr,
        header_type: i32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_clear_route_cache(filter: FilterEnvoyPtr);

    pub fn envoy_dynamic_module_callback_http_get_body_size(filter: FilterEnvoyPtr, body_type: i32) -> usize;
    pub fn envoy_dynamic_module_callback_http_get_body_chunks_size(filter: FilterEnvoyPtr, body_type: i32) -> usize;
    pub fn envoy_dynamic_module_callback_http_get_body_chunks(
        filter: FilterEnvoyPtr,
        body_type: i32,
        result: *mut EnvoyBuffer,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_append_body(
        filter: FilterEnvoyPtr,
        body_type: i32,
        data: ModuleBuffer,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_drain_body(filter: FilterEnvoyPtr, body_type: i32, bytes: usize) -> bool;
    /// Whether this body hook's chunk is Envoy's buffer itself (then the two are one body).
    pub fn envoy_dynamic_module_callback_http_received_buffered_request_body(filter: FilterEnvoyPtr) -> bool;
    pub fn envoy_dynamic_module_callback_http_received_buffered_response_body(filter: FilterEnvoyPtr) -> bool;

    pub fn envoy_dynamic_module_callback_http_send_response(
        filter: FilterEnvoyPtr,
        status_code: u32,
        headers: *const ModuleHeader,
        headers_length: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );

    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter: FilterEnvoyPtr,
        attribute_id: i32,
        result: *mut EnvoyBuffer,
    ) -> bool;
}
