//! The HTTP API (DESIGN.md §5, §10): routing, bearer-token roles, JSON errors.
//!
//! Owns: request framing and access control. Business rules live in
//! `ingest`, `source`, `dispatch`, `history` and `webhook`; this module only
//! calls them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{Config, LimitsConfig, Role};
use crate::dispatch::{Dispatcher, Job};
use crate::event::{Event, new_id, now_ms};
use crate::history;
use crate::store::{self, Storage, Store, StoreError};
use crate::webhook::{Registry, Webhook};

pub(crate) mod escalations;
pub(crate) mod events;
mod incidents;
mod webhooks;
pub(crate) use incidents::acknowledge;
pub(crate) use webhooks::set_active;
pub use webhooks::{looks_like_credential, looks_secret, webhook_view};

/// Settings the API reads on every request; swapped on config reload.
pub struct Live {
    tokens: Vec<(Role, [u8; 32])>,
    /// Some token has the `metrics` role: `/metrics` then needs a token.
    metrics_protected: bool,
    pub limits: LimitsConfig,
    pub event_types: Option<BTreeMap<String, String>>,
    /// `sources:`, compiled (`POST /api/v1/sources/{name}`).
    pub sources: Arc<crate::source::Sources>,
}

impl Live {
    pub fn from_config(c: &Config) -> Live {
        Live {
            tokens: c
                .auth
                .tokens
                .iter()
                .map(|t| (t.role, Sha256::digest(t.token.expose().as_bytes()).into()))
                .collect(),
            metrics_protected: c.auth.tokens.iter().any(|t| t.role == Role::Metrics),
            limits: c.limits.clone(),
            event_types: c.event_types.clone(),
            sources: Arc::new(crate::source::Sources::from_config(&c.sources)),
        }
    }

    /// The role of a token, compared in constant time against every
    /// configured token, with the token's digest (what a console session
    /// keeps instead of the token).
    pub(crate) fn role_of(&self, token: &str) -> Option<(Role, [u8; 32])> {
        let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        let mut role = None;
        for (r, hash) in &self.tokens {
            if bool::from(hash.ct_eq(&digest)) {
                role = Some(*r);
            }
        }
        role.map(|r| (r, digest))
    }

    /// Whether a token with this digest still has this role (a reload may
    /// have removed it: its console sessions end).
    pub(crate) fn still_valid(&self, digest: &[u8; 32], role: Role) -> bool {
        self.tokens
            .iter()
            .any(|(r, hash)| *r == role && bool::from(hash.ct_eq(digest)))
    }
}

pub struct AppState {
    pub store: Store,
    pub registry: Arc<Registry>,
    pub dispatcher: Dispatcher,
    pub live: ArcSwap<Live>,
    /// The configuration in force (webhooks from the file, catalogue, network).
    pub config: ArcSwap<Config>,
    /// Loaded formatter and destination plugins (validation, `/api/v1/plugins`).
    pub plugins: crate::plugin::PluginHost,
    /// Held while the registry is rebuilt (API webhook changes, config
    /// reload), so a rebuild never mixes an old config with new API webhooks.
    pub rebuild: tokio::sync::Mutex<()>,
    /// Set when the relay is stopping: ingest answers 503.
    pub stopping: std::sync::atomic::AtomicBool,
    /// The queue depth `/metrics` shows, read from the store at most once a second.
    queue_depth: Arc<QueueDepthCache>,
}

impl AppState {
    pub fn new(
        store: Store,
        registry: Arc<Registry>,
        dispatcher: Dispatcher,
        plugins: crate::plugin::PluginHost,
        cfg: &Config,
    ) -> AppState {
        AppState {
            store,
            registry,
            dispatcher,
            plugins,
            live: ArcSwap::from_pointee(Live::from_config(cfg)),
            config: ArcSwap::from_pointee(cfg.clone()),
            rebuild: tokio::sync::Mutex::new(()),
            stopping: std::sync::atomic::AtomicBool::new(false),
            queue_depth: Arc::default(),
        }
    }

    /// Re-reads the API webhooks and rebuilds the registry with the
    /// configuration in force.
    pub async fn refresh_registry(&self) -> Result<(), StoreError> {
        let _guard = self.rebuild.lock().await;
        let api = self.store.load_api_webhooks().await?;
        self.registry
            .rebuild(&self.config.load(), api, &self.store)
            .await
    }

