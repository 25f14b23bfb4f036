//! One WebSocket connection: it parses JSON control messages and binary
//! frames, routes them to the sessions, and sends control replies and each
//! attached session's frames through one fairly-locked sink ([`Out`]), the
//! [`Outbox`] the attachments (`terminal::attach`, `claude::attach`) write
//! to. Attachments take turns at the socket, so a flood in one session adds
//! at most one frame of delay to another's echo.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use dispatch_api::frame::{Frame, FrameKind};
use dispatch_api::{ClientMessage, ErrorCode, PROTOCOL_VERSION, ServerMessage, SessionId};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::agent::Agent;
use crate::event_log_bounds::ConnectionBudget;
use crate::outbox::{Outbox, Outgoing};
use crate::registry::Entry;
use crate::session::{ClientError, Session};
use crate::terminal::start::{TerminalRequest, check_size};
use crate::terminal::{ReplayPlan, TerminalSession};

/// Claude events queued per attachment before its task waits for the socket.
const ATTACH_QUEUE: usize = 4;

/// Tells a client over `--max-connections` why, and closes its socket.
pub async fn refuse_over_limit(mut socket: WebSocket, state: Arc<Agent>) {
    let max = state.config.max_connections;
    state.services.metrics.error(ErrorCode::RateLimited);
    tracing::warn!(max, "connection refused: at the connection limit");
    let m = ServerMessage::error(
        ErrorCode::RateLimited,
        format!(
            "this workspace's agent already serves {max} connections, the most it may; close another tab or try later"
        ),
        None,
    );
    let _ = socket.send(text(&m)).await;
    let close = axum::extract::ws::CloseFrame {
        // 1013: try again later.
        code: 1013,
        reason: "too many connections".into(),
    };
    let _ = socket.send(Message::Close(Some(close))).await;
}

/// Bytes read from a client's socket at a time. Clients send keystrokes and
/// requests; a bigger message takes more reads. tungstenite zero-fills this
/// much of its buffer before each read and keeps it while the connection
/// lives: at its default (128 KiB) 500 connections cost 65 MiB, and every
/// keystroke a 128 KiB memset.
pub const READ_BUFFER_BYTES: usize = 4 << 10;

/// How long, at shutdown, a connection's attachments may take to send their
/// sessions' last bytes and `session.ended` (generous: CI machines are
/// loaded; a client that reads is done in milliseconds).
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);

/// Serves one client while it holds `_slot`, one of `--max-connections`.
pub async fn serve(socket: WebSocket, state: Arc<Agent>, _slot: tokio::sync::OwnedSemaphorePermit) {
    let (sink, mut stream) = socket.split();
    let out = Out(Arc::new(tokio::sync::Mutex::new(sink)));
    state.services.metrics.connections.inc();
    let mut conn = Conn {
        state: state.clone(),
        out: out.clone(),
        attachments: HashMap::new(),
        created: HashSet::new(),
        logged: ConnectionBudget::default(),
    };
    conn.send(ServerMessage::Hello {
        protocol: PROTOCOL_VERSION,
        workspace: state.name.clone(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
    })
    .await;
    let mut events = state.services.events.subscribe();
    let mut shutdown = state.shutdown.subscribe();
    let mut heartbeat = Heartbeat::new(state.config.ping_interval);
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(Message::Close(_))) | None => break,
                Some(Err(e)) => {
                    if let Some(why) = over_transport_limit(&e) {
                        // The rest of that message is unread, so the
                        // connection cannot go on; say why, in words and
                        // with close code 1009, rather than drop the socket
                        // like an agent that died (which clients answer by
                        // reconnecting and sending it again).
                        conn.error((ErrorCode::TooLarge, why), None).await;
                        let close = CloseFrame {
                            code: close_code::SIZE,
                            reason: "message too big".into(),
                        };
                        out.send(Message::Close(Some(close))).await;
                    }
                    break;
                }
                Some(Ok(m)) => {
                    heartbeat.heard();
                    conn.handle(m).await;
                }
            },
            beat = heartbeat.tick() => match beat {
                Beat::Ping => {
                    if !out.send(Message::Ping(Default::default())).await {
                        break;
                    }
                }
                Beat::Silent => {
                    tracing::debug!("client silent for three ping intervals; dropping it");
                    break;
                }
            },
            ev = events.recv() => match ev {
                Ok(m) => conn.forward_event(m).await,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => {
                // The sessions have been stopped: send the `session.ended`
                // of the sessions this connection is not attached to (queued
                // before the shutdown, which `select!` may have picked
                // first), and let the attachments send their last bytes and
                // theirs, before the close.
                while let Ok(m) = events.try_recv() {
                    conn.forward_event(m).await;
                }
                let deadline = tokio::time::Instant::now() + SHUTDOWN_DRAIN;
                for h in conn.attachments.values_mut() {
                    let _ = tokio::time::timeout_at(deadline, h).await;
                }
                out.send(Message::Close(None)).await;
                break;
            }
        }
    }
    for (_, h) in conn.attachments.drain() {
        h.abort();
    }
    drop(conn);
    out.close().await;
    state.services.metrics.connections.dec();
    crate::memory::trim_soon();
}

