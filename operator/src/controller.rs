//! The reconcile pipeline: read, validate, build the desired children, apply
//! them (server-side apply, field manager `dispatch-operator`), then write the
//! status. Deletion goes through a finalizer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dispatch_api::crd::{FINALIZER, TOKEN_KEY, Workspace, WorkspacePhase, WorkspaceStatus, names};
use futures_util::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::WorkspaceDefaults;
use crate::desired::{self, Children, Invalid, applied_hash, managed_selector};
use crate::idle::{self, ActivityClient, Verdict};
use crate::metrics::Metrics;
use crate::ownership;
use crate::recent::{CACHE_LAG, Recent};
use crate::status::{self, DEGRADED, Observed};

/// Field manager of every server-side apply.
pub const MANAGER: &str = "dispatch-operator";
/// Children are applied in full at least this often, even when their hash
/// annotation says they are current, so that hand edits are undone.
const FULL_APPLY_EVERY: Duration = Duration::from_secs(600);
/// With nothing to wait for, look at a Workspace again after this long.
const RESYNC: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// Folding a created child's field ownership failed (a concurrent write
    /// fails its resourceVersion test): transient, never the spec's fault.
    #[error("field ownership of {0}: {1}")]
    Ownership(String, kube::Error),
}

impl Error {
    /// Short reason for the failures metric.
    pub fn reason(&self) -> String {
        match self {
            Error::Kube(kube::Error::Api(s)) => format!("Api{}", s.code),
            Error::Kube(_) => "Client".into(),
            Error::Finalizer(_) => "Finalizer".into(),
            Error::Ownership(..) => "Ownership".into(),
        }
    }
}

/// What every reconcile shares: the client, the caches of children, metrics.
pub struct Context {
    pub client: Client,
    pub defaults: WorkspaceDefaults,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub activity: ActivityClient,
    pub pods: Store<Pod>,
    pub secrets: Store<Secret>,
    pub pvcs: Store<PartialObjectMeta<PersistentVolumeClaim>>,
    pub services: Store<PartialObjectMeta<Service>>,
    pub policies: Store<PartialObjectMeta<NetworkPolicy>>,
    full_applies: Mutex<HashMap<String, Instant>>,
    recent: Arc<Recent>,
    failures: Mutex<HashMap<String, u32>>,
}

fn key(ws: &Workspace) -> String {
    format!("{}/{}", ws.namespace().unwrap_or_default(), ws.name_any())
}

fn cached<K: Resource<DynamicType = ()> + Clone>(
    store: &Store<K>,
    ns: &str,
    name: &str,
) -> Option<Arc<K>> {
    store.get(&ObjectRef::new(name).within(ns))
}

/// How the controller runs.
pub struct Settings {
    /// Watch only this namespace (`None`: all).
    pub namespace: Option<String>,
    pub defaults: WorkspaceDefaults,
    pub concurrency: u16,
    pub debounce: Duration,
    /// This replica's name in Events.
    pub instance: String,
}

/// What kubectl apply keeps on every object: a full copy of it, useless here.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The cache keeps of a Pod only what the reconcile reads (hash annotation,
/// uid, deletion, node, status), so 1,000 workspaces stay small in memory.
fn slim_pod(p: &mut Pod) {
    p.managed_fields_mut().clear();
    p.annotations_mut().remove(LAST_APPLIED);
    if let Some(spec) = p.spec.as_mut() {
        *spec = k8s_openapi::api::core::v1::PodSpec {
            node_name: spec.node_name.take(),
            ..Default::default()
        };
    }
}

