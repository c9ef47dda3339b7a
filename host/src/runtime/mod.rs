//! The sandbox plugins run in: one wasmtime `Engine`, a pooling allocator,
//! per-run limits, a compiled-component cache, and the linker that wires
//! WASI (cut down) and the capability interfaces into every instance.
//!
//! Every node run gets a fresh instance from a pre-instantiated component,
//! so nothing leaks between leads. A plugin that loops, traps or allocates
//! without end is stopped and reported as a node error; the host goes on.

mod breaker;
mod budget;
mod cache;
mod plugin;
mod registry;
mod run;
mod run_state;

pub use breaker::{BreakerConfig, PluginPause};
pub use cache::{CacheOutcome, ComponentCache};
pub use plugin::{Plugin, PluginInfo, PluginSource, default_memory_bytes, is_plugin_name};
pub use registry::{LoadProblem, PluginRegistry};
pub(crate) use run::cut;
pub use run::{Invocation, MAX_ERROR_BYTES, NodeFailure, RunLimits, RunOutcome};
pub use run_state::{RunState, STDIO_CAPTURE_BYTES};

use crate::capabilities::CapabilityLinks;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

/// How often the epoch advances; deadlines are precise to about this.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Sizing of the sandbox.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled components are cached.
    pub cache_dir: PathBuf,
    /// Node runs that may be in flight at once (pool slots).
    pub max_concurrent_runs: u32,
    /// The largest memory cap any node may ask for, in bytes.
    pub max_memory_bytes: usize,
    /// Linear memory (and async stack) bytes a pool slot keeps mapped
    /// between runs, reset with `memset` instead of returned to the kernel:
    /// fewer page faults in the next run, more work when a store is dropped
    /// (which happens off the lead's path).
    pub keep_resident_bytes: usize,
    /// Threads of the plugin pool: wasm runs on these, never on the
    /// threads that serve HTTP, the ledger and timers. 0 runs plugins on
    /// the caller's runtime (they still yield every tick).
    pub plugin_threads: usize,
    /// Runs of one plugin that may be in flight at once, so one plugin
    /// cannot hold every slot.
    pub max_runs_per_plugin: u32,
    /// When a plugin that keeps hitting its deadline is paused.
    pub breaker: BreakerConfig,
}

impl RuntimeConfig {
    /// Defaults sized for one host, with the cache under `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        RuntimeConfig {
            cache_dir: data_dir.into().join("cache").join("components"),
            max_concurrent_runs: 256,
            max_memory_bytes: 512 * 1024 * 1024,
            keep_resident_bytes: 2 * 1024 * 1024,
            plugin_threads: default_plugin_threads(),
            max_runs_per_plugin: 64,
            breaker: BreakerConfig::default(),
        }
    }
}

/// Threads of the plugin pool unless told otherwise: one per CPU but one,
/// and at least one. The CPU left over is the server's (HTTP, the ledger's
/// writer, timers), so plugins cannot crowd it out; and fewer threads hand
/// work to each other less often (each hand-off a wake-up, which is most of
/// what a thread switch costs on a virtual machine).
pub fn default_plugin_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

/// The plugin sandbox. Cheap to share (`Arc`); one per process.
pub struct Runtime {
    engine: Engine,
    linker: Linker<RunState>,
    cache: ComponentCache,
    config: RuntimeConfig,
    _ticker: EpochTicker,
    dropper: StoreDropper,
    /// One permit per pool slot for runs: a burst of work waits for a slot
    /// instead of failing on a full pool.
    pub(crate) slots: tokio::sync::Semaphore,
    /// Per-plugin run caps and circuit breakers.
    gates: breaker::Gates,
    /// The threads wasm runs on (none: the caller's).
    pool: Option<tokio::runtime::Runtime>,
}

