//! One direction of the proxy: bytes from a source to a sink, forwarded as
//! whole frames where they fit the buffer, with the frame tracker's state kept
//! outside the copying future so that, once the future is dropped, the proxy
//! still knows whether it may write a frame of its own into the sink.
//!
//! Backpressure: the next read waits until the sink has taken the previous
//! bytes, so a slow browser stalls reading from the agent (and TCP pushes
//! back to the agent) instead of the gateway buffering without bound.

use std::io;

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;

use super::frames::{FrameError, FrameTracker, Sender};

/// A read buffer that holds no memory while its stream is idle, where the
/// source allows waiting for bytes without one. Reads go into its spare
/// capacity, so it is never zeroed.
pub struct Buffer {
    /// `len()` bytes held; capacity `size` once allocated.
    data: Vec<u8>,
    size: usize,
}

impl Buffer {
    pub fn new(size: usize) -> Self {
        Self {
            data: Vec::new(),
            size,
        }
    }

    /// A buffer starting with `early` (bytes that came with a handshake).
    pub fn with_bytes(size: usize, early: &[u8]) -> Self {
        let mut b = Self::new(size.max(early.len()));
        if !early.is_empty() {
            b.allocate();
            b.data.extend_from_slice(early);
        }
        b
    }

    /// The buffer, with room to read into.
    fn allocate(&mut self) -> &mut Vec<u8> {
        if self.data.capacity() == 0 {
            self.data.reserve_exact(self.size);
        }
        &mut self.data
    }

    fn release_if_empty(&mut self) {
        if self.data.is_empty() {
            self.data = Vec::new();
        }
    }

    fn len(&self) -> usize {
        self.data.len()
    }

    fn is_full(&self) -> bool {
        self.data.len() >= self.size
    }

    fn consume(&mut self, n: usize) {
        self.data.drain(..n);
    }

    /// Drops bytes after the first `n` (what follows a close frame).
    fn truncate(&mut self, n: usize) {
        self.data.truncate(n);
    }
}

/// Where a direction reads from.
pub trait Source {
    /// Reads more bytes into `buf`'s spare room (there is always some);
    /// `Ok(0)` at end of stream.
    fn read_into(&mut self, buf: &mut Buffer) -> impl Future<Output = io::Result<usize>> + Send;
}

/// The agent's socket: waits for readiness with no buffer, so an idle
/// connection holds none.
pub struct TcpSource(pub OwnedReadHalf);

impl Source for TcpSource {
    async fn read_into(&mut self, buf: &mut Buffer) -> io::Result<usize> {
        loop {
            buf.release_if_empty();
            self.0.readable().await?;
            match self.0.try_read_buf(buf.allocate()) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return other,
            }
        }
    }
}

/// Any other stream (the browser's, upgraded by hyper): a small buffer kept
/// for the connection's life.
pub struct IoSource<R>(pub R);

impl<R: AsyncRead + Unpin + Send> Source for IoSource<R> {
    async fn read_into(&mut self, buf: &mut Buffer) -> io::Result<usize> {
        self.0.read_buf(buf.allocate()).await
    }
}

/// One direction's position in its stream.
#[derive(Debug)]
pub struct Half {
    pub tracker: FrameTracker,
    /// Bytes written to the sink.
    sent: u64,
    /// A write to the sink was started and has not finished (if the copying
    /// future was dropped meanwhile, the sink may hold part of a frame).
    writing: bool,
}

impl Half {
    pub fn new(sender: Sender, max_payload: u64) -> Self {
        Self {
            tracker: FrameTracker::new(sender, max_payload),
            sent: 0,
            writing: false,
        }
    }

    /// The sink ends on a frame boundary: a control frame may be written.
    pub fn sink_at_frame_boundary(&self) -> bool {
        !self.writing && self.sent == self.tracker.boundary()
    }

    /// The sink ends where a new data message may start.
    pub fn sink_at_message_boundary(&self) -> bool {
        self.sink_at_frame_boundary() && self.tracker.message_may_start_at_boundary()
    }
}

/// How one direction ended.
#[derive(Debug)]
pub enum End {
    /// The source's close frame was forwarded.
    Closed,
    /// The source vanished without a close (reset, EOF, read error).
    SourceLost(String),
    /// The source sent something that is not a WebSocket stream.
    Invalid(FrameError),
    /// Writing to the sink failed.
    SinkLost(String),
}

