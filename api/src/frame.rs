//! Binary WebSocket frames: the hot path for terminal bytes.
//!
//! ```text
//! offset  size  field
//! 0       1     kind     1 = output, 2 = snapshot, 4 = range (server to client),
//!                        3 = input (client to server)
//! 1       1     n        length of the session id, 1..=64
//! 2       n     id       session id, ASCII [A-Za-z0-9_-]
//! 2+n     8     offset   u64 big-endian: stream offset of the first payload byte (output);
//!                        the stream offset the screen reflects (snapshot); 0 for input
//! 10+n    ...   payload  raw bytes, never re-encoded
//! ```
//!
//! Every output byte of a session has an offset, so a client that remembers the
//! end of the last frame it saw can ask for exactly what it missed.

use crate::session::{SessionId, is_valid_session_id};

/// What a binary frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// Terminal output, starting at `offset` in the session's byte stream.
    Output = 1,
    /// A serialised screen that, written to a fresh terminal, reproduces the
    /// session's screen as it stood at stream `offset`. Live output follows from there.
    Snapshot = 2,
    /// Keystrokes for the session (client to server).
    Input = 3,
    /// Earlier output read on request (`session.read`), from `offset`; not
    /// part of the live stream, so it never moves a client's position in it.
    Range = 4,
}

impl FrameKind {
    fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(FrameKind::Output),
            2 => Some(FrameKind::Snapshot),
            3 => Some(FrameKind::Input),
            4 => Some(FrameKind::Range),
            _ => None,
        }
    }
}

/// A decoded frame borrowing from the buffer it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: FrameKind,
    pub id: &'a str,
    pub offset: u64,
    pub payload: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame is {0} bytes, shorter than its header")]
    Truncated(usize),
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("session id in frame is not valid")]
    BadSessionId,
}

/// Bytes of header before the payload for a session id of `id_len` bytes.
pub const fn header_len(id_len: usize) -> usize {
    2 + id_len + 8
}

impl<'a> Frame<'a> {
    pub fn new(kind: FrameKind, id: &'a SessionId, offset: u64, payload: &'a [u8]) -> Self {
        Frame {
            kind,
            id: id.as_str(),
            offset,
            payload,
        }
    }

    /// Decodes a frame, borrowing id and payload from `buf`.
    pub fn decode(buf: &'a [u8]) -> Result<Self, FrameError> {
        if buf.len() < 2 {
            return Err(FrameError::Truncated(buf.len()));
        }
        let kind = FrameKind::from_u8(buf[0]).ok_or(FrameError::UnknownKind(buf[0]))?;
        let n = buf[1] as usize;
        if buf.len() < header_len(n) {
            return Err(FrameError::Truncated(buf.len()));
        }
        let id = std::str::from_utf8(&buf[2..2 + n]).map_err(|_| FrameError::BadSessionId)?;
        if !is_valid_session_id(id) {
            return Err(FrameError::BadSessionId);
        }
        let mut off = [0u8; 8];
        off.copy_from_slice(&buf[2 + n..2 + n + 8]);
        Ok(Frame {
            kind,
            id,
            offset: u64::from_be_bytes(off),
            payload: &buf[header_len(n)..],
        })
    }

    /// Appends the encoded frame to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(header_len(self.id.len()) + self.payload.len());
        encode_header_into(self.kind, self.id, self.offset, out);
        out.extend_from_slice(self.payload);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
}

/// Appends only the header, for writers that copy the payload in themselves
/// (straight from a ring buffer, say) to avoid an intermediate copy.
pub fn encode_header_into(kind: FrameKind, id: &str, offset: u64, out: &mut Vec<u8>) {
    debug_assert!(is_valid_session_id(id));
    out.push(kind as u8);
    out.push(id.len() as u8);
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(&offset.to_be_bytes());
}

/// A frame encoded as it goes on the wire, its payload added after the
/// header in as many pieces as its source gives (a ring buffer's two slices,
/// a file read) without another copy; the payload stays at hand for the
/// writer (its length moves a cursor on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameBuf {
    bytes: Vec<u8>,
    header: usize,
    offset: u64,
}

impl FrameBuf {
    /// A frame with its header written and room for `payload_capacity` bytes.
    pub fn new(kind: FrameKind, id: &SessionId, offset: u64, payload_capacity: usize) -> Self {
        let header = header_len(id.as_str().len());
        let mut bytes = Vec::with_capacity(header + payload_capacity);
        encode_header_into(kind, id.as_str(), offset, &mut bytes);
        FrameBuf {
            bytes,
            header,
            offset,
        }
    }

