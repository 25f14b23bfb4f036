//! A session's append-only output log on disk, bounded by a retention size.
//!
//! The log is a run of segment files `<dir>/<start offset, 20 digits>.log`; the
//! oldest whole segment is deleted once the rest still hold `retention` bytes.
//! [`SegmentIndex`] is the pure bookkeeping; [`OutputLog`] does the file I/O.
//! Only the session's reader thread appends; readers look up where an offset
//! lives under the lock and read the file outside it.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub start: u64,
    pub len: u64,
}

/// Where a read from some offset stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Located {
    /// In the segment starting at `segment`, `pos` bytes in, `avail` bytes readable there.
    At { segment: u64, pos: u64, avail: u64 },
    /// At or past the end: nothing to read yet.
    AtEnd,
    /// Deleted by retention; `oldest` is the first offset still kept.
    Gone { oldest: u64 },
}

#[derive(Debug, Clone)]
pub struct SegmentIndex {
    segments: VecDeque<Segment>,
    /// End offset when there are no segments.
    base: u64,
    retention: u64,
}

impl SegmentIndex {
    pub fn new(base: u64, retention: u64) -> Self {
        SegmentIndex {
            segments: VecDeque::new(),
            base,
            retention,
        }
    }

    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments.iter()
    }

    pub fn end(&self) -> u64 {
        self.segments.back().map_or(self.base, |s| s.start + s.len)
    }

    pub fn oldest(&self) -> u64 {
        self.segments.front().map_or(self.base, |s| s.start)
    }

    pub fn last_len(&self) -> Option<u64> {
        self.segments.back().map(|s| s.len)
    }

    /// Starts a new, empty segment at the current end.
    pub fn push_segment(&mut self) -> u64 {
        let start = self.end();
        self.segments.push_back(Segment { start, len: 0 });
        start
    }

    pub fn grow_last(&mut self, n: u64) {
        if let Some(s) = self.segments.back_mut() {
            s.len += n;
        }
    }

    /// Drops the oldest segments while the others still hold `retention` bytes;
    /// returns the start offsets of the dropped ones.
    pub fn enforce_retention(&mut self) -> Vec<u64> {
        let mut total: u64 = self.segments.iter().map(|s| s.len).sum();
        let mut dropped = Vec::new();
        while self.segments.len() > 1 {
            let first = self.segments[0];
            if total - first.len < self.retention {
                break;
            }
            total -= first.len;
            self.segments.pop_front();
            self.base = self.base.max(first.start + first.len);
            dropped.push(first.start);
        }
        dropped
    }

    pub fn locate(&self, from: u64) -> Located {
        if from >= self.end() {
            return Located::AtEnd;
        }
        if from < self.oldest() {
            return Located::Gone {
                oldest: self.oldest(),
            };
        }
        // Segments are few (retention / segment size); a linear scan from the back
        // finds recent offsets first, which is what readers mostly want.
        for s in self.segments.iter().rev() {
            if from >= s.start {
                return Located::At {
                    segment: s.start,
                    pos: from - s.start,
                    avail: s.start + s.len - from,
                };
            }
        }
        Located::Gone {
            oldest: self.oldest(),
        }
    }
}

/// What a read from the log produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogRead {
    Bytes(usize),
    AtEnd,
    Gone { oldest: u64 },
}

#[derive(Debug)]
pub struct OutputLog {
    dir: PathBuf,
    segment_bytes: u64,
    index: SegmentIndex,
    current: Option<File>,
}

pub fn segment_path(dir: &Path, start: u64) -> PathBuf {
    dir.join(format!("{start:020}.log"))
}

/// Segment size for a retention: a handful of segments, so that deleting one
/// drops a modest share of the history.
pub fn segment_bytes_for(retention: u64) -> u64 {
    (retention / 8).clamp(64 * 1024, 8 * 1024 * 1024)
}