/// Of a token Secret only its token matters.
fn slim_secret(s: &mut Secret) {
    s.managed_fields_mut().clear();
    s.annotations_mut().remove(LAST_APPLIED);
    if let Some(data) = s.data.as_mut() {
        data.retain(|k, _| k == TOKEN_KEY);
    }
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
    } = settings;
    fn api<K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>>(
        client: &Client,
        ns: &Option<String>,
    ) -> Api<K> {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let children = watcher::Config::default().labels(&managed_selector());

    let (pods, pod_writer) = reflector::store();
    let recent = Arc::new(Recent::default());
    let forget = recent.clone();
    let pod_stream = watcher(api::<Pod>(&client, &namespace), children.clone())
        .default_backoff()
        // A deleted Pod must be recreated at once, not after the memory of
        // having applied it fades.
        .inspect_ok(move |ev| {
            if let watcher::Event::Delete(p) = ev {
                forget.forget_applied(&format!(
                    "Pod/{}/{}",
                    p.namespace().unwrap_or_default(),
                    p.name_any()
                ));
            }
        })
        .modify(slim_pod)
        .reflect(pod_writer)
        .touched_objects();
    let (secrets, secret_writer) = reflector::store();
    let secret_stream = watcher(api::<Secret>(&client, &namespace), children.clone())
        .default_backoff()
        .modify(slim_secret)
        .reflect(secret_writer)
        .touched_objects();
    let (pvcs, pvc_writer) = reflector::store();
    let pvc_stream = watcher(
        api::<PartialObjectMeta<PersistentVolumeClaim>>(&client, &namespace),
        children.clone(),
    )
    .default_backoff()
    .modify(|m| m.managed_fields_mut().clear())
    .reflect(pvc_writer)
    .touched_objects();
    let (services, svc_writer) = reflector::store();
    let svc_stream = watcher(
        api::<PartialObjectMeta<Service>>(&client, &namespace),
        children.clone(),
    )
    .default_backoff()
    .modify(|m| m.managed_fields_mut().clear())
    .reflect(svc_writer)
    .touched_objects();
    let (policies, np_writer) = reflector::store();
    let np_stream = watcher(
        api::<PartialObjectMeta<NetworkPolicy>>(&client, &namespace),
        children,
    )
    .default_backoff()
    .modify(|m| m.managed_fields_mut().clear())
    .reflect(np_writer)
    .touched_objects();

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
    let (workspaces, ws_writer) = reflector::store();
    let ws_watch = watcher(
        api::<Workspace>(&client, &namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(|w| {
        w.managed_fields_mut().clear();
        w.annotations_mut().remove(LAST_APPLIED);
    })
    .reflect(ws_writer)
    .touched_objects()
    .predicate_filter(crate::watch_filter::spec_or_deletion, Default::default());
    let ws_stream = children_ready.map(move |()| ws_watch).flatten_stream();

    let ctx = Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.into(),
                instance: Some(instance),
            },
        ),
        client,
        defaults,
        metrics,
        activity: ActivityClient::default(),
        pods: pods.clone(),
        secrets: secrets.clone(),
        pvcs: pvcs.clone(),
        services: services.clone(),
        policies: policies.clone(),
        full_applies: Mutex::default(),
        recent,
        failures: Mutex::default(),
    });

    let config = ControllerConfig::default()
        .concurrency(concurrency)
        .debounce(debounce);
    let controller = Controller::for_stream(ws_stream, workspaces)
        .with_config(config)
        .owns_stream(pod_stream)
        .owns_stream(secret_stream)
        .owns_stream(pvc_stream)
        .owns_stream(svc_stream)
        .owns_stream(np_stream)
        .graceful_shutdown_on(shutdown);

    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "reconcile stream");
            }
        })
        .await;
}

async fn reconcile(ws: Arc<Workspace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    tracing::debug!(workspace = %key(&ws), "reconcile");
    let ns = ws.namespace().unwrap_or_default();
    let api: Api<Workspace> = Api::namespaced(ctx.client.clone(), &ns);
    let k = key(&ws);
    let result = if ws.metadata.deletion_timestamp.is_none()
        && !ws.finalizers().iter().any(|f| f == FINALIZER)
    {
        // The finalizer goes on before any child exists, and the children
        // follow in this same reconcile: waiting for the patch to come back
        // through the watch would cost every new Workspace a second round.
        match add_finalizer(&api, &ws).await {
            Ok(()) => apply(&ws, &ctx).await,
            Err(e) => Err(e),
        }
    } else {
        finalizer_step(&api, ws, &ctx).await
    };
    ctx.metrics.reconciled(started.elapsed());
    tracing::debug!(workspace = %k, took = ?started.elapsed(), ok = result.is_ok(), "reconciled");
    if result.is_ok()
        && let Ok(mut f) = ctx.failures.lock()
    {
        f.remove(&k);
    }
    result
}

