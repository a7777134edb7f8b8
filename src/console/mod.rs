//! The web console at `/ui/` (DESIGN.md §21): server-rendered pages for
//! people, on the same data and actions as the API.
//!
//! Owns: the console's routes ([`ROUTES`], each with its `api::Access`),
//! sign-in and sessions (`session.rs`), the pages (`view.rs` and
//! `templates/`), the embedded assets (`assets/`: one stylesheet, one
//! script) and the security headers of every console answer. Actions
//! (resend, replay, test, re-enable, acknowledge) call the same functions
//! as the API. The incidents pages are `incidents.rs`; the ack link's
//! public pages `ack.rs`.
//!
//! **Architecture Invariant:** only `console` renders HTML. Every value on
//! a page goes through an escaping template; no page holds inline script
//! (the Content-Security-Policy allows `script-src 'self'` only); no page
//! shows a secret, whatever the role (webhooks are shown with the viewer's
//! redaction); the token is never kept, only its digest in the session.
//! `api` knows nothing of `console`.

mod ack;
mod incidents;
mod session;
mod view;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Extension, Json};
use http_body_util::BodyExt;
use serde::Deserialize;

use crate::api::{Access, ApiError, Route, Shared};
use crate::config::Role;
use crate::store::Storage;
pub use session::{LoginLimit, Session, Sessions};
use view::{Chrome, NavItem};

/// The session cookie's name.
pub const COOKIE: &str = "relay_session";

/// The Content-Security-Policy of every console answer: scripts, styles,
/// fetches and forms only from the relay itself, no inline script, no
/// framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Attempts per page of a webhook's history.
const PAGE_SIZE: usize = 50;

/// The largest form the console accepts (a token or a CSRF field).
const MAX_FORM_BYTES: usize = 16 * 1024;

const fn route(method: &'static str, path: &'static str, access: Access) -> Route {
    Route {
        method,
        path,
        access,
    }
}

/// Every route of the console. `Read` and `Admin` need a session (opened
/// by `POST /ui/login` with a viewer or admin token) of that role, and
/// every POST but sign-in carries the session's CSRF token.
pub const ROUTES: &[Route] = &[
    route("GET", "/ui", Access::Read),
    route("GET", "/ui/", Access::Read),
    route("GET", "/ui/login", Access::Public),
    route("POST", "/ui/login", Access::Public),
    route("POST", "/ui/logout", Access::Read),
    route("GET", "/ui/assets/console.css", Access::Public),
    route("GET", "/ui/assets/console.js", Access::Public),
    route("GET", "/ui/webhooks", Access::Read),
    route("GET", "/ui/webhooks/{id}", Access::Read),
    route("GET", "/ui/webhooks/{id}/rows", Access::Read),
    route("GET", "/ui/deliveries/{id}", Access::Read),
    route("GET", "/ui/plugins", Access::Read),
    route("GET", "/ui/events", Access::Read),
    route("GET", "/ui/events/{id}", Access::Read),
    route("POST", "/ui/webhooks/test-all", Access::Admin),
    route("POST", "/ui/webhooks/{id}/test", Access::Admin),
    route("POST", "/ui/webhooks/{id}/enable", Access::Admin),
    route("POST", "/ui/deliveries/{id}/resend", Access::Admin),
    route("POST", "/ui/events/{id}/replay", Access::Admin),
    route("GET", "/ui/incidents", Access::Read),
    route("GET", "/ui/incidents/{id}", Access::Read),
    route("POST", "/ui/incidents/{id}/ack", Access::Admin),
    route("GET", "/ui/ack/{token}", Access::Public),
    route("POST", "/ui/ack/{token}", Access::Public),
];

