//! Syslog transports: `udp://host:port` (one message per datagram),
//! `tcp://host:port` and `tls://host:port` (RFC 6587 octet counting,
//! `LEN SP MSG`, as RFC 5425 requires on TLS).
//!
//! The message is built by the formatter (the `syslog` plugin makes RFC 5424
//! messages); this module only frames and sends it. Like HTTP, every
//! connection goes through the SSRF guard: the host is resolved here, the
//! addresses the guard refuses are dropped before dialling, the peer of a new
//! connection is checked once more, and a kept connection is checked against
//! the current guard before each reuse.
//!
//! Connections are kept, one per URL: messages to one destination go one
//! after another over one connection (in order), which is what syslog
//! receivers expect. A kept connection is given up and a new one made when
//! the receiver has closed it, when it has been idle for [`IDLE_REUSE`], or
//! when writing to it fails (once per message). A write that was cut short
//! (error or timeout) always drops the connection, so a half-written frame is
//! never followed by another message.
//!
//! Success means the whole frame was handed to the network within the
//! timeout (written and flushed): syslog has no acknowledgement. A receiver
//! that closes the connection just after a write can lose that message
//! without the sender seeing an error; this is the nature of RFC 6587.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::error::DeliveryError;
use super::guard::Guard;

/// Largest message sent over UDP (one datagram; the IPv4 limit is 65,507).
/// Larger messages are refused, not cut: the formatter caps message sizes.
pub const UDP_MAX_BYTES: usize = 65_000;

/// A kept connection idle for longer than this is closed and a new one made
/// (middleboxes forget idle flows; the name is resolved again).
pub const IDLE_REUSE: Duration = Duration::from_secs(60);

/// Past this many destinations, the ones not in use are forgotten.
const MAX_DESTINATIONS: usize = 1024;

/// Whether `url` names a syslog transport (`udp://`, `tcp://`, `tls://`).
pub fn is_syslog_url(url: &str) -> bool {
    url.split_once("://").is_some_and(|(scheme, _)| {
        ["udp", "tcp", "tls"]
            .iter()
            .any(|s| scheme.eq_ignore_ascii_case(s))
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

/// A parsed syslog URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub transport: Transport,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

impl Target {
    /// `udp://host:port`, `tcp://host:port` or `tls://host:port`; the port is
    /// required, a path other than `/` and a query are refused.
    pub fn parse(url: &str) -> Result<Target, DeliveryError> {
        let bad = |why: &str| {
            DeliveryError::Config(format!("syslog url {:?} {why}", super::redact_url(url)))
        };
        let uri: http::Uri = url
            .parse()
            .map_err(|e| bad(&format!("is not a valid URL ({e})")))?;
        let transport = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
            Some("udp") => Transport::Udp,
            Some("tcp") => Transport::Tcp,
            Some("tls") => Transport::Tls,
            _ => return Err(bad("must start with udp://, tcp:// or tls://")),
        };
        let host = uri
            .host()
            .unwrap_or("")
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        let port = uri
            .port_u16()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad("needs a port (e.g. tcp://siem.example:6514)"))?;
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad("must not have a path or query"));
        }
        Ok(Target {
            transport,
            host: host.to_owned(),
            port,
        })
    }

    /// `host:port` (brackets around an IPv6 literal), as errors name it.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// RFC 6587 octet counting: `LEN SP MSG`, LEN the byte length of MSG.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 8);
    out.extend_from_slice(message.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(message);
    out
}

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// A connection (or connected UDP socket) kept for one destination.
struct Open {
    conn: Conn,
    peer: IpAddr,
    last_used: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<Open>>>;

/// Sends syslog messages, keeping one connection per destination URL.
/// Cheap to clone; clones share the connections.
#[derive(Clone)]
pub struct SyslogSender {
    guard: Arc<ArcSwap<Guard>>,
    tls: Arc<ArcSwap<ClientConfig>>,
    slots: Arc<Mutex<HashMap<String, Slot>>>,
}

impl SyslogSender {
    pub fn new(guard: Arc<ArcSwap<Guard>>, tls: Arc<ArcSwap<ClientConfig>>) -> SyslogSender {
        SyslogSender {
            guard,
            tls,
            slots: Arc::default(),
        }
    }