/// Adds our finalizer with a JSON patch whose test fails (and the reconcile
/// retries) if someone changed the finalizers meanwhile, as kube's helper does.
async fn add_finalizer(api: &Api<Workspace>, ws: &Workspace) -> Result<(), Error> {
    let ops = if ws.finalizers().is_empty() {
        serde_json::json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ])
    } else {
        serde_json::json!([
            {"op": "test", "path": "/metadata/finalizers", "value": ws.finalizers()},
            {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
        ])
    };
    let patch = serde_json::from_value(ops).map_err(|e| Error::Finalizer(e.to_string()))?;
    api.patch(
        &ws.name_any(),
        &PatchParams::default(),
        &Patch::Json::<()>(patch),
    )
    .await?;
    Ok(())
}

/// A Workspace that has the finalizer (or is going): apply, or clean up and
/// release it.
async fn finalizer_step(
    api: &Api<Workspace>,
    ws: Arc<Workspace>,
    ctx: &Arc<Context>,
) -> Result<Action, Error> {
    finalizer(api, FINALIZER, ws, |event| async {
        match event {
            Finalizer::Apply(ws) => apply(&ws, ctx).await,
            Finalizer::Cleanup(ws) => cleanup(&ws, ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        kube::runtime::finalizer::Error::AddFinalizer(e)
        | kube::runtime::finalizer::Error::RemoveFinalizer(e) => Error::Kube(e),
        other => Error::Finalizer(other.to_string()),
    })
}

/// Transient errors back off exponentially per Workspace: 0.5 s, 1 s, 2 s ... 5 min.
fn error_policy(ws: Arc<Workspace>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failed(&err.reason());
    let n = ctx
        .failures
        .lock()
        .map(|mut f| {
            let n = f.entry(key(&ws)).or_insert(0);
            *n = n.saturating_add(1);
            *n
        })
        .unwrap_or(1);
    let delay = Duration::from_millis(500u64.saturating_mul(1u64 << n.min(10).saturating_sub(1)))
        .min(RESYNC / 2);
    tracing::warn!(workspace = %key(&ws), error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

async fn apply(ws: &Workspace, ctx: &Context) -> Result<Action, Error> {
    let ns = ws.namespace().unwrap_or_default();
    let name = ws.name_any();
    let k = key(ws);

    let validated = match desired::validate(ws) {
        Ok(v) => v,
        Err(invalid) => return refuse(ws, ctx, &invalid).await,
    };

    let from_cache = cached(&ctx.secrets, &ns, &names::token_secret(&name))
        .map(|s| token_of(&s))
        .filter(|t| !t.is_empty());
    if from_cache.is_some() {
        ctx.recent.forget_token(&k);
    }
    // Until the cache shows the Secret this process just made, its token is remembered.
    let token = from_cache.or_else(|| ctx.recent.token(&k));
    let token_known = token.is_some();
    let token = token.unwrap_or_else(desired::new_token);
    let children = desired::desired(ws, &ctx.defaults, &token);

    let full = ctx
        .full_applies
        .lock()
        .map(|m| m.get(&k).is_none_or(|t| t.elapsed() > FULL_APPLY_EVERY))
        .unwrap_or(true);
    let mut applied = Applied::default();
    let apply_error = match apply_children(ws, ctx, &children, full, token_known).await {
        Ok(a) => {
            if full && let Ok(mut m) = ctx.full_applies.lock() {
                m.insert(k.clone(), Instant::now());
            }
            applied = a;
            None
        }
        // The apiserver refused a child (a 4xx other than a conflict): show it,
        // wait for a change. Anything else is transient and backs off.
        Err(Error::Kube(kube::Error::Api(e)))
            if (400..500).contains(&e.code) && e.code != 409 && e.code != 429 =>
        {
            Some(format!("{} ({})", e.message, e.reason))
        }
        Err(e) => return Err(e),
    };

    let pod = applied
        .pod
        .map(Arc::new)
        .or_else(|| cached(&ctx.pods, &ns, &names::pod(&name)))
        .or_else(|| {
            if applied.lagging {
                ctx.recent.pod(&k)
            } else {
                None
            }
        });
    let obs = Observed {
        name: &name,
        generation: ws.metadata.generation,
        deleting: false,
        suspended: ws.spec.suspended,
        invalid: None,
        pod: pod.as_deref(),
        apply_error: apply_error.as_deref(),
    };
    let mut next = compute_status(&obs, ws);
    let mut action = Action::requeue(RESYNC);

    if let (Some(timeout), Some(WorkspacePhase::Running), Some(endpoint), Some(pod)) = (
        validated.idle_timeout,
        next.phase,
        next.endpoint.clone(),
        pod.as_deref(),
    ) {
        let since = ready_since_ms(pod).unwrap_or_else(|| Timestamp::now().as_millisecond());
        match ctx.activity.fetch(&endpoint, &token).await {
            Ok(activity) => {
                let now = Timestamp::now().as_millisecond();
                let (verdict, last) = idle::decide(&activity, since, now, timeout);
                next.last_activity = Timestamp::from_millisecond(last)
                    .ok()
                    .map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time);
                match verdict {
                    Verdict::Suspend => {
                        suspend_for_idleness(ws, ctx, timeout).await?;
                        action = Action::await_change();
                    }
                    Verdict::CheckAgainIn(d) => {
                        action = Action::requeue(d + Duration::from_millis(200))
                    }
                }
            }
            Err(e) => {
                tracing::info!(workspace = %k, error = %e, "could not read the agent's activity");
                action = Action::requeue(
                    (timeout / 4).clamp(Duration::from_secs(2), Duration::from_secs(300)),
                );
            }
        }
    }

    if let Some(e) = &apply_error {
        warn_once(ws, ctx, "ApplyFailed", e, "Apply").await;
    }
    write_status(ws, ctx, &next).await?;
    ctx.metrics.set_phase(&k, next.phase);
    if apply_error.is_some() {
        // The apiserver refused the spec's outcome: wait for the spec to change.
        return Ok(Action::await_change());
    }
    if applied.lagging {
        // A skip trusted a recent write: look again once the caches must show it.
        return Ok(Action::requeue(CACHE_LAG));
    }
    Ok(action)
}

fn compute_status(obs: &Observed<'_>, ws: &Workspace) -> WorkspaceStatus {
    status::compute(obs, ws.status.as_ref(), Timestamp::now())
}

/// When the Pod's Ready condition last turned true, Unix ms.
fn ready_since_ms(pod: &Pod) -> Option<i64> {
    let c = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    Some(c.last_transition_time.as_ref()?.0.as_millisecond())
}

/// A Warning Event, unless the status already says the same about this generation
/// (reconciles triggered by other changes must not repeat it).
async fn warn_once(ws: &Workspace, ctx: &Context, reason: &str, message: &str, action: &str) {
    let already = ws.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == DEGRADED && c.status == "True" && c.reason == reason)
            && s.observed_generation == ws.metadata.generation
    });
    if already {
        return;
    }
    tracing::warn!(workspace = %key(ws), reason, message, "workspace degraded");
    let ev = Event {
        type_: EventType::Warning,
        reason: reason.into(),
        note: Some(message.chars().take(1000).collect()),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &ws.object_ref(&())).await {
        tracing::warn!(error = %e, "could not publish an event");
    }
}