    /// Adds or replaces one API webhook in the registry (create, update):
    /// O(log n), the others untouched.
    pub async fn upsert_webhook(&self, stored: crate::store::StoredWebhook) {
        let _guard = self.rebuild.lock().await;
        self.registry.upsert(crate::webhook::Declared {
            spec: stored.spec,
            source: crate::webhook::Source::Api,
            created_at_ms: stored.created_at_ms,
            updated_at_ms: stored.updated_at_ms,
        });
    }

    /// Removes one API webhook from the registry (delete).
    pub async fn remove_webhook(&self, id: &str) {
        let _guard = self.rebuild.lock().await;
        self.registry.remove(id);
    }
}

pub(crate) type Shared = Arc<AppState>;

/// A JSON error: `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds for a `Retry-After` header (503s the client should retry).
    retry_after_s: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after_s: None,
        }
    }
    /// Adds `Retry-After: seconds` to the answer.
    pub fn retry_after(mut self, seconds: u32) -> ApiError {
        self.retry_after_s = Some(seconds);
        self
    }
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }
    pub(crate) fn message(&self) -> &str {
        &self.message
    }
    pub(crate) fn not_found(what: &str, id: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no {what} with id {id:?}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            axum::Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response();
        if let Some(s) = self.retry_after_s {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, http::HeaderValue::from(s));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "storage failure while serving a request");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_error",
            e.to_string(),
        )
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token needed (`/healthz`, the OpenAPI document).
    Public,
    /// `/metrics`: public while no token has the `metrics` role; then a
    /// metrics, viewer or admin token.
    Metrics,
    /// Post events: ingest or admin.
    Ingest,
    /// Read: viewer or admin.
    Read,
    /// Change anything: admin.
    Admin,
}

impl Access {
    /// The roles a route accepts.
    pub fn roles(self) -> &'static [Role] {
        match self {
            Access::Public => &[],
            Access::Metrics => &[Role::Metrics, Role::Viewer, Role::Admin],
            Access::Ingest => &[Role::Ingest, Role::Admin],
            Access::Read => &[Role::Viewer, Role::Admin],
            Access::Admin => &[Role::Admin],
        }
    }
}

/// One route of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    /// axum syntax: `{id}` for a path parameter (as in OpenAPI).
    pub path: &'static str,
    pub access: Access,
}

const fn route(method: &'static str, path: &'static str, access: Access) -> Route {
    Route {
        method,
        path,
        access,
    }
}

/// Every route of the API. The router is built from this list (see
/// [`router`]), access control included, and `tests/admin.rs` checks it
/// against `docs/openapi.json` both ways — so the three cannot drift.
pub const ROUTES: &[Route] = &[
    route("GET", "/healthz", Access::Public),
    route("GET", "/metrics", Access::Metrics),
    route("GET", "/api/v1/openapi.json", Access::Public),
    route("POST", "/api/v1/events", Access::Ingest),
    route("POST", "/api/v1/events/{id}/replay", Access::Admin),
    route("GET", "/api/v1/event-types", Access::Read),
    route("GET", "/api/v1/plugins", Access::Read),
    route("GET", "/api/v1/webhooks", Access::Read),
    route("POST", "/api/v1/webhooks", Access::Admin),
    route("GET", "/api/v1/webhooks/{id}", Access::Read),
    route("PUT", "/api/v1/webhooks/{id}", Access::Admin),
    route("DELETE", "/api/v1/webhooks/{id}", Access::Admin),
    route("POST", "/api/v1/webhooks/{id}/test", Access::Admin),
    route("GET", "/api/v1/webhooks/{id}/deliveries", Access::Read),
    route("POST", "/api/v1/deliveries/{id}/resend", Access::Admin),
    route("POST", "/api/v1/sources/{name}", Access::Ingest),
    route("POST", "/api/v1/test", Access::Admin),
    route("GET", "/api/v1/events", Access::Read),
    route("GET", "/api/v1/events/{id}", Access::Read),
    route("GET", "/api/v1/incidents", Access::Read),
    route("GET", "/api/v1/incidents/{id}", Access::Read),
    route("POST", "/api/v1/incidents/{id}/ack", Access::Admin),
    route("POST", "/api/v1/incidents/pagerduty", Access::Public),
    route("GET", "/api/v1/escalations", Access::Read),
    route("POST", "/api/v1/escalations", Access::Admin),
    route("DELETE", "/api/v1/escalations/{name}", Access::Admin),
];