impl OutputLog {
    /// A new, empty log in `dir` (created if missing).
    pub fn create(dir: &Path, retention: u64) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(OutputLog {
            dir: dir.to_owned(),
            segment_bytes: segment_bytes_for(retention),
            index: SegmentIndex::new(0, retention),
            current: None,
        })
    }

    /// Opens the segments left in `dir` by an earlier run, for reading. When the
    /// files are not contiguous (a crash mid-rotation), only the newest
    /// contiguous run is used. A missing directory is an empty log at `end_hint`.
    pub fn open_existing(dir: &Path, retention: u64, end_hint: u64) -> io::Result<Self> {
        let mut found: Vec<Segment> = Vec::new();
        match std::fs::read_dir(dir) {
            Ok(entries) => {
                for e in entries.flatten() {
                    let name = e.file_name();
                    let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".log")) else {
                        continue;
                    };
                    let Ok(start) = stem.parse::<u64>() else {
                        continue;
                    };
                    let len = e.metadata()?.len();
                    found.push(Segment { start, len });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        found.sort_by_key(|s| s.start);
        let mut run: Vec<Segment> = Vec::new();
        for s in found {
            if let Some(last) = run.last()
                && last.start + last.len != s.start
            {
                run.clear();
            }
            run.push(s);
        }
        let base = run.first().map_or(end_hint, |s| s.start);
        let mut index = SegmentIndex::new(base, retention);
        for s in run {
            index.push_segment();
            index.grow_last(s.len);
        }
        Ok(OutputLog {
            dir: dir.to_owned(),
            segment_bytes: segment_bytes_for(retention),
            index,
            current: None,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn segment_starts(&self) -> Vec<u64> {
        self.index.segments().map(|s| s.start).collect()
    }

    pub fn oldest(&self) -> u64 {
        self.index.oldest()
    }

    pub fn end(&self) -> u64 {
        self.index.end()
    }

    /// Appends bytes; returns whether the set of segments changed (a new one was
    /// started or old ones deleted), for the caller to record in the index table.
    pub fn append(&mut self, mut data: &[u8]) -> io::Result<bool> {
        let mut changed = false;
        while !data.is_empty() {
            changed |= self.ensure_room()?;
            let room = self.segment_bytes - self.index.last_len().unwrap_or(0);
            let n = (room as usize).min(data.len());
            if let Some(f) = self.current.as_mut() {
                f.write_all(&data[..n])?;
            }
            self.index.grow_last(n as u64);
            data = &data[n..];
        }
        Ok(self.drop_old_segments()? || changed)
    }

    /// Like [`OutputLog::append`], for `n` bytes waiting in the pipe
    /// `pipe_r`, which the kernel moves into the segment files without them
    /// passing through this process (see [`super::spliced_output`]).
    pub fn append_spliced(
        &mut self,
        pipe_r: std::os::fd::BorrowedFd<'_>,
        mut n: usize,
    ) -> io::Result<bool> {
        let mut changed = false;
        while n > 0 {
            changed |= self.ensure_room()?;
            let room = self.segment_bytes - self.index.last_len().unwrap_or(0);
            let k = (room as usize).min(n);
            if let Some(f) = self.current.as_ref() {
                super::spliced_output::splice_to_file(pipe_r, f, k)?;
            }
            self.index.grow_last(k as u64);
            n -= k;
        }
        Ok(self.drop_old_segments()? || changed)
    }

    /// Starts a new segment when there is none open or the open one is full.
    fn ensure_room(&mut self) -> io::Result<bool> {
        let full = self
            .index
            .last_len()
            .is_none_or(|l| l >= self.segment_bytes);
        if self.current.is_some() && !full {
            return Ok(false);
        }
        let start = self.index.push_segment();
        // Readable too: the newest output is read back through it.
        let f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(segment_path(&self.dir, start))?;
        self.current = Some(f);
        Ok(true)
    }

    fn drop_old_segments(&mut self) -> io::Result<bool> {
        let mut changed = false;
        for start in self.index.enforce_retention() {
            changed = true;
            if let Err(e) = std::fs::remove_file(segment_path(&self.dir, start))
                && e.kind() != io::ErrorKind::NotFound
            {
                return Err(e);
            }
        }
        Ok(changed)
    }

    /// Where `from` lives, for reading outside the lock with [`read_located`].
    pub fn locate(&self, from: u64) -> Located {
        self.index.locate(from)
    }

    /// Reads under whatever lock guards `self` (for callers that hold it anyway).
    pub fn read(&self, from: u64, max: usize, out: &mut Vec<u8>) -> io::Result<LogRead> {
        let loc = self.locate(from);
        // The segment being written is open already: reading back the newest
        // output, as every arrival of output does, opens no file.
        if let (
            Located::At {
                segment,
                pos,
                avail,
            },
            Some(f),
        ) = (&loc, &self.current)
            && self.index.segments().last().map(|s| s.start) == Some(*segment)
        {
            return read_at(f, *pos, *avail, max, out);
        }
        read_located(&self.dir, loc, max, out)
    }
}

/// Reads up to `max` bytes described by `loc`, appending to `out`. A segment
/// deleted since `loc` was taken reads as `Gone`.
pub fn read_located(
    dir: &Path,
    loc: Located,
    max: usize,
    out: &mut Vec<u8>,
) -> io::Result<LogRead> {
    let (segment, pos, avail) = match loc {
        Located::AtEnd => return Ok(LogRead::AtEnd),
        Located::Gone { oldest } => return Ok(LogRead::Gone { oldest }),
        Located::At {
            segment,
            pos,
            avail,
        } => (segment, pos, avail),
    };
    let f = match File::open(segment_path(dir, segment)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(LogRead::Gone {
                oldest: segment + pos + avail,
            });
        }
        Err(e) => return Err(e),
    };
    read_at(&f, pos, avail, max, out)
}

/// Reads up to `max` of the `avail` bytes at `pos` in `f`, a segment's file.
fn read_at(f: &File, pos: u64, avail: u64, max: usize, out: &mut Vec<u8>) -> io::Result<LogRead> {
    let want = (avail as usize).min(max);
    let old_len = out.len();
    out.resize(old_len + want, 0);
    let mut got = 0;
    while got < want {
        match f.read_at(&mut out[old_len + got..], pos + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                out.truncate(old_len);
                return Err(e);
            }
        }
    }
    out.truncate(old_len + got);
    if got == 0 {
        return Ok(LogRead::AtEnd);
    }
    Ok(LogRead::Bytes(got))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read_all(log: &OutputLog, mut from: u64) -> (Vec<u8>, Option<u64>) {
        let mut out = Vec::new();
        let mut lost = None;
        loop {
            match log.read(from, 7, &mut out).unwrap() {
                LogRead::Bytes(n) => from += n as u64,
                LogRead::AtEnd => return (out, lost),
                LogRead::Gone { oldest } => {
                    lost = Some(oldest);
                    from = oldest;
                }
            }
        }
    }

    #[test]
    fn rotates_and_reopens() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s1");
        // retention 200 KiB -> 64 KiB segments
        let mut log = OutputLog::create(&dir, 200 * 1024).unwrap();
        let chunk: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let mut all = Vec::new();
        for _ in 0..60 {
            log.append(&chunk).unwrap();
            all.extend_from_slice(&chunk);
        }
        assert_eq!(log.end(), all.len() as u64);
        let oldest = log.oldest();
        assert!(oldest > 0, "old segments are deleted");
        let kept = log.end() - oldest;
        assert!((200 * 1024..=264 * 1024).contains(&kept), "kept {kept}");
        let mut out = Vec::new();
        assert_eq!(log.read(0, 10, &mut out).unwrap(), LogRead::Gone { oldest });
        let (bytes, _) = read_all(&log, oldest);
        assert_eq!(bytes, &all[oldest as usize..]);

        let reopened = OutputLog::open_existing(&dir, 200 * 1024, 0).unwrap();
        assert_eq!((reopened.oldest(), reopened.end()), (oldest, log.end()));
        let (bytes, _) = read_all(&reopened, oldest);
        assert_eq!(bytes, &all[oldest as usize..]);
    }

    #[test]
    fn the_newest_output_is_read_through_the_open_segment() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        let mut log = OutputLog::create(&dir, 200 * 1024).unwrap();
        log.append(b"first ").unwrap();
        log.append(b"second").unwrap();
        // With its name gone, only the open descriptor still reaches the
        // segment: a read that opened the file by name would find it gone.
        std::fs::remove_file(segment_path(&dir, 0)).unwrap();
        let mut out = Vec::new();
        assert_eq!(log.read(6, 100, &mut out).unwrap(), LogRead::Bytes(6));
        assert_eq!(out, b"second");
    }

    #[test]
    fn a_missing_directory_is_an_empty_log_at_the_hint() {
        let tmp = tempfile::tempdir().unwrap();
        let log = OutputLog::open_existing(&tmp.path().join("gone"), 1000, 42).unwrap();
        assert_eq!((log.oldest(), log.end()), (42, 42));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn index_agrees_with_a_model(retention in 1u64..500,
                                     ops in prop::collection::vec((any::<bool>(), 0u64..200), 1..50)) {
            let mut idx = SegmentIndex::new(0, retention);
            let mut end = 0u64;
            for (new_seg, n) in ops {
                if new_seg || idx.last_len().is_none() { idx.push_segment(); }
                idx.grow_last(n);
                end += n;
                idx.enforce_retention();
                prop_assert_eq!(idx.end(), end);
                let kept = end - idx.oldest();
                let newest_len = idx.last_len().unwrap_or(0);
                // at least `retention` kept when that much exists, and no
                // removable segment is left over
                prop_assert!(kept >= retention.min(end));
                let segs: Vec<Segment> = idx.segments().copied().collect();
                if segs.len() > 1 {
                    prop_assert!(kept - segs[0].len < retention);
                }
                prop_assert!(newest_len <= kept);
                for probe in [0, idx.oldest(), end.saturating_sub(1), end, end + 5] {
                    match idx.locate(probe) {
                        Located::AtEnd => prop_assert!(probe >= end),
                        Located::Gone { oldest } => prop_assert!(probe < oldest && oldest == idx.oldest()),
                        Located::At { segment, pos, avail } => {
                            prop_assert_eq!(segment + pos, probe);
                            prop_assert!(avail > 0 && probe + avail <= end);
                        }
                    }
                }
            }
        }

        #[test]
        fn log_reads_back_exactly_what_was_kept(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40_000), 1..12)) {
            let tmp = tempfile::tempdir().unwrap();
            let mut log = OutputLog::create(tmp.path(), 100_000).unwrap();
            let mut all = Vec::new();
            for c in &chunks {
                log.append(c).unwrap();
                all.extend_from_slice(c);
            }
            let oldest = log.oldest();
            prop_assert!(all.len() as u64 - oldest >= 100_000u64.min(all.len() as u64));
            let (bytes, lost) = read_all(&log, 0);
            prop_assert_eq!(lost.is_some(), oldest > 0);
            prop_assert_eq!(&bytes[..], &all[oldest as usize..]);
        }
    }
}
