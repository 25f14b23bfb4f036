//! A real, throwaway Kubernetes control plane on loopback: etcd, kube-apiserver and (by
//! default) kube-controller-manager, built from the pinned upstream modules.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::process::Command;

use crate::bins;
use crate::kubeconfig::{self, Credentials};
use crate::pki::Pki;
use crate::process::ManagedProcess;

/// The Kubernetes release the control plane runs (what `/version` reports).
pub const KUBE_VERSION: &str = "v1.37.2";

const START_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Binaries(#[from] bins::BinError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("generating certificates: {0}")]
    Pki(#[from] rcgen::Error),
    #[error("{name} exited during start-up ({status}); last log lines:\n{log}")]
    Exited {
        name: String,
        status: String,
        log: String,
    },
    #[error("{what} not ready after {secs}s; last log lines of {name}:\n{log}")]
    Timeout {
        what: String,
        secs: u64,
        name: String,
        log: String,
    },
    #[error("kubernetes client: {0}")]
    Kube(#[from] kube::Error),
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error("kubernetes client config: {0}")]
    Infer(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// Options for [`ControlPlane::start_with`].
#[derive(Clone, Debug)]
pub struct ControlPlaneOptions {
    /// Run kube-controller-manager too (default true): ownerReference garbage collection,
    /// namespace deletion, the `default` ServiceAccount in each namespace, `kube-root-ca.crt`.
    pub controller_manager: bool,
    /// Extra kube-apiserver flags, e.g. `--feature-gates=...`.
    pub extra_apiserver_args: Vec<String>,
    /// Keep the state dir (certs, etcd data, logs) after drop, for debugging.
    pub keep_dir: bool,
}

impl Default for ControlPlaneOptions {
    fn default() -> Self {
        ControlPlaneOptions {
            controller_manager: true,
            extra_apiserver_args: Vec::new(),
            keep_dir: false,
        }
    }
}

/// A running control plane. Dropping it stops every process (whole process groups) and
/// removes its state dir.
pub struct ControlPlane {
    // Reverse start order on drop: controller-manager, apiserver, etcd.
    procs: Vec<ManagedProcess>,
    dir: Option<tempfile::TempDir>,
    dir_path: PathBuf,
    bin_dir: PathBuf,
    server: String,
    kubeconfig: PathBuf,
    ca_pem: String,
    client: Client,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("server", &self.server)
            .field("kubeconfig", &self.kubeconfig)
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Starts etcd, kube-apiserver and kube-controller-manager with default options.
    pub async fn start() -> Result<ControlPlane, Error> {
        Self::start_with(ControlPlaneOptions::default()).await
    }

    pub async fn start_with(opts: ControlPlaneOptions) -> Result<ControlPlane, Error> {
        // Ports are picked free and bound a moment later by the child; another process can
        // take one in between. Rare, but many control planes start at once in the tests.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::start_once(&opts).await {
                Err(Error::Exited { log, .. })
                    if attempt < 3 && log.contains("address already in use") =>
                {
                    tracing::warn!(attempt, "a port was taken during start-up; starting again");
                }
                other => return other,
            }
        }
    }

    async fn start_once(opts: &ControlPlaneOptions) -> Result<ControlPlane, Error> {
        let bin_dir = bins::bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("dispatch-kube-")
            .tempdir()
            .map_err(io("creating the control plane's temp dir"))?;
        let root = dir.path().to_path_buf();
        let pki = Pki::generate()?;
        let files = write_pki(&root, &pki)?;

        let [etcd_client, etcd_peer, api_port] = free_ports()?;
        let server = format!("https://127.0.0.1:{api_port}");

        let mut procs = Vec::new();
        let started = Instant::now();

        // etcd: plain HTTP is fine on loopback; fsync off because the data is thrown away.
        let mut etcd = Command::new(bin_dir.join("etcd"));
        etcd.args([
            "--name=dispatch-test".to_string(),
            format!("--data-dir={}", root.join("etcd").display()),
            format!("--listen-client-urls=http://127.0.0.1:{etcd_client}"),
            format!("--advertise-client-urls=http://127.0.0.1:{etcd_client}"),
            format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"),
            format!("--initial-cluster=dispatch-test=http://127.0.0.1:{etcd_peer}"),
            "--unsafe-no-fsync".into(),
            "--log-level=warn".into(),
        ]);
        procs.push(spawn("etcd", etcd, &root)?);

        let mut api = Command::new(bin_dir.join("kube-apiserver"));
        api.args([
            format!("--etcd-servers=http://127.0.0.1:{etcd_client}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            // The endpoint reconciler refuses a loopback address for the `kubernetes`
            // Service; nothing here routes ClusterIPs anyway, so leave its endpoints empty.
            "--endpoint-reconciler-type=none".into(),
            format!("--secure-port={api_port}"),
            format!("--cert-dir={}", root.join("apiserver-certs").display()),
            format!("--tls-cert-file={}", files.apiserver_cert.display()),
            format!("--tls-private-key-file={}", files.apiserver_key.display()),
            format!("--client-ca-file={}", files.ca_cert.display()),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", files.sa_pub.display()),
            format!(
                "--service-account-signing-key-file={}",
                files.sa_key.display()
            ),
            "--service-cluster-ip-range=10.96.0.0/16".into(),
            "--authorization-mode=Node,RBAC".into(),
            "--enable-admission-plugins=NodeRestriction,PodSecurity".into(),
            "--allow-privileged=false".into(),
            "--profiling=false".into(),
            "--v=1".into(),
        ]);
        api.args(&opts.extra_apiserver_args);
        procs.push(spawn("kube-apiserver", api, &root)?);

        let admin_kubeconfig = root.join("admin.kubeconfig");
        write_file(
            &admin_kubeconfig,
            &kubeconfig::render(
                "dispatch-test",
                &server,
                &pki.ca.cert_pem,
                &Credentials::ClientCert {
                    cert_pem: pki.admin.cert_pem.clone(),
                    key_pem: pki.admin.key_pem.clone(),
                },
            ),
        )?;
        let client = client_from_kubeconfig(&admin_kubeconfig).await?;

        let mut cp = ControlPlane {
            procs,
            dir: Some(dir),
            dir_path: root.clone(),
            bin_dir: bin_dir.clone(),
            server: server.clone(),
            kubeconfig: admin_kubeconfig,
            ca_pem: pki.ca.cert_pem.clone(),
            client,
        };
        cp.wait_ready(started).await?;
        let api_ready = started.elapsed();

        // Only now: kube-controller-manager gives up if the apiserver is not healthy within
        // 10s of its start, which a loaded machine can miss.
        if opts.controller_manager {
            let kcm_kubeconfig = cp.kubeconfig.clone();
            let mut kcm = Command::new(bin_dir.join("kube-controller-manager"));
            kcm.args([
                format!("--kubeconfig={}", kcm_kubeconfig.display()),
                // One admin identity for all controllers instead of a ServiceAccount token
                // per controller (as real clusters do): that costs ~5s of start-up here and
                // the tests check our components' RBAC, not the controllers'.
                "--use-service-account-credentials=false".into(),
                format!(
                    "--service-account-private-key-file={}",
                    files.sa_key.display()
                ),
                format!("--root-ca-file={}", files.ca_cert.display()),
                "--leader-elect=false".into(),
                "--secure-port=0".into(),
                "--v=1".into(),
            ]);
            cp.procs.push(spawn("kube-controller-manager", kcm, &root)?);
            // The serviceaccount controller creating `default/default` proves it is working.
            cp.wait_default_service_account("default", started).await?;
        }
        if opts.keep_dir
            && let Some(d) = cp.dir.take()
        {
            let _ = d.keep();
        }
        tracing::info!(server = %cp.server, kubeconfig = %cp.kubeconfig.display(),
            apiserver_ready_secs = api_ready.as_secs_f32(),
            secs = started.elapsed().as_secs_f32(), "control plane ready");
        Ok(cp)
    }

    /// A client with cluster-admin rights (client cert in group `system:masters`).
    /// The control plane's processes by name (etcd, kube-apiserver, ...) and
    /// pid, e.g. for benchmarks that account their CPU time.
    pub fn processes(&self) -> Vec<(&str, i32)> {
        self.procs.iter().map(|p| (p.name(), p.pid())).collect()
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The admin kubeconfig (for `kubectl --kubeconfig`, `KUBECONFIG=`, child processes).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> &str {
        &self.server
    }

    /// The cluster CA certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Where etcd, kube-apiserver, kubectl, helm... are.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The state dir (certs, etcd data, `*.log` of each process).
    pub fn state_dir(&self) -> &Path {
        &self.dir_path
    }

    /// A `kubectl` command already pointed at this cluster as admin.
    pub fn kubectl(&self) -> std::process::Command {
        let mut c = std::process::Command::new(self.bin_dir.join("kubectl"));
        c.arg(format!("--kubeconfig={}", self.kubeconfig.display()));
        c
    }

    /// A `helm` command pointed at this cluster as admin, with its cache/config/data
    /// dirs inside the state dir (nothing written to the user's home).
    pub fn helm(&self) -> std::process::Command {
        let mut c = std::process::Command::new(self.bin_dir.join("helm"));
        c.env("KUBECONFIG", &self.kubeconfig);
        for (var, sub) in [
            ("HELM_CACHE_HOME", "helm/cache"),
            ("HELM_CONFIG_HOME", "helm/config"),
            ("HELM_DATA_HOME", "helm/data"),
        ] {
            c.env(var, self.dir_path.join(sub));
        }
        c
    }

    /// A token for ServiceAccount `namespace/name` from the TokenRequest API (as a pod's
    /// projected token would be), valid for `expiration_seconds` (at least 600).
    pub async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
        expiration_seconds: i64,
    ) -> Result<String, Error> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client(), namespace);
        let req = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(expiration_seconds.max(600)),
                ..Default::default()
            }),
            ..Default::default()
        };
        let resp = api
            .create_token_request(name, &PostParams::default(), &req)
            .await?;
        Ok(resp.status.and_then(|s| s.token).unwrap_or_default())
    }

    /// Writes a kubeconfig that authenticates with `token` (e.g. a ServiceAccount's) into
    /// the state dir as `<name>.kubeconfig`; for running operator/gateway processes.
    pub fn write_token_kubeconfig(&self, name: &str, token: &str) -> Result<PathBuf, Error> {
        let path = self.dir_path.join(format!("{name}.kubeconfig"));
        write_file(
            &path,
            &kubeconfig::render(
                "dispatch-test",
                &self.server,
                &self.ca_pem,
                &Credentials::Token(token.to_string()),
            ),
        )?;
        Ok(path)
    }

    /// A client that authenticates with `token` only.
    pub async fn client_with_token(&self, token: &str) -> Result<Client, Error> {
        let name = format!("token-{}", std::process::id());
        let path = self.write_token_kubeconfig(&name, token)?;
        let client = client_from_kubeconfig(&path).await;
        let _ = std::fs::remove_file(&path);
        client
    }

    /// Creates a namespace (labels optional) and, when the controller-manager runs, waits
    /// for its `default` ServiceAccount, without which the apiserver refuses Pods there.
    pub async fn create_namespace(
        &self,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Result<Namespace, Error> {
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        };
        let created = Api::<Namespace>::all(self.client())
            .create(&PostParams::default(), &ns)
            .await?;
        if self
            .procs
            .iter()
            .any(|p| p.name() == "kube-controller-manager")
        {
            let api: Api<ServiceAccount> = Api::namespaced(self.client(), name);
            let started = Instant::now();
            while api.get_opt("default").await?.is_none() {
                if started.elapsed() > START_TIMEOUT {
                    return Err(self.timeout(
                        &format!("ServiceAccount {name}/default"),
                        "kube-controller-manager",
                    ));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(created)
    }

    async fn wait_ready(&mut self, started: Instant) -> Result<(), Error> {
        loop {
            self.check_alive()?;
            if self.readyz().await {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(self.timeout("kube-apiserver /readyz", "kube-apiserver"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn readyz(&self) -> bool {
        let Ok(req) = hyper::Request::get("/readyz").body(Vec::new()) else {
            return false;
        };
        matches!(self.client.request_text(req).await, Ok(body) if body.trim() == "ok")
    }

    async fn wait_default_service_account(
        &mut self,
        namespace: &str,
        started: Instant,
    ) -> Result<(), Error> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client(), namespace);
        loop {
            self.check_alive()?;
            if api.get_opt("default").await?.is_some() {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(self.timeout(
                    &format!("ServiceAccount {namespace}/default"),
                    "kube-controller-manager",
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn check_alive(&mut self) -> Result<(), Error> {
        for p in &mut self.procs {
            if let Some(status) = p.try_wait() {
                return Err(Error::Exited {
                    name: p.name().to_string(),
                    status: status.to_string(),
                    log: p.log_tail(4000),
                });
            }
        }
        Ok(())
    }

    fn timeout(&self, what: &str, name: &str) -> Error {
        let log = self
            .procs
            .iter()
            .find(|p| p.name() == name)
            .map(|p| p.log_tail(4000))
            .unwrap_or_default();
        Error::Timeout {
            what: what.to_string(),
            secs: START_TIMEOUT.as_secs(),
            name: name.to_string(),
            log,
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        while let Some(p) = self.procs.pop() {
            drop(p);
        }
        // `dir` (a TempDir unless kept) is removed after this, once nothing writes to it.
    }
}

/// Builds a client from a kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> Result<Client, Error> {
    let kc = Kubeconfig::read_from(path)?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Client::try_from(config).map_err(|e| Error::Infer(e.to_string()))
}

struct PkiFiles {
    ca_cert: PathBuf,
    apiserver_cert: PathBuf,
    apiserver_key: PathBuf,
    sa_key: PathBuf,
    sa_pub: PathBuf,
}

fn write_pki(root: &Path, pki: &Pki) -> Result<PkiFiles, Error> {
    let pki_dir = root.join("pki");
    std::fs::create_dir_all(&pki_dir).map_err(io("creating pki dir"))?;
    let files = PkiFiles {
        ca_cert: pki_dir.join("ca.crt"),
        apiserver_cert: pki_dir.join("apiserver.crt"),
        apiserver_key: pki_dir.join("apiserver.key"),
        sa_key: pki_dir.join("sa.key"),
        sa_pub: pki_dir.join("sa.pub"),
    };
    write_file(&files.ca_cert, &pki.ca.cert_pem)?;
    write_file(&files.apiserver_cert, &pki.apiserver.cert_pem)?;
    write_file(&files.apiserver_key, &pki.apiserver.key_pem)?;
    write_file(&files.sa_key, &pki.service_account_key_pem)?;
    write_file(&files.sa_pub, &pki.service_account_public_pem)?;
    Ok(files)
}

fn write_file(path: &Path, text: &str) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(format!("writing {}", path.display())))?;
    f.write_all(text.as_bytes())
        .map_err(io(format!("writing {}", path.display())))
}

fn spawn(name: &str, cmd: Command, root: &Path) -> Result<ManagedProcess, Error> {
    let log = root.join(format!("{name}.log"));
    // Killed outright on drop: the cluster's state is thrown away, and a graceful apiserver
    // shutdown would add seconds to every test.
    ManagedProcess::spawn(name, cmd, &log)
        .map(|p| p.with_drop_grace(Duration::ZERO))
        .map_err(io(format!("starting {name}")))
}

/// `N` distinct loopback ports free at the time of asking (held together while choosing).
fn free_ports<const N: usize>() -> Result<[u16; N], Error> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").map_err(io("finding a free port")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut ports = [0u16; N];
    for (slot, l) in ports.iter_mut().zip(&listeners) {
        *slot = l.local_addr().map_err(io("finding a free port"))?.port();
    }
    Ok(ports)
}

/// A loopback port free at the time of asking.
pub fn free_port() -> Result<u16, Error> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io("finding a free port"))?;
    let port = l.local_addr().map_err(io("finding a free port"))?.port();
    Ok(port)
}
