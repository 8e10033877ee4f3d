//! The root context: loads the catalog on configure and hands it to each request. Each tick
//! it flushes the requests' counts to the host and reads the proxy's clock for them, so a
//! request makes no host call for either.

use super::abi;
use super::body::MeshverBody;
use super::counters::Counters;
use super::http::MeshverHttp;
use super::plugin::Plugin;
use crate::config;
use crate::filter::body::BODY_ROOT_ID;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

/// How often counts reach Envoy's stats and the clock is read: the most either can lag.
pub const TICK_PERIOD: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct MeshverRoot {
    /// None until a configuration loads.
    plugin: Option<Rc<Plugin>>,
    /// Whether this plugin runs as the body filter (its root id says so).
    body_filter: bool,
}

impl MeshverRoot {
    fn read_clock(&self, plugin: &Plugin) {
        plugin.now.set(self.get_current_time().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64));
    }
}

impl Context for MeshverRoot {}

impl RootContext for MeshverRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        self.body_filter = abi::property("plugin_root_id").is_ok_and(|id| id == BODY_ROOT_ID.as_bytes());
        let raw = self.get_plugin_configuration().unwrap_or_default();
        match config::load(&raw) {
            Ok(catalog) => {
                let role = if self.body_filter { "body filter" } else { "header filter" };
                log::info!("meshver: loaded {} service(s) as the {role}", catalog.services.len());
                if let Some(old) = &self.plugin {
                    old.counters.flush(&old.catalog);
                }
                let plugin = Plugin { catalog, counters: Counters::default(), now: Cell::new(0) };
                self.read_clock(&plugin);
                self.plugin = Some(Rc::new(plugin));
                self.set_tick_period(TICK_PERIOD);
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
        if let Some(plugin) = &self.plugin {
            plugin.counters.flush(&plugin.catalog);
            self.read_clock(plugin);
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        if self.body_filter {
            Some(Box::new(MeshverBody::new(context_id, self.plugin.clone())))
        } else {
            Some(Box::new(MeshverHttp { context_id, plugin: self.plugin.clone() }))
        }
    }
}
