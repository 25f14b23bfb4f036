//! Requests about a session that are neither input nor its live stream:
//! reading an earlier range of a terminal's output (`session.read`, so a
//! client can scroll back past what it keeps) and naming a session
//! (`session.rename`).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use dispatch_api::frame::{FrameBuf, FrameKind};
use dispatch_api::protocol::MAX_READ_BYTES;
use dispatch_api::{ErrorCode, ServerMessage, SessionId};

use crate::agent::Agent;
use crate::claude::history;
use crate::registry::Entry;
use crate::session::ClientError;
use crate::session::Session;
use crate::sessions::AnySession;
use crate::terminal::{DiskChunk, TerminalSession};

/// Longest session name, as for `terminal.start`'s title.
pub const MAX_TITLE: usize = 200;

/// The part of `[from, to)` a read answers: nothing before `oldest` (gone),
/// and at most [`MAX_READ_BYTES`], the last ones of the range (a client
/// scrolling back wants those nearest to what it has).
pub fn plan_read(from: u64, to: u64, oldest: u64, end: u64) -> Result<(u64, u64), ClientError> {
    if from > to || to > end {
        return Err((
            ErrorCode::InvalidField,
            format!("read [{from}, {to}) is not within the output [0, {end})"),
        ));
    }
    let to = to.max(oldest);
    let from = from.max(oldest).max(to.saturating_sub(MAX_READ_BYTES));
    Ok((from, to))
}

/// Reads `[from, to)` of a terminal's output (clipped by [`plan_read`]) and
/// returns the `session.range` reply and the range frame with its bytes.
pub async fn read(
    t: Arc<TerminalSession>,
    from: u64,
    to: u64,
) -> Result<(ServerMessage, Vec<u8>), ClientError> {
    tokio::task::spawn_blocking(move || read_blocking(&t, from, to))
        .await
        .map_err(|e| (ErrorCode::Internal, format!("read task failed: {e}")))?
}

fn read_blocking(
    t: &TerminalSession,
    from: u64,
    to: u64,
) -> Result<(ServerMessage, Vec<u8>), ClientError> {
    let (oldest, end) = t.oldest_and_end();
    let (mut from, to) = plan_read(from, to, oldest, end)?;
    let mut range = FrameBuf::new(FrameKind::Range, t.id(), from, (to - from) as usize);
    let mut cursor = from;
    // The disk log holds everything the ring does and more (it is written
    // first); a session without a log falls back to the ring.
    while cursor < to {
        let want = (to - cursor) as usize;
        let chunk = match t.disk_frame(cursor, want) {
            DiskChunk::Frame(f) => Some(f),
            DiskChunk::Gone { oldest } if range.payload().is_empty() && oldest > cursor => {
                // Retention moved on while we looked: answer from what is left.
                cursor = oldest.min(to);
                from = cursor;
                range = FrameBuf::new(FrameKind::Range, t.id(), from, (to - from) as usize);
                continue;
            }
            _ => t.ring_frame(cursor, want).ok().flatten(),
        };
        match chunk {
            Some(f) if !f.payload().is_empty() => {
                let b = &f.payload()[..f.payload().len().min(want)];
                cursor += b.len() as u64;
                range.push(b);
            }
            _ => break,
        }
    }
    let reply = ServerMessage::SessionRange {
        id: t.id().clone(),
        from,
        to: range.end(),
        oldest,
        end,
    };
    Ok((reply, range.into_bytes()))
}

/// A session name: trimmed, not empty, at most [`MAX_TITLE`] bytes, no
/// control characters.
pub fn check_title(title: &str) -> Result<String, ClientError> {
    let t = title.trim();
    if t.is_empty() || t.len() > MAX_TITLE || t.chars().any(char::is_control) {
        return Err((
            ErrorCode::InvalidField,
            format!("a name is 1 to {MAX_TITLE} bytes without control characters"),
        ));
    }
    Ok(t.to_owned())
}

/// Names a Claude conversation the way the CLI's own `/rename` does: a
/// `custom-title` line appended to its transcript, which the history reads.
pub fn rename_conversation(
    transcript: &Path,
    conversation: &str,
    title: &str,
) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(&serde_json::json!({
        "type": "custom-title",
        "customTitle": title,
        "sessionId": conversation,
    }))?;
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new().append(true).open(transcript)?;
    f.write_all(&line)
}

/// Renames session `id`; a Claude session's conversation gets the name in
/// its transcript too, so the history shows the same. Returns the
/// `session.renamed` announcement.
pub async fn rename(
    state: &Arc<Agent>,
    id: &SessionId,
    title: &str,
) -> Result<ServerMessage, ClientError> {
    let title = check_title(title)?;
    let s = state
        .sessions
        .get(id)
        .ok_or_else(|| (ErrorCode::NoSuchSession, format!("no session {id}")))?;
    s.session().set_title(title.clone());
    if let AnySession::Claude(c) = s {
        let (cfg, cid, t) = (
            state.claude.config_dir().to_owned(),
            c.conversation_id(),
            title.clone(),
        );
        // A conversation with no prompt yet has no transcript: the session's
        // own title holds the name, and its first prompt will not replace it.
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(p) = history::find(&cfg, &cid)
                && let Err(e) = rename_conversation(&p, &cid, &t)
            {
                tracing::warn!(error = %e, "writing a conversation's new name");
            }
        })
        .await;
    }
    Ok(ServerMessage::SessionRenamed {
        id: id.clone(),
        title,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_is_cut_to_what_is_kept_and_to_the_limit() {
        assert_eq!(plan_read(10, 20, 0, 100).unwrap(), (10, 20));
        // before the oldest byte: from the oldest
        assert_eq!(plan_read(0, 20, 5, 100).unwrap(), (5, 20));
        // entirely gone: an empty range at the oldest byte
        assert_eq!(plan_read(0, 3, 5, 100).unwrap(), (5, 5));
        // too long: the last MAX_READ_BYTES of it
        let end = 10 * MAX_READ_BYTES;
        assert_eq!(
            plan_read(0, end, 0, end).unwrap(),
            (end - MAX_READ_BYTES, end)
        );
        assert_eq!(
            plan_read(5, 4, 0, 100).unwrap_err().0,
            ErrorCode::InvalidField
        );
        assert_eq!(
            plan_read(0, 101, 0, 100).unwrap_err().0,
            ErrorCode::InvalidField
        );
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(check_title("  build  ").unwrap(), "build");
        assert!(check_title("").is_err());
        assert!(check_title("a\u{1b}b").is_err());
        assert!(check_title(&"x".repeat(MAX_TITLE + 1)).is_err());
    }

    #[test]
    fn a_rename_appends_a_custom_title_the_history_reads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.jsonl");
        std::fs::write(
            &p,
            "{\"type\":\"user\",\"message\":{\"role\":\"user\",\"content\":\"hi\"}}\n",
        )
        .unwrap();
        rename_conversation(&p, "c", "My name").unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let s = crate::claude::history::summarize(text.lines().map(str::to_owned)).unwrap();
        assert_eq!(s.title, "My name");
    }
}
