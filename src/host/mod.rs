//! The host adapter: the only code that calls proxy-wasm. It implements
//! [`crate::filter::Host`] over Envoy's ABI and decides nothing itself.

mod abi;
mod body;
mod counters;
mod http;
mod plugin;
mod root;

use proxy_wasm::traits::RootContext;
use proxy_wasm::types::LogLevel;

/// The callbacks this adapter implements (with the allocator the host writes through). The
/// SDK exports a do-nothing default for every other one, and Envoy enters the VM for each
/// callback the module exports; the build step `tools/trim-exports` reads this list and
/// removes the other `proxy_on_*` exports. Implementing a new callback means naming it here.
#[link_section = "meshver.callbacks"]
#[used]
static CALLBACKS: [u8; 122] = *b"proxy_on_memory_allocate proxy_on_configure proxy_on_tick \
    proxy_on_context_create proxy_on_request_headers proxy_on_delete";

/// The body filter's callbacks: the header filter's, and the body and response ones. The
/// build writes a second module exporting these (`meshver_body.wasm`), loaded under the root
/// id [`crate::filter::body::BODY_ROOT_ID`].
#[link_section = "meshver.body_callbacks"]
#[used]
static BODY_CALLBACKS: [u8; 219] = *b"proxy_on_memory_allocate proxy_on_configure proxy_on_tick \
    proxy_on_context_create proxy_on_request_headers proxy_on_request_body proxy_on_request_trailers \
    proxy_on_response_headers proxy_on_response_body proxy_on_delete";

proxy_wasm::main! {{
    // Also installs the SDK's panic hook, which logs a panic at critical level.
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(root::MeshverRoot::default()) });
}}
