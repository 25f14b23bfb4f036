//! The Dispatch gateway: authenticates people, keeps the registry of
//! workspaces, starts their agents (local backend), proxies WebSockets to
//! them, and serves the web UI.

pub mod agent_client;
pub mod api;
pub mod app;
pub mod auth;
pub mod backend;
pub mod client_addr;
pub mod config;
pub mod metrics;
pub mod names;
pub mod proxy;
pub mod registry;
pub mod server;
pub mod web;
