//! Web Push: the gateway tells a user's subscribed browsers when Claude
//! needs them (with Allow / Deny that answer from the notification), and,
//! opted in per browser, when a turn finished or an error happened.
//!
//! `vapid` signs, `ece` encrypts, `deliver` sends, `store` keeps the
//! subscriptions, `action_token` authorises the buttons, `message` says
//! what a notification shows; `push_routes` is the HTTP API.

pub mod action_token;
pub mod bridge;
pub mod deliver;
pub mod ece;
pub mod message;
pub mod store;
pub mod subscription;
pub mod vapid;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Bytes;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::auth::now_ms;
use action_token::ActionTokens;
use deliver::{HttpsClient, Options, Verdict};
use message::{Payload, PushEvent};
use store::SubscriptionStore;
use subscription::{EndpointPolicy, check_endpoint};
use vapid::Vapid;

/// Deliveries in flight at once, over all users.
const MAX_INFLIGHT: usize = 64;

/// Answers one permission request (the approvals module provides it).
#[async_trait]
pub trait Answerer: Send + Sync {
    async fn answer(
        &self,
        user: &str,
        workspace: &str,
        session: &str,
        request_id: &str,
        allow: bool,
        reason: Option<String>,
    ) -> Result<(), AnswerError>;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// Answered already, withdrawn, or timed out.
    #[error("that request is no longer pending")]
    NotPending,
    #[error("{0}")]
    Unavailable(String),
}

pub struct PushSettings {
    pub policy: EndpointPolicy,
    /// Longest life of an action token (shorter when the request is denied sooner).
    pub action_ttl: Duration,
}

pub struct Push {
    vapid: Vapid,
    store: SubscriptionStore,
    client: HttpsClient,
    tokens: ActionTokens,
    settings: PushSettings,
    inflight: Arc<Semaphore>,
    answerer: OnceLock<Arc<dyn Answerer>>,
}

impl std::fmt::Debug for Push {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Push").field("vapid", &self.vapid).finish()
    }
}

/// How one delivery went (the test route reports these).
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryReport {
    pub endpoint: String,
    /// delivered, gone, retry, refused.
    pub result: &'static str,
}

impl Push {
    pub fn new(
        vapid: Vapid,
        store: SubscriptionStore,
        signing_key: &[u8],
        settings: PushSettings,
    ) -> Self {
        Push {
            vapid,
            store,
            client: deliver::client(),
            tokens: ActionTokens::new(signing_key),
            settings,
            inflight: Arc::new(Semaphore::new(MAX_INFLIGHT)),
            answerer: OnceLock::new(),
        }
    }

    pub fn set_answerer(&self, a: Arc<dyn Answerer>) {
        let _ = self.answerer.set(a);
    }

    pub fn public_key(&self) -> String {
        self.vapid.public_key_b64()
    }

    pub fn store(&self) -> &SubscriptionStore {
        &self.store
    }

    pub fn policy(&self) -> EndpointPolicy {
        self.settings.policy
    }

    pub fn tokens(&self) -> &ActionTokens {
        &self.tokens
    }

    pub fn answerer(&self) -> Option<&Arc<dyn Answerer>> {
        self.answerer.get()
    }

    /// Sends `ev` to each of its user's browsers that wants it; waits for
    /// every delivery (bounded by the attempts' timeouts and retries).
    pub async fn notify(&self, ev: &PushEvent) -> Vec<DeliveryReport> {
        let subs = match self.store.list(ev.user()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("push: reading subscriptions: {e}");
                return vec![];
            }
        };
        let now = now_ms();
        let token = match ev {
            PushEvent::ApprovalNeeded {
                user,
                workspace,
                session,
                request_id,
                auto_deny_at,
                ..
            } => {
                let ttl_end = now + self.settings.action_ttl.as_millis() as i64;
                let expires = auto_deny_at.map_or(ttl_end, |at| at.min(ttl_end));
                Some(
                    self.tokens
                        .issue(user, workspace, session, request_id, expires),
                )
            }
            _ => None,
        };
        let ttl_secs = match ev {
            PushEvent::ApprovalNeeded { .. } | PushEvent::Reminder { .. } => {
                self.settings.action_ttl.as_secs()
            }
            _ => 3600,
        };
        let plaintext = Payload::build(ev, token, now).to_bytes();
        let opts = Options {
            ttl_secs,
            urgent: ev.urgent(),
        };
        let sends = subs
            .into_iter()
            .filter(|s| ev.wanted_by(&s.prefs))
            .map(|s| self.deliver_one(s, &plaintext, opts));
        futures_util::future::join_all(sends).await
    }

    /// `notify` in the background.
    pub fn spawn_notify(self: &Arc<Self>, ev: PushEvent) {
        let me = self.clone();
        tokio::spawn(async move {
            me.notify(&ev).await;
        });
    }

    async fn deliver_one(
        &self,
        sub: subscription::Subscription,
        plaintext: &[u8],
        opts: Options,
    ) -> DeliveryReport {
        let report = |result| DeliveryReport {
            endpoint: sub.endpoint.clone(),
            result,
        };
        // Checked again: the policy may have been narrowed since it was stored.
        let uri = match check_endpoint(&sub.endpoint, self.settings.policy) {
            Ok(u) => u,
            Err(e) => {
                tracing::info!(endpoint = %sub.endpoint, "push: skipping endpoint: {e}");
                return report("refused");
            }
        };
        let Some(audience) = vapid::audience(&uri) else {
            return report("refused");
        };
        let body = match ece::encrypt(plaintext, &sub.keys) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                tracing::warn!(endpoint = %sub.endpoint, "push: encrypting: {e}");
                return report("refused");
            }
        };
        let Ok(_permit) = self.inflight.acquire().await else {
            return report("refused");
        };
        let auth = || self.vapid.authorization(&audience, now_ms() / 1000).ok();
        let verdict = deliver::send(&self.client, &uri, auth, body, opts).await;
        match verdict {
            Verdict::Delivered => report("delivered"),
            Verdict::Gone => {
                tracing::info!(endpoint = %sub.endpoint, "push: subscription gone, forgetting it");
                if let Err(e) = self.store.forget(&sub.endpoint).await {
                    tracing::warn!("push: forgetting a subscription: {e}");
                }
                report("gone")
            }
            Verdict::Retry(_) => report("retry"),
            Verdict::Refused => report("refused"),
        }
    }
}
