//! The Dispatch gateway: authenticates people, keeps the registry of
//! workspaces, starts their agents (local backend), proxies WebSockets to
//! them (and the files and git routes, see `files_proxy`), and serves the
//! web UI.

pub mod agent_client;
pub mod api;
pub mod app;
pub mod approvals;
pub mod approvals_routes;
pub mod auth;
pub mod backend;
pub mod client_addr;
pub mod config;
pub mod extract;
pub mod fail;
pub mod files_proxy;
pub mod metrics;
pub mod names;
pub mod open_files;
pub mod proxy;
pub mod push;
pub mod push_routes;
pub mod registry;
pub mod server;
pub mod state;
pub mod web;