    /// Sends one message (unframed; framed here for TCP/TLS). The whole send
    /// (waiting for the destination's connection, resolving, connecting,
    /// the TLS handshake, writing) is bounded by `timeout`.
    pub async fn send(
        &self,
        url: &str,
        message: &[u8],
        timeout: Duration,
    ) -> Result<(), DeliveryError> {
        let target = Target::parse(url)?;
        if message.is_empty() {
            return Err(DeliveryError::Config(
                "the syslog message is empty; nothing to send".into(),
            ));
        }
        let wire: Cow<'_, [u8]> = match target.transport {
            Transport::Udp if message.len() > UDP_MAX_BYTES => {
                return Err(DeliveryError::Config(format!(
                    "the syslog message is {} bytes; one UDP datagram carries at most {UDP_MAX_BYTES} \
                     (use tcp:// or tls://, or make the formatter produce less)",
                    message.len()
                )));
            }
            Transport::Udp => Cow::Borrowed(message),
            Transport::Tcp | Transport::Tls => Cow::Owned(frame(message)),
        };
        let slot = self.slot(url);
        match tokio::time::timeout(timeout, self.send_on(&slot, &target, &wire)).await {
            Ok(result) => result,
            Err(_) => Err(DeliveryError::Timeout {
                host: target.authority(),
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }

    async fn send_on(
        &self,
        slot: &Slot,
        target: &Target,
        wire: &[u8],
    ) -> Result<(), DeliveryError> {
        let mut held = slot.lock().await;
        // The connection is out of the slot while it is written to: if this
        // future is dropped (timeout) mid-write, the connection goes with it.
        if let Some(mut open) = held.take()
            && self.reusable(&mut open)
        {
            match write(&mut open.conn, wire).await {
                Ok(()) => {
                    open.last_used = Instant::now();
                    *held = Some(open);
                    return Ok(());
                }
                Err(e) => {
                    tracing::debug!(destination = %target.authority(), error = %e,
                        "writing to the kept syslog connection failed; reconnecting once");
                }
            }
        }
        let mut open = self.connect(target).await?;
        write(&mut open.conn, wire)
            .await
            .map_err(|e| network(target, format!("sending failed: {e}")))?;
        open.last_used = Instant::now();
        *held = Some(open);
        Ok(())
    }

    /// Whether a kept connection may carry the next message.
    fn reusable(&self, open: &mut Open) -> bool {
        if open.last_used.elapsed() > IDLE_REUSE || self.guard.load().check(open.peer).is_err() {
            return false;
        }
        match &mut open.conn {
            Conn::Udp(_) => true,
            Conn::Tcp(s) => !peer_closed(s),
            Conn::Tls(s) => !peer_closed(s.as_mut()),
        }
    }

    fn slot(&self, url: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = slots.get(url) {
            return slot.clone();
        }
        if slots.len() >= MAX_DESTINATIONS {
            slots.retain(|_, s| Arc::strong_count(s) > 1);
        }
        let slot = Slot::default();
        slots.insert(url.to_owned(), slot.clone());
        slot
    }

    /// Resolves, filters through the guard, and dials the allowed addresses
    /// in order until one connects.
    async fn connect(&self, target: &Target) -> Result<Open, DeliveryError> {
        let guard = self.guard.load_full();
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .map_err(|e| network(target, format!("cannot resolve {}: {e}", target.host)))?
            .collect();
        let mut refused = None;
        let allowed: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| match guard.check(a.ip()) {
                Ok(()) => true,
                Err(why) => {
                    refused.get_or_insert((a.ip(), why));
                    false
                }
            })
            .collect();
        if allowed.is_empty() {
            return Err(match refused {
                Some((addr, why)) => DeliveryError::Blocked {
                    host: target.authority(),
                    addr,
                    why,
                },
                None => network(target, format!("{} resolved to no address", target.host)),
            });
        }
        let mut last = None;
        for addr in allowed {
            match self.dial(target, addr, &guard).await {
                Ok(open) => return Ok(open),
                Err(e @ DeliveryError::Blocked { .. }) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| network(target, "no address to connect to".into())))
    }

    async fn dial(
        &self,
        target: &Target,
        addr: SocketAddr,
        guard: &Guard,
    ) -> Result<Open, DeliveryError> {
        let at = |what: &str, e: io::Error| network(target, format!("{what} {addr}: {e}"));
        let conn = match target.transport {
            Transport::Udp => {
                let local: SocketAddr = if addr.is_ipv4() {
                    (Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let socket = UdpSocket::bind(local)
                    .await
                    .map_err(|e| at("cannot open a UDP socket for", e))?;
                socket
                    .connect(addr)
                    .await
                    .map_err(|e| at("cannot connect to", e))?;
                return Ok(Open {
                    conn: Conn::Udp(socket),
                    peer: addr.ip(),
                    last_used: Instant::now(),
                });
            }
            Transport::Tcp | Transport::Tls => {
                let tcp = TcpStream::connect(addr)
                    .await
                    .map_err(|e| at("cannot connect to", e))?;
                let peer = tcp.peer_addr().map_err(|e| at("lost", e))?.ip();
                guard.check(peer).map_err(|why| DeliveryError::Blocked {
                    host: target.authority(),
                    addr: peer,
                    why,
                })?;
                // Messages go out as soon as they are written.
                tcp.set_nodelay(true)
                    .map_err(|e| at("cannot configure", e))?;
                if target.transport == Transport::Tcp {
                    Conn::Tcp(tcp)
                } else {
                    let name = ServerName::try_from(target.host.clone()).map_err(|e| {
                        DeliveryError::Config(format!(
                            "{:?} is not a valid TLS server name: {e}",
                            target.host
                        ))
                    })?;
                    let connector = TlsConnector::from(self.tls.load_full());
                    let tls = connector.connect(name, tcp).await.map_err(|e| {
                        network(target, format!("TLS handshake with {addr} failed: {e}"))
                    })?;
                    Conn::Tls(Box::new(tls))
                }
            }
        };
        Ok(Open {
            conn,
            peer: addr.ip(),
            last_used: Instant::now(),
        })
    }
}

fn network(target: &Target, reason: String) -> DeliveryError {
    DeliveryError::Network {
        host: target.authority(),
        reason,
    }
}

async fn write(conn: &mut Conn, wire: &[u8]) -> io::Result<()> {
    match conn {
        Conn::Udp(s) => {
            let sent = s.send(wire).await?;
            if sent != wire.len() {
                return Err(io::Error::other(format!(
                    "only {sent} of {} bytes went into the datagram",
                    wire.len()
                )));
            }
            Ok(())
        }
        Conn::Tcp(s) => {
            s.write_all(wire).await?;
            s.flush().await
        }
        Conn::Tls(s) => {
            s.write_all(wire).await?;
            s.flush().await
        }
    }
}

/// Whether the receiver has closed (or reset) a kept stream, without
/// waiting: a syslog receiver never sends data, so a readable stream means
/// end-of-file or an error. Anything it did send is discarded.
fn peer_closed<S: AsyncRead + Unpin>(stream: &mut S) -> bool {
    let mut buf = [0u8; 1024];
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..16 {
        let mut read = ReadBuf::new(&mut buf);
        match Pin::new(&mut *stream).poll_read(&mut cx, &mut read) {
            Poll::Pending => return false,
            Poll::Ready(Ok(())) if read.filled().is_empty() => return true,
            Poll::Ready(Ok(())) => continue,
            Poll::Ready(Err(_)) => return true,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_targets() {
        let t = Target::parse("tcp://siem.example:6514").unwrap();
        assert_eq!(
            t,
            Target {
                transport: Transport::Tcp,
                host: "siem.example".into(),
                port: 6514
            }
        );
        let t = Target::parse("TLS://[2001:db8::1]:6514/").unwrap();
        assert_eq!(
            (t.transport, t.host.as_str()),
            (Transport::Tls, "2001:db8::1")
        );
        assert_eq!(t.authority(), "[2001:db8::1]:6514");
        assert_eq!(
            Target::parse("udp://10.0.0.1:514").unwrap().transport,
            Transport::Udp
        );
        for bad in [
            "tcp://siem.example",
            "tcp://siem.example:0",
            "https://siem.example:6514",
            "tcp://siem.example:6514/x",
            "tcp://siem.example:6514?a=b",
            "tcp://:6514",
            "not a url",
        ] {
            assert!(
                matches!(Target::parse(bad), Err(DeliveryError::Config(_))),
                "{bad}"
            );
        }
        assert!(is_syslog_url("udp://a:1") && is_syslog_url("TLS://a:1"));
        assert!(!is_syslog_url("https://a") && !is_syslog_url("tcp"));
    }

    #[test]
    fn octet_counting_counts_bytes_not_characters() {
        assert_eq!(
            frame(b"<13>1 - - - - - -"),
            b"17 <13>1 - - - - - -".to_vec()
        );
        let msg = "\u{feff}é".as_bytes();
        assert_eq!(frame(msg)[..2], *b"5 ");
    }

    fn sender(allow: &str) -> SyslogSender {
        let guard = Guard::new(if allow.is_empty() {
            vec![]
        } else {
            vec![allow.parse().unwrap()]
        });
        let tls = super::super::tls::client_config(None).unwrap();
        SyslogSender::new(
            Arc::new(ArcSwap::from_pointee(guard)),
            Arc::new(ArcSwap::new(tls)),
        )
    }

    #[tokio::test]
    async fn oversized_udp_and_empty_messages_are_refused_before_any_io() {
        let s = sender("");
        let big = vec![b'a'; UDP_MAX_BYTES + 1];
        let e = s
            .send("udp://192.0.2.1:514", &big, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, DeliveryError::Config(m) if m.contains("65001 bytes")),
            "{e}"
        );
        let e = s
            .send("tcp://192.0.2.1:514", b"", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(e, DeliveryError::Config(_)), "{e}");
    }

    #[tokio::test]
    async fn loopback_is_blocked_unless_allowed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("tcp://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let e = sender("")
            .send(&url, b"<13>1 - - - - - - x", Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                DeliveryError::Blocked {
                    why: "loopback",
                    ..
                }
            ),
            "{e}"
        );
        sender("127.0.0.0/8")
            .send(&url, b"<13>1 - - - - - - x", Duration::from_secs(2))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_closed_connection_is_replaced_and_frames_stay_whole() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("tcp://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let s = sender("127.0.0.0/8");
        let t = Duration::from_secs(2);
        s.send(&url, b"one", t).await.unwrap();
        s.send(&url, b"two", t).await.unwrap();
        let (mut first, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 10];
        first.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf, b"3 one3 two");
        drop(first);
        // Let the FIN arrive, then the next message must go over a new connection.
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.send(&url, b"three", t).await.unwrap();
        let (mut second, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 7];
        second.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf, b"5 three");
    }

    #[tokio::test]
    async fn a_receiver_that_accepts_nothing_times_out() {
        // A TLS peer that never answers the handshake.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("tls://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let e = sender("127.0.0.0/8")
            .send(&url, b"x", Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                DeliveryError::Timeout {
                    timeout_ms: 300,
                    ..
                }
            ),
            "{e}"
        );
        drop(listener);
    }
}
