//! Streams one Claude session to one client: `session.attached`, the events
//! from the requested seq on (from memory, else from disk) as `message.delta`
//! batches, then live ones, then `session.ended`.
//!
//! Like a terminal attachment, it keeps its own cursor and writes to the
//! client's [`Outbox`] (a small queue to the connection's writer): a slow
//! client only delays itself, and the session never waits for it.

use std::sync::Arc;

use dispatch_api::ServerMessage;
use dispatch_api::protocol::{AttachMode, ClaudeEvent};

use super::event_log::{Budget, MemRead, read_files};
use super::session::{ClaudeSession, resolved_message};
use crate::outbox::Outbox;
use crate::session::{Attached, Session};

/// At most this much per `message.delta`: well under the WebSocket message
/// limits on the way (the gateway's is 16 MiB), however big one event is.
const BATCH: Budget = Budget {
    events: 256,
    bytes: 1024 * 1024,
};

/// The batch of events at `cursor`, and the cursor to continue from (which
/// jumps forward when events were lost).
async fn read_batch(s: &Arc<ClaudeSession>, cursor: u64) -> (Vec<ClaudeEvent>, u64) {
    match s.read_mem(cursor, BATCH) {
        MemRead::Events(ev) => (ev, cursor),
        MemRead::Gone { oldest } => (Vec::new(), oldest.max(cursor + 1)),
        MemRead::OnDisk { files } => {
            let read = tokio::task::spawn_blocking(move || read_files(&files, cursor, BATCH)).await;
            match read {
                Ok((ev, _)) if !ev.is_empty() => (ev, cursor),
                // Nothing at or after the cursor on disk: it was rotated away.
                Ok((_, oldest)) => (Vec::new(), oldest.unwrap_or(cursor).max(cursor + 1)),
                Err(_) => (Vec::new(), cursor + 1),
            }
        }
    }
}

pub async fn run_attachment<O: Outbox>(s: Arc<ClaudeSession>, since: Option<u64>, out: O) {
    let _counted = Attached::new(&s);
    let id = s.id().clone();
    let mut rx = s.subscribe();
    let oldest = s.oldest_seq();
    // Without `since` a client gets everything still kept: a Claude pane
    // needs the conversation, not just what comes next.
    let from = since.unwrap_or(oldest);
    let lost_before = (from < oldest).then_some(oldest);
    let mut cursor = from.max(oldest);
    let m = ServerMessage::SessionAttached {
        id: id.clone(),
        mode: AttachMode::Replay,
        offset: cursor,
        lost_before,
        info: s.info(),
    };
    if !out.send(m.into()).await {
        return;
    }
    loop {
        let p = *rx.borrow_and_update();
        if cursor < p.next_seq {
            let (events, next) = read_batch(&s, cursor).await;
            if events.is_empty() {
                cursor = next;
                continue;
            }
            cursor = events.last().map_or(cursor, |e| e.seq + 1);
            let resolved: Vec<ServerMessage> = events
                .iter()
                .filter_map(|e| resolved_message(&id, e))
                .collect();
            let m = ServerMessage::MessageDelta {
                id: id.clone(),
                events,
            };
            if !out.send(m.into()).await {
                return;
            }
            for m in resolved {
                if !out.send(m.into()).await {
                    return;
                }
            }
            continue;
        }
        if p.ended {
            out.send(crate::session::ended_message(s.as_ref()).into())
                .await;
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}
