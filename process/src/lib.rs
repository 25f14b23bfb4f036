//! What every Dispatch binary does the same way as a process: how it logs,
//! which signals stop it, how it tells its starter the address it bound, and
//! its wall clock. Kept out of `dispatch-api`, which does no I/O.

use std::io::Write;

use tracing_subscriber::EnvFilter;

/// Logs to stderr through `tracing`, filtered by `RUST_LOG` (default
/// `info`), as JSON lines when `json`, coloured only on a terminal.
///
/// A line that cannot be written is dropped: tracing-subscriber reports its
/// own write failures with `eprintln!`, which panics once stderr is gone (the
/// read end of a killed parent's pipe), and such a panic once killed the
/// agent holder's signal thread before it stopped its agent.
pub fn init_logs(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .log_internal_errors(false);
    if json {
        logs.json().init();
    } else {
        logs.init();
    }
}

/// Resolves at the first SIGTERM or SIGINT. The handlers are installed when
/// this is called, not when the future is first polled, so that a stop sent
/// right after the address is announced is never fatal.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let signals = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = signals else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    }
}

/// Writes the lines a binary's starter waits for on stdout (`DISPATCH_<PART>_LISTENING
/// <address>`, the contract tests and the gateway parse), flushed at once.
/// Returns the write error, if any: a starter that cannot read them cannot
/// use the process.
pub fn announce(lines: &[&str]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for line in lines {
        writeln!(out, "{line}")?;
    }
    out.flush()
}

/// A line on stderr for whoever started the process (its reason to exit,
/// say). Never panics, unlike `eprintln!`, when stderr is gone, as it is once
/// a killed parent's end of the pipe closed.
pub fn say(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Unix time in milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_is_past_2026() {
        // 2026-01-01T00:00:00Z
        assert!(now_ms() > 1_767_225_600_000);
    }

    #[tokio::test]
    async fn a_sigterm_after_the_call_resolves_it() {
        let stopped = shutdown_signal();
        // Sent before the future is first polled: it must still count.
        // SAFETY: raise only sends a signal to this process, whose handler
        // the call above installed.
        unsafe {
            libc::raise(libc::SIGTERM);
        }
        tokio::time::timeout(std::time::Duration::from_secs(10), stopped)
            .await
            .expect("SIGTERM resolves the shutdown future");
    }
}
