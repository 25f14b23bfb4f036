//! `dispatch-operator`: reconciles `Workspace` resources into isolated agent
//! Pods. Pure parts (`desired`, `status`, `idle::decide`, `ownership`) are
//! apart from the I/O so they are unit-tested without a cluster:
//! `controller` wires the watches (`children`: one generic watch per kind of
//! child) to the pipeline (`reconcile`: one module per step), which writes
//! children through `applier`; `warm_volumes` keeps claims ready for new
//! Workspaces; `leader` elects, `http` serves metrics.

pub mod applier;
pub mod children;
pub mod claude_status;
pub mod claude_watch;
pub mod config;
pub mod context;
pub mod controller;
pub mod crdgen;
pub mod desired;
pub mod http;
pub mod idle;
pub mod leader;
pub mod metrics;
pub mod ownership;
pub mod recent;
pub mod reconcile;
pub mod status;
pub mod trim;
pub mod warm_volumes;
pub mod watch_filter;
