//! Per-request context: read the headers as bytes, decide, apply the plan; on the way
//! back, announce the serving deployment's deprecation and sunset.

use crate::config::Catalog;
use crate::metrics;
use crate::request::Request;
use crate::resolve::{decide, lifecycle_headers, Outcome, ServedBy};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

pub struct MeshverHttp {
    pub context_id: u32,
    pub catalog: Option<Rc<Catalog>>,
    pub counters: Rc<Vec<u32>>,
    /// Set when the request was forwarded, for the response's lifecycle headers.
    pub served_by: Option<ServedBy>,
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
        // The proxy's clock decides sunsets.
        let now = self.get_current_time().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let plan = decide(&catalog, &request, now);
        if let Some(id) = self.counters.get(metrics::slot(&catalog, &plan)) {
            let _ = proxy_wasm::hostcalls::increment_metric(*id, 1);
        }
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
                self.served_by = Some(forward.served_by);
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

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let (Some(catalog), Some(served)) = (self.catalog.clone(), self.served_by.take()) else {
            return Action::Continue;
        };
        let cluster =
            || self.get_property(vec!["xds", "cluster_name"]).or_else(|| self.get_property(vec!["cluster_name"]));
        for (name, value) in lifecycle_headers(&catalog, served, cluster) {
            self.set_http_response_header(name, Some(value));
        }
        Action::Continue
    }
}
