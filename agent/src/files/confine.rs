//! The one way the files and git routes reach the disk: every path a client
//! names is resolved by the kernel, relative to a descriptor of the workspace
//! root, with `openat2(2)` and `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`, at
//! the moment of opening. A `..`, an absolute symlink or one that climbs out
//! (created a second before, from the workspace's own terminal) fails with
//! EXDEV inside the kernel's own walk, so no check-then-open race exists.
//!
//! Changes (create, rename, delete) are made with the `*at` calls on a
//! directory opened this way and a single final name, which those calls never
//! follow. Writes never open an existing file for writing: they write a new
//! file and rename it over the name, so a hard link in the workspace to a
//! file elsewhere is replaced, never written through (see `write`).

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat};

use super::error::FsError;
use super::relpath::RelPath;

/// The workspace root, held open for the agent's life.
pub struct Root {
    fd: OwnedFd,
}

/// Tries before giving up when openat2 says a rename raced the walk.
const EAGAIN_TRIES: usize = 8;

impl Root {
    pub fn open(path: &Path) -> std::io::Result<Root> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root { fd })
    }

    /// Opens `rel` beneath the root with `flags` (O_CLOEXEC added).
    /// Symlinks inside the workspace that stay inside are followed.
    pub fn open_beneath(&self, rel: &RelPath, flags: OFlag) -> Result<OwnedFd, FsError> {
        self.open_with(rel, flags, ResolveFlag::empty())
    }

    /// As [`Root::open_beneath`], with extra resolve flags (e.g.
    /// RESOLVE_NO_SYMLINKS).
    pub fn open_with(
        &self,
        rel: &RelPath,
        flags: OFlag,
        extra: ResolveFlag,
    ) -> Result<OwnedFd, FsError> {
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS | extra);
        let path = rel.as_os_path();
        let mut tries = 0;
        loop {
            match openat2(self.fd.as_fd(), path.as_str(), how) {
                Ok(fd) => return Ok(fd),
                Err(Errno::EAGAIN) if tries < EAGAIN_TRIES => tries += 1,
                Err(Errno::ENOSYS) => {
                    return Err(FsError::internal(
                        "this kernel has no openat2 (Linux 5.6 or later is needed for the files API)",
                    ));
                }
                Err(e) => return Err(FsError::from_errno(e, &rel.to_string())),
            }
        }
    }

    /// A directory, opened for reading its entries and as the `dirfd` of
    /// `*at` calls.
    pub fn open_dir(&self, rel: &RelPath) -> Result<OwnedFd, FsError> {
        self.open_beneath(rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
    }

    /// A regular file for reading, and its metadata. O_NONBLOCK so that a
    /// FIFO planted under the name cannot hang the open; anything but a
    /// regular file is refused.
    pub fn open_file(&self, rel: &RelPath) -> Result<(std::fs::File, FileStat), FsError> {
        let fd = self.open_beneath(rel, OFlag::O_RDONLY | OFlag::O_NOCTTY | OFlag::O_NONBLOCK)?;
        let st = fstat(&fd).map_err(|e| FsError::from_errno(e, &rel.to_string()))?;
        if kind_of(&st) != SFlag::S_IFREG {
            return Err(FsError::new(
                axum::http::StatusCode::CONFLICT,
                dispatch_api::ErrorCode::WrongKind,
                format!("{:?} is not a regular file", rel.to_string()),
            ));
        }
        Ok((std::fs::File::from(fd), st))
    }

    /// The directory that holds `rel`, and its last name: what the `*at`
    /// calls that create, rename and delete take. Refused for the root and
    /// for the agent's own state.
    pub fn parent_of<'a>(&self, rel: &'a RelPath) -> Result<(OwnedFd, &'a str), FsError> {
        if rel.is_agent_state() {
            return Err(FsError::new(
                axum::http::StatusCode::FORBIDDEN,
                dispatch_api::ErrorCode::Forbidden,
                format!(
                    "{:?} is the agent's own state and is not changed through the files API",
                    rel.to_string()
                ),
            ));
        }
        let (parent, name) = rel.split_last()?;
        Ok((self.open_dir(&parent)?, name))
    }
}

pub fn kind_of(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}
