//! Shells that outlive the agent. `dispatch-agent --hold` runs a small,
//! long-lived holder ([`process`]) that owns the listening socket and starts
//! the agent as its child; the agent hands it each terminal's descriptors
//! ([`client`], over [`wire`]) and, when restarted after a crash, takes them
//! back and carries the sessions on with no byte of output lost.

pub mod client;
pub mod process;
pub mod wire;

pub use client::{HeldFds, HeldSession, HolderLink};
