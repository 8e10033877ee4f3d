//! The root context: loads the catalog on configure and hands it to each request; flushes
//! the requests' counts to the host on each tick.

use super::counters::{Counters, FLUSH_PERIOD};
use super::http::MeshverHttp;
use crate::config::{self, Catalog};
use crate::metrics::counter_names;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::rc::Rc;

#[derive(Default)]
pub struct MeshverRoot {
    catalog: Option<Rc<Catalog>>,
    /// Defined once per configuration, shared with every request.
    counters: Rc<Counters>,
}

impl Context for MeshverRoot {}

impl RootContext for MeshverRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        match config::load(&raw) {
            Ok(catalog) => {
                log::info!("meshver: loaded {} service(s)", catalog.services.len());
                self.counters.flush();
                self.counters = Rc::new(Counters::define(&counter_names(&catalog)));
                self.catalog = Some(Rc::new(catalog));
                self.set_tick_period(FLUSH_PERIOD);
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

    fn on_tick(&mut self) {
        self.counters.flush();
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(MeshverHttp {
            context_id,
            catalog: self.catalog.clone(),
            counters: Rc::clone(&self.counters),
        }))
    }
}
