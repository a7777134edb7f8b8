//! Delivery: the only module that opens sockets. It takes a finished request
//! (body already formatted and signed) and reports a response or a
//! [`DeliveryError`].

pub mod error;
pub mod guard;
pub mod http;

use std::sync::Arc;

use arc_swap::ArcSwap;

pub use error::{DeliveryError, Origin};
pub use guard::Guard;
pub use http::{HttpSender, InResponse, OutRequest};

/// Network policy that can change on a config reload.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub allow_http: bool,
}

/// Sends requests over the transport their URL names.
#[derive(Clone)]
pub struct Deliverer {
    http: HttpSender,
    guard: Arc<ArcSwap<Guard>>,
    policy: Arc<ArcSwap<Policy>>,
}

impl Deliverer {
    pub fn new(guard: Guard, policy: Policy) -> Deliverer {
        let guard = Arc::new(ArcSwap::from_pointee(guard));
        Deliverer {
            http: HttpSender::new(guard.clone()),
            guard,
            policy: Arc::new(ArcSwap::from_pointee(policy)),
        }
    }

    /// Applies a new `network:` section to connections made from now on.
    pub fn reconfigure(&self, guard: Guard, policy: Policy) {
        self.guard.store(Arc::new(guard));
        self.policy.store(Arc::new(policy));
    }

    pub async fn send_http(&self, req: OutRequest) -> Result<InResponse, DeliveryError> {
        let scheme = req.url.split("://").next().unwrap_or("");
        match scheme {
            "https" => {}
            "http" if self.policy.load().allow_http => {}
            "http" => {
                return Err(DeliveryError::Config(format!(
                    "{:?} uses http:// but network.allow_http is false",
                    req.url
                )));
            }
            other => {
                return Err(DeliveryError::Config(format!(
                    "scheme {other:?} cannot be sent over HTTP"
                )));
            }
        }
        self.http.send(req).await
    }
}