/// The navigation bar: (key, label, link). A new page (events, incidents)
/// is one entry here and one handler.
const NAV: &[(&str, &str, &str)] = &[
    ("webhooks", "Webhooks", "/ui/webhooks"),
    ("events", "Events", "/ui/events"),
    ("incidents", "Incidents", "/ui/incidents"),
    ("plugins", "Plugins", "/ui/plugins"),
];

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// What the console's handlers share: the relay's state, the sessions and
/// the sign-in limit.
#[derive(Clone)]
struct Console {
    s: Shared,
    sessions: Arc<Sessions>,
    logins: Arc<LoginLimit>,
}

fn endpoint(method: &str, path: &str) -> Option<MethodRouter<Console>> {
    Some(match (method, path) {
        ("GET", "/ui") | ("GET", "/ui/") => get(home),
        ("GET", "/ui/login") => get(login_page),
        ("POST", "/ui/login") => post(login),
        ("POST", "/ui/logout") => post(logout),
        ("GET", "/ui/assets/console.css") => {
            get(|| async { asset("text/css; charset=utf-8", CSS) })
        }
        ("GET", "/ui/assets/console.js") => {
            get(|| async { asset("text/javascript; charset=utf-8", JS) })
        }
        ("GET", "/ui/webhooks") => get(webhooks),
        ("GET", "/ui/webhooks/{id}") => get(deliveries),
        ("GET", "/ui/webhooks/{id}/rows") => get(rows),
        ("GET", "/ui/deliveries/{id}") => get(delivery),
        ("GET", "/ui/plugins") => get(plugins),
        ("GET", "/ui/events") => get(events),
        ("GET", "/ui/events/{id}") => get(event),
        ("POST", "/ui/webhooks/test-all") => post(test_all),
        ("POST", "/ui/webhooks/{id}/test") => post(test),
        ("POST", "/ui/webhooks/{id}/enable") => post(enable),
        ("POST", "/ui/deliveries/{id}/resend") => post(resend),
        ("POST", "/ui/events/{id}/replay") => post(replay),
        ("GET", "/ui/incidents") => get(incidents::list),
        ("GET", "/ui/incidents/{id}") => get(incidents::detail),
        ("POST", "/ui/incidents/{id}/ack") => post(incidents::ack),
        ("GET", "/ui/ack/{token}") => get(ack::confirm),
        ("POST", "/ui/ack/{token}") => post(ack::acknowledge),
        _ => return None,
    })
}

/// The console, built from [`ROUTES`]; merged beside the API by `server`.
pub fn router(s: Shared) -> Router {
    let console = Console {
        s,
        sessions: Arc::default(),
        logins: Arc::default(),
    };
    crate::api::assemble("console::ROUTES", ROUTES, endpoint, |handler, access| {
        handler.route_layer(from_fn_with_state((console.clone(), access), guard))
    })
    .layer(from_fn(security_headers))
    .with_state(console)
}

/// Headers on every console answer: the CSP, no sniffing, no referrer, no
/// caching of pages that show delivery data.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// The session id in the request's cookie, if any.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .filter(|v| !v.is_empty())
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// Access control for every console route but the public ones: a live
/// session of a role the route accepts (a page without one redirects to
/// sign-in), and on a POST the session's CSRF token in the form — before
/// the handler runs. The [`Session`] goes into the request's extensions.
async fn guard(State((c, access)): State<(Console, Access)>, req: Request, next: Next) -> Response {
    if access == Access::Public {
        return next.run(req).await;
    }
    let is_get = req.method() == http::Method::GET;
    let id = session_cookie(req.headers()).map(str::to_owned);
    let session = id.as_deref().and_then(|id| {
        let s = c.sessions.get(id)?;
        // A reload that removed the token (or changed its role) ends the
        // sessions opened with it.
        if c.s.live.load().still_valid(&s.token_digest, s.role) {
            Some(s)
        } else {
            c.sessions.close(id);
            None
        }
    });
    let Some(session) = session else {
        if is_get && !req.uri().path().ends_with("/rows") {
            return Redirect::to("/ui/login").into_response();
        }
        return plain(
            StatusCode::UNAUTHORIZED,
            "Not signed in, or the session has expired: sign in again at /ui/login.",
        );
    };
    if !access.roles().contains(&session.role) {
        return plain(
            StatusCode::FORBIDDEN,
            "This action needs the admin role; you are signed in as a viewer.",
        );
    }
    let (parts, body) = req.into_parts();
    let mut req = if is_get {
        Request::from_parts(parts, body)
    } else {
        let bytes = match read_form(body).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let form: CsrfForm = serde_urlencoded::from_bytes(&bytes).unwrap_or(CsrfForm {
            csrf: String::new(),
        });
        if !session.csrf_ok(&form.csrf) {
            return plain(
                StatusCode::FORBIDDEN,
                "The form's CSRF token is missing or wrong: reload the page and try again.",
            );
        }
        Request::from_parts(parts, Body::from(bytes))
    };
    req.extensions_mut().insert(session);
    next.run(req).await
}

