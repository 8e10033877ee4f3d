//! meshver as a native Envoy dynamic module: the request path of the wasm filter
//! ([`meshver::filter::on_request_headers`]) behind the dynamic-modules ABI instead of
//! proxy-wasm, with no VM between Envoy and the decision; and, under the filter name
//! `meshver-body`, the body filter ([`meshver::filter::body::BodyExchange`]).
//!
//! Envoy loads `libmeshver.so` (`make build` writes it to `target/dynamic-modules/`) from
//! `ENVOY_DYNAMIC_MODULES_SEARCH_PATH` for a `DynamicModuleFilter` whose module is named
//! `meshver` (`meshver render envoy --host native`), and hands it the same catalog JSON the wasm
//! filter gets. A module runs inside Envoy with no sandbox: every hook below catches a panic
//! before it can reach Envoy (a request it happened in is answered 500), and nothing either side
//! allocates is freed by the other.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]
// The hooks take Envoy's pointers and hand them back to Envoy's callbacks: that is the ABI, and
// the hooks are only ever called by Envoy.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

mod abi;
mod config;
mod host;
mod stream;

use abi::{ConfigEnvoyPtr, EnvoyBuffer, FilterEnvoyPtr, LogLevel, ModuleBuffer};
use config::{Counters, EnvoyConfig, Flusher, NativeConfig, FLUSH_EVENT};
use host::NativeHost;
use meshver::filter::body::{BodyExchange, Step, BODY_ROOT_ID};
use meshver::filter::{on_request_headers, Verdict};
use meshver::problem::Answer;
use std::ffi::c_void;
use std::os::raw::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};
use stream::Stream;

/// Logs a line under Envoy's `dynamic_modules` component, formatting it only if Envoy would
/// show it.
pub(crate) fn log(level: LogLevel, message: std::fmt::Arguments<'_>) {
    // SAFETY: plain value in, plain value out.
    if !unsafe { abi::envoy_dynamic_module_callback_log_enabled(level) } {
        return;
    }
    let text = message.to_string();
    // SAFETY: `text` is live for the call; Envoy only reads it.
    unsafe { abi::envoy_dynamic_module_callback_log(level, ModuleBuffer::of(text.as_bytes())) };
}

/// Runs a hook's body; a panic in it is logged at critical level and becomes `fallback`.
fn guarded<T>(hook: &str, fallback: impl FnOnce() -> T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned());
            log(LogLevel::Critical, format_args!("meshver: panicked in {hook}: {what}"));
            // The fallback must not panic in turn: a second panic would cross into Envoy.
            catch_unwind(AssertUnwindSafe(fallback)).unwrap_or_else(|_| std::process::abort())
        }
    }
}

// Envoy may call a configuration's hooks on any worker: the catalog is read-only and shared.
const _: () = {
    const fn shared_across_workers<T: Sync + Send>() {}
    shared_across_workers::<NativeConfig>();
};

/// Called once as Envoy loads the module: the ABI version it was built against, which Envoy
/// logs as matched (or as deprecated, when the binary's differs).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    // The default hook would print a panic to Envoy's stderr as well; `guarded` logs it.
    std::panic::set_hook(Box::new(|_| {}));
    abi::ABI_VERSION.as_ptr().cast()
}

/// A filter configuration: the catalog JSON, loaded as the wasm filter loads it. A refused
/// catalog is logged with each error's JSON path and answered with null, which makes Envoy
/// refuse the configuration.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: ConfigEnvoyPtr,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    guarded("on_http_filter_config_new", std::ptr::null, || {
        // SAFETY: Envoy's config bytes are live for this hook; `load` copies what it keeps.
        let raw = unsafe { config.bytes() };
        match meshver::config::load(raw) {
            Ok(catalog) => {
                // The body filter is the filter named as the wasm body filter's root id.
                // SAFETY: Envoy's name bytes are live for this hook.
                let body_filter = unsafe { name.bytes() } == BODY_ROOT_ID.as_bytes();
                let role = if body_filter { "body filter" } else { "header filter" };
                log(
                    LogLevel::Info,
                    format_args!("meshver: loaded {} service(s) as the {role}", catalog.services.len()),
                );
                let counters = Counters::define(config_envoy);
                let flusher = Flusher::start(config_envoy);
                let envoy = EnvoyConfig(config_envoy);
                let config = NativeConfig { catalog, body_filter, counters, envoy, flusher };
                Box::into_raw(Box::new(config)).cast_const().cast()
            }
            Err(errors) => {
                for error in &errors.0 {
                    log(LogLevel::Error, format_args!("meshver: failed to load plugin config: {error}"));
                }
                std::ptr::null()
            }
        }
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: *const c_void) {
    guarded(
        "on_http_filter_config_destroy",
        || (),
        || {
            if !config.is_null() {
                // SAFETY: made by `Box::into_raw` in config_new; Envoy destroys each config once,
                // after every filter made from it, on its main thread.
                let mut config = unsafe { Box::from_raw(config.cast_mut().cast::<NativeConfig>()) };
                // The flush thread stops first; then what it had not flushed goes to Envoy.
                drop(config.flusher.take());
                config.counters.flush(config.envoy.0, &config.catalog);
            }
        },
    );
}

