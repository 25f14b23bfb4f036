//! The gateway's VAPID identity (RFC 8292): one P-256 key pair, generated
//! once and kept (PKCS#8, base64url or PEM) so that subscriptions made
//! against its public key keep working across restarts and replicas; and the
//! ES256 JWT plus `vapid` Authorization header each push request carries.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

/// How long a JWT is valid; RFC 8292 caps it at 24 h.
pub const JWT_TTL_SECS: i64 = 12 * 3600;

#[derive(Debug, thiserror::Error)]
pub enum VapidError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}: not a PKCS#8 P-256 private key (base64url, base64 or PEM)")]
    BadKey(String),
    #[error("signing failed")]
    Sign,
}

pub struct Vapid {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    /// `mailto:` or `https:` contact the push service may use (the `sub` claim).
    subject: String,
}

impl std::fmt::Debug for Vapid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vapid")
            .field("public_key", &self.public_key_b64())
            .finish_non_exhaustive()
    }
}

/// DER length octets.
fn der_len(n: usize) -> Vec<u8> {
    match n {
        0..=127 => vec![n as u8],
        128..=255 => vec![0x81, n as u8],
        _ => vec![0x82, (n >> 8) as u8, n as u8],
    }
}

/// Wraps a SEC1 `ECPrivateKey` (PEM `EC PRIVATE KEY`, what `openssl ecparam
/// -genkey` and Helm's `genPrivateKey "ecdsa"` write) as PKCS#8 for P-256,
/// the one form ring reads.
fn sec1_to_pkcs8(sec1: &[u8]) -> Vec<u8> {
    // version 0, AlgorithmIdentifier {id-ecPublicKey, prime256v1}
    const HEAD: [u8; 24] = [
        0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
        0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
    ];
    let mut octets = vec![0x04];
    octets.extend(der_len(sec1.len()));
    octets.extend_from_slice(sec1);
    let mut out = vec![0x30];
    out.extend(der_len(HEAD.len() + octets.len()));
    out.extend_from_slice(&HEAD);
    out.extend(octets);
    out
}

/// PKCS#8 DER from the text of a key file: base64url, base64, PEM
/// `PRIVATE KEY`, or PEM `EC PRIVATE KEY` (SEC1).
fn decode_key_text(text: &str) -> Option<Vec<u8>> {
    let body: String = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect();
    let der = URL_SAFE_NO_PAD
        .decode(body.trim_end_matches('='))
        .ok()
        .or_else(|| STANDARD.decode(&body).ok())?;
    if text.contains("-----BEGIN EC PRIVATE KEY-----") {
        return Some(sec1_to_pkcs8(&der));
    }
    Some(der)
}

impl Vapid {
    pub fn from_pkcs8(der: &[u8], subject: &str, what: &str) -> Result<Self, VapidError> {
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            .map_err(|_| VapidError::BadKey(what.to_owned()))?;
        Ok(Vapid {
            key,
            rng,
            subject: subject.to_owned(),
        })
    }

    /// A fresh key pair (tests, and the first start).
    pub fn generate(subject: &str) -> Result<(Self, Vec<u8>), VapidError> {
        let der =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| VapidError::Sign)?;
        let der = der.as_ref().to_vec();
        Ok((Self::from_pkcs8(&der, subject, "generated key")?, der))
    }

    /// Reads the key at `path`; when `create` and there is none, generates
    /// one and writes it there (mode 0600, never over another's).
    pub fn load(path: &Path, create: bool, subject: &str) -> Result<Self, VapidError> {
        let io = |source| VapidError::Io {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let der = decode_key_text(&text)
                    .ok_or_else(|| VapidError::BadKey(path.display().to_string()))?;
                Self::from_pkcs8(&der, subject, &path.display().to_string())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let (vapid, der) = Self::generate(subject)?;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(io)?;
                f.write_all(format!("{}\n", URL_SAFE_NO_PAD.encode(&der)).as_bytes())
                    .and_then(|_| f.sync_all())
                    .map_err(io)?;
                tracing::info!(path = %path.display(), "generated the VAPID key pair for Web Push");
                Ok(vapid)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The uncompressed public key, base64url: the browser's
    /// `applicationServerKey` and the header's `k=`.
    pub fn public_key_b64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.key.public_key().as_ref())
    }

    /// `vapid t=<jwt>, k=<public key>` for a push to `audience` (the
    /// endpoint's origin), valid until `now_secs + JWT_TTL_SECS`.
    pub fn authorization(&self, audience: &str, now_secs: i64) -> Result<String, VapidError> {
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = serde_json::json!({
            "aud": audience,
            "exp": now_secs + JWT_TTL_SECS,
            "sub": self.subject,
        });
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{header}.{claims}");
        let sig = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| VapidError::Sign)?;
        let jwt = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
        Ok(format!("vapid t={jwt}, k={}", self.public_key_b64()))
    }
}

