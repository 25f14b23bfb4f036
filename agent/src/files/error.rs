//! What a files or git route answers when it cannot do what was asked: a
//! status and a stable code, as an `ApiError` body. Built from the errno the
//! kernel gave, so that what the client hears is what really happened.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dispatch_api::ErrorCode;
use dispatch_api::rest::ApiError;
use nix::errno::Errno;

use super::relpath::RelPathError;

#[derive(Debug)]
pub struct FsError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
}

impl FsError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> FsError {
        FsError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> FsError {
        FsError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidField, message)
    }

    pub fn internal(message: impl Into<String>) -> FsError {
        let message = message.into();
        tracing::error!("files: {message}");
        FsError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            message,
        )
    }

    /// `errno` from an operation on `what` (a path as the client named it).
    pub fn from_errno(e: Errno, what: &str) -> FsError {
        use StatusCode as S;
        let (status, code, why) = match e {
            // openat2 with RESOLVE_BENEATH: a `..`, an absolute symlink or a
            // relative one that climbs out.
            Errno::EXDEV => (
                S::FORBIDDEN,
                ErrorCode::PathOutsideWorkspace,
                "leads outside the workspace",
            ),
            // RESOLVE_NO_MAGICLINKS / NO_SYMLINKS / O_NOFOLLOW, or a loop.
            Errno::ELOOP => (
                S::FORBIDDEN,
                ErrorCode::PathOutsideWorkspace,
                "goes through a link that is not followed here (a /proc link, a loop, or a symlink where none may be)",
            ),
            Errno::ENOENT => (S::NOT_FOUND, ErrorCode::NotFound, "does not exist"),
            Errno::ENOTDIR => (
                S::CONFLICT,
                ErrorCode::WrongKind,
                "has a part that is not a directory",
            ),
            Errno::EISDIR => (S::CONFLICT, ErrorCode::WrongKind, "is a directory"),
            Errno::ENOTEMPTY => (
                S::CONFLICT,
                ErrorCode::WrongKind,
                "is a directory that is not empty (pass recursive=1)",
            ),
            Errno::EEXIST => (S::CONFLICT, ErrorCode::AlreadyExists, "exists already"),
            Errno::ENOSPC | Errno::EDQUOT => (
                S::INSUFFICIENT_STORAGE,
                ErrorCode::NoSpace,
                "cannot be written: no space left",
            ),
            Errno::EACCES | Errno::EPERM | Errno::EROFS => (
                S::FORBIDDEN,
                ErrorCode::Forbidden,
                "is not permitted to the agent",
            ),
            Errno::ENAMETOOLONG => (S::BAD_REQUEST, ErrorCode::BadPath, "is too long"),
            Errno::EINVAL => (
                S::BAD_REQUEST,
                ErrorCode::InvalidField,
                "cannot be used this way (a directory moved into itself?)",
            ),
            Errno::EBUSY => (
                S::CONFLICT,
                ErrorCode::WrongKind,
                "is in use (a mount point?)",
            ),
            other => return FsError::internal(format!("{what:?}: {other}")),
        };
        FsError::new(status, code, format!("{what:?} {why}"))
    }

    pub fn from_io(e: &std::io::Error, what: &str) -> FsError {
        match e.raw_os_error() {
            Some(n) => FsError::from_errno(Errno::from_raw(n), what),
            None => FsError::internal(format!("{what:?}: {e}")),
        }
    }
}

impl From<RelPathError> for FsError {
    fn from(e: RelPathError) -> Self {
        let status = if e == RelPathError::Root {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::BAD_REQUEST
        };
        let code = if e == RelPathError::Root {
            ErrorCode::Forbidden
        } else {
            ErrorCode::BadPath
        };
        FsError::new(status, code, e.to_string())
    }
}

impl IntoResponse for FsError {
    fn into_response(self) -> Response {
        let body = ApiError {
            code: self.code,
            message: self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_missing_files_get_their_own_codes() {
        let e = FsError::from_errno(Errno::EXDEV, "x");
        assert_eq!(
            (e.status, e.code),
            (StatusCode::FORBIDDEN, ErrorCode::PathOutsideWorkspace)
        );
        let e = FsError::from_errno(Errno::ENOENT, "x");
        assert_eq!(
            (e.status, e.code),
            (StatusCode::NOT_FOUND, ErrorCode::NotFound)
        );
        let e = FsError::from_errno(Errno::ENOSPC, "x");
        assert_eq!(e.status, StatusCode::INSUFFICIENT_STORAGE);
        let e: FsError = RelPathError::ParentDir.into();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::BAD_REQUEST, ErrorCode::BadPath)
        );
    }
}
