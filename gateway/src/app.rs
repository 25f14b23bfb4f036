//! Wiring: the router, and running the server until a signal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{Request, State};
use axum::routing::{any, get, post};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::keys::{self, KeySources};
use crate::auth::{Auth, AuthSettings, LoginLimiter, TokenSigner};
use crate::backend::WorkspaceBackend;
use crate::backend::local::LocalBackend;
use crate::config::{BackendKind, Config};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::state::AppState;
use crate::{api, approvals, approvals_routes, files_proxy, push, push_routes, web};

pub fn router(st: AppState) -> Router {
    let api = Router::new()
        .route("/login", post(api::login))
        .route("/logout", post(api::logout))
        .route("/me", get(api::me))
        .route(
            "/workspaces",
            get(api::list_workspaces).post(api::create_workspace),
        )
        .route(
            "/workspaces/{name}",
            get(api::get_workspace).delete(api::delete_workspace),
        )
        .route("/workspaces/{name}/open", post(api::open_workspace))
        .route("/approvals", get(approvals_routes::inbox))
        .route("/approvals/events", get(approvals_routes::events))
        .route(
            "/approvals/{workspace}/{session}/{request_id}",
            post(approvals_routes::answer),
        )
        .route("/workspaces/{name}/sessions", get(api::list_sessions))
        .route("/workspaces/{name}/ws", get(api::workspace_ws))
        .route("/workspaces/{name}/files", any(files_proxy::proxy))
        .route("/workspaces/{name}/files/{*rest}", any(files_proxy::proxy))
        .route("/workspaces/{name}/git/{*rest}", any(files_proxy::proxy))
        .route("/workspaces/{name}/claude/{*rest}", any(files_proxy::proxy))
        .route("/push/vapid-public-key", get(push_routes::vapid_public_key))
        .route(
            "/push/subscriptions",
            post(push_routes::subscribe).delete(push_routes::unsubscribe),
        )
        .route("/push/test", post(push_routes::test))
        .route("/push/action", post(push_routes::action))
        .fallback(api::api_not_found)
        .layer(tower_http::set_header::SetResponseHeaderLayer::overriding(
            axum::http::header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("no-store"),
        ));
    let [csp, nosniff, frames, referrer, coop] = web::security_headers();
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/login", get(api::login_link))
        .nest("/api", api)
        .fallback(spa)
        .layer(csp)
        .layer(nosniff)
        .layer(frames)
        .layer(referrer)
        .layer(coop)
        .with_state(st)
}

async fn spa(State(st): State<AppState>, req: Request) -> axum::response::Response {
    web::serve(&st, req).await
}

async fn metrics(State(st): State<AppState>) -> impl axum::response::IntoResponse {
    st.metrics
        .approval_watches
        .set(st.approvals.watches() as i64);
    st.metrics
        .approvals_pending
        .set(st.approvals.pending_total() as i64);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.encode(),
    )
}

