//! `relay.yaml`: the typed configuration, `${VAR}` interpolation and validation.
//!
//! Owns: parsing and checking the file. Touches nothing else: no sockets, no store.
//!
//! Per-field rules live in the `Deserialize` impls of small newtypes
//! ([`EnvString`], [`WebhookUrl`], [`HeaderMap`], …) so that a bad value is
//! reported by the YAML parser with the line and column where it stands.
//! Rules that span fields (GET with a body, duplicate names) are checked in
//! [`Config::validate`] and name the field path.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

pub mod matcher;
pub mod routing;
pub use matcher::Matcher;
pub use routing::{DedupSpec, DigestSpec, MuteSpec, RoutingConfig, SuppressRule};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{message}")]
    Parse { path: String, message: String },
    #[error("{path}: {field}: {message}")]
    Invalid {
        path: String,
        field: String,
        message: String,
    },
}

/// The whole file. Every section has a default so a minimal file is a few lines.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listen")]
    pub listen: Listen,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub plugins: PluginsConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub network: NetworkConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// Catalogue of event types (name → description). When absent, any type
    /// matching `[A-Za-z0-9_.:-]+` is accepted.
    #[serde(default)]
    pub event_types: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub defaults: DefaultsConfig,
    #[serde(default)]
    pub webhooks: Vec<WebhookSpec>,
    /// Producers that post their own JSON shape (DESIGN §20), each at
    /// `POST /api/v1/sources/{name}`.
    #[serde(default)]
    pub sources: Vec<SourceSpec>,
    /// Routing and noise control (DESIGN §17).
    #[serde(default)]
    pub routing: RoutingConfig,
    /// The web console at `/ui/` (DESIGN §21): sessions and sign-in limits.
    #[serde(default)]
    pub console: ConsoleConfig,
    /// On SIGTERM/SIGINT: how long attempts in flight (and requests being
    /// answered) may take to finish and be recorded before the relay exits.
    #[serde(
        default = "default_shutdown_grace_ms",
        deserialize_with = "range::shutdown_grace_ms"
    )]
    pub shutdown_grace_ms: u64,
    /// Which events belong to one incident (DESIGN §19).
    #[serde(default)]
    pub incidents: IncidentsConfig,
}

fn default_shutdown_grace_ms() -> u64 {
    10_000
}

/// Range checks for numbers an operator sets, each naming its field: a
/// value outside its range could overflow a sum or a size (a deadline,
/// a semaphore), so it is refused at load.
mod range {
    use serde::de::{self, Deserialize, Deserializer};

    macro_rules! range {
        ($name:ident, $t:ty, $min:expr, $max:expr) => {
            pub fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<$t, D::Error> {
                let v = <$t>::deserialize(d)?;
                if ($min..=$max).contains(&v) {
                    Ok(v)
                } else {
                    Err(de::Error::custom(format!(
                        "{}: {} is out of range ({}–{})",
                        stringify!($name),
                        v,
                        $min,
                        $max
                    )))
                }
            }
        };
    }

    const WEEK_MS: u64 = 7 * 24 * 3600 * 1000;
    range!(shutdown_grace_ms, u64, 0, 600_000);
    range!(concurrency_per_webhook, usize, 1, 1024);
    range!(retry_base_ms, u64, 1, WEEK_MS);
    range!(retry_max_ms, u64, 1, WEEK_MS);
    range!(retry_after_max_ms, u64, 0, WEEK_MS);
    range!(timeout_ms, u64, 1, 600_000);
    range!(memory_mb, u32, 1, 4096);
    range!(max_connections, usize, 1, 1_000_000);
    range!(header_read_timeout_ms, u64, 100, 600_000);
    range!(max_events_per_body, usize, 1, 100_000);
    range!(session_ttl_s, u64, 1, 30 * 24 * 3600);
    range!(login_max_failures, u32, 1, 1000);
    range!(login_window_s, u64, 1, 24 * 3600);
}

/// `console:` — the web console's sessions and sign-in limits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// How long a console session lasts after sign-in (seconds).
    #[serde(
        default = "default_session_ttl_s",
        deserialize_with = "range::session_ttl_s"
    )]
    pub session_ttl_s: u64,
    /// Failed sign-ins one peer address may make within `login_window_s`;
    /// past that, its sign-ins are refused (429) until the window has passed.
    #[serde(
        default = "default_login_max_failures",
        deserialize_with = "range::login_max_failures"
    )]
    pub login_max_failures: u32,
    #[serde(
        default = "default_login_window_s",
        deserialize_with = "range::login_window_s"
    )]
    pub login_window_s: u64,
    /// Mark the session cookie `Secure` (the relay is reached over HTTPS
    /// through a proxy). It is also marked so on a request that says
    /// `X-Forwarded-Proto: https`.
    #[serde(default)]
    pub secure_cookie: bool,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            session_ttl_s: default_session_ttl_s(),
            login_max_failures: default_login_max_failures(),
            login_window_s: default_login_window_s(),
            secure_cookie: false,
        }
    }
}

fn default_session_ttl_s() -> u64 {
    8 * 3600
}
fn default_login_max_failures() -> u32 {
    5
}
fn default_login_window_s() -> u64 {
    300
}

fn default_listen() -> Listen {
    Listen(SocketAddr::from(([127, 0, 0, 1], 8080)))
}

/// `listen:` address, interpolated then parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen(pub SocketAddr);

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = EnvString::deserialize(d)?;
        raw.0.parse().map(Listen).map_err(|_| {
            de::Error::custom(format!(
                "listen: {:?} is not an address such as 127.0.0.1:8080",
                raw.0
            ))
        })
    }
}

/// `storage:` — which backend holds events, deliveries and history:
/// `sqlite: PATH` (the embedded default) or `postgres: URL` (several relay
/// instances sharing one database), never both.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawStorage")]
pub struct StorageConfig {
    pub backend: StorageBackend,
    pub retention_days: u32,
    /// Postgres: how long a claimed delivery stays this instance's without
    /// renewal (renewed every quarter of it while queued or attempted); a
    /// killed instance's deliveries are taken over after at most this long.
    pub lease_ms: u64,
}

/// The store a relay runs on.
#[derive(Debug, Clone, PartialEq)]
pub enum StorageBackend {
    Sqlite(EnvPath),
    /// A `postgres://` URL; it may hold a password, so it never prints.
    Postgres(Secret),
}

