//! Starts a throwaway control plane (and optionally a local node) and keeps it up until
//! Ctrl-C or SIGTERM, for humans and scripts: prints `KUBECONFIG=<path>` on stdout once ready.
//!
//!   dispatch-kube-dev                       control plane only
//!   dispatch-kube-dev --node --agent-bin B  plus a local node running pods' `agent` as B

use std::path::PathBuf;

use clap::Parser;
use dispatch_kube_harness::{ControlPlane, ControlPlaneOptions, LocalNode, LocalNodeOptions};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser, Debug)]
#[command(about = "A throwaway Kubernetes control plane on loopback, for development and tests")]
struct Args {
    /// Also run a local node that plays the kubelet.
    #[arg(long)]
    node: bool,
    /// Program that stands for the agent image (default: env DISPATCH_AGENT_BIN).
    #[arg(long, env = "DISPATCH_AGENT_BIN")]
    agent_bin: Option<PathBuf>,
    /// Only pods matching this label selector go to the local node.
    #[arg(long)]
    selector: Option<String>,
    /// Do not run kube-controller-manager.
    #[arg(long)]
    no_controller_manager: bool,
    /// Keep the state dir (certs, etcd data, logs) after exit.
    #[arg(long)]
    keep: bool,
    /// Also write the admin kubeconfig here.
    #[arg(long)]
    kubeconfig_out: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    // Handlers first: a signal that arrives while starting must still tear everything down
    // (the default action would exit without dropping the control plane).
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let cp = ControlPlane::start_with(ControlPlaneOptions {
        controller_manager: !args.no_controller_manager,
        keep_dir: args.keep,
        ..Default::default()
    })
    .await?;
    let node = if args.node {
        Some(
            LocalNode::start(
                cp.client(),
                LocalNodeOptions {
                    agent_bin: args.agent_bin.clone(),
                    label_selector: args.selector.clone(),
                    ..Default::default()
                },
            )
            .await?,
        )
    } else {
        None
    };
    let mut path = cp.kubeconfig_path().to_path_buf();
    if let Some(out) = &args.kubeconfig_out {
        std::fs::copy(cp.kubeconfig_path(), out)?;
        path = out.clone();
    }
    eprintln!(
        "control plane at {} (state in {}); binaries in {}; Ctrl-C stops it",
        cp.server_url(),
        cp.state_dir().display(),
        cp.bin_dir().display()
    );
    println!("KUBECONFIG={}", path.display());
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    if let Some(n) = node {
        n.shutdown().await;
    }
    drop(cp);
    Ok(())
}