/// A form body of at most [`MAX_FORM_BYTES`].
async fn read_form(body: Body) -> Result<bytes::Bytes, Response> {
    let limited = http_body_util::Limited::new(body, MAX_FORM_BYTES);
    match tokio::time::timeout(Duration::from_secs(10), limited.collect()).await {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(_)) => Err(plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            "The form is too large.",
        )),
        Err(_) => Err(plain(
            StatusCode::REQUEST_TIMEOUT,
            "The form took too long to arrive.",
        )),
    }
}

fn plain(status: StatusCode, message: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// A rendered page (or a 500 naming the template error, which is a bug).
fn html(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "console page failed to render");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The page failed to render.",
            )
        }
    }
}

fn chrome(session: &Session, current: &str, notice: Option<&str>) -> Chrome {
    Chrome {
        nav: NAV
            .iter()
            .map(|(key, label, href)| NavItem {
                label,
                href,
                current: *key == current,
            })
            .collect(),
        role: match session.role {
            Role::Admin => "admin",
            _ => "viewer",
        },
        admin: session.role == Role::Admin,
        csrf: session.csrf.clone(),
        notice: notice.map(notice_text).unwrap_or_default().to_owned(),
    }
}

/// The message an action's redirect asks for (`?notice=`); only these
/// texts can appear, so the query string cannot put words on the page.
fn notice_text(code: &str) -> &'static str {
    match code {
        "resent" => "Resent: a new attempt is on its way.",
        "tested" => "Test event sent: its attempt is the newest below.",
        "tested-all" => "Test events sent to every active webhook.",
        "enabled" => "Webhook re-enabled: what waited is being sent, oldest first.",
        "replayed" => "Event replayed to every webhook that wants it.",
        "acked" => "Incident acknowledged: its escalation stopped.",
        _ => "",
    }
}

/// An action's or a lookup's failure, as a page.
fn failure(session: &Session, e: &ApiError, back: &str) -> Response {
    let page = view::Message {
        chrome: chrome(session, "", None),
        title: match e.status() {
            StatusCode::NOT_FOUND => "Not found".into(),
            StatusCode::CONFLICT => "Not now".into(),
            _ => "That did not work".into(),
        },
        message: e.message().to_owned(),
        back: back.to_owned(),
    };
    html(e.status(), &page)
}

// ---------------------------------------------------------------------------
// Sign-in

async fn home() -> Response {
    Redirect::to("/ui/webhooks").into_response()
}

async fn login_page(State(c): State<Console>, headers: HeaderMap) -> Response {
    if session_cookie(&headers)
        .and_then(|id| c.sessions.get(id))
        .is_some()
    {
        return Redirect::to("/ui/webhooks").into_response();
    }
    html(
        StatusCode::OK,
        &view::Login {
            error: String::new(),
        },
    )
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
}