impl StorageConfig {
    /// The directory for files the relay keeps beside its store (the
    /// plugin cache): the SQLite file's directory, or `./data` for a
    /// database server.
    pub fn local_dir(&self) -> PathBuf {
        match &self.backend {
            StorageBackend::Sqlite(p) => {
                p.0.parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from("."))
            }
            StorageBackend::Postgres(_) => PathBuf::from("./data"),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    #[serde(default)]
    sqlite: Option<EnvPath>,
    #[serde(default)]
    postgres: Option<Secret>,
    #[serde(default = "default_retention_days")]
    retention_days: u32,
    #[serde(default = "default_lease_ms")]
    lease_ms: u64,
}

impl TryFrom<RawStorage> for StorageConfig {
    type Error = String;
    fn try_from(raw: RawStorage) -> Result<Self, String> {
        let backend = match (raw.sqlite, raw.postgres) {
            (Some(_), Some(_)) => {
                return Err(
                    "storage: give either sqlite (a file) or postgres (a URL), not both".into(),
                );
            }
            (None, Some(url)) => {
                let u = url.expose();
                if !(u.starts_with("postgres://") || u.starts_with("postgresql://")) {
                    // The value is not shown: it may hold a password.
                    return Err(
                        "storage.postgres: expected a URL starting with postgres:// or postgresql://"
                            .into(),
                    );
                }
                StorageBackend::Postgres(url)
            }
            (Some(path), None) => StorageBackend::Sqlite(path),
            (None, None) => StorageBackend::Sqlite(default_sqlite()),
        };
        if !(MIN_LEASE_MS..=MAX_LEASE_MS).contains(&raw.lease_ms) {
            return Err(format!(
                "storage.lease_ms: {} is outside {MIN_LEASE_MS}..={MAX_LEASE_MS}",
                raw.lease_ms
            ));
        }
        Ok(StorageConfig {
            backend,
            retention_days: raw.retention_days,
            lease_ms: raw.lease_ms,
        })
    }
}

fn default_sqlite() -> EnvPath {
    EnvPath(PathBuf::from("./data/relay.db"))
}
/// Bounds of `storage.lease_ms`: 1 s .. 1 h.
pub const MIN_LEASE_MS: u64 = 1_000;
pub const MAX_LEASE_MS: u64 = 3_600_000;
fn default_lease_ms() -> u64 {
    60_000
}
fn default_retention_days() -> u32 {
    30
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            backend: StorageBackend::Sqlite(default_sqlite()),
            retention_days: default_retention_days(),
            lease_ms: default_lease_ms(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    #[serde(default = "default_plugins_dir")]
    pub dir: EnvPath,
    #[serde(default = "default_memory_mb", deserialize_with = "range::memory_mb")]
    pub memory_mb: u32,
    #[serde(
        default = "default_plugin_timeout_ms",
        deserialize_with = "range::timeout_ms"
    )]
    pub timeout_ms: u64,
    /// `warm` (default): reuse instances from a small pool; `fresh`: a new
    /// instance for every call.
    #[serde(default)]
    pub isolation: Isolation,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    #[default]
    Warm,
    Fresh,
}

fn default_plugins_dir() -> EnvPath {
    EnvPath(PathBuf::from("./plugins"))
}
fn default_memory_mb() -> u32 {
    64
}
fn default_plugin_timeout_ms() -> u64 {
    100
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            dir: default_plugins_dir(),
            memory_mb: default_memory_mb(),
            timeout_ms: default_plugin_timeout_ms(),
            isolation: Isolation::Warm,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub name: String,
    pub token: Secret,
    pub role: Role,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Ingest,
    Viewer,
    Admin,
    /// Scrapes `GET /metrics` and nothing else. Once a token has this role,
    /// `/metrics` needs a metrics, viewer or admin token (it is public
    /// while none has).
    Metrics,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// SSRF guard exceptions: networks a destination may resolve into.
    #[serde(default)]
    pub allow_private: Vec<IpNet>,
    /// Allow `http://` destinations (otherwise `https://` only).
    #[serde(default)]
    pub allow_http: bool,
    /// A PEM file of CA certificates trusted for every outbound TLS
    /// connection (HTTPS webhooks and `tls://` syslog) in addition to the
    /// public webpki roots: a private SIEM's or proxy's CA.
    #[serde(default)]
    pub ca_file: Option<EnvPath>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest accepted `POST /api/v1/events` body.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Most events in one batch.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Client connections open at once; past it new connections are closed
    /// at once (logged).
    #[serde(
        default = "default_max_connections",
        deserialize_with = "range::max_connections"
    )]
    pub max_connections: usize,
    /// A client must send a request's headers within this long after its
    /// connection opened or its previous request was answered; otherwise
    /// the connection is closed (slow or half-sent requests, idle keep-alive).
    #[serde(
        default = "default_header_read_timeout_ms",
        deserialize_with = "range::header_read_timeout_ms"
    )]
    pub header_read_timeout_ms: u64,
    /// Most events one body posted to a source may turn into; past it the
    /// body is refused (400 `too_many_events`) and nothing is stored.
    #[serde(
        default = "default_max_events_per_body",
        deserialize_with = "range::max_events_per_body"
    )]
    pub max_events_per_body: usize,
}

fn default_max_events_per_body() -> usize {
    1000
}

fn default_max_connections() -> usize {
    1024
}
fn default_header_read_timeout_ms() -> u64 {
    10_000
}

fn default_max_body_bytes() -> usize {
    1024 * 1024
}
fn default_max_batch() -> usize {
    1000
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: default_max_body_bytes(),
            max_batch: default_max_batch(),
            max_connections: default_max_connections(),
            header_read_timeout_ms: default_header_read_timeout_ms(),
            max_events_per_body: default_max_events_per_body(),
        }
    }
}

/// Retry schedule, circuit breaker and concurrency.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// First retry waits about this long; each further retry doubles it.
    #[serde(
        default = "default_retry_base_ms",
        deserialize_with = "range::retry_base_ms"
    )]
    pub retry_base_ms: u64,
    /// No computed backoff is longer than this.
    #[serde(
        default = "default_retry_max_ms",
        deserialize_with = "range::retry_max_ms"
    )]
    pub retry_max_ms: u64,
    /// A `Retry-After` longer than this is cut down to it.
    #[serde(
        default = "default_retry_after_max_ms",
        deserialize_with = "range::retry_after_max_ms"
    )]
    pub retry_after_max_ms: u64,
    /// Consecutive failed deliveries that deactivate a webhook (0 = never).
    #[serde(default = "default_breaker_threshold")]
    pub breaker_threshold: u32,
    /// Attempts in flight (sent and not yet recorded) at once for one webhook.
    #[serde(
        default = "default_concurrency",
        deserialize_with = "range::concurrency_per_webhook"
    )]
    pub concurrency_per_webhook: usize,
}

fn default_retry_base_ms() -> u64 {
    1000
}
fn default_retry_max_ms() -> u64 {
    5 * 60 * 1000
}
fn default_retry_after_max_ms() -> u64 {
    10 * 60 * 1000
}
fn default_breaker_threshold() -> u32 {
    10
}
/// 32: with the permit held until the attempt is recorded, this bounds
/// both the load on one receiver and how many attempts a crash can leave
/// sent-but-unrecorded (re-sent on restart). Measured in `cargo bench
/// --bench e2e`: 16 → 64 gave 1.8× throughput on a fast receiver.
fn default_concurrency() -> usize {
    32
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            retry_base_ms: default_retry_base_ms(),
            retry_max_ms: default_retry_max_ms(),
            retry_after_max_ms: default_retry_after_max_ms(),
            breaker_threshold: default_breaker_threshold(),
            concurrency_per_webhook: default_concurrency(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultsConfig {
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
}

/// `incidents:` (DESIGN §19). Only `key` so far; the incidents and
/// escalation fields join this type.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentsConfig {
    /// Template of the incident key (`"{{incident_id}}"`): events with the
    /// same key belong to one incident. Without it, an event's incident key
    /// is its id; a key that renders empty also falls back to the event id.
    #[serde(default)]
    pub key: Option<IncidentKey>,
}

/// An incident key template: not empty.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentKey(pub String);

impl<'de> Deserialize<'de> for IncidentKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.trim().is_empty() {
            return Err(serde::de::Error::custom(
                "incidents.key must not be empty (leave it out to use each event's id)",
            ));
        }
        Ok(IncidentKey(s))
    }
}

