//! A Claude session's events, numbered, kept so that a client attaching late
//! (or after a reload, or after the agent restarted) can replay them.
//!
//! The newest events stay in memory up to a byte budget; every event is also
//! appended to `<dir>/events.jsonl`, one JSON envelope per line. When that
//! file passes half the retention budget it becomes `events.old.jsonl` (the
//! previous old file goes), so the disk holds at most about the budget.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use dispatch_api::protocol::ClaudeEvent;
use serde_json::Value;

use super::framing::envelope;

const CURRENT: &str = "events.jsonl";
const OLD: &str = "events.old.jsonl";

/// Where a read from some `seq` stands in memory.
#[derive(Debug, PartialEq)]
pub enum MemRead {
    /// Events from the requested seq (possibly none yet).
    Events(Vec<ClaudeEvent>),
    /// Older than memory holds: read the files (outside any lock).
    OnDisk { files: Vec<PathBuf> },
    /// Older than memory holds and nothing is on disk: `oldest` is the first
    /// seq still readable.
    Gone { oldest: u64 },
}

pub struct EventLog {
    mem: VecDeque<(ClaudeEvent, usize)>,
    mem_bytes: usize,
    mem_cap: usize,
    next_seq: u64,
    disk: Option<DiskLog>,
}

struct DiskLog {
    dir: PathBuf,
    file: Option<File>,
    bytes: u64,
    retention: u64,
    /// First seq in the files, as far as known.
    oldest: u64,
}

impl DiskLog {
    fn files(&self) -> Vec<PathBuf> {
        [OLD, CURRENT]
            .iter()
            .map(|n| self.dir.join(n))
            .filter(|p| p.exists())
            .collect()
    }

    fn append(&mut self, line: &[u8]) -> io::Result<()> {
        if self.bytes > self.retention / 2 {
            self.rotate()?;
        }
        if self.file.is_none() {
            self.file = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.join(CURRENT))?,
            );
        }
        if let Some(f) = self.file.as_mut() {
            f.write_all(line)?;
        }
        self.bytes += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        std::fs::rename(self.dir.join(CURRENT), self.dir.join(OLD))?;
        self.bytes = 0;
        self.oldest = first_seq(&self.dir.join(OLD)).unwrap_or(self.oldest);
        Ok(())
    }
}

fn first_seq(path: &Path) -> Option<u64> {
    let f = File::open(path).ok()?;
    BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| serde_json::from_str::<ClaudeEvent>(&l).ok())
        .map(|e| e.seq)
}

/// How much one read may return: at most `events`, and no more than `bytes`
/// of serialized events (but always at least one event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub events: usize,
    pub bytes: usize,
}

/// Events with `seq >= from` from the files, oldest first, within `budget`.
/// Also returns the first seq the files hold. A torn last line (the agent
/// died mid-write) is skipped.
pub fn read_files(files: &[PathBuf], from: u64, budget: Budget) -> (Vec<ClaudeEvent>, Option<u64>) {
    let mut out = Vec::new();
    let mut oldest = None;
    let mut bytes = 0usize;
    let mut full = false;
    for path in files {
        let Ok(f) = File::open(path) else { continue };
        for line in BufReader::new(f).split(b'\n').map_while(Result::ok) {
            if full && oldest.is_some() {
                break;
            }
            let Ok(ev) = serde_json::from_slice::<ClaudeEvent>(&line) else {
                continue;
            };
            oldest.get_or_insert(ev.seq);
            if ev.seq < from || full {
                continue;
            }
            if !out.is_empty() && (out.len() >= budget.events || bytes + line.len() > budget.bytes)
            {
                full = true;
                continue;
            }
            bytes += line.len();
            out.push(ev);
        }
    }
    (out, oldest)
}