/// `POST /ui/login`: form field `token`, or JSON `{"token": …}`.
async fn login(
    State(c): State<Console>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    req: Request,
) -> Response {
    let peer: IpAddr = peer
        .map(|Extension(ConnectInfo(a))| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let cfg = c.s.config.load().console.clone();
    let window = Duration::from_secs(cfg.login_window_s);
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let forwarded_https = req
        .headers()
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    let refuse = |status: StatusCode, message: String| {
        if json {
            ApiError::new(status, "login_refused", message).into_response()
        } else {
            html(status, &view::Login { error: message })
        }
    };
    if let Err(wait_s) = c.logins.check(peer, cfg.login_max_failures, window) {
        let mut r = refuse(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many failed sign-ins from your address: try again in {wait_s} s (console.login_max_failures per console.login_window_s)."
            ),
        );
        if let Ok(v) = HeaderValue::from_str(&wait_s.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let body = match read_form(req.into_body()).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let token = if json {
        serde_json::from_slice::<LoginForm>(&body).map(|f| f.token)
    } else {
        serde_urlencoded::from_bytes::<LoginForm>(&body)
            .map(|f| f.token)
            .map_err(serde::de::Error::custom)
    }
    .unwrap_or_default();
    let Some((role, digest)) = c.s.live.load().role_of(&token) else {
        c.logins.failed(peer, window);
        return refuse(StatusCode::UNAUTHORIZED, "That token is not valid.".into());
    };
    if !matches!(role, Role::Admin | Role::Viewer) {
        return refuse(
            StatusCode::FORBIDDEN,
            "That token cannot open the console: it needs the viewer or admin role.".into(),
        );
    }
    c.logins.succeeded(peer);
    let id = c
        .sessions
        .open(role, digest, Duration::from_secs(cfg.session_ttl_s));
    let secure = if cfg.secure_cookie || forwarded_https {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        cfg.session_ttl_s
    );
    let mut response = if json {
        let role = if role == Role::Admin {
            "admin"
        } else {
            "viewer"
        };
        Json(serde_json::json!({"role": role, "expires_in_s": cfg.session_ttl_s})).into_response()
    } else {
        Redirect::to("/ui/webhooks").into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

async fn logout(State(c): State<Console>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        c.sessions.close(id);
    }
    let mut response = Redirect::to("/ui/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("relay_session=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

// ---------------------------------------------------------------------------
// Pages

#[derive(Deserialize, Default)]
struct NoticeQuery {
    #[serde(default)]
    notice: String,
}

async fn webhooks(
    State(c): State<Console>,
    Extension(session): Extension<Session>,
    Query(q): Query<NoticeQuery>,
) -> Response {
    let list = c.s.registry.load().list();
    let mut rows = Vec::with_capacity(list.len());
    for w in &list {
        let last =
            c.s.store
                .list_attempts(
                    &w.id,
                    crate::history::Query {
                        limit: 1,
                        ..Default::default()
                    },
                )
                .await;
        let last = match last {
            Ok(page) => page.data.into_iter().next(),
            Err(e) => return failure(&session, &e.into(), "/ui/webhooks"),
        };
        rows.push(view::WebhookRow::new(w, last.as_ref()));
    }
    html(
        StatusCode::OK,
        &view::Webhooks {
            chrome: chrome(&session, "webhooks", Some(&q.notice)),
            webhooks: rows,
        },
    )
}

/// The filter form's fields (empty means "any").
#[derive(Deserialize, Default)]
struct Filters {
    #[serde(default)]
    status: String,
    #[serde(default)]
    success: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    cursor: String,
    #[serde(default)]
    notice: String,
}

impl Filters {
    fn query(&self) -> Result<crate::history::Query, ApiError> {
        let some = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
        let success = match self.success.as_str() {
            "" => None,
            "true" => Some(true),
            "false" => Some(false),
            other => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_query",
                    format!("success {other:?} is not true or false"),
                ));
            }
        };
        crate::api::history_query(&crate::api::DeliveriesQuery {
            status: some(&self.status),
            success,
            since: some(&self.since),
            limit: Some(PAGE_SIZE),
            cursor: some(&self.cursor),
        })
    }

    /// The query string of these filters and a cursor.
    fn link(&self, cursor: &str) -> String {
        view::query_string(&[
            ("status", &self.status),
            ("success", &self.success),
            ("since", &self.since),
            ("cursor", cursor),
        ])
    }
}

/// The page of attempts the filters ask for; a bad filter is a message.
async fn page_of(
    c: &Console,
    id: &str,
    f: &Filters,
) -> Result<Result<crate::history::Page, String>, ApiError> {
    let query = match f.query() {
        Ok(q) => q,
        Err(e) => return Ok(Err(e.message().to_owned())),
    };
    Ok(Ok(c.s.store.list_attempts(id, query).await?))
}

fn rows_of(page: &crate::history::Page, session: &Session) -> view::Rows {
    view::Rows {
        rows: page.data.iter().map(view::AttemptRow::new).collect(),
        admin: session.role == Role::Admin,
        csrf: session.csrf.clone(),
    }
}

async fn deliveries(
    State(c): State<Console>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Query(f): Query<Filters>,
) -> Response {
    let w = match c.s.webhook(&id) {
        Ok(w) => w,
        Err(e) => return failure(&session, &e, "/ui/webhooks"),
    };
    let (page, query_error) = match page_of(&c, &id, &f).await {
        Ok(Ok(page)) => (page, String::new()),
        Ok(Err(message)) => (
            crate::history::Page {
                data: vec![],
                next: None,
            },
            message,
        ),
        Err(e) => return failure(&session, &e, "/ui/webhooks"),
    };
    let rows_html = match rows_of(&page, &session).render() {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "console rows failed to render");
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The page failed to render.",
            );
        }
    };
    let base = format!("/ui/webhooks/{}", view::path_segment(&id));
    let page_view = view::Deliveries {
        chrome: chrome(&session, "webhooks", Some(&f.notice)),
        w: view::WebhookRow::new(&w, None),
        status_options: view::choices(
            &[
                ("", "any"),
                ("succeeded", "succeeded"),
                ("failed", "failed"),
                ("retrying", "retrying"),
                ("paused", "paused"),
                ("skipped", "skipped"),
            ],
            &f.status,
        ),
        success_options: view::choices(
            &[("", "any"), ("true", "yes"), ("false", "no")],
            &f.success,
        ),
        since: f.since.clone(),
        poll: if f.cursor.is_empty() && query_error.is_empty() {
            format!("{base}/rows{}", f.link(""))
        } else {
            String::new()
        },
        older: page
            .next
            .as_deref()
            .map(|n| format!("{base}{}", f.link(n)))
            .unwrap_or_default(),
        newest: format!("{base}{}", f.link("")),
        query_error,
        rows_html,
    };
    let status = if page_view.query_error.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    html(status, &page_view)
}