/// The origin (`scheme://host[:port]`) of a push endpoint: the JWT's `aud`.
pub fn audience(endpoint: &hyper::Uri) -> Option<String> {
    let scheme = endpoint.scheme_str()?;
    let authority = endpoint.authority()?;
    Some(format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

    #[test]
    fn the_header_carries_a_jwt_the_public_key_verifies() {
        let (v, _) = Vapid::generate("mailto:ops@example.org").unwrap();
        let h = v.authorization("https://push.example.net", 1_000).unwrap();
        let rest = h.strip_prefix("vapid t=").unwrap();
        let (jwt, k) = rest.split_once(", k=").unwrap();
        assert_eq!(k, v.public_key_b64());
        let (input, sig) = jwt.rsplit_once('.').unwrap();
        let public = URL_SAFE_NO_PAD.decode(k).unwrap();
        assert_eq!(public.len(), 65);
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &public)
            .verify(input.as_bytes(), &URL_SAFE_NO_PAD.decode(sig).unwrap())
            .unwrap();
        let claims: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(input.split_once('.').unwrap().1)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["aud"], "https://push.example.net");
        assert_eq!(claims["exp"], 1_000 + JWT_TTL_SECS);
        assert_eq!(claims["sub"], "mailto:ops@example.org");
    }

    #[test]
    fn the_key_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vapid-key");
        assert!(Vapid::load(&path, false, "mailto:a@b").is_err());
        let first = Vapid::load(&path, true, "mailto:a@b").unwrap();
        let again = Vapid::load(&path, true, "mailto:a@b").unwrap();
        assert_eq!(first.public_key_b64(), again.public_key_b64());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn pem_and_garbage() {
        let (v, der) = Vapid::generate("mailto:a@b").unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            STANDARD.encode(&der)
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(&path, pem).unwrap();
        let loaded = Vapid::load(&path, false, "mailto:a@b").unwrap();
        assert_eq!(loaded.public_key_b64(), v.public_key_b64());
        std::fs::write(&path, "not a key").unwrap();
        assert!(matches!(
            Vapid::load(&path, true, "mailto:a@b"),
            Err(VapidError::BadKey(_))
        ));
    }

    /// A throwaway key made for this test with `openssl ecparam -name
    /// prime256v1 -genkey -noout` (SEC1, parameters and public key included,
    /// as Helm's genPrivateKey "ecdsa" writes), and its public key.
    const SEC1_PEM: &str = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIHroTs0Z7pN9zVyCJXZp3LdE2y0tfOMAXCLk8ghWi46voAoGCCqGSM49\nAwEHoUQDQgAEbCjLR3pkRbDtBeizlv4osrh3geTJynROWrakWwg9K2bFFzZE+gnL\nwqsGO+/vutQAlLdhmAf62t+lBb4QyeI43Q==\n-----END EC PRIVATE KEY-----";
    const SEC1_PUBLIC: &str =
        "BGwoy0d6ZEWw7QXos5b-KLK4d4Hkycp0Tlq2pFsIPStmxRc2RPoJy8KrBjvv77rUAJS3YZgH-trfpQW-EMniON0";

    #[test]
    fn sec1_keys_from_openssl_or_helm_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ec.pem");
        std::fs::write(&path, SEC1_PEM).unwrap();
        let v = Vapid::load(&path, false, "mailto:a@b").unwrap();
        assert_eq!(v.public_key_b64(), SEC1_PUBLIC);
        // Not a SEC1 key under that header: refused, not a panic.
        std::fs::write(
            &path,
            "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
        )
        .unwrap();
        assert!(matches!(
            Vapid::load(&path, false, "mailto:a@b"),
            Err(VapidError::BadKey(_))
        ));
    }

    #[test]
    fn audience_is_the_origin() {
        let u: hyper::Uri = "https://fcm.example.com:8443/wp/abc?x=1".parse().unwrap();
        assert_eq!(audience(&u).unwrap(), "https://fcm.example.com:8443");
        let rel: hyper::Uri = "/wp/abc".parse().unwrap();
        assert_eq!(audience(&rel), None);
    }
}
