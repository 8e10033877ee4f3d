//! What one configuration shares with every request it serves.

use super::counters::Counters;
use crate::config::Catalog;
use std::cell::Cell;

pub struct Plugin {
    pub catalog: Catalog,
    pub counters: Counters,
    /// The proxy's clock (unix seconds) as of the last tick: sunsets are decided by it, to the
    /// second.
    pub now: Cell<i64>,
}
