//! Console sessions and the sign-in limit.
//!
//! Owns: the session table (in memory, per process: a restart signs
//! everyone out), session ids and CSRF tokens, expiry, and the count of
//! failed sign-ins per peer address. A session keeps its role and the
//! digest of the token it was opened with, never the token.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Role;

/// At most this many sessions are kept; past it the oldest is dropped.
const MAX_SESSIONS: usize = 10_000;
/// At most this many peer addresses are tracked for failed sign-ins.
const MAX_PEERS: usize = 10_000;

/// A signed-in person.
#[derive(Debug, Clone)]
pub struct Session {
    pub role: Role,
    /// The sha256 of the token the session was opened with: the session
    /// ends when a reload removes that token.
    pub token_digest: [u8; 32],
    /// The per-session token every console form carries.
    pub csrf: String,
    expires: Instant,
}

impl Session {
    /// Whether `given` is this session's CSRF token (constant time).
    pub fn csrf_ok(&self, given: &str) -> bool {
        bool::from(self.csrf.as_bytes().ct_eq(given.as_bytes()))
    }
}

/// The session table.
#[derive(Default)]
pub struct Sessions {
    /// Keyed by the sha256 of the session id (the id itself is only in the
    /// browser's cookie).
    by_id: Mutex<HashMap<[u8; 32], Session>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// 32 random bytes, URL-safe base64.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    /// Opens a session; returns its id (the cookie's value).
    pub fn open(&self, role: Role, token_digest: [u8; 32], ttl: Duration) -> String {
        let id = random_token();
        let now = Instant::now();
        let session = Session {
            role,
            token_digest,
            csrf: random_token(),
            expires: now + ttl,
        };
        let mut map = lock(&self.by_id);
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        map.insert(key(&id), session);
        id
    }

    /// The live session with this id (an expired one is removed).
    pub fn get(&self, id: &str) -> Option<Session> {
        let k = key(id);
        let mut map = lock(&self.by_id);
        match map.get(&k) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(&k);
                None
            }
            None => None,
        }
    }

    /// Ends a session.
    pub fn close(&self, id: &str) {
        lock(&self.by_id).remove(&key(id));
    }
}

/// Failed sign-ins per peer address within a window.
#[derive(Default)]
pub struct LoginLimit {
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl LoginLimit {
    /// `Err(seconds to wait)` when `peer` has used up its failures in the
    /// current window.
    pub fn check(&self, peer: IpAddr, max: u32, window: Duration) -> Result<(), u64> {
        let map = lock(&self.failures);
        match map.get(&peer) {
            Some((since, n)) if *n >= max && since.elapsed() < window => {
                Err((window - since.elapsed()).as_secs().max(1))
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed sign-in of `peer`.
    pub fn failed(&self, peer: IpAddr, window: Duration) {
        let now = Instant::now();
        let mut map = lock(&self.failures);
        if map.len() >= MAX_PEERS && !map.contains_key(&peer) {
            map.retain(|_, (since, _)| now.duration_since(*since) < window);
            if map.len() >= MAX_PEERS {
                return;
            }
        }
        let entry = map.entry(peer).or_insert((now, 0));
        if now.duration_since(entry.0) >= window {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }

    /// A successful sign-in clears the peer's count.
    pub fn succeeded(&self, peer: IpAddr) {
        lock(&self.failures).remove(&peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn a_session_is_found_by_its_id_until_it_expires_or_is_closed() {
        let sessions = Sessions::default();
        let id = sessions.open(Role::Viewer, [7; 32], Duration::from_secs(60));
        let s = sessions.get(&id).expect("open session");
        assert_eq!(s.role, Role::Viewer);
        assert!(s.csrf_ok(&s.csrf));
        assert!(!s.csrf_ok("forged"));
        assert!(sessions.get("another id").is_none());
        sessions.close(&id);
        assert!(sessions.get(&id).is_none());
        let short = sessions.open(Role::Admin, [7; 32], Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        assert!(sessions.get(&short).is_none());
    }

    #[test]
    fn two_sessions_get_different_ids_and_csrf_tokens() {
        let sessions = Sessions::default();
        let a = sessions.open(Role::Admin, [1; 32], Duration::from_secs(60));
        let b = sessions.open(Role::Admin, [1; 32], Duration::from_secs(60));
        assert_ne!(a, b);
        let (sa, sb) = (sessions.get(&a).unwrap(), sessions.get(&b).unwrap());
        assert_ne!(sa.csrf, sb.csrf);
        assert_eq!(a.len(), 43, "32 bytes of base64url");
    }

    #[test]
    fn a_peer_is_refused_after_max_failures_within_the_window_and_cleared_by_success() {
        let limit = LoginLimit::default();
        let window = Duration::from_secs(60);
        for _ in 0..3 {
            assert!(limit.check(LOCAL, 3, window).is_ok());
            limit.failed(LOCAL, window);
        }
        let wait = limit.check(LOCAL, 3, window).expect_err("refused");
        assert!((1..=60).contains(&wait), "{wait}");
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(limit.check(other, 3, window).is_ok());
        limit.succeeded(LOCAL);
        assert!(limit.check(LOCAL, 3, window).is_ok());
        // A window that has passed starts a new count.
        let tiny = Duration::from_millis(1);
        for _ in 0..3 {
            limit.failed(other, tiny);
        }
        std::thread::sleep(Duration::from_millis(5));
        assert!(limit.check(other, 3, tiny).is_ok());
    }
}
