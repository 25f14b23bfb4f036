//! A path as a client names it, checked before anything touches the disk:
//! relative, `/`-separated, no `..`, no NUL, bounded. This is only the first
//! fence; the one that holds is [`super::confine`], which resolves the path
//! with the kernel at the moment of opening.

/// Longest path accepted, in bytes (Linux's PATH_MAX).
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest single name accepted, in bytes (Linux's NAME_MAX).
pub const MAX_NAME_BYTES: usize = 255;

/// The directory the agent keeps its own state in; changed only by the agent.
pub const AGENT_STATE_DIR: &str = ".dispatch";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelPathError {
    #[error("absolute paths are refused; name a path relative to the workspace root")]
    Absolute,
    #[error("`..` is refused in paths")]
    ParentDir,
    #[error("the path contains a NUL byte")]
    Nul,
    #[error("the path is longer than {MAX_PATH_BYTES} bytes")]
    TooLong,
    #[error("a name in the path is longer than {MAX_NAME_BYTES} bytes")]
    NameTooLong,
    #[error("the workspace root itself cannot be the target of this operation")]
    Root,
}

/// A checked relative path: its names, none empty, `.` or `..`. Empty for
/// the workspace root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelPath {
    names: Vec<String>,
}

impl RelPath {
    /// `""`, `"."` and `"/"`-free spellings of the root are the root; `a//b`
    /// and `a/./b` are `a/b`.
    pub fn parse(raw: &str) -> Result<RelPath, RelPathError> {
        if raw.len() > MAX_PATH_BYTES {
            return Err(RelPathError::TooLong);
        }
        if raw.contains('\0') {
            return Err(RelPathError::Nul);
        }
        if raw.starts_with('/') {
            return Err(RelPathError::Absolute);
        }
        let mut names = Vec::new();
        for name in raw.split('/') {
            match name {
                "" | "." => {}
                ".." => return Err(RelPathError::ParentDir),
                n if n.len() > MAX_NAME_BYTES => return Err(RelPathError::NameTooLong),
                n => names.push(n.to_owned()),
            }
        }
        Ok(RelPath { names })
    }

    #[cfg(test)]
    pub fn root() -> RelPath {
        RelPath { names: Vec::new() }
    }

    pub fn is_root(&self) -> bool {
        self.names.is_empty()
    }

    /// The path as the kernel gets it, relative to the root's descriptor
    /// (`.` for the root).
    pub fn as_os_path(&self) -> String {
        if self.names.is_empty() {
            ".".to_owned()
        } else {
            self.names.join("/")
        }
    }

    /// The parent and the last name; refused for the root.
    pub fn split_last(&self) -> Result<(RelPath, &str), RelPathError> {
        match self.names.split_last() {
            Some((last, parent)) => Ok((
                RelPath {
                    names: parent.to_vec(),
                },
                last.as_str(),
            )),
            None => Err(RelPathError::Root),
        }
    }

    /// The last name, or "workspace" for the root (for download file names).
    pub fn file_name(&self) -> &str {
        self.names.last().map_or("workspace", String::as_str)
    }

    /// Whether this is the agent's state directory or inside it: readable,
    /// never changed through the files API.
    pub fn is_agent_state(&self) -> bool {
        self.names.first().is_some_and(|n| n == AGENT_STATE_DIR)
    }
}

impl std::fmt::Display for RelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.names.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_relative_paths_and_normalises_them() {
        assert!(RelPath::parse("").unwrap().is_root());
        assert!(RelPath::parse(".").unwrap().is_root());
        assert!(RelPath::parse("./").unwrap().is_root());
        assert_eq!(RelPath::parse("a//./b/").unwrap().to_string(), "a/b");
        assert_eq!(RelPath::parse("a/b").unwrap().as_os_path(), "a/b");
        assert_eq!(RelPath::parse("").unwrap().as_os_path(), ".");
        assert_eq!(RelPath::parse("...").unwrap().to_string(), "...");
        let p = RelPath::parse("x/y/z").unwrap();
        let (parent, last) = p.split_last().unwrap();
        assert_eq!((parent.to_string().as_str(), last), ("x/y", "z"));
        assert!(
            RelPath::parse(".dispatch/agent.db")
                .unwrap()
                .is_agent_state()
        );
        assert!(!RelPath::parse("src/.dispatch").unwrap().is_agent_state());
    }

    #[test]
    fn refuses_each_way_out_and_each_oddity() {
        for (raw, err) in [
            ("/etc/passwd", RelPathError::Absolute),
            ("..", RelPathError::ParentDir),
            ("a/../../b", RelPathError::ParentDir),
            ("a/..", RelPathError::ParentDir),
            ("a\0b", RelPathError::Nul),
        ] {
            assert_eq!(RelPath::parse(raw), Err(err), "{raw:?}");
        }
        assert_eq!(
            RelPath::parse(&"a/".repeat(2049)),
            Err(RelPathError::TooLong)
        );
        assert_eq!(
            RelPath::parse(&"n".repeat(256)),
            Err(RelPathError::NameTooLong)
        );
        assert_eq!(RelPath::root().split_last(), Err(RelPathError::Root));
    }

    proptest! {
        /// Whatever the input, a parsed path has no `..`, no empty name, no
        /// NUL, and prints back to something that parses to itself.
        #[test]
        fn parsed_paths_are_clean(raw in "[a./\\x00]{0,24}") {
            if let Ok(p) = RelPath::parse(&raw) {
                for n in &p.names {
                    prop_assert!(n != ".." && n != "." && !n.is_empty() && !n.contains('\0'));
                }
                prop_assert_eq!(RelPath::parse(&p.to_string()), Ok(p));
            }
        }
    }
}
