//! The root context: loads the catalog on configure and hands it to each request.

use super::http::MeshverHttp;
use crate::config::{self, Catalog};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::rc::Rc;

#[derive(Default)]
pub struct MeshverRoot {
    catalog: Option<Rc<Catalog>>,
}

impl Context for MeshverRoot {}

impl RootContext for MeshverRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        match config::load(&raw) {
            Ok(catalog) => {
                log::info!("meshver: loaded {} service(s)", catalog.services.len());
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
        Some(Box::new(MeshverHttp { context_id, catalog: self.catalog.clone(), served_by: None }))
    }
}
