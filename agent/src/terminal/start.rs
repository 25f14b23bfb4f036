//! `terminal.start`: the request checked, the program started, the session
//! registered.

use std::collections::BTreeMap;
use std::sync::Arc;

use dispatch_api::ErrorCode;

use super::pty::SpawnSpec;
use super::{AsTerminal, StartSpec, TerminalSession, Terminals};
use crate::paths;
use crate::registry::{self, Registry};
use crate::session::ClientError;

pub const MAX_COLS_ROWS: u16 = 1000;
const MAX_ENV_VARS: usize = 256;
const MAX_TITLE: usize = 200;

/// A `terminal.start` request.
#[derive(Debug, Default, Clone)]
pub struct TerminalRequest {
    pub workspace_path: Option<String>,
    pub shell: Option<String>,
    pub env: Option<BTreeMap<String, String>>,
    pub cols: u16,
    pub rows: u16,
    pub title: Option<String>,
}

fn invalid(msg: impl Into<String>) -> ClientError {
    (ErrorCode::InvalidField, msg.into())
}

pub fn check_size(cols: u16, rows: u16) -> Result<(), ClientError> {
    if cols == 0 || rows == 0 || cols > MAX_COLS_ROWS || rows > MAX_COLS_ROWS {
        return Err(invalid(format!(
            "cols and rows must be 1..={MAX_COLS_ROWS}, got {cols}x{rows}"
        )));
    }
    Ok(())
}

fn default_shell() -> String {
    if let Ok(s) = std::env::var("SHELL")
        && !s.is_empty()
        && std::path::Path::new(&s).exists()
    {
        return s;
    }
    for s in ["/bin/bash", "/bin/sh"] {
        if std::path::Path::new(s).exists() {
            return s.into();
        }
    }
    "sh".into()
}

/// Checks a `terminal.start`, starts the program and registers the session.
pub async fn start<E: AsTerminal>(
    terminals: &Arc<Terminals>,
    registry: &Registry<E>,
    req: TerminalRequest,
) -> Result<Arc<TerminalSession>, ClientError> {
    check_size(req.cols, req.rows)?;
    let title = req.title.unwrap_or_default();
    if title.len() > MAX_TITLE || title.contains('\0') {
        return Err(invalid(format!(
            "title must be at most {MAX_TITLE} bytes without NUL"
        )));
    }
    let mut env = BTreeMap::new();
    env.insert("TERM".to_owned(), "xterm-256color".to_owned());
    env.insert("COLORTERM".to_owned(), "truecolor".to_owned());
    for (k, v) in &terminals.shell_env {
        env.insert(k.clone(), v.clone());
    }
    let user_env = req.env.unwrap_or_default();
    if user_env.len() > MAX_ENV_VARS {
        return Err(invalid(format!("at most {MAX_ENV_VARS} env entries")));
    }
    for (k, v) in user_env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(invalid(format!("bad env entry {k:?}")));
        }
        env.insert(k, v);
    }
    let program = match req.shell {
        Some(s) if s.is_empty() || s.contains('\0') => {
            return Err(invalid("shell must be a non-empty program name or path"));
        }
        Some(s) => s,
        None => default_shell(),
    };
    let rel = req.workspace_path.unwrap_or_default();
    let cwd = paths::resolve_dir(&terminals.root, &rel).map_err(|e| e.client_error())?;
    let cwd_display = paths::relative_display(&terminals.root, &cwd);

    let admission = registry.admission().await;
    admission.check_limit()?;
    let id = registry::new_id('t');
    env.insert("DISPATCH_SESSION_ID".to_owned(), id.as_str().to_owned());
    let title = if title.is_empty() {
        std::path::Path::new(&program)
            .file_name()
            .map_or_else(|| program.clone(), |n| n.to_string_lossy().into_owned())
    } else {
        title
    };
    let spec = StartSpec {
        title,
        cwd_display,
        log_dir: terminals.logs_dir.join(id.as_str()),
        spawn: SpawnSpec {
            program: program.clone(),
            args: Vec::new(),
            cwd,
            env,
            rows: req.rows,
            cols: req.cols,
        },
    };
    let services = terminals.services.clone();
    let t = terminals.clone();
    let limits = terminals.limits;
    let sid = id.clone();
    let started =
        tokio::task::spawn_blocking(move || TerminalSession::start(services, t, sid, spec, limits))
            .await
            .map_err(|e| (ErrorCode::Internal, format!("spawn task failed: {e}")))?;
    let session = started.map_err(|e| {
        terminals.services.metrics.error(ErrorCode::SpawnFailed);
        (
            ErrorCode::SpawnFailed,
            format!("could not start {program:?}: {e:#}"),
        )
    })?;
    registry.insert(session.clone());
    drop(admission);
    tracing::info!(session = %id, "terminal started");
    Ok(session)
}
