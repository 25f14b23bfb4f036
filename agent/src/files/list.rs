//! `GET files/list`: one directory's entries, directories first.

use dispatch_api::files::{FileEntry, FileKind, FileList};
use nix::sys::stat::{FileStat, SFlag};

use super::confine::{Root, kind_of};
use super::error::FsError;
use super::relpath::{AGENT_STATE_DIR, RelPath};
use super::walk;

pub fn list(root: &Root, rel: &RelPath, limit: usize) -> Result<FileList, FsError> {
    let dir = root.open_dir(rel)?;
    // The agent's own state is not the user's work: the root's listing
    // leaves it out (it stays readable by its path).
    let hidden = rel.is_root().then_some(AGENT_STATE_DIR);
    let (entries, truncated) = walk::entries(&dir, limit, &rel.to_string(), hidden)?;
    let mut entries: Vec<FileEntry> = entries
        .into_iter()
        .map(|e| FileEntry {
            kind: file_kind(&e.stat),
            size: e.stat.st_size.max(0) as u64,
            mtime_ms: mtime_ms(&e.stat),
            name: e.name,
        })
        .collect();
    sort(&mut entries);
    Ok(FileList {
        path: rel.to_string(),
        entries,
        truncated,
    })
}

/// Directories first, then by name.
pub fn sort(entries: &mut [FileEntry]) {
    entries.sort_by(|a, b| {
        (a.kind != FileKind::Dir)
            .cmp(&(b.kind != FileKind::Dir))
            .then_with(|| a.name.cmp(&b.name))
    });
}

pub fn file_kind(st: &FileStat) -> FileKind {
    match kind_of(st) {
        SFlag::S_IFREG => FileKind::File,
        SFlag::S_IFDIR => FileKind::Dir,
        SFlag::S_IFLNK => FileKind::Symlink,
        _ => FileKind::Other,
    }
}

fn mtime_ms(st: &FileStat) -> i64 {
    st.st_mtime * 1000 + st.st_mtime_nsec / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_come_first_then_names() {
        let e = |name: &str, kind| FileEntry {
            name: name.into(),
            kind,
            size: 0,
            mtime_ms: 0,
        };
        let mut v = vec![
            e("b", FileKind::File),
            e("z", FileKind::Dir),
            e("a", FileKind::Symlink),
            e("c", FileKind::Dir),
        ];
        sort(&mut v);
        let names: Vec<_> = v.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["c", "z", "a", "b"]);
    }
}
