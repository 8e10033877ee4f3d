//! The root context: loads the catalog on configure and hands it to each request.

use super::http::MeshverHttp;
use crate::config::{self, Catalog};
use crate::metrics::counter_names;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, MetricType};
use std::rc::Rc;

#[derive(Default)]
pub struct MeshverRoot {
    catalog: Option<Rc<Catalog>>,
    /// Host ids of the counters, in `metrics::counter_names` order (defined once per config).
    counters: Rc<Vec<u32>>,
}

impl Context for MeshverRoot {}

impl RootContext for MeshverRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        match config::load(&raw) {
            Ok(catalog) => {
                log::info!("meshver: loaded {} service(s)", catalog.services.len());
                // A counter the host refuses gets an id no counter has, so counting it is a no-op.
                let ids = counter_names(&catalog)
                    .iter()
                    .map(|name| hostcalls::define_metric(MetricType::Counter, name).unwrap_or(u32::MAX))
                    .collect();
                self.counters = Rc::new(ids);
                self.catalog = Some(Rc::new(catalog));
                true
            }
            Err(errors) => {
                // Returning false makes Envoy (and Istio) refuse the configuration.
                for error in &errors.0 {
                    log::error!("meshver: failed to load plugin config: {error}");
                }
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(MeshverHttp {
            context_id,
            catalog: self.catalog.clone(),
            counters: Rc::clone(&self.counters),
            served_by: None,
        }))
    }
}
