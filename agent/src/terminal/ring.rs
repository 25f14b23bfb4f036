//! An offset-addressed byte ring: the last `capacity` bytes of a session's
//! output stream, each addressed by its offset in the whole stream.
//!
//! Pure data structure, no I/O. Readers ask for bytes from an offset and either
//! get them (possibly in two slices, where the ring wraps) or learn that the
//! offset has been overwritten, which is how a slow subscriber finds out it fell
//! behind.

/// The requested offset is older than anything the ring still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lapped {
    /// Oldest offset still in the ring.
    pub start: u64,
}

#[derive(Debug)]
pub struct Ring {
    buf: Vec<u8>,
    cap: usize,
    start: u64,
    end: u64,
}

impl Ring {
    /// An empty ring whose next byte will have offset `offset`.
    ///
    /// The buffer grows as output arrives, up to `capacity`: a quiet session
    /// costs little memory however big the ring may become.
    pub fn new(capacity: usize, offset: u64) -> Self {
        assert!(capacity > 0, "ring capacity must be positive");
        Ring {
            buf: Vec::new(),
            cap: capacity,
            start: offset,
            end: offset,
        }
    }

    /// Makes `buf[..len]` addressable, growing by doubling but never past `cap`.
    fn grow_to(&mut self, len: usize) {
        if len <= self.buf.len() {
            return;
        }
        if len > self.buf.capacity() {
            let target = len.max(self.buf.capacity() * 2).min(self.cap);
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.resize(len, 0);
    }

    /// Oldest offset still held.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Offset the next appended byte will have.
    pub fn end(&self) -> u64 {
        self.end
    }

    fn pos(&self, offset: u64) -> usize {
        (offset % self.cap as u64) as usize
    }

    pub fn append(&mut self, data: &[u8]) {
        let cap = self.cap;
        let total = data.len() as u64;
        // Only the last `cap` bytes can survive the append.
        let kept = if data.len() > cap {
            &data[data.len() - cap..]
        } else {
            data
        };
        let first_off = self.end + total - kept.len() as u64;
        let p = self.pos(first_off);
        let first = kept.len().min(cap - p);
        self.grow_to(p + first);
        self.buf[p..p + first].copy_from_slice(&kept[..first]);
        let rest = kept.len() - first;
        // Only reached once the first part ran to the end: `buf` is full size.
        self.buf[..rest].copy_from_slice(&kept[first..]);
        self.end += total;
        self.start = self.start.max(self.end.saturating_sub(cap as u64));
    }

    /// Up to `max` bytes starting at `from`, as one or two slices (the second is
    /// empty unless the range wraps). `from == end` gives two empty slices.
    ///
    /// # Errors
    /// [`Lapped`] when `from` is older than the ring's start. A `from` past the
    /// end is clamped to the end (no bytes), since those bytes do not exist yet.
    pub fn slices(&self, from: u64, max: usize) -> Result<(&[u8], &[u8]), Lapped> {
        if from < self.start {
            return Err(Lapped { start: self.start });
        }
        if from >= self.end {
            return Ok((&[], &[]));
        }
        let len = ((self.end - from) as usize).min(max);
        let cap = self.cap;
        let p = self.pos(from);
        let first = len.min(cap - p);
        Ok((&self.buf[p..p + first], &self.buf[..len - first]))
    }

    /// Appends up to `max` bytes from `from` to `out`; returns how many.
    pub fn copy_into(&self, from: u64, max: usize, out: &mut Vec<u8>) -> Result<usize, Lapped> {
        let (a, b) = self.slices(from, max)?;
        out.extend_from_slice(a);
        out.extend_from_slice(b);
        Ok(a.len() + b.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fills_wraps_and_reports_lapped() {
        let mut r = Ring::new(4, 0);
        r.append(b"ab");
        assert_eq!(r.slices(0, 10).unwrap(), (&b"ab"[..], &b""[..]));
        r.append(b"cdef");
        assert_eq!((r.start(), r.end()), (2, 6));
        assert_eq!(r.slices(1, 10), Err(Lapped { start: 2 }));
        let mut out = Vec::new();
        assert_eq!(r.copy_into(2, 10, &mut out), Ok(4));
        assert_eq!(out, b"cdef");
        let (a, b) = r.slices(3, 2).unwrap();
        assert_eq!([a, b].concat(), b"de");
        assert_eq!(r.slices(6, 10).unwrap(), (&b""[..], &b""[..]));
        assert_eq!(r.slices(99, 10).unwrap(), (&b""[..], &b""[..]));
    }

    #[test]
    fn append_larger_than_capacity_keeps_the_tail() {
        let mut r = Ring::new(3, 10);
        r.append(b"0123456");
        assert_eq!((r.start(), r.end()), (14, 17));
        let mut out = Vec::new();
        r.copy_into(14, 100, &mut out).unwrap();
        assert_eq!(out, b"456");
    }

    #[test]
    fn grows_only_as_output_arrives() {
        let mut r = Ring::new(1 << 20, 0);
        r.append(b"hello");
        assert!(r.buf.capacity() < 1024);
        r.append(&vec![7u8; 3 << 20]);
        assert_eq!(r.buf.len(), 1 << 20);
        assert!(r.buf.capacity() <= 1 << 20);
        let mut out = Vec::new();
        r.copy_into(r.start(), 10, &mut out).unwrap();
        assert_eq!(out, vec![7u8; 10]);
    }

    #[test]
    fn starts_at_a_given_offset() {
        let r = Ring::new(8, 1000);
        assert_eq!((r.start(), r.end()), (1000, 1000));
        assert_eq!(r.slices(999, 1), Err(Lapped { start: 1000 }));
    }

    proptest! {
        /// The ring always agrees with a plain Vec model of the whole stream.
        #[test]
        fn matches_a_vec_model(cap in 1usize..64,
                               start in 0u64..1000,
                               appends in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..100), 0..30),
                               reads in prop::collection::vec((0u64..4000, 0usize..80), 1..20)) {
            let mut ring = Ring::new(cap, start);
            let mut model: Vec<u8> = Vec::new();
            for a in &appends {
                ring.append(a);
                model.extend_from_slice(a);
                let end = start + model.len() as u64;
                prop_assert_eq!(ring.end(), end);
                prop_assert_eq!(ring.start(), start.max(end.saturating_sub(cap as u64)));
                for &(from, max) in &reads {
                    let mut out = Vec::new();
                    match ring.copy_into(from, max, &mut out) {
                        Err(Lapped { start: s }) => {
                            prop_assert!(from < s);
                            prop_assert_eq!(s, ring.start());
                        }
                        Ok(n) => {
                            prop_assert!(from >= ring.start());
                            let lo = (from.min(end) - start) as usize;
                            let hi = (lo + max).min(model.len());
                            prop_assert_eq!(n, hi - lo);
                            prop_assert_eq!(&out[..], &model[lo..hi]);
                        }
                    }
                }
            }
        }
    }
}
