//! HTTP handlers of `/git/...` (the token check is the router's).

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use dispatch_api::files::{GitCheckout, GitCommitDone, GitCommitRequest, GitPaths};
use serde::Deserialize;

use super::ops;
use super::run::Git;
use crate::files::error::FsError;
use crate::files::relpath::RelPath;
use crate::files::routes::{flag, json, query};

pub fn router<S: Clone + Send + Sync + 'static>(git: Arc<Git>) -> Router<S> {
    Router::new()
        .route("/git/status", get(status))
        .route("/git/init", post(init))
        .route("/git/diff", get(diff))
        .route("/git/stage", post(stage))
        .route("/git/unstage", post(unstage))
        .route("/git/commit", post(commit))
        .route("/git/branches", get(branches))
        .route("/git/checkout", post(checkout))
        .route("/git/log", get(log))
        .route("/git/show", get(show))
        .with_state(git)
}

/// A diff as text; `X-Dispatch-Truncated: 1` when it was cut at the bound.
fn text(body: Vec<u8>, truncated: bool) -> Response {
    let mut resp = ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response();
    if truncated {
        resp.headers_mut().insert(
            "x-dispatch-truncated",
            header::HeaderValue::from_static("1"),
        );
    }
    resp
}

async fn status(State(git): State<Arc<Git>>) -> Result<Response, FsError> {
    Ok(axum::Json(ops::status(&git).await?).into_response())
}

async fn init(State(git): State<Arc<Git>>) -> Result<StatusCode, FsError> {
    ops::init(&git).await?;
    tracing::info!("git repository made");
    Ok(StatusCode::CREATED)
}

#[derive(Deserialize)]
struct DiffQuery {
    staged: Option<String>,
    path: Option<String>,
}

async fn diff(
    State(git): State<Arc<Git>>,
    q: Result<Query<DiffQuery>, QueryRejection>,
) -> Result<Response, FsError> {
    let q = query(q)?;
    let path = q.path.as_deref().map(RelPath::parse).transpose()?;
    let (body, truncated) = ops::diff(&git, flag(&q.staged), path.as_ref()).await?;
    Ok(text(body, truncated))
}

async fn stage(
    State(git): State<Arc<Git>>,
    j: Result<axum::Json<GitPaths>, JsonRejection>,
) -> Result<StatusCode, FsError> {
    ops::stage(&git, &json(j)?.paths).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn unstage(
    State(git): State<Arc<Git>>,
    j: Result<axum::Json<GitPaths>, JsonRejection>,
) -> Result<StatusCode, FsError> {
    ops::unstage(&git, &json(j)?.paths).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn commit(
    State(git): State<Arc<Git>>,
    j: Result<axum::Json<GitCommitRequest>, JsonRejection>,
) -> Result<Response, FsError> {
    let sha = ops::commit(&git, &json(j)?.message).await?;
    tracing::info!(commit = %sha, "committed");
    Ok((
        StatusCode::CREATED,
        axum::Json(GitCommitDone { commit: sha }),
    )
        .into_response())
}

async fn branches(State(git): State<Arc<Git>>) -> Result<Response, FsError> {
    Ok(axum::Json(ops::branches(&git).await?).into_response())
}

async fn checkout(
    State(git): State<Arc<Git>>,
    j: Result<axum::Json<GitCheckout>, JsonRejection>,
) -> Result<StatusCode, FsError> {
    ops::checkout(&git, &json(j)?.branch).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct LogQuery {
    limit: Option<usize>,
}

async fn log(
    State(git): State<Arc<Git>>,
    q: Result<Query<LogQuery>, QueryRejection>,
) -> Result<Response, FsError> {
    let limit = query(q)?.limit.unwrap_or(50);
    Ok(axum::Json(ops::log(&git, limit).await?).into_response())
}

#[derive(Deserialize)]
struct ShowQuery {
    sha: String,
}

async fn show(
    State(git): State<Arc<Git>>,
    q: Result<Query<ShowQuery>, QueryRejection>,
) -> Result<Response, FsError> {
    let (body, truncated) = ops::show(&git, &query(q)?.sha).await?;
    Ok(text(body, truncated))
}