async fn refuse(ws: &Workspace, ctx: &Context, invalid: &Invalid) -> Result<Action, Error> {
    let name = ws.name_any();
    warn_once(ws, ctx, invalid.reason, &invalid.message, "Validate").await;
    let obs = Observed {
        name: &name,
        generation: ws.metadata.generation,
        deleting: false,
        suspended: ws.spec.suspended,
        invalid: Some(invalid),
        pod: None,
        apply_error: None,
    };
    let next = compute_status(&obs, ws);
    write_status(ws, ctx, &next).await?;
    ctx.metrics.set_phase(&key(ws), next.phase);
    // Nothing changes until the spec does.
    Ok(Action::await_change())
}

async fn suspend_for_idleness(
    ws: &Workspace,
    ctx: &Context,
    timeout: Duration,
) -> Result<(), Error> {
    let api: Api<Workspace> =
        Api::namespaced(ctx.client.clone(), &ws.namespace().unwrap_or_default());
    let patch = serde_json::json!({"spec": {"suspended": true}});
    api.patch(
        &ws.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    tracing::info!(workspace = %key(ws), ?timeout, "suspended for idleness");
    let ev = Event {
        type_: EventType::Normal,
        reason: "IdleSuspended".into(),
        note: Some(format!("no activity for {}s; suspended", timeout.as_secs())),
        action: "Suspend".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &ws.object_ref(&())).await {
        tracing::warn!(error = %e, "could not publish an event");
    }
    Ok(())
}

fn params() -> PatchParams {
    PatchParams::apply(MANAGER).force()
}

/// What the cache shows of a child: `None` when it has none, else its hash annotation.
fn seen(meta: Option<&kube::core::ObjectMeta>) -> Option<Option<String>> {
    meta.map(|m| applied_hash(m).map(String::from))
}

/// Makes the child what `desired` says unless the cache shows the same hash
/// (and `full` is not asked): created when the cache has none, else applied.
/// `Ok(None)` when skipped; `lagging` is set when only [`Recent`] vouched for it.
async fn apply_one<K>(
    api: &Api<K>,
    desired: &K,
    seen: Option<Option<String>>,
    full: bool,
    recent: &Recent,
    lagging: &mut bool,
) -> Result<Option<K>, Error>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let want = applied_hash(desired.meta()).map(String::from);
    let object = format!(
        "{}/{}/{}",
        K::kind(&()),
        desired.namespace().unwrap_or_default(),
        desired.name_any()
    );
    let cached_hash = seen.clone().flatten();
    if !full && let Some(want) = &want {
        if cached_hash.as_deref() == Some(want.as_str()) {
            return Ok(None);
        }
        if recent.applied(&object, want) {
            *lagging = true;
            return Ok(None);
        }
    }
    match &seen {
        // A create costs the apiserver about half an apply's CPU.
        None => {
            let pp = PostParams {
                field_manager: Some(MANAGER.into()),
                ..Default::default()
            };
            match api.create(&pp, desired).await {
                Ok(created) => {
                    if let Some(want) = &want {
                        recent.record_applied(&object, want);
                    }
                    return Ok(Some(created));
                }
                // It exists after all (the cache lags): apply it.
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        // A change (rare): the child may have been created, not applied.
        Some(hash) if *hash != want => fold_ownership(api, &desired.name_any()).await?,
        Some(_) => {}
    }
    let mut body = serde_json::to_value(desired).map_err(|e| Error::Finalizer(e.to_string()))?;
    body["apiVersion"] = K::api_version(&()).into();
    body["kind"] = K::kind(&()).into();
    let applied = api
        .patch(&desired.name_any(), &params(), &Patch::Apply(&body))
        .await?;
    if let Some(want) = &want {
        recent.record_applied(&object, want);
    }
    Ok(Some(applied))
}

/// Before a changing apply to a child that was created, not applied: our
/// `Update` field entry becomes part of our `Apply` entry, so the apply can
/// remove fields the desired object no longer has. The patch tests the
/// resourceVersion, so a concurrent write makes it fail and the reconcile retry.
async fn fold_ownership<K>(api: &Api<K>, name: &str) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let current = api
        .get(name)
        .await
        .map_err(|e| Error::Ownership(name.into(), e))?;
    let meta = current.meta();
    let Some(folded) = meta
        .managed_fields
        .as_deref()
        .and_then(|e| ownership::fold_updates_into_apply(e, MANAGER))
    else {
        return Ok(());
    };
    let ops = serde_json::json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": meta.resource_version},
        {"op": "replace", "path": "/metadata/managedFields", "value": folded},
    ]);
    let patch = serde_json::from_value(ops).map_err(|e| Error::Finalizer(e.to_string()))?;
    api.patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
        .map_err(|e| Error::Ownership(name.into(), e))?;
    tracing::debug!(object = name, "folded created fields into the apply entry");
    Ok(())
}

