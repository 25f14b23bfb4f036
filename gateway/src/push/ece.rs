//! Web Push payload encryption (RFC 8291) in the aes128gcm content coding
//! (RFC 8188): one record, no padding, the sender's ephemeral public key as
//! the key id. Pure apart from the randomness it is given.

use ring::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::agreement::{self, ECDH_P256, EphemeralPrivateKey, UnparsedPublicKey};
use ring::hkdf::{HKDF_SHA256, KeyType, Salt};
use ring::rand::{SecureRandom, SystemRandom};

/// An uncompressed P-256 point, as browsers give `p256dh`.
pub const PUBLIC_KEY_LEN: usize = 65;
/// The `auth` secret browsers give.
pub const AUTH_LEN: usize = 16;
const SALT_LEN: usize = 16;
/// The record size written in the header: one record holds the whole message.
const RECORD_SIZE: u32 = 4096;
/// salt + rs + idlen + keyid.
pub const HEADER_LEN: usize = SALT_LEN + 4 + 1 + PUBLIC_KEY_LEN;
const TAG_LEN: usize = 16;
/// Largest plaintext: push services take 4096-byte bodies; the header, the
/// padding delimiter and the tag take the rest.
pub const MAX_PLAINTEXT: usize = RECORD_SIZE as usize - HEADER_LEN - 1 - TAG_LEN;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EceError {
    #[error("p256dh must be an uncompressed P-256 point of 65 bytes")]
    BadPublicKey,
    #[error("auth must be 16 bytes")]
    BadAuth,
    #[error("payload of {0} bytes is over the {MAX_PLAINTEXT} a push message holds")]
    TooLarge(usize),
    #[error("crypto failure")]
    Crypto,
}

/// The browser's keys from its `PushSubscription`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverKeys {
    pub p256dh: [u8; PUBLIC_KEY_LEN],
    pub auth: [u8; AUTH_LEN],
}

impl ReceiverKeys {
    pub fn new(p256dh: &[u8], auth: &[u8]) -> Result<Self, EceError> {
        let p256dh: [u8; PUBLIC_KEY_LEN] = p256dh.try_into().map_err(|_| EceError::BadPublicKey)?;
        if p256dh[0] != 0x04 {
            return Err(EceError::BadPublicKey);
        }
        Ok(ReceiverKeys {
            p256dh,
            auth: auth.try_into().map_err(|_| EceError::BadAuth)?,
        })
    }
}

struct Len(usize);

impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn hkdf(salt: &[u8], ikm: &[u8], info: &[u8], out: &mut [u8]) -> Result<(), EceError> {
    let info = [info];
    Salt::new(HKDF_SHA256, salt)
        .extract(ikm)
        .expand(&info, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| EceError::Crypto)
}

/// Derives the content key and nonce from the ECDH secret (RFC 8291 §3.4).
fn key_and_nonce(
    ecdh_secret: &[u8],
    keys: &ReceiverKeys,
    sender_public: &[u8],
    salt: &[u8],
) -> Result<([u8; 16], [u8; 12]), EceError> {
    let mut key_info = Vec::with_capacity(14 + 2 * PUBLIC_KEY_LEN);
    key_info.extend_from_slice(b"WebPush: info\0");
    key_info.extend_from_slice(&keys.p256dh);
    key_info.extend_from_slice(sender_public);
    let mut ikm = [0u8; 32];
    hkdf(&keys.auth, ecdh_secret, &key_info, &mut ikm)?;
    let mut cek = [0u8; 16];
    hkdf(salt, &ikm, b"Content-Encoding: aes128gcm\0", &mut cek)?;
    let mut nonce = [0u8; 12];
    hkdf(salt, &ikm, b"Content-Encoding: nonce\0", &mut nonce)?;
    Ok((cek, nonce))
}

