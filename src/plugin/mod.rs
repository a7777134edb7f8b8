//! The plugin host: formatters, destinations and sources as sandboxed
//! WebAssembly components (DESIGN.md §11, §20), run by wasmtime.
//!
//! Owns: the `Engine` (pooling allocator, epoch interruption), compiling and
//! caching components, the catalogue of loaded plugins (built-ins embedded
//! in the binary and compiled on first use, overridden by `*.wasm` files in
//! `plugins.dir`), the warm instance pools, and every call into a plugin —
//! formatters, 0.1.0 destinations and stateful destinations (which get an
//! [`Incident`] and return a [`StateChange`]; the host never stores it).
//!
//! Sandbox: WASI is linked with an empty context (no files, env, network
//! or stdio; clocks frozen at fixed values, so they reveal nothing), memory
//! is capped per instance (`plugins.memory_mb`: the sum of all its linear
//! memories), every call (instantiation and `create` included) has a
//! deadline (`plugins.timeout_ms`) enforced both by the epoch (guest code)
//! and by a tokio timer (a guest waiting in WASI, e.g. sleeping), and
//! output is capped (body size, requests per `build`).
//!
//! Calls are async (wasmtime runs the guest on a fiber): they run on the
//! caller's tokio worker without a thread hop, and a long call yields back
//! to the executor at every epoch tick, so a plugin that loops never holds a
//! worker thread for more than [`ticker::TICK`]. The synchronous `render` command
//! uses [`block_on`].
//!
//! The fiber is not what a call costs: a throwaway program calling the
//! same components warm on one engine, synchronously and with
//! `call_async` (stop 33), took 0.97–0.99 against 1.09 µs for `echo_a` on
//! empty data and 7.0–7.3 against 7.1–7.4 µs for the slack formatter; the
//! rest of a warm call is wasmtime's component call (~1 µs), the guest's
//! own code, and this module's lease and checks (~0.5 µs).
//!
//! The deadline costs more than the fiber: with `epoch_interruption` on,
//! Cranelift checks the epoch at every function entry and loop header of
//! the guest. With it off (a throwaway build, stop 35: `cargo bench --bench
//! plugin` with `PLUGIN_BENCH_SLACK_ONLY=1`, four runs each way), a warm
//! slack format took 7.27–7.44 against 8.62–8.83 µs (2.40–2.42× against
//! 2.85–2.89× native + decode), and the guest decoded `data` at 1.01–1.12×
//! native speed against 1.40–1.46×. It stays on: it is the only way
//! wasmtime stops a guest that loops, built-ins included. Measured on the
//! same bench and not taken: Cranelift's inliner
//! (`compiler_inlining(Inlining::Yes)`: 8.28, 8.37 against 8.54, 8.57 µs;
//! its compile time was not measured) and `table_lazy_init(false)`
//! (8.70–8.74 against 8.62–8.67 µs).
//!
//! A trap of any kind drops the instance; the error fails only the delivery
//! that made the call. Plugins never do I/O: the core sends what they build.

mod ticker;
pub mod watch;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde::Serialize;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker, ResourceAny, ResourceTable};
use wasmtime::{Engine, PoolingAllocationConfig, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

mod bindings {
    pub mod formatter {
        wasmtime::component::bindgen!({
            path: "sdk/wit",
            world: "formatter",
            exports: { default: async },
        });
    }
    pub mod destination {
        wasmtime::component::bindgen!({
            path: "sdk/wit",
            world: "destination",
            exports: { default: async },
        });
    }
    pub mod source {
        wasmtime::component::bindgen!({
            path: "sdk/wit",
            world: "source",
            exports: { default: async },
        });
    }
    pub mod stateful {
        wasmtime::component::bindgen!({
            path: "sdk/wit",
            world: "stateful-destination",
            exports: { default: async },
        });
    }
}

use bindings::destination::relay::plugin::types as dt;
use bindings::formatter::relay::plugin::types as ft;
use bindings::stateful::exports::relay::plugin::deliver_stateful as sd;
use bindings::stateful::relay::plugin::types as st;
use ticker::{Running, Ticker};

pub use relay_builtins::BUILTINS;

/// Largest payload body a formatter may return.
pub const MAX_OUTPUT_BYTES: usize = 8 * 1024 * 1024;
/// Warm instances kept per plugin.
const MAX_IDLE: usize = 8;
/// An instance is retired after this many calls.
const MAX_CALLS_PER_INSTANCE: u32 = 10_000;
/// Resources (one per distinct options) kept per instance.
const MAX_RESOURCES_PER_INSTANCE: usize = 64;
/// Component instances the pooling allocator has room for.
const POOL_SLOTS: u32 = 256;
/// Linear memories one component instance may have (their sum is capped by
/// `plugins.memory_mb`; this keeps one plugin from taking the pool's slots).
const MAX_MEMORIES_PER_INSTANCE: u32 = 2;
/// Requests one `build` may return for one delivery.
pub const MAX_REQUESTS_PER_DELIVERY: usize = 16;
/// Largest state a stateful destination may keep per (webhook, incident key).
pub const MAX_STATE_BYTES: usize = 4096;
/// A call gets `plugins.timeout_ms` of its own time (running guest code or
/// waiting in WASI); time spent waiting for a busy executor does not count,
/// up to this many times `timeout_ms` of wall-clock time.
const WALL_FACTOR: u32 = 2;
/// What the WASI wall clock always reads: 2000-01-01T00:00:00Z.
const FIXED_WALL_CLOCK: Duration = Duration::from_secs(946_684_800);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Formatter,
    Destination,
    Source,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Formatter => "formatter",
            Kind::Destination => "destination",
            Kind::Source => "source",
        }
    }
}

/// Why a plugin call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    #[error("no {kind} plugin named {name:?} is loaded")]
    NotLoaded { kind: &'static str, name: String },
    #[error("rejected its options: {0}")]
    Options(String),
    #[error("returned an error: {0}")]
    Returned(String),
    #[error("exceeded its {timeout_ms} ms time limit and was stopped")]
    Timeout { timeout_ms: u64 },
    /// The relay was too busy to give the call its time: not the plugin's fault.
    #[error(
        "did not get its {timeout_ms} ms of running time within {wall_ms} ms because the relay was busy"
    )]
    Busy { timeout_ms: u64, wall_ms: u64 },
    /// The instance pool is full: not the plugin's fault.
    #[error("found no free instance slot: {0}")]
    NoInstance(String),
    #[error("tried to use more than its {memory_mb} MiB memory limit and was stopped")]
    Memory { memory_mb: u32 },
    #[error("trapped: {0}")]
    Trap(String),
    #[error("produced invalid output: {0}")]
    Output(String),
}

impl PluginError {
    /// Whether the same call may succeed later without any change to the
    /// plugin or the event: the plugin is missing for now (being replaced),
    /// the instance pool is full, or the relay was too busy to run it.
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            PluginError::NotLoaded { .. } | PluginError::Busy { .. } | PluginError::NoInstance(_)
        )
    }

    /// The delivery failure this call's failure causes; temporary ones are
    /// retried.
    pub fn into_delivery(self, plugin: &str) -> crate::deliver::DeliveryError {
        crate::deliver::DeliveryError::Plugin {
            plugin: plugin.to_owned(),
            retryable: self.is_temporary(),
            message: self.to_string(),
        }
    }
}

