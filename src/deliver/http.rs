//! HTTP(S) delivery: hyper's pooled client over rustls, with the SSRF guard
//! checking the peer of every new connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use super::error::DeliveryError;
use super::guard::Guard;

/// Most of a response body read back (plugins classify on it; history keeps 4 KiB).
const RESPONSE_READ_LIMIT: usize = 64 * 1024;

/// A request ready for the wire.
#[derive(Debug, Clone)]
pub struct OutRequest {
    pub method: http::Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Bytes>,
    pub timeout: Duration,
}

/// What came back.
#[derive(Debug, Clone)]
pub struct InResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl InResponse {
    /// `Retry-After` as a delay (seconds form or HTTP date).
    pub fn retry_after(&self) -> Option<Duration> {
        let v = self
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))?
            .1
            .trim();
        if let Ok(secs) = v.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        let fmt = time::format_description::well_known::Rfc2822;
        let when = time::OffsetDateTime::parse(v, &fmt).ok()?;
        let delta = when - time::OffsetDateTime::now_utc();
        Some(Duration::from_millis(
            delta.whole_milliseconds().max(0) as u64
        ))
    }
}

#[derive(Debug)]
struct BlockedError {
    addr: std::net::IpAddr,
    why: &'static str,
}

impl std::fmt::Display for BlockedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is {}", self.addr, self.why)
    }
}
impl std::error::Error for BlockedError {}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// DNS resolution that drops every address the guard forbids, so the
/// connector can only ever dial an allowed address.
#[derive(Clone)]
pub struct GuardedResolver {
    guard: Arc<ArcSwap<Guard>>,
}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<std::net::SocketAddr>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let guard = self.guard.load_full();
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<_> = addrs
                .into_iter()
                .filter(|a| match guard.check(a.ip()) {
                    Ok(()) => true,
                    Err(why) => {
                        refused.get_or_insert(BlockedError { addr: a.ip(), why });
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), refused) {
                (true, Some(blocked)) => Err(Box::new(blocked) as BoxError),
                _ => Ok(allowed.into_iter()),
            }
        })
    }
}

/// A TCP connector that only dials addresses the guard allows: names go
/// through [`GuardedResolver`], IP literals are checked before dialling, and
/// the peer of every new connection is checked once more.
#[derive(Clone)]
pub struct GuardedConnector {
    inner: HttpConnector<GuardedResolver>,
    guard: Arc<ArcSwap<Guard>>,
}

impl tower_service::Service<Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let guard = self.guard.load_full();
        let literal = uri
            .host()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
            .and_then(|h| h.parse::<std::net::IpAddr>().ok());
        if let Some(addr) = literal
            && let Err(why) = guard.check(addr)
        {
            return Box::pin(async move { Err(Box::new(BlockedError { addr, why }) as BoxError) });
        }
        let connecting = self.inner.call(uri);
        Box::pin(async move {
            let io = connecting.await?;
            let addr = io.inner().peer_addr()?.ip();
            guard
                .check(addr)
                .map_err(|why| Box::new(BlockedError { addr, why }) as BoxError)?;
            Ok(io)
        })
    }
}

/// Idle keep-alive connections kept per host. Webhooks that share a host
/// share its pool, and each may have `concurrency_per_webhook` (32) requests
/// in flight: with a cap of 64, ten webhooks on one host closed and reopened
/// a connection for most requests (connect + shutdown were a fifth of the
/// relay's CPU in the fan-out benchmark). Idle connections never outnumber
/// the requests that were in flight at once, and close after 60 s idle.
const MAX_IDLE_PER_HOST: usize = 1024;

/// The pooled HTTP client. Cheap to clone.
#[derive(Clone)]
pub struct HttpSender {
    client: Client<HttpsConnector<GuardedConnector>, Full<Bytes>>,
}

impl HttpSender {
    /// `tls`: the shared client configuration ([`super::tls::client_config`]).
    pub fn new(guard: Arc<ArcSwap<Guard>>, tls: Arc<rustls::ClientConfig>) -> HttpSender {
        let mut tcp = HttpConnector::new_with_resolver(GuardedResolver {
            guard: guard.clone(),
        });
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(Duration::from_secs(10)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(GuardedConnector { inner: tcp, guard });
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
            .build(https);
        HttpSender { client }
    }

    /// Sends one request; any non-transport outcome is a response.
    pub async fn send(&self, req: OutRequest) -> Result<InResponse, DeliveryError> {
        let uri: Uri = req.url.parse().map_err(|e| {
            DeliveryError::Config(format!(
                "url {:?} is invalid: {e}",
                super::redact_url(&req.url)
            ))
        })?;
        let host = uri.host().unwrap_or("").to_owned();
        let mut builder = http::Request::builder().method(req.method.clone()).uri(uri);
        for (k, v) in &req.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let request = builder
            .body(Full::new(req.body.clone().unwrap_or_default()))
            .map_err(|e| DeliveryError::Config(format!("cannot build the request: {e}")))?;
        let timeout_ms = req.timeout.as_millis() as u64;
        let exchange = async {
            let resp = self
                .client
                .request(request)
                .await
                .map_err(|e| classify(&host, e))?;
            let status = resp.status().as_u16();
            let headers = resp
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let body = match Limited::new(resp.into_body(), RESPONSE_READ_LIMIT)
                .collect()
                .await
            {
                Ok(c) => c.to_bytes(),
                // An over-long body is cut, not an error: the status already says it all.
                Err(e)
                    if e.downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some() =>
                {
                    Bytes::new()
                }
                Err(e) => {
                    return Err(DeliveryError::Network {
                        host: host.clone(),
                        reason: format!("reading the response body failed: {e}"),
                    });
                }
            };
            Ok(InResponse {
                status,
                headers,
                body,
            })
        };
        match tokio::time::timeout(req.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(DeliveryError::Timeout { host, timeout_ms }),
        }
    }
}

fn classify(host: &str, e: hyper_util::client::legacy::Error) -> DeliveryError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    let mut deepest = e.to_string();
    while let Some(s) = source {
        if let Some(b) = s.downcast_ref::<BlockedError>() {
            return DeliveryError::Blocked {
                host: host.to_owned(),
                addr: b.addr,
                why: b.why,
            };
        }
        deepest = s.to_string();
        source = s.source();
    }
    DeliveryError::Network {
        host: host.to_owned(),
        reason: deepest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let r = |v: &str| InResponse {
            status: 429,
            headers: vec![("Retry-After".into(), v.into())],
            body: Bytes::new(),
        };
        assert_eq!(r("2").retry_after(), Some(Duration::from_secs(2)));
        assert_eq!(
            r("Wed, 21 Oct 2015 07:28:00 GMT").retry_after(),
            Some(Duration::ZERO)
        );
        assert_eq!(r("soon").retry_after(), None);
    }
}
