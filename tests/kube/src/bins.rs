//! Where the control-plane binaries are: built by `tests/kube/build-tools.sh` (run by
//! `scripts/setup.sh`) into a cache dir keyed by a hash of the pinned versions.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The binaries `ControlPlane` and the tests run.
pub const REQUIRED: &[&str] = &[
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kubectl",
    "helm",
];

#[derive(Debug, thiserror::Error)]
pub enum BinError {
    #[error(
        "the control-plane binaries are missing ({missing} not in {dir}); build them with `scripts/setup.sh` \
         (or `tests/kube/build-tools.sh`), or point DISPATCH_KUBE_BIN_DIR at a directory holding {all}"
    )]
    Missing {
        dir: String,
        missing: String,
        all: String,
    },
    #[error("cannot ask tests/kube/build-tools.sh where the binaries are: {0}")]
    Locate(String),
}

/// The bin dir: `DISPATCH_KUBE_BIN_DIR` if set, else the one the build script writes for the
/// versions pinned in this checkout. Checks every required binary is there.
pub fn bin_dir() -> Result<PathBuf, BinError> {
    let dir = match std::env::var_os("DISPATCH_KUBE_BIN_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => cache_bin_dir()?,
    };
    check(&dir)?;
    Ok(dir)
}

fn cache_bin_dir() -> Result<PathBuf, BinError> {
    // The script owns the hash recipe; asking it keeps one source of truth.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("build-tools.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("--print-bin-dir")
        .output()
        .map_err(|e| BinError::Locate(format!("{}: {e}", script.display())))?;
    if !out.status.success() {
        return Err(BinError::Locate(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if line.is_empty() {
        return Err(BinError::Locate("it printed nothing".into()));
    }
    Ok(PathBuf::from(line))
}

fn check(dir: &Path) -> Result<(), BinError> {
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|b| !dir.join(b).is_file())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(BinError::Missing {
            dir: dir.display().to_string(),
            missing: missing.join(", "),
            all: REQUIRED.join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binaries_name_setup_script() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("etcd"), b"").expect("write");
        let err = check(dir.path()).expect_err("must be missing");
        let msg = err.to_string();
        assert!(msg.contains("scripts/setup.sh"), "{msg}");
        assert!(msg.contains("kube-apiserver"), "{msg}");
        assert!(!msg.contains("missing (etcd"), "{msg}");
    }
}
