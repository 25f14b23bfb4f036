//! WebSocket frame boundaries in a relayed byte stream, and the few frames the
//! gateway writes itself.
//!
//! The proxy copies bytes, not messages: frames from the agent (unmasked, as
//! a server sends them) are valid frames for the browser, and frames from the
//! browser (masked, as a client sends them) are valid for the agent. The
//! tracker only follows where frames start and end, so the gateway knows when
//! it may put a frame of its own into a stream (an `error` and a close when
//! the agent dies, a close at shutdown) and when a close has gone through.
//! Headers are parsed by tungstenite's own `FrameHeader`.

use std::io::Cursor;

use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};

/// Which end of a WebSocket wrote a stream: a client masks its frames, a
/// server does not (RFC 6455, 5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    Client,
    Server,
}

/// Why a stream is not a WebSocket stream the gateway can relay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("malformed frame header: {0}")]
    Malformed(String),
    #[error("a frame of {0} bytes is over the limit")]
    TooLarge(u64),
    #[error("a client's frames must be masked and a server's must not")]
    Masking,
    #[error("reserved bits set, but no extension was negotiated")]
    ReservedBits,
    #[error("a control frame must be final and at most 125 bytes")]
    BadControl,
    #[error("a continuation frame without a message to continue")]
    StrayContinuation,
    #[error("a new message inside an unfinished fragmented one")]
    InterleavedMessage,
}

/// The longest frame header: 2 bytes, 8 of extended length, 4 of mask.
const MAX_HEADER: usize = 14;

/// Follows frame boundaries through a byte stream fed in arbitrary pieces.
/// Positions count bytes from the start of the stream.
#[derive(Debug)]
pub struct FrameTracker {
    sender: Sender,
    max_payload: u64,
    head: [u8; MAX_HEADER],
    head_len: usize,
    /// Payload bytes of the current frame still to come; `None` between frames.
    payload_left: Option<u64>,
    current_is_close: bool,
    /// Inside a fragmented data message (after a non-final first frame).
    fragmented: bool,
    /// `fragmented` as it was at `boundary`.
    fragmented_at_boundary: bool,
    closed: bool,
    pos: u64,
    boundary: u64,
}

impl FrameTracker {
    pub fn new(sender: Sender, max_payload: u64) -> Self {
        Self {
            sender,
            max_payload,
            head: [0; MAX_HEADER],
            head_len: 0,
            payload_left: None,
            current_is_close: false,
            fragmented: false,
            fragmented_at_boundary: false,
            closed: false,
            pos: 0,
            boundary: 0,
        }
    }

    /// Bytes consumed so far.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// Where the last complete frame ended.
    pub fn boundary(&self) -> u64 {
        self.boundary
    }

    /// A close frame has ended at `boundary`; nothing after it is consumed.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Whether a data message may start at `boundary` (not inside a
    /// fragmented message; control frames may go there regardless).
    pub fn message_may_start_at_boundary(&self) -> bool {
        !self.fragmented_at_boundary
    }