/// Sandbox limits, from `plugins:` in relay.yaml.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub memory_mb: u32,
    pub timeout_ms: u64,
    /// A new instance for every call (`plugins.isolation: fresh`).
    pub fresh: bool,
}

/// What a store carries: an empty WASI context, the memory limiter, and the
/// current call's clock and time budget.
pub struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    clock: Arc<CallClock>,
    budget: Duration,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The memory cap of one instance: the sum of all its linear memories.
struct Limiter {
    memory_bytes: usize,
    /// Bytes of all the store's memories, as allowed so far.
    total_bytes: usize,
    /// The growth allowed last, taken back if it then failed.
    pending_bytes: usize,
    denied: bool,
}

impl Limiter {
    fn new(memory_bytes: usize) -> Limiter {
        Limiter {
            memory_bytes,
            total_bytes: 0,
            pending_bytes: 0,
            denied: false,
        }
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // A new memory comes in as growing from 0 to its initial size.
        let growth = desired.saturating_sub(current);
        let total = self.total_bytes.saturating_add(growth);
        let ok = total <= self.memory_bytes;
        self.denied |= !ok;
        if ok {
            self.total_bytes = total;
            self.pending_bytes = growth;
        }
        Ok(ok)
    }
    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.total_bytes = self.total_bytes.saturating_sub(self.pending_bytes);
        self.pending_bytes = 0;
        Ok(())
    }
    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

enum Code {
    Formatter(bindings::formatter::FormatterPre<State>),
    Destination(bindings::destination::DestinationPre<State>),
    Source(bindings::source::SourcePre<State>),
    /// A destination of the `stateful-destination` world (also `Kind::Destination`).
    Stateful(bindings::stateful::StatefulDestinationPre<State>),
}

enum Exports {
    Formatter(bindings::formatter::Formatter),
    Destination(bindings::destination::Destination),
    Source(bindings::source::Source),
    Stateful(bindings::stateful::StatefulDestination),
}

/// A warm instance with the resources it has built, keyed by options text.
struct Warm {
    store: Store<State>,
    exports: Exports,
    resources: HashMap<String, ResourceAny>,
    calls: u32,
}

/// A loaded plugin version. Calls in flight keep their `Arc` and finish on
/// it even after a reload swapped in a new version.
pub struct Loaded {
    pub name: String,
    pub kind: Kind,
    pub sha256: String,
    pub loaded_at: String,
    pub source: String,
    code: Code,
    idle: Mutex<Vec<Warm>>,
}

/// What `GET /api/v1/plugins` shows for one name.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub name: String,
    pub kind: Option<Kind>,
    pub sha256: Option<String>,
    pub loaded_at: Option<String>,
    pub source: Option<String>,
    pub last_error: Option<String>,
}

#[derive(Default)]
struct Catalog {
    by_key: HashMap<(Kind, String), Arc<Loaded>>,
}

/// The plugin host. Cheap to clone.
#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<HostInner>,
}

struct HostInner {
    engine: Engine,
    /// Links the empty WASI context; every world imports only WASI.
    linker: Linker<State>,
    limits: Limits,
    catalog: ArcSwap<Catalog>,
    errors: Mutex<BTreeMap<String, String>>,
    /// Held while a built-in is compiled on its first use, so two callers
    /// do not compile the same one twice.
    compiling: Mutex<()>,
    cache_dir: Option<PathBuf>,
    ticker: Arc<Ticker>,
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot set up the WebAssembly engine: {0}")]
    Engine(String),
    #[error("built-in plugin {name}: {message}")]
    Builtin { name: String, message: String },
}

/// Set (to anything but `0`) when the relay starts, plugin code is listed
/// in `/tmp/perf-<pid>.map` as it is compiled, so that `perf record` /
/// `perf report` name the guest's own functions (its symbols, when the
/// `.wasm` keeps a name section) instead of bare addresses.
pub const PERF_MAP_ENV: &str = "RELAY_PLUGIN_PERF_MAP";

impl PluginHost {
    /// Builds the engine and loads the built-in plugins. `cache_dir` holds
    /// precompiled code so restarts skip compilation.
    pub fn new(limits: Limits, cache_dir: Option<PathBuf>) -> Result<PluginHost, HostError> {
        let memory_bytes = limits.memory_mb as usize * 1024 * 1024;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_SLOTS)
            .total_stacks(POOL_SLOTS)
            .total_core_instances(POOL_SLOTS * 8)
            .total_memories(POOL_SLOTS * 2)
            .total_tables(POOL_SLOTS * 4)
            .max_memory_size(memory_bytes)
            .max_memories_per_component(MAX_MEMORIES_PER_INSTANCE)
            .linear_memory_keep_resident(1024 * 1024)
            .table_keep_resident(64 * 1024);
        let mut config = wasmtime::Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        if std::env::var_os(PERF_MAP_ENV).is_some_and(|v| v != "0") {
            // `perf report` then names the guests' functions.
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(|e| HostError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| HostError::Engine(format!("{e:#}")))?;
        let ticker = Ticker::start(&engine);
        if let Some(dir) = &cache_dir {
            let _ = std::fs::create_dir_all(dir);
        }
        let host = PluginHost {
            inner: Arc::new(HostInner {
                engine,
                linker,
                limits,
                catalog: ArcSwap::from_pointee(Catalog::default()),
                errors: Mutex::new(BTreeMap::new()),
                compiling: Mutex::new(()),
                cache_dir,
                ticker,
            }),
        };
        // Built-ins are compiled on first use (`get`), not here: a relay
        // compiles only the ones its webhooks name (at load, when their
        // options are checked), and starts in the same time however many
        // built-ins the binary carries.
        Ok(host)
    }