    /// A frame of `payload`, copied once.
    pub fn of(kind: FrameKind, id: &SessionId, offset: u64, payload: &[u8]) -> Self {
        let mut f = FrameBuf::new(kind, id, offset, payload.len());
        f.push(payload);
        f
    }

    pub fn push(&mut self, payload: &[u8]) {
        self.bytes.extend_from_slice(payload);
    }

    /// Lets `fill` append payload (say, a read from a file into the vector).
    /// What it does to the header is undone: only the payload can change.
    pub fn fill<R>(&mut self, fill: impl FnOnce(&mut Vec<u8>) -> R) -> R {
        let mut payload = self.bytes.split_off(self.header);
        let r = fill(&mut payload);
        self.bytes.truncate(self.header);
        self.bytes.append(&mut payload);
        r
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn payload(&self) -> &[u8] {
        &self.bytes[self.header..]
    }

    /// The stream offset just past the payload.
    pub fn end(&self) -> u64 {
        self.offset + self.payload().len() as u64
    }

    /// The frame's bytes, as sent.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sid(s: &str) -> SessionId {
        SessionId::new(s).unwrap()
    }

    #[test]
    fn layout_is_as_documented() {
        let id = sid("ab");
        let bytes = Frame::new(FrameKind::Output, &id, 0x0102, b"hi").encode();
        assert_eq!(
            bytes,
            [1, 2, b'a', b'b', 0, 0, 0, 0, 0, 0, 1, 2, b'h', b'i']
        );
    }

    #[test]
    fn rejects_short_unknown_and_bad_ids() {
        assert_eq!(Frame::decode(&[]), Err(FrameError::Truncated(0)));
        assert_eq!(Frame::decode(&[1]), Err(FrameError::Truncated(1)));
        assert_eq!(
            Frame::decode(&[9, 1, b'a', 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(FrameError::UnknownKind(9))
        );
        // header claims a 5-byte id, buffer has fewer bytes than the header
        assert_eq!(
            Frame::decode(&[1, 5, b'a', b'b']),
            Err(FrameError::Truncated(4))
        );
        // empty id
        assert_eq!(
            Frame::decode(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(FrameError::BadSessionId)
        );
        // id with a slash
        assert_eq!(
            Frame::decode(&[3, 1, b'/', 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(FrameError::BadSessionId)
        );
        // id that is not UTF-8
        assert_eq!(
            Frame::decode(&[3, 1, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(FrameError::BadSessionId)
        );
    }

    #[test]
    fn empty_payload_is_allowed() {
        let id = sid("x");
        let bytes = Frame::new(FrameKind::Input, &id, 0, b"").encode();
        let f = Frame::decode(&bytes).unwrap();
        assert_eq!(f.payload, b"");
        assert_eq!(f.kind, FrameKind::Input);
    }

    #[test]
    fn a_frame_built_in_pieces_is_the_frame_encoded_whole() {
        let id = sid("t1");
        let whole = Frame::new(FrameKind::Range, &id, 7, b"hello world").encode();
        let mut f = FrameBuf::new(FrameKind::Range, &id, 7, 0);
        f.push(b"hello");
        let n = f.fill(|v| {
            v.extend_from_slice(b" world");
            6
        });
        assert_eq!((n, f.payload(), f.end()), (6, &b"hello world"[..], 18));
        assert_eq!(f.clone().into_bytes(), whole);
        assert_eq!(FrameBuf::of(FrameKind::Range, &id, 7, b"hello world"), f);
    }

    #[test]
    fn a_fill_cannot_touch_the_header() {
        let id = sid("t1");
        let mut f = FrameBuf::of(FrameKind::Output, &id, 1, b"ab");
        f.fill(|v| v.clear());
        assert_eq!(
            f.into_bytes(),
            Frame::new(FrameKind::Output, &id, 1, b"").encode()
        );
    }

    proptest! {
        #[test]
        fn round_trips(kind in prop::sample::select(vec![FrameKind::Output, FrameKind::Snapshot, FrameKind::Input, FrameKind::Range]),
                       id in "[A-Za-z0-9_-]{1,64}",
                       offset: u64,
                       payload in prop::collection::vec(any::<u8>(), 0..2048)) {
            let id = SessionId::new(&id).unwrap();
            let bytes = Frame::new(kind, &id, offset, &payload).encode();
            prop_assert_eq!(bytes.len(), header_len(id.as_str().len()) + payload.len());
            let f = Frame::decode(&bytes).unwrap();
            prop_assert_eq!(f.kind, kind);
            prop_assert_eq!(f.id, id.as_str());
            prop_assert_eq!(f.offset, offset);
            prop_assert_eq!(f.payload, &payload[..]);
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..128)) {
            let _ = Frame::decode(&bytes);
        }
    }
}
