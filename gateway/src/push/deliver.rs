//! Sends one encrypted message to one push endpoint: the HTTP request
//! (RFC 8030 with VAPID and aes128gcm), a timeout per attempt, a bounded
//! number of retries for what may pass (5xx, 429, network), and the verdict
//! that a subscription is gone (404, 410).

use std::time::Duration;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// How long one attempt (connect, send, response head) may take.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts per message, the first included.
pub const MAX_ATTEMPTS: u32 = 3;
/// Longest wait a push service's Retry-After is followed for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// What the push service's answer means for the subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// The subscription expired or was withdrawn: forget it.
    Gone,
    /// May pass later: try again after this long (if attempts are left).
    Retry(Duration),
    /// Will not pass as sent (bad request, too large, bad VAPID): log it.
    Refused,
}

/// The pure half: what a status (and Retry-After) means on attempt `attempt`
/// (1-based).
pub fn judge(status: StatusCode, retry_after: Option<&str>, attempt: u32) -> Verdict {
    match status.as_u16() {
        200..=299 => Verdict::Delivered,
        404 | 410 => Verdict::Gone,
        429 | 500..=599 => {
            let backoff = Duration::from_millis(500 * 4u64.pow(attempt.saturating_sub(1)));
            let asked = retry_after
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            Verdict::Retry(asked.unwrap_or(backoff).min(MAX_RETRY_AFTER))
        }
        _ => Verdict::Refused,
    }
}

/// Push message headers beyond the body's.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Seconds the push service keeps the message for an offline browser.
    pub ttl_secs: u64,
    /// `high` for an approval that blocks a session, `normal` otherwise.
    pub urgent: bool,
}

pub type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The client for push services: the system's roots (an empty store, so
/// every https push fails with a clear error, when it has none).
pub fn client() -> HttpsClient {
    let builder = match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!("no system TLS roots ({e}): Web Push to https endpoints will fail");
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
                rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            )
        }
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(ATTEMPT_TIMEOUT));
    let connector = builder.https_or_http().enable_http1().wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector)
}

/// One attempt; `Err` for a network failure or a timeout.
async fn attempt(
    client: &HttpsClient,
    endpoint: &Uri,
    authorization: &str,
    body: Bytes,
    opts: Options,
) -> Result<(StatusCode, Option<String>), String> {
    let req = Request::post(endpoint.clone())
        .header(AUTHORIZATION, authorization)
        .header(CONTENT_ENCODING, "aes128gcm")
        .header(CONTENT_TYPE, "application/octet-stream")
        .header("ttl", opts.ttl_secs.to_string())
        .header("urgency", if opts.urgent { "high" } else { "normal" })
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(ATTEMPT_TIMEOUT, client.request(req))
        .await
        .map_err(|_| format!("no answer within {ATTEMPT_TIMEOUT:?}"))?
        .map_err(|e| format!("{e:?}"))?;
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // Drain a little of the body so the connection can be reused; bounded.
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        http_body_util::Limited::new(resp.into_body(), 16 << 10).collect(),
    )
    .await;
    Ok((status, retry_after))
}

/// Sends until delivered, gone, refused or out of attempts; the verdict.
/// `authorization` is computed per attempt (a JWT's clock starts at each).
pub async fn send(
    client: &HttpsClient,
    endpoint: &Uri,
    authorization: impl Fn() -> Option<String>,
    body: Bytes,
    opts: Options,
) -> Verdict {
    let mut last = Verdict::Refused;
    for n in 1..=MAX_ATTEMPTS {
        let Some(auth) = authorization() else {
            return Verdict::Refused;
        };
        let verdict = match attempt(client, endpoint, &auth, body.clone(), opts).await {
            Ok((status, retry_after)) => {
                let v = judge(status, retry_after.as_deref(), n);
                if !matches!(v, Verdict::Delivered) {
                    tracing::info!(%endpoint, %status, attempt = n, "push service answered {v:?}");
                }
                v
            }
            Err(e) => {
                tracing::info!(%endpoint, attempt = n, "push delivery failed: {e}");
                judge(StatusCode::SERVICE_UNAVAILABLE, None, n)
            }
        };
        match verdict {
            Verdict::Retry(wait) if n < MAX_ATTEMPTS => {
                last = verdict;
                tokio::time::sleep(wait).await;
            }
            v => return v,
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_mean_what_rfc_8030_says() {
        let s = StatusCode::from_u16;
        assert_eq!(judge(s(201).unwrap(), None, 1), Verdict::Delivered);
        assert_eq!(judge(s(404).unwrap(), None, 1), Verdict::Gone);
        assert_eq!(judge(s(410).unwrap(), None, 1), Verdict::Gone);
        assert_eq!(judge(s(413).unwrap(), None, 1), Verdict::Refused);
        assert_eq!(judge(s(403).unwrap(), None, 1), Verdict::Refused);
        assert_eq!(
            judge(s(503).unwrap(), None, 1),
            Verdict::Retry(Duration::from_millis(500))
        );
        assert_eq!(
            judge(s(500).unwrap(), None, 2),
            Verdict::Retry(Duration::from_secs(2))
        );
        assert_eq!(
            judge(s(429).unwrap(), Some("3"), 1),
            Verdict::Retry(Duration::from_secs(3))
        );
        // A push service cannot park the sender for an hour.
        assert_eq!(
            judge(s(429).unwrap(), Some("3600"), 1),
            Verdict::Retry(MAX_RETRY_AFTER)
        );
    }
}
