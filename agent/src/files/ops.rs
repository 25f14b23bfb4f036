//! Making a directory, moving and deleting: `*at` calls on a directory
//! opened beneath the root, with a single final name that they never follow.

use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, RenameFlags, renameat2};
use nix::sys::stat::{Mode, SFlag, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use super::confine::{Root, kind_of};
use super::error::FsError;
use super::relpath::RelPath;
use super::walk;

pub fn mkdir(root: &Root, rel: &RelPath) -> Result<(), FsError> {
    let (dir, name) = root.parent_of(rel)?;
    mkdirat(dir.as_fd(), name, Mode::from_bits_truncate(0o755))
        .map_err(|e| FsError::from_errno(e, &rel.to_string()))
}

/// Renames `from` to `to`; never over an existing name.
pub fn rename(root: &Root, from: &RelPath, to: &RelPath) -> Result<(), FsError> {
    let (from_dir, from_name) = root.parent_of(from)?;
    let (to_dir, to_name) = root.parent_of(to)?;
    renameat2(
        from_dir.as_fd(),
        from_name,
        to_dir.as_fd(),
        to_name,
        RenameFlags::RENAME_NOREPLACE,
    )
    .map_err(|e| match e {
        Errno::EEXIST | Errno::ENOENT => {
            FsError::from_errno(e, &if e == Errno::EEXIST { to } else { from }.to_string())
        }
        e => FsError::from_errno(e, &format!("{from} -> {to}")),
    })
}

/// Deletes a file, a symlink (not what it names) or an empty directory; a
/// directory with its contents only when `recursive`.
pub fn delete(root: &Root, rel: &RelPath, recursive: bool) -> Result<(), FsError> {
    let what = rel.to_string();
    let (dir, name) = root.parent_of(rel)?;
    let st = fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|e| FsError::from_errno(e, &what))?;
    if kind_of(&st) != SFlag::S_IFDIR {
        return unlinkat(dir.as_fd(), name, UnlinkatFlags::NoRemoveDir)
            .map_err(|e| FsError::from_errno(e, &what));
    }
    if recursive {
        remove_tree(&dir, name, 0).map_err(|e| FsError::from_errno(e, &what))
    } else {
        unlinkat(dir.as_fd(), name, UnlinkatFlags::RemoveDir)
            .map_err(|e| FsError::from_errno(e, &what))
    }
}

/// `rm -r` through descriptors: a symlink met on the way is removed, never
/// followed, and a directory swapped for a symlink mid-walk fails to open
/// (O_NOFOLLOW), so nothing outside the tree is touched.
fn remove_tree(parent: &OwnedFd, name: &str, depth: usize) -> nix::Result<()> {
    if depth >= walk::MAX_DEPTH {
        return Err(Errno::ELOOP);
    }
    let dir = walk::open_child_dir(parent, name)?;
    loop {
        // Read a batch, delete it, read again: deleting while reading one
        // stream of entries may skip some.
        let (batch, _) = walk::entries(&dir, 4096, name, None).map_err(|_| Errno::EIO)?;
        if batch.is_empty() {
            break;
        }
        for e in batch {
            if kind_of(&e.stat) == SFlag::S_IFDIR {
                remove_tree(&dir, &e.name, depth + 1)?;
            } else {
                match unlinkat(dir.as_fd(), e.name.as_str(), UnlinkatFlags::NoRemoveDir) {
                    Ok(()) | Err(Errno::ENOENT) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    unlinkat(parent.as_fd(), name, UnlinkatFlags::RemoveDir)
}
