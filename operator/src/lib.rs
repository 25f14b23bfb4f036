//! `dispatch-operator`: reconciles `Workspace` resources into isolated agent
//! Pods. Pure parts (`desired`, `status`, `idle::decide`) are apart from the
//! I/O (`controller`, `leader`, `http`) so they are unit-tested without a cluster.

pub mod applier;
pub mod children;
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
pub mod watch_filter;