/// What to tell a client whose message was over the WebSocket's hard limit
/// (see `http::ws_upgrade`), if that is what the read error was.
fn over_transport_limit(e: &axum::Error) -> Option<String> {
    use tungstenite::error::{CapacityError, Error};
    match std::error::Error::source(e)?.downcast_ref::<Error>()? {
        Error::Capacity(CapacityError::MessageTooLong { size, max_size }) => Some(format!(
            "message of {size} bytes is over this connection's limit of {max_size}; \
             the connection is closed"
        )),
        _ => None,
    }
}

/// Pings a client now and then; says when it has been silent too long.
struct Heartbeat {
    every: Option<Duration>,
    next: tokio::time::Instant,
    last_heard: tokio::time::Instant,
}

enum Beat {
    Ping,
    Silent,
}

impl Heartbeat {
    /// Missed answers before a client counts as gone.
    const PATIENCE: u32 = 3;

    fn new(every_secs: u64) -> Self {
        let every = (every_secs > 0).then(|| Duration::from_secs(every_secs));
        let now = tokio::time::Instant::now();
        Heartbeat {
            every,
            next: now + every.unwrap_or_default(),
            last_heard: now,
        }
    }

    fn heard(&mut self) {
        self.last_heard = tokio::time::Instant::now();
    }

    /// Resolves at the next beat (never, when pings are off).
    async fn tick(&mut self) -> Beat {
        let Some(every) = self.every else {
            return std::future::pending().await;
        };
        tokio::time::sleep_until(self.next).await;
        let now = tokio::time::Instant::now();
        self.next = now + every;
        if now.duration_since(self.last_heard) >= every * Self::PATIENCE {
            Beat::Silent
        } else {
            Beat::Ping
        }
    }
}

struct Conn {
    state: Arc<Agent>,
    out: Out,
    attachments: HashMap<SessionId, JoinHandle<()>>,
    /// Sessions this connection started (it had `session.created` as a reply).
    created: HashSet<SessionId>,
    /// Event log rows this connection has added, by kind.
    logged: ConnectionBudget,
}

fn text(m: &ServerMessage) -> Message {
    Message::Text(m.to_json().into())
}

impl Conn {
    async fn send(&self, m: ServerMessage) {
        self.out.send(text(&m)).await;
    }

    /// Writes to the event log within this connection's share.
    fn log_event(&mut self, id: Option<&SessionId>, kind: &'static str, detail: Option<String>) {
        let services = &self.state.services;
        if self.logged.take(kind, services.event_bounds()) {
            services.event(id, kind, detail);
        }
    }

    async fn error(&mut self, e: ClientError, id: Option<String>) {
        self.error_for(e, id, None).await;
    }

    /// An error reply to a request that carried this `clientRef`.
    async fn error_for(
        &mut self,
        (code, message): ClientError,
        id: Option<String>,
        client_ref: Option<String>,
    ) {
        self.state.services.metrics.error(code);
        let sid = id.as_deref().and_then(|i| SessionId::new(i).ok());
        self.log_event(sid.as_ref(), "error", Some(format!("{code}: {message}")));
        tracing::debug!(%code, %message, "error reply");
        self.send(ServerMessage::error(code, message, id).for_request(client_ref))
            .await;
    }

