//! The inbox for browsers and scripts, authorised like the terminal (a user
//! sees and answers only the requests of their own workspaces):
//!
//! - `GET /api/approvals`: [`Inbox`], the caller's running workspaces with
//!   Claude's state and pending requests;
//! - `GET /api/approvals/events`: server-sent events, an `inbox` event with
//!   the whole inbox at once and again after every change (and a comment
//!   every 20 s so proxies keep the stream open);
//! - `POST /api/approvals/{workspace}/{session}/{requestId}`
//!   [`ApprovalAnswer`] -> 204; 404 `no_such_request` when it no longer
//!   waits (the first answer wins), 400 for a bad answer.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use dispatch_api::approvals::{ApprovalAnswer, Inbox};
use dispatch_api::{ErrorCode, SessionId};
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;

use crate::approvals::AnswerError;
use crate::extract::{Caller, workspace_name};
use crate::fail::{Fail, bad_json};
use crate::state::AppState;

const KEEP_ALIVE: Duration = Duration::from_secs(20);

pub async fn inbox(State(st): State<AppState>, Caller(p): Caller) -> Json<Inbox> {
    Json(st.approvals.inbox(&p.user))
}

fn inbox_event(inbox: &Inbox) -> Event {
    Event::default()
        .event("inbox")
        .json_data(inbox)
        .unwrap_or_else(|_| Event::default().comment("unserialisable inbox"))
}

pub async fn events(
    State(st): State<AppState>,
    Caller(p): Caller,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = st.approvals.subscribe();
    let first = inbox_event(&st.approvals.inbox(&p.user));
    let shutdown = st.shutdown.clone();
    let state = (Some(first), rx, st, p.user);
    let stream = futures_util::stream::unfold(state, move |(first, mut rx, st, user)| {
        let shutdown = shutdown.clone();
        async move {
            if let Some(ev) = first {
                return Some((Ok(ev), (None, rx, st, user)));
            }
            loop {
                let got = tokio::select! {
                    r = rx.recv() => r,
                    () = shutdown.cancelled() => return None,
                };
                match got {
                    Ok(e) if e.owner() != user => continue,
                    // Lagging: what was missed is in the inbox anyway.
                    Ok(_) | Err(RecvError::Lagged(_)) => {
                        let ev = inbox_event(&st.approvals.inbox(&user));
                        return Some((Ok(ev), (None, rx, st, user)));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

pub async fn answer(
    State(st): State<AppState>,
    Caller(p): Caller,
    Path((workspace, session, request_id)): Path<(String, String, String)>,
    body: Result<Json<ApprovalAnswer>, JsonRejection>,
) -> Result<StatusCode, Fail> {
    let Json(a) = body.map_err(bad_json)?;
    let workspace = workspace_name(&workspace)?;
    let no_such = |what: String| Fail::new(StatusCode::NOT_FOUND, ErrorCode::NoSuchRequest, what);
    let session =
        SessionId::new(&session).map_err(|_| no_such(format!("no Claude session {session:?}")))?;
    st.approvals
        .answer(&p.user, workspace.as_str(), &session, &request_id, &a)
        .await
        .map_err(|e| match e {
            AnswerError::NoSuchRequest(m) => no_such(m),
            AnswerError::Invalid(m) => {
                Fail::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidField, m)
            }
            AnswerError::Unavailable(m) => {
                Fail::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, m)
            }
        })?;
    Ok(StatusCode::NO_CONTENT)
}
