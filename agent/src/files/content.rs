//! Reading a file (streamed, with its version) and writing one (streamed to
//! a new file beside it, then renamed into place).

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dispatch_api::ErrorCode;
use dispatch_api::files::FileVersion;
use futures_util::{Stream, StreamExt};
use nix::fcntl::{AtFlags, OFlag, RenameFlags, renameat2};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::confine::{Root, kind_of};
use super::error::FsError;
use super::relpath::RelPath;
use super::version::{etag, if_match_holds};

/// Bytes read from a file per chunk of a download.
const CHUNK: usize = 256 * 1024;
/// Bytes looked at to tell text from binary when the name says nothing.
const SNIFF: usize = 8 * 1024;

/// `GET files/content`: the file's bytes with `ETag`, `Content-Length` and a
/// type; as an attachment when `download`.
pub async fn read(root: &Root, rel: &RelPath, download: bool) -> Result<Response, FsError> {
    let (file, st) = root.open_file(rel)?;
    let content_type = content_type(rel, &file);
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(st.st_size.max(0) as u64),
    );
    if let Ok(v) = HeaderValue::from_str(&etag(&st)) {
        headers.insert(header::ETAG, v);
    }
    // The bytes are the workspace's, not the site's: never run them as a
    // page of this origin.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if download {
        headers.insert(header::CONTENT_DISPOSITION, attachment(rel.file_name()));
    }
    let size = st.st_size.max(0) as u64;
    let body = Body::from_stream(file_stream(tokio::fs::File::from_std(file), size));
    Ok((headers, body).into_response())
}

/// `Content-Disposition: attachment` with the name as UTF-8 (RFC 6266) and an
/// ASCII fallback.
pub fn attachment(name: &str) -> HeaderValue {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// The bytes of `file`, at most `size` of them (what the headers promised,
/// even if the file grows while it is read).
fn file_stream(file: tokio::fs::File, size: u64) -> impl Stream<Item = std::io::Result<Bytes>> {
    futures_util::stream::try_unfold((file, size), |(mut file, left)| async move {
        if left == 0 {
            return Ok(None);
        }
        let want = (left.min(CHUNK as u64)) as usize;
        let mut buf = vec![0u8; want];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            // It shrank: the client sees a body shorter than Content-Length,
            // which it reports as an error rather than a short file.
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file shrank while it was read",
            ));
        }
        buf.truncate(n);
        Ok(Some((Bytes::from(buf), (file, left - n as u64))))
    })
}

/// A type for the viewer: by the name, else text when the first bytes are
/// UTF-8 without NUL. Types a browser would run (HTML, SVG, XML, scripts) are
/// sent as plain text.
fn content_type(rel: &RelPath, file: &std::fs::File) -> &'static str {
    const TEXT: &str = "text/plain; charset=utf-8";
    let guess = mime_guess::from_path(rel.file_name()).first_raw();
    match guess {
        Some(t)
            if t.starts_with("text/")
                || t.contains("xml")
                || t.contains("javascript")
                || t == "application/json"
                || t == "application/toml" =>
        {
            TEXT
        }
        Some(t) if t.starts_with("image/") && t != "image/svg+xml" => t,
        Some("application/pdf") => "application/pdf",
        _ => {
            let mut head = vec![0u8; SNIFF];
            let n = file.read_at(&mut head, 0).unwrap_or(0);
            head.truncate(n);
            if looks_like_text(&head) {
                TEXT
            } else {
                "application/octet-stream"
            }
        }
    }
}

/// UTF-8 (allowing a character cut at the end of the sample) without NUL.
pub fn looks_like_text(head: &[u8]) -> bool {
    if head.contains(&0) {
        return false;
    }
    match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && head.len() - e.valid_up_to() < 4,
    }
}

