//! Access keys and the users they map to: from a key file, env DISPATCH_KEY,
//! a users file, or (local mode, none given) a key generated on first start.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::Deserialize;
use subtle::ConstantTimeEq;

use dispatch_api::rest::is_dns1123_label;

/// The user a lone access key (key file, DISPATCH_KEY, generated) belongs to.
pub const DEFAULT_USER: &str = "me";
/// Shortest access key accepted from configuration.
pub const MIN_KEY_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum KeyConfigError {
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyConfigError + '_ {
    move |source| KeyConfigError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Every configured (user, key) pair.
#[derive(Clone, Default)]
pub struct KeyStore {
    entries: Vec<(String, Vec<u8>)>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let users: Vec<&str> = self.entries.iter().map(|(u, _)| u.as_str()).collect();
        f.debug_struct("KeyStore").field("users", &users).finish()
    }
}

#[derive(Deserialize)]
struct UserEntry {
    user: String,
    key: String,
}

impl KeyStore {
    pub fn add(&mut self, user: &str, key: &str) -> Result<(), KeyConfigError> {
        if !is_dns1123_label(user) {
            return Err(KeyConfigError::Invalid(format!(
                "user name {user:?} must be a DNS-1123 label (a-z, 0-9, '-', at most 63)"
            )));
        }
        if key.chars().count() < MIN_KEY_LEN {
            return Err(KeyConfigError::Invalid(format!(
                "the key of user {user:?} is shorter than {MIN_KEY_LEN} characters"
            )));
        }
        if self.entries.iter().any(|(u, _)| u == user) {
            return Err(KeyConfigError::Invalid(format!(
                "user {user:?} is configured twice"
            )));
        }
        if self.lookup(key).is_some() {
            return Err(KeyConfigError::Invalid(format!(
                "the key of user {user:?} is also another user's key"
            )));
        }
        self.entries
            .push((user.to_owned(), key.as_bytes().to_vec()));
        Ok(())
    }