/// The rows of the first page, for the deliveries page's live refresh.
async fn rows(
    State(c): State<Console>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Query(f): Query<Filters>,
) -> Response {
    if let Err(e) = c.s.webhook(&id) {
        return (e.status(), e.message().to_owned()).into_response();
    }
    match page_of(&c, &id, &f).await {
        Ok(Ok(page)) => html(StatusCode::OK, &rows_of(&page, &session)),
        Ok(Err(message)) => (StatusCode::BAD_REQUEST, message).into_response(),
        Err(e) => (e.status(), e.message().to_owned()).into_response(),
    }
}

async fn delivery(
    State(c): State<Console>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Query(q): Query<NoticeQuery>,
) -> Response {
    let found = async {
        let d =
            c.s.store
                .get_delivery(&id)
                .await?
                .ok_or_else(|| ApiError::not_found("delivery", &id))?;
        let attempts = c.s.store.delivery_attempts(&id).await?;
        let event = c.s.store.get_event(&d.event_id).await?;
        Ok::<_, ApiError>((d, attempts, event))
    }
    .await;
    let (d, mut attempts, event) = match found {
        Ok(f) => f,
        Err(e) => return failure(&session, &e, "/ui/webhooks"),
    };
    attempts.sort_by_key(|a| std::cmp::Reverse(a.attempt));
    let w = c.s.webhook(&d.webhook_id).ok();
    let page = view::DeliveryPage {
        chrome: chrome(&session, "webhooks", Some(&q.notice)),
        d: view::DeliveryFacts::new(&d),
        w: w.as_ref()
            .map(|w| view::WebhookLink {
                path_id: view::path_segment(&w.id),
                name: w.spec.name.clone(),
            })
            .unwrap_or_default(),
        event: event
            .as_ref()
            .map(view::EventFacts::new)
            .unwrap_or_default(),
        headers: w
            .as_deref()
            .map(view::WebhookRow::headers)
            .unwrap_or_default(),
        attempts: attempts.iter().map(view::AttemptDetail::new).collect(),
    };
    html(StatusCode::OK, &page)
}