/// Every route of the API (see [`ROUTES`]).
pub fn routes() -> &'static [Route] {
    ROUTES
}

/// The handler of one route of [`ROUTES`].
fn endpoint(method: &str, path: &str) -> Option<MethodRouter<Shared>> {
    Some(match (method, path) {
        ("GET", "/healthz") => get(healthz),
        ("GET", "/metrics") => get(metrics),
        ("GET", "/api/v1/openapi.json") => get(openapi),
        ("POST", "/api/v1/events") => post(post_events),
        ("POST", "/api/v1/events/{id}/replay") => post(replay_event),
        ("GET", "/api/v1/event-types") => get(event_types),
        ("GET", "/api/v1/plugins") => get(plugins),
        ("GET", "/api/v1/webhooks") => get(webhooks::list),
        ("POST", "/api/v1/webhooks") => post(webhooks::create),
        ("GET", "/api/v1/webhooks/{id}") => get(webhooks::get_one),
        ("PUT", "/api/v1/webhooks/{id}") => put(webhooks::update),
        ("DELETE", "/api/v1/webhooks/{id}") => delete(webhooks::delete),
        ("POST", "/api/v1/webhooks/{id}/test") => post(test_webhook),
        ("GET", "/api/v1/webhooks/{id}/deliveries") => get(webhook_deliveries),
        ("POST", "/api/v1/deliveries/{id}/resend") => post(resend_delivery),
        ("POST", "/api/v1/sources/{name}") => post(post_source),
        ("POST", "/api/v1/test") => post(test_all),
        ("GET", "/api/v1/events") => get(events::list),
        ("GET", "/api/v1/events/{id}") => get(events::explain),
        ("GET", "/api/v1/incidents") => get(incidents::list),
        ("GET", "/api/v1/incidents/{id}") => get(incidents::get_one),
        ("POST", "/api/v1/incidents/{id}/ack") => post(incidents::ack),
        ("POST", "/api/v1/incidents/pagerduty") => post(incidents::pagerduty),
        ("GET", "/api/v1/escalations") => get(escalations::list),
        ("POST", "/api/v1/escalations") => post(escalations::create),
        ("DELETE", "/api/v1/escalations/{name}") => delete(escalations::delete),
        _ => return None,
    })
}

/// The OpenAPI 3.1 document of this API, served at `/api/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

impl AppState {
    /// The webhook with this id, or a 404 naming it.
    pub(crate) fn webhook(&self, id: &str) -> Result<Arc<Webhook>, ApiError> {
        let webhooks = self.registry.load();
        let found = webhooks.get(id).cloned();
        found.ok_or_else(|| ApiError::not_found("webhook", id))
    }

    /// Checks the bearer token (constant time against every configured token).
    pub(crate) fn authorize(&self, headers: &HeaderMap, need: Access) -> Result<Role, ApiError> {
        let unauthorized = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or invalid bearer token (Authorization: Bearer <token>)",
            )
        };
        let given = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .ok_or_else(unauthorized)?;
        let (role, _) = self.live.load().role_of(given).ok_or_else(unauthorized)?;
        if !need.roles().contains(&role) {
            let what = match need {
                Access::Public => "",
                Access::Metrics => "metrics need the metrics, viewer or admin role",
                Access::Ingest => "posting events needs the ingest or admin role",
                Access::Read => "reading needs the viewer or admin role",
                Access::Admin => "this action needs the admin role",
            };
            return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", what));
        }
        Ok(role)
    }
}

/// Access control in front of every route but the public ones: 401/403
/// before the handler runs (and before its body is read). The caller's
/// [`Role`] goes into the request extensions for handlers that redact.
async fn guard(
    State((s, access)): State<(Shared, Access)>,
    mut req: Request,
    next: Next,
) -> Response {
    let public = match access {
        Access::Public => true,
        Access::Metrics => !s.live.load().metrics_protected,
        _ => false,
    };
    if !public {
        match s.authorize(req.headers(), access) {
            Ok(role) => {
                req.extensions_mut().insert(role);
            }
            Err(e) => return e.into_response(),
        }
    }
    next.run(req).await
}

