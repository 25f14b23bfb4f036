//! The browser side of a proxied WebSocket: the upgrade request is checked
//! and taken apart first; once the agent side is open, the 101 answer goes
//! out and the relay starts. Any refusal before that is a plain HTTP error,
//! so no upgrade happens.

use axum::extract::Request;
use axum::http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::AgentConn;
use crate::metrics::Metrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeError {
    #[error("expected a WebSocket upgrade (version 13)")]
    NotWebSocket,
    #[error("this connection cannot be upgraded")]
    NotUpgradable,
}

/// A browser's WebSocket upgrade request, checked, not yet answered.
pub struct Upgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

/// What a running relay needs from the gateway.
pub struct RelayContext {
    pub metrics: Metrics,
    /// Cancelled when the gateway shuts down (the browser gets 1001).
    pub shutdown: CancellationToken,
    /// Where the relay runs, so that shutdown can wait for it.
    pub tasks: TaskTracker,
}

fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

impl Upgrade {
    /// Takes what the handshake needs out of `req`; refuses anything but a
    /// version 13 WebSocket upgrade on a connection that can be upgraded.
    pub fn take(req: &mut Request) -> Result<Self, UpgradeError> {
        let headers = req.headers();
        let key = match headers.get(SEC_WEBSOCKET_KEY) {
            Some(k)
                if req.method() == Method::GET
                    && has_token(headers, CONNECTION, "upgrade")
                    && has_token(headers, UPGRADE, "websocket")
                    && headers
                        .get(SEC_WEBSOCKET_VERSION)
                        .is_some_and(|v| v == "13") =>
            {
                k.clone()
            }
            _ => return Err(UpgradeError::NotWebSocket),
        };
        let on_upgrade = req
            .extensions_mut()
            .remove::<OnUpgrade>()
            .ok_or(UpgradeError::NotUpgradable)?;
        Ok(Upgrade { key, on_upgrade })
    }

    /// Answers 101 and relays between the browser and `agent` until either
    /// ends. `hold` is kept as long (the connection's place in its address's
    /// count); `label` names the connection in logs.
    pub fn accept(
        self,
        agent: AgentConn,
        ctx: RelayContext,
        hold: impl Send + 'static,
        label: String,
    ) -> Response {
        let accept = derive_accept_key(self.key.as_bytes());
        let on_upgrade = self.on_upgrade;
        let RelayContext {
            metrics,
            shutdown,
            tasks,
        } = ctx;
        tasks.spawn(async move {
            let _hold = hold;
            match on_upgrade.await {
                Ok(browser) => {
                    tracing::debug!(connection = %label, "websocket proxied");
                    super::run(browser, agent, metrics, shutdown).await;
                }
                Err(e) => tracing::debug!(connection = %label, "websocket upgrade failed: {e}"),
            }
        });
        let mut resp = StatusCode::SWITCHING_PROTOCOLS.into_response();
        let h = resp.headers_mut();
        h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(v) = HeaderValue::from_str(&accept) {
            h.insert(SEC_WEBSOCKET_ACCEPT, v);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn upgrade_request() -> axum::http::request::Builder {
        Request::get("/ws")
            .header(CONNECTION, "keep-alive, Upgrade")
            .header(UPGRADE, "websocket")
            .header(SEC_WEBSOCKET_VERSION, "13")
            .header(SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==")
    }

    #[test]
    fn only_version_13_websocket_upgrades_are_taken() {
        let mut plain = Request::get("/ws").body(Body::empty()).unwrap();
        assert_eq!(
            Upgrade::take(&mut plain).err(),
            Some(UpgradeError::NotWebSocket)
        );
        let mut old = upgrade_request().body(Body::empty()).unwrap();
        old.headers_mut()
            .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
        assert_eq!(
            Upgrade::take(&mut old).err(),
            Some(UpgradeError::NotWebSocket)
        );
        let mut post = upgrade_request()
            .method(Method::POST)
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            Upgrade::take(&mut post).err(),
            Some(UpgradeError::NotWebSocket)
        );
        // Right headers, but not on a connection hyper can upgrade.
        let mut detached = upgrade_request().body(Body::empty()).unwrap();
        assert_eq!(
            Upgrade::take(&mut detached).err(),
            Some(UpgradeError::NotUpgradable)
        );
    }
}