    /// Adds the users of a users file: `[{"user":"alice","key":"..."}]`.
    pub fn add_users_json(&mut self, json: &str) -> Result<(), KeyConfigError> {
        let users: Vec<UserEntry> = serde_json::from_str(json)
            .map_err(|e| KeyConfigError::Invalid(format!("users file: {e}")))?;
        for u in users {
            self.add(&u.user, &u.key)?;
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The user whose key `presented` is. Compares against every key in
    /// constant time and never stops early, so timing tells nothing about
    /// which key (or how much of one) matched.
    pub fn lookup(&self, presented: &str) -> Option<&str> {
        let presented = presented.as_bytes();
        let mut found = None;
        for (user, key) in &self.entries {
            // ct_eq on slices of different lengths is false without
            // comparing contents; the lengths of keys are not secret.
            if bool::from(key.as_slice().ct_eq(presented)) {
                found = Some(user.as_str());
            }
        }
        found
    }

    pub fn has_user(&self, user: &str) -> bool {
        self.entries.iter().any(|(u, _)| u == user)
    }

    /// The key of the default user, for the login URL printed at start.
    pub fn default_user_key(&self) -> Option<String> {
        self.entries
            .iter()
            .find(|(u, _)| u == DEFAULT_USER)
            .and_then(|(_, k)| String::from_utf8(k.clone()).ok())
    }
}

/// Reads a secret file, trimmed of surrounding whitespace.
pub fn read_secret_file(path: &Path) -> Result<String, KeyConfigError> {
    let s = std::fs::read_to_string(path).map_err(io_err(path))?;
    Ok(s.trim().to_owned())
}

/// Reads the secret at `path`, or creates it (mode 0600, fresh random bytes
/// as hex) when it does not exist yet.
pub fn read_or_create_secret(path: &Path, bytes: usize) -> Result<String, KeyConfigError> {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_owned()),
        Ok(_) => {
            return Err(KeyConfigError::Invalid(format!(
                "{} is empty; delete it to get a new one",
                path.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path)(e)),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let mut raw = vec![0u8; bytes];
    rand::fill(&mut raw[..]);
    let secret = hex::encode(raw);
    // create_new: two gateways starting at once must not both write it.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(format!("{secret}\n").as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(io_err(path))?;
    Ok(secret)
}

/// Where the keys come from, as configured.
pub struct KeySources<'a> {
    pub key_file: Option<&'a Path>,
    pub env_key: Option<String>,
    pub users_file: Option<&'a Path>,
    /// Where to keep a generated key when nothing else is given (local mode);
    /// None means "nothing given" is an error.
    pub generated_key_path: Option<&'a Path>,
}

/// Builds the key store from its sources.
pub fn load_keys(src: KeySources<'_>) -> Result<KeyStore, KeyConfigError> {
    let mut store = KeyStore::default();
    let single = match (src.key_file, src.env_key) {
        (Some(_), Some(_)) => {
            return Err(KeyConfigError::Invalid(
                "give either --key-file or DISPATCH_KEY, not both".into(),
            ));
        }
        (Some(p), None) => Some(read_secret_file(p)?),
        (None, Some(k)) => Some(k.trim().to_owned()),
        (None, None) => None,
    };
    if let Some(k) = single {
        store.add(DEFAULT_USER, &k)?;
    }
    if let Some(p) = src.users_file {
        let json = std::fs::read_to_string(p).map_err(io_err(p))?;
        store.add_users_json(&json)?;
    }
    if store.is_empty() {
        match src.generated_key_path {
            Some(p) => {
                let k = read_or_create_secret(p, 24)?;
                store.add(DEFAULT_USER, &k)?;
            }
            None => {
                return Err(KeyConfigError::Invalid(
                    "no access key: give --key-file, DISPATCH_KEY or --users-file".into(),
                ));
            }
        }
    }
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn lookup_maps_keys_to_users() {
        let mut s = KeyStore::default();
        s.add("alice", "alice-key-0123456789").unwrap();
        s.add("bob", "bob-key-012345678901").unwrap();
        assert_eq!(s.lookup("alice-key-0123456789"), Some("alice"));
        assert_eq!(s.lookup("bob-key-012345678901"), Some("bob"));
        assert_eq!(s.lookup("alice-key-012345678"), None);
        assert_eq!(s.lookup("alice-key-01234567890"), None);
        assert_eq!(s.lookup(""), None);
    }

    #[test]
    fn bad_users_files_are_refused_with_a_reason() {
        for (json, why) in [
            (r#"[{"user":"alice","key":"short"}]"#, "shorter"),
            (r#"[{"user":"../x","key":"0123456789abcdef"}]"#, "DNS-1123"),
            (
                r#"[{"user":"a","key":"0123456789abcdef"},{"user":"a","key":"0123456789abcdeg"}]"#,
                "twice",
            ),
            (
                r#"[{"user":"a","key":"0123456789abcdef"},{"user":"b","key":"0123456789abcdef"}]"#,
                "another user",
            ),
            (r#"{"user":"a"}"#, "users file"),
        ] {
            let err = KeyStore::default().add_users_json(json).unwrap_err();
            assert!(err.to_string().contains(why), "{json}: {err}");
        }
    }

    #[test]
    fn a_generated_key_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/access-key");
        let load = || {
            load_keys(KeySources {
                key_file: None,
                env_key: None,
                users_file: None,
                generated_key_path: Some(&path),
            })
            .unwrap()
        };
        let first = load().default_user_key().unwrap();
        assert!(first.len() >= MIN_KEY_LEN);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load().default_user_key().unwrap(), first);
    }

    #[test]
    fn a_given_key_wins_over_generation() {
        let dir = tempfile::tempdir().unwrap();
        let gen_path = dir.path().join("access-key");
        let s = load_keys(KeySources {
            key_file: None,
            env_key: Some("  env-key-0123456789\n".into()),
            users_file: None,
            generated_key_path: Some(&gen_path),
        })
        .unwrap();
        assert_eq!(s.lookup("env-key-0123456789"), Some(DEFAULT_USER));
        assert!(!gen_path.exists());
    }
}