impl EventLog {
    /// A new log; with `dir`, events are also written there.
    pub fn create(dir: Option<&Path>, mem_cap: usize, retention: u64) -> io::Result<Self> {
        let disk = match dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                Some(DiskLog {
                    dir: d.to_path_buf(),
                    file: None,
                    bytes: 0,
                    retention,
                    oldest: 0,
                })
            }
            None => None,
        };
        Ok(EventLog {
            mem: VecDeque::new(),
            mem_bytes: 0,
            mem_cap,
            next_seq: 0,
            disk,
        })
    }

    /// The log of a session from an earlier run: readable from disk; new
    /// events would continue its numbering.
    pub fn open_existing(dir: &Path, mem_cap: usize, retention: u64) -> Self {
        let files: Vec<PathBuf> = [OLD, CURRENT]
            .iter()
            .map(|n| dir.join(n))
            .filter(|p| p.exists())
            .collect();
        let (_, oldest) = read_files(
            &files,
            u64::MAX,
            Budget {
                events: 0,
                bytes: 0,
            },
        );
        let mut last = None;
        for path in &files {
            if let Ok(f) = File::open(path) {
                for line in BufReader::new(f).split(b'\n').map_while(Result::ok) {
                    if let Ok(ev) = serde_json::from_slice::<ClaudeEvent>(&line) {
                        last = Some(ev.seq);
                    }
                }
            }
        }
        let bytes = std::fs::metadata(dir.join(CURRENT)).map_or(0, |m| m.len());
        EventLog {
            mem: VecDeque::new(),
            mem_bytes: 0,
            mem_cap,
            next_seq: last.map_or(0, |s| s + 1),
            disk: Some(DiskLog {
                dir: dir.to_path_buf(),
                file: None,
                bytes,
                retention,
                oldest: oldest.unwrap_or(0),
            }),
        }
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The first seq still readable (in memory or on disk).
    pub fn oldest(&self) -> u64 {
        match &self.disk {
            Some(d) => d.oldest,
            None => self.mem.front().map_or(self.next_seq, |(e, _)| e.seq),
        }
    }

    /// Numbers `raw`, keeps it, and returns its envelope. A failed disk write
    /// is logged and the event still goes to memory and clients.
    pub fn append(&mut self, raw: Value) -> ClaudeEvent {
        let ev = envelope(raw, self.next_seq);
        self.next_seq += 1;
        let mut line = serde_json::to_vec(&ev).unwrap_or_default();
        line.push(b'\n');
        if let Some(d) = self.disk.as_mut()
            && let Err(e) = d.append(&line)
        {
            tracing::warn!(error = %e, dir = %d.dir.display(), "claude event log write failed");
        }
        let size = line.len();
        self.mem.push_back((ev.clone(), size));
        self.mem_bytes += size;
        // Always keep the newest event, however large.
        while self.mem_bytes > self.mem_cap && self.mem.len() > 1 {
            if let Some((_, n)) = self.mem.pop_front() {
                self.mem_bytes -= n;
            }
        }
        ev
    }

    /// Events from `from` on, within `budget`, as far as memory has them.
    pub fn read_mem(&self, from: u64, budget: Budget) -> MemRead {
        let mem_oldest = self.mem.front().map_or(self.next_seq, |(e, _)| e.seq);
        if from >= mem_oldest {
            let skip = (from - mem_oldest) as usize;
            let mut out = Vec::new();
            let mut bytes = 0usize;
            for (e, n) in self.mem.iter().skip(skip) {
                if !out.is_empty() && (out.len() >= budget.events || bytes + n > budget.bytes) {
                    break;
                }
                bytes += n;
                out.push(e.clone());
            }
            return MemRead::Events(out);
        }
        match &self.disk {
            Some(d) => MemRead::OnDisk { files: d.files() },
            None => MemRead::Gone { oldest: mem_oldest },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b(events: usize) -> Budget {
        Budget {
            events,
            bytes: usize::MAX,
        }
    }

    fn ev(i: u64) -> Value {
        json!({"type": "stream_event", "i": i, "pad": "x".repeat(50)})
    }

    #[test]
    fn numbers_events_and_reads_from_memory() {
        let mut log = EventLog::create(None, 1 << 20, 0).unwrap();
        for i in 0..5 {
            assert_eq!(log.append(ev(i)).seq, i);
        }
        let MemRead::Events(e) = log.read_mem(2, b(2)) else {
            panic!()
        };
        assert_eq!(e.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(log.read_mem(5, b(10)), MemRead::Events(vec![]));
        assert_eq!(log.read_mem(99, b(10)), MemRead::Events(vec![]));
    }

    #[test]
    fn memory_is_bounded_and_older_events_come_from_disk() {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = EventLog::create(Some(tmp.path()), 600, 1 << 20).unwrap();
        for i in 0..20 {
            log.append(ev(i));
        }
        let MemRead::OnDisk { files } = log.read_mem(0, b(100)) else {
            panic!("early events left memory")
        };
        let (events, oldest) = read_files(&files, 3, b(5));
        assert_eq!(oldest, Some(0));
        assert_eq!(
            events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [3, 4, 5, 6, 7]
        );
        assert_eq!(events[0].raw["i"], 3);
        assert_eq!(log.oldest(), 0);
        let MemRead::Events(recent) = log.read_mem(19, b(10)) else {
            panic!()
        };
        assert_eq!(recent.len(), 1);
    }

    #[test]
    fn reads_stop_at_the_byte_budget_but_return_at_least_one_event() {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = EventLog::create(Some(tmp.path()), 1 << 20, 1 << 20).unwrap();
        for i in 0..10 {
            log.append(ev(i));
        }
        let one = serde_json::to_vec(&log.append(ev(10))).unwrap().len() + 1;
        let budget = Budget {
            events: 100,
            bytes: one * 3,
        };
        let MemRead::Events(e) = log.read_mem(0, budget) else {
            panic!()
        };
        assert_eq!(e.len(), 3);
        let tiny = Budget {
            events: 100,
            bytes: 1,
        };
        let MemRead::Events(e) = log.read_mem(4, tiny) else {
            panic!()
        };
        assert_eq!(e.iter().map(|e| e.seq).collect::<Vec<_>>(), [4]);
        let files = vec![tmp.path().join(CURRENT)];
        let (e, oldest) = read_files(&files, 5, budget);
        assert_eq!(e.iter().map(|e| e.seq).collect::<Vec<_>>(), [5, 6, 7]);
        assert_eq!(oldest, Some(0));
        let (e, _) = read_files(&files, 9, tiny);
        assert_eq!(e.iter().map(|e| e.seq).collect::<Vec<_>>(), [9]);
    }

    #[test]
    fn without_disk_old_events_are_reported_gone() {
        let mut log = EventLog::create(None, 300, 0).unwrap();
        for i in 0..10 {
            log.append(ev(i));
        }
        let MemRead::Gone { oldest } = log.read_mem(0, b(10)) else {
            panic!()
        };
        assert!(oldest > 0 && oldest < 10);
        assert_eq!(log.oldest(), oldest);
    }

    #[test]
    fn disk_rotation_keeps_the_budget_and_knows_its_oldest() {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = EventLog::create(Some(tmp.path()), 200, 2000).unwrap();
        for i in 0..100 {
            log.append(ev(i));
        }
        let total: u64 = [CURRENT, OLD]
            .iter()
            .filter_map(|n| std::fs::metadata(tmp.path().join(n)).ok())
            .map(|m| m.len())
            .sum();
        assert!(
            total <= 2000 + 200,
            "disk holds about the budget, got {total}"
        );
        let oldest = log.oldest();
        assert!(oldest > 0);
        let MemRead::OnDisk { files } = log.read_mem(0, b(10)) else {
            panic!()
        };
        let (events, first) = read_files(&files, 0, b(1000));
        assert_eq!(first, Some(oldest));
        assert_eq!(events.last().unwrap().seq, 99);
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "no gaps");
    }

    #[test]
    fn reopening_continues_numbering_and_skips_a_torn_line() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let mut log = EventLog::create(Some(tmp.path()), 1 << 20, 1 << 20).unwrap();
            for i in 0..3 {
                log.append(ev(i));
            }
        }
        let mut f = OpenOptions::new()
            .append(true)
            .open(tmp.path().join(CURRENT))
            .unwrap();
        f.write_all(b"{\"type\":\"str").unwrap();
        let log = EventLog::open_existing(tmp.path(), 1 << 20, 1 << 20);
        assert_eq!(log.next_seq(), 3);
        assert_eq!(log.oldest(), 0);
        let MemRead::OnDisk { files } = log.read_mem(0, b(10)) else {
            panic!()
        };
        let (events, _) = read_files(&files, 0, b(10));
        assert_eq!(events.len(), 3);
    }
}