/// A router from a list of routes (the API's [`ROUTES`], the console's):
/// each route's handler from `endpoint`, behind its access check
/// (`guarded`), the methods of one path merged. `list` names the list in
/// the panic of a route without a handler — a programming error that each
/// list's `every_route_has_a_handler` test catches.
pub(crate) fn assemble<S: Clone + Send + Sync + 'static>(
    list: &str,
    routes: &[Route],
    endpoint: impl Fn(&str, &str) -> Option<MethodRouter<S>>,
    guarded: impl Fn(MethodRouter<S>, Access) -> MethodRouter<S>,
) -> Router<S> {
    let mut by_path: BTreeMap<&'static str, MethodRouter<S>> = BTreeMap::new();
    for r in routes {
        let Some(handler) = endpoint(r.method, r.path) else {
            panic!(
                "{list} lists {} {} but no handler serves it",
                r.method, r.path
            );
        };
        let handler = guarded(handler, r.access);
        let merged = match by_path.remove(r.path) {
            Some(other) => other.merge(handler),
            None => handler,
        };
        by_path.insert(r.path, merged);
    }
    let mut router = Router::new();
    for (path, methods) in by_path {
        router = router.route(path, methods);
    }
    router
}

/// The API, built from [`ROUTES`].
pub fn router(state: Shared) -> Router {
    assemble("api::ROUTES", ROUTES, endpoint, |handler, access| {
        handler.route_layer(from_fn_with_state((state.clone(), access), guard))
    })
    .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
    .method_not_allowed_fallback(|| async {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this route does not take that method (see /api/v1/openapi.json)",
        )
    })
    .with_state(state)
}

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

async fn openapi() -> impl IntoResponse {
    ([(http::header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// How old the queue depth `/metrics` shows may be.
const QUEUE_DEPTH_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(1);

/// Queue depth rows as `Storage::queue_depth` returns them.
type DepthRows = Arc<Vec<store::QueueDepth>>;

/// The queue depth of `/metrics`, read from the store at most once per
/// [`QUEUE_DEPTH_MAX_AGE`] however many scrapes come in, so scrapes cannot
/// crowd the dispatcher out of the read pool.
#[derive(Default)]
struct QueueDepthCache {
    last: tokio::sync::Mutex<Option<(std::time::Instant, DepthRows)>>,
}

impl QueueDepthCache {
    /// The cached rows, or fresh ones. The read runs in a task of its own
    /// that holds the cache's lock: a scrape that is cancelled mid-read
    /// does not let the next scrape start a second read.
    async fn get(self: &Arc<Self>, store: &Store) -> Result<DepthRows, StoreError> {
        let (this, store) = (self.clone(), store.clone());
        tokio::spawn(async move {
            let mut last = this.last.lock().await;
            if let Some((at, rows)) = &*last
                && at.elapsed() < QUEUE_DEPTH_MAX_AGE
            {
                return Ok(rows.clone());
            }
            let rows: DepthRows = Arc::new(store.queue_depth(now_ms()).await?);
            crate::metrics::queue_depth_query();
            *last = Some((std::time::Instant::now(), rows.clone()));
            Ok(rows)
        })
        .await
        .map_err(|e| StoreError::Database(format!("queue depth task failed: {e}")))?
    }
}

/// `GET /metrics`: counters from `metrics`, queue depth from the store
/// (cached ≤ 1 s), breaker state from the registry.
async fn metrics(State(s): State<Shared>) -> Result<Response, ApiError> {
    let rows = s.queue_depth.get(&s.store).await?;
    let webhooks = s.registry.load();
    let mut queue: BTreeMap<String, crate::metrics::QueueDepth> = rows
        .iter()
        .map(|q| {
            (
                q.webhook_id.clone(),
                crate::metrics::QueueDepth {
                    webhook_id: q.webhook_id.clone(),
                    pending: q.pending,
                    due: q.due,
                },
            )
        })
        .collect();
    let mut breakers = Vec::with_capacity(webhooks.len());
    for w in webhooks.list() {
        queue
            .entry(w.id.clone())
            .or_insert_with(|| crate::metrics::QueueDepth {
                webhook_id: w.id.clone(),
                pending: 0,
                due: 0,
            });
        let state = w.breaker.snapshot();
        breakers.push(crate::metrics::BreakerState {
            webhook_id: w.id.clone(),
            active: state.is_active(),
            failure_count: state.failure_count,
        });
    }
    breakers.sort_by(|a, b| a.webhook_id.cmp(&b.webhook_id));
    let queue: Vec<_> = queue.into_values().collect();
    Ok((
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(&queue, &breakers),
    )
        .into_response())
}

async fn post_events(State(s): State<Shared>, body: Body) -> Result<Response, ApiError> {
    let accepted = ingest_body(&s, body, async |live, bytes| {
        crate::ingest::parse(&bytes, live.event_types.as_ref(), live.limits.max_batch)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.code, e.to_string()))
    })
    .await?;
    Ok(accepted_response(&accepted))
}

/// `POST /api/v1/sources/{name}`: a producer's own JSON, turned into events
/// by the source (`crate::source`), then the same path as `/api/v1/events`.
async fn post_source(
    State(s): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let source = s.live.load().sources.get(&name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no source named {name:?} (see sources: in relay.yaml)"),
        )
    })?;
    let result = ingest_body(&s, body, async |live, bytes| {
        let bounds = crate::source::Bounds {
            max_events: live.limits.max_events_per_body,
            catalogue: live.event_types.as_ref(),
        };
        source
            .parse(&headers, &bytes, &bounds, &s.plugins)
            .await
            .map_err(|e| {
                crate::metrics::source_refused(source.name(), e.code());
                if e.is_temporary() {
                    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.code(), e.to_string())
                        .retry_after(5)
                } else if e.is_producers_fault() {
                    ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string())
                } else {
                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.code(), e.to_string())
                }
            })
    })
    .await?;
    let new = result.iter().filter(|a| !a.duplicate).count() as u64;
    crate::metrics::source_accepted(source.name(), new);
    Ok(accepted_response(&result))
}

