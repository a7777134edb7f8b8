//! The plugin host: formatters and destinations as sandboxed WebAssembly
//! components (DESIGN.md §11), run by wasmtime.
//!
//! Owns: the `Engine` (pooling allocator, epoch interruption), compiling and
//! caching components, the catalogue of loaded plugins (built-ins embedded
//! in the binary, overridden by `*.wasm` files in `plugins.dir`), the warm
//! instance pools, and every call into a plugin.
//!
//! Sandbox: WASI is linked with an empty context (no files, env, network,
//! clock or stdio), memory is capped per store (`plugins.memory_mb`), every
//! call has a deadline (`plugins.timeout_ms`), and output is capped.
//!
//! Calls are async (wasmtime runs the guest on a fiber): they run on the
//! caller's tokio worker without a thread hop, and a long call yields back
//! to the executor at every epoch tick, so a plugin that loops never holds a
//! worker thread for more than [`ticker::TICK`]. The synchronous `render` command
//! uses [`block_on`].
//! A trap of any kind drops the instance; the error fails only the delivery
//! that made the call. Plugins never do I/O: the core sends what they build.

mod ticker;
pub mod watch;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
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
}

use bindings::destination::relay::plugin::types as dt;
use bindings::formatter::relay::plugin::types as ft;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Formatter,
    Destination,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Formatter => "formatter",
            Kind::Destination => "destination",
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
    #[error("tried to use more than its {memory_mb} MiB memory limit and was stopped")]
    Memory { memory_mb: u32 },
    #[error("trapped: {0}")]
    Trap(String),
    #[error("produced invalid output: {0}")]
    Output(String),
}

/// Sandbox limits, from `plugins:` in relay.yaml.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub memory_mb: u32,
    pub timeout_ms: u64,
    /// A new instance for every call (`plugins.isolation: fresh`).
    pub fresh: bool,
}

/// What a store carries: an empty WASI context, the memory limiter and the
/// current call's deadline.
pub struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    deadline: Instant,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

struct Limiter {
    memory_bytes: usize,
    denied: bool,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired <= self.memory_bytes;
        self.denied |= !ok;
        Ok(ok)
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
}