    /// Consumes `bytes`, the stream's next piece. After a close frame the
    /// rest is ignored: an endpoint sends nothing after its close.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), FrameError> {
        while !bytes.is_empty() && !self.closed {
            if let Some(left) = self.payload_left {
                let take = left.min(bytes.len() as u64);
                bytes = &bytes[take as usize..];
                self.pos += take;
                if take == left {
                    self.end_frame();
                } else {
                    self.payload_left = Some(left - take);
                }
                continue;
            }
            let take = (MAX_HEADER - self.head_len).min(bytes.len());
            self.head[self.head_len..self.head_len + take].copy_from_slice(&bytes[..take]);
            let mut cursor = Cursor::new(&self.head[..self.head_len + take]);
            match FrameHeader::parse(&mut cursor) {
                Ok(None) => {
                    // Fourteen bytes always hold a header, so all of `bytes`
                    // was taken.
                    self.head_len += take;
                    self.pos += take as u64;
                    bytes = &bytes[take..];
                }
                Ok(Some((header, len))) => {
                    let used = cursor.position() as usize - self.head_len;
                    self.head_len = 0;
                    self.pos += used as u64;
                    bytes = &bytes[used..];
                    self.start_frame(&header, len)?;
                }
                Err(e) => return Err(FrameError::Malformed(e.to_string())),
            }
        }
        Ok(())
    }

    fn start_frame(&mut self, h: &FrameHeader, len: u64) -> Result<(), FrameError> {
        if h.mask.is_some() != (self.sender == Sender::Client) {
            return Err(FrameError::Masking);
        }
        if h.rsv1 || h.rsv2 || h.rsv3 {
            return Err(FrameError::ReservedBits);
        }
        if len > self.max_payload {
            return Err(FrameError::TooLarge(len));
        }
        self.current_is_close = false;
        match h.opcode {
            OpCode::Control(c) => {
                if !h.is_final || len > 125 {
                    return Err(FrameError::BadControl);
                }
                self.current_is_close = c == Control::Close;
            }
            OpCode::Data(Data::Continue) => {
                if !self.fragmented {
                    return Err(FrameError::StrayContinuation);
                }
                self.fragmented = !h.is_final;
            }
            OpCode::Data(_) => {
                if self.fragmented {
                    return Err(FrameError::InterleavedMessage);
                }
                self.fragmented = !h.is_final;
            }
        }
        self.payload_left = Some(len);
        if len == 0 {
            self.end_frame();
        }
        Ok(())
    }

    fn end_frame(&mut self) {
        self.payload_left = None;
        self.boundary = self.pos;
        self.fragmented_at_boundary = self.fragmented;
        self.closed = self.current_is_close;
    }
}

/// A final text frame as `sender` would write it.
pub fn text(sender: Sender, text: &str) -> Vec<u8> {
    encode(
        Frame::message(text.as_bytes().to_vec(), OpCode::Data(Data::Text), true),
        sender,
    )
}

/// A close frame as `sender` would write it.
pub fn close(sender: Sender, code: CloseCode, reason: &str) -> Vec<u8> {
    encode(
        Frame::close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })),
        sender,
    )
}

