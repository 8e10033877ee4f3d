//! The filter's counters as the host sees them. A request counts in VM memory
//! ([`metrics::Tally`]); the root context hands the sums to the host each tick
//! (`root::TICK_PERIOD`), so a request costs no host call for its counter (Envoy's stats are
//! read seconds apart anyway). A counter is defined with the host the first time its labels
//! have a count: the label values are bounded, but their every combination need not exist.

use super::abi;
use crate::config::Catalog;
use crate::metrics::{self, Series};
use std::cell::RefCell;
use std::collections::HashMap;

#[derive(Default)]
pub struct Counters {
    tally: metrics::Tally,
    /// Host ids of the counters defined so far; `None` where the host refused one.
    ids: RefCell<HashMap<Series, Option<u32>>>,
}

impl Counters {
    /// Counts one request in a counter.
    pub fn count(&self, series: Series) {
        self.tally.count(series);
    }

    /// Hands the counts since the last flush to the host, defining counters seen first.
    pub fn flush(&self, catalog: &Catalog) {
        let Ok(mut ids) = self.ids.try_borrow_mut() else {
            return;
        };
        for (series, count) in self.tally.take() {
            let id = *ids.entry(series).or_insert_with(|| {
                let name = series.stat_name(catalog);
                abi::define_counter(&name)
                    .inspect_err(|status| log::warn!("meshver: could not define counter {name}: status {status}"))
                    .ok()
            });
            if let Some(id) = id {
                if let Err(status) = abi::increment_counter(id, count) {
                    log::warn!("meshver: could not update a counter: status {status}");
                }
            }
        }
    }
}
