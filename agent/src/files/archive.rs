//! `GET files/archive`: a folder as a tar stream. The tar is written on a
//! blocking thread into a small channel that the response body drains, so at
//! most a few chunks are in memory whatever the folder's size, and a client
//! that stops reading stops the walk.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;

use axum::body::Bytes;
use nix::sys::stat::SFlag;
use tokio::sync::mpsc;

use super::confine::{Root, kind_of};
use super::error::FsError;
use super::relpath::{AGENT_STATE_DIR, RelPath};
use super::walk;

/// Bytes per chunk sent to the client, and chunks queued ahead of it.
const CHUNK: usize = 256 * 1024;
const QUEUE: usize = 4;
/// Most entries of one directory an archive takes (they are held, with
/// their metadata, while that directory is written).
const MAX_DIR_ENTRIES: usize = 100_000;

/// Opens the folder now (so that a bad path is an error status, not a broken
/// stream) and returns the stream of the archive's bytes.
pub fn archive(
    root: &Root,
    rel: &RelPath,
) -> Result<mpsc::Receiver<std::io::Result<Bytes>>, FsError> {
    let dir = root.open_dir(rel)?;
    let top = rel.file_name().to_owned();
    // The root's archive is the user's work without the agent's own state
    // (a live database, logs).
    let hidden = rel.is_root().then_some(AGENT_STATE_DIR);
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::task::spawn_blocking(move || {
        let out = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let mut tar = tar::Builder::new(out);
        tar.follow_symlinks(false);
        let result = add_dir(&mut tar, &dir, &top, 0, hidden)
            .and_then(|()| tar.into_inner())
            .and_then(|mut w| w.flush());
        if let Err(e) = result
            && e.kind() != std::io::ErrorKind::BrokenPipe
        {
            tracing::warn!(folder = %top, "archive stopped: {e}");
            // The body ends with an error: the client sees a broken
            // download, never a short archive that looks whole.
            let _ = tx.blocking_send(Err(e));
        }
    });
    Ok(rx)
}

fn add_dir<W: Write>(
    tar: &mut tar::Builder<W>,
    dir: &OwnedFd,
    path: &str,
    depth: usize,
    hidden: Option<&str>,
) -> std::io::Result<()> {
    if depth >= walk::MAX_DEPTH {
        return Err(std::io::Error::other(format!(
            "{path}: deeper than {} directories",
            walk::MAX_DEPTH
        )));
    }
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o755);
    header.set_size(0);
    tar.append_data(&mut header, format!("{path}/"), std::io::empty())?;
    let (mut entries, more) = walk::entries(dir, MAX_DIR_ENTRIES, path, hidden)
        .map_err(|e| std::io::Error::other(e.message))?;
    if more {
        return Err(std::io::Error::other(format!(
            "{path}: more than {MAX_DIR_ENTRIES} entries in one directory"
        )));
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    for e in entries {
        let child = format!("{path}/{}", e.name);
        let st = &e.stat;
        let mut header = tar::Header::new_gnu();
        header.set_mode(st.st_mode & 0o7777);
        header.set_mtime(st.st_mtime.max(0) as u64);
        match kind_of(st) {
            SFlag::S_IFDIR => {
                // Gone or swapped for a symlink since it was listed: skipped.
                let Ok(sub) = walk::open_child_dir(dir, &e.name) else {
                    continue;
                };
                add_dir(tar, &sub, &child, depth + 1, None)?;
            }
            SFlag::S_IFREG => {
                let Ok(file) = walk::open_child_file(dir, &e.name) else {
                    continue;
                };
                let size = st.st_size.max(0) as u64;
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(size);
                tar.append_data(&mut header, &child, Exactly::new(file, size))?;
            }
            SFlag::S_IFLNK => {
                let Ok(target) = nix::fcntl::readlinkat(dir, e.name.as_str()) else {
                    continue;
                };
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                tar.append_link(&mut header, &child, std::path::Path::new(&target))?;
            }
            // Sockets, FIFOs, devices: not files anyone downloads.
            _ => {}
        }
    }
    Ok(())
}

/// Exactly `size` bytes of a file that may change while it is read: cut when
/// it grew, padded with zeros when it shrank, so that the archive stays
/// well-formed (the header already promised `size`).
struct Exactly<R> {
    inner: R,
    left: u64,
    eof: bool,
}

impl<R: Read> Exactly<R> {
    fn new(inner: R, size: u64) -> Self {
        Exactly {
            inner,
            left: size,
            eof: false,
        }
    }
}

impl<R: Read> Read for Exactly<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = (buf.len() as u64).min(self.left) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = if self.eof {
            0
        } else {
            self.inner.read(&mut buf[..want])?
        };
        let n = if n == 0 {
            self.eof = true;
            buf[..want].fill(0);
            want
        } else {
            n
        };
        self.left -= n as u64;
        Ok(n)
    }
}

/// A `Write` that hands full chunks to the response body; a client gone is
/// BrokenPipe, which ends the walk.
struct ChannelWriter {
    tx: mpsc::Sender<std::io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(Ok(Bytes::from(chunk)))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_cuts_and_pads_to_the_promised_size() {
        let mut out = Vec::new();
        Exactly::new(&b"abcdef"[..], 3)
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"abc");
        let mut out = Vec::new();
        Exactly::new(&b"ab"[..], 5).read_to_end(&mut out).unwrap();
        assert_eq!(out, b"ab\0\0\0");
    }
}