fn encode(mut frame: Frame, sender: Sender) -> Vec<u8> {
    if sender == Sender::Client {
        let mut mask = [0u8; 4];
        rand::fill(&mut mask);
        frame.header_mut().mask = Some(mask);
    }
    let mut out = Vec::with_capacity(frame.len());
    // Writing into a Vec cannot fail.
    let _ = frame.format(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: u64 = 1 << 20;

    fn frame(op: OpCode, fin: bool, payload: Vec<u8>, sender: Sender) -> Vec<u8> {
        let header = FrameHeader {
            is_final: fin,
            opcode: op,
            mask: (sender == Sender::Client).then_some([1, 2, 3, 4]),
            ..FrameHeader::default()
        };
        let f = Frame::from_payload(header, payload.into());
        let mut out = Vec::new();
        f.format(&mut out).unwrap();
        out
    }

    #[test]
    fn a_close_frame_ends_the_stream_and_later_bytes_are_not_consumed() {
        let mut stream = text(Sender::Server, "hi");
        let close_at = stream.len() as u64;
        stream.extend(close(Sender::Server, CloseCode::Normal, "bye"));
        let end = stream.len() as u64;
        stream.extend(text(Sender::Server, "after"));
        let mut t = FrameTracker::new(Sender::Server, MAX);
        t.feed(&stream).unwrap();
        assert!(close_at < end);
        assert!(t.closed());
        assert_eq!((t.pos(), t.boundary()), (end, end));
    }

    #[test]
    fn refuses_what_a_relay_could_not_follow() {
        let cases: Vec<(Sender, Vec<u8>, FrameError)> = vec![
            (
                Sender::Server,
                text(Sender::Client, "masked from a server"),
                FrameError::Masking,
            ),
            (
                Sender::Client,
                text(Sender::Server, "unmasked from a client"),
                FrameError::Masking,
            ),
            (Sender::Server, vec![0xC1, 0x00], FrameError::ReservedBits),
            (
                Sender::Server,
                frame(
                    OpCode::Data(Data::Binary),
                    true,
                    vec![0; 2 << 20],
                    Sender::Server,
                ),
                FrameError::TooLarge(2 << 20),
            ),
            (
                Sender::Server,
                frame(
                    OpCode::Control(Control::Ping),
                    false,
                    vec![],
                    Sender::Server,
                ),
                FrameError::BadControl,
            ),
            (
                Sender::Server,
                frame(
                    OpCode::Control(Control::Ping),
                    true,
                    vec![0; 126],
                    Sender::Server,
                ),
                FrameError::BadControl,
            ),
            (
                Sender::Server,
                frame(OpCode::Data(Data::Continue), true, vec![1], Sender::Server),
                FrameError::StrayContinuation,
            ),
            (
                Sender::Server,
                [
                    frame(
                        OpCode::Data(Data::Text),
                        false,
                        b"a".to_vec(),
                        Sender::Server,
                    ),
                    frame(
                        OpCode::Data(Data::Text),
                        true,
                        b"b".to_vec(),
                        Sender::Server,
                    ),
                ]
                .concat(),
                FrameError::InterleavedMessage,
            ),
        ];
        for (sender, bytes, want) in cases {
            let mut t = FrameTracker::new(sender, MAX);
            assert_eq!(t.feed(&bytes), Err(want.clone()), "{want}");
        }
        let mut t = FrameTracker::new(Sender::Server, MAX);
        assert!(matches!(
            t.feed(&[0x83, 0x00]),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn a_message_may_not_start_inside_a_fragmented_one_but_a_control_frame_may() {
        let mut t = FrameTracker::new(Sender::Server, MAX);
        t.feed(&frame(
            OpCode::Data(Data::Text),
            false,
            b"par".to_vec(),
            Sender::Server,
        ))
        .unwrap();
        assert_eq!(t.pos(), t.boundary());
        assert!(!t.message_may_start_at_boundary());
        t.feed(&frame(
            OpCode::Control(Control::Ping),
            true,
            vec![],
            Sender::Server,
        ))
        .unwrap();
        assert!(!t.message_may_start_at_boundary());
        t.feed(&frame(
            OpCode::Data(Data::Continue),
            true,
            b"t".to_vec(),
            Sender::Server,
        ))
        .unwrap();
        assert!(t.message_may_start_at_boundary());
    }

    fn arb_frame() -> impl Strategy<Value = (u8, usize)> {
        // (kind, payload length): lengths cover all three length encodings.
        (0u8..4, prop_oneof![0usize..126, 126usize..70_000])
    }

    proptest! {
        /// Whatever the split of the stream into pieces, after each piece the
        /// tracker's boundary is the end of the last whole frame in it.
        #[test]
        fn boundaries_match_the_frames_whatever_the_pieces(
            frames in proptest::collection::vec(arb_frame(), 1..12),
            client in any::<bool>(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..16),
        ) {
            let sender = if client { Sender::Client } else { Sender::Server };
            let mut stream = Vec::new();
            let mut ends = Vec::new();
            for (kind, len) in frames {
                let (op, payload) = match kind {
                    0 => (OpCode::Data(Data::Text), vec![b'x'; len]),
                    1 => (OpCode::Data(Data::Binary), vec![0xAB; len]),
                    2 => (OpCode::Control(Control::Ping), vec![7; len % 126]),
                    _ => (OpCode::Control(Control::Pong), vec![9; len % 126]),
                };
                stream.extend(frame(op, true, payload, sender));
                ends.push(stream.len() as u64);
            }
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
            cuts.push(stream.len());
            cuts.sort_unstable();
            let mut t = FrameTracker::new(sender, MAX);
            let mut at = 0;
            for cut in cuts {
                t.feed(&stream[at..cut]).unwrap();
                at = cut;
                let want = ends.iter().copied().filter(|&e| e <= at as u64).max().unwrap_or(0);
                prop_assert_eq!(t.pos(), at as u64);
                prop_assert_eq!(t.boundary(), want);
                prop_assert!(t.message_may_start_at_boundary());
                prop_assert!(!t.closed());
            }
        }
    }
}