async fn plugins(State(c): State<Console>, Extension(session): Extension<Session>) -> Response {
    let page = view::Plugins {
        chrome: chrome(&session, "plugins", None),
        plugins: c
            .s
            .plugins
            .statuses()
            .iter()
            .map(view::PluginRow::new)
            .collect(),
    };
    html(StatusCode::OK, &page)
}

/// The events page's filter form (empty means "any").
#[derive(Deserialize, Default)]
struct EventFilters {
    #[serde(default)]
    decision: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    cursor: String,
}

impl EventFilters {
    /// The query string of these filters and a cursor.
    fn link(&self, cursor: &str) -> String {
        view::query_string(&[
            ("decision", &self.decision),
            ("since", &self.since),
            ("cursor", cursor),
        ])
    }
}

/// Recent routing decisions, newest first (`GET /api/v1/events`'s
/// listing): what was delivered, suppressed, deduped, digested, muted…
async fn events(
    State(c): State<Console>,
    Extension(session): Extension<Session>,
    Query(f): Query<EventFilters>,
) -> Response {
    let some = |v: &str| (!v.trim().is_empty()).then(|| v.trim().to_owned());
    let (decision, since, cursor) = (some(&f.decision), some(&f.since), some(&f.cursor));
    let query = crate::api::events::decision_query(
        decision.as_deref(),
        since.as_deref(),
        PAGE_SIZE,
        cursor.as_deref(),
    );
    let (page, query_error) = match query {
        Ok(q) => match c.s.store.list_decisions(q).await {
            Ok(page) => (Some(page), String::new()),
            Err(e) => return failure(&session, &ApiError::from(e), "/ui/events"),
        },
        Err(e) => (None, e.message().to_owned()),
    };
    let mut options: Vec<(&'static str, &'static str)> = vec![("", "any")];
    options.extend(
        crate::route::Decision::ALL
            .iter()
            .map(|d| (d.as_str(), d.as_str())),
    );
    let page_view = view::Events {
        chrome: chrome(&session, "events", None),
        decision_options: view::choices(&options, &f.decision),
        since: f.since.clone(),
        rows: page
            .as_ref()
            .map(|p| p.data.iter().map(view::DecisionRow::listed).collect())
            .unwrap_or_default(),
        older: page
            .as_ref()
            .and_then(|p| p.next.as_ref())
            .map(|n| format!("/ui/events{}", f.link(&n.encode())))
            .unwrap_or_default(),
        newest: format!("/ui/events{}", f.link("")),
        query_error,
    };
    let status = if page_view.query_error.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    html(status, &page_view)
}

/// One event and, per webhook, what routing decided and why
/// (`GET /api/v1/events/{id}`).
async fn event(
    State(c): State<Console>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let e = match crate::api::events::explained(&c.s, &id).await {
        Ok(e) => e,
        Err(e) => return failure(&session, &e, "/ui/events"),
    };
    let webhooks = c.s.registry.load();
    let page = view::EventPage {
        chrome: chrome(&session, "events", None),
        event: view::EventFacts::new(&e.event),
        decisions: e
            .decisions
            .iter()
            .map(|(d, recorded)| view::DecisionRow::of(d, *recorded, |w| webhooks.get(w).is_some()))
            .collect(),
        dedup_count: e.dedup_count.map(|n| n.to_string()).unwrap_or_default(),
    };
    html(StatusCode::OK, &page)
}