    /// Compiles the built-in `(kind, name)` and puts it in the catalogue,
    /// unless a file plugin of that kind and name is there already.
    fn builtin(&self, kind: Kind, name: &str) -> Result<Option<Arc<Loaded>>, HostError> {
        let Some((_, _, bytes)) = BUILTINS
            .iter()
            .find(|(n, k, _)| *n == name && *k == kind.as_str())
        else {
            return Ok(None);
        };
        let _one_at_a_time = lock(&self.inner.compiling);
        let key = (kind, name.to_owned());
        if let Some(l) = self.inner.catalog.load().by_key.get(&key) {
            return Ok(Some(Arc::clone(l)));
        }
        let loaded =
            self.compile(name, bytes, "builtin")
                .map_err(|message| HostError::Builtin {
                    name: name.to_owned(),
                    message,
                })?;
        if loaded.kind != kind {
            return Err(HostError::Builtin {
                name: name.to_owned(),
                message: format!(
                    "declared as {} but implements {}",
                    kind.as_str(),
                    loaded.kind.as_str()
                ),
            });
        }
        let loaded = Arc::new(loaded);
        let shared = Arc::clone(&loaded);
        self.swap(|by_key| {
            by_key.insert(key, shared);
        });
        Ok(Some(loaded))
    }

    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// Names of loaded plugins of one kind (built-ins included, compiled
    /// or not yet).
    pub fn names(&self, kind: Kind) -> Vec<String> {
        let mut v: Vec<String> = self
            .inner
            .catalog
            .load()
            .by_key
            .keys()
            .filter(|(k, _)| *k == kind)
            .map(|(_, n)| n.clone())
            .chain(
                BUILTINS
                    .iter()
                    .filter(|(_, k, _)| *k == kind.as_str())
                    .map(|(n, _, _)| n.to_string()),
            )
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// The plugin new calls of `kind` and `name` use: a file plugin, else
    /// the built-in (compiled now if this is its first use; slow once).
    pub fn get(&self, kind: Kind, name: &str) -> Option<Arc<Loaded>> {
        if let Some(l) = self
            .inner
            .catalog
            .load()
            .by_key
            .get(&(kind, name.to_owned()))
        {
            return Some(Arc::clone(l));
        }
        match self.builtin(kind, name) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(plugin = name, error = %e, "a built-in plugin failed to compile");
                None
            }
        }
    }

    fn loaded(&self, kind: Kind, name: &str) -> Result<Arc<Loaded>, PluginError> {
        self.get(kind, name).ok_or_else(|| PluginError::NotLoaded {
            kind: kind.as_str(),
            name: name.to_owned(),
        })
    }

    /// Every loaded plugin and every name whose last load failed.
    pub fn statuses(&self) -> Vec<Status> {
        let catalog = self.inner.catalog.load();
        let errors = lock(&self.inner.errors).clone();
        let mut out: Vec<Status> = catalog
            .by_key
            .values()
            .map(|l| Status {
                name: l.name.clone(),
                kind: Some(l.kind),
                sha256: Some(l.sha256.clone()),
                loaded_at: Some(l.loaded_at.clone()),
                source: Some(l.source.clone()),
                last_error: errors.get(&l.name).cloned(),
            })
            .collect();
        // Built-ins not compiled yet (and not replaced by a file).
        for (name, kind, bytes) in BUILTINS {
            let kind = match *kind {
                "formatter" => Kind::Formatter,
                _ => Kind::Destination,
            };
            if !catalog.by_key.contains_key(&(kind, name.to_string())) {
                out.push(Status {
                    name: name.to_string(),
                    kind: Some(kind),
                    sha256: Some(hex::encode(Sha256::digest(bytes))),
                    loaded_at: None,
                    source: Some("builtin".to_owned()),
                    last_error: errors.get(*name).cloned(),
                });
            }
        }
        for (name, error) in errors {
            if !out.iter().any(|s| s.name == name) {
                out.push(Status {
                    name,
                    kind: None,
                    sha256: None,
                    loaded_at: None,
                    source: None,
                    last_error: Some(error),
                });
            }
        }
        out.sort_by(|a, b| (&a.name, a.kind).cmp(&(&b.name, b.kind)));
        out
    }

    /// Compiles a component (or takes it from the cache) and works out
    /// which world it implements. Slow: call it off the request path.
    pub fn compile(&self, name: &str, bytes: &[u8], source: &str) -> Result<Loaded, String> {
        let sha256 = hex::encode(Sha256::digest(bytes));
        let component = self.component(&sha256, bytes)?;
        let pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|e| format!("imports something the sandbox does not provide: {e:#}"))?;
        let code = if let Ok(p) = bindings::formatter::FormatterPre::new(pre.clone()) {
            Code::Formatter(p)
        } else if let Ok(p) = bindings::destination::DestinationPre::new(pre.clone()) {
            Code::Destination(p)
        } else if let Ok(p) = bindings::stateful::StatefulDestinationPre::new(pre.clone()) {
            Code::Stateful(p)
        } else if let Ok(p) = bindings::source::SourcePre::new(pre) {
            Code::Source(p)
        } else {
            return Err(
                "does not implement the relay:plugin/formatter, destination, stateful-destination or source world (see sdk/wit)"
                    .to_string(),
            );
        };
        let kind = match code {
            Code::Formatter(_) => Kind::Formatter,
            Code::Destination(_) | Code::Stateful(_) => Kind::Destination,
            Code::Source(_) => Kind::Source,
        };
        Ok(Loaded {
            name: name.to_owned(),
            kind,
            sha256,
            loaded_at: crate::event::rfc3339_ms(crate::event::now_ms()),
            source: source.to_owned(),
            code,
            idle: Mutex::new(Vec::new()),
        })
    }

    fn component(&self, sha256: &str, bytes: &[u8]) -> Result<Component, String> {
        let engine = &self.inner.engine;
        let cached = self.inner.cache_dir.as_ref().map(|dir| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut h);
            dir.join(format!("{sha256}-{:016x}.cwasm", h.finish()))
        });
        if let Some(path) = &cached
            && path.exists()
        {
            // SAFETY: files in the cache directory are written only by
            // `Component::serialize` below, for this engine configuration
            // (the name carries the compatibility hash), and renamed into
            // place whole.
            match unsafe { Component::deserialize_file(engine, path) } {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring unusable cached plugin code")
                }
            }
        }
        let component = Component::from_binary(engine, bytes)
            .map_err(|e| format!("is not a valid component: {e:#}"))?;
        if let Some(path) = cached
            && let Ok(code) = component.serialize()
        {
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            if std::fs::write(&tmp, code).is_ok() {
                let _ = std::fs::rename(&tmp, &path);
            }
        }
        Ok(component)
    }

    /// Makes `loaded` the version new calls use; clears its load error.
    pub fn install(&self, loaded: Loaded) {
        let key = (loaded.kind, loaded.name.clone());
        lock(&self.inner.errors).remove(&loaded.name);
        self.swap(|by_key| {
            by_key.insert(key, Arc::new(loaded));
        });
    }

    fn swap(&self, f: impl FnOnce(&mut HashMap<(Kind, String), Arc<Loaded>>)) {
        let current = self.inner.catalog.load();
        let mut by_key = current.by_key.clone();
        f(&mut by_key);
        self.inner.catalog.store(Arc::new(Catalog { by_key }));
    }

    /// Records a failed load; the previous version (if any) keeps serving.
    pub fn record_error(&self, name: &str, error: String) {
        tracing::error!(plugin = name, error = %error, "plugin refused; the previous version keeps serving");
        lock(&self.inner.errors).insert(name.to_owned(), error);
    }

    /// Forgets a file plugin: the built-in of that name (if any) serves
    /// again (compiled on its next use).
    pub fn unload_file(&self, name: &str) {
        self.swap(|by_key| by_key.retain(|(_, n), _| n != name));
        lock(&self.inner.errors).remove(name);
    }

    /// Checks a webhook's options by constructing the plugin's resource.
    pub async fn check_options(
        &self,
        kind: Kind,
        name: &str,
        options: &str,
    ) -> Result<(), PluginError> {
        let plugin = self.loaded(kind, name)?;
        self.call(&plugin, options, async |_, _, _| Ok(Ok(())))
            .await
    }

    /// Checks that a webhook's formatter and destination are loaded and
    /// accept its options. `Err((field, message))` names the field at fault.
    pub async fn check_webhook(
        &self,
        spec: &crate::config::WebhookSpec,
    ) -> Result<(), (&'static str, String)> {
        if spec.format != "json" {
            self.check_options(Kind::Formatter, &spec.format, &spec.format_options_json())
                .await
                .map_err(|e| match e {
                    PluginError::Options(_) => ("options", format!("{:?} {e}", spec.format)),
                    _ => ("format", format!("{:?} {e}", spec.format)),
                })?;
        }
        if spec.destination.is_none() && spec.format != "json" {
            // The destination a format implies (`format: slack`): compiled
            // now, at load, rather than by its first delivery.
            let _ = self.get(Kind::Destination, &spec.format);
        }
        if let Some(d) = &spec.destination {
            self.check_options(Kind::Destination, d, &spec.destination_options_json())
                .await
                .map_err(|e| match e {
                    PluginError::Options(_) => ("destination_options", format!("{d:?} {e}")),
                    _ => ("destination", format!("{d:?} {e}")),
                })?;
        }
        Ok(())
    }

    /// Formats an event.
    pub async fn format(
        &self,
        name: &str,
        options: &str,
        event: &crate::event::Event,
    ) -> Result<crate::payload::Payload, PluginError> {
        let plugin = self.loaded(Kind::Formatter, name)?;
        // Text data (a digest) crosses as it is, without a second scan.
        let data = event.data.to_json();
        let wit_event = ft::Event {
            id: event.id.clone(),
            event_type: event.event_type.clone(),
            time: event.time.clone(),
            data,
        };
        let payload = self
            .call(
                &plugin,
                options,
                async |store, exports, resource| match exports {
                    Exports::Formatter(f) => f
                        .relay_plugin_format()
                        .formatter()
                        .call_format(store, resource, &wit_event)
                        .await
                        .map(|r| r.map_err(PluginError::Returned)),
                    _ => Ok(Err(PluginError::Output("not a formatter".into()))),
                },
            )
            .await?;
        check_payload(&payload.content_type, &payload.body)?;
        Ok(crate::payload::Payload {
            content_type: payload.content_type,
            body: bytes::Bytes::from(payload.body),
        })
    }

    /// Asks a destination for the requests that deliver `payload`, outside
    /// any incident (a stateful destination gets an empty key and no state).
    pub async fn build(
        &self,
        name: &str,
        options: &str,
        payload: &crate::payload::Payload,
        target: &Target,
    ) -> Result<Vec<crate::deliver::OutRequest>, PluginError> {
        self.build_in(name, options, payload, target, &Incident::default())
            .await
    }

    /// Whether the destination `name` keeps state per incident (the
    /// `stateful-destination` world).
    pub fn is_stateful(&self, name: &str) -> bool {
        self.get(Kind::Destination, name)
            .is_some_and(|l| matches!(l.code, Code::Stateful(_)))
    }

    /// Asks a destination for the requests that deliver `payload`; a
    /// stateful one also gets the incident's key and stored state.
    pub async fn build_in(
        &self,
        name: &str,
        options: &str,
        payload: &crate::payload::Payload,
        target: &Target,
        incident: &Incident,
    ) -> Result<Vec<crate::deliver::OutRequest>, PluginError> {
        let plugin = self.loaded(Kind::Destination, name)?;
        let wit_payload = dt::Payload {
            content_type: payload.content_type.clone(),
            body: payload.body.to_vec(),
        };
        let wit_target = dt::Target {
            url: target.url.clone(),
            method: target.method.clone(),
            headers: target.headers.clone(),
        };
        let requests = self
            .call(
                &plugin,
                options,
                async |store, exports, resource| match exports {
                    Exports::Destination(d) => d
                        .relay_plugin_deliver()
                        .destination()
                        .call_build(store, resource, &wit_payload, &wit_target)
                        .await
                        .map(|r| r.map_err(PluginError::Returned)),
                    Exports::Stateful(d) => {
                        let payload = st::Payload {
                            content_type: wit_payload.content_type.clone(),
                            body: wit_payload.body.clone(),
                        };
                        let target = st::Target {
                            url: wit_target.url.clone(),
                            method: wit_target.method.clone(),
                            headers: wit_target.headers.clone(),
                        };
                        d.relay_plugin_deliver_stateful()
                            .destination()
                            .call_build(store, resource, &payload, &target, &incident.wit())
                            .await
                            .map(|r| {
                                r.map_err(PluginError::Returned).map(|reqs| {
                                    reqs.into_iter()
                                        .map(|r| dt::Request {
                                            method: r.method,
                                            url: r.url,
                                            headers: r.headers,
                                            body: r.body,
                                        })
                                        .collect()
                                })
                            })
                    }
                    _ => Ok(Err(PluginError::Output("not a destination".into()))),
                },
            )
            .await?;
        if requests.is_empty() {
            return Err(PluginError::Output("built no request".into()));
        }
        if requests.len() > MAX_REQUESTS_PER_DELIVERY {
            return Err(PluginError::Output(format!(
                "built {} requests for one delivery; the limit is {MAX_REQUESTS_PER_DELIVERY}",
                requests.len()
            )));
        }
        requests
            .into_iter()
            .map(|r| {
                let method = http::Method::from_bytes(r.method.as_bytes()).map_err(|_| {
                    PluginError::Output(format!("method {:?} is not valid", r.method))
                })?;
                for (k, v) in &r.headers {
                    if http::HeaderName::from_bytes(k.as_bytes()).is_err()
                        || http::HeaderValue::from_str(v).is_err()
                    {
                        return Err(PluginError::Output(format!(
                            "header {k:?} is not valid HTTP"
                        )));
                    }
                }
                if r.body.len() > MAX_OUTPUT_BYTES {
                    return Err(PluginError::Output(format!(
                        "a request body of {} bytes is over the limit",
                        r.body.len()
                    )));
                }
                Ok(crate::deliver::OutRequest {
                    method,
                    url: r.url,
                    headers: r.headers,
                    body: Some(bytes::Bytes::from(r.body)),
                    timeout: target.timeout,
                })
            })
            .collect()
    }

    /// Asks a destination what a response means (outside any incident).
    pub async fn classify(
        &self,
        name: &str,
        options: &str,
        response: &crate::deliver::InResponse,
    ) -> Result<Outcome, PluginError> {
        self.classify_in(name, options, response, &Incident::default())
            .await
            .map(|(outcome, _)| outcome)
    }

    /// Asks a destination what a response means and, for a stateful one,
    /// what becomes of the incident's state (always `Keep` for the others).
    pub async fn classify_in(
        &self,
        name: &str,
        options: &str,
        response: &crate::deliver::InResponse,
        incident: &Incident,
    ) -> Result<(Outcome, StateChange), PluginError> {
        let plugin = self.loaded(Kind::Destination, name)?;
        let wit_response = dt::Response {
            status: response.status,
            headers: response.headers.clone(),
            body: response.body.to_vec(),
        };
        self.call(
            &plugin,
            options,
            async |store, exports, resource| match exports {
                Exports::Destination(d) => d
                    .relay_plugin_deliver()
                    .destination()
                    .call_classify(store, resource, &wit_response)
                    .await
                    .map(|o| {
                        Ok((
                            match o {
                                dt::Outcome::Success => Outcome::Success,
                                dt::Outcome::Retry(ms) => {
                                    Outcome::Retry(ms.map(|m| Duration::from_millis(u64::from(m))))
                                }
                                dt::Outcome::Fail(r) => Outcome::Fail(r),
                                dt::Outcome::Disable(r) => Outcome::Disable(r),
                            },
                            StateChange::Keep,
                        ))
                    }),
                Exports::Stateful(d) => {
                    let response = st::Response {
                        status: wit_response.status,
                        headers: wit_response.headers.clone(),
                        body: wit_response.body.clone(),
                    };
                    d.relay_plugin_deliver_stateful()
                        .destination()
                        .call_classify(store, resource, &response, &incident.wit())
                        .await
                        .map(|v| {
                            let outcome = match v.outcome {
                                st::Outcome::Success => Outcome::Success,
                                st::Outcome::Retry(ms) => {
                                    Outcome::Retry(ms.map(|m| Duration::from_millis(u64::from(m))))
                                }
                                st::Outcome::Fail(r) => Outcome::Fail(r),
                                st::Outcome::Disable(r) => Outcome::Disable(r),
                            };
                            match v.state {
                                sd::StateChange::Keep => Ok((outcome, StateChange::Keep)),
                                sd::StateChange::Clear => Ok((outcome, StateChange::Clear)),
                                sd::StateChange::Set(s) if s.len() > MAX_STATE_BYTES => {
                                    Err(PluginError::Output(format!(
                                        "asked to keep a state of {} bytes; the limit is {MAX_STATE_BYTES}",
                                        s.len()
                                    )))
                                }
                                sd::StateChange::Set(s) => Ok((outcome, StateChange::Set(s))),
                            }
                        })
                }
                _ => Ok(Err(PluginError::Output("not a destination".into()))),
            },
        )
        .await
    }

    /// Asks a source plugin for the events in a posted body. Output is
    /// checked: at most `max_events` events (more refuses the body: see
    /// [`SourceOutput::TooMany`]) and at most [`MAX_OUTPUT_BYTES`] of event
    /// text in all.
    pub async fn parse_source(
        &self,
        name: &str,
        options: &str,
        headers: &[(String, String)],
        body: &[u8],
        max_events: usize,
    ) -> Result<SourceOutput, PluginError> {
        let plugin = self.loaded(Kind::Source, name)?;
        let found = self
            .call(
                &plugin,
                options,
                async |store, exports, resource| match exports {
                    Exports::Source(s) => s
                        .relay_plugin_ingest()
                        .source()
                        .call_parse(store, resource, headers, body)
                        .await
                        .map(|r| r.map_err(PluginError::Returned)),
                    _ => Ok(Err(PluginError::Output("not a source".into()))),
                },
            )
            .await?;
        if found.len() > max_events {
            return Ok(SourceOutput::TooMany(found.len()));
        }
        let bytes: usize = found
            .iter()
            .map(|e| {
                e.event_type.len()
                    + e.data.len()
                    + e.id.as_ref().map_or(0, String::len)
                    + e.time.as_ref().map_or(0, String::len)
            })
            .sum();
        if bytes > MAX_OUTPUT_BYTES {
            return Err(PluginError::Output(format!(
                "{bytes} bytes of events are over the {MAX_OUTPUT_BYTES}-byte limit"
            )));
        }
        Ok(SourceOutput::Events(
            found
                .into_iter()
                .map(|e| SourceEvent {
                    id: e.id,
                    event_type: e.event_type,
                    time: e.time,
                    data: e.data,
                })
                .collect(),
        ))
    }

    /// One call into `plugin`: a lease (instance and the resource built
    /// from `options`), `guest` on it, the lease's end — all within the
    /// call's time ([`PluginHost::bounded`]).
    async fn call<T>(
        &self,
        plugin: &Loaded,
        options: &str,
        guest: impl AsyncFnOnce(
            &mut Store<State>,
            &Exports,
            ResourceAny,
        ) -> wasmtime::Result<Result<T, PluginError>>,
    ) -> Result<T, PluginError> {
        let clock = CallClock::start();
        self.bounded(&plugin.name, &clock, async {
            let (mut lease, resource) = self.lease(plugin, options, &clock).await?;
            let Warm { store, exports, .. } = &mut lease.warm;
            let result = guest(store, exports, resource).await;
            lease.end(result)
        })
        .await
    }

    /// Runs one call (`lease` and the guest call inside `call`) within its
    /// time: `plugins.timeout_ms` of the call's own time, which includes
    /// time the guest waits in WASI (a sleep) that the epoch never sees, and
    /// at most [`WALL_FACTOR`] times that of wall-clock time when the
    /// executor was too busy to run it ([`PluginError::Busy`]). A call
    /// stopped here is dropped mid-way: its lease, and so its instance, go
    /// with it.
    async fn bounded<T>(
        &self,
        plugin: &str,
        clock: &CallClock,
        call: impl Future<Output = Result<T, PluginError>>,
    ) -> Result<T, PluginError> {
        let timeout_ms = self.inner.limits.timeout_ms;
        let budget = Duration::from_millis(timeout_ms);
        let wall = budget.saturating_mul(WALL_FACTOR);
        let mut call = std::pin::pin!(call);
        let mut tracked = std::pin::pin!(std::future::poll_fn(move |cx| {
            clock.resumed(Instant::now());
            call.as_mut().poll(cx)
        }));
        // A warm call that neither yields at an epoch tick nor waits in WASI
        // ends in its first poll (the common case: some µs of guest code),
        // and needs no timer: while guest code runs, the epoch callback
        // enforces the budget. Only a call still pending arms one.
        let first = std::future::poll_fn(|cx| Poll::Ready(tracked.as_mut().poll(cx))).await;
        if let Poll::Ready(result) = first {
            return result;
        }
        let stopped = loop {
            let now = Instant::now();
            let (own, elapsed) = (clock.own(now), clock.elapsed(now));
            if own >= budget {
                break PluginError::Timeout { timeout_ms };
            }
            if elapsed >= wall {
                break PluginError::Busy {
                    timeout_ms,
                    wall_ms: u64::try_from(wall.as_millis()).unwrap_or(u64::MAX),
                };
            }
            let wait = (budget - own).min(wall - elapsed);
            let mut timer = std::pin::pin!(tokio::time::sleep(wait));
            // The call was polled just before (pending, its waker set), so
            // the first poll here only arms the timer: polling the call again
            // at once would resume a guest that just yielded to the executor.
            let mut just_polled = true;
            let ended = std::future::poll_fn(|cx| {
                if !std::mem::take(&mut just_polled)
                    && let Poll::Ready(result) = tracked.as_mut().poll(cx)
                {
                    return Poll::Ready(Some(result));
                }
                timer.as_mut().poll(cx).map(|()| None)
            })
            .await;
            if let Some(result) = ended {
                return result;
            }
        };
        crate::metrics::plugin_call(plugin, false);
        Err(stopped)
    }

    /// Takes a warm instance of `plugin` (or makes one) and the resource
    /// built from `options`, its deadline and memory cap armed. [`Lease::end`]
    /// gives it back; a lease dropped mid-call (its future cancelled) takes
    /// the instance with it.
    async fn lease<'p>(
        &self,
        plugin: &'p Loaded,
        options: &str,
        clock: &Arc<CallClock>,
    ) -> Result<(Lease<'p>, ResourceAny), PluginError> {
        let limits = self.inner.limits;
        let running = self.inner.ticker.enter();
        let idle = lock(&plugin.idle).pop();
        let mut warm = match idle {
            Some(w) => w,
            None => self.instantiate(plugin, clock).await?,
        };
        arm(&mut warm.store, clock);
        let resource = match warm.resources.get(options) {
            Some(r) => *r,
            None => {
                let created = match &warm.exports {
                    Exports::Formatter(f) => {
                        f.relay_plugin_format()
                            .formatter()
                            .call_create(&mut warm.store, options)
                            .await
                    }
                    Exports::Destination(d) => {
                        d.relay_plugin_deliver()
                            .destination()
                            .call_create(&mut warm.store, options)
                            .await
                    }
                    Exports::Source(d) => {
                        d.relay_plugin_ingest()
                            .source()
                            .call_create(&mut warm.store, options)
                            .await
                    }
                    Exports::Stateful(d) => {
                        d.relay_plugin_deliver_stateful()
                            .destination()
                            .call_create(&mut warm.store, options)
                            .await
                    }
                };
                let created = match created {
                    Ok(Ok(r)) => r,
                    Ok(Err(message)) => {
                        return Lease::new(plugin, warm, limits, running)
                            .end(Ok(Err(PluginError::Options(message))));
                    }
                    Err(e) => return Lease::new(plugin, warm, limits, running).end(Err(e)),
                };
                if warm.resources.len() >= MAX_RESOURCES_PER_INSTANCE {
                    for (_, r) in warm.resources.drain() {
                        let _ = r.resource_drop_async(&mut warm.store).await;
                    }
                }
                warm.resources.insert(options.to_owned(), created);
                created
            }
        };
        Ok((Lease::new(plugin, warm, limits, running), resource))
    }

    async fn instantiate(
        &self,
        plugin: &Loaded,
        clock: &Arc<CallClock>,
    ) -> Result<Warm, PluginError> {
        let limits = self.inner.limits;
        let mut store = self.new_store(clock);
        let exports = match &plugin.code {
            Code::Formatter(pre) => pre
                .instantiate_async(&mut store)
                .await
                .map(Exports::Formatter),
            Code::Destination(pre) => pre
                .instantiate_async(&mut store)
                .await
                .map(Exports::Destination),
            Code::Source(pre) => pre.instantiate_async(&mut store).await.map(Exports::Source),
            Code::Stateful(pre) => pre
                .instantiate_async(&mut store)
                .await
                .map(Exports::Stateful),
        }
        .map_err(|e| classify_trap(e, &store, limits))?;
        Ok(Warm {
            store,
            exports,
            resources: HashMap::new(),
            calls: 0,
        })
    }

    /// A store for one instance: frozen clocks, the memory cap, and the
    /// epoch callback that enforces the call's budget.
    fn new_store(&self, clock: &Arc<CallClock>) -> Store<State> {
        let limits = self.inner.limits;
        let state = State {
            wasi: WasiCtx::builder()
                .wall_clock(FixedWallClock)
                .monotonic_clock(FixedMonotonicClock)
                .build(),
            table: ResourceTable::new(),
            limiter: Limiter::new(limits.memory_mb as usize * 1024 * 1024),
            clock: Arc::clone(clock),
            budget: Duration::from_millis(limits.timeout_ms),
        };
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|s| &mut s.limiter);
        // At every tick: past the call's budget, stop the guest (a trap that
        // `classify_trap` reports as a timeout); else let other tasks run,
        // and note when, so the wait for the executor is not charged to it.
        store.epoch_deadline_callback(|ctx| {
            let data = ctx.data();
            let now = Instant::now();
            Ok(if data.clock.own(now) >= data.budget {
                UpdateDeadline::Interrupt
            } else {
                data.clock.yielded(now);
                UpdateDeadline::Yield(1)
            })
        });
        arm(&mut store, clock);
        store
    }
}

