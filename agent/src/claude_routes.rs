//! The REST routes for watchers of Claude without a browser (the gateway's
//! inbox, the operator): `GET /claude/status?since=V&wait=S` answers at
//! once when the status is newer than `V`, else when it changes, else after
//! `S` seconds (at most [`MAX_WAIT`]) with the current one, so a watcher
//! never spins; `POST /claude/sessions/{id}/permissions/{requestId}`
//! answers one request (`ApprovalAnswer`), 204 or an `ApiError`.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dispatch_api::approvals::ApprovalAnswer;
use dispatch_api::rest::ApiError;
use dispatch_api::{ErrorCode, SessionId};
use serde::Deserialize;

use crate::agent::Agent;
use crate::claude::broker::Answer;
use crate::session::ClientError;

/// Longest a status request waits for a change.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
const DEFAULT_WAIT: Duration = Duration::from_secs(25);

#[derive(Deserialize)]
pub struct StatusQuery {
    since: Option<u64>,
    /// Seconds.
    wait: Option<u64>,
}

pub async fn status(State(state): State<Arc<Agent>>, Query(q): Query<StatusQuery>) -> Response {
    if let Some(since) = q.since {
        let wait = q
            .wait
            .map_or(DEFAULT_WAIT, Duration::from_secs)
            .min(MAX_WAIT);
        let mut rx = state.services.claude_changes.subscribe();
        let mut shutdown = state.shutdown.subscribe();
        tokio::select! {
            _ = tokio::time::timeout(wait, rx.wait_for(|v| *v > since)) => {}
            _ = shutdown.wait_for(|s| *s) => {}
        }
    }
    Json(state.claude_status()).into_response()
}

fn error(status: StatusCode, (code, message): ClientError) -> Response {
    (status, Json(ApiError { code, message })).into_response()
}

fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::NoSuchSession | ErrorCode::NoSuchRequest => StatusCode::NOT_FOUND,
        ErrorCode::SessionEnded => StatusCode::CONFLICT,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

pub async fn answer(
    State(state): State<Arc<Agent>>,
    Path((id, request_id)): Path<(String, String)>,
    body: Result<Json<ApprovalAnswer>, JsonRejection>,
) -> Response {
    let a = match body {
        Ok(Json(a)) => a,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                (
                    ErrorCode::BadMessage,
                    format!("bad answer: {}", e.body_text()),
                ),
            );
        }
    };
    if let Err(m) = a.check() {
        return error(StatusCode::BAD_REQUEST, (ErrorCode::InvalidField, m));
    }
    let id = match SessionId::new(&id) {
        Ok(id) => id,
        Err(_) => {
            return error(
                StatusCode::NOT_FOUND,
                (ErrorCode::NoSuchSession, format!("no session {id:?}")),
            );
        }
    };
    let answered = crate::claude::find(state.sessions.registry(), &id).and_then(|s| {
        s.answer(
            &request_id,
            Answer {
                allow: a.allow,
                updated_input: None,
                message: a.message,
                remember: a.remember,
            },
        )
    });
    match answered {
        Ok(()) => {
            tracing::info!(session = %id, request = %request_id, allow = a.allow, "permission request answered over REST");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => error(status_of(e.0), e),
    }
}
