//! A file's version as an HTTP entity tag: inode, size and modification time
//! in nanoseconds. Every write through the API makes a new inode (it renames
//! a new file into place), and a write in place by anything else moves the
//! modification time, so two reads with the same tag saw the same file.

use nix::sys::stat::FileStat;

pub fn etag(st: &FileStat) -> String {
    let mtime_ns = i128::from(st.st_mtime) * 1_000_000_000 + i128::from(st.st_mtime_nsec);
    format!("\"{:x}-{:x}-{:x}\"", st.st_ino, st.st_size, mtime_ns)
}

/// Whether an `If-Match` header value names `current` (a list of tags, or
/// `*` for "any version").
pub fn if_match_holds(header: &str, current: &str) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t == current || t.strip_prefix("W/") == Some(current))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_accepts_the_current_tag_in_a_list_or_a_star() {
        assert!(if_match_holds("\"a-1-2\"", "\"a-1-2\""));
        assert!(if_match_holds("\"x\", \"a-1-2\"", "\"a-1-2\""));
        assert!(if_match_holds("*", "\"a-1-2\""));
        assert!(!if_match_holds("\"a-1-3\"", "\"a-1-2\""));
        assert!(!if_match_holds("a-1-2", "\"a-1-2\""));
    }
}
