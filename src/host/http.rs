//! Per-request context: read the headers as bytes, decide, apply the plan.

use crate::config::Catalog;
use crate::request::Request;
use crate::resolve::{decide, Outcome};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

pub struct MeshverHttp {
    pub context_id: u32,
    pub catalog: Option<Rc<Catalog>>,
}

impl Context for MeshverHttp {}

impl HttpContext for MeshverHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(catalog) = self.catalog.clone() else {
            return Action::Continue;
        };
        // Bytes, never the String helpers: those panic on a non-UTF-8 value and trap the VM.
        let headers = self.get_http_request_headers_bytes();
        let request = Request::new(&headers);
        let plan = decide(&catalog, &request);
        for name in &plan.remove_headers {
            self.set_http_request_header(name, None);
        }
        match plan.outcome {
            Outcome::PassThrough => Action::Continue,
            Outcome::Forward(forward) => {
                for (name, value) in &forward.set_headers {
                    self.set_http_request_header_bytes(name, Some(value));
                }
                if let Some(path) = &forward.path {
                    self.set_http_request_header_bytes(":path", Some(path));
                }
                log::debug!("meshver[{}]: {} -> route {}", self.context_id, forward.service, forward.route);
                Action::Continue
            }
            Outcome::Reject(problem) => {
                log::debug!(
                    "meshver[{}]: {} answered {}: {}",
                    self.context_id,
                    problem.service,
                    problem.status(),
                    problem.detail
                );
                let headers = problem.headers();
                let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                self.send_http_response(u32::from(problem.status()), headers, Some(&problem.body()));
                Action::Pause
            }
        }
    }
}
