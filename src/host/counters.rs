//! The filter's counters as the host sees them. A request counts in VM memory; the root
//! context hands the sums to the host each tick (`root::TICK_PERIOD`), so a request costs no
//! host call for its counter (Envoy's stats are read seconds apart anyway).

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use std::cell::Cell;

#[derive(Default)]
pub struct Counters {
    /// Host ids, in `metrics::counter_names` order; `u32::MAX` where the host refused one.
    ids: Vec<u32>,
    /// Counts since the last flush, one per id.
    pending: Vec<Cell<u64>>,
}

impl Counters {
    /// Defines the named counters with the host (once per configuration).
    pub fn define(names: &[String]) -> Counters {
        let ids: Vec<u32> =
            names.iter().map(|name| hostcalls::define_metric(MetricType::Counter, name).unwrap_or(u32::MAX)).collect();
        let pending = ids.iter().map(|_| Cell::new(0)).collect();
        Counters { ids, pending }
    }

    /// Counts one request in the slot `metrics::slot` chose.
    pub fn count(&self, slot: usize) {
        if let Some(pending) = self.pending.get(slot) {
            pending.set(pending.get().saturating_add(1));
        }
    }

    /// Hands the counts since the last flush to the host.
    pub fn flush(&self) {
        for (id, pending) in self.ids.iter().zip(&self.pending) {
            let count = pending.take();
            if count > 0 && *id != u32::MAX {
                if let Err(status) = hostcalls::increment_metric(*id, count as i64) {
                    log::warn!("meshver: could not update a counter: {status:?}");
                }
            }
        }
    }
}
