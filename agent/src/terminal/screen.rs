//! The server-side terminal emulator of a session: what a fresh client needs to
//! draw the screen as it stands, alternate screen and modes included, without
//! replaying raw bytes that may start in the middle of an escape sequence.
//!
//! Pure: it is fed the output stream (with the offsets where resizes happened)
//! and turns the screen into bytes. The session feeds it lazily, so a flood of
//! output costs parsing only when someone wants a snapshot or the CPU is idle.

use std::collections::VecDeque;
use std::num::NonZeroU16;

pub struct Screen {
    parser: vt100::Parser,
    /// Offset of the next byte the parser expects.
    parsed_upto: u64,
    /// Resizes not yet applied: (offset, rows, cols). They take effect between
    /// the bytes before and after their offset, as they did on the real PTY.
    resizes: VecDeque<(u64, u16, u16)>,
}

fn nz(v: u16) -> NonZeroU16 {
    NonZeroU16::new(v).unwrap_or(NonZeroU16::MIN)
}

impl Screen {
    pub fn new(rows: u16, cols: u16, offset: u64) -> Self {
        Screen {
            parser: vt100::Parser::new(nz(rows), nz(cols), 0),
            parsed_upto: offset,
            resizes: VecDeque::new(),
        }
    }

    pub fn parsed_upto(&self) -> u64 {
        self.parsed_upto
    }

    /// Records that the terminal was resized when the stream stood at `offset`.
    pub fn resize_at(&mut self, offset: u64, rows: u16, cols: u16) {
        self.resizes.push_back((offset, rows, cols));
        self.apply_due_resizes();
    }

    fn apply_due_resizes(&mut self) {
        while let Some(&(at, rows, cols)) = self.resizes.front() {
            if at > self.parsed_upto {
                break;
            }
            self.parser.screen_mut().set_size(nz(rows), nz(cols));
            self.resizes.pop_front();
        }
    }

    /// Feeds the bytes that start at `offset`, which must be `parsed_upto()`.
    /// Bytes already parsed are skipped; a gap (bytes lost before they could be
    /// parsed) is jumped over, since nothing better can be done.
    pub fn feed(&mut self, offset: u64, mut bytes: &[u8]) {
        let mut at = offset;
        if at < self.parsed_upto {
            let skip = ((self.parsed_upto - at) as usize).min(bytes.len());
            bytes = &bytes[skip..];
            at += skip as u64;
        }
        if at > self.parsed_upto {
            self.parsed_upto = at;
        }
        while !bytes.is_empty() {
            self.apply_due_resizes();
            let until_resize = self.resizes.front().map_or(bytes.len(), |&(r, _, _)| {
                ((r - self.parsed_upto) as usize).min(bytes.len())
            });
            let (now, later) = bytes.split_at(until_resize);
            self.parser.process(now);
            self.parsed_upto += now.len() as u64;
            bytes = later;
        }
        self.apply_due_resizes();
    }

    /// Moves past bytes that can no longer be read (deleted by retention).
    pub fn skip_to(&mut self, offset: u64) {
        if offset > self.parsed_upto {
            self.parsed_upto = offset;
            self.apply_due_resizes();
        }
    }

    #[cfg(test)]
    pub fn size(&self) -> (u16, u16) {
        let (r, c) = self.parser.screen().size();
        (r.get(), c.get())
    }

    #[cfg(test)]
    pub fn screen(&self) -> &vt100::Screen {
        self.parser.screen()
    }

    /// Bytes that, written to a freshly reset terminal of the same size,
    /// reproduce the screen: alternate screen, contents, attributes, cursor
    /// position and visibility, input modes.
    ///
    /// The primary screen hidden behind an alternate-screen program is not
    /// kept by the emulator, so after such a program exits the client sees the
    /// primary screen blank rather than as it was.
    pub fn snapshot(&self) -> Vec<u8> {
        let s = self.parser.screen();
        let mut out = Vec::with_capacity(4096);
        if s.alternate_screen() {
            out.extend_from_slice(b"\x1b[?1049h");
        }
        out.extend_from_slice(s.state_formatted().as_bytes());
        // state_formatted leaves the cursor where the last drawn cell left it;
        // put it where the program had it, and restore the pen colours.
        out.extend_from_slice(s.cursor_state_formatted().as_bytes());
        out.extend_from_slice(s.attributes_formatted().as_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay(snapshot: &[u8], rows: u16, cols: u16) -> vt100::Parser {
        let mut p = vt100::Parser::new(nz(rows), nz(cols), 0);
        p.process(snapshot);
        p
    }

    #[test]
    fn snapshot_reproduces_contents_cursor_and_alternate_screen() {
        let mut s = Screen::new(5, 20, 0);
        let out = b"hello\r\nworld\x1b[?1049h\x1b[H\x1b[2Jvim here\x1b[3;4H\x1b[?1h";
        s.feed(0, out);
        assert_eq!(s.parsed_upto(), out.len() as u64);
        let p = replay(&s.snapshot(), 5, 20);
        let r = p.screen();
        assert!(r.alternate_screen());
        assert!(r.contents().contains("vim here"));
        assert!(!r.contents().contains("hello"));
        assert_eq!(r.cursor_position(), (2, 3));
        assert!(r.application_cursor());
        assert_eq!(r.contents(), s.screen().contents());
    }

    #[test]
    fn primary_screen_snapshot_has_no_alternate_switch() {
        let mut s = Screen::new(3, 10, 100);
        s.feed(100, b"\x1b[31mred\x1b[0m ok");
        let snap = s.snapshot();
        assert!(!snap.windows(8).any(|w| w == b"\x1b[?1049h"));
        let p = replay(&snap, 3, 10);
        assert_eq!(p.screen().contents(), "red ok");
        assert_eq!(
            p.screen().cell(0, 0).unwrap().fgcolor(),
            vt100::Color::Idx(1)
        );
    }

    #[test]
    fn resizes_apply_at_their_offset() {
        let mut s = Screen::new(2, 10, 0);
        // 12 chars at 10 cols wrap; the resize to 20 cols comes after them.
        s.resize_at(12, 2, 20);
        s.feed(0, b"abcdefghijkl\r\nxyz");
        assert_eq!(s.size(), (2, 20));
        let c = s.screen().contents();
        assert!(c.contains("xyz"), "{c:?}");
    }

    #[test]
    fn overlapping_and_gapped_feeds() {
        let mut s = Screen::new(2, 10, 0);
        s.feed(0, b"abc");
        s.feed(1, b"bcdef"); // only "def" is new
        assert_eq!(s.screen().contents(), "abcdef");
        s.feed(10, b"Z"); // gap: jumped over
        assert_eq!(s.parsed_upto(), 11);
        s.skip_to(5);
        assert_eq!(s.parsed_upto(), 11);
    }
}