fn accepted_response(accepted: &[crate::ingest::AcceptedView]) -> Response {
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({ "accepted": accepted })),
    )
        .into_response()
}

/// The one ingest path of `/api/v1/events` and `/api/v1/sources/{name}`:
/// 503 while stopping, the body size limit, `parse` (the route's own
/// reading of the body), then `ingest::accept` — the events and their
/// deliveries committed before the caller answers 202.
async fn ingest_body(
    s: &Shared,
    body: Body,
    parse: impl AsyncFnOnce(&Live, bytes::Bytes) -> Result<Vec<Event>, ApiError>,
) -> Result<Vec<crate::ingest::AcceptedView>, ApiError> {
    if s.stopping.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "the relay is stopping; nothing was stored: post again in a few seconds",
        )
        .retry_after(5));
    }
    let live = s.live.load_full();
    let bytes = read_limited(body, live.limits.max_body_bytes).await?;
    let events = parse(&live, bytes).await?;
    let webhooks = s.registry.load();
    Ok(crate::ingest::accept(&s.store, &webhooks, &s.dispatcher, events).await?)
}

/// Reads a request body of at most `limit` bytes. A larger body is refused
/// with 413 — after reading (and dropping) the rest of it, up to a bound,
/// so the client sees the answer instead of a connection reset.
async fn read_limited(mut body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    const DRAIN_MAX: usize = 64 * 1024 * 1024;
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    let drain_until = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while let Some(frame) = tokio::time::timeout_at(drain_until, body.frame())
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "the body took too long to arrive",
            )
        })?
    {
        let frame = frame.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!("cannot read the body: {e}"),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len();
        if seen <= limit {
            buf.extend_from_slice(&data);
        } else if seen > DRAIN_MAX {
            break;
        }
    }
    if seen > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the body is {seen} bytes or more, over the limit of {limit} bytes (limits.max_body_bytes)"
            ),
        ));
    }
    Ok(buf.freeze())
}

async fn event_types(State(s): State<Shared>) -> Result<Response, ApiError> {
    let live = s.live.load();
    let list: Vec<Value> = live
        .event_types
        .iter()
        .flatten()
        .map(|(name, description)| json!({"name": name, "description": description}))
        .collect();
    Ok(axum::Json(list).into_response())
}

/// The filters of a webhook's history, as the API's query string (and the
/// console's filter form) give them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeliveriesQuery {
    pub status: Option<String>,
    pub success: Option<bool>,
    pub since: Option<String>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

fn bad_query(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message)
}

