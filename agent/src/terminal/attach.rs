//! Streams one terminal session to one client through its [`Outbox`]: the
//! start it asked for (a replay from an offset, or a snapshot of the
//! screen), then live output, then `session.ended`.
//!
//! The attachment keeps its own cursor (the next offset to send) and reads
//! straight from the session's ring into a frame; at most one frame is in
//! flight. When the client is slow, the send waits, the ring moves on, and
//! the next read finds the cursor lapped: the client gets `session.resync`
//! and a snapshot instead of an ever-growing backlog. The session never
//! waits for its clients.

use std::sync::Arc;

use dispatch_api::frame::{FrameBuf, FrameKind};
use dispatch_api::protocol::AttachMode;
use dispatch_api::{ServerMessage, SessionId};

use super::{DiskChunk, MAX_CHUNK, ReplayPlan, TerminalSession};
use crate::outbox::{Outbox, Outgoing};
use crate::session::{Attached, Session};

fn snapshot_frame(id: &SessionId, offset: u64, snap: &[u8]) -> Outgoing {
    FrameBuf::of(FrameKind::Snapshot, id, offset, snap).into()
}

async fn take_snapshot(s: &Arc<TerminalSession>) -> Option<(u64, Vec<u8>)> {
    let s = s.clone();
    tokio::task::spawn_blocking(move || s.snapshot()).await.ok()
}