/// What the client asks of the version it replaces.
pub struct Preconditions {
    /// `If-Match`: the file must still be one of these versions.
    pub if_match: Option<String>,
    /// `If-None-Match: *`: the file must not exist.
    pub create_only: bool,
}

impl Preconditions {
    pub fn from_headers(h: &HeaderMap) -> Result<Preconditions, FsError> {
        let text = |name: header::HeaderName| {
            h.get(&name)
                .map(|v: &HeaderValue| {
                    v.to_str()
                        .map(str::to_owned)
                        .map_err(|_| FsError::bad_request(format!("{name} is not ASCII")))
                })
                .transpose()
        };
        let if_match = text(header::IF_MATCH)?;
        let create_only = match text(header::IF_NONE_MATCH)? {
            None => false,
            Some(v) if v.trim() == "*" => true,
            Some(_) => {
                return Err(FsError::bad_request(
                    "If-None-Match is supported only as `*` (create, never replace)",
                ));
            }
        };
        Ok(Preconditions {
            if_match,
            create_only,
        })
    }
}

/// Removes the temporary file unless it was renamed into place: whatever
/// ends the upload (an error, the client going away, the task dropped).
struct TempName<'a> {
    dir: &'a OwnedFd,
    name: String,
    armed: bool,
}

impl Drop for TempName<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = nix::unistd::unlinkat(
                self.dir.as_fd(),
                self.name.as_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
        }
    }
}

/// The current version of `name` in `dir`, not following a symlink; none when
/// absent.
fn current(dir: &OwnedFd, name: &str, rel: &RelPath) -> Result<Option<FileStat>, FsError> {
    match fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(nix::errno::Errno::ENOENT) => Ok(None),
        Err(e) => Err(FsError::from_errno(e, &rel.to_string())),
    }
}

/// Checks the preconditions against what is there now.
fn check(pre: &Preconditions, now: Option<&FileStat>, rel: &RelPath) -> Result<(), FsError> {
    if let Some(st) = now {
        match kind_of(st) {
            SFlag::S_IFREG => {}
            SFlag::S_IFDIR => {
                return Err(FsError::from_errno(
                    nix::errno::Errno::EISDIR,
                    &rel.to_string(),
                ));
            }
            // Renaming over a symlink would replace the link, not write the
            // file it names: refused, so that neither happens by surprise.
            _ => {
                return Err(FsError::new(
                    StatusCode::CONFLICT,
                    ErrorCode::WrongKind,
                    format!(
                        "{:?} is a symlink or a special file; write to the file it names",
                        rel.to_string()
                    ),
                ));
            }
        }
        if pre.create_only {
            return Err(FsError::from_errno(
                nix::errno::Errno::EEXIST,
                &rel.to_string(),
            ));
        }
    }
    if let Some(want) = &pre.if_match {
        let holds = now.is_some_and(|st| if_match_holds(want, &etag(st)));
        if !holds {
            let current = now.map(|st| FileVersion {
                etag: etag(st),
                size: st.st_size.max(0) as u64,
            });
            return Err(FsError {
                status: StatusCode::PRECONDITION_FAILED,
                code: ErrorCode::Conflict,
                message: match current {
                    Some(v) => format!(
                        "{:?} changed since that version; it is now {} ({} bytes)",
                        rel.to_string(),
                        v.etag,
                        v.size
                    ),
                    None => format!("{:?} was deleted since that version", rel.to_string()),
                },
            });
        }
    }
    Ok(())
}

/// The 412 body: the code and message, plus the current version so that the
/// client can fetch it and show both.
pub fn conflict_response(err: FsError, root: &Root, rel: &RelPath) -> Response {
    let current = root
        .parent_of(rel)
        .ok()
        .and_then(|(dir, name)| current(&dir, name, rel).ok().flatten());
    let body = serde_json::json!({
        "code": err.code,
        "message": err.message,
        "current": current.map(|st| FileVersion { etag: etag(&st), size: st.st_size.max(0) as u64 }),
    });
    (err.status, axum::Json(body)).into_response()
}