/// What applying the children did: the Pod as applied (if it was), and
/// whether a skip relied on [`Recent`] rather than the caches.
#[derive(Default)]
struct Applied {
    pod: Option<Pod>,
    lagging: bool,
}

async fn apply_children(
    ws: &Workspace,
    ctx: &Context,
    c: &Children,
    full: bool,
    token_known: bool,
) -> Result<Applied, Error> {
    let mut lagging = false;
    let recent = &ctx.recent;
    let ns = ws.namespace().unwrap_or_default();
    let name = ws.name_any();
    let client = &ctx.client;

    // The token Secret is created, never blindly applied, while we have not
    // seen it: if it exists after all (a stale cache), keep its token.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    if token_known {
        let cached = cached(&ctx.secrets, &ns, &names::token_secret(&name));
        apply_one(
            &secrets,
            &c.secret,
            seen(cached.as_deref().map(|s| &s.metadata)),
            full,
            recent,
            &mut lagging,
        )
        .await?;
    } else {
        match secrets
            .create(
                &PostParams {
                    field_manager: Some(MANAGER.into()),
                    ..Default::default()
                },
                &c.secret,
            )
            .await
        {
            Ok(_) => recent.record_token(&key(ws), &token_of(&c.secret)),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                // Someone (a previous run of ours) made it: reconcile again with its token.
                return Err(Error::Kube(kube::Error::Api(e)));
            }
            Err(e) => return Err(e.into()),
        }
    }

    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let cached_pvc = cached(&ctx.pvcs, &ns, &names::pvc(&name));
    apply_one(
        &pvcs,
        &c.pvc,
        seen(cached_pvc.as_deref().map(|m| &m.metadata)),
        full,
        recent,
        &mut lagging,
    )
    .await?;

    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let cached_svc = cached(&ctx.services, &ns, &names::service(&name));
    apply_one(
        &services,
        &c.service,
        seen(cached_svc.as_deref().map(|m| &m.metadata)),
        full,
        recent,
        &mut lagging,
    )
    .await?;

    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
    let cached_np = cached(&ctx.policies, &ns, &names::network_policy(&name));
    apply_one(
        &policies,
        &c.network_policy,
        seen(cached_np.as_deref().map(|m| &m.metadata)),
        full,
        recent,
        &mut lagging,
    )
    .await?;

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let current = cached(&ctx.pods, &ns, &names::pod(&name));
    match (&c.pod, current.as_deref()) {
        (None, Some(pod)) if pod.metadata.deletion_timestamp.is_none() => {
            delete_pod(&pods, pod).await?
        }
        (None, _) => {}
        // Terminating: wait for it to go (its deletion triggers a reconcile).
        (Some(_), Some(pod)) if pod.metadata.deletion_timestamp.is_some() => {}
        (Some(want), Some(pod))
            if applied_hash(&pod.metadata) != applied_hash(&want.metadata)
                || status::pod_finished(pod) =>
        {
            // Pods are mostly immutable: a changed spec or a finished Pod means a new Pod.
            tracing::info!(workspace = %key(ws), "replacing the Pod");
            delete_pod(&pods, pod).await?;
        }
        (Some(want), current) => {
            // The Pod as the apiserver has it after the apply, so the status
            // written next already knows it exists (one status write less).
            let pod = apply_one(
                &pods,
                want,
                seen(current.map(|p| &p.metadata)),
                full,
                recent,
                &mut lagging,
            )
            .await?;
            if let Some(p) = &pod {
                let mut slim = p.clone();
                slim_pod(&mut slim);
                recent.record_pod(&key(ws), Arc::new(slim));
            }
            return Ok(Applied { pod, lagging });
        }
    }
    Ok(Applied { pod: None, lagging })
}