// ---------------------------------------------------------------------------
// Admin actions (the guard has checked the role and the CSRF token)

fn done(to: String, notice: &str) -> Response {
    Redirect::to(&format!("{to}?notice={notice}")).into_response()
}

fn webhook_page(id: &str) -> String {
    format!("/ui/webhooks/{}", view::path_segment(id))
}

async fn test(
    State(c): State<Console>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    match crate::api::send_test(&c.s, &id).await {
        Ok(_) => done(webhook_page(&id), "tested"),
        Err(e) => failure(&session, &e, &webhook_page(&id)),
    }
}

/// Sends a test event to every active webhook at once (the API's
/// `POST /api/v1/test`); each attempt shows in its webhook's deliveries.
async fn test_all(State(c): State<Console>, Extension(session): Extension<Session>) -> Response {
    match crate::api::send_test_all(&c.s).await {
        Ok(_) => done("/ui/webhooks".into(), "tested-all"),
        Err(e) => failure(&session, &e, "/ui/webhooks"),
    }
}

async fn enable(
    State(c): State<Console>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        let w = c.s.webhook(&id)?;
        crate::api::set_active(&c.s, &w, true).await?;
        c.s.refresh_registry().await?;
        Ok::<_, ApiError>(())
    }
    .await;
    match result {
        Ok(()) => done(webhook_page(&id), "enabled"),
        Err(e) => failure(&session, &e, &webhook_page(&id)),
    }
}

async fn resend(
    State(c): State<Console>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    match crate::api::resend(&c.s, &id).await {
        Ok(d) => done(webhook_page(&d.webhook_id), "resent"),
        Err(e) => failure(
            &session,
            &e,
            &format!("/ui/deliveries/{}", view::path_segment(&id)),
        ),
    }
}

async fn replay(
    State(c): State<Console>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    match crate::api::replay(&c.s, &id).await {
        Ok(_) => done("/ui/webhooks".into(), "replayed"),
        Err(e) => failure(&session, &e, "/ui/webhooks"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_console_route_has_a_handler_and_is_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for r in ROUTES {
            assert!(
                endpoint(r.method, r.path).is_some(),
                "{} {}",
                r.method,
                r.path
            );
            assert!(
                seen.insert((r.method, r.path)),
                "{} {} twice",
                r.method,
                r.path
            );
            assert!(r.path == "/ui" || r.path.starts_with("/ui/"), "{}", r.path);
            // The ack link's POST is the exception: its signed, single-use
            // token is its authority (console::ack).
            if r.method == "POST"
                && r.path != "/ui/login"
                && r.path != "/ui/logout"
                && !r.path.starts_with("/ui/ack/")
            {
                assert_eq!(r.access, Access::Admin, "{} changes something", r.path);
            }
        }
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; relay_session=abc; b=2"),
        );
        assert_eq!(session_cookie(&h), Some("abc"));
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("relay_sessionx=abc"),
        );
        assert_eq!(session_cookie(&h), None);
        h.insert(header::COOKIE, HeaderValue::from_static("relay_session="));
        assert_eq!(session_cookie(&h), None);
    }

    #[test]
    fn a_notice_shows_only_known_texts() {
        assert_eq!(notice_text("<script>"), "");
        assert!(notice_text("resent").starts_with("Resent"));
    }

    #[test]
    fn the_script_and_stylesheet_are_embedded_and_the_script_sets_no_html_from_data() {
        assert!(JS.contains("data-poll"));
        assert!(!JS.contains("eval("));
        assert!(CSS.contains(".badge"));
        assert!(CSP.contains("script-src 'self'") && !CSP.contains("unsafe-inline"));
    }
}