    async fn forward_event(&mut self, m: ServerMessage) {
        match &m {
            // The starter had it as the reply already.
            ServerMessage::SessionCreated { id, .. } if self.created.contains(id) => {}
            // Attached connections get it from the attachment, after the last bytes.
            ServerMessage::SessionEnded { id, .. } if self.attachments.contains_key(id) => {}
            _ => self.send(m).await,
        }
    }

    async fn handle(&mut self, msg: Message) {
        let max = self.state.config.max_frame_bytes as usize;
        match msg {
            Message::Text(t) => {
                if t.len() > max {
                    let e = (
                        ErrorCode::TooLarge,
                        format!("message of {} bytes is over the limit of {max}", t.len()),
                    );
                    return self.error(e, None).await;
                }
                match ClientMessage::parse(t.as_str()) {
                    Ok(m) => self.dispatch(m).await,
                    Err(e) => {
                        self.error_for((e.code, e.message), e.id, e.client_ref)
                            .await
                    }
                }
            }
            Message::Binary(b) => {
                if b.len() > max {
                    let e = (
                        ErrorCode::TooLarge,
                        format!("frame of {} bytes is over the limit of {max}", b.len()),
                    );
                    return self.error(e, None).await;
                }
                match Frame::decode(&b) {
                    Ok(f) if f.kind == FrameKind::Input => {
                        let Ok(id) = SessionId::new(f.id) else {
                            return;
                        };
                        let r = crate::terminal::find(self.state.sessions.registry(), &id)
                            .and_then(|s| s.write(f.payload.to_vec()));
                        if let Err(e) = r {
                            self.error(e, Some(id.to_string())).await;
                        }
                    }
                    Ok(f) => {
                        let e = (
                            ErrorCode::BadFrame,
                            format!("clients send only input frames (kind 3), not {:?}", f.kind),
                        );
                        self.error(e, Some(f.id.to_owned())).await
                    }
                    Err(e) => self.error((ErrorCode::BadFrame, e.to_string()), None).await,
                }
            }
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => {}
        }
    }

