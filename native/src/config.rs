//! What one filter configuration shares with every request it serves, on every worker: the
//! catalog, and the ids of its counters in Envoy.

use crate::abi::{self, ConfigEnvoyPtr, FilterEnvoyPtr, LogLevel, ModuleBuffer};
use crate::log;
use meshver::config::Catalog;
use meshver::metrics::{Family, Series};

pub struct NativeConfig {
    pub catalog: Catalog,
    pub counters: Counters,
}

/// The filter's counter families, defined with Envoy once per configuration (Envoy refuses new
/// ones once the configuration is made), each with its labels as Envoy tags: Envoy makes one
/// counter per set of label values as it is first incremented, and `/stats/prometheus` shows
/// it as `<family>{<label>="<value>",…}`, the name and labels the wasm host's counters get.
pub struct Counters {
    /// Envoy's id of each family, in [`Family::ALL`]'s order; none where Envoy refused one.
    ids: [Option<usize>; Family::ALL.len()],
}

impl Counters {
    /// Defines every family. Only during `on_http_filter_config_new`.
    pub fn define(config: ConfigEnvoyPtr) -> Counters {
        let ids = Family::ALL.map(|family| {
            let labels: Vec<ModuleBuffer> =
                family.labels().iter().map(|label| ModuleBuffer::of(label.name().as_bytes())).collect();
            let mut id = 0usize;
            // SAFETY: every buffer is live for the call (Envoy copies the names); `id` is a local.
            let result = unsafe {
                abi::envoy_dynamic_module_callback_http_filter_config_define_counter(
                    config,
                    ModuleBuffer::of(family.name().as_bytes()),
                    labels.as_ptr(),
                    labels.len(),
                    &mut id,
                )
            };
            if result == abi::METRICS_SUCCESS {
                Some(id)
            } else {
                log(
                    LogLevel::Warn,
                    format_args!("meshver: could not define counter {}: result {result}", family.name()),
                );
                None
            }
        });
        Counters { ids }
    }

    /// Counts one request in a counter, through the stream it belongs to.
    pub fn count(&self, filter: FilterEnvoyPtr, catalog: &Catalog, series: Series) {
        let at = Family::ALL.iter().position(|family| *family == series.family);
        let Some(id) = at.and_then(|at| self.ids.get(at).copied().flatten()) else { return };
        let values: Vec<_> = series.family.labels().iter().map(|label| series.value(catalog, *label)).collect();
        let buffers: Vec<ModuleBuffer> = values.iter().map(|value| ModuleBuffer::of(value.as_bytes())).collect();
        // SAFETY: `filter` is the live stream; the values are live for the call (Envoy copies them).
        let result = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_increment_counter(
                filter,
                id,
                buffers.as_ptr(),
                buffers.len(),
                1,
            )
        };
        if result != abi::METRICS_SUCCESS {
            log(LogLevel::Warn, format_args!("meshver: could not count in {}: result {result}", series.family.name()));
        }
    }
}
