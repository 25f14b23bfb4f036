//! `/api/workspaces/{name}/files/...`, `.../git/...` and
//! `.../claude/{session}/turns...`: the request goes to
//! the workspace's agent at the same path without the prefix, with the
//! agent's token instead of the caller's credentials, and the answer comes
//! back; bodies stream both ways (a 1 GiB upload or download is never held
//! here). Who may call is decided as for the terminal: the caller must be
//! authenticated (cookie or bearer key), cookie writes must be same-site,
//! and the workspace must be the caller's (else 404, as for a missing one).
//! Both backends give an endpoint the same way, so both are served here.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dispatch_api::ErrorCode;
use hyper_util::rt::TokioIo;

use crate::backend::AgentEndpoint;
use crate::extract::{Caller, workspace_name};
use crate::fail::Fail;
use crate::state::AppState;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the agent may take to answer once it has the whole request (a
/// git command is stopped by the agent well before this). Not applied to
/// uploads, whose answer comes only after the last byte: their pace is
/// bounded by the server's body-read timeout instead.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// Request headers the agent needs; everything else (cookies, the caller's
/// Authorization) stays here.
const REQUEST_HEADERS: [HeaderName; 6] = [
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::ACCEPT,
];

/// Answer headers passed back.
const ANSWER_HEADERS: [&str; 7] = [
    "content-type",
    "content-length",
    "content-disposition",
    "etag",
    "content-security-policy",
    "x-content-type-options",
    "x-dispatch-truncated",
];

/// The agent's path for a gateway path `/workspaces/{name}/<rest>`, with the
/// query; none unless `<rest>` is `files`, `files/...`, `git/...` or
/// `claude/<session>/turns...`, with no `.` or `..` segment.
pub fn agent_path(path: &str, name: &str, query: Option<&str>) -> Option<String> {
    // Under `nest("/api", ..)` the prefix is already gone; accept both.
    let path = path.strip_prefix("/api").unwrap_or(path);
    let rest = path.strip_prefix("/workspaces/")?.strip_prefix(name)?;
    let segs: Vec<&str> = rest.split('/').collect();
    let turns = segs.len() >= 4 && segs[1] == "claude" && segs[3] == "turns";
    let ok_root =
        rest == "/files" || rest.starts_with("/files/") || rest.starts_with("/git/") || turns;
    if !ok_root || rest.split('/').any(|s| s == "." || s == "..") {
        return None;
    }
    Some(match query {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_owned(),
    })
}

pub async fn proxy(
    State(st): State<AppState>,
    Caller(p): Caller,
    Path(params): Path<Vec<(String, String)>>,
    req: Request,
) -> Result<Response, Fail> {
    let raw_name = params
        .iter()
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    let name = workspace_name(raw_name)?;
    let target = agent_path(req.uri().path(), raw_name, req.uri().query()).ok_or_else(|| {
        Fail::new(
            StatusCode::NOT_FOUND,
            ErrorCode::BadMessage,
            "no such API route",
        )
    })?;
    let ep = st
        .backend
        .endpoint(&p.user, &name, crate::api::AGENT_WAIT)
        .await?;
    tracing::debug!(user = %p.user, workspace = %name, method = %req.method(), path = %target, "files proxy");
    forward(&ep, &target, req).await
}

fn unavailable(what: String) -> Fail {
    Fail::new(StatusCode::BAD_GATEWAY, ErrorCode::Unavailable, what)
}

async fn forward(ep: &AgentEndpoint, target: &str, req: Request) -> Result<Response, Fail> {
    let authority = ep
        .base_url
        .strip_prefix("http://")
        .ok_or_else(|| unavailable(format!("unsupported agent url {}", ep.base_url)))?;
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(authority))
        .await
        .map_err(|_| unavailable("connecting to the workspace's agent timed out".into()))?
        .map_err(|e| unavailable(format!("connecting to the workspace's agent: {e}")))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unavailable(format!("agent handshake: {e}")))?;
    // Runs until the answer's body is read to its end (or dropped).
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("agent connection: {e}");
        }
    });

    let (parts, body) = req.into_parts();
    let upload = parts.method == Method::PUT;
    let mut out = hyper::Request::builder()
        .method(parts.method)
        .uri(target)
        .header(header::HOST, authority)
        .header(header::AUTHORIZATION, format!("Bearer {}", ep.token));
    for name in REQUEST_HEADERS {
        for v in parts.headers.get_all(&name) {
            out = out.header(&name, v);
        }
    }
    let out = out.body(body).map_err(|e| {
        Fail::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadMessage,
            e.to_string(),
        )
    })?;
    let answer = sender.send_request(out);
    let resp = if upload {
        answer.await
    } else {
        tokio::time::timeout(ANSWER_TIMEOUT, answer)
            .await
            .map_err(|_| unavailable("the workspace's agent did not answer in time".into()))?
    }
    .map_err(|e| unavailable(format!("the workspace's agent: {e}")))?;

    let (parts, body) = resp.into_parts();
    let mut headers = HeaderMap::new();
    for name in ANSWER_HEADERS {
        for v in parts.headers.get_all(name) {
            headers.append(HeaderName::from_static(name), v.clone());
        }
    }
    let mut resp = (parts.status, Body::new(body)).into_response();
    resp.headers_mut().extend(headers);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_and_git_paths_of_the_named_workspace_go_through() {
        let p = |path, q| agent_path(path, "w1", q);
        assert_eq!(p("/workspaces/w1/files", None).as_deref(), Some("/files"));
        assert_eq!(
            p("/workspaces/w1/files/list", Some("path=a%2Fb")).as_deref(),
            Some("/files/list?path=a%2Fb")
        );
        assert_eq!(
            p("/workspaces/w1/git/status", None).as_deref(),
            Some("/git/status")
        );
        for bad in [
            "/workspaces/w1/ws",
            "/workspaces/w1/sessions",
            "/workspaces/w1/filesx",
            "/workspaces/w1/files/../ws",
            "/workspaces/w1/git/./x",
            "/workspaces/w1/claude/s-1",
            "/workspaces/w1/claude/s-1/history",
            "/workspaces/w10/files/list",
            "/workspaces/w2/files/list",
        ] {
            assert_eq!(p(bad, None), None, "{bad}");
        }
    }
}
