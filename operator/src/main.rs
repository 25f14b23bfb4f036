//! `dispatch-operator`: see the crate docs and `--help`.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use dispatch_operator::config::Cli;
use dispatch_operator::leader::LeaderElector;
use dispatch_operator::metrics::Metrics;
use dispatch_operator::{controller, http};
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};

fn main() -> anyhow::Result<()> {
    // Before the runtime's threads exist, so that none has an arena of its own yet.
    limit_malloc_arenas();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    dispatch_process::init_logs(cli.log_json);

    let metrics = Arc::new(Metrics::default());
    let bound = http::serve(cli.listen, metrics.clone()).await?;
    dispatch_process::announce(&[&format!("DISPATCH_OPERATOR_LISTENING {bound}")])?;

    let client = Client::try_default().await?;
    let identity = cli.leader.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });

    let elector = (!cli.leader.no_leader_election).then(|| {
        let ns = cli
            .leader
            .lease_namespace
            .clone()
            .or_else(|| cli.namespace.clone())
            .unwrap_or_else(|| "default".into());
        LeaderElector::new(
            Api::<Lease>::namespaced(client.clone(), &ns),
            cli.leader.lease_name.clone(),
            identity.clone(),
            Duration::from_secs(u64::from(cli.leader.lease_seconds.max(2))),
        )
    });
    if let Some(e) = &elector {
        tracing::info!(identity = e.identity(), "waiting to lead");
        e.acquire().await;
        tracing::info!(identity = e.identity(), "leading");
    }

    let shutdown = dispatch_process::shutdown_signal();
    let warm = dispatch_operator::warm_volumes::Settings::parse(
        cli.warm.warm_volumes,
        cli.warm.warm_volumes_owner.as_deref(),
        dispatch_operator::desired::claim_spec(&Default::default(), &cli.workspace),
    )?;
    let settings = controller::Settings {
        namespace: cli.namespace.clone(),
        defaults: cli.workspace.clone(),
        concurrency: cli.concurrency.max(1),
        debounce: Duration::from_millis(cli.debounce_ms),
        instance: identity,
        warm,
    };
    tokio::spawn(dispatch_operator::trim::when_quiet(metrics.clone()));
    let run = controller::run(client, settings, metrics, shutdown);
    match &elector {
        None => run.await,
        Some(e) => {
            tokio::select! {
                _ = run => e.release().await,
                _ = e.hold() => {
                    // Another replica may lead now: stop at once rather than reconcile beside it.
                    anyhow::bail!("lost leadership");
                }
            }
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// glibc gives each thread that allocates its own arena, and freed memory
/// stays in the arena it came from: after a burst of watch events the
/// operator kept megabytes it no longer used. Two arenas are plenty for a
/// process that mostly waits on the network.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter (it takes the
    // allocator's own lock); it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