/// `PUT files/content`: streams `body` into a new file beside `rel` and
/// renames it into place when it is complete and the preconditions hold.
/// Over `max_bytes` is 413 and nothing changes.
pub async fn write(
    root: &Root,
    rel: &RelPath,
    pre: Preconditions,
    declared_len: Option<u64>,
    max_bytes: u64,
    body: Body,
) -> Result<FileVersion, FsError> {
    let what = rel.to_string();
    if declared_len.is_some_and(|n| n > max_bytes) {
        return Err(too_large(max_bytes));
    }
    let (dir, name) = root.parent_of(rel)?;
    let before = current(&dir, name, rel)?;
    // Checked before the upload (no point sending a gigabyte to be refused)
    // and again before the rename.
    check(&pre, before.as_ref(), rel)?;

    let temp = TempName {
        dir: &dir,
        name: format!(".dispatch-upload-{}", uuid::Uuid::new_v4().simple()),
        armed: true,
    };
    // 0600 while it is written; the final mode is set before the rename.
    let fd = nix::fcntl::openat(
        dir.as_fd(),
        temp.name.as_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(|e| FsError::from_errno(e, &what))?;
    let mode = before.map_or(0o644, |st| st.st_mode & 0o7777);
    let mut file = tokio::fs::File::from_std(std::fs::File::from(fd));

    let mut written: u64 = 0;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| FsError::bad_request(format!("the upload of {what:?} broke off: {e}")))?;
        written += chunk.len() as u64;
        if written > max_bytes {
            return Err(too_large(max_bytes));
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| FsError::from_io(&e, &what))?;
    }
    file.flush()
        .await
        .map_err(|e| FsError::from_io(&e, &what))?;
    // Durable before it takes the name: a crash leaves the old file or the
    // new one, never a torn one.
    file.sync_all()
        .await
        .map_err(|e| FsError::from_io(&e, &what))?;
    let file = file.into_std().await;
    fchmod(file.as_fd(), Mode::from_bits_truncate(mode))
        .map_err(|e| FsError::from_errno(e, &what))?;
    let st = fstat(file.as_fd()).map_err(|e| FsError::from_errno(e, &what))?;

    let now = current(&dir, name, rel)?;
    check(&pre, now.as_ref(), rel)?;
    // NOREPLACE when the client asked to create: a file made meanwhile is
    // not overwritten. (Between the check above and a plain rename, another
    // writer could still slip in; the window is one syscall.)
    let flags = if pre.create_only {
        RenameFlags::RENAME_NOREPLACE
    } else {
        RenameFlags::empty()
    };
    renameat2(dir.as_fd(), temp.name.as_str(), dir.as_fd(), name, flags)
        .map_err(|e| FsError::from_errno(e, &what))?;
    let mut temp = temp;
    temp.armed = false;
    Ok(FileVersion {
        etag: etag(&st),
        size: written,
    })
}

fn too_large(max: u64) -> FsError {
    FsError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::TooLarge,
        format!("the upload is larger than this agent's --max-upload-bytes ({max} bytes)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_utf8_without_nul_even_when_cut_mid_character() {
        assert!(looks_like_text(b"fn main() {}\n"));
        assert!(looks_like_text("héllo".as_bytes()));
        assert!(looks_like_text(&"é".as_bytes()[..1]));
        assert!(!looks_like_text(b"\x7fELF\x02\x01\x00"));
        assert!(!looks_like_text(b"\xff\xfe\x00a"));
        assert!(!looks_like_text(b"ab\xffcd"));
    }

    #[test]
    fn attachment_names_are_quoted_safely() {
        let v = attachment("a \"b\".tar");
        assert_eq!(
            v.to_str().unwrap(),
            "attachment; filename=\"a__b_.tar\"; filename*=UTF-8''a%20%22b%22.tar"
        );
    }
}