fn create_private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Runs the gateway until SIGTERM or SIGINT, then closes the proxied
/// WebSockets and stops the agents before returning.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let data_dir = cfg.data_dir();
    create_private_dir(&data_dir)?;
    let registry = Registry::open(&data_dir.join("gateway.db")).context("opening gateway.db")?;

    let local = cfg.backend == BackendKind::Local;
    let access_key_path = data_dir.join("access-key");
    let keys = keys::load_keys(KeySources {
        key_file: cfg.key_file.as_deref(),
        env_key: std::env::var("DISPATCH_KEY").ok().filter(|k| !k.is_empty()),
        users_file: cfg.users_file.as_deref(),
        generated_key_path: local.then_some(access_key_path.as_path()),
    })?;
    // Kept in a file so that logins survive restarts (and, in a cluster,
    // mounted from one Secret so replicas accept each other's tokens).
    let signing_key = match &cfg.signing_key_file {
        Some(path) => read_signing_key(path)?,
        None => {
            if !local {
                tracing::warn!(
                    "no --signing-key-file: logins are signed with this replica's own key, \
                     so other replicas will not accept them"
                );
            }
            keys::read_or_create_secret(&data_dir.join("session-key"), 32)?
        }
    };
    let auth = Auth::new(
        AuthSettings {
            keys,
            signer: TokenSigner::new(signing_key.as_bytes()),
            limiter: LoginLimiter::new(cfg.login_burst, cfg.login_per_minute),
            ttl: cfg.session_ttl(),
            secure_cookies: cfg.secure_cookies,
        },
        registry.clone(),
    )
    .await?;

    let push = start_push(&cfg, &data_dir, signing_key.as_bytes())?;
    let metrics = Metrics::default();
    let mut kube_client = None;
    let backend: Arc<dyn WorkspaceBackend> = match cfg.backend {
        BackendKind::Local => Arc::new(
            LocalBackend::new(
                data_dir.join("workspaces"),
                registry,
                cfg.agent_bin(),
                metrics.clone(),
            )
            .context("workspace root")?,
        ),
        BackendKind::Kubernetes => {
            let (b, client, namespace) = kubernetes_backend(&cfg).await?;
            kube_client = Some((client, namespace));
            Arc::new(b)
        }
    };

    let shutdown = CancellationToken::new();
    let st = AppState {
        auth: Arc::new(auth),
        backend: backend.clone(),
        metrics,
        web_dir: cfg.web_dir.clone(),
        shutdown: shutdown.clone(),
        proxies: TaskTracker::new(),
        trusted_proxies: cfg.trusted_proxies.clone().into(),
        push,
        approvals: approvals::Approvals::new(backend.clone()),
    };
    tokio::spawn(approvals::watch::run(
        st.approvals.clone(),
        shutdown.clone(),
    ));
    if let Some(p) = &st.push {
        tokio::spawn(push::bridge::run(
            p.clone(),
            st.approvals.clone(),
            Duration::from_secs(cfg.push_reminder_before),
            shutdown.clone(),
        ));
    }
    if let (Some((client, namespace)), Some(cm)) = (kube_client, &cfg.revocations_configmap) {
        crate::backend::kubernetes::revocations::start(client, &namespace, cm, st.auth.clone());
    }
    let default_key = st.auth.keys().default_user_key();
    let proxies = st.proxies.clone();

    crate::open_files::raise_limit();
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("listening on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    announce(addr, local.then_some(default_key).flatten());

    let metrics = st.metrics.clone();
    let app = router(st);
    let stop = shutdown.clone();
    tokio::spawn(async move {
        dispatch_process::shutdown_signal().await;
        tracing::info!("shutting down");
        stop.cancel();
    });
    crate::server::serve(
        listener,
        app,
        cfg.server_limits(),
        metrics,
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    proxies.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), proxies.wait()).await;
    backend.shutdown().await;
    Ok(())
}

/// The login-token signing key shared by replicas (a mounted Secret).
fn read_signing_key(path: &std::path::Path) -> anyhow::Result<String> {
    let key = std::fs::read_to_string(path)
        .with_context(|| format!("reading the signing key {}", path.display()))?;
    let key = key.trim();
    anyhow::ensure!(
        key.len() >= 32,
        "the signing key in {} is shorter than 32 bytes",
        path.display()
    );
    Ok(key.to_owned())
}

/// Client from the in-cluster service account or KUBECONFIG; namespace from
/// the flag, else the client's default; template from its file.
async fn kubernetes_backend(
    cfg: &Config,
) -> anyhow::Result<(
    crate::backend::kubernetes::KubernetesBackend,
    kube::Client,
    String,
)> {
    use crate::backend::kubernetes::{KubernetesBackend, Template};
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster or KUBECONFIG)")?;
    let namespace = cfg
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let template = match &cfg.workspace_template {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the workspace template {}", path.display()))?;
            Template::parse(&text).with_context(|| path.display().to_string())?
        }
        None => Template::default(),
    };
    tracing::info!(%namespace, "kubernetes backend: watching Workspaces");
    let backend = KubernetesBackend::start(client.clone(), &namespace, template);
    Ok((backend, client, namespace))
}

/// Web Push: the VAPID key (the flag's file, else the data dir's, made
/// once) and the subscriptions in gateway.db.
fn start_push(
    cfg: &Config,
    data_dir: &std::path::Path,
    signing_key: &[u8],
) -> anyhow::Result<Option<Arc<push::Push>>> {
    let vapid = match &cfg.vapid_key_file {
        Some(path) => push::vapid::Vapid::load(path, false, &cfg.vapid_subject)?,
        None => push::vapid::Vapid::load(&data_dir.join("vapid-key"), true, &cfg.vapid_subject)?,
    };
    let store = push::store::SubscriptionStore::open(&data_dir.join("gateway.db"))
        .context("opening gateway.db for push subscriptions")?;
    Ok(Some(Arc::new(push::Push::new(
        vapid,
        store,
        signing_key,
        push::PushSettings {
            policy: push::subscription::EndpointPolicy {
                allow_http_loopback: cfg.push_allow_http_loopback,
            },
            action_ttl: Duration::from_secs(cfg.push_action_ttl),
        },
    ))))
}

/// The lines the contracts promise on stdout.
fn announce(addr: SocketAddr, key: Option<String>) {
    let mut lines = vec![format!("DISPATCH_GATEWAY_LISTENING http://{addr}")];
    if let Some(key) = key {
        lines.push(format!("Open http://{addr}/login?key={key}"));
    }
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let _ = dispatch_process::announce(&lines);
}