/// Gives the store the call's clock (its budget is checked at every tick)
/// and clears the memory-denied flag.
fn arm(store: &mut Store<State>, clock: &Arc<CallClock>) {
    let data = store.data_mut();
    data.clock = Arc::clone(clock);
    data.limiter.denied = false;
    store.set_epoch_deadline(1);
}

/// The time of one call: since when it runs, and how long it waited for the
/// executor after the guest yielded at an epoch tick (the relay's time, not
/// the plugin's). Shared by the call's future and its store's epoch
/// callback; one task uses it at a time.
struct CallClock {
    start: Instant,
    /// Nanoseconds from `start` to the last yield, plus one; 0 when the
    /// guest is not waiting to be resumed.
    yielded_at: AtomicU64,
    stalled_ns: AtomicU64,
}

impl CallClock {
    fn start() -> Arc<CallClock> {
        Arc::new(CallClock {
            start: Instant::now(),
            yielded_at: AtomicU64::new(0),
            stalled_ns: AtomicU64::new(0),
        })
    }

    fn elapsed(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.start)
    }

    fn nanos(&self, now: Instant) -> u64 {
        u64::try_from(self.elapsed(now).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The guest yielded to the executor at `now`.
    fn yielded(&self, now: Instant) {
        self.yielded_at
            .store(self.nanos(now).saturating_add(1), Relaxed);
    }

    /// The call's future is polled again at `now`.
    fn resumed(&self, now: Instant) {
        let at = self.yielded_at.swap(0, Relaxed);
        if at != 0 {
            let waited = self.nanos(now).saturating_sub(at - 1);
            self.stalled_ns.fetch_add(waited, Relaxed);
        }
    }

    /// Time the call has used: elapsed, less its waits for the executor.
    fn own(&self, now: Instant) -> Duration {
        self.elapsed(now)
            .saturating_sub(Duration::from_nanos(self.stalled_ns.load(Relaxed)))
    }
}

/// The WASI wall clock: always [`FIXED_WALL_CLOCK`].
struct FixedWallClock;

impl wasmtime_wasi::HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        FIXED_WALL_CLOCK
    }
}