    async fn dispatch(&mut self, m: ClientMessage) {
        let result: Result<(), ClientError> = match m {
            ClientMessage::TerminalStart {
                workspace_path,
                shell,
                env,
                cols,
                rows,
                title,
                client_ref,
            } => {
                let req = TerminalRequest {
                    workspace_path,
                    shell,
                    env,
                    cols,
                    rows,
                    title,
                };
                match crate::terminal::start::start(
                    &self.state.terminals,
                    self.state.sessions.registry(),
                    req,
                )
                .await
                {
                    Ok(s) => {
                        let id = s.id().clone();
                        self.log_event(Some(&id), "start", Some(s.info().title));
                        self.created.insert(id.clone());
                        let created = ServerMessage::SessionCreated {
                            id,
                            workspace: self.state.name.clone(),
                            info: s.info(),
                            client_ref: None,
                        };
                        self.send(created.clone().for_request(client_ref)).await;
                        let _ = self.state.services.events.send(created);
                        // The starter is attached from the first byte.
                        self.attach_terminal(
                            s,
                            Some(ReplayPlan {
                                from: 0,
                                lost_before: None,
                            }),
                        );
                        Ok(())
                    }
                    Err(e) => {
                        self.error_for(e, None, client_ref).await;
                        return;
                    }
                }
            }
            ClientMessage::TerminalWrite { id, data } => {
                let r = crate::terminal::find(self.state.sessions.registry(), &id)
                    .and_then(|s| s.write(data.into_bytes()));
                return self.reply_err(r, &id).await;
            }
            ClientMessage::TerminalResize { id, cols, rows } => {
                let r = check_size(cols, rows)
                    .and_then(|()| crate::terminal::find(self.state.sessions.registry(), &id))
                    .and_then(|s| s.resize(cols, rows));
                if r.is_ok() {
                    // Other viewers learn that someone else sized it.
                    let m = ServerMessage::SessionResized {
                        id: id.clone(),
                        cols,
                        rows,
                    };
                    let _ = self.state.services.events.send(m);
                }
                return self.reply_err(r, &id).await;
            }
            ClientMessage::SessionRead { id, from, to } => {
                let r = match crate::terminal::find(self.state.sessions.registry(), &id) {
                    Ok(t) => crate::session_requests::read(t, from, to).await,
                    Err(e) => Err(e),
                };
                match r {
                    Ok((reply, frame)) => {
                        self.out
                            .send2(text(&reply), Message::Binary(frame.into()))
                            .await;
                        return;
                    }
                    Err(e) => return self.reply_err(Err(e), &id).await,
                }
            }
            ClientMessage::SessionRename { id, title } => {
                match crate::session_requests::rename(&self.state, &id, &title).await {
                    Ok(m) => {
                        let _ = self.state.services.events.send(m);
                        return;
                    }
                    Err(e) => return self.reply_err(Err(e), &id).await,
                }
            }
            m @ (ClientMessage::ClaudeStart { .. }
            | ClientMessage::ClaudeSend { .. }
            | ClientMessage::ClaudePermission { .. }
            | ClientMessage::ClaudeInterrupt { .. }
            | ClientMessage::ClaudeConfigure { .. }
            | ClientMessage::ClaudeHistory {}
            | ClientMessage::ClaudeLoad { .. }) => {
                // Say which session an error is about, so a client with several
                // Claude panes shows it in the right one.
                let id = named_session(&m).map(SessionId::to_string);
                let client_ref = m.client_ref().map(str::to_owned);
                if let Err(e) = self.claude(m, client_ref.clone()).await {
                    self.error_for(e, id, client_ref).await;
                }
                return;
            }
            ClientMessage::SessionAttach { id, since } => {
                self.end_attachment(&id).await;
                let r = self.attach(&id, since);
                return self.reply_err(r, &id).await;
            }
            ClientMessage::SessionDetach { id } => {
                if self.end_attachment(&id).await {
                    Ok(())
                } else if self.state.sessions.get(&id).is_none() {
                    Err((ErrorCode::NoSuchSession, format!("no session {id}")))
                } else {
                    Ok(())
                }
            }
            ClientMessage::SessionStop { id } => {
                let r = match self.state.sessions.get(&id) {
                    None => Err((ErrorCode::NoSuchSession, format!("no session {id}"))),
                    Some(e) if !e.session().is_running() => {
                        Err((ErrorCode::SessionEnded, format!("session {id} has ended")))
                    }
                    Some(e) => {
                        e.session().stop("stopped");
                        self.log_event(Some(&id), "stop", None);
                        Ok(())
                    }
                };
                return self.reply_err(r, &id).await;
            }
            ClientMessage::SessionList {} => {
                self.send(ServerMessage::SessionList {
                    sessions: self.state.sessions.infos(),
                })
                .await;
                Ok(())
            }
        };
        if let Err(e) = result {
            self.error(e, None).await;
        }
    }

    /// Stops this connection's attachment to `id` and waits until its task is
    /// gone, so that none of its frames can follow what comes next (a new
    /// `session.attached`). Says whether there was one.
    async fn end_attachment(&mut self, id: &SessionId) -> bool {
        let Some(h) = self.attachments.remove(id) else {
            return false;
        };
        h.abort();
        let _ = h.await;
        true
    }

    async fn reply_err(&mut self, r: Result<(), ClientError>, id: &SessionId) {
        if let Err(e) = r {
            self.error(e, Some(id.to_string())).await;
        }
    }

    /// Every `claude.*` message lands here and goes to `crate::claude`.
    async fn claude(
        &mut self,
        m: ClientMessage,
        client_ref: Option<String>,
    ) -> Result<(), ClientError> {
        for reply in
            crate::claude::handle(&self.state.claude, self.state.sessions.registry(), m).await?
        {
            match reply {
                crate::claude::Reply::Send(m) => self.send(*m).await,
                crate::claude::Reply::Started(s) => {
                    let id = s.id().clone();
                    let detail = format!("claude, conversation {}", s.conversation_id());
                    self.log_event(Some(&id), "start", Some(detail));
                    self.created.insert(id.clone());
                    let created = ServerMessage::SessionCreated {
                        id,
                        workspace: self.state.name.clone(),
                        info: s.info(),
                        client_ref: None,
                    };
                    self.send(created.clone().for_request(client_ref.clone()))
                        .await;
                    let _ = self.state.services.events.send(created);
                    // The starter is attached from the first event.
                    self.attach_claude(s, Some(0));
                }
            }
        }
        Ok(())
    }

