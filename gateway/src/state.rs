//! What every handler shares.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::approvals::Approvals;
use crate::auth::Auth;
use crate::backend::WorkspaceBackend;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct AppState {
    pub auth: Arc<Auth>,
    pub backend: Arc<dyn WorkspaceBackend>,
    pub metrics: Metrics,
    pub web_dir: Option<PathBuf>,
    /// Cancelled when the gateway begins to shut down.
    pub shutdown: CancellationToken,
    /// The running WebSocket proxies.
    pub proxies: TaskTracker,
    /// Peers whose `X-Forwarded-For` is believed (see `client_addr`).
    pub trusted_proxies: Arc<[ipnet::IpNet]>,
    /// Web Push (None: not configured, the routes answer 404).
    pub push: Option<Arc<crate::push::Push>>,
    /// Claude's permission requests across workspaces (one watch per agent).
    pub approvals: Arc<Approvals>,
}