/// One webhook, as written in relay.yaml or posted to the admin API.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    /// Stable id; defaults to a slug of the name for webhooks from the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    pub url: WebhookUrl,
    #[serde(default)]
    pub method: Method,
    #[serde(default)]
    pub headers: HeaderMap,
    #[serde(default)]
    pub body: Option<BodyTemplate>,
    #[serde(default)]
    pub secret: Option<Secret>,
    #[serde(default)]
    pub signature: SignatureProfile,
    #[serde(default)]
    pub signature_header: Option<HeaderName>,
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    /// A matcher (DESIGN §17); the plain `{field: value | [values]}` form
    /// of earlier versions is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Matcher>,
    /// Mute windows: events recorded as `muted`, nothing sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mute: Option<MuteSpec>,
    /// Batch events into digest deliveries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<DigestSpec>,
    #[serde(default = "default_format")]
    pub format: String,
    #[serde(default)]
    pub destination: Option<String>,
    /// Options for the formatter plugin (JSON object), parsed once per webhook.
    #[serde(default)]
    pub options: Option<serde_json::Value>,
    /// Options for the destination plugin (JSON object).
    #[serde(default)]
    pub destination_options: Option<serde_json::Value>,
    /// Hosts a destination plugin's requests may go to besides the host of
    /// `url` (host names or IP literals, without scheme or port). Requests
    /// to any other host fail the delivery.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_hosts: Vec<DestinationHost>,
    #[serde(default = "default_retry_count")]
    pub retry_count: RetryCount,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: TimeoutMs,
    #[serde(default = "default_true")]
    pub is_active: bool,
    /// How the relay authenticates its requests (OAuth2 client credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<WebhookAuth>,
    /// Sender and recipients of an `smtp://` / `smtps://` webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailSpec>,
    /// `smtp://` without STARTTLS; only to a host in `network.allow_private`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_plaintext: bool,
}

/// `auth:` of a webhook.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookAuth {
    pub oauth2: OAuth2Config,
}

/// OAuth2 client credentials (RFC 6749 §4.4): the relay fetches a token from
/// `token_url` and sends it as `Authorization: Bearer …`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Config {
    /// `https://` (or `http://` with `network.allow_http`).
    pub token_url: WebhookUrl,
    pub client_id: EnvString,
    pub client_secret: Secret,
    /// Space-separated scopes; left out of the token request when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<EnvString>,
    /// How the client authenticates to the token endpoint: `body`
    /// (`client_id` and `client_secret` form fields, the default) or
    /// `basic` (HTTP Basic).
    #[serde(default)]
    pub client_auth: ClientAuth,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    #[default]
    Body,
    Basic,
}

/// `email:` of an `smtp://` / `smtps://` webhook.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSpec {
    /// `alerts@example.com` or `Relay <alerts@example.com>`.
    pub from: EnvString,
    pub to: Vec<EnvString>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cc: Vec<EnvString>,
    /// SMTP login; the password is the webhook's `secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<EnvString>,
}

/// The spec as stored JSON of an API webhook: like its `Serialize` output
/// but with the OAuth2 client secret itself (the webhook `secret` is kept
/// apart by the caller).
pub fn reveal_auth_secret(spec: &WebhookSpec, m: &mut serde_json::Map<String, serde_json::Value>) {
    if let Some(auth) = &spec.auth
        && let Some(serde_json::Value::Object(a)) = m.get_mut("auth")
        && let Some(serde_json::Value::Object(o)) = a.get_mut("oauth2")
    {
        o.insert(
            "client_secret".into(),
            serde_json::Value::String(auth.oauth2.client_secret.expose().to_owned()),
        );
    }
}

fn default_format() -> String {
    "json".to_owned()
}
fn default_retry_count() -> RetryCount {
    RetryCount(3)
}
fn default_timeout_ms() -> TimeoutMs {
    TimeoutMs(5000)
}
fn default_true() -> bool {
    true
}

/// A string with `${VAR}` / `${VAR:-default}` expanded from the environment.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct EnvString(pub String);

impl fmt::Debug for EnvString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl<'de> Deserialize<'de> for EnvString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        expand_env(&raw, |k| std::env::var(k).ok())
            .map(EnvString)
            .map_err(de::Error::custom)
    }
}

/// A filesystem path that may use `${VAR}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvPath(pub PathBuf);

impl<'de> Deserialize<'de> for EnvPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(EnvPath(PathBuf::from(EnvString::deserialize(d)?.0)))
    }
}

/// Expands `${NAME}` and `${NAME:-default}`. `$$` is a literal `$`.
pub fn expand_env(raw: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(end) = body.find('}') else {
            return Err(format!("unclosed ${{ in {raw:?}"));
        };
        let expr = &body[..end];
        let (name, default) = match expr.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (expr, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("${{{expr}}} is not a valid variable reference"));
        }
        match (lookup(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                    "environment variable {name} is not set (export it, or write ${{{name}:-default}})"
                ));
            }
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A secret (token, signing key). Its `Debug` and `Serialize` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"[redacted]\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = EnvString::deserialize(d)?.0;
        if v.is_empty() {
            return Err(de::Error::custom("a secret or token must not be empty"));
        }
        Ok(Secret(v))
    }
}

/// `scheme://host[:port]` of a URL without user info, plus `/[redacted]`
/// when a path or query followed: URL paths and queries often carry
/// credentials (Slack and Teams webhook URLs, `?token=`), so they never go
/// into an error message, a log line or a viewer's response. Works on text
/// that is not a valid URL too.
pub fn redact_url(url: &str) -> String {
    if url.starts_with("unix://") {
        // A socket path on this host: no credential in it.
        return url.to_owned();
    }
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = rest[..end].rsplit('@').next().unwrap_or("");
    let tail = if matches!(&rest[end..], "" | "/") {
        ""
    } else {
        "/[redacted]"
    };
    match scheme {
        Some(s) => format!("{s}://{host}{tail}"),
        None => format!("{host}{tail}"),
    }
}

/// Destination URL: https (or http), or udp/tcp/tls for syslog. Whether
/// http is allowed depends on `network.allow_http`, checked in `validate`.
///
/// The scheme is case-insensitive (RFC 3986 §3.1) and stored lower-case, so
/// `HTTP://` is checked against `allow_http` and sent like `http://`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct WebhookUrl {
    url: String,
    /// Whether `${…}` stood in the scheme or host part as written (the
    /// path is never shown to viewers anyway).
    #[serde(skip)]
    host_from_env: bool,
}

