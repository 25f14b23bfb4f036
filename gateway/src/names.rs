//! Validated names: what may become a path component or a resource name.

use dispatch_api::rest::is_dns1123_label;

/// A workspace name: a DNS-1123 label (so also a safe directory name and a
/// valid Kubernetes resource name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkspaceName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "workspace name {0:?} must be 1 to 63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit"
)]
pub struct InvalidName(pub String);

impl WorkspaceName {
    pub fn new(s: &str) -> Result<Self, InvalidName> {
        if is_dns1123_label(s) {
            Ok(WorkspaceName(s.to_owned()))
        } else {
            // Keep hostile input short in messages and logs.
            Err(InvalidName(s.chars().take(80).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for WorkspaceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dns1123_labels_pass() {
        for ok in ["a", "my-ws", "0", "ws-01"] {
            assert_eq!(WorkspaceName::new(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "", "..", ".", "../etc", "a/b", "a\\b", "-a", "a-", "A", "a b", "a\0b", "%2e%2e",
            "a.b", "ü",
        ] {
            assert!(WorkspaceName::new(bad).is_err(), "{bad:?}");
        }
        let long = "x".repeat(1000);
        let err = WorkspaceName::new(&long).unwrap_err();
        assert_eq!(err.0.len(), 80);
    }
}
