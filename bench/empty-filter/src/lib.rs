//! Benchmark arm C0: an HTTP context on every request that returns `Continue` at once.
//! Envoy still creates the context and calls into V8 for each callback, so arm C0 minus
//! arm A is the price of having a wasm filter at all, before meshver does any work.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

/// The callbacks meshver's module keeps (src/host/mod.rs, less its counters' tick), so that
/// `make bench` trims both modules alike and both arms cross into the VM equally often.
#[link_section = "meshver.callbacks"]
#[used]
static CALLBACKS: [u8; 108] = *b"proxy_on_memory_allocate proxy_on_configure \
    proxy_on_context_create proxy_on_request_headers proxy_on_delete";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(EmptyRoot) });
}}

struct EmptyRoot;

impl Context for EmptyRoot {}

impl RootContext for EmptyRoot {
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(EmptyHttp))
    }
}

struct EmptyHttp;

impl Context for EmptyHttp {}

impl HttpContext for EmptyHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }
}
