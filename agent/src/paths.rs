//! Resolving paths that clients name, always inside the workspace root.

use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path {0:?} leads outside the workspace")]
    Outside(String),
    #[error("path {0:?} is not an existing directory in the workspace")]
    NotADirectory(String),
}

impl PathError {
    /// The error a client gets for a directory it named, whatever the kind of
    /// session it was starting.
    pub fn client_error(&self) -> (dispatch_api::ErrorCode, String) {
        let code = match self {
            PathError::Outside(_) => dispatch_api::ErrorCode::PathOutsideWorkspace,
            PathError::NotADirectory(_) => dispatch_api::ErrorCode::InvalidField,
        };
        (code, self.to_string())
    }
}

/// Resolves `rel` (relative to `root`, which must be canonical) to a canonical
/// directory inside `root`. `..` components are refused outright; symlinks are
/// followed and the result must still lie inside `root`.
pub fn resolve_dir(root: &Path, rel: &str) -> Result<PathBuf, PathError> {
    let p = Path::new(rel);
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(PathError::Outside(rel.to_owned()));
    }
    if rel.contains('\0') {
        return Err(PathError::NotADirectory(rel.to_owned()));
    }
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        root.join(p)
    };
    let canon = match joined.canonicalize() {
        Ok(c) => c,
        // It does not exist: say "outside" if it was never going to be inside.
        Err(_) if p.is_absolute() && !p.starts_with(root) => {
            return Err(PathError::Outside(rel.to_owned()));
        }
        Err(_) => return Err(PathError::NotADirectory(rel.to_owned())),
    };
    if !canon.starts_with(root) {
        return Err(PathError::Outside(rel.to_owned()));
    }
    if !canon.is_dir() {
        return Err(PathError::NotADirectory(rel.to_owned()));
    }
    Ok(canon)
}

/// `path` relative to `root` for display ("." for the root itself).
pub fn relative_display(root: &Path, path: &Path) -> String {
    match path.strip_prefix(root) {
        Ok(r) if r.as_os_str().is_empty() => ".".to_owned(),
        Ok(r) => r.display().to_string(),
        Err(_) => path.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A workspace with a directory, a file, a link inside and a link out.
    fn fixture() -> (tempfile::TempDir, tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("src/deep")).unwrap();
        std::fs::write(root.join("file"), b"x").unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("escape")).unwrap();
        std::os::unix::fs::symlink(root.join("src"), root.join("inner")).unwrap();
        (tmp, outside, root)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever a client names, the answer is a directory inside the
        /// root or one of the two refusals; never a panic.
        #[test]
        fn any_path_resolves_inside_or_is_refused(
            parts in prop::collection::vec(
                prop_oneof![
                    Just("..".to_owned()), Just(".".to_owned()), Just("".to_owned()),
                    Just("src".to_owned()), Just("deep".to_owned()), Just("file".to_owned()),
                    Just("escape".to_owned()), Just("inner".to_owned()), Just("/".to_owned()),
                    ".{0,12}",
                ],
                0..6,
            ),
            absolute in any::<bool>(),
        ) {
            let (_tmp, _out, root) = fixture();
            let rel = parts.join("/");
            let rel = if absolute { format!("{}/{rel}", root.display()) } else { rel };
            match resolve_dir(&root, &rel) {
                Ok(p) => {
                    prop_assert!(p.starts_with(&root), "{rel:?} -> {p:?}");
                    prop_assert!(p.is_dir());
                    prop_assert!(!rel.split('/').any(|c| c == ".."));
                }
                Err(PathError::Outside(s) | PathError::NotADirectory(s)) => prop_assert_eq!(s, rel),
            }
        }
    }

    #[test]
    fn stays_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("src/deep")).unwrap();
        std::fs::write(root.join("file"), b"x").unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("escape")).unwrap();
        std::os::unix::fs::symlink(root.join("src"), root.join("inner")).unwrap();

        assert_eq!(resolve_dir(&root, "").unwrap(), root);
        assert_eq!(resolve_dir(&root, ".").unwrap(), root);
        assert_eq!(
            resolve_dir(&root, "src/deep").unwrap(),
            root.join("src/deep")
        );
        assert_eq!(resolve_dir(&root, "inner").unwrap(), root.join("src"));
        let abs = root.join("src");
        assert_eq!(resolve_dir(&root, abs.to_str().unwrap()).unwrap(), abs);

        for bad in [
            "..",
            "src/../..",
            "../x",
            "escape",
            "/",
            "/etc",
            "/nonexistent/x",
        ] {
            assert!(
                matches!(resolve_dir(&root, bad), Err(PathError::Outside(_))),
                "{bad}"
            );
        }
        for missing in ["nope", "file"] {
            assert!(
                matches!(
                    resolve_dir(&root, missing),
                    Err(PathError::NotADirectory(_))
                ),
                "{missing}"
            );
        }
        assert_eq!(relative_display(&root, &root), ".");
        assert_eq!(relative_display(&root, &root.join("src/deep")), "src/deep");
    }
}
