//! Signed, expiring session tokens: what the login cookie (and nothing else)
//! carries. Stateless, so that several gateway replicas that share the signing
//! key accept each other's tokens; logout is a revocation of the token's id.
//!
//! Format: `v1.<user>.<id>.<expires_ms>.<hmac>` where `<hmac>` is hex
//! HMAC-SHA256 over everything before the last dot. Users and ids contain no
//! dots (users are DNS-1123 labels, ids are hex), so the split is unambiguous.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const VERSION: &str = "v1";
/// Bytes of randomness in a token id.
const ID_BYTES: usize = 16;

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub user: String,
    /// Random id, the key of a revocation record.
    pub id: String,
    /// Unix time in milliseconds.
    pub expires: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed")]
    Malformed,
    #[error("token signature does not match")]
    BadSignature,
    #[error("token has expired")]
    Expired,
}

/// Signs and verifies tokens with one secret key.
#[derive(Clone)]
pub struct TokenSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner(..)")
    }
}

impl TokenSigner {
    pub fn new(key: &[u8]) -> Self {
        TokenSigner { key: key.to_vec() }
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length, so this cannot fail.
        <HmacSha256 as KeyInit>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
    }

    /// A new token for `user` valid until `expires` (Unix ms), with a fresh id.
    pub fn issue(&self, user: &str, expires: i64) -> (String, Claims) {
        let mut id = [0u8; ID_BYTES];
        rand::fill(&mut id);
        let claims = Claims {
            user: user.to_owned(),
            id: hex::encode(id),
            expires,
        };
        (self.sign(&claims), claims)
    }

    pub fn sign(&self, c: &Claims) -> String {
        let body = format!("{VERSION}.{}.{}.{}", c.user, c.id, c.expires);
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        let sig = hex::encode(mac.finalize().into_bytes());
        format!("{body}.{sig}")
    }

    /// Checks signature (in constant time) and expiry against `now` (Unix ms).
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let (body, sig_hex) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        // Only the form `issue` writes: with upper-case hex accepted too, one token would have
        // many spellings, and anything keyed by the token's text could be sidestepped.
        if sig_hex.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(TokenError::Malformed);
        }
        let sig = hex::decode(sig_hex).map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        mac.verify_slice(&sig)
            .map_err(|_| TokenError::BadSignature)?;
        let mut parts = body.split('.');
        let (Some(VERSION), Some(user), Some(id), Some(expires), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(TokenError::Malformed);
        };
        let expires: i64 = expires.parse().map_err(|_| TokenError::Malformed)?;
        if now >= expires {
            return Err(TokenError::Expired);
        }
        Ok(Claims {
            user: user.to_owned(),
            id: id.to_owned(),
            expires,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> TokenSigner {
        TokenSigner::new(b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn issued_tokens_verify_until_they_expire() {
        let s = signer();
        let (tok, claims) = s.issue("alice", 1_000);
        assert_eq!(claims.user, "alice");
        assert_eq!(claims.id.len(), ID_BYTES * 2);
        assert_eq!(s.verify(&tok, 999), Ok(claims));
        assert_eq!(s.verify(&tok, 1_000), Err(TokenError::Expired));
        assert_eq!(s.verify(&tok, 5_000), Err(TokenError::Expired));
    }

    #[test]
    fn ids_are_fresh() {
        let s = signer();
        assert_ne!(s.issue("a", 1).1.id, s.issue("a", 1).1.id);
    }

    #[test]
    fn tampering_breaks_the_signature() {
        let s = signer();
        let (tok, _) = s.issue("alice", 1_000);
        // Extend the expiry, or change the user: the signature no longer fits.
        let longer = tok.replacen(".1000.", ".9999999.", 1);
        assert_eq!(s.verify(&longer, 0), Err(TokenError::BadSignature));
        let other = tok.replacen("alice", "bob", 1);
        assert_eq!(s.verify(&other, 0), Err(TokenError::BadSignature));
        // Another key's token.
        let (foreign, _) = TokenSigner::new(b"another key").issue("alice", 1_000);
        assert_eq!(s.verify(&foreign, 0), Err(TokenError::BadSignature));
    }

    #[test]
    fn a_token_has_one_spelling() {
        let s = signer();
        let (tok, _) = s.issue("alice", 1_000);
        let (body, sig) = tok
            .rsplit_once('.')
            .expect("issued tokens have a signature");
        let shouted = format!("{body}.{}", sig.to_ascii_uppercase());
        assert_ne!(shouted, tok, "the signature has hex letters to shout");
        assert_eq!(s.verify(&shouted, 0), Err(TokenError::Malformed));
        assert!(s.verify(&tok, 0).is_ok());
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let s = signer();
        for bad in ["", ".", "abc", "v1.a.b.c.zz", "v1.a.b.c.", "....", "é.é"] {
            assert!(s.verify(bad, 0).is_err(), "{bad}");
        }
        // Correctly signed but with the wrong number of fields.
        let mut mac = s.mac();
        mac.update(b"v1.alice.id");
        let tok = format!("v1.alice.id.{}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(s.verify(&tok, 0), Err(TokenError::Malformed));
    }
}