/// The aes128gcm body that carries `plaintext` to the browser with `keys`.
pub fn encrypt(plaintext: &[u8], keys: &ReceiverKeys) -> Result<Vec<u8>, EceError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(EceError::TooLarge(plaintext.len()));
    }
    let rng = SystemRandom::new();
    let mut salt = [0u8; SALT_LEN];
    rng.fill(&mut salt).map_err(|_| EceError::Crypto)?;
    let ephemeral =
        EphemeralPrivateKey::generate(&ECDH_P256, &rng).map_err(|_| EceError::Crypto)?;
    let sender_public = ephemeral
        .compute_public_key()
        .map_err(|_| EceError::Crypto)?;
    let peer = UnparsedPublicKey::new(&ECDH_P256, keys.p256dh);
    let (cek, nonce) = agreement::agree_ephemeral(ephemeral, &peer, |secret| {
        key_and_nonce(secret, keys, sender_public.as_ref(), &salt)
    })
    .map_err(|_| EceError::BadPublicKey)??;

    let mut body = Vec::with_capacity(HEADER_LEN + plaintext.len() + 1 + TAG_LEN);
    body.extend_from_slice(&salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(PUBLIC_KEY_LEN as u8);
    body.extend_from_slice(sender_public.as_ref());
    let mut record = Vec::with_capacity(plaintext.len() + 1 + TAG_LEN);
    record.extend_from_slice(plaintext);
    // The last (and only) record's padding delimiter.
    record.push(0x02);
    let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &cek).map_err(|_| EceError::Crypto)?);
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::empty(),
        &mut record,
    )
    .map_err(|_| EceError::Crypto)?;
    body.extend_from_slice(&record);
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The receiving side, as a browser does it, to check the round trip
    /// (the independent check is the Python receiver in tests/push).
    fn decrypt(body: &[u8], ua: EphemeralPrivateKey, keys: &ReceiverKeys) -> Vec<u8> {
        let salt = &body[..SALT_LEN];
        let rs = u32::from_be_bytes(body[16..20].try_into().unwrap());
        assert_eq!(rs, RECORD_SIZE);
        assert_eq!(body[20] as usize, PUBLIC_KEY_LEN);
        let sender_public = &body[21..HEADER_LEN];
        let peer = UnparsedPublicKey::new(&ECDH_P256, sender_public);
        let (cek, nonce) = agreement::agree_ephemeral(ua, &peer, |secret| {
            key_and_nonce(secret, keys, sender_public, salt)
        })
        .unwrap()
        .unwrap();
        let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &cek).unwrap());
        let mut record = body[HEADER_LEN..].to_vec();
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut record,
            )
            .unwrap();
        assert_eq!(plain.last(), Some(&0x02));
        plain[..plain.len() - 1].to_vec()
    }

    fn receiver() -> (EphemeralPrivateKey, ReceiverKeys) {
        let rng = SystemRandom::new();
        let ua = EphemeralPrivateKey::generate(&ECDH_P256, &rng).unwrap();
        let public = ua.compute_public_key().unwrap();
        let mut auth = [0u8; AUTH_LEN];
        rng.fill(&mut auth).unwrap();
        let keys = ReceiverKeys::new(public.as_ref(), &auth).unwrap();
        (ua, keys)
    }

    #[test]
    fn the_receiver_decrypts_what_was_sent() {
        let (ua, keys) = receiver();
        let body = encrypt(b"When I grow up, I want to be a watermelon", &keys).unwrap();
        assert_eq!(body.len(), HEADER_LEN + 41 + 1 + TAG_LEN);
        assert_eq!(
            decrypt(&body, ua, &keys),
            b"When I grow up, I want to be a watermelon"
        );
    }

    #[test]
    fn the_largest_payload_fits_one_4096_byte_record() {
        let (ua, keys) = receiver();
        let big = vec![b'x'; MAX_PLAINTEXT];
        let body = encrypt(&big, &keys).unwrap();
        assert_eq!(body.len(), RECORD_SIZE as usize);
        assert_eq!(decrypt(&body, ua, &keys), big);
        assert_eq!(
            encrypt(&[0; MAX_PLAINTEXT + 1], &keys),
            Err(EceError::TooLarge(MAX_PLAINTEXT + 1))
        );
    }

    #[test]
    fn bad_keys_are_refused() {
        assert_eq!(
            ReceiverKeys::new(&[4; 64], &[0; 16]),
            Err(EceError::BadPublicKey)
        );
        assert_eq!(
            ReceiverKeys::new(&[3; 65], &[0; 16]),
            Err(EceError::BadPublicKey)
        );
        assert_eq!(
            ReceiverKeys::new(&[4; 65], &[0; 15]),
            Err(EceError::BadAuth)
        );
        // 0x04 then bytes that are no point on the curve: the agreement fails.
        let keys = ReceiverKeys::new(&[4; 65], &[0; 16]).unwrap();
        assert_eq!(encrypt(b"x", &keys), Err(EceError::BadPublicKey));
    }
}