impl WebhookUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let url = match raw.split_once("://") {
            Some((scheme, rest)) => format!("{}://{rest}", scheme.to_ascii_lowercase()),
            None => raw.to_owned(),
        };
        if let Some(path) = url.strip_prefix("unix://") {
            // The host's own syslog socket: an absolute path, no host.
            if !path.starts_with('/') || path.len() < 2 || path.contains(['?', '#', '\0']) {
                return Err(format!(
                    "url: {url:?} is not a socket path; write unix:///dev/log (unix:// and an absolute path)"
                ));
            }
            return Ok(WebhookUrl {
                url,
                host_from_env: false,
            });
        }
        // Errors show scheme://host only: paths and queries carry credentials.
        let shown = redact_url(&url);
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("url: {shown:?} is not a valid URL ({e})"))?;
        let scheme = uri.scheme_str().unwrap_or("");
        if !matches!(
            scheme,
            "https" | "http" | "udp" | "tcp" | "tls" | "smtp" | "smtps"
        ) {
            return Err(format!(
                "url: {shown:?} has scheme {scheme:?}; use https:// (http:// with network.allow_http), udp://, tcp://, tls:// or unix:// for syslog, smtp:// or smtps:// for email"
            ));
        }
        if matches!(scheme, "smtp" | "smtps") && !matches!(uri.path(), "" | "/") {
            return Err(format!(
                "url: {shown:?}: an email URL is smtp://host[:port] or smtps://host[:port], without a path"
            ));
        }
        let host = uri.host().unwrap_or("");
        if host.is_empty() {
            return Err(format!("url: {shown:?} has no host"));
        }
        if matches!(scheme, "udp" | "tcp" | "tls") && uri.port_u16().is_none() {
            return Err(format!(
                "url: {shown:?} needs a port for the syslog transport (e.g. {scheme}://host:6514)"
            ));
        }
        Ok(WebhookUrl {
            url,
            host_from_env: false,
        })
    }
    pub fn as_str(&self) -> &str {
        &self.url
    }
    /// The host when it is an IP literal (`[::1]` included).
    pub fn literal_ip(&self) -> Option<std::net::IpAddr> {
        let uri: http::Uri = self.url.parse().ok()?;
        uri.host()?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()
    }
    /// The scheme, lower-case.
    pub fn scheme(&self) -> &str {
        self.url.split("://").next().unwrap_or("")
    }
    /// `scheme://host[:port]`, with `/[redacted]` for any path or query
    /// ([`redact_url`]); the host too is redacted when it came from `${…}`.
    /// What viewers, errors and logs show.
    pub fn redacted(&self) -> String {
        if self.host_from_env {
            let tail = if redact_url(&self.url).ends_with("/[redacted]") {
                "/[redacted]"
            } else {
                ""
            };
            format!("{}://[redacted]{tail}", self.scheme())
        } else {
            redact_url(&self.url)
        }
    }
}

/// One entry of `destination_hosts`: a host alone (`api.example.com`,
/// `192.0.2.7`, `[2001:db8::1]`), kept lower case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct DestinationHost(String);

impl DestinationHost {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let bad = || {
            Err(format!(
                "{raw:?} is not a host; give the host alone, without scheme, port or path (e.g. api.example.com)"
            ))
        };
        match raw.parse::<http::uri::Authority>() {
            Ok(a) if a.port().is_none() && a.host() == raw && !raw.is_empty() => {
                Ok(DestinationHost(raw.to_ascii_lowercase()))
            }
            _ => bad(),
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for DestinationHost {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // No `${VAR}`: the field is also posted through the API.
        let raw = String::deserialize(d)?;
        DestinationHost::parse(&raw)
            .map_err(|e| de::Error::custom(format!("destination_hosts: {e}")))
    }
}

impl<'de> Deserialize<'de> for WebhookUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let written = String::deserialize(d)?;
        let raw = expand_env(&written, |k| std::env::var(k).ok()).map_err(de::Error::custom)?;
        let mut url = WebhookUrl::parse(&raw).map_err(de::Error::custom)?;
        let rest = written.split_once("://").map_or("", |(_, r)| r);
        let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        // Everything before the path as written: `${URL}`, `https://${HOST}/x`.
        url.host_from_env = written
            .split("://")
            .next()
            .is_some_and(|s| s.contains("${"))
            || rest[..host_end].contains("${");
        Ok(url)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Method {
    #[default]
    #[serde(alias = "post")]
    POST,
    #[serde(alias = "put")]
    PUT,
    #[serde(alias = "patch")]
    PATCH,
    #[serde(alias = "get")]
    GET,
    #[serde(alias = "delete")]
    DELETE,
}

impl Method {
    pub fn as_http(self) -> http::Method {
        match self {
            Method::POST => http::Method::POST,
            Method::PUT => http::Method::PUT,
            Method::PATCH => http::Method::PATCH,
            Method::GET => http::Method::GET,
            Method::DELETE => http::Method::DELETE,
        }
    }
}

/// A header name: a valid HTTP token (so no spaces).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct HeaderName(String);

impl HeaderName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        http::HeaderName::from_bytes(raw.as_bytes())
            .map(|_| HeaderName(raw.to_owned()))
            .map_err(|_| {
                format!("header name {raw:?} is not valid: no spaces, colons or control characters")
            })
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for HeaderName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        HeaderName::parse(&String::deserialize(d)?).map_err(de::Error::custom)
    }
}

/// Custom headers in the order written; names unique case-insensitively.
/// Values may hold `{{variables}}` and `${ENV}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderMap(pub Vec<(HeaderName, String)>, FromEnv);

/// Names (lower-case) of the headers whose value, as written, used `${…}`:
/// viewers never see such a value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FromEnv(std::collections::BTreeSet<String>);

impl HeaderMap {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.as_str().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// Whether the value of `name` came from `${…}` interpolation.
    pub fn from_env(&self, name: &str) -> bool {
        self.1.0.contains(&name.to_ascii_lowercase())
    }
}

impl Serialize for HeaderMap {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k.as_str(), v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for HeaderMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = HeaderMap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of header names to values")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<HeaderMap, A::Error> {
                let mut out: Vec<(HeaderName, String)> = Vec::new();
                let mut from_env = FromEnv::default();
                while let Some((k, written)) = map.next_entry::<HeaderName, String>()? {
                    let v = expand_env(&written, |k| std::env::var(k).ok())
                        .map_err(de::Error::custom)?;
                    if written.contains("${") {
                        from_env.0.insert(k.as_str().to_ascii_lowercase());
                    }
                    if out
                        .iter()
                        .any(|(seen, _)| seen.as_str().eq_ignore_ascii_case(k.as_str()))
                    {
                        return Err(de::Error::custom(format!(
                            "headers: {:?} is given twice (header names are case-insensitive)",
                            k.as_str()
                        )));
                    }
                    if v.contains(['\r', '\n']) {
                        return Err(de::Error::custom(format!(
                            "headers: the value of {:?} contains a line break",
                            k.as_str()
                        )));
                    }
                    out.push((k, v));
                }
                Ok(HeaderMap(out, from_env))
            }
        }
        d.deserialize_map(V)
    }
}

/// The `body` template: a structured value, or a string that parses as JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct BodyTemplate(pub serde_json::Value);

impl<'de> Deserialize<'de> for BodyTemplate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        match v {
            serde_json::Value::String(s) => {
                serde_json::from_str(&s).map(BodyTemplate).map_err(|e| {
                    de::Error::custom(format!("body: the string is not valid JSON ({e})"))
                })
            }
            other => Ok(BodyTemplate(other)),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureProfile {
    #[default]
    Sha256,
    Standard,
}

macro_rules! bounded_u64 {
    ($name:ident, $field:literal, $min:expr, $max:expr) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            pub const MIN: u64 = $min;
            pub const MAX: u64 = $max;
            pub fn new(v: u64) -> Result<Self, String> {
                if (Self::MIN..=Self::MAX).contains(&v) {
                    Ok($name(v))
                } else {
                    Err(format!(
                        "{}: {} is out of range ({}–{})",
                        $field,
                        v,
                        Self::MIN,
                        Self::MAX
                    ))
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $name::new(u64::deserialize(d)?).map_err(de::Error::custom)
            }
        }
    };
}

bounded_u64!(RetryCount, "retry_count", 0, 10);
bounded_u64!(TimeoutMs, "timeout_ms", 1000, 30000);

fn json_text(v: Option<&serde_json::Value>) -> String {
    v.map(serde_json::Value::to_string)
        .unwrap_or_else(|| "{}".to_owned())
}

/// Event type names: `[A-Za-z0-9_.:-]+`.
pub fn valid_event_type(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// Lower-case slug of a webhook name, used as the id of webhooks from the file.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        "webhook".into()
    } else {
        out
    }
}