async fn webhook_deliveries(
    State(s): State<Shared>,
    Path(id): Path<String>,
    query: Result<Query<DeliveriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| bad_query(e.body_text()))?;
    s.webhook(&id)?;
    let page = s.store.list_attempts(&id, history_query(&q)?).await?;
    Ok(axum::Json(json!({"data": page.data, "next": page.next})).into_response())
}

/// Checks a history query: a 400 naming the parameter and its value.
pub(crate) fn history_query(q: &DeliveriesQuery) -> Result<history::Query, ApiError> {
    let status = match q.status.as_deref() {
        None => None,
        Some("succeeded") => Some(history::Status::Succeeded),
        Some("failed") => Some(history::Status::Failed),
        Some("retrying") => Some(history::Status::Retrying),
        Some("skipped") => Some(history::Status::Skipped),
        Some("paused") => Some(history::Status::Paused),
        Some(other) => {
            return Err(bad_query(format!(
                "status {other:?} is not one of succeeded, failed, retrying, skipped, paused"
            )));
        }
    };
    let since_ms = match q.since.as_deref() {
        None => None,
        Some(t) => Some(
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .map(|d| (d.unix_timestamp_nanos() / 1_000_000) as i64)
                .map_err(|_| bad_query(format!("since {t:?} is not an RFC 3339 timestamp")))?,
        ),
    };
    let before = match q.cursor.as_deref() {
        None => None,
        Some(c) => Some(c.parse::<i64>().map_err(|_| {
            bad_query(format!("cursor {c:?} is not a cursor from a previous page"))
        })?),
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(bad_query(format!("limit {limit} is out of range (1–1000)")));
    }
    Ok(history::Query {
        status,
        success: q.success,
        since_ms,
        limit,
        before,
    })
}

/// Sample data for `POST /webhooks/{id}/test`.
fn test_event(w: &Webhook) -> Event {
    let event_type = w
        .spec
        .event_types
        .iter()
        .flatten()
        .find(|t| *t != "*")
        .cloned()
        .unwrap_or_else(|| "relay.test".into());
    Event {
        id: format!("test-{}", new_id()),
        event_type,
        time: crate::event::rfc3339_ms(now_ms()),
        data: json!({
            "title": "Test event from relay",
            "severity": "info",
            "message": "This is a test delivery sent from the relay admin API.",
            "test": true
        })
        .into(),
    }
}

async fn test_webhook(
    State(s): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let attempt = send_test(&s, &id).await?;
    Ok(axum::Json(attempt).into_response())
}

/// Sends sample data to a webhook now and returns the recorded attempt
/// (`POST /webhooks/{id}/test`, the console's test button).
pub(crate) async fn send_test(s: &Shared, id: &str) -> Result<store::Attempt, ApiError> {
    let w = s.webhook(id)?;
    let (event, targets, _reserved) = store_test(s, test_event(&w), &[w]).await?;
    let t = targets
        .into_iter()
        .next()
        .ok_or_else(|| StoreError::Database("the test delivery did not come back".into()))?;
    let job = Job::reserved(t.delivery_id, t.webhook_id, event);
    Ok(s.dispatcher.attempt_now(job).await?)
}

/// Stores a test event with one due delivery to each of `webhooks`
/// (decision `delivered`, rule `test`: filters, mute, digests and dedup
/// bypassed), reserved in dispatch so the poller leaves them to the
/// caller: the event as stored, the targets in `webhooks` order, and the
/// reservation to hold until each attempt is recorded.
async fn store_test(
    s: &Shared,
    event: Event,
    webhooks: &[Arc<Webhook>],
) -> Result<(Arc<Event>, Vec<store::Target>, crate::dispatch::Reservation), ApiError> {
    let targets: Vec<store::Target> = webhooks
        .iter()
        .map(|w| store::Target {
            delivery_id: new_id(),
            webhook_id: w.id.clone(),
            start: store::Start::Due,
        })
        .collect();
    let reserved = s.dispatcher.reserve(&targets);
    let now = now_ms();
    let decisions = targets
        .iter()
        .zip(webhooks)
        .map(|(t, w)| store::DecisionRecord {
            event_id: event.id.clone(),
            webhook_id: Some(w.id.clone()),
            webhook_name: Some(w.spec.name.clone()),
            decision: crate::route::Decision::Delivered.as_str().to_owned(),
            rule: Some("test".into()),
            reference: Some(t.delivery_id.clone()),
            created_at_ms: now,
        })
        .collect();
    let new = store::NewEvent {
        body: store::event_json(&event)?,
        event,
        targets: targets.clone(),
        held: vec![],
        decisions,
        digests: vec![],
        dedup: None,
    };
    let (_, mut stored) = s.store.accept(vec![new]).await?;
    let event = stored
        .pop()
        .map(|e| Arc::new(e.event))
        .ok_or_else(|| StoreError::Database("the test event did not come back".into()))?;
    Ok((event, targets, reserved))
}

