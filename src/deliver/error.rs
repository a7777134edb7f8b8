//! The one delivery failure type. The retry logic and the history read its
//! kind, origin and retryability; nothing parses its message.

use std::time::Duration;

/// Where a failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The receiver or the network to it.
    Upstream,
    /// A formatter or destination plugin.
    Plugin,
    /// The relay itself (configuration, guard, internal).
    Relay,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Upstream => "upstream",
            Origin::Plugin => "plugin",
            Origin::Relay => "relay",
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeliveryError {
    /// Could not connect, or the connection broke.
    #[error("network error talking to {host}: {reason}")]
    Network { host: String, reason: String },
    /// No complete response within the webhook's `timeout_ms`.
    #[error("no response from {host} within {timeout_ms} ms")]
    Timeout { host: String, timeout_ms: u64 },
    /// The receiver answered with a non-success status.
    #[error("{host} answered HTTP {status}")]
    Status {
        host: String,
        status: u16,
        retry_after: Option<Duration>,
        body: bytes::Bytes,
    },
    /// A destination plugin judged the response a failure.
    #[error("{host} answered HTTP {status}: {reason}")]
    Rejected {
        host: String,
        status: u16,
        reason: String,
        retryable: bool,
        retry_after: Option<Duration>,
        disable: bool,
        body: bytes::Bytes,
    },
    /// A formatter or destination plugin failed (trap, timeout, bad output).
    /// `retryable` when the failure was temporary and not the plugin's doing
    /// (`PluginError::is_temporary`: not loaded, pool full, relay busy).
    #[error("plugin {plugin} failed: {message}")]
    Plugin {
        plugin: String,
        message: String,
        retryable: bool,
    },
    /// The mail server refused with an SMTP reply: 4xx (transient) is
    /// retried, 5xx (permanent) fails the delivery.
    #[error("{host} answered SMTP {code}: {message}")]
    Smtp {
        host: String,
        code: u16,
        message: String,
    },
    /// The webhook's configuration cannot produce a request.
    #[error("configuration error: {0}")]
    Config(String),
    /// The SSRF guard refused the address the destination resolved to.
    #[error(
        "destination {host} resolved to {addr}, which is {why}; refused by the SSRF guard (see network.allow_private)"
    )]
    Blocked {
        host: String,
        addr: std::net::IpAddr,
        why: &'static str,
    },
}

impl DeliveryError {
    /// A short stable name for the history and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            DeliveryError::Network { .. } => "network",
            DeliveryError::Timeout { .. } => "timeout",
            DeliveryError::Status { .. } | DeliveryError::Rejected { .. } => "http_status",
            DeliveryError::Plugin { .. } => "plugin",
            DeliveryError::Smtp { .. } => "smtp_status",
            DeliveryError::Config(_) => "config",
            DeliveryError::Blocked { .. } => "blocked",
        }
    }

    pub fn origin(&self) -> Origin {
        match self {
            DeliveryError::Network { .. }
            | DeliveryError::Timeout { .. }
            | DeliveryError::Status { .. }
            | DeliveryError::Rejected { .. }
            | DeliveryError::Smtp { .. } => Origin::Upstream,
            DeliveryError::Plugin { .. } => Origin::Plugin,
            DeliveryError::Config(_) | DeliveryError::Blocked { .. } => Origin::Relay,
        }
    }

    /// Whether another attempt may succeed: network errors, timeouts, 408,
    /// 429 and 5xx are retried, and so are temporary plugin failures; other
    /// statuses, a plugin's own failures and relay-side errors are not.
    pub fn retryable(&self) -> bool {
        match self {
            DeliveryError::Network { .. } | DeliveryError::Timeout { .. } => true,
            DeliveryError::Status { status, .. } => status_is_retryable(*status),
            DeliveryError::Smtp { code, .. } => (400..500).contains(code),
            DeliveryError::Rejected { retryable, .. } | DeliveryError::Plugin { retryable, .. } => {
                *retryable
            }
            DeliveryError::Config(_) | DeliveryError::Blocked { .. } => false,
        }
    }

    /// The delay the receiver asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            DeliveryError::Status { retry_after, .. }
            | DeliveryError::Rejected { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether the webhook should be deactivated (HTTP 410 Gone, or a
    /// destination plugin saying so).
    pub fn disables_webhook(&self) -> bool {
        match self {
            DeliveryError::Status { status, .. } => *status == 410,
            DeliveryError::Rejected { disable, .. } => *disable,
            _ => false,
        }
    }

    /// The receiver's response body, when there was one.
    pub fn response_body(&self) -> Option<&[u8]> {
        match self {
            DeliveryError::Status { body, .. } | DeliveryError::Rejected { body, .. } => Some(body),
            _ => None,
        }
    }

    pub fn status_code(&self) -> Option<u16> {
        match self {
            DeliveryError::Status { status, .. } | DeliveryError::Rejected { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }
}

pub fn status_is_retryable(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(s: u16) -> DeliveryError {
        DeliveryError::Status {
            host: "h".into(),
            status: s,
            retry_after: None,
            body: Default::default(),
        }
    }

    #[test]
    fn retryable_statuses_follow_the_design() {
        for s in [408, 429, 500, 502, 503, 599] {
            assert!(status(s).retryable(), "{s}");
        }
        for s in [400, 401, 403, 404, 410, 422] {
            assert!(!status(s).retryable(), "{s}");
        }
        assert!(status(410).disables_webhook());
        assert!(!status(404).disables_webhook());
    }

    #[test]
    fn kinds_and_origins_say_what_and_where() {
        let n = DeliveryError::Network {
            host: "h".into(),
            reason: "refused".into(),
        };
        assert_eq!(
            (n.kind(), n.origin(), n.retryable()),
            ("network", Origin::Upstream, true)
        );
        let p = DeliveryError::Plugin {
            plugin: "slack".into(),
            message: "trap".into(),
            retryable: false,
        };
        assert_eq!(
            (p.kind(), p.origin(), p.retryable()),
            ("plugin", Origin::Plugin, false)
        );
        let b = DeliveryError::Blocked {
            host: "h".into(),
            addr: "10.0.0.1".parse().unwrap(),
            why: "private",
        };
        assert_eq!(
            (b.kind(), b.origin(), b.retryable()),
            ("blocked", Origin::Relay, false)
        );
    }
}