fn token_of(secret: &Secret) -> String {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(TOKEN_KEY))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .unwrap_or_default()
}

async fn delete_pod(pods: &Api<Pod>, pod: &Pod) -> Result<(), Error> {
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match pods.delete(&pod.name_any(), &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn write_status(ws: &Workspace, ctx: &Context, next: &WorkspaceStatus) -> Result<(), Error> {
    let k = key(ws);
    if ws
        .status
        .as_ref()
        .is_some_and(|cur| !status::differs(cur, next))
        || ctx.recent.status_written(&k, next)
    {
        return Ok(());
    }
    let api: Api<Workspace> =
        Api::namespaced(ctx.client.clone(), &ws.namespace().unwrap_or_default());
    api.patch_status(
        &ws.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&status::merge_patch(next)),
    )
    .await?;
    ctx.recent.record_status(&k, next);
    Ok(())
}

async fn delete_ignoring_absent<K>(api: &Api<K>, name: &str) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Orderly deletion: the Pod first, then what it used; the volume is kept
/// (released from the Workspace so garbage collection leaves it) or deleted.
async fn cleanup(ws: &Workspace, ctx: &Context) -> Result<Action, Error> {
    let ns = ws.namespace().unwrap_or_default();
    let name = ws.name_any();
    let obs = Observed {
        name: &name,
        generation: ws.metadata.generation,
        deleting: true,
        suspended: ws.spec.suspended,
        invalid: None,
        pod: None,
        apply_error: None,
    };
    if let Err(e) = write_status(ws, ctx, &compute_status(&obs, ws)).await {
        tracing::debug!(error = %e, "could not mark the workspace Terminating");
    }
    let c = &ctx.client;
    delete_ignoring_absent(&Api::<Pod>::namespaced(c.clone(), &ns), &names::pod(&name)).await?;
    delete_ignoring_absent(
        &Api::<Service>::namespaced(c.clone(), &ns),
        &names::service(&name),
    )
    .await?;
    delete_ignoring_absent(
        &Api::<NetworkPolicy>::namespaced(c.clone(), &ns),
        &names::network_policy(&name),
    )
    .await?;
    delete_ignoring_absent(
        &Api::<Secret>::namespaced(c.clone(), &ns),
        &names::token_secret(&name),
    )
    .await?;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(c.clone(), &ns);
    let retain = ws.spec.storage.as_ref().is_some_and(|s| s.retain_on_delete);
    if retain {
        let patch = serde_json::json!({"metadata": {"ownerReferences": null}});
        match pvcs
            .patch(
                &names::pvc(&name),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    } else {
        delete_ignoring_absent(&pvcs, &names::pvc(&name)).await?;
    }
    let k = key(ws);
    ctx.metrics.set_phase(&k, None);
    if let Ok(mut m) = ctx.full_applies.lock() {
        m.remove(&k);
    }
    let children = [
        format!("Secret/{ns}/{}", names::token_secret(&name)),
        format!("PersistentVolumeClaim/{ns}/{}", names::pvc(&name)),
        format!("Service/{ns}/{}", names::service(&name)),
        format!("NetworkPolicy/{ns}/{}", names::network_policy(&name)),
        format!("Pod/{ns}/{}", names::pod(&name)),
    ];
    ctx.recent.forget_workspace(&k, &children);
    tracing::info!(workspace = %k, retain_volume = retain, "workspace deleted");
    Ok(Action::await_change())
}
