//! Who is calling: access keys (login and bearer), signed session tokens in
//! the `dispatch_session` cookie, logout by revocation, the login rate limit
//! and the Origin check.
//!
//! Logout writes a revocation record keyed by the token's random id (kept in
//! SQLite until the token would have expired, mirrored in memory for the hot
//! path) rather than bumping a per-user epoch: an epoch would log the user out
//! everywhere at once (the phone's logout would end the laptop's session),
//! while records are per login, few, and pruned as their tokens expire.

pub mod cookie;
pub mod keys;
pub mod limiter;
pub mod origin;
pub mod token;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;

use crate::registry::{Registry, RegistryError};
pub use keys::KeyStore;
pub use limiter::LoginLimiter;
pub use token::{Claims, TokenSigner};

/// How a request proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// The session cookie; carries the token's claims (for logout).
    Cookie(Claims),
    /// `Authorization: Bearer <access key>` (scripts).
    Bearer,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub via: Via,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// Missing, wrong, expired or revoked credentials; says which, for logs.
    Unauthorized(&'static str),
    /// Too many failed attempts from this address; retry after this long.
    RateLimited(Duration),
}

pub use dispatch_process::now_ms;

/// Tells other gateway replicas about a logout (token id, expiry in Unix ms).
pub type RevocationSink = Arc<
    dyn Fn(String, i64) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        + Send
        + Sync,
>;

pub struct Auth {
    /// Set when replicas share logouts (kubernetes backend).
    revocation_sink: OnceLock<RevocationSink>,
    keys: KeyStore,
    signer: TokenSigner,
    /// Token id -> expiry (Unix ms) of logged-out tokens not yet expired.
    revoked: Mutex<HashMap<String, i64>>,
    registry: Registry,
    limiter: LoginLimiter,
    ttl: Duration,
    secure_cookies: bool,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("keys", &self.keys).finish()
    }
}

pub struct AuthSettings {
    pub keys: KeyStore,
    pub signer: TokenSigner,
    pub limiter: LoginLimiter,
    pub ttl: Duration,
    pub secure_cookies: bool,
}

impl Auth {
    pub async fn new(s: AuthSettings, registry: Registry) -> Result<Self, RegistryError> {
        let revoked = registry.revocations(now_ms()).await?.into_iter().collect();
        Ok(Auth {
            revocation_sink: OnceLock::new(),
            keys: s.keys,
            signer: s.signer,
            revoked: Mutex::new(revoked),
            registry,
            limiter: s.limiter,
            ttl: s.ttl,
            secure_cookies: s.secure_cookies,
        })
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn keys(&self) -> &KeyStore {
        &self.keys
    }

    /// Exchanges an access key for a session token. A right key always
    /// works; wrong ones are rate-limited per address (see `limiter`).
    pub fn login(&self, ip: IpAddr, key: &str) -> Result<(String, Claims), AuthFailure> {
        match self.keys.lookup(key) {
            Some(user) => {
                let expires = now_ms() + self.ttl.as_millis() as i64;
                Ok(self.signer.issue(user, expires))
            }
            None => Err(self.wrong_key(ip, "wrong access key")),
        }
    }

    /// Counts a wrong key against `ip`: 401, or 429 once it has run out.
    fn wrong_key(&self, ip: IpAddr, why: &'static str) -> AuthFailure {
        match self.limiter.record_failure(ip) {
            Ok(()) => AuthFailure::Unauthorized(why),
            Err(wait) => AuthFailure::RateLimited(wait),
        }
    }

    /// Authenticates a request by its bearer key or, failing that, its cookie.
    pub fn authenticate(&self, headers: &HeaderMap, ip: IpAddr) -> Result<Principal, AuthFailure> {
        if let Some(value) = headers.get(AUTHORIZATION) {
            let key = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            return match key.and_then(|k| self.keys.lookup(k)) {
                Some(user) => Ok(Principal {
                    user: user.to_owned(),
                    via: Via::Bearer,
                }),
                None => Err(self.wrong_key(ip, "wrong bearer key")),
            };
        }
        let Some(token) = cookie::session_cookie(headers) else {
            return Err(AuthFailure::Unauthorized("not logged in"));
        };
        let claims = self.signer.verify(token, now_ms()).map_err(|e| match e {
            token::TokenError::Expired => AuthFailure::Unauthorized("login expired"),
            _ => AuthFailure::Unauthorized("invalid session token"),
        })?;
        if self.is_revoked(&claims.id) {
            return Err(AuthFailure::Unauthorized("logged out"));
        }
        // A token is only as good as its user's current key: a user removed
        // from the users file loses access on the next restart.
        if !self.keys.has_user(&claims.user) {
            return Err(AuthFailure::Unauthorized("unknown user"));
        }
        Ok(Principal {
            user: claims.user.clone(),
            via: Via::Cookie(claims),
        })
    }

    fn is_revoked(&self, id: &str) -> bool {
        self.revoked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(id)
    }

    /// Makes the token with these claims unusable from now on (on every
    /// replica, when a revocation sink is set).
    pub async fn logout(&self, claims: &Claims) -> Result<(), RegistryError> {
        self.add_revocation(&claims.id, claims.expires);
        if let Some(sink) = self.revocation_sink.get() {
            sink(claims.id.clone(), claims.expires).await;
        }
        self.registry.revoke(&claims.id, claims.expires).await
    }

    /// Records a logout (possibly another replica's) in memory.
    pub fn add_revocation(&self, id: &str, expires: i64) {
        let now = now_ms();
        if expires <= now {
            return;
        }
        let mut r = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
        r.retain(|_, exp| *exp > now);
        r.insert(id.to_owned(), expires);
    }

    /// Where logouts are published for other replicas; set once.
    pub fn set_revocation_sink(&self, sink: RevocationSink) {
        let _ = self.revocation_sink.set(sink);
    }

    /// Whether Set-Cookie gets `Secure`: when configured, or when a
    /// TLS-terminating proxy says the browser came over https.
    pub fn cookie_secure(&self, headers: &HeaderMap) -> bool {
        self.secure_cookies
            || headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("https"))
    }
}
