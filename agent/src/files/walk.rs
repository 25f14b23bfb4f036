//! Reading a directory through its descriptor: each entry's name and its own
//! metadata (symlinks not followed), and opening children without following
//! a symlink, so that a walk never leaves the tree it started in.

use std::os::fd::{AsFd, OwnedFd};

use nix::dir::Dir;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, fstatat};

use super::error::FsError;

/// Deepest directory nesting a walk (archive, recursive delete) goes into.
pub const MAX_DEPTH: usize = 256;

pub struct Entry {
    pub name: String,
    pub stat: FileStat,
}

/// Up to `limit` entries of `dir` (`.` and `..` left out; names that are not
/// UTF-8 too, since the API cannot name them; and `hidden`, if given), and
/// whether there were more.
pub fn entries(
    dir: &OwnedFd,
    limit: usize,
    what: &str,
    hidden: Option<&str>,
) -> Result<(Vec<Entry>, bool), FsError> {
    let dup = dir.try_clone().map_err(|e| FsError::from_io(&e, what))?;
    // The copy shares its offset with `dir`: start from the first entry
    // whatever an earlier read left.
    nix::unistd::lseek(&dup, 0, nix::unistd::Whence::SeekSet)
        .map_err(|e| FsError::from_errno(e, what))?;
    let mut d = Dir::from_fd(dup).map_err(|e| FsError::from_errno(e, what))?;
    let mut out = Vec::new();
    let mut more = false;
    for ent in d.iter() {
        let ent = ent.map_err(|e| FsError::from_errno(e, what))?;
        let bytes = ent.file_name().to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        let Ok(name) = std::str::from_utf8(bytes) else {
            tracing::debug!(dir = what, "an entry whose name is not UTF-8 is left out");
            continue;
        };
        if Some(name) == hidden {
            continue;
        }
        if out.len() == limit {
            more = true;
            break;
        }
        // Gone between the listing and the stat: left out.
        let Ok(stat) = fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) else {
            continue;
        };
        out.push(Entry {
            name: name.to_owned(),
            stat,
        });
    }
    Ok((out, more))
}

/// A child directory of `dir`, refusing a symlink in its place.
pub fn open_child_dir(dir: &OwnedFd, name: &str) -> nix::Result<OwnedFd> {
    nix::fcntl::openat(
        dir.as_fd(),
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// A child regular file of `dir` for reading, refusing a symlink in its place
/// (and not hanging on a FIFO).
pub fn open_child_file(dir: &OwnedFd, name: &str) -> nix::Result<std::fs::File> {
    nix::fcntl::openat(
        dir.as_fd(),
        name,
        OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map(std::fs::File::from)
}
