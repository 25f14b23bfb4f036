//! The session cookie: reading it from Cookie headers, writing Set-Cookie.

use axum::http::HeaderMap;
use axum::http::header::COOKIE;

pub const SESSION_COOKIE: &str = "dispatch_session";

/// The value of our cookie in the request, if any (first one wins).
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim_matches('"'))
}

/// Set-Cookie for a login lasting `max_age_secs`.
pub fn set_session(token: &str, max_age_secs: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
    )
}

/// Set-Cookie that removes the cookie.
pub fn clear_session(secure: bool) -> String {
    set_session("", 0, secure)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn finds_our_cookie_among_others() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1; dispatch_sessionx=2"));
        h.append(
            COOKIE,
            HeaderValue::from_static("b=3;  dispatch_session=tok.en ; c=4"),
        );
        assert_eq!(session_cookie(&h), Some("tok.en"));
        assert_eq!(session_cookie(&HeaderMap::new()), None);
    }

    #[test]
    fn attributes_are_strict() {
        let c = set_session("t", 60, false);
        assert_eq!(
            c,
            "dispatch_session=t; Path=/; HttpOnly; SameSite=Strict; Max-Age=60"
        );
        assert!(set_session("t", 60, true).ends_with("; Secure"));
    }
}
