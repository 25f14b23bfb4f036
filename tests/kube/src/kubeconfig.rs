//! kubeconfig files (written as JSON, which every kubeconfig reader accepts as YAML).

use serde_json::{Value, json};

/// How a kubeconfig user authenticates.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// A client certificate and key (PEM).
    ClientCert { cert_pem: String, key_pem: String },
    /// A bearer token (e.g. a ServiceAccount token from the TokenRequest API).
    Token(String),
}

/// A kubeconfig with one cluster, one user and one current context named `name`.
pub fn render(name: &str, server: &str, ca_pem: &str, creds: &Credentials) -> String {
    let user = match creds {
        Credentials::ClientCert { cert_pem, key_pem } => json!({
            "client-certificate-data": b64(cert_pem.as_bytes()),
            "client-key-data": b64(key_pem.as_bytes()),
        }),
        Credentials::Token(t) => json!({ "token": t }),
    };
    let doc: Value = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": name, "cluster": {
            "server": server,
            "certificate-authority-data": b64(ca_pem.as_bytes()),
        }}],
        "users": [{ "name": name, "user": user }],
        "contexts": [{ "name": name, "context": { "cluster": name, "user": name } }],
        "current-context": name,
        "preferences": {},
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// Standard base64 with padding, as kubeconfig's `*-data` fields want.
pub fn b64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(b64(i.as_bytes()), o, "{i}");
        }
    }

    #[test]
    fn token_kubeconfig_has_one_context() {
        let text = render(
            "t",
            "https://127.0.0.1:1",
            "CA",
            &Credentials::Token("abc".into()),
        );
        let v: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v["current-context"], "t");
        assert_eq!(v["users"][0]["user"]["token"], "abc");
        assert_eq!(v["clusters"][0]["cluster"]["server"], "https://127.0.0.1:1");
        assert_eq!(
            v["clusters"][0]["cluster"]["certificate-authority-data"],
            "Q0E="
        );
    }
}
