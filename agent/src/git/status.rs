//! Reading `git status --porcelain=v2 --branch -z` (a format git keeps
//! stable for scripts) into the API's shape.

use dispatch_api::files::{GitFileStatus, GitStatus};

/// Parses the output; at most `max_files` paths, `truncated` beyond.
pub fn parse(out: &[u8], max_files: usize) -> GitStatus {
    let mut st = GitStatus {
        repository: true,
        ..GitStatus::default()
    };
    let text = String::from_utf8_lossy(out);
    let mut fields = text.split('\0').filter(|f| !f.is_empty());
    while let Some(rec) = fields.next() {
        if let Some(header) = rec.strip_prefix("# ") {
            branch_header(&mut st, header);
            continue;
        }
        let file = match rec.as_bytes().first() {
            Some(b'1') => changed(rec, 8),
            Some(b'u') => changed(rec, 10),
            // A rename or copy: the original path is the next field.
            Some(b'2') => changed(rec, 9).map(|mut f| {
                f.orig_path = fields.next().map(str::to_owned);
                f
            }),
            Some(b'?') => rec.get(2..).map(|p| GitFileStatus {
                path: p.to_owned(),
                orig_path: None,
                index: "?".into(),
                worktree: "?".into(),
            }),
            _ => None,
        };
        if let Some(f) = file {
            if st.files.len() == max_files {
                st.truncated = true;
            } else {
                st.files.push(f);
            }
        }
    }
    st
}

fn branch_header(st: &mut GitStatus, header: &str) {
    let Some((key, value)) = header.split_once(' ') else {
        return;
    };
    match key {
        "branch.oid" if value != "(initial)" => st.head = Some(value.to_owned()),
        "branch.head" if value != "(detached)" => st.branch = Some(value.to_owned()),
        "branch.upstream" => st.upstream = Some(value.to_owned()),
        "branch.ab" => {
            for part in value.split(' ') {
                if let Some(n) = part.strip_prefix('+') {
                    st.ahead = n.parse().unwrap_or(0);
                } else if let Some(n) = part.strip_prefix('-') {
                    st.behind = n.parse().unwrap_or(0);
                }
            }
        }
        _ => {}
    }
}

/// A `1`, `2` or `u` record: `fields_before_path` space-separated fields,
/// then the path (which may itself contain spaces).
fn changed(rec: &str, fields_before_path: usize) -> Option<GitFileStatus> {
    let mut parts = rec.splitn(fields_before_path + 1, ' ');
    let _kind = parts.next()?;
    let xy = parts.next()?;
    let path = parts.nth(fields_before_path - 2)?;
    let mut xy = xy.chars();
    Some(GitFileStatus {
        path: path.to_owned(),
        orig_path: None,
        index: xy.next()?.to_string(),
        worktree: xy.next()?.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_branch_headers_and_each_kind_of_record() {
        let out = "# branch.oid 1234abcd\0# branch.head main\0# branch.upstream origin/main\0\
                   # branch.ab +2 -1\0\
                   1 .M N... 100644 100644 100644 aaaa bbbb src/a file.rs\0\
                   1 A. N... 000000 100644 100644 0000 cccc new.txt\0\
                   2 R. N... 100644 100644 100644 dddd dddd R100 moved to.txt\0old name.txt\0\
                   u UU N... 100644 100644 100644 100644 e f g conflict.txt\0\
                   ? untracked dir/x\0";
        let st = parse(out.as_bytes(), 100);
        assert!(st.repository);
        assert_eq!(st.branch.as_deref(), Some("main"));
        assert_eq!(st.head.as_deref(), Some("1234abcd"));
        assert_eq!(st.upstream.as_deref(), Some("origin/main"));
        assert_eq!((st.ahead, st.behind), (2, 1));
        let got: Vec<_> = st
            .files
            .iter()
            .map(|f| {
                (
                    f.path.as_str(),
                    f.index.as_str(),
                    f.worktree.as_str(),
                    f.orig_path.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("src/a file.rs", ".", "M", None),
                ("new.txt", "A", ".", None),
                ("moved to.txt", "R", ".", Some("old name.txt")),
                ("conflict.txt", "U", "U", None),
                ("untracked dir/x", "?", "?", None),
            ]
        );
        assert!(!st.truncated);
    }

    #[test]
    fn a_new_repository_and_a_bound() {
        let out = "# branch.oid (initial)\0# branch.head main\0? a\0? b\0? c\0";
        let st = parse(out.as_bytes(), 2);
        assert_eq!(st.head, None);
        assert_eq!(st.files.len(), 2);
        assert!(st.truncated);
        let detached = parse(b"# branch.oid ab\0# branch.head (detached)\0", 2);
        assert_eq!(detached.branch, None);
    }
}
