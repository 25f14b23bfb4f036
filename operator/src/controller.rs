//! The wiring: one watch per kind of child (see [`children`]), the
//! Workspaces' watch, and kube's controller running the reconcile
//! pipeline ([`crate::reconcile`]) on them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dispatch_api::crd::{LABEL_WORKSPACE, Workspace};
use futures_util::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};

pub use crate::applier::MANAGER;
use crate::children::{self, LAST_APPLIED};
use crate::config::WorkspaceDefaults;
pub use crate::context::{Context, backoff};
use crate::idle::ActivityClient;
use crate::metrics::Metrics;
use crate::recent::Recent;
use crate::reconcile::{self, Error};
use crate::warm_volumes::{self, Warm};
use crate::watch_filter;

/// How the controller runs.
pub struct Settings {
    /// Watch only this namespace (`None`: all).
    pub namespace: Option<String>,
    pub defaults: WorkspaceDefaults,
    pub concurrency: u16,
    pub debounce: Duration,
    /// This replica's name in Events.
    pub instance: String,
    /// Warm volumes to keep, if any.
    pub warm: Option<warm_volumes::Settings>,
}

/// The Workspace a child belongs to: its controller reference, and its
/// workspace label (a retained claim has no owner; a hand edit may drop
/// either, never both unnoticed).
fn owners<K: Resource>(child: K) -> Vec<ObjectRef<Workspace>> {
    let meta = child.meta();
    let ns = meta.namespace.clone().unwrap_or_default();
    let mut out: Vec<ObjectRef<Workspace>> = meta
        .owner_references
        .iter()
        .flatten()
        .filter(|o| o.controller == Some(true) && o.kind == Workspace::kind(&()))
        .map(|o| ObjectRef::new(&o.name).within(&ns))
        .collect();
    if let Some(name) = meta.labels.as_ref().and_then(|l| l.get(LABEL_WORKSPACE))
        && !out.iter().any(|o| &o.name == name)
    {
        out.push(ObjectRef::new(name).within(&ns));
    }
    out
}

/// Starts the watches and the controller; returns when `shutdown` resolves.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let Settings {
        namespace,
        defaults,
        concurrency,
        debounce,
        instance,
        warm,
    } = settings;
    let ns = namespace.as_deref();
    let recent = Arc::new(Recent::default());
    let (pods, pod_stream) = children::watch::<Pod>(&client, ns, recent.clone(), MANAGER);
    let (secrets, secret_stream) = children::watch::<Secret>(&client, ns, recent.clone(), MANAGER);
    let (pvcs, pvc_stream) = children::watch::<PartialObjectMeta<PersistentVolumeClaim>>(
        &client,
        ns,
        recent.clone(),
        MANAGER,
    );
    let (services, svc_stream) =
        children::watch::<PartialObjectMeta<Service>>(&client, ns, recent.clone(), MANAGER);
    let (policies, np_stream) =
        children::watch::<PartialObjectMeta<NetworkPolicy>>(&client, ns, recent.clone(), MANAGER);

    // The children's caches must be complete before the first reconcile (a
    // token Secret missing from an unsynced cache must not look absent), so
    // the Workspaces are only watched once they are. Each store has exactly
    // one waiter here: kube's readiness signal wakes only one.
    let (pods_ready, secrets_ready, pvcs_ready, services_ready, policies_ready) = (
        pods.clone(),
        secrets.clone(),
        pvcs.clone(),
        services.clone(),
        policies.clone(),
    );
    let children_ready = async move {
        let _ = tokio::join!(
            pods_ready.wait_until_ready(),
            secrets_ready.wait_until_ready(),
            pvcs_ready.wait_until_ready(),
            services_ready.wait_until_ready(),
            policies_ready.wait_until_ready()
        );
        tracing::info!("caches of children synced");
    };

    // The warm volumes' watch is driven by the task that keeps them, below.
    let warm = warm.map(|settings| {
        let (store, stream) = warm_volumes::watch(&client, &settings.owner_namespace);
        (settings, store, stream)
    });
    let ctx = Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.into(),
                instance: Some(instance),
            },
        ),
        client: client.clone(),
        defaults,
        metrics,
        activity: ActivityClient::default(),
        pods,
        secrets,
        pvcs,
        services,
        policies,
        recent: recent.clone(),
        warm: warm
            .as_ref()
            .map(|(w, store, _)| Warm::new(w.owner_namespace.clone(), store.clone())),
        full_applies: Mutex::default(),
        failures: Mutex::default(),
    });

    let api: Api<Workspace> = match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (workspaces, ws_writer) = reflector::store();
    let gone = ctx.clone();
    let statuses = recent.clone();
    let ws_watch = watcher(api, watcher::Config::default())
        .default_backoff()
        .inspect_ok(move |ev| {
            if let watcher::Event::Delete(ws) = ev {
                gone.forget(&ws.key());
            }
        })
        .modify(|w| {
            w.managed_fields_mut().clear();
            w.annotations_mut().remove(LAST_APPLIED);
        })
        .reflect(ws_writer)
        .touched_objects()
        .predicate_filter(
            move |ws: &Workspace| {
                watch_filter::worth_a_reconcile(ws, statuses.status_digest(&ws.key()))
            },
            Default::default(),
        );
    let ws_stream = children_ready.map(move |()| ws_watch).flatten_stream();

    // Claude's state in the status: one long poll per running agent, for as
    // long as this replica runs the controller.
    let claude = tokio::spawn(crate::claude_watch::run(ctx.clone(), workspaces.clone()));
    let warm_task = warm.map(|(settings, store, stream)| {
        tokio::spawn(warm_volumes::run(
            client.clone(),
            settings,
            store,
            stream,
            ctx.metrics.clone(),
        ))
    });
    let config = ControllerConfig::default()
        .concurrency(concurrency)
        .debounce(debounce);
    let controller = Controller::for_stream(ws_stream, workspaces)
        .with_config(config)
        .watches_stream(pod_stream, owners)
        .watches_stream(secret_stream, owners)
        .watches_stream(pvc_stream, owners)
        .watches_stream(svc_stream, owners)
        .watches_stream(np_stream, owners)
        .graceful_shutdown_on(shutdown);

    controller
        .run(reconcile::reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "reconcile stream");
            }
        })
        .await;
    claude.abort();
    if let Some(t) = warm_task {
        t.abort();
    }
}

fn error_policy(
    ws: Arc<Workspace>,
    err: &Error,
    ctx: Arc<Context>,
) -> kube::runtime::controller::Action {
    ctx.metrics.failed(err.label());
    let delay = backoff(&ctx, &ws.key());
    tracing::warn!(workspace = %ws.key(), error = %err, retry_in = ?delay, "reconcile failed");
    kube::runtime::controller::Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_maps_to_its_owner_and_its_label_once() {
        let pod: Pod = serde_yaml::from_str(
            "metadata:\n  name: ws-a\n  namespace: n\n  labels: {dispatch.dev/workspace: a}\n  ownerReferences: [{apiVersion: dispatch.dev/v1alpha1, kind: Workspace, name: a, uid: u, controller: true}]\n",
        )
        .unwrap();
        assert_eq!(owners(pod), vec![ObjectRef::new("a").within("n")]);
        let claim: Pod = serde_yaml::from_str(
            "metadata:\n  name: ws-b-data\n  namespace: n\n  labels: {dispatch.dev/workspace: b}\n",
        )
        .unwrap();
        assert_eq!(owners(claim), vec![ObjectRef::new("b").within("n")]);
    }
}
