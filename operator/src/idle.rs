//! Idleness: ask the agent what is going on (`GET /activity` with its token)
//! and decide whether to suspend now or how long to wait before asking again.

use std::time::Duration;

use dispatch_api::rest::Activity;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Longest agent body read (`/activity` is under 200 bytes; `/claude/status`
/// lists at most 100 requests, whose inputs may be long).
const MAX_BODY: usize = 4 << 20;

/// What to do about an idle-timed workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Idle for the whole timeout: suspend it.
    Suspend,
    /// In use or not idle long enough: look again after this long.
    CheckAgainIn(Duration),
}

/// Decides from the agent's activity. Times are Unix milliseconds.
/// `since` is when the agent could first have been used (its Pod became
/// ready); idleness never counts from before it.
pub fn decide(
    activity: &Activity,
    since_ms: i64,
    now_ms: i64,
    timeout: Duration,
) -> (Verdict, i64) {
    let busy = activity.attached_clients > 0 || activity.claude_turn_running;
    let last = if busy {
        now_ms
    } else {
        activity
            .last_activity
            .unwrap_or(since_ms)
            .max(since_ms)
            .min(now_ms)
    };
    let idle = Duration::from_millis(u64::try_from(now_ms - last).unwrap_or(0));
    let verdict = if idle >= timeout {
        Verdict::Suspend
    } else {
        // A busy workspace is asked again after a full timeout, since it can
        // only become idle from now on.
        Verdict::CheckAgainIn(timeout - idle)
    };
    (verdict, last)
}

/// HTTP client for agents (plain HTTP inside the cluster; loopback in tests).
#[derive(Clone)]
pub struct ActivityClient {
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Default for ActivityClient {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ActivityError {
    #[error("bad endpoint {0:?}")]
    Endpoint(String),
    #[error("agent unreachable: {0}")]
    Unreachable(String),
    #[error("agent answered HTTP {0}")]
    Status(u16),
    #[error("agent's /activity is not understood: {0}")]
    Body(String),
    #[error("agent did not answer in time")]
    Timeout,
}

impl ActivityClient {
    /// `GET <endpoint>/activity` with the bearer token.
    pub async fn fetch(&self, endpoint: &str, token: &str) -> Result<Activity, ActivityError> {
        self.get_json(endpoint, token, "/activity", Duration::from_secs(5))
            .await
    }

    /// `GET <endpoint><path>` with the bearer token: its JSON body, within `timeout`.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: &str,
        token: &str,
        path: &str,
        timeout: Duration,
    ) -> Result<T, ActivityError> {
        let uri: hyper::Uri = format!("{}{path}", endpoint.trim_end_matches('/'))
            .parse()
            .map_err(|_| ActivityError::Endpoint(endpoint.into()))?;
        let req = hyper::Request::get(uri)
            .header(hyper::header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Empty::new())
            .map_err(|_| ActivityError::Endpoint(endpoint.into()))?;
        let call = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| ActivityError::Unreachable(e.to_string()))?;
            if !resp.status().is_success() {
                return Err(ActivityError::Status(resp.status().as_u16()));
            }
            let body = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| ActivityError::Body(e.to_string()))?
                .to_bytes();
            serde_json::from_slice(&body).map_err(|e| ActivityError::Body(e.to_string()))
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| ActivityError::Timeout)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn act(clients: u32, turn: bool, last: Option<i64>) -> Activity {
        Activity {
            attached_clients: clients,
            running_sessions: 1,
            claude_turn_running: turn,
            last_activity: last,
        }
    }

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn attached_client_or_claude_turn_is_never_idle() {
        assert_eq!(
            decide(&act(1, false, Some(0)), 0, 1_000_000, MIN),
            (Verdict::CheckAgainIn(MIN), 1_000_000)
        );
        assert_eq!(
            decide(&act(0, true, None), 0, 1_000_000, MIN).0,
            Verdict::CheckAgainIn(MIN)
        );
    }

    #[test]
    fn waits_for_the_time_left_then_suspends() {
        // Last output 20 s ago: ask again in 40 s.
        assert_eq!(
            decide(&act(0, false, Some(80_000)), 0, 100_000, MIN).0,
            Verdict::CheckAgainIn(Duration::from_secs(40))
        );
        assert_eq!(
            decide(&act(0, false, Some(40_000)), 0, 100_000, MIN).0,
            Verdict::Suspend
        );
    }

    #[test]
    fn idleness_counts_from_the_pod_start_at_the_earliest() {
        // Never used, pod ready 10 s ago: 50 s left.
        assert_eq!(
            decide(&act(0, false, None), 90_000, 100_000, MIN).0,
            Verdict::CheckAgainIn(Duration::from_secs(50))
        );
        // Old activity from before a resume does not count.
        assert_eq!(
            decide(&act(0, false, Some(1)), 90_000, 100_000, MIN).0,
            Verdict::CheckAgainIn(Duration::from_secs(50))
        );
    }

    #[test]
    fn clock_skew_into_the_future_is_clamped() {
        assert_eq!(
            decide(&act(0, false, Some(500_000)), 0, 100_000, MIN),
            (Verdict::CheckAgainIn(MIN), 100_000)
        );
    }
}