/// Copies `src` to `dst` until the source's close frame has been forwarded
/// or either side fails. Complete frames are written together; a frame that
/// cannot fit the buffer goes out in buffer-sized pieces.
pub async fn relay<S, W>(
    src: &mut S,
    dst: &mut W,
    half: &mut Half,
    buf: &mut Buffer,
    bytes: &Counter,
) -> End
where
    S: Source,
    W: AsyncWrite + Unpin,
{
    // The buffer holds the stream from `sent` on, of which the tracker has
    // seen up to `pos`: bytes that came with the handshake are fed first, and
    // after an earlier call was dropped (the proxy drains a side with a new
    // one) nothing is fed twice.
    let mut fresh = (half.sent + buf.len() as u64 - half.tracker.pos()) as usize;
    loop {
        if fresh > 0 {
            let start = buf.len() - fresh;
            if let Err(e) = half.tracker.feed(&buf.data[start..]) {
                return End::Invalid(e);
            }
            let boundary = half.tracker.boundary();
            // `pos - sent` is what the buffer holds; after a close the tracker
            // stops, so anything behind it is dropped here.
            let held = (half.tracker.pos() - half.sent) as usize;
            buf.truncate(held);
            let upto = if boundary > half.sent {
                (boundary - half.sent) as usize
            } else if half.sent > boundary || buf.is_full() {
                // Mid-way through a frame larger than the buffer.
                held
            } else {
                0
            };
            if upto > 0 {
                half.writing = true;
                if let Err(e) = dst.write_all(&buf.data[..upto]).await {
                    return End::SinkLost(e.to_string());
                }
                half.writing = false;
                half.sent += upto as u64;
                bytes.inc_by(upto as u64);
                buf.consume(upto);
            }
            if half.tracker.closed() && half.sent == boundary {
                let _ = dst.flush().await;
                return End::Closed;
            }
        }
        fresh = match src.read_into(buf).await {
            Ok(0) => return End::SourceLost("connection closed without a close frame".into()),
            Ok(n) => n,
            Err(e) => return End::SourceLost(e.to_string()),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::super::frames;
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    /// A source yielding the given pieces, then end of stream.
    struct Pieces(Vec<Vec<u8>>);

    impl Source for Pieces {
        async fn read_into(&mut self, buf: &mut Buffer) -> io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            let room = buf.size - buf.len();
            let piece = &mut self.0[0];
            let n = piece.len().min(room);
            buf.allocate().extend(piece.drain(..n));
            if piece.is_empty() {
                self.0.remove(0);
            }
            Ok(n)
        }
    }

    #[tokio::test]
    async fn a_partial_frame_is_held_back_so_the_sink_stays_on_a_boundary() {
        let one = frames::text(Sender::Server, "first");
        let two = frames::text(Sender::Server, "second");
        let mut src = Pieces(vec![[one.clone(), two[..3].to_vec()].concat()]);
        let mut out = Vec::new();
        let mut half = Half::new(Sender::Server, 1 << 20);
        let mut buf = Buffer::new(64);
        let end = relay(&mut src, &mut out, &mut half, &mut buf, &Counter::default()).await;
        assert!(matches!(end, End::SourceLost(_)), "{end:?}");
        assert_eq!(out, one, "only the whole frame went out");
        assert!(half.sink_at_message_boundary());
    }

    #[tokio::test]
    async fn a_later_call_carries_on_where_an_earlier_one_stopped() {
        let one = frames::text(Sender::Client, "first");
        let two = frames::text(Sender::Client, "second");
        let close = frames::close(Sender::Client, CloseCode::Normal, "");
        let mut half = Half::new(Sender::Client, 1 << 20);
        let mut buf = Buffer::new(4096);
        let mut out = Vec::new();
        // The first call ends with part of `two` read and held back...
        let mut src = Pieces(vec![[one.clone(), two[..4].to_vec()].concat()]);
        relay(&mut src, &mut out, &mut half, &mut buf, &Counter::default()).await;
        // ...and the next one (as when the proxy drains a side) finishes it.
        let mut src = Pieces(vec![[two[4..].to_vec(), close.clone()].concat()]);
        let end = relay(&mut src, &mut out, &mut half, &mut buf, &Counter::default()).await;
        assert!(matches!(end, End::Closed), "{end:?}");
        assert_eq!(out, [one, two, close].concat());
    }

    #[tokio::test]
    async fn frames_larger_than_the_buffer_stream_through_intact() {
        let big = frames::text(Sender::Server, &"y".repeat(1000));
        let close = frames::close(Sender::Server, CloseCode::Normal, "done");
        let stream = [big.clone(), close.clone()].concat();
        let mut src = Pieces(stream.chunks(7).map(<[u8]>::to_vec).collect());
        let (mut sink, mut peer) = tokio::io::duplex(1 << 16);
        let mut half = Half::new(Sender::Server, 1 << 20);
        let mut buf = Buffer::new(100);
        let end = relay(
            &mut src,
            &mut sink,
            &mut half,
            &mut buf,
            &Counter::default(),
        )
        .await;
        assert!(matches!(end, End::Closed), "{end:?}");
        sink.shutdown().await.unwrap();
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, stream);
    }

    #[tokio::test]
    async fn nothing_after_a_close_frame_is_forwarded() {
        let close = frames::close(Sender::Client, CloseCode::Normal, "");
        let after = frames::text(Sender::Client, "late");
        let mut src = Pieces(vec![[close.clone(), after].concat()]);
        let mut out = Vec::new();
        let mut half = Half::new(Sender::Client, 1 << 20);
        let mut buf = Buffer::new(4096);
        let end = relay(&mut src, &mut out, &mut half, &mut buf, &Counter::default()).await;
        assert!(matches!(end, End::Closed), "{end:?}");
        assert_eq!(out, close);
    }

    #[tokio::test]
    async fn an_invalid_stream_ends_the_direction() {
        let mut src = Pieces(vec![frames::text(Sender::Server, "unmasked")]);
        let mut out = Vec::new();
        let mut half = Half::new(Sender::Client, 1 << 20);
        let mut buf = Buffer::new(4096);
        let end = relay(&mut src, &mut out, &mut half, &mut buf, &Counter::default()).await;
        assert!(matches!(end, End::Invalid(FrameError::Masking)), "{end:?}");
        assert!(out.is_empty());
    }

    #[test]
    fn an_idle_buffer_holds_no_memory() {
        let mut b = Buffer::new(1 << 16);
        assert!(b.allocate().capacity() >= 1 << 16);
        b.release_if_empty();
        assert_eq!(b.data.capacity(), 0);
    }
}
