//! The tokens a notification's Allow and Deny buttons carry: signed (HMAC
//! with a key derived from the gateway's signing key), bound to one request
//! of one session of one workspace of one user, short-lived, and single-use
//! (the gateway remembers each spent token's nonce until it expires).
//!
//! Format: `pa1.<base64url JSON claims>.<base64url HMAC-SHA256>`.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const PREFIX: &str = "pa1";
/// Longest token accepted (a real one is a few hundred bytes).
const MAX_TOKEN_LEN: usize = 2048;
/// Spent tokens remembered at once; tokens are minted only for real
/// requests and forgotten when they expire, so this is a backstop.
const MAX_SPENT: usize = 100_000;

/// The one request a token answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionClaims {
    #[serde(rename = "u")]
    pub user: String,
    #[serde(rename = "w")]
    pub workspace: String,
    #[serde(rename = "s")]
    pub session: String,
    #[serde(rename = "r")]
    pub request_id: String,
    /// Unix ms.
    #[serde(rename = "e")]
    pub expires: i64,
    #[serde(rename = "n")]
    pub nonce: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ActionTokenError {
    #[error("the action token is malformed")]
    Malformed,
    #[error("the action token's signature does not match")]
    BadSignature,
    #[error("the action token has expired")]
    Expired,
    #[error("the action token was used already")]
    Spent,
}

pub struct ActionTokens {
    key: Vec<u8>,
    /// Nonce -> expiry (Unix ms) of tokens used and not yet expired.
    spent: Mutex<HashMap<String, i64>>,
}

impl std::fmt::Debug for ActionTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ActionTokens(..)")
    }
}

impl ActionTokens {
    /// Keyed by HMAC(signing key, label), so an action token is never a
    /// valid login token nor the other way round.
    pub fn new(signing_key: &[u8]) -> Self {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(signing_key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(b"dispatch push action token v1");
        ActionTokens {
            key: mac.finalize().into_bytes().to_vec(),
            spent: Mutex::new(HashMap::new()),
        }
    }

    fn mac(&self, body: &str) -> HmacSha256 {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(body.as_bytes());
        mac
    }

    /// A token answering `request_id` until `expires` (Unix ms).
    pub fn issue(
        &self,
        user: &str,
        workspace: &str,
        session: &str,
        request_id: &str,
        expires: i64,
    ) -> String {
        let mut nonce = [0u8; 16];
        rand::fill(&mut nonce);
        let claims = ActionClaims {
            user: user.to_owned(),
            workspace: workspace.to_owned(),
            session: session.to_owned(),
            request_id: request_id.to_owned(),
            expires,
            nonce: hex::encode(nonce),
        };
        let json = serde_json::to_vec(&claims).unwrap_or_default();
        let body = format!("{PREFIX}.{}", URL_SAFE_NO_PAD.encode(json));
        let sig = URL_SAFE_NO_PAD.encode(self.mac(&body).finalize().into_bytes());
        format!("{body}.{sig}")
    }

    /// Checks signature and expiry without spending the token.
    pub fn verify(&self, token: &str, now: i64) -> Result<ActionClaims, ActionTokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(ActionTokenError::Malformed);
        }
        let (body, sig) = token.rsplit_once('.').ok_or(ActionTokenError::Malformed)?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| ActionTokenError::Malformed)?;
        self.mac(body)
            .verify_slice(&sig)
            .map_err(|_| ActionTokenError::BadSignature)?;
        let json = body
            .strip_prefix(PREFIX)
            .and_then(|b| b.strip_prefix('.'))
            .ok_or(ActionTokenError::Malformed)?;
        let json = URL_SAFE_NO_PAD
            .decode(json)
            .map_err(|_| ActionTokenError::Malformed)?;
        let claims: ActionClaims =
            serde_json::from_slice(&json).map_err(|_| ActionTokenError::Malformed)?;
        if now >= claims.expires {
            return Err(ActionTokenError::Expired);
        }
        Ok(claims)
    }

    /// Verifies and spends the token: a second use fails with `Spent`.
    pub fn spend(&self, token: &str, now: i64) -> Result<ActionClaims, ActionTokenError> {
        let claims = self.verify(token, now)?;
        let mut spent = self.spent.lock().unwrap_or_else(|p| p.into_inner());
        if spent.contains_key(&claims.nonce) {
            return Err(ActionTokenError::Spent);
        }
        if spent.len() >= MAX_SPENT {
            spent.retain(|_, exp| *exp > now);
            if spent.len() >= MAX_SPENT {
                // Refusing is safe: the app's own buttons still answer.
                return Err(ActionTokenError::Spent);
            }
        }
        spent.insert(claims.nonce.clone(), claims.expires);
        Ok(claims)
    }

    /// Gives a token back after its answer could not be delivered (agent
    /// unreachable), so the button can be tried again.
    pub fn unspend(&self, claims: &ActionClaims) {
        self.spent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&claims.nonce);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> ActionTokens {
        ActionTokens::new(b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn a_token_answers_its_request_once_before_it_expires() {
        let t = tokens();
        let tok = t.issue("alice", "demo", "s1", "req-7", 1_000);
        let c = t.spend(&tok, 500).unwrap();
        assert_eq!(
            (
                c.user.as_str(),
                c.workspace.as_str(),
                c.session.as_str(),
                c.request_id.as_str()
            ),
            ("alice", "demo", "s1", "req-7")
        );
        assert_eq!(t.spend(&tok, 501), Err(ActionTokenError::Spent));
        t.unspend(&c);
        assert!(t.spend(&tok, 502).is_ok());
        let late = t.issue("alice", "demo", "s1", "req-8", 1_000);
        assert_eq!(t.spend(&late, 1_000), Err(ActionTokenError::Expired));
    }

    #[test]
    fn changed_or_foreign_tokens_fail() {
        let t = tokens();
        let tok = t.issue("alice", "demo", "s1", "req-7", 1_000);
        let (body, sig) = tok.rsplit_once('.').unwrap();
        // Re-bind to another request: the signature no longer fits.
        let json = URL_SAFE_NO_PAD
            .decode(body.strip_prefix("pa1.").unwrap())
            .unwrap();
        let other = String::from_utf8(json).unwrap().replace("req-7", "req-9");
        let forged = format!("pa1.{}.{sig}", URL_SAFE_NO_PAD.encode(other));
        assert_eq!(t.verify(&forged, 0), Err(ActionTokenError::BadSignature));
        let foreign =
            ActionTokens::new(b"another key").issue("alice", "demo", "s1", "req-7", 1_000);
        assert_eq!(t.verify(&foreign, 0), Err(ActionTokenError::BadSignature));
        // A login token signed with the same key is not an action token.
        let login = crate::auth::TokenSigner::new(b"0123456789abcdef0123456789abcdef")
            .issue("alice", 1_000)
            .0;
        assert!(t.verify(&login, 0).is_err());
        for bad in ["", ".", "pa1..", "pa1.e30.", &"x".repeat(5000)] {
            assert!(t.verify(bad, 0).is_err(), "{bad}");
        }
    }
}