/// How long `POST /api/v1/test` waits for one webhook's attempt beyond
/// that webhook's own `timeout_ms`.
const TEST_ALL_SLACK: Duration = Duration::from_secs(5);

/// `POST /api/v1/test`: one test event to every active webhook at once,
/// bypassing filters, digests and dedup; answers each webhook's recorded
/// attempt (waiting for each, bounded by its `timeout_ms` plus
/// [`TEST_ALL_SLACK`]; a webhook whose attempt takes longer is answered
/// `pending`, its attempt still recorded in its history).
async fn test_all(State(s): State<Shared>) -> Result<Response, ApiError> {
    let (event_id, results) = send_test_all(&s).await?;
    Ok(
        axum::Json(json!({"event_id": event_id, "webhooks": results.len(), "data": results}))
            .into_response(),
    )
}

/// The work of `POST /api/v1/test` (and the console's Test all button):
/// the test event's id and, per active webhook (sorted by id), its
/// recorded attempt or `pending`.
pub(crate) async fn send_test_all(s: &Shared) -> Result<(String, Vec<Value>), ApiError> {
    let webhooks = s.registry.load();
    let active: Vec<Arc<Webhook>> = webhooks
        .list()
        .into_iter()
        .filter(|w| w.breaker.is_active())
        .collect();
    let event = Event {
        id: format!("test-{}", new_id()),
        event_type: "relay.test".into(),
        time: crate::event::rfc3339_ms(now_ms()),
        data: json!({
            "title": "Test event from relay",
            "severity": "info",
            "message": "This is a test delivery to every active webhook, sent from the relay admin API.",
            "test": true
        }).into(),
    };
    let (event, targets, reserved) = store_test(s, event, &active).await?;
    let mut running = tokio::task::JoinSet::new();
    for (t, w) in targets.into_iter().zip(&active) {
        let dispatcher = s.dispatcher.clone();
        let bound = Duration::from_millis(w.spec.timeout_ms.0) + TEST_ALL_SLACK;
        let job = Job::reserved(t.delivery_id.clone(), t.webhook_id.clone(), event.clone());
        running.spawn(async move {
            let result = tokio::time::timeout(bound, dispatcher.attempt_now(job)).await;
            (t, result)
        });
    }
    let mut results = Vec::with_capacity(active.len());
    while let Some(done) = running.join_next().await {
        let Ok((t, result)) = done else { continue };
        results.push(match result {
            Ok(Ok(attempt)) => json!({"webhook_id": t.webhook_id, "delivery_id": t.delivery_id, "attempt": attempt}),
            Ok(Err(e)) => json!({"webhook_id": t.webhook_id, "delivery_id": t.delivery_id, "status": "pending", "error": e.to_string()}),
            Err(_) => json!({"webhook_id": t.webhook_id, "delivery_id": t.delivery_id, "status": "pending", "error": "no attempt recorded in time; see the webhook's history"}),
        });
    }
    drop(reserved);
    results.sort_by(|a, b| a["webhook_id"].as_str().cmp(&b["webhook_id"].as_str()));
    Ok((event.id.clone(), results))
}

async fn resend_delivery(
    State(s): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let d = resend(&s, &id).await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({"delivery_id": d.id, "webhook_id": d.webhook_id, "status": "pending"})),
    )
        .into_response())
}