/// Streams `s` to `out` from `plan` (`None`: a snapshot first). Returns when
/// the client goes (a send fails) or the session has ended and everything
/// was sent.
pub async fn run<O: Outbox>(s: Arc<TerminalSession>, plan: Option<ReplayPlan>, out: O) {
    let _counted = Attached::new(&s);
    let id = s.id().clone();
    let mut rx = s.subscribe();
    let (mut cursor, mut replaying) = match plan {
        Some(p) => {
            let m = ServerMessage::SessionAttached {
                id: id.clone(),
                mode: AttachMode::Replay,
                offset: p.from,
                lost_before: p.lost_before,
                info: s.info(),
            };
            if !out.send(m.into()).await {
                return;
            }
            (p.from, true)
        }
        None => {
            let Some((offset, snap)) = take_snapshot(&s).await else {
                return;
            };
            let m = ServerMessage::SessionAttached {
                id: id.clone(),
                mode: AttachMode::Snapshot,
                offset,
                lost_before: None,
                info: s.info(),
            };
            if !out
                .send2(m.into(), snapshot_frame(&id, offset, &snap))
                .await
            {
                return;
            }
            (offset, false)
        }
    };
    loop {
        let p = *rx.borrow_and_update();
        if cursor < p.end {
            let frame = match s.ring_frame(cursor, MAX_CHUNK) {
                Ok(Some(f)) => {
                    replaying = false;
                    Some(f)
                }
                Ok(None) => None,
                // Replaying, or draining the tail of a session that ended:
                // what the ring no longer has is on disk.
                Err(_) if replaying || p.ended => {
                    let (s2, c) = (s.clone(), cursor);
                    match tokio::task::spawn_blocking(move || s2.disk_frame(c, MAX_CHUNK)).await {
                        Ok(DiskChunk::Frame(f)) => Some(f),
                        _ => None,
                    }
                }
                Err(_) => None,
            };
            match frame {
                Some(f) => {
                    let end = f.end();
                    if !out.send(f.into()).await {
                        return;
                    }
                    cursor = end;
                }
                None => {
                    // Fell behind what is kept: start over from the screen.
                    s.services.metrics.resyncs.inc();
                    let Some((offset, snap)) = take_snapshot(&s).await else {
                        return;
                    };
                    let m = ServerMessage::SessionResync {
                        id: id.clone(),
                        offset,
                    };
                    if !out
                        .send2(m.into(), snapshot_frame(&id, offset, &snap))
                        .await
                    {
                        return;
                    }
                    cursor = offset;
                    replaying = false;
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::mpsc;

    use super::*;
    use crate::db::Db;
    use crate::event_log_bounds::EventBounds;
    use crate::metrics::Metrics;
    use crate::session::Services;

    fn services(dir: &std::path::Path) -> Arc<Services> {
        let db = Db::open(&dir.join("agent.db")).unwrap();
        let bounds = EventBounds {
            max_rows: 100,
            max_age_ms: 1 << 40,
            per_connection: 100,
        };
        Arc::new(Services::new(db, Metrics::new(), bounds))
    }

    async fn next(rx: &mut mpsc::Receiver<Outgoing>) -> Outgoing {
        tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("the attachment sends within 30 s")
            .expect("the attachment is still running")
    }

    /// Output frames' payloads up to the first message, which is returned.
    async fn bytes_until_message(
        rx: &mut mpsc::Receiver<Outgoing>,
        mut at: u64,
    ) -> (Vec<u8>, ServerMessage) {
        let mut got = Vec::new();
        loop {
            match next(rx).await {
                Outgoing::Frame(f) => {
                    assert_eq!(f.offset(), at, "frames follow each other");
                    at = f.end();
                    got.extend_from_slice(f.payload());
                }
                Outgoing::Message(m) => return (got, *m),
            }
        }
    }

    fn output(n: usize) -> Vec<u8> {
        (0..n).map(|i| b'a' + (i % 26) as u8).collect()
    }

    #[tokio::test]
    async fn a_replay_sends_every_byte_then_the_end_with_the_tail_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        // A ring of 16 bytes: most of the output is only on disk.
        let s = TerminalSession::fed(services(dir.path()), "t1", 16, Some(dir.path().join("log")));
        let all = output(1000);
        s.push_output(&all[..600]);
        let (tx, mut rx) = mpsc::channel(4);
        let task = tokio::spawn(run(
            s.clone(),
            Some(ReplayPlan {
                from: 0,
                lost_before: None,
            }),
            tx,
        ));
        match next(&mut rx).await {
            Outgoing::Message(m) => assert!(
                matches!(
                    *m,
                    ServerMessage::SessionAttached {
                        mode: AttachMode::Replay,
                        offset: 0,
                        ..
                    }
                ),
                "{m:?}"
            ),
            f => panic!("expected session.attached, got {f:?}"),
        }
        s.push_output(&all[600..]);
        s.finish(Some(3));
        let (got, last) = bytes_until_message(&mut rx, 0).await;
        assert_eq!(got, all);
        assert!(
            matches!(
                last,
                ServerMessage::SessionEnded {
                    exit_code: Some(3),
                    ..
                }
            ),
            "{last:?}"
        );
        task.await.unwrap();
        assert_eq!(
            s.attachments().load(std::sync::atomic::Ordering::Relaxed),
            0
        );
    }

    #[tokio::test]
    async fn a_client_left_behind_gets_a_resync_and_a_snapshot_not_a_backlog() {
        let dir = tempfile::tempdir().unwrap();
        let services = services(dir.path());
        let s = TerminalSession::fed(services.clone(), "t2", 64, None);
        s.push_output(b"hello");
        // One place in the queue: the attachment waits for this test.
        let (tx, mut rx) = mpsc::channel(1);
        let task = tokio::spawn(run(s.clone(), None, tx));
        match next(&mut rx).await {
            Outgoing::Message(m) => assert!(
                matches!(
                    *m,
                    ServerMessage::SessionAttached {
                        mode: AttachMode::Snapshot,
                        offset: 5,
                        ..
                    }
                ),
                "{m:?}"
            ),
            f => panic!("expected session.attached, got {f:?}"),
        }
        // More than the ring holds arrives while the snapshot waits in the queue.
        s.push_output(&output(200));
        match next(&mut rx).await {
            Outgoing::Frame(f) => assert_eq!(f.offset(), 5, "the first snapshot"),
            m => panic!("expected the snapshot, got {m:?}"),
        }
        match next(&mut rx).await {
            Outgoing::Message(m) => assert!(
                matches!(*m, ServerMessage::SessionResync { offset: 205, .. }),
                "{m:?}"
            ),
            f => panic!("expected session.resync, got {f:?}"),
        }
        match next(&mut rx).await {
            Outgoing::Frame(f) => {
                assert_eq!(f.offset(), 205);
                assert!(!f.payload().is_empty(), "the screen as it stands");
            }
            m => panic!("expected the snapshot, got {m:?}"),
        }
        assert_eq!(services.metrics.resyncs.get(), 1);
        drop(rx);
        s.push_output(b"!");
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the attachment ends when its client goes")
            .unwrap();
    }
}
