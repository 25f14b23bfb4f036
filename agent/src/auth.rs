//! The workspace token: loaded once at start, compared in constant time.

use std::path::Path;

use subtle::ConstantTimeEq;

#[derive(Clone)]
pub struct Token(Vec<u8>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("no token: pass --token-file (DISPATCH_AGENT_TOKEN_FILE) or set DISPATCH_AGENT_TOKEN")]
    Missing,
    #[error("the token is empty")]
    Empty,
    #[error("reading token file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

impl Token {
    pub fn new(token: &str) -> Result<Self, TokenError> {
        let t = token.trim();
        if t.is_empty() {
            return Err(TokenError::Empty);
        }
        Ok(Token(t.as_bytes().to_vec()))
    }

    /// From the file if one is named, else from the literal env value.
    pub fn load(file: Option<&Path>, env_value: Option<String>) -> Result<Self, TokenError> {
        match (file, env_value) {
            (Some(path), _) => {
                let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                Token::new(&text)
            }
            (None, Some(v)) => Token::new(&v),
            (None, None) => Err(TokenError::Missing),
        }
    }

    /// Whether an `Authorization` header value carries this token as a bearer.
    pub fn accepts_header(&self, header: Option<&[u8]>) -> bool {
        let Some(value) = header else { return false };
        let Some(presented) = value.strip_prefix(b"Bearer ") else {
            return false;
        };
        // Length is not secret (tokens have a fixed format); the content is.
        presented.len() == self.0.len() && bool::from(presented.ct_eq(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_the_exact_bearer_token() {
        let t = Token::new("s3cret\n").unwrap();
        assert!(t.accepts_header(Some(b"Bearer s3cret")));
        assert!(!t.accepts_header(Some(b"Bearer s3cre")));
        assert!(!t.accepts_header(Some(b"Bearer s3cretX")));
        assert!(!t.accepts_header(Some(b"bearer s3cret")));
        assert!(!t.accepts_header(Some(b"s3cret")));
        assert!(!t.accepts_header(None));
    }

    #[test]
    fn empty_or_missing_tokens_are_refused() {
        assert!(matches!(Token::new("  \n"), Err(TokenError::Empty)));
        assert!(matches!(Token::load(None, None), Err(TokenError::Missing)));
        assert!(Token::load(None, Some("x".into())).is_ok());
    }
}
