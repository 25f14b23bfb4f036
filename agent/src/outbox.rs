//! Where a session's attachment sends what one client should get: control
//! messages and binary frames, in order. The connection layer implements it
//! over its socket (and encodes); a channel implements it for queues and for
//! tests, so attach, resync and the ended tail run in-process against a fake
//! sink.

use std::future::Future;

use dispatch_api::ServerMessage;
use dispatch_api::frame::FrameBuf;
use tokio::sync::mpsc;

/// One thing for one client.
#[derive(Debug)]
pub enum Outgoing {
    /// Boxed: a message is several times the size of a frame's handle.
    Message(Box<ServerMessage>),
    Frame(FrameBuf),
}

impl From<ServerMessage> for Outgoing {
    fn from(m: ServerMessage) -> Self {
        Outgoing::Message(Box::new(m))
    }
}

impl From<FrameBuf> for Outgoing {
    fn from(f: FrameBuf) -> Self {
        Outgoing::Frame(f)
    }
}

/// A client's way in. Each send says whether the client is still there.
pub trait Outbox: Clone + Send + Sync + 'static {
    fn send(&self, m: Outgoing) -> impl Future<Output = bool> + Send;

    /// Two with nothing from anyone else between them (a resync and its
    /// snapshot).
    fn send2(&self, a: Outgoing, b: Outgoing) -> impl Future<Output = bool> + Send;
}

/// A queue to whoever drains it (the connection's writer, or a test).
impl Outbox for mpsc::Sender<Outgoing> {
    async fn send(&self, m: Outgoing) -> bool {
        mpsc::Sender::send(self, m).await.is_ok()
    }

    /// One sender's sends keep their order; another sender's may come
    /// between, so a queue is for one attachment only.
    async fn send2(&self, a: Outgoing, b: Outgoing) -> bool {
        mpsc::Sender::send(self, a).await.is_ok() && mpsc::Sender::send(self, b).await.is_ok()
    }
}