enum Exports {
    Formatter(bindings::formatter::Formatter),
    Destination(bindings::destination::Destination),
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
    fmt_linker: Linker<State>,
    dst_linker: Linker<State>,
    limits: Limits,
    catalog: ArcSwap<Catalog>,
    errors: Mutex<BTreeMap<String, String>>,
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
            .linear_memory_keep_resident(1024 * 1024)
            .table_keep_resident(64 * 1024);
        let mut config = wasmtime::Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| HostError::Engine(format!("{e:#}")))?;
        let mut fmt_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut fmt_linker)
            .map_err(|e| HostError::Engine(format!("{e:#}")))?;
        let mut dst_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut dst_linker)
            .map_err(|e| HostError::Engine(format!("{e:#}")))?;
        let ticker = Ticker::start(&engine);
        if let Some(dir) = &cache_dir {
            let _ = std::fs::create_dir_all(dir);
        }
        let host = PluginHost {
            inner: Arc::new(HostInner {
                engine,
                fmt_linker,
                dst_linker,
                limits,
                catalog: ArcSwap::from_pointee(Catalog::default()),
                errors: Mutex::new(BTreeMap::new()),
                cache_dir,
                ticker,
            }),
        };
        for (name, kind, bytes) in BUILTINS {
            let loaded =
                host.compile(name, bytes, "builtin")
                    .map_err(|message| HostError::Builtin {
                        name: name.to_string(),
                        message,
                    })?;
            if loaded.kind.as_str() != *kind {
                return Err(HostError::Builtin {
                    name: name.to_string(),
                    message: format!("declared as {kind} but implements {}", loaded.kind.as_str()),
                });
            }
            host.install(loaded);
        }
        Ok(host)
    }

    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// Names of loaded plugins of one kind.
    pub fn names(&self, kind: Kind) -> Vec<String> {
        let mut v: Vec<String> = self
            .inner
            .catalog
            .load()
            .by_key
            .keys()
            .filter(|(k, _)| *k == kind)
            .map(|(_, n)| n.clone())
            .collect();
        v.sort();
        v
    }

    pub fn get(&self, kind: Kind, name: &str) -> Option<Arc<Loaded>> {
        self.inner
            .catalog
            .load()
            .by_key
            .get(&(kind, name.to_owned()))
            .cloned()
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
        let code = match self.inner.fmt_linker.instantiate_pre(&component) {
            Ok(pre) => match bindings::formatter::FormatterPre::new(pre) {
                Ok(p) => Some(Code::Formatter(p)),
                Err(_) => None,
            },
            Err(_) => None,
        };
        let code = match code {
            Some(c) => c,
            None => {
                let pre = self
                    .inner
                    .dst_linker
                    .instantiate_pre(&component)
                    .map_err(|e| {
                        format!("imports something the sandbox does not provide: {e:#}")
                    })?;
                Code::Destination(bindings::destination::DestinationPre::new(pre).map_err(|_| {
                    "does not implement the relay:plugin/formatter or relay:plugin/destination world (see sdk/wit)"
                        .to_string()
                })?)
            }
        };
        let kind = match code {
            Code::Formatter(_) => Kind::Formatter,
            Code::Destination(_) => Kind::Destination,
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

    /// Forgets a file plugin: the built-in of that name (if any) serves again.
    pub fn unload_file(&self, name: &str) {
        let builtins: Vec<Loaded> = BUILTINS
            .iter()
            .filter(|(n, _, _)| *n == name)
            .filter_map(|(n, _, bytes)| self.compile(n, bytes, "builtin").ok())
            .collect();
        self.swap(|by_key| by_key.retain(|(_, n), _| n != name));
        for b in builtins {
            self.install(b);
        }
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
        let (lease, _) = self.lease(&plugin, options).await?;
        lease.end(Ok(Ok(())))
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
    ) -> Result<crate::format::Payload, PluginError> {
        let plugin = self.loaded(Kind::Formatter, name)?;
        let data =
            serde_json::to_string(&event.data).map_err(|e| PluginError::Output(e.to_string()))?;
        let wit_event = ft::Event {
            id: event.id.clone(),
            event_type: event.event_type.clone(),
            time: event.time.clone(),
            data,
        };
        let (mut lease, resource) = self.lease(&plugin, options).await?;
        let result = match &lease.warm.exports {
            Exports::Formatter(f) => f
                .relay_plugin_format()
                .formatter()
                .call_format(&mut lease.warm.store, resource, &wit_event)
                .await
                .map(|r| r.map_err(PluginError::Returned)),
            Exports::Destination(_) => Ok(Err(PluginError::Output("not a formatter".into()))),
        };
        let payload = lease.end(result)?;
        check_payload(&payload.content_type, &payload.body)?;
        Ok(crate::format::Payload {
            content_type: payload.content_type,
            body: bytes::Bytes::from(payload.body),
        })
    }

    /// Asks a destination for the requests that deliver `payload`.
    pub async fn build(
        &self,
        name: &str,
        options: &str,
        payload: &crate::format::Payload,
        target: &Target,
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
        let (mut lease, resource) = self.lease(&plugin, options).await?;
        let result = match &lease.warm.exports {
            Exports::Destination(d) => d
                .relay_plugin_deliver()
                .destination()
                .call_build(&mut lease.warm.store, resource, &wit_payload, &wit_target)
                .await
                .map(|r| r.map_err(PluginError::Returned)),
            Exports::Formatter(_) => Ok(Err(PluginError::Output("not a destination".into()))),
        };
        let requests = lease.end(result)?;
        if requests.is_empty() {
            return Err(PluginError::Output("built no request".into()));
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

    /// Asks a destination what a response means.
    pub async fn classify(
        &self,
        name: &str,
        options: &str,
        response: &crate::deliver::InResponse,
    ) -> Result<Outcome, PluginError> {
        let plugin = self.loaded(Kind::Destination, name)?;
        let wit_response = dt::Response {
            status: response.status,
            headers: response.headers.clone(),
            body: response.body.to_vec(),
        };
        let (mut lease, resource) = self.lease(&plugin, options).await?;
        let result = match &lease.warm.exports {
            Exports::Destination(d) => d
                .relay_plugin_deliver()
                .destination()
                .call_classify(&mut lease.warm.store, resource, &wit_response)
                .await
                .map(|o| {
                    Ok(match o {
                        dt::Outcome::Success => Outcome::Success,
                        dt::Outcome::Retry(ms) => {
                            Outcome::Retry(ms.map(|m| Duration::from_millis(u64::from(m))))
                        }
                        dt::Outcome::Fail(r) => Outcome::Fail(r),
                        dt::Outcome::Disable(r) => Outcome::Disable(r),
                    })
                }),
            Exports::Formatter(_) => Ok(Err(PluginError::Output("not a destination".into()))),
        };
        lease.end(result)
    }

    /// Takes a warm instance of `plugin` (or makes one) and the resource
    /// built from `options`, its deadline and memory cap armed. [`Lease::end`]
    /// gives it back; a lease dropped mid-call (its future cancelled) takes
    /// the instance with it.
    async fn lease<'p>(
        &self,
        plugin: &'p Loaded,
        options: &str,
    ) -> Result<(Lease<'p>, ResourceAny), PluginError> {
        let limits = self.inner.limits;
        let running = self.inner.ticker.enter();
        let idle = lock(&plugin.idle).pop();
        let mut warm = match idle {
            Some(w) => w,
            None => self.instantiate(plugin).await?,
        };
        arm(&mut warm.store, limits);
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

    async fn instantiate(&self, plugin: &Loaded) -> Result<Warm, PluginError> {
        let limits = self.inner.limits;
        let state = State {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limiter: Limiter {
                memory_bytes: limits.memory_mb as usize * 1024 * 1024,
                denied: false,
            },
            deadline: Instant::now(),
        };
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|s| &mut s.limiter);
        // At every tick: past the deadline, stop the guest (a trap that
        // `classify_trap` reports as a timeout); else let other tasks run.
        store.epoch_deadline_callback(|ctx| {
            Ok(if Instant::now() >= ctx.data().deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        arm(&mut store, limits);
        let exports = match &plugin.code {
            Code::Formatter(pre) => pre
                .instantiate_async(&mut store)
                .await
                .map(Exports::Formatter),
            Code::Destination(pre) => pre
                .instantiate_async(&mut store)
                .await
                .map(Exports::Destination),
        }
        .map_err(|e| classify_trap(e, &store, limits))?;
        Ok(Warm {
            store,
            exports,
            resources: HashMap::new(),
            calls: 0,
        })
    }
}

/// Starts a call's clock: the deadline is `timeout_ms` from now, checked at
/// the next tick; the memory-denied flag is cleared.
fn arm(store: &mut Store<State>, limits: Limits) {
    let data = store.data_mut();
    data.deadline = Instant::now() + Duration::from_millis(limits.timeout_ms);
    data.limiter.denied = false;
    store.set_epoch_deadline(1);
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
            if host
                .get(Kind::Formatter, &name)
                .or_else(|| host.get(Kind::Destination, &name))
                .is_some_and(|l| {
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