/// The WASI monotonic clock: never moves. (A guest may still sleep: that is
/// a real wait, bounded like any other by the call's time.)
struct FixedMonotonicClock;

impl wasmtime_wasi::HostMonotonicClock for FixedMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// A warm instance out of its pool for one call.
struct Lease<'p> {
    plugin: &'p Loaded,
    warm: Warm,
    limits: Limits,
    /// Keeps the epoch ticking until the lease ends or is dropped.
    _running: Running,
}

impl<'p> Lease<'p> {
    fn new(plugin: &'p Loaded, warm: Warm, limits: Limits, running: Running) -> Lease<'p> {
        Lease {
            plugin,
            warm,
            limits,
            _running: running,
        }
    }

    /// Turns the call's result into ours and gives the instance back to the
    /// pool, unless it trapped, is worn out, or isolation is `fresh`.
    fn end<T>(
        mut self,
        result: wasmtime::Result<Result<T, PluginError>>,
    ) -> Result<T, PluginError> {
        let result = result
            .map_err(|e| classify_trap(e, &self.warm.store, self.limits))
            .and_then(|r| r);
        self.warm.calls += 1;
        crate::metrics::plugin_call(&self.plugin.name, result.is_ok());
        let trapped = matches!(
            result,
            Err(PluginError::Timeout { .. } | PluginError::Memory { .. } | PluginError::Trap(_))
        );
        if !trapped && !self.limits.fresh && self.warm.calls < MAX_CALLS_PER_INSTANCE {
            let mut idle = lock(&self.plugin.idle);
            if idle.len() < MAX_IDLE {
                idle.push(self.warm);
            }
        }
        result
    }
}

/// Runs a plugin call to its end on a thread that may block (the `render`
/// command); never on an async worker.
pub fn block_on<F: Future>(f: F) -> F::Output {
    wasmtime_wasi::runtime::in_tokio(f)
}

/// A webhook's destination, as a destination plugin sees it.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
}