impl WebhookSpec {
    /// `options` as the JSON text a formatter plugin is created with.
    pub fn format_options_json(&self) -> String {
        json_text(self.options.as_ref())
    }

    /// `destination_options` as the JSON text a destination plugin is created with.
    pub fn destination_options_json(&self) -> String {
        json_text(self.destination_options.as_ref())
    }

    /// Checks that span fields and need nothing but the config itself.
    /// `field` prefixes every message (e.g. `webhooks[2]`). The checks that
    /// need other modules (SSRF guard, signing keys, known formats and
    /// destinations) run in `crate::check::webhook`, which calls this first.
    pub fn validate(
        &self,
        field: &str,
        ctx: &ValidationContext<'_>,
    ) -> Result<(), (String, String)> {
        let err = |f: &str, m: String| Err((format!("{field}.{f}"), m));
        if self.name.trim().is_empty() {
            return err("name", "must not be empty".into());
        }
        if self.url.scheme() == "http" && !ctx.allow_http {
            return err(
                "url",
                format!(
                    "{:?} uses http://; use https:// or set network.allow_http: true",
                    self.url.redacted()
                ),
            );
        }
        if self.method == Method::GET && self.body.is_some() {
            return err(
                "body",
                "a GET webhook sends no body; remove body or change method".into(),
            );
        }
        for (i, t) in self.event_types.iter().flatten().enumerate() {
            if t == "*" {
                continue;
            }
            if !valid_event_type(t) {
                return err(
                    &format!("event_types[{i}]"),
                    format!("{t:?} is not a valid event type"),
                );
            }
            if let Some(cat) = ctx.event_types
                && !cat.contains_key(t)
            {
                return err(
                    &format!("event_types[{i}]"),
                    format!("{t:?} is not declared under event_types"),
                );
            }
        }
        if matches!(self.url.scheme(), "udp" | "tcp" | "tls") && self.destination.is_some() {
            return err(
                "destination",
                "a syslog URL (udp/tcp/tls) takes no destination plugin".into(),
            );
        }
        if matches!(self.url.scheme(), "udp" | "tcp" | "tls") && self.format == "json" {
            return err(
                "format",
                "a syslog URL (udp/tcp/tls) needs a line format such as syslog or cef, not json"
                    .into(),
            );
        }
        if let Some(d) = &self.digest {
            if d.group_by.len() > 8 {
                return err("digest.group_by", "at most 8 fields make a group".into());
            }
            for (i, g) in d.group_by.iter().enumerate() {
                if g.is_empty() || g.split('.').any(str::is_empty) {
                    return err(
                        &format!("digest.group_by[{i}]"),
                        format!("{g:?} is not a data path such as tenant or finding.host"),
                    );
                }
            }
        }
        self.validate_channels(ctx)
            .map_err(|(f, m)| (format!("{field}.{f}"), m))
    }

    /// The rules of `auth`, `email`, `allow_plaintext` and the `smtp`,
    /// `smtps` and `unix` schemes (DESIGN §18). Errors name the field
    /// relative to the webhook.
    fn validate_channels(&self, ctx: &ValidationContext<'_>) -> Result<(), (String, String)> {
        let err = |f: &str, m: String| Err((f.to_owned(), m));
        let scheme = self.url.scheme();
        let email = matches!(scheme, "smtp" | "smtps");
        let http = matches!(scheme, "http" | "https");
        if let Some(auth) = &self.auth {
            if !http {
                return err(
                    "auth",
                    format!("OAuth2 authenticates HTTP requests; a {scheme}:// URL takes no auth"),
                );
            }
            let t = &auth.oauth2.token_url;
            match t.scheme() {
                "https" => {}
                "http" if ctx.allow_http => {}
                "http" => {
                    return err(
                        "auth.oauth2.token_url",
                        format!(
                            "{:?} uses http://; use https:// or set network.allow_http: true",
                            t.redacted()
                        ),
                    );
                }
                other => {
                    return err(
                        "auth.oauth2.token_url",
                        format!(
                            "{:?} has scheme {other:?}; a token endpoint is https://",
                            t.redacted()
                        ),
                    );
                }
            }
            // Whether a literal IP is allowed needs the guard: `check`.
            if auth.oauth2.client_id.0.is_empty() {
                return err("auth.oauth2.client_id", "must not be empty".into());
            }
        }
        if (email || scheme == "unix")
            && let Some(d) = &self.destination
        {
            return err(
                "destination",
                format!("a {scheme}:// URL takes no destination plugin (got {d:?})"),
            );
        }
        if scheme == "unix" && self.format != "syslog" {
            return err(
                "format",
                format!(
                    "a unix:// syslog socket gets RFC 5424 messages: use format: syslog (not {:?})",
                    self.format
                ),
            );
        }
        if !email && self.email.is_some() {
            return err(
                "email",
                format!("only an smtp:// or smtps:// URL takes email (this one is {scheme}://)"),
            );
        }
        if self.allow_plaintext && scheme != "smtp" {
            return err(
                "allow_plaintext",
                format!("only for smtp:// URLs (this one is {scheme}://)"),
            );
        }
        if email {
            let Some(e) = &self.email else {
                return err(
                    "email",
                    format!("an {scheme}:// URL needs email: {{from, to: [...]}}"),
                );
            };
            if self.format == "json" {
                return err(
                    "format",
                    "an email URL needs a formatter that writes a subject, text and HTML (format: email)"
                        .into(),
                );
            }
            if e.to.is_empty() {
                return err("email.to", "needs at least one recipient".into());
            }
            // Each address's syntax is checked with the mailer: `check`.
            if self.allow_plaintext
                && let Some(ip) = self.url.literal_ip()
                && !ctx.allow_private.iter().any(|n| n.contains(&ip))
            {
                return err(
                    "allow_plaintext",
                    format!(
                        "plaintext SMTP is only allowed to a host in network.allow_private, and {ip} is not in it"
                    ),
                );
            }
        }
        Ok(())
    }
}

/// What a webhook is checked against.
pub struct ValidationContext<'a> {
    pub allow_http: bool,
    pub allow_private: &'a [IpNet],
    pub event_types: Option<&'a BTreeMap<String, String>>,
    pub known_formats: &'a [String],
    pub known_destinations: &'a [String],
}

