//! HTTP routes. Everything but /healthz, /readyz and /metrics needs the
//! workspace token as a bearer; without it the answer is 401 and nothing else
//! happens.

use std::sync::Arc;

use axum::extract::{Request, State, WebSocketUpgrade};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use dispatch_api::ErrorCode;
use dispatch_api::rest::ApiError;

use crate::agent::Agent;

pub fn router(state: Arc<Agent>) -> Router {
    let protected = Router::new()
        .route("/ws", get(ws_upgrade))
        .route("/sessions", get(sessions))
        .route("/activity", get(activity))
        .merge(crate::git::routes::router(state.git.clone()))
        .merge(crate::files::routes::router(state.files.clone()))
        .merge(crate::turns::routes::router(state.turns.clone()))
        .route("/claude/status", get(crate::claude_routes::status))
        .route(
            "/claude/sessions/{id}/permissions/{request_id}",
            axum::routing::post(crate::claude_routes::answer),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .merge(protected)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn require_token(State(state): State<Arc<Agent>>, req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if !state.token.accepts_header(header) {
        state.services.metrics.error(ErrorCode::Unauthorized);
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(ApiError {
                code: ErrorCode::Unauthorized,
                message: "missing or wrong bearer token".into(),
            }),
        )
            .into_response();
    }
    next.run(req).await
}

async fn ws_upgrade(State(state): State<Arc<Agent>>, ws: WebSocketUpgrade) -> Response {
    // Messages over `max_frame_bytes` get a `too_large` reply and the
    // connection carries on; the transport limit is higher so that they can be
    // read at all, and bounds what one message can cost.
    let hard = (state.config.max_frame_bytes as usize)
        .saturating_mul(4)
        .max(4 << 20);
    // A slot is taken before the upgrade, so that a burst of connections
    // cannot all pass the check; over the limit the client still gets a
    // WebSocket, carrying the reason (browsers never see a refused upgrade's
    // status), and it is closed.
    let slot = state.connection_slots.clone().try_acquire_owned();
    ws.max_message_size(hard)
        .max_frame_size(hard)
        .read_buffer_size(crate::ws::READ_BUFFER_BYTES)
        .on_upgrade(move |socket| async move {
            match slot {
                Ok(slot) => crate::ws::serve(socket, state, slot).await,
                Err(_) => crate::ws::refuse_over_limit(socket, state).await,
            }
        })
}

async fn sessions(State(state): State<Arc<Agent>>) -> Response {
    Json(state.sessions.infos()).into_response()
}

async fn activity(State(state): State<Arc<Agent>>) -> Response {
    Json(state.activity()).into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Arc<Agent>>) -> Response {
    let shutting_down = *state.shutdown.borrow();
    let body = serde_json::json!({
        "ready": !shutting_down,
        "workspace": state.name,
        "claude": state.claude.readiness(),
    });
    let status = if shutting_down {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, Json(body)).into_response()
}

async fn metrics(State(state): State<Arc<Agent>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.services.metrics.encode(),
    )
        .into_response()
}