/// What a source plugin found in a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceOutput {
    Events(Vec<SourceEvent>),
    /// More events than allowed (how many): the caller refuses the body.
    TooMany(usize),
}

/// One event a source plugin found; `data` is JSON text. Not yet checked
/// against §5's rules: `source` does that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEvent {
    pub id: Option<String>,
    pub event_type: String,
    pub time: Option<String>,
    pub data: String,
}

/// The incident an event belongs to, as a stateful destination sees it
/// (DESIGN §18, §19): its key, and what the destination's last `classify`
/// for this webhook and key kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Incident {
    pub key: String,
    pub state: Option<String>,
}

impl Incident {
    fn wit(&self) -> sd::Context {
        sd::Context {
            incident_key: self.key.clone(),
            state: self.state.clone(),
        }
    }

    /// Applies a state change (the state later responses of the same
    /// attempt are classified with).
    pub fn apply(&mut self, change: &StateChange) {
        match change {
            StateChange::Keep => {}
            StateChange::Set(s) => self.state = Some(s.clone()),
            StateChange::Clear => self.state = None,
        }
    }
}

/// What a stateful destination's `classify` does to the stored state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateChange {
    Keep,
    Set(String),
    Clear,
}

/// A destination's verdict on a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Retry(Option<Duration>),
    Fail(String),
    Disable(String),
}

