//! The Dispatch gateway: authenticates people, keeps the registry of
//! workspaces, starts their agents (local backend), proxies WebSockets to
//! them (and the files and git routes, see `files_proxy`), and serves the
//! web UI.
//!
//! The crate root exposes what the binary and the tests use: [`run`] and
//! [`Config`]; for the tests, [`router`] and the [`AppState`] it takes, with
//! what that holds ([`auth`], [`backend`], [`Metrics`], [`Approvals`]), the
//! [`Registry`], [`WorkspaceName`] and [`client_ip`]. The other modules are
//! private.

mod agent_client;
mod api;
mod app;
mod approvals;
mod approvals_routes;
pub mod auth;
pub mod backend;
mod client_addr;
mod config;
mod extract;
mod fail;
mod files_proxy;
mod metrics;
mod names;
mod open_files;
mod proxy;
mod push;
mod push_routes;
mod registry;
mod server;
mod state;
mod web;

pub use app::{router, run};
pub use approvals::Approvals;
pub use client_addr::client_ip;
pub use config::Config;
pub use metrics::Metrics;
pub use names::WorkspaceName;
pub use registry::Registry;
pub use state::AppState;
