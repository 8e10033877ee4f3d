//! The host adapter: the only code that calls proxy-wasm. It moves bytes between Envoy
//! and [`crate::resolve`], and decides nothing itself.

mod http;
mod root;

use proxy_wasm::traits::RootContext;
use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    // Also installs the SDK's panic hook, which logs a panic at critical level.
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(root::MeshverRoot::default()) });
}}
