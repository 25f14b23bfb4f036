//! A browser's push subscription as the API takes it, checked: the endpoint
//! a push service gave the browser, its keys, and what it wants to be told.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::ece::ReceiverKeys;

/// Longest endpoint URL accepted (real ones are a few hundred bytes).
pub const MAX_ENDPOINT_LEN: usize = 2048;

/// What a browser asked to be notified of. Approvals are on by default
/// (the point of subscribing); the rest is opt-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Prefs {
    #[serde(default = "yes")]
    pub approvals: bool,
    #[serde(default)]
    pub turn_finished: bool,
    #[serde(default)]
    pub errors: bool,
}

fn yes() -> bool {
    true
}

impl Default for Prefs {
    fn default() -> Self {
        Prefs {
            approvals: true,
            turn_finished: false,
            errors: false,
        }
    }
}

/// `PushSubscription.toJSON()`'s keys.
#[derive(Debug, Clone, Deserialize)]
pub struct KeysBody {
    pub p256dh: String,
    pub auth: String,
}

/// `POST /api/push/subscriptions` body: `PushSubscription.toJSON()` plus
/// `prefs`. Its `expirationTime` is not read: push services that expire
/// subscriptions answer 404/410.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscribeBody {
    pub endpoint: String,
    pub keys: KeysBody,
    #[serde(default)]
    pub prefs: Prefs,
}

/// A checked subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub endpoint: String,
    pub keys: ReceiverKeys,
    pub prefs: Prefs,
}

/// Which endpoints are accepted. Push services are HTTPS; plain HTTP is
/// allowed only to loopback, and only when the gateway is told so (a test's
/// own receiver), so a user cannot make the gateway post to anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EndpointPolicy {
    pub allow_http_loopback: bool,
}

fn b64(field: &str, s: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| format!("keys.{field} is not base64url"))
}

fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Checks an endpoint URL against the policy; the reason when refused.
pub fn check_endpoint(endpoint: &str, policy: EndpointPolicy) -> Result<hyper::Uri, String> {
    if endpoint.len() > MAX_ENDPOINT_LEN {
        return Err(format!("endpoint is longer than {MAX_ENDPOINT_LEN} bytes"));
    }
    let uri: hyper::Uri = endpoint
        .parse()
        .map_err(|_| "endpoint is not a URL".to_owned())?;
    let host = uri.host().ok_or("endpoint has no host")?;
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err("endpoint must not carry credentials".into());
    }
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if policy.allow_http_loopback && is_loopback_host(host) => Ok(uri),
        _ => Err("endpoint must be an https:// URL".into()),
    }
}

impl SubscribeBody {
    pub fn check(self, policy: EndpointPolicy) -> Result<Subscription, String> {
        check_endpoint(&self.endpoint, policy)?;
        let keys = ReceiverKeys::new(
            &b64("p256dh", &self.keys.p256dh)?,
            &b64("auth", &self.keys.auth)?,
        )
        .map_err(|e| e.to_string())?;
        Ok(Subscription {
            endpoint: self.endpoint,
            keys,
            prefs: self.prefs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(endpoint: &str, p256dh: &str, auth: &str) -> SubscribeBody {
        serde_json::from_value(serde_json::json!({
            "endpoint": endpoint,
            "expirationTime": null,
            "keys": {"p256dh": p256dh, "auth": auth},
        }))
        .unwrap()
    }

    fn good_keys() -> (String, String) {
        let mut p = vec![4u8];
        p.extend([7u8; 64]);
        (
            URL_SAFE_NO_PAD.encode(&p),
            URL_SAFE_NO_PAD.encode([1u8; 16]),
        )
    }

    #[test]
    fn https_endpoints_with_good_keys_pass() {
        let (p, a) = good_keys();
        let s = body("https://push.example.net/wp/abc", &p, &a)
            .check(EndpointPolicy::default())
            .unwrap();
        assert_eq!(s.prefs, Prefs::default());
        assert_eq!(s.keys.auth, [1u8; 16]);
    }

    #[test]
    fn endpoints_a_user_could_abuse_are_refused() {
        let (p, a) = good_keys();
        let strict = EndpointPolicy::default();
        let loopback = EndpointPolicy {
            allow_http_loopback: true,
        };
        for bad in [
            "http://push.example.net/x",
            "http://127.0.0.1:9/x",
            "ftp://push.example.net/x",
            "/relative",
            "https://user:pw@push.example.net/x",
            "not a url",
        ] {
            assert!(body(bad, &p, &a).check(strict).is_err(), "{bad}");
        }
        assert!(body("http://10.0.0.1/x", &p, &a).check(loopback).is_err());
        assert!(body("http://127.0.0.1:9/x", &p, &a).check(loopback).is_ok());
        assert!(body("http://[::1]:9/x", &p, &a).check(loopback).is_ok());
        let long = format!("https://push.example.net/{}", "a".repeat(MAX_ENDPOINT_LEN));
        assert!(body(&long, &p, &a).check(strict).is_err());
    }

    #[test]
    fn bad_keys_say_which() {
        let (p, a) = good_keys();
        let e = body("https://p.example/x", "!!", &a)
            .check(EndpointPolicy::default())
            .unwrap_err();
        assert!(e.contains("p256dh"), "{e}");
        let e = body("https://p.example/x", &p, "AAAA")
            .check(EndpointPolicy::default())
            .unwrap_err();
        assert!(e.contains("auth"), "{e}");
    }

    #[test]
    fn prefs_default_to_approvals_only_and_refuse_unknown_fields() {
        let p: Prefs = serde_json::from_str(r#"{"turnFinished":true}"#).unwrap();
        assert_eq!(
            p,
            Prefs {
                approvals: true,
                turn_finished: true,
                errors: false
            }
        );
        assert!(serde_json::from_str::<Prefs>(r#"{"bogus":1}"#).is_err());
    }
}
