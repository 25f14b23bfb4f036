//! The limit on open files: each connection is a descriptor, so the gateway
//! raises its own soft limit, and gives its children the usual one back.

/// The soft limit on open files the gateway started with, which its
/// children get back (see `raise_limit`).
static STARTING_NOFILE: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();

/// Raises the soft limit on open files to the hard limit (allowed without
/// privilege): each connection is a descriptor, and the usual soft limit of
/// 1024 is what a few hundred idle sockets and WebSockets exhaust.
pub fn raise_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            let _ = STARTING_NOFILE.set((soft, hard));
            if soft >= hard {
                tracing::debug!("open files limit: {soft}");
            } else if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!("cannot raise the open files limit from {soft}: {e}");
            } else {
                tracing::info!("open files limit raised from {soft} to {hard}");
            }
        }
        Err(e) => tracing::warn!("cannot read the open files limit: {e}"),
    }
}

/// In a child between fork and exec (async-signal-safe: one system call):
/// puts back the soft limit the gateway started with, since programs that
/// use select() break on descriptors above 1024.
pub fn restore_limit() -> std::io::Result<()> {
    use nix::sys::resource::{Resource, setrlimit};
    if let Some((soft, hard)) = STARTING_NOFILE.get() {
        setrlimit(Resource::RLIMIT_NOFILE, *soft, *hard)?;
    }
    Ok(())
}
