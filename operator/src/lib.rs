//! `dispatch-operator`: reconciles `Workspace` resources into isolated agent
//! Pods. Pure parts (`desired`, `status`, `idle::decide`, `ownership`) are
//! apart from the I/O so they are unit-tested without a cluster:
//! `controller` wires the watches (`children`: one generic watch per kind of
//! child) to the pipeline (`reconcile`: one module per step), which writes
//! children through `applier`; `warm_volumes` keeps claims ready for new
//! Workspaces; `leader` elects, `http` serves metrics.
//!
//! Public are the modules the binaries, the tests and the benchmark use; the
//! watch plumbing (`children`, `watch_filter`), the `applier`, `ownership`
//! and the Claude watcher are private.

mod applier;
mod children;
mod claude_status;
mod claude_watch;
pub mod config;
pub mod context;
pub mod controller;
pub mod crdgen;
pub mod desired;
pub mod http;
pub mod idle;
pub mod leader;
pub mod metrics;
mod ownership;
pub mod recent;
pub mod reconcile;
pub mod status;
pub mod trim;
pub mod warm_volumes;
mod watch_filter;