impl Runtime {
    /// Builds the engine, the linker and the epoch ticker.
    ///
    /// # Errors
    ///
    /// When the pooling allocator cannot reserve its address space.
    pub fn new(config: RuntimeConfig) -> Result<Arc<Self>> {
        let mut pool = PoolingAllocationConfig::new();
        // Stores waiting to be dropped still hold their slots.
        let runs = config.max_concurrent_runs + DROP_QUEUE as u32;
        pool.total_component_instances(runs)
            // Components built by componentize-py or componentize-js hold
            // many core modules, memories and tables; Rust ones hold one.
            .max_core_instances_per_component(64)
            .max_memories_per_component(8)
            .max_tables_per_component(16)
            .total_core_instances(runs * 8)
            .total_memories(runs * 2)
            .total_tables(runs * 4)
            .total_stacks(runs)
            .max_memory_size(config.max_memory_bytes)
            .table_elements(200_000)
            .max_core_instance_size(8 << 20)
            .max_component_instance_size(1 << 20)
            .linear_memory_keep_resident(config.keep_resident_bytes)
            .async_stack_keep_resident(config.keep_resident_bytes.min(1 << 20))
            .table_keep_resident(config.keep_resident_bytes.min(1 << 20));
        // With PAGEMAP_SCAN (Linux 6.7+) only the pages a run dirtied are
        // reset, so keeping memory resident costs little; without it the
        // kept bytes are reset wholesale.
        pool.pagemap_scan(wasmtime::Enabled::Auto);

        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .cranelift_opt_level(wasmtime::OptLevel::Speed);
        // `perf` can name plugin functions when the JIT writes a map of
        // them (`/tmp/perf-<pid>.map`); off by default, since it costs a
        // file write per compiled or loaded component.
        if std::env::var_os("HANDOFF_PERF_MAP").is_some_and(|v| v == "1") {
            wasm.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&wasm).map_err(anyhow::Error::from)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
        crate::bindings::Node::add_to_linker::<RunState, CapabilityLinks>(&mut linker, |state| &mut state.context)
            .map_err(anyhow::Error::from)?;

        let cache = ComponentCache::new(&config.cache_dir, &engine);
        let ticker = EpochTicker::start(engine.clone());
        let slots = tokio::sync::Semaphore::new(config.max_concurrent_runs as usize);
        let gates = breaker::Gates::new(config.max_runs_per_plugin.max(1) as usize, config.breaker);
        let pool = match config.plugin_threads {
            0 => None,
            threads => Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads)
                    .thread_name("handoff-plugin")
                    .on_thread_start(|| ON_POOL.set(true))
                    .enable_all()
                    .build()
                    .context("starting the plugin pool")?,
            ),
        };
        Ok(Arc::new(Runtime {
            engine,
            linker,
            cache,
            config,
            _ticker: ticker,
            dropper: StoreDropper::default(),
            slots,
            gates,
            pool,
        }))
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The compiled-component cache.
    pub fn cache(&self) -> &ComponentCache {
        &self.cache
    }

    /// The sizing this runtime was built with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Spawns `work` (an execution) on the plugin pool, or on the current
    /// runtime without one: its node runs then run in place, with no hop
    /// between threads per run, and never on the server's own threads.
    pub fn spawn<F>(&self, work: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        use tracing::Instrument;
        match &self.pool {
            Some(pool) => pool.spawn(work.in_current_span()),
            None => tokio::spawn(work),
        }
    }

    /// Plugins their circuit breaker paused since the last call: each is
    /// told to ops once.
    pub fn take_pauses(&self) -> Vec<PluginPause> {
        self.gates.take_pauses()
    }

    /// Plugins paused now: name, time left, and why.
    pub fn paused_plugins(&self) -> Vec<(String, Duration, String)> {
        self.gates.paused()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Runs still on the pool are abandoned; dropping a tokio runtime
        // from async code must not block.
        if let Some(pool) = self.pool.take() {
            pool.shutdown_background();
        }
    }
}

thread_local! {
    /// Set on the plugin pool's threads: a run started there runs in place.
    static ON_POOL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread is a plugin pool thread.
pub(crate) fn on_pool_thread() -> bool {
    ON_POOL.get()
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on its own thread, which
/// is what makes a running plugin's deadline fire.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("handoff-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread");
        EpochTicker { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Finished stores that may wait to be dropped.
const DROP_QUEUE: usize = 32;

/// Drops finished stores after their run's result has gone on: resetting
/// an instance's memory for the pool is work no lead should wait for. The
/// drop is a task of the runtime the run ran on (the plugin pool), so it
/// costs no hand-off to another thread; with [`DROP_QUEUE`] stores waiting
/// (a pool too busy to get to them), or outside a runtime, the store is
/// dropped where it is, so pool slots are never held hostage by a queue.
#[derive(Clone, Default)]
struct StoreDropper {
    waiting: Arc<std::sync::atomic::AtomicUsize>,
}

impl StoreDropper {
    fn dispose(&self, store: Store<RunState>) {
        let handle = tokio::runtime::Handle::try_current();
        match handle {
            Ok(handle) if self.waiting.fetch_add(1, Ordering::Relaxed) < DROP_QUEUE => {
                let waiting = self.waiting.clone();
                handle.spawn(async move {
                    drop(store);
                    waiting.fetch_sub(1, Ordering::Relaxed);
                });
            }
            Ok(_) => {
                self.waiting.fetch_sub(1, Ordering::Relaxed);
                drop(store);
            }
            Err(_) => drop(store),
        }
    }
}
