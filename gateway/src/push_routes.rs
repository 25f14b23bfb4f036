//! `/api/push/...`: the VAPID public key, subscribing and unsubscribing a
//! browser, a test notification, and the notification buttons' answer.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode};
use dispatch_api::ErrorCode;
use serde::{Deserialize, Serialize};

use crate::auth::now_ms;
use crate::extract::{Caller, refuse_cross_site};
use crate::fail::{Fail, bad_json};
use crate::push::action_token::ActionTokenError;
use crate::push::message::PushEvent;
use crate::push::subscription::SubscribeBody;
use crate::push::{AnswerError, DeliveryReport, Push};
use crate::state::AppState;

fn push(st: &AppState) -> Result<&Arc<Push>, Fail> {
    st.push.as_ref().ok_or_else(|| {
        Fail::new(
            StatusCode::NOT_FOUND,
            ErrorCode::Unavailable,
            "push notifications are not configured on this gateway",
        )
    })
}

fn internal(e: String) -> Fail {
    tracing::error!("push: {e}");
    Fail::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, e)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VapidKey {
    public_key: String,
}

/// `GET /api/push/vapid-public-key`: the browser's `applicationServerKey`.
pub async fn vapid_public_key(
    State(st): State<AppState>,
    Caller(_): Caller,
) -> Result<Json<VapidKey>, Fail> {
    Ok(Json(VapidKey {
        public_key: push(&st)?.public_key(),
    }))
}

#[derive(Serialize)]
pub struct Subscribed {
    /// This user's oldest subscriptions dropped to stay within the bound.
    dropped: usize,
}

/// `POST /api/push/subscriptions`: `PushSubscription.toJSON()` plus
/// `prefs`; adds the browser or updates its prefs. 201.
pub async fn subscribe(
    State(st): State<AppState>,
    Caller(p): Caller,
    body: Result<Json<SubscribeBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Subscribed>), Fail> {
    let push = push(&st)?;
    let Json(body) = body.map_err(bad_json)?;
    let sub = body
        .check(push.policy())
        .map_err(|e| Fail::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidField, e))?;
    let dropped = push
        .store()
        .upsert(&p.user, sub, now_ms())
        .await
        .map_err(internal)?;
    tracing::info!(user = %p.user, dropped, "push subscription saved");
    Ok((StatusCode::CREATED, Json(Subscribed { dropped })))
}

#[derive(Deserialize)]
pub struct Unsubscribe {
    endpoint: String,
}

/// `DELETE /api/push/subscriptions {endpoint}`: 204, or 404 when the
/// caller has no such subscription.
pub async fn unsubscribe(
    State(st): State<AppState>,
    Caller(p): Caller,
    body: Result<Json<Unsubscribe>, JsonRejection>,
) -> Result<StatusCode, Fail> {
    let push = push(&st)?;
    let Json(body) = body.map_err(bad_json)?;
    if push
        .store()
        .remove(&p.user, &body.endpoint)
        .await
        .map_err(internal)?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Fail::new(
            StatusCode::NOT_FOUND,
            ErrorCode::InvalidField,
            "no such subscription",
        ))
    }
}

#[derive(Serialize)]
pub struct Sent {
    deliveries: Vec<DeliveryReport>,
}

/// `POST /api/push/test`: a test notification to each of the caller's
/// browsers; says how each delivery went.
pub async fn test(State(st): State<AppState>, Caller(p): Caller) -> Result<Json<Sent>, Fail> {
    let push = push(&st)?;
    let deliveries = push.notify(&PushEvent::Test { user: p.user }).await;
    Ok(Json(Sent { deliveries }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    token: String,
    /// `allow` or `deny`.
    action: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Answered {
    workspace: String,
    session: String,
    request_id: String,
    allow: bool,
}

/// `POST /api/push/action {token, action}`: a notification's Allow or Deny.
/// The token alone authorises it (the service worker may run with no page
/// open); it answers only its own request, once.
pub async fn action(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<ActionBody>, JsonRejection>,
) -> Result<Json<Answered>, Fail> {
    refuse_cross_site(&headers, "notification action")?;
    let push = push(&st)?;
    let Json(body) = body.map_err(bad_json)?;
    let allow = match body.action.as_str() {
        "allow" => true,
        "deny" => false,
        _ => {
            return Err(Fail::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidField,
                "action must be allow or deny",
            ));
        }
    };
    let claims = push
        .tokens()
        .spend(&body.token, now_ms())
        .map_err(|e| match e {
            ActionTokenError::Expired | ActionTokenError::Spent => {
                Fail::new(StatusCode::GONE, ErrorCode::Unauthorized, e.to_string())
            }
            ActionTokenError::Malformed | ActionTokenError::BadSignature => {
                Fail::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, e.to_string())
            }
        })?;
    // A user removed since the token was issued loses its power too.
    if !st.auth.keys().has_user(&claims.user) {
        return Err(Fail::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "unknown user",
        ));
    }
    let Some(answerer) = push.answerer() else {
        push.tokens().unspend(&claims);
        return Err(Fail::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "answering from a notification is not available on this gateway",
        ));
    };
    let reason = (!allow).then(|| "denied from a notification".to_owned());
    match answerer
        .answer(
            &claims.user,
            &claims.workspace,
            &claims.session,
            &claims.request_id,
            allow,
            reason,
        )
        .await
    {
        Ok(()) => {
            tracing::info!(user = %claims.user, workspace = %claims.workspace,
                request = %claims.request_id, allow, "answered from a notification");
            Ok(Json(Answered {
                workspace: claims.workspace,
                session: claims.session,
                request_id: claims.request_id,
                allow,
            }))
        }
        Err(AnswerError::NotPending) => Err(Fail::new(
            StatusCode::GONE,
            ErrorCode::NoSuchRequest,
            AnswerError::NotPending.to_string(),
        )),
        Err(e @ AnswerError::Unavailable(_)) => {
            // Not answered: the button may be pressed again.
            push.tokens().unspend(&claims);
            Err(Fail::new(
                StatusCode::BAD_GATEWAY,
                ErrorCode::Unavailable,
                e.to_string(),
            ))
        }
    }
}