/// Sends a delivery again (`POST /deliveries/{id}/resend`, the console's
/// resend button): 409 while an attempt of it is queued or in flight.
pub(crate) async fn resend(s: &Shared, id: &str) -> Result<store::Delivery, ApiError> {
    let id = id.to_owned();
    let d = s
        .store
        .get_delivery(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("delivery", &id))?;
    // Held in its lane while the resend is written: an attempt in flight
    // would otherwise record over the resend (and the resend be lost).
    let claimed = s.dispatcher.claim(&d.webhook_id, &d.id).ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "attempt_in_flight",
            format!(
                "delivery {:?} has an attempt queued or in flight; resend it once that attempt is recorded",
                d.id
            ),
        )
    })?;
    let found = s.store.resend(&d.id).await?;
    let (d, event) = found.ok_or_else(|| ApiError::not_found("delivery", &id))?;
    s.dispatcher.offer_claimed(
        claimed,
        Job::new(
            d.id.clone(),
            d.webhook_id.clone(),
            d.attempts,
            Arc::new(event),
        ),
    );
    Ok(d)
}

async fn replay_event(
    State(s): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let replayed = replay(&s, &id).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(replayed)).into_response())
}

/// Sends a stored event again to every webhook that wants it now
/// (`POST /events/{id}/replay`, the console's replay button): the answer's
/// JSON, `{"event_id", "deliveries": [...]}`.
pub(crate) async fn replay(s: &Shared, id: &str) -> Result<Value, ApiError> {
    let id = id.to_owned();
    let event = s
        .store
        .get_event(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("event", &id))?;
    let targets = s.registry.load().targets(&event);
    let reserved = s.dispatcher.reserve(&targets);
    let event = Arc::new(event);
    let ready: Vec<(String, String)> = targets
        .iter()
        .filter(|t| t.start == store::Start::Due)
        .map(|t| (t.delivery_id.clone(), t.webhook_id.clone()))
        .collect();
    let held: Vec<store::Held> = targets
        .iter()
        .filter(|t| t.start != store::Start::Due)
        .map(|t| (t.delivery_id.clone(), t.webhook_id.clone(), t.start))
        .collect();
    let records = history::held_records(&event, &targets);
    // Retention may have pruned the event since it was read: then no
    // delivery may point at it (the poller could never load it).
    if !s.store.add_deliveries(&event.id, targets, records).await? {
        return Err(ApiError::not_found("event", &id));
    }
    let skipped = held
        .iter()
        .filter(|(_, _, start)| *start == store::Start::Skipped)
        .count();
    crate::metrics::deliveries_skipped(skipped as u64);
    let view = |delivery_id: &str, webhook_id: &str, status: &str| json!({"delivery_id": delivery_id, "webhook_id": webhook_id, "skipped": status == "skipped", "status": status});
    let ids: Vec<Value> = ready
        .iter()
        .map(|(d, w)| view(d, w, "pending"))
        .chain(held.iter().map(|(d, w, start)| {
            view(
                d,
                w,
                if *start == store::Start::Paused {
                    "paused"
                } else {
                    "skipped"
                },
            )
        }))
        .collect();
    s.dispatcher.offer_reserved(&event, reserved);
    Ok(json!({"event_id": id, "deliveries": ids}))
}

/// Loaded plugins (name, kind, sha256, loaded_at, source) and the last load
/// error of any file that was refused.
async fn plugins(State(s): State<Shared>) -> impl IntoResponse {
    axum::Json(s.plugins.statuses())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_a_handler_and_is_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for r in ROUTES {
            assert!(
                endpoint(r.method, r.path).is_some(),
                "{} {} has no handler",
                r.method,
                r.path
            );
            assert!(
                seen.insert((r.method, r.path)),
                "{} {} listed twice",
                r.method,
                r.path
            );
        }
    }

    #[test]
    fn an_error_with_retry_after_keeps_the_one_error_shape_and_adds_the_header() {
        let r = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "stopping", "later")
            .retry_after(5)
            .into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            r.headers()
                .get(http::header::RETRY_AFTER)
                .map(|v| v.as_bytes()),
            Some(&b"5"[..])
        );
        let plain = ApiError::new(StatusCode::BAD_REQUEST, "x", "y").into_response();
        assert!(plain.headers().get(http::header::RETRY_AFTER).is_none());
        let body = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(r.into_body().collect())
            .expect("body")
            .to_bytes();
        let v: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(
            v,
            json!({"error": {"code": "stopping", "message": "later"}})
        );
    }

    #[test]
    fn the_openapi_document_is_json_and_names_this_version() {
        let doc: Value = serde_json::from_str(OPENAPI).expect("docs/openapi.json is JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    }
}