fn check_payload(content_type: &str, body: &[u8]) -> Result<(), PluginError> {
    if body.len() > MAX_OUTPUT_BYTES {
        return Err(PluginError::Output(format!(
            "a body of {} bytes is over the {MAX_OUTPUT_BYTES}-byte limit",
            body.len()
        )));
    }
    if http::HeaderValue::from_str(content_type).is_err() {
        return Err(PluginError::Output(format!(
            "content type {content_type:?} is not a valid header value"
        )));
    }
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if (essence == "application/json" || essence.ends_with("+json"))
        && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err()
    {
        return Err(PluginError::Output(format!(
            "the body is labelled {essence} but is not valid JSON"
        )));
    }
    Ok(())
}

fn classify_trap(e: wasmtime::Error, store: &Store<State>, limits: Limits) -> PluginError {
    if store.data().limiter.denied {
        return PluginError::Memory {
            memory_mb: limits.memory_mb,
        };
    }
    if let Some(full) = e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
        return PluginError::NoInstance(full.to_string());
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => PluginError::Timeout {
            timeout_ms: limits.timeout_ms,
        },
        Some(trap) => PluginError::Trap(trap.to_string()),
        None => PluginError::Trap(format!("{e:#}")),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Reads a `.wasm` file and loads it under its file stem.
pub fn load_file(host: &PluginHost, path: &Path) -> Result<(), String> {
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| format!("{} has no usable name", path.display()))?
        .to_owned();
    let result = std::fs::read(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
        .and_then(|bytes| {
            // The catalogue only: `get` would compile a built-in of the
            // same name for nothing.
            let catalog = host.inner.catalog.load();
            if [Kind::Formatter, Kind::Destination, Kind::Source]
                .iter()
                .filter_map(|k| catalog.by_key.get(&(*k, name.clone())))
                .any(|l| {
                    l.sha256 == hex::encode(Sha256::digest(&bytes))
                        && l.source == path.display().to_string()
                })
            {
                return Ok(None);
            }
            host.compile(&name, &bytes, &path.display().to_string())
                .map(Some)
        });
    match result {
        Ok(Some(loaded)) => {
            tracing::info!(plugin = %name, kind = loaded.kind.as_str(), sha256 = %loaded.sha256, "plugin loaded");
            host.install(loaded);
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(e) => {
            host.record_error(&name, e.clone());
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(memory_mb: u32, timeout_ms: u64) -> PluginHost {
        PluginHost::new(
            Limits {
                memory_mb,
                timeout_ms,
                fresh: false,
            },
            None,
        )
        .expect("host")
    }

    /// Instantiates a component written in WAT in a store set up as for
    /// any plugin (its limiter, the engine's pool).
    fn instantiate_wat(host: &PluginHost, wat: &str) -> (Store<State>, Result<(), PluginError>) {
        let bytes = wat::parse_str(wat).expect("valid WAT");
        let component = Component::from_binary(&host.inner.engine, &bytes).expect("a component");
        let linker = Linker::<State>::new(&host.inner.engine);
        let mut store = host.new_store(&CallClock::start());
        let result = block_on(linker.instantiate_async(&mut store, &component))
            .map(|_| ())
            .map_err(|e| classify_trap(e, &store, host.limits()));
        (store, result)
    }

    /// A component with one core instance per entry, each with a memory of
    /// that many 64 KiB pages.
    fn memories(pages: &[u32]) -> String {
        let mut wat = String::from("(component\n");
        for (i, p) in pages.iter().enumerate() {
            wat += &format!(
                "  (core module $m{i} (memory (export \"mem\") {p}))\n  (core instance (instantiate $m{i}))\n"
            );
        }
        wat + ")"
    }

    #[test]
    fn builtins_compile_on_first_use_as_the_kind_they_declare() {
        let host = host(64, 5000);
        assert_eq!(host.inner.catalog.load().by_key.len(), 0);
        assert_eq!(
            host.statuses()
                .iter()
                .filter(|s| s.source.as_deref() == Some("builtin") && s.loaded_at.is_none())
                .count(),
            BUILTINS.len()
        );
        for (name, kind, _) in BUILTINS {
            let k = if *kind == "formatter" {
                Kind::Formatter
            } else {
                Kind::Destination
            };
            let loaded = host.get(k, name).expect("compiles");
            assert_eq!(loaded.kind, k, "{name}");
        }
        assert_eq!(host.inner.catalog.load().by_key.len(), BUILTINS.len());
        assert!(host.statuses().iter().all(|s| s.loaded_at.is_some()));
        // The ticket destinations use the stateful world; the 0.1.0 ones
        // load beside them unchanged.
        for name in ["connectwise", "autotask", "halopsa", "pagerduty"] {
            assert!(host.is_stateful(name), "{name}");
        }
        for name in ["splunk_hec", "slack", "twilio_sms", "twilio_voice"] {
            assert!(host.get(Kind::Destination, name).is_some(), "{name}");
            assert!(!host.is_stateful(name), "{name}");
        }
    }

    #[test]
    fn a_stateful_destination_gets_the_incident_and_returns_state_changes() {
        let host = host(64, 5000);
        let options = r#"{"company_id":"a","public_key":"p","private_key":"k","client_id":"c","board":"SOC","company":"Acme"}"#;
        let payload = crate::payload::Payload {
            content_type: "application/json".into(),
            body: bytes::Bytes::from_static(
                br#"{"id":"e","type":"t","time":"2026-01-01T00:00:00Z","data":{"status":"resolved"}}"#,
            ),
        };
        let target = Target {
            url: "https://cw.example/apis/3.0".into(),
            method: "POST".into(),
            headers: vec![],
            timeout: Duration::from_secs(5),
        };
        let incident = Incident {
            key: "INC-1".into(),
            state: Some(r#"{"ticket":12}"#.into()),
        };
        let reqs = block_on(host.build_in("connectwise", options, &payload, &target, &incident))
            .expect("build");
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].method, http::Method::PATCH);
        assert_eq!(
            reqs[0].url,
            "https://cw.example/apis/3.0/service/tickets/12"
        );
        // Without the incident (the 0.1.0 entry point) there is no ticket.
        let err = block_on(host.build("connectwise", options, &payload, &target)).unwrap_err();
        assert!(err.to_string().contains("nothing to close"), "{err}");
        let response = crate::deliver::InResponse {
            status: 200,
            headers: vec![],
            body: bytes::Bytes::from_static(br#"{"id":12}"#),
        };
        let verdict =
            block_on(host.classify_in("connectwise", options, &response, &incident)).expect("ok");
        assert_eq!(verdict, (Outcome::Success, StateChange::Clear));
        let created = Incident {
            key: "INC-2".into(),
            state: None,
        };
        let verdict =
            block_on(host.classify_in("connectwise", options, &response, &created)).expect("ok");
        assert_eq!(
            verdict,
            (
                Outcome::Success,
                StateChange::Set(r#"{"ticket":12}"#.into())
            )
        );
        // A 0.1.0 destination never changes state.
        let verdict =
            block_on(host.classify_in("splunk_hec", r#"{"token":"t"}"#, &response, &incident))
                .expect("ok");
        assert_eq!(verdict, (Outcome::Success, StateChange::Keep));
    }

    #[test]
    fn the_memory_cap_is_for_all_memories_of_an_instance_together() {
        // 4 MiB is 64 pages.
        let host = host(4, 1000);
        let (_, one) = instantiate_wat(&host, &memories(&[40]));
        assert_eq!(one, Ok(()));
        let (_, both_fit) = instantiate_wat(&host, &memories(&[32, 32]));
        assert_eq!(both_fit, Ok(()));
        // Each fits the cap alone; together they are 5 MiB.
        let (_, two) = instantiate_wat(&host, &memories(&[40, 40]));
        assert_eq!(two, Err(PluginError::Memory { memory_mb: 4 }));
        // More memories than an instance may have, however small: refused
        // when the file is loaded.
        let three = wat::parse_str(memories(&[1, 1, 1])).expect("valid WAT");
        let refused = host
            .compile("many", &three, "test")
            .err()
            .unwrap_or_default();
        assert!(refused.contains("3 Wasm linear memories"), "{refused:?}");
    }

    #[test]
    fn growing_one_of_two_memories_counts_against_the_shared_cap() {
        let host = host(4, 1000);
        // Two memories of 16 pages; the second grows by 40 pages: 72 in all.
        let wat = r#"(component
            (core module $a (memory (export "mem") 16))
            (core instance (instantiate $a))
            (core module $b
              (memory 16)
              (func $grow (drop (memory.grow (i32.const 40))) (if (i32.eq (memory.size) (i32.const 16)) (then unreachable)))
              (start $grow))
            (core instance (instantiate $b)))"#;
        let (store, grown) = instantiate_wat(&host, wat);
        assert_eq!(grown, Err(PluginError::Memory { memory_mb: 4 }));
        assert_eq!(store.data().limiter.total_bytes, 32 * 65536);
    }

    #[test]
    fn a_full_instance_pool_is_a_temporary_failure() {
        let host = host(4, 1000);
        let empty = "(component (core module $m) (core instance (instantiate $m)))";
        let mut held = Vec::new();
        for _ in 0..POOL_SLOTS {
            let (store, r) = instantiate_wat(&host, empty);
            assert_eq!(r, Ok(()));
            held.push(store);
        }
        let (_, full) = instantiate_wat(&host, empty);
        assert!(matches!(full, Err(PluginError::NoInstance(_))), "{full:?}");
        assert!(full.unwrap_err().is_temporary());
        drop(held);
        let (_, again) = instantiate_wat(&host, empty);
        assert_eq!(again, Ok(()));
    }

    #[test]
    fn a_call_starved_by_a_busy_executor_is_temporary_and_a_loop_is_not() {
        let host = host(32, 100);
        let path = Path::new(relay_builtins::WASM_DIR).join("relay_test_hostile.wasm");
        load_file(&host, &path).expect("load the hostile fixture");
        let event = crate::event::Event {
            id: "ev-1".into(),
            event_type: "x".into(),
            time: "2026-11-22T10:00:00Z".into(),
            data: serde_json::json!({}).into(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let looping = r#"{"mode":"loop"}"#;
        // Another task holds the only worker 80 ms at a time: the plugin
        // runs about one epoch tick (2 ms) in every 82.
        let started = Instant::now();
        let starved = rt.block_on(async {
            let hog = tokio::spawn(async {
                loop {
                    std::thread::sleep(Duration::from_millis(80));
                    tokio::task::yield_now().await;
                }
            });
            let r = host.format("relay_test_hostile", looping, &event).await;
            hog.abort();
            r
        });
        let took = started.elapsed();
        assert_eq!(
            starved.clone().map(|_| ()),
            Err(PluginError::Busy {
                timeout_ms: 100,
                wall_ms: 200
            })
        );
        assert!(starved.unwrap_err().is_temporary());
        assert!(took < Duration::from_millis(1000), "took {took:?}");
        // With the worker free, the same loop uses its own 100 ms: final.
        let started = Instant::now();
        let own = rt.block_on(host.format("relay_test_hostile", looping, &event));
        let took = started.elapsed();
        assert_eq!(
            own.clone().map(|_| ()),
            Err(PluginError::Timeout { timeout_ms: 100 })
        );
        assert!(!own.unwrap_err().is_temporary());
        assert!(took < Duration::from_millis(1000), "took {took:?}");
    }

    #[test]
    fn only_failures_that_are_not_the_plugins_doing_are_temporary() {
        let temporary = [
            PluginError::NotLoaded {
                kind: "formatter",
                name: "x".into(),
            },
            PluginError::Busy {
                timeout_ms: 1,
                wall_ms: 2,
            },
            PluginError::NoInstance("full".into()),
        ];
        let fin = [
            PluginError::Options("bad".into()),
            PluginError::Returned("no".into()),
            PluginError::Timeout { timeout_ms: 1 },
            PluginError::Memory { memory_mb: 1 },
            PluginError::Trap("boom".into()),
            PluginError::Output("bad".into()),
        ];
        for e in temporary {
            let d = e.into_delivery("p");
            assert!(d.retryable(), "{d}");
        }
        for e in fin {
            let d = e.into_delivery("p");
            assert!(!d.retryable(), "{d}");
        }
    }
}
