//! HTTP handlers of `/files/...` (the token check is the router's).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use dispatch_api::files::MoveRequest;
use serde::Deserialize;

use super::Files;
use super::content::{self, Preconditions};
use super::error::FsError;
use super::relpath::RelPath;
use super::{archive, list, ops};

pub fn router<S: Clone + Send + Sync + 'static>(files: Arc<Files>) -> Router<S> {
    Router::new()
        .route("/files/list", get(list_dir))
        .route("/files/content", get(read).put(write))
        .route("/files/mkdir", post(mkdir))
        .route("/files/move", post(rename))
        .route("/files", delete(remove))
        .route("/files/archive", get(download_dir))
        .with_state(files)
}

#[derive(Deserialize)]
pub struct PathQuery {
    #[serde(default)]
    path: String,
    #[serde(default)]
    download: Option<String>,
    #[serde(default)]
    recursive: Option<String>,
}

impl PathQuery {
    fn rel(&self) -> Result<RelPath, FsError> {
        Ok(RelPath::parse(&self.path)?)
    }
}

/// `1` or `true`.
pub fn flag(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("1" | "true"))
}

pub fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, FsError> {
    q.map(|Query(t)| t)
        .map_err(|e| FsError::bad_request(e.body_text()))
}

pub fn json<T>(j: Result<axum::Json<T>, JsonRejection>) -> Result<T, FsError> {
    j.map(|axum::Json(t)| t)
        .map_err(|e| FsError::bad_request(e.body_text()))
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, FsError> + Send + 'static,
) -> Result<T, FsError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| FsError::internal(format!("file task: {e}")))?
}

async fn list_dir(
    State(files): State<Arc<Files>>,
    q: Result<Query<PathQuery>, QueryRejection>,
) -> Result<Response, FsError> {
    let rel = query(q)?.rel()?;
    let limit = files.limits.max_list_entries as usize;
    let listing = blocking(move || list::list(&files.root, &rel, limit)).await?;
    Ok(axum::Json(listing).into_response())
}

async fn read(
    State(files): State<Arc<Files>>,
    q: Result<Query<PathQuery>, QueryRejection>,
) -> Result<Response, FsError> {
    let q = query(q)?;
    content::read(&files.root, &q.rel()?, flag(&q.download)).await
}

async fn write(
    State(files): State<Arc<Files>>,
    q: Result<Query<PathQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let rel = match query(q).and_then(|q| q.rel()) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let pre = match Preconditions::from_headers(&headers) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let max = files.limits.max_upload_bytes;
    match content::write(&files.root, &rel, pre, declared, max, body).await {
        Ok(v) => {
            tracing::info!(path = %rel, size = v.size, "file written");
            (
                StatusCode::OK,
                [(header::ETAG, v.etag.clone())],
                axum::Json(v),
            )
                .into_response()
        }
        Err(e) if e.status == StatusCode::PRECONDITION_FAILED => {
            content::conflict_response(e, &files.root, &rel)
        }
        Err(e) => e.into_response(),
    }
}

async fn mkdir(
    State(files): State<Arc<Files>>,
    q: Result<Query<PathQuery>, QueryRejection>,
) -> Result<StatusCode, FsError> {
    let rel = query(q)?.rel()?;
    blocking(move || ops::mkdir(&files.root, &rel)).await?;
    Ok(StatusCode::CREATED)
}

async fn rename(
    State(files): State<Arc<Files>>,
    j: Result<axum::Json<MoveRequest>, JsonRejection>,
) -> Result<StatusCode, FsError> {
    let m = json(j)?;
    let (from, to) = (RelPath::parse(&m.from)?, RelPath::parse(&m.to)?);
    blocking(move || ops::rename(&files.root, &from, &to)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove(
    State(files): State<Arc<Files>>,
    q: Result<Query<PathQuery>, QueryRejection>,
) -> Result<StatusCode, FsError> {
    let q = query(q)?;
    let (rel, recursive) = (q.rel()?, flag(&q.recursive));
    blocking(move || ops::delete(&files.root, &rel, recursive)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn download_dir(
    State(files): State<Arc<Files>>,
    q: Result<Query<PathQuery>, QueryRejection>,
) -> Result<Response, FsError> {
    let rel = query(q)?.rel()?;
    let rx = archive::archive(&files.root, &rel)?;
    let name = format!("{}.tar", rel.file_name());
    let body = Body::from_stream(tokio_stream(rx));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/x-tar"),
            ),
            (header::CONTENT_DISPOSITION, content::attachment(&name)),
        ],
        body,
    )
        .into_response())
}

fn tokio_stream<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