    fn attach_claude(&mut self, s: Arc<crate::claude::ClaudeSession>, since: Option<u64>) {
        // Claude events come through a small queue that a forwarder drains
        // into the socket.
        let (tx, mut rx) = mpsc::channel::<Outgoing>(ATTACH_QUEUE);
        let out = self.out.clone();
        let id = s.id().clone();
        let task = tokio::spawn(async move {
            let forward = async move {
                while let Some(m) = rx.recv().await {
                    if !Outbox::send(&out, m).await {
                        break;
                    }
                }
            };
            tokio::join!(crate::claude::attach::run_attachment(s, since, tx), forward);
        });
        if let Some(old) = self.attachments.insert(id, task) {
            old.abort();
        }
    }

    fn attach(&mut self, id: &SessionId, since: Option<u64>) -> Result<(), ClientError> {
        if let Ok(c) = crate::claude::find(self.state.sessions.registry(), id) {
            self.log_event(Some(id), "attach", since.map(|s| format!("since {s}")));
            self.attach_claude(c, since);
            return Ok(());
        }
        let t = crate::terminal::find(self.state.sessions.registry(), id)?;
        let plan = match since {
            Some(s) => Some(t.plan_replay(s)?),
            None => None,
        };
        self.log_event(Some(id), "attach", since.map(|s| format!("since {s}")));
        self.attach_terminal(t, plan);
        Ok(())
    }

    /// Starts (or restarts) the attachment task; `plan` None means a snapshot.
    fn attach_terminal(&mut self, s: Arc<TerminalSession>, plan: Option<ReplayPlan>) {
        let id = s.id().clone();
        let task = tokio::spawn(crate::terminal::attach::run(s, plan, self.out.clone()));
        if let Some(old) = self.attachments.insert(id, task) {
            old.abort();
        }
    }
}

/// The connection's sending half, shared by the connection task and every
/// attachment task. Each sends its own frames, so a keystroke's echo goes from
/// the session's attachment straight to the socket, without another task in
/// between. tokio's mutex is fair (first come, first served), so a flooding
/// session and a quiet one take turns: an echo waits for at most one frame.
#[derive(Clone)]
struct Out(Arc<tokio::sync::Mutex<SplitSink<WebSocket, Message>>>);

/// How an outgoing message goes on the wire: JSON text or a binary frame.
fn encode(m: Outgoing) -> Message {
    match m {
        Outgoing::Message(m) => text(&m),
        Outgoing::Frame(f) => Message::Binary(f.into_bytes().into()),
    }
}

impl Outbox for Out {
    async fn send(&self, m: Outgoing) -> bool {
        Out::send(self, encode(m)).await
    }

    async fn send2(&self, a: Outgoing, b: Outgoing) -> bool {
        Out::send2(self, encode(a), encode(b)).await
    }
}

impl Out {
    async fn send(&self, m: Message) -> bool {
        self.0.lock().await.send(m).await.is_ok()
    }

    /// Two messages with nothing between them (a resync and its snapshot).
    async fn send2(&self, a: Message, b: Message) -> bool {
        let mut sink = self.0.lock().await;
        sink.feed(a).await.is_ok() && sink.send(b).await.is_ok()
    }

    async fn close(&self) {
        let _ = self.0.lock().await.close().await;
    }
}

/// The session a `claude.*` message is about, when it names one.
fn named_session(m: &ClientMessage) -> Option<&SessionId> {
    match m {
        ClientMessage::ClaudeSend { id, .. }
        | ClientMessage::ClaudePermission { id, .. }
        | ClientMessage::ClaudeInterrupt { id }
        | ClientMessage::ClaudeConfigure { id, .. } => Some(id),
        _ => None,
    }
}
