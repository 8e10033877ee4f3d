//! Per-request context of the body filter (the module built with the body callbacks, loaded
//! under the root id [`crate::filter::body::BODY_ROOT_ID`]): hands each callback to
//! [`crate::filter::body::BodyExchange`].

use super::abi;
use super::http::WasmHost;
use super::plugin::Plugin;
use crate::filter::body::{BodyExchange, Step};
use crate::filter::BodyHost;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};
use std::rc::Rc;

pub struct MeshverBody {
    pub context_id: u32,
    pub plugin: Option<Rc<Plugin>>,
    /// Set once the request's headers showed body work to do.
    exchange: Option<BodyExchange>,
}

impl MeshverBody {
    pub fn new(context_id: u32, plugin: Option<Rc<Plugin>>) -> Self {
        MeshverBody { context_id, plugin, exchange: None }
    }
}

impl Context for MeshverBody {}

fn action(step: Step) -> Action {
    match step {
        Step::Continue => Action::Continue,
        Step::Buffer | Step::Answered => Action::Pause,
    }
}

impl HttpContext for MeshverBody {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(plugin) = &self.plugin else {
            return Action::Continue;
        };
        let mut host = WasmHost { context_id: self.context_id, plugin };
        let (exchange, step) = BodyExchange::start(&mut host, &plugin.catalog, end_of_stream);
        self.exchange = exchange;
        action(step)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let (Some(plugin), Some(exchange)) = (&self.plugin, &mut self.exchange) else {
            return Action::Continue;
        };
        let mut host = WasmHost { context_id: self.context_id, plugin };
        action(exchange.on_request_body(&mut host, &plugin.catalog, body_size, end_of_stream))
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        let (Some(plugin), Some(exchange)) = (&self.plugin, &mut self.exchange) else {
            return Action::Continue;
        };
        let mut host = WasmHost { context_id: self.context_id, plugin };
        action(exchange.on_request_trailers(&mut host, &plugin.catalog))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let (Some(plugin), Some(exchange)) = (&self.plugin, &mut self.exchange) else {
            return Action::Continue;
        };
        let mut host = WasmHost { context_id: self.context_id, plugin };
        action(exchange.on_response_headers(&mut host, &plugin.catalog, end_of_stream))
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let (Some(plugin), Some(exchange)) = (&self.plugin, &mut self.exchange) else {
            return Action::Continue;
        };
        let mut host = WasmHost { context_id: self.context_id, plugin };
        action(exchange.on_response_body(&mut host, &plugin.catalog, body_size, end_of_stream))
    }
}

impl WasmHost<'_> {
    fn log_refusal(&self, what: &str, result: Result<(), abi::Refused>) {
        if let Err(status) = result {
            log::warn!("meshver[{}]: could not {what}: status {status}", self.context_id);
        }
    }
}

impl BodyHost for WasmHost<'_> {
    fn request_body(&mut self, size: usize) -> Option<Vec<u8>> {
        abi::body(BufferType::HttpRequestBody, size).ok()
    }

    fn set_request_body(&mut self, old_size: usize, body: &[u8]) {
        self.log_refusal("replace the request body", abi::set_body(BufferType::HttpRequestBody, old_size, body));
    }

    fn response_header_map(&mut self) -> Option<Vec<u8>> {
        abi::header_map(MapType::HttpResponseHeaders).ok()
    }

    fn set_response_header(&mut self, name: &str, value: Option<&[u8]>) {
        self.log_refusal("set a response header", abi::set_header(MapType::HttpResponseHeaders, name, value));
    }

    fn response_body(&mut self, size: usize) -> Option<Vec<u8>> {
        abi::body(BufferType::HttpResponseBody, size).ok()
    }

    fn set_response_body(&mut self, old_size: usize, body: &[u8]) {
        self.log_refusal("replace the response body", abi::set_body(BufferType::HttpResponseBody, old_size, body));
    }
}