/// Envoy's main thread, each flush period (see `config::Flusher`): the counts go to Envoy.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    config_envoy: ConfigEnvoyPtr,
    config: *const c_void,
    event_id: u64,
) {
    guarded(
        "on_http_filter_config_scheduled",
        || (),
        || {
            // SAFETY: the live configuration this event was committed for (see config_destroy).
            let Some(config) = (unsafe { config.cast::<NativeConfig>().as_ref() }) else { return };
            if event_id == FLUSH_EVENT {
                config.counters.flush(config_envoy, &config.catalog);
            }
        },
    );
}

/// A stream's filter: the header filter's is its configuration (no allocation per request), the
/// body filter's a state of its own (see `stream`).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: *const c_void,
    _filter: FilterEnvoyPtr,
) -> *const c_void {
    guarded("on_http_filter_new", std::ptr::null, || stream::new(config))
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter: FilterEnvoyPtr,
    config: *const c_void,
    end_of_stream: bool,
) -> i32 {
    let answered = || {
        answer_unless_answered(filter);
        abi::STOP_ITERATION
    };
    host::hook_starts();
    guarded("on_http_filter_request_headers", answered, || {
        // SAFETY: the pointer `filter_new` returned, for this stream.
        let config = match unsafe { stream::of(config) } {
            Some(Stream::Header(config)) => config,
            Some(Stream::Body(config, stream)) => {
                let mut host = NativeHost::new(filter, config);
                let (exchange, step) = BodyExchange::start(&mut host, &config.catalog, end_of_stream);
                stream.exchange = exchange;
                return headers_status(step);
            }
            None => return abi::CONTINUE,
        };
        let mut host = NativeHost::new(filter, config);
        match on_request_headers(&mut host, &config.catalog) {
            Verdict::Continue => {
                if host.headers_changed {
                    // SAFETY: the live stream.
                    unsafe { abi::envoy_dynamic_module_callback_http_clear_route_cache(filter) };
                }
                abi::CONTINUE
            }
            Verdict::Answered => abi::STOP_ITERATION,
        }
    })
}

/// What a request whose handling panicked is answered: a plain 500, as a wasm filter's trap
/// leaves its request (Envoy answers those 503).
fn internal_error() -> Answer {
    Answer {
        status: 500,
        headers: vec![("content-type", "text/plain".to_owned())],
        body: b"meshver: internal error\n".to_vec(),
        grpc_status: None,
        details: "meshver_internal_error".to_owned(),
    }
}

/// A headers hook's status for a body filter's step.
fn headers_status(step: Step) -> i32 {
    match step {
        Step::Continue => abi::CONTINUE,
        Step::Buffer | Step::Answered => abi::STOP_ITERATION,
    }
}

/// A body hook's status for a body filter's step: buffer until the body is whole; once answered,
/// nothing more of it.
fn body_status(step: Step) -> i32 {
    match step {
        Step::Continue => abi::CONTINUE,
        Step::Buffer => abi::STOP_AND_BUFFER,
        Step::Answered => abi::STOP_NO_BUFFER,
    }
}