impl Config {
    /// What webhook validation checks against: this config's network and
    /// event-type rules, and the format/destination names the caller knows.
    pub fn validation_context<'a>(
        &'a self,
        known_formats: &'a [String],
        known_destinations: &'a [String],
    ) -> ValidationContext<'a> {
        ValidationContext {
            allow_http: self.network.allow_http,
            allow_private: &self.network.allow_private,
            event_types: self.event_types.as_ref(),
            known_formats,
            known_destinations,
        }
    }

    /// Reads, interpolates and checks a file with the checks of this
    /// module alone (`crate::check::load` runs all). Errors name
    /// `file:line:col`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and checks what the config's own types can check; the rest
    /// (plugins, formats, signing keys, SSRF guard, CA file) is
    /// `crate::check::parse`.
    pub fn parse(text: &str, path: &str) -> Result<Config, ConfigError> {
        let cfg: Config = serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: format_yaml_error(&e.to_string()),
        })?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    fn validate(&self, path: &str) -> Result<(), ConfigError> {
        let invalid = |field: String, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            field,
            message,
        };
        if let Some(cat) = &self.event_types {
            for name in cat.keys() {
                if !valid_event_type(name) {
                    return Err(invalid(
                        format!("event_types.{name}"),
                        "an event type is made of letters, digits and _ . : -".into(),
                    ));
                }
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, t) in self.auth.tokens.iter().enumerate() {
            if !names.insert(t.name.as_str()) {
                return Err(invalid(
                    format!("auth.tokens[{i}].name"),
                    format!("{:?} is used twice", t.name),
                ));
            }
        }
        let d = &self.delivery;
        if d.retry_base_ms == 0 || d.retry_max_ms < d.retry_base_ms {
            return Err(invalid(
                "delivery.retry_max_ms".into(),
                "retry_base_ms must be > 0 and retry_max_ms at least retry_base_ms".into(),
            ));
        }
        self.routing.validate().map_err(|(f, m)| invalid(f, m))?;
        // The format and destination names are checked by `crate::check`.
        let ctx = self.validation_context(&[], &[]);
        let mut ids = std::collections::HashSet::new();
        for (i, w) in self.webhooks.iter().enumerate() {
            let field = format!("webhooks[{i}]");
            w.validate(&field, &ctx).map_err(|(f, m)| invalid(f, m))?;
            let id = w.id.clone().unwrap_or_else(|| slug(&w.name));
            if !ids.insert(id.clone()) {
                return Err(invalid(
                    format!("{field}.name"),
                    format!(
                        "{:?} gives the id {id:?}, which another webhook already has",
                        w.name
                    ),
                ));
            }
        }
        let mut sources = std::collections::HashSet::new();
        for (i, src) in self.sources.iter().enumerate() {
            let field = format!("sources[{i}]");
            src.validate(&field, self.event_types.as_ref())
                .map_err(|(f, m)| invalid(f, m))?;
            if !sources.insert(src.name.as_str()) {
                return Err(invalid(
                    format!("{field}.name"),
                    format!("{:?} is used by another source", src.name.as_str()),
                ));
            }
        }
        if let Some(name) = &self.routing.catch_all
            && !self
                .webhooks
                .iter()
                .any(|w| &w.name == name || w.id.as_ref() == Some(name) || &slug(&w.name) == name)
        {
            return Err(invalid(
                "routing.catch_all".into(),
                format!("{name:?} names no webhook of this file"),
            ));
        }
        if let Some(d) = &self.routing.dedup
            && d.key.trim().is_empty()
        {
            return Err(invalid(
                "routing.dedup.key".into(),
                "the key template is empty".into(),
            ));
        }
        Ok(())
    }

    /// Webhooks from the file with their ids filled in.
    pub fn file_webhooks(&self) -> Vec<WebhookSpec> {
        self.webhooks
            .iter()
            .map(|w| {
                let mut w = w.clone();
                w.id = Some(w.id.clone().unwrap_or_else(|| slug(&w.name)));
                w
            })
            .collect()
    }
}

/// One entry of `sources:`: where a producer that does not speak relay's
/// event format posts (`POST /api/v1/sources/{name}`), and how its body
/// becomes events (`crate::source`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// The last path segment of the source's URL.
    pub name: SourceName,
    pub kind: SourceKind,
    /// The event type every event of this source gets (`alertmanager`,
    /// `falco`: replaces the default type; `generic`: used when `map.type`
    /// is not given or finds nothing).
    #[serde(default, rename = "type")]
    pub event_type: Option<String>,
    /// `generic` only: JSON pointers into the posted body.
    #[serde(default)]
    pub map: Option<SourceMap>,
    /// `plugin` only: the name of a loaded `source` plugin.
    #[serde(default)]
    pub plugin: Option<String>,
    /// `plugin` only: options for the plugin (JSON object), parsed once.
    #[serde(default)]
    pub options: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// Prometheus Alertmanager webhook payload, version 4.
    Alertmanager,
    /// Falco `http_output` JSON.
    Falco,
    /// Any JSON, mapped by `map:`.
    Generic,
    /// A WebAssembly `source` plugin.
    Plugin,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Alertmanager => "alertmanager",
            SourceKind::Falco => "falco",
            SourceKind::Generic => "generic",
            SourceKind::Plugin => "plugin",
        }
    }
}

/// A source name: 1–64 letters, digits, `_`, `-` or `.` (it is a URL path segment).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct SourceName(String);

impl SourceName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            && raw != "."
            && raw != "..";
        if ok {
            Ok(SourceName(raw.to_owned()))
        } else {
            Err(format!(
                "name: {raw:?} is not a valid source name: use 1–64 letters, digits, _ - ."
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for SourceName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        SourceName::parse(&String::deserialize(d)?).map_err(de::Error::custom)
    }
}

/// `map:` of a `generic` source: RFC 6901 JSON pointers. `events` points at
/// an array of items in the body (without it the body is one item, or an
/// array of items); the others point into one item.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceMap {
    #[serde(default)]
    pub events: Option<JsonPointer>,
    #[serde(default, rename = "type")]
    pub event_type: Option<JsonPointer>,
    #[serde(default)]
    pub id: Option<JsonPointer>,
    #[serde(default)]
    pub time: Option<JsonPointer>,
    /// Default `""`: the whole item.
    #[serde(default)]
    pub data: Option<JsonPointer>,
}

/// An RFC 6901 JSON pointer: `""` (the whole value) or `/a/b/0`. A lone
/// `/` is accepted as the whole value too, as written in DESIGN §20.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPointer(String);

impl JsonPointer {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() || raw == "/" {
            return Ok(JsonPointer(String::new()));
        }
        if !raw.starts_with('/') {
            return Err(format!(
                "{raw:?} is not a JSON pointer: start it with / (e.g. /alert/id), or write \"\" for the whole value"
            ));
        }
        // `~` must be followed by 0 or 1 (RFC 6901 §3).
        let mut chars = raw.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
                return Err(format!(
                    "{raw:?} is not a JSON pointer: ~ must be followed by 0 or 1"
                ));
            }
        }
        Ok(JsonPointer(raw.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for JsonPointer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        JsonPointer::parse(&String::deserialize(d)?).map_err(de::Error::custom)
    }
}

impl SourceSpec {
    /// `options` as the JSON text a source plugin is created with.
    pub fn options_json(&self) -> String {
        json_text(self.options.as_ref())
    }

    /// Checks that span fields. `field` prefixes every message (`sources[1]`).
    pub fn validate(
        &self,
        field: &str,
        event_types: Option<&BTreeMap<String, String>>,
    ) -> Result<(), (String, String)> {
        let err = |f: &str, m: String| Err((format!("{field}.{f}"), m));
        let kind = self.kind.as_str();
        if self.map.is_some() && self.kind != SourceKind::Generic {
            return err(
                "map",
                format!("a {kind} source takes no map (only generic does)"),
            );
        }
        if (self.plugin.is_some() || self.options.is_some()) && self.kind != SourceKind::Plugin {
            let f = if self.plugin.is_some() {
                "plugin"
            } else {
                "options"
            };
            return err(
                f,
                format!("a {kind} source takes no {f} (only kind: plugin does)"),
            );
        }
        if self.kind == SourceKind::Plugin && self.event_type.is_some() {
            return err(
                "type",
                "a plugin source's events carry their own type".into(),
            );
        }
        if let Some(t) = &self.event_type {
            if !valid_event_type(t) {
                return err("type", format!("{t:?} is not a valid event type"));
            }
            if let Some(cat) = event_types
                && !cat.contains_key(t)
            {
                return err("type", format!("{t:?} is not declared under event_types"));
            }
        }
        match self.kind {
            SourceKind::Generic => {
                let map = self.map.clone().unwrap_or_default();
                if map.event_type.is_none() && self.event_type.is_none() {
                    return err(
                        "map.type",
                        "a generic source needs map.type (a JSON pointer to each event's type) or a fixed type".into(),
                    );
                }
            }
            SourceKind::Plugin => match &self.plugin {
                None => return err("plugin", "a plugin source needs plugin: NAME".into()),
                Some(p) if p.trim().is_empty() => {
                    return err("plugin", "must not be empty".into());
                }
                Some(_) => {}
            },
            SourceKind::Alertmanager | SourceKind::Falco => {}
        }
        if let Some(o) = &self.options
            && !o.is_object()
        {
            return err("options", "must be a map (JSON object)".into());
        }
        Ok(())
    }
}

