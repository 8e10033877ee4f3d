//! What one filter configuration shares with every request it serves, on every worker: the
//! catalog, and its counters: counted in module memory, handed to Envoy each second.

use crate::abi::{self, ConfigEnvoyPtr, ConfigSchedulerPtr, LogLevel, ModuleBuffer};
use crate::log;
use meshver::config::Catalog;
use meshver::metrics::{Family, Series};
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often counts reach Envoy's stats: the most they lag, as the wasm host's tick.
pub const FLUSH_PERIOD: Duration = Duration::from_secs(1);

pub struct NativeConfig {
    pub catalog: Catalog,
    /// Whether this configuration is the body filter's (its filter name is the wasm body
    /// filter's root id), not the header filter's.
    pub body_filter: bool,
    pub counters: Counters,
    /// Envoy's side of this configuration, for the last flush as it is destroyed.
    pub envoy: EnvoyConfig,
    /// Asks Envoy's main thread each [`FLUSH_PERIOD`] to flush; none in `--mode validate`.
    pub flusher: Option<Flusher>,
}

/// Envoy's `DynamicModuleHttpFilterConfig`: Envoy keeps it alive as long as the module's
/// configuration, and the module only uses it on Envoy's main thread.
pub struct EnvoyConfig(pub ConfigEnvoyPtr);
// SAFETY: see above: a pointer that is only handed back to Envoy, on its main thread.
unsafe impl Send for EnvoyConfig {}
// SAFETY: as for Send.
unsafe impl Sync for EnvoyConfig {}

/// Counts per series in module memory, in a few shards so that workers rarely wait on one
/// another.
type Tally = HashMap<Series, u64, foldhash::fast::FixedState>;
const SHARDS: usize = 8;

/// The filter's counter families, defined with Envoy once per configuration (Envoy refuses new
/// ones once the configuration is made), each with its labels as Envoy tags: Envoy makes one
/// counter per set of label values the first time it is given a count, and `/stats/prometheus`
/// shows it as `<family>{<label>="<value>",…}`, the name and labels of the wasm host's counters.
/// A request's count goes into module memory (a hash of a few integers): handing each one to
/// Envoy as it happens cost ~6,500 instructions per counter (Envoy builds the tagged stat's
/// name), so counts are handed over each [`FLUSH_PERIOD`], as the wasm host does.
pub struct Counters {
    /// Envoy's id of each family, in [`Family::ALL`]'s order; none where Envoy refused one.
    ids: [Option<usize>; Family::ALL.len()],
    shards: [Mutex<Tally>; SHARDS],
}

thread_local! {
    /// This thread's shard (workers take turns as they first count).
    static SHARD: Cell<Option<usize>> = const { Cell::new(None) };
}
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

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
        Counters { ids, shards: Default::default() }
    }

    /// Counts one request in a counter, in module memory.
    pub fn count(&self, series: Series) {
        let shard = SHARD.with(|shard| {
            *shard.get().get_or_insert_with(|| {
                let next = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
                shard.set(Some(next));
                next
            })
        });
        if let Some(tally) = self.shards.get(shard) {
            let mut tally = tally.lock().unwrap_or_else(PoisonError::into_inner);
            let count = tally.entry(series).or_insert(0);
            *count = count.saturating_add(1);
        }
    }

    /// Hands the counts since the last flush to Envoy. On Envoy's main thread only.
    pub fn flush(&self, config: ConfigEnvoyPtr, catalog: &Catalog) {
        for shard in &self.shards {
            // Taken under the lock, handed over after it: a worker never waits on Envoy.
            let counts: Vec<(Series, u64)> = shard.lock().unwrap_or_else(PoisonError::into_inner).drain().collect();
            for (series, count) in counts {
                self.hand_over(config, catalog, series, count);
            }
        }
    }

    fn hand_over(&self, config: ConfigEnvoyPtr, catalog: &Catalog, series: Series, count: u64) {
        let at = Family::ALL.iter().position(|family| *family == series.family);
        let Some(id) = at.and_then(|at| self.ids.get(at).copied().flatten()) else { return };
        let values: Vec<_> = series.family.labels().iter().map(|label| series.value(catalog, *label)).collect();
        let buffers: Vec<ModuleBuffer> = values.iter().map(|value| ModuleBuffer::of(value.as_bytes())).collect();
        // SAFETY: `config` is Envoy's live configuration; the values are live for the call
        // (Envoy copies them).
        let result = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_increment_counter(
                config,
                id,
                buffers.as_ptr(),
                buffers.len(),
                count,
            )
        };
        if result != abi::METRICS_SUCCESS {
            log(LogLevel::Warn, format_args!("meshver: could not count in {}: result {result}", series.family.name()));
        }
    }
}

/// A thread that wakes each [`FLUSH_PERIOD`] and has Envoy's main thread run
/// `on_http_filter_config_scheduled`, which flushes: the counts reach Envoy's stats even when
/// no request follows them. Envoy's stats are made on its own threads only, never on this one.
pub struct Flusher {
    scheduler: Scheduler,
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

/// The event id of a flush.
pub const FLUSH_EVENT: u64 = 1;

#[derive(Clone, Copy)]
struct Scheduler(ConfigSchedulerPtr);
// SAFETY: Envoy's scheduler exists to be committed from any thread; it is deleted only after
// the thread that commits is joined.
unsafe impl Send for Scheduler {}
// SAFETY: as for Send.
unsafe impl Sync for Scheduler {}

impl Flusher {
    /// Starts flushing for the configuration `config`; none in `--mode validate` (nothing is
    /// served) or where no thread could start.
    pub fn start(config: ConfigEnvoyPtr) -> Option<Flusher> {
        // SAFETY: plain values; `config` is the live configuration of config_new.
        let scheduler = unsafe {
            if abi::envoy_dynamic_module_callback_is_validation_mode() {
                return None;
            }
            Scheduler(abi::envoy_dynamic_module_callback_http_filter_config_scheduler_new(config))
        };
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new().name("meshver-flush".into()).spawn(move || {
            let scheduler = scheduler;
            let (stopped, wake) = &*thread_stop;
            let mut stopped = stopped.lock().unwrap_or_else(PoisonError::into_inner);
            while !*stopped {
                stopped = wake.wait_timeout(stopped, FLUSH_PERIOD).unwrap_or_else(PoisonError::into_inner).0;
                if !*stopped {
                    // SAFETY: the scheduler is deleted only after this thread is joined.
                    unsafe {
                        abi::envoy_dynamic_module_callback_http_filter_config_scheduler_commit(scheduler.0, FLUSH_EVENT)
                    };
                }
            }
        });
        match thread {
            Ok(thread) => Some(Flusher { scheduler, stop, thread: Some(thread) }),
            Err(error) => {
                log(
                    LogLevel::Error,
                    format_args!(
                        "meshver: no flush thread ({error}); counts reach Envoy only as the configuration goes"
                    ),
                );
                // SAFETY: made above; nothing commits to it.
                unsafe { abi::envoy_dynamic_module_callback_http_filter_config_scheduler_delete(scheduler.0) };
                None
            }
        }
    }
}

impl Drop for Flusher {
    /// Stops the thread, then deletes the scheduler it commits to.
    fn drop(&mut self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // SAFETY: made by scheduler_new; nothing commits to it any more.
        unsafe { abi::envoy_dynamic_module_callback_http_filter_config_scheduler_delete(self.scheduler.0) };
    }
}
