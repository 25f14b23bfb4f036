//! The sessions of this workspace as the layer above the kinds sees them:
//! one enum of the kinds, so that code needing one kind matches on it.

use std::sync::Arc;

use crate::claude::{AsClaude, ClaudeSession};
use crate::registry::{Entry, Registry};
use crate::session::Session;
use crate::terminal::{AsTerminal, TerminalSession};

#[derive(Clone)]
pub enum AnySession {
    Terminal(Arc<TerminalSession>),
    Claude(Arc<ClaudeSession>),
}

/// Every session of the workspace, of either kind.
pub type Sessions = Registry<AnySession>;

impl Entry for AnySession {
    fn session(&self) -> &dyn Session {
        match self {
            AnySession::Terminal(s) => s.as_ref(),
            AnySession::Claude(s) => s.as_ref(),
        }
    }
}

impl From<Arc<TerminalSession>> for AnySession {
    fn from(s: Arc<TerminalSession>) -> Self {
        AnySession::Terminal(s)
    }
}

impl From<Arc<ClaudeSession>> for AnySession {
    fn from(s: Arc<ClaudeSession>) -> Self {
        AnySession::Claude(s)
    }
}

impl AsTerminal for AnySession {
    fn terminal(&self) -> Option<&Arc<TerminalSession>> {
        match self {
            AnySession::Terminal(s) => Some(s),
            AnySession::Claude(_) => None,
        }
    }
}

impl AsClaude for AnySession {
    fn claude(&self) -> Option<&Arc<ClaudeSession>> {
        match self {
            AnySession::Claude(s) => Some(s),
            AnySession::Terminal(_) => None,
        }
    }
}