/// serde-saphyr reports `line N column M`; present it as `:N:M: message`.
fn format_yaml_error(msg: &str) -> String {
    let first = msg.lines().next().unwrap_or(msg);
    if let Some((line, col)) = find_line_col(msg) {
        format!("{line}:{col}: {}", strip_location(first))
    } else {
        format!(" {first}")
    }
}

fn find_line_col(msg: &str) -> Option<(u64, u64)> {
    let i = msg.find("line ")?;
    let rest = &msg[i + 5..];
    let line: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let j = rest.find("column ")?;
    let col: String = rest[j + 7..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    Some((line.parse().ok()?, col.parse().ok()?))
}

fn strip_location(first: &str) -> String {
    // serde-saphyr may lead with "error: line N column M: " instead.
    if let Some(rest) = first.strip_prefix("error: line ")
        && let Some(i) = rest.find(": ")
        && rest[..i]
            .split(" column ")
            .all(|n| n.parse::<u64>().is_ok())
    {
        return rest[i + 2..].to_owned();
    }
    match first.find(" at line ") {
        Some(i) => first[..i].to_owned(),
        None => first.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_env_substitutes_defaults_and_reports_missing() {
        let env = |k: &str| (k == "SET").then(|| "v".to_string());
        assert_eq!(expand_env("a${SET}b", env).unwrap(), "avb");
        assert_eq!(expand_env("${UNSET:-dflt}", env).unwrap(), "dflt");
        assert_eq!(expand_env("$$5 $x", env).unwrap(), "$5 $x");
        let e = expand_env("${UNSET}", env).unwrap_err();
        assert!(e.contains("UNSET is not set"), "{e}");
        assert!(expand_env("${bad name}", env).is_err());
    }

    #[test]
    fn unknown_field_is_refused_with_line_and_column() {
        let e = Config::parse("listen: 127.0.0.1:1\nwebhooks:\n  - name: a\n    url: https://x.example\n    colour: red\n", "r.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("r.yaml:5:"), "{e}");
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn bad_url_scheme_names_the_value_and_line() {
        let e = Config::parse(
            "webhooks:\n  - name: a\n    url: ftp://x.example/\n",
            "r.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("r.yaml:3:"), "{e}");
        assert!(e.contains("ftp://x.example"), "{e}");
    }

    #[test]
    fn duplicate_headers_and_out_of_range_retry_count_are_refused() {
        let e = Config::parse(
            "webhooks:\n  - name: a\n    url: https://x.example\n    headers: {X-A: 1, x-a: 2}\n",
            "r.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("given twice"), "{e}");
        let e = Config::parse(
            "webhooks:\n  - name: a\n    url: https://x.example\n    retry_count: 11\n",
            "r.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("retry_count: 11 is out of range"), "{e}");
    }

    #[test]
    fn numbers_that_could_overflow_a_deadline_or_a_semaphore_are_refused_at_load() {
        for (yaml, field) in [
            (
                "delivery: { concurrency_per_webhook: 0 }\n",
                "concurrency_per_webhook: 0",
            ),
            (
                "delivery: { concurrency_per_webhook: 18446744073709551615 }\n",
                "concurrency_per_webhook: 18446744073709551615",
            ),
            (
                "plugins: { timeout_ms: 18446744073709551615 }\n",
                "timeout_ms: 18446744073709551615",
            ),
            ("plugins: { memory_mb: 100000 }\n", "memory_mb: 100000"),
            (
                "delivery: { retry_after_max_ms: 9223372036854775807 }\n",
                "retry_after_max_ms: 9223372036854775807",
            ),
            ("delivery: { retry_max_ms: 0 }\n", "retry_max_ms: 0"),
            ("shutdown_grace_ms: 3600000\n", "shutdown_grace_ms: 3600000"),
            ("limits: { max_connections: 0 }\n", "max_connections: 0"),
            (
                "limits: { header_read_timeout_ms: 5 }\n",
                "header_read_timeout_ms: 5",
            ),
        ] {
            let e = Config::parse(yaml, "r.yaml").unwrap_err().to_string();
            assert!(e.starts_with("r.yaml:1:"), "{yaml}: {e}");
            assert!(
                e.contains(&format!("{field} is out of range")),
                "{yaml}: {e}"
            );
        }
        let ok = Config::parse(
            "delivery: { concurrency_per_webhook: 1024 }\nplugins: { timeout_ms: 600000 }\n",
            "r.yaml",
        )
        .unwrap();
        assert_eq!(ok.delivery.concurrency_per_webhook, 1024);
    }

    #[test]
    fn console_settings_default_and_out_of_range_values_are_refused_naming_the_field() {
        let c = Config::parse("", "r.yaml").unwrap();
        assert_eq!(c.console, ConsoleConfig::default());
        assert_eq!(c.console.session_ttl_s, 8 * 3600);
        let c = Config::parse(
            "console: { session_ttl_s: 60, login_max_failures: 2, login_window_s: 30, secure_cookie: true }\n",
            "r.yaml",
        )
        .unwrap();
        assert_eq!(
            (
                c.console.session_ttl_s,
                c.console.login_max_failures,
                c.console.login_window_s
            ),
            (60, 2, 30)
        );
        assert!(c.console.secure_cookie);
        for (yaml, field) in [
            ("console: { session_ttl_s: 0 }\n", "session_ttl_s: 0"),
            (
                "console: { login_max_failures: 0 }\n",
                "login_max_failures: 0",
            ),
            (
                "console: { login_window_s: 86401 }\n",
                "login_window_s: 86401",
            ),
        ] {
            let e = Config::parse(yaml, "r.yaml").unwrap_err().to_string();
            assert!(
                e.contains(&format!("{field} is out of range")),
                "{yaml}: {e}"
            );
        }
        let e = Config::parse("console: { session_ttl: 5 }\n", "r.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("session_ttl"), "{e}");
    }

    #[test]
    fn url_schemes_are_case_insensitive_and_stored_lower_case() {
        let c = Config::parse(
            "network: {allow_http: true}\nwebhooks:\n  - name: a\n    url: HTTP://x.example/Path\n  - name: b\n    url: TCP://x.example:514\n    format: syslog\n",
            "r.yaml",
        )
        .unwrap();
        assert_eq!(c.webhooks[0].url.as_str(), "http://x.example/Path");
        assert_eq!(c.webhooks[0].url.scheme(), "http");
        assert_eq!(c.webhooks[1].url.as_str(), "tcp://x.example:514");
        // The upper-case spelling does not get around network.allow_http.
        let e = Config::parse(
            "webhooks:\n  - name: a\n    url: HTTP://x.example/\n",
            "r.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("webhooks[0].url") && e.contains("allow_http"),
            "{e}"
        );
    }

    #[test]
    fn body_given_as_string_must_be_json() {
        let c = Config::parse(
            "webhooks:\n  - name: a\n    url: https://x.example\n    body: '{\"t\": \"{{title}}\"}'\n",
            "r.yaml",
        )
        .unwrap();
        assert_eq!(
            c.webhooks[0].body.as_ref().unwrap().0,
            serde_json::json!({"t": "{{title}}"})
        );
        let e = Config::parse(
            "webhooks:\n  - name: a\n    url: https://x.example\n    body: '{not json'\n",
            "r.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not valid JSON"), "{e}");
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let c = Config::parse(
            "auth:\n  tokens:\n    - {name: a, token: hunter2-token, role: admin}\n",
            "r.yaml",
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    /// The error of a file with one webhook (`hook` is its YAML mapping body,
    /// indented by 4), or "ok".
    fn channel_check(network: &str, hook: &str) -> String {
        let yaml = format!("network: {network}\nwebhooks:\n  - name: w\n{hook}");
        match Config::parse(&yaml, "r.yaml") {
            Ok(_) => "ok".into(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn oauth2_auth_is_checked_at_load_naming_the_field() {
        let open = "{allow_private: [127.0.0.0/8], allow_http: true}";
        let auth = |url: &str, token_url: &str| {
            format!(
                "    url: {url}\n    auth: {{oauth2: {{token_url: \"{token_url}\", client_id: c, client_secret: s}}}}\n"
            )
        };
        assert_eq!(
            channel_check(open, &auth("https://h.example/x", "https://idp.example/t")),
            "ok"
        );
        for (network, hook, field, words) in [
            ("{}", auth("https://h.example/x", "http://idp.example/t"), "webhooks[0].auth.oauth2.token_url", "allow_http"),
            ("{}", auth("https://h.example/x", "udp://idp.example:1"), "webhooks[0].auth.oauth2.token_url", "https://"),
            (open, auth("tcp://h.example:514", "https://idp.example/t") + "    format: syslog\n", "webhooks[0].auth", "takes no auth"),
            (open, "    url: https://h.example/x\n    auth: {oauth2: {token_url: \"https://i.example/t\", client_id: c, client_secret: s, secret_id: x}}\n".into(), "secret_id", "unknown field"),
            (open, "    url: https://h.example/x\n    auth: {oauth2: {token_url: \"https://i.example/t\", client_id: c, client_secret: \"\"}}\n".into(), "r.yaml:5:", "must not be empty"),
        ] {
            let e = channel_check(network, &hook);
            assert!(e.contains(field) && e.contains(words), "{hook}: {e}");
        }
    }

    #[test]
    fn email_and_unix_socket_webhooks_are_checked_at_load_naming_the_field() {
        let open = "{allow_private: [127.0.0.0/8]}";
        let email = "    email: {from: \"Relay <relay@example.com>\", to: [soc@example.com]}\n    format: email\n";
        for hook in [
            format!("    url: smtp://mail.example:587\n{email}"),
            format!("    url: SMTPS://mail.example\n{email}"),
            format!("    url: smtp://127.0.0.1:2525\n    allow_plaintext: true\n{email}"),
            "    url: unix:///dev/log\n    format: syslog\n".into(),
        ] {
            assert_eq!(channel_check(open, &hook), "ok", "{hook}");
        }
        for (hook, field, words) in [
            (
                "    url: smtp://mail.example\n    format: email\n".to_owned(),
                "webhooks[0].email",
                "needs email",
            ),
            (
                format!(
                    "    url: smtp://mail.example\n{}",
                    email.replace("    format: email\n", "")
                ),
                "webhooks[0].format",
                "format: email",
            ),
            (
                format!("    url: https://h.example\n{email}"),
                "webhooks[0].email",
                "only an smtp",
            ),
            (
                format!("    url: smtps://mail.example\n    allow_plaintext: true\n{email}"),
                "webhooks[0].allow_plaintext",
                "smtp://",
            ),
            (
                format!("    url: smtp://192.0.2.1\n    allow_plaintext: true\n{email}"),
                "webhooks[0].allow_plaintext",
                "192.0.2.1",
            ),
            (
                format!("    url: smtp://m.example/path\n{email}"),
                "url",
                "without a path",
            ),
            (
                email
                    .replace("to: [soc@example.com]", "to: []")
                    .replace("format", "url: smtp://m.example\n    format"),
                "webhooks[0].email.to",
                "at least one",
            ),
            (
                "    url: unix://dev/log\n    format: syslog\n".into(),
                "url",
                "socket path",
            ),
            (
                "    url: unix:///dev/log\n".into(),
                "webhooks[0].format",
                "syslog",
            ),
        ] {
            let e = channel_check(open, &hook);
            assert!(e.contains(field) && e.contains(words), "{hook}: {e}");
        }
    }

    #[test]
    fn slug_makes_stable_ids() {
        assert_eq!(slug("Slack - Critical Findings"), "slack-critical-findings");
        assert_eq!(slug("!!!"), "webhook");
    }

    #[test]
    fn storage_is_sqlite_by_default_or_postgres_and_never_both() {
        let c = Config::parse("listen: 127.0.0.1:1\n", "r.yaml").unwrap();
        assert_eq!(
            c.storage.backend,
            StorageBackend::Sqlite(EnvPath("./data/relay.db".into()))
        );
        let c = Config::parse(
            "storage: {sqlite: /tmp/x/r.db, retention_days: 7}\n",
            "r.yaml",
        )
        .unwrap();
        assert_eq!(
            (c.storage.backend, c.storage.retention_days),
            (StorageBackend::Sqlite(EnvPath("/tmp/x/r.db".into())), 7)
        );
        assert_eq!(
            Config::parse("storage: {sqlite: /tmp/x/r.db}\n", "r.yaml")
                .unwrap()
                .storage
                .local_dir(),
            PathBuf::from("/tmp/x")
        );
        let c = Config::parse(
            "storage: {postgres: \"postgres://relay:pw1@db.example/relay\"}\n",
            "r.yaml",
        )
        .unwrap();
        let StorageBackend::Postgres(url) = &c.storage.backend else {
            panic!("{:?}", c.storage.backend);
        };
        assert_eq!(url.expose(), "postgres://relay:pw1@db.example/relay");
        assert!(!format!("{c:?}").contains("pw1"), "the URL never prints");
        let e = Config::parse(
            "storage:\n  sqlite: r.db\n  postgres: \"postgres://relay:pw2@db/relay\"\n",
            "r.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not both") && e.contains("r.yaml:"), "{e}");
        assert!(!e.contains("pw2"), "{e}");
        let e = Config::parse("storage: {postgres: \"mysql://u:pw3@db/x\"}\n", "r.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("storage.postgres") && e.contains("postgres://"),
            "{e}"
        );
        assert!(!e.contains("pw3"), "{e}");
        let e = Config::parse("storage: {postgress: x}\n", "r.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("postgress"), "{e}");
    }

    #[test]
    fn a_lease_outside_one_second_to_one_hour_is_refused_naming_the_field() {
        let parse = |lease: &str| {
            Config::parse(
                &format!("storage: {{postgres: \"postgres://db/relay\", lease_ms: {lease}}}\n"),
                "r.yaml",
            )
        };
        assert_eq!(parse("3000").unwrap().storage.lease_ms, 3000);
        assert_eq!(
            Config::parse("listen: 127.0.0.1:1\n", "r.yaml")
                .unwrap()
                .storage
                .lease_ms,
            60_000
        );
        for bad in ["999", "3600001"] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(
                e.contains("storage.lease_ms") && e.contains(bad) && e.contains("r.yaml:"),
                "{e}"
            );
        }
    }
}
