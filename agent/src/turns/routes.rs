//! `/claude/{session}/turns...` (the token check is the router's).

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::recorder::Recorder;
use crate::files::error::FsError;
use crate::files::routes::{flag, query};

pub fn router<S: Clone + Send + Sync + 'static>(recorder: Arc<Recorder>) -> Router<S> {
    Router::new()
        .route("/claude/{session}/turns", get(list))
        .route("/claude/{session}/turns/{turn}/changes", get(changes))
        .route("/claude/{session}/turns/{turn}/undo", post(undo))
        .with_state(recorder)
}

fn session_id(s: &str) -> Result<&str, FsError> {
    if dispatch_api::session::is_valid_session_id(s) {
        Ok(s)
    } else {
        Err(FsError::bad_request(format!("{s:?} is not a session id")))
    }
}

async fn list(
    State(r): State<Arc<Recorder>>,
    Path(session): Path<String>,
) -> Result<Response, FsError> {
    let turns = r.turns(session_id(&session)?).await?;
    Ok(axum::Json(serde_json::json!({ "turns": turns })).into_response())
}

async fn changes(
    State(r): State<Arc<Recorder>>,
    Path((session, turn)): Path<(String, u32)>,
) -> Result<Response, FsError> {
    let c = r.changes(session_id(&session)?, turn).await?;
    Ok(axum::Json(c).into_response())
}

#[derive(Deserialize)]
struct UndoQuery {
    force: Option<String>,
}

async fn undo(
    State(r): State<Arc<Recorder>>,
    Path((session, turn)): Path<(String, u32)>,
    q: Result<Query<UndoQuery>, QueryRejection>,
) -> Result<Response, FsError> {
    let force = flag(&query(q)?.force);
    let done = r.undo(session_id(&session)?, turn, force).await?;
    Ok(axum::Json(done).into_response())
}