/// Runs a body filter's hook on its exchange; any other stream goes on untouched.
fn on_body_stream(
    hook: &str,
    filter: FilterEnvoyPtr,
    pointer: *const c_void,
    on_panic: fn(FilterEnvoyPtr) -> i32,
    step: impl FnOnce(&mut BodyExchange, &mut NativeHost<'_>, &meshver::config::Catalog) -> i32,
) -> i32 {
    host::hook_starts();
    guarded(
        hook,
        || on_panic(filter),
        || {
            // SAFETY: the pointer `filter_new` returned, for this stream.
            let Some(Stream::Body(config, stream)) = (unsafe { stream::of(pointer) }) else { return abi::CONTINUE };
            let Some(exchange) = &mut stream.exchange else { return abi::CONTINUE };
            let mut host = NativeHost::new(filter, config);
            step(exchange, &mut host, &config.catalog)
        },
    )
}

/// A request that panicked while its body was held: answered 500, nothing more of it.
fn request_panicked(filter: FilterEnvoyPtr) -> i32 {
    answer_unless_answered(filter);
    abi::STOP_NO_BUFFER
}

/// Answers a request whose hook panicked 500, unless the hook had answered it already (Envoy
/// takes one local reply per stream).
fn answer_unless_answered(filter: FilterEnvoyPtr) {
    if !host::answered() {
        host::send(filter, &internal_error());
    }
}

/// A response that panicked: passed on as it is (its headers may be on their way already).
fn response_panicked(_: FilterEnvoyPtr) -> i32 {
    abi::CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    filter: FilterEnvoyPtr,
    stream: *const c_void,
    end_of_stream: bool,
) -> i32 {
    on_body_stream("on_http_filter_request_body", filter, stream, request_panicked, |exchange, host, catalog| {
        let size = host::request_body_size(filter);
        body_status(exchange.on_request_body(host, catalog, size, end_of_stream))
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    filter: FilterEnvoyPtr,
    stream: *const c_void,
) -> i32 {
    on_body_stream("on_http_filter_request_trailers", filter, stream, request_panicked, |exchange, host, catalog| {
        headers_status(exchange.on_request_trailers(host, catalog))
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    filter: FilterEnvoyPtr,
    stream: *const c_void,
    end_of_stream: bool,
) -> i32 {
    on_body_stream("on_http_filter_response_headers", filter, stream, response_panicked, |exchange, host, catalog| {
        headers_status(exchange.on_response_headers(host, catalog, end_of_stream))
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    filter: FilterEnvoyPtr,
    stream: *const c_void,
    end_of_stream: bool,
) -> i32 {
    on_body_stream("on_http_filter_response_body", filter, stream, response_panicked, |exchange, host, catalog| {
        let size = host::response_body_size(filter);
        body_status(exchange.on_response_body(host, catalog, size, end_of_stream))
    })
}

// The hooks below are ones Envoy requires a module to export; neither filter needs them: each
// lets the stream go on untouched.

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(_: FilterEnvoyPtr, _: *const c_void) -> i32 {
    abi::CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_local_reply(
    _: FilterEnvoyPtr,
    _: *const c_void,
    _response_code: u32,
    _details: EnvoyBuffer,
    _reset_imminent: bool,
) -> i32 {
    abi::CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(_: FilterEnvoyPtr, _: *const c_void) {}

/// Frees a body filter's stream state (a header filter's stream has none).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(stream: *const c_void) {
    // SAFETY: the pointer `filter_new` returned; Envoy destroys each stream's filter once.
    guarded("on_http_filter_destroy", || (), || unsafe { stream::drop(stream) });
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _: FilterEnvoyPtr,
    _: *const c_void,
    _callout_id: u64,
    _result: i32,
    _headers: *const c_void,
    _headers_size: usize,
    _body_chunks: *const c_void,
    _body_chunks_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _: FilterEnvoyPtr,
    _: *const c_void,
    _stream_id: u64,
    _headers: *const c_void,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _: FilterEnvoyPtr,
    _: *const c_void,
    _stream_id: u64,
    _data: *const c_void,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _: FilterEnvoyPtr,
    _: *const c_void,
    _stream_id: u64,
    _trailers: *const c_void,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _: FilterEnvoyPtr,
    _: *const c_void,
    _stream_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _: FilterEnvoyPtr,
    _: *const c_void,
    _stream_id: u64,
    _reason: i32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(_: FilterEnvoyPtr, _: *const c_void, _event_id: u64) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _: FilterEnvoyPtr,
    _: *const c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _: FilterEnvoyPtr,
    _: *const c_void,
) {
}
