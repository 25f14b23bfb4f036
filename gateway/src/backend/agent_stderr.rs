//! What a local agent writes to stderr: passed on to the gateway's own
//! stderr line by line (as when the agent inherited it), and read for the
//! agent's last words, so that "the agent exited" can say why (a read-only
//! `.dispatch`, a bad flag...) in the API and the UI rather than only in a
//! log the user may never see.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::process::ChildStderr;
use tokio::task::JoinHandle;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};

/// Longest stderr line kept whole; longer ones are cut (an agent's stderr
/// is its own logs, but the memory a line can take is bounded all the same).
const MAX_LINE: usize = 16 << 10;
/// Longest reason quoted in an error message.
const MAX_REASON: usize = 500;

/// The lines that explain an exit, most telling first: the agent's exit line
/// (`dispatch-agent: <error>`, printed by its `main`), else its last ERROR log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LastWords {
    exit_line: Option<String>,
    last_error: Option<String>,
}

impl LastWords {
    pub fn note(&mut self, raw: &str) {
        let line = strip_ansi(raw);
        let line = line.trim();
        if let Some(why) = line.strip_prefix("dispatch-agent: ") {
            self.exit_line = Some(clip(why));
        } else if line.split_whitespace().take(3).any(|w| w == "ERROR") {
            self.last_error = Some(clip(line));
        }
    }

    pub fn reason(&self) -> Option<&str> {
        self.exit_line.as_deref().or(self.last_error.as_deref())
    }
}

fn clip(s: &str) -> String {
    match s.char_indices().nth(MAX_REASON) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s.to_owned(),
    }
}

/// Removes terminal escape sequences (the agent's log lines are coloured).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            if !c.is_control() || c == '\t' {
                out.push(c);
            }
            continue;
        }
        // CSI: ESC [ parameters... final byte in @..~
        if chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            chars.next();
        }
    }
    out
}

/// The reader of one agent's stderr.
pub struct AgentStderr {
    words: Arc<Mutex<LastWords>>,
    task: JoinHandle<()>,
}

impl AgentStderr {
    pub fn capture(stderr: ChildStderr) -> Self {
        let words = Arc::new(Mutex::new(LastWords::default()));
        let noted = words.clone();
        let task = tokio::spawn(async move {
            let mut lines = FramedRead::new(stderr, LinesCodec::new_with_max_length(MAX_LINE));
            while let Some(line) = lines.next().await {
                match line {
                    Ok(line) => {
                        eprintln!("{line}");
                        noted.lock().unwrap_or_else(|p| p.into_inner()).note(&line);
                    }
                    // The codec skips to the next newline.
                    Err(LinesCodecError::MaxLineLengthExceeded) => {}
                    Err(LinesCodecError::Io(_)) => break,
                }
            }
        });
        AgentStderr { words, task }
    }

    /// The agent's reason, once its stderr has closed (it has exited), or
    /// after `wait` when something it started holds stderr open.
    pub async fn reason(self, wait: Duration) -> Option<String> {
        let _ = tokio::time::timeout(wait, self.task).await;
        let words = self.words.lock().unwrap_or_else(|p| p.into_inner());
        words.reason().map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_line_wins_over_error_logs() {
        let mut w = LastWords::default();
        w.note("\u{1b}[2m2026-01-01T00:00:00Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m starting");
        assert_eq!(w.reason(), None);
        w.note("2026-01-01T00:00:00Z \u{1b}[31mERROR\u{1b}[0m dispatch_agent: db locked");
        assert_eq!(
            w.reason(),
            Some("2026-01-01T00:00:00Z ERROR dispatch_agent: db locked")
        );
        w.note("dispatch-agent: opening agent.db: attempt to write a readonly database");
        w.note("2026-01-01T00:00:01Z ERROR later noise");
        assert_eq!(
            w.reason(),
            Some("opening agent.db: attempt to write a readonly database")
        );
    }

    #[test]
    fn reasons_are_clipped_and_cleaned() {
        let mut w = LastWords::default();
        w.note(&format!("dispatch-agent: {}\u{7}", "é".repeat(2000)));
        let r = w.reason().unwrap();
        assert_eq!(r.chars().count(), MAX_REASON + 3);
        assert!(r.ends_with("..."));
        assert_eq!(strip_ansi("a\u{1b}[1;31mb\u{1b}[0mc\u{1b}Xd"), "abcd");
    }
}
