//! The operator under chaos on a real control plane with the local node:
//! children deleted or edited behind its back, a status written by someone
//! else, a token Secret deleted, an agent refusing its token, a claim
//! deleted, a grow the claim cannot follow. Each is put right (or reported)
//! by itself; the time each repair takes is printed (`--nocapture`):
//!
//!     REPAIR <what> <ms>

mod common;

use std::time::{Duration, Instant};

use common::*;
use dispatch_api::crd::{Workspace, names};
use dispatch_kube_harness::{ControlPlane, LocalNode, LocalNodeOptions};
use dispatch_operator::desired::token_digest;
use dispatch_operator::idle::{ActivityClient, ActivityError};
use dispatch_operator::recent::CACHE_LAG;
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams};

const NS: &str = "chaos";
const WAIT: Duration = Duration::from_secs(60);
const WS: &str = "w";

/// Polls `f` every 10 ms until it holds; the time it took.
async fn repaired<F, Fut>(what: &str, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(
            start.elapsed() < WAIT,
            "timed out after {WAIT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = start.elapsed();
    eprintln!("REPAIR {what:<48} {:>6} ms", took.as_millis());
    took
}

fn kubectl_ok(cp: &ControlPlane, args: &[&str]) -> String {
    ok(kubectl(cp, args))
}

fn patch(cp: &ControlPlane, kind: &str, name: &str, kind_of_patch: &str, body: &str) {
    kubectl_ok(
        cp,
        &[
            "patch",
            kind,
            name,
            "-n",
            NS,
            &format!("--type={kind_of_patch}"),
            "-p",
            body,
        ],
    );
}

fn delete(cp: &ControlPlane, kind: &str, name: &str) {
    kubectl_ok(cp, &["delete", kind, name, "-n", NS, "--wait=false"]);
}

fn degraded(ws: &Workspace) -> Option<(String, String)> {
    ws.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded" && c.status == "True")
        .map(|c| (c.reason.clone(), c.message.clone()))
}

async fn degraded_reason(wss: &Api<Workspace>) -> Option<String> {
    degraded(&wss.get(WS).await.ok()?).map(|(r, _)| r)
}

async fn token(secrets: &Api<Secret>) -> Option<String> {
    let s = secrets
        .get_opt(&names::token_secret(WS))
        .await
        .ok()
        .flatten()?;
    String::from_utf8(s.data?.get("token")?.0.clone()).ok()
}

async fn running_endpoint(wss: &Api<Workspace>) -> Option<String> {
    let ws = wss.get(WS).await.ok()?;
    let st = ws.status?;
    (st.phase.map(|p| p.as_str()) == Some("Running")).then_some(st.endpoint?)
}

/// The agent accepts the token its Secret holds now.
async fn agent_accepts_the_secrets_token(wss: &Api<Workspace>, secrets: &Api<Secret>) -> bool {
    let (Some(endpoint), Some(token)) = (running_endpoint(wss).await, token(secrets).await) else {
        return false;
    };
    ActivityClient::default()
        .fetch(&endpoint, &token)
        .await
        .is_ok()
}

async fn pod_uid(pods: &Api<Pod>) -> Option<String> {
    pods.get_opt(&names::pod(WS))
        .await
        .ok()
        .flatten()?
        .metadata
        .uid
}

fn ingress_only_from_the_gateway(np: &NetworkPolicy) -> bool {
    np.spec
        .as_ref()
        .and_then(|s| s.ingress.as_ref())
        .is_some_and(|rules| {
            rules.len() == 1 && rules[0].from.as_ref().is_some_and(|f| !f.is_empty())
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_edited_or_deleted_behind_the_operators_back_are_put_right() {
    let cp = ControlPlane::start().await.expect("control plane starts");
    let client = cp.client();
    install_crd(&cp);
    cp.create_namespace(NS, &[]).await.expect("namespace");
    let node = LocalNode::start(
        client.clone(),
        LocalNodeOptions {
            label_selector: Some("app.kubernetes.io/name=dispatch-workspace".into()),
            agent_bin: Some(agent_bin()),
            ..Default::default()
        },
    )
    .await
    .expect("local node");
    let mut operator = Operator::start(&cp, &[]);

    let wss: Api<Workspace> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), NS);
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    let pod = names::pod(WS);
    let svc = names::service(WS);
    let np = names::network_policy(WS);

    ok(kubectl_apply(
        &cp,
        &format!(
            "apiVersion: dispatch.dev/v1alpha1\nkind: Workspace\nmetadata: {{name: {WS}, namespace: {NS}}}\nspec:\n  owner: alice\n  storage: {{size: 1Gi}}\n"
        ),
    ));
    eventually("the workspace Running", WAIT, || async {
        agent_accepts_the_secrets_token(&wss, &secrets).await
    })
    .await;

    // --- Deleted children come back.
    let uid = pod_uid(&pods).await;
    delete(&cp, "pod", &pod);
    repaired("Pod deleted -> a new Pod", || async {
        let p = pod_uid(&pods).await;
        p.is_some() && p != uid
    })
    .await;
    for (kind, name) in [("service", &svc), ("networkpolicy", &np)] {
        let exists = || async {
            match kind {
                "service" => services.get_opt(name).await.ok().flatten().is_some(),
                _ => policies.get_opt(name).await.ok().flatten().is_some(),
            }
        };
        delete(&cp, kind, name);
        repaired(&format!("{kind} deleted -> made again"), exists).await;
        // Again, right after the operator applied it: the memory of that
        // apply must not make the operator wait until it fades.
        delete(&cp, kind, name);
        let took = repaired(
            &format!("{kind} deleted again within {CACHE_LAG:?} of its apply"),
            exists,
        )
        .await;
        assert!(
            took < CACHE_LAG,
            "a {kind} deleted right after its apply came back only after {took:?}"
        );
    }

    // --- Edits by others are undone at once.
    patch(
        &cp,
        "networkpolicy",
        &np,
        "merge",
        r#"{"spec":{"ingress":[{}]}}"#,
    );
    repaired("NetworkPolicy opened to all ingress -> closed", || async {
        policies
            .get(&np)
            .await
            .is_ok_and(|p| ingress_only_from_the_gateway(&p))
    })
    .await;
    patch(
        &cp,
        "pod",
        &pod,
        "json",
        r#"[{"op":"remove","path":"/metadata/labels/dispatch.dev~1workspace"}]"#,
    );
    repaired("Pod's workspace label removed -> back", || async {
        pods.get(&pod).await.is_ok_and(|p| {
            p.metadata
                .labels
                .unwrap_or_default()
                .get("dispatch.dev/workspace")
                .map(String::as_str)
                == Some(WS)
        })
    })
    .await;
    kubectl_ok(
        &cp,
        &[
            "set",
            "image",
            "-n",
            NS,
            &format!("pod/{pod}"),
            "agent=evil:1",
        ],
    );
    repaired("Pod's image swapped -> back", || async {
        pods.get(&pod).await.is_ok_and(|p| {
            p.spec
                .is_some_and(|s| s.containers[0].image.as_deref() == Some("dispatch-agent:test"))
        })
    })
    .await;
    // A port edited by hand: the apply can never fix it (two ports named
    // http), so the Service is made anew.
    patch(
        &cp,
        "service",
        &svc,
        "json",
        r#"[{"op":"replace","path":"/spec/ports/0/port","value":9999}]"#,
    );
    repaired("Service port edited -> replaced", || async {
        services.get(&svc).await.is_ok_and(|s| {
            s.spec
                .and_then(|s| s.ports)
                .is_some_and(|p| p.len() == 1 && p[0].port == 8080)
        })
    })
    .await;
    // A status written by someone else.
    kubectl_ok(
        &cp,
        &[
            "patch",
            "ws",
            WS,
            "-n",
            NS,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Failed","endpoint":null}}"#,
        ],
    );
    repaired("status written by another -> put right", || async {
        running_endpoint(&wss).await.is_some()
    })
    .await;

    // --- A deleted token Secret: a new token, and the Pod replaced so that
    // its agent takes it.
    let old_token = token(&secrets).await.expect("token");
    delete(&cp, "secret", &names::token_secret(WS));
    repaired("token Secret deleted -> made again", || async {
        token(&secrets).await.is_some_and(|t| t != old_token)
    })
    .await;
    repaired(
        "token Secret deleted -> agent takes the new token",
        || async { agent_accepts_the_secrets_token(&wss, &secrets).await },
    )
    .await;

    // --- An agent that refuses the token in the Secret shows as Degraded.
    // Forged with the operator away: a token the agent never saw, and the
    // Pod made to look as if it had it.
    operator.kill();
    let forged = "f".repeat(64);
    kubectl_ok(
        &cp,
        &[
            "patch",
            "secret",
            &names::token_secret(WS),
            "-n",
            NS,
            "--type=merge",
            "-p",
            &format!(r#"{{"stringData":{{"token":"{forged}"}}}}"#),
        ],
    );
    patch(
        &cp,
        "pod",
        &pod,
        "merge",
        &format!(
            r#"{{"metadata":{{"annotations":{{"dispatch.dev/token-digest":"{}"}}}}}}"#,
            token_digest(&forged)
        ),
    );
    let endpoint = running_endpoint(&wss).await.expect("still running");
    assert!(matches!(
        ActivityClient::default().fetch(&endpoint, &forged).await,
        Err(ActivityError::Status(401))
    ));
    let operator = Operator::start(&cp, &[]);
    eventually("Degraded: TokenRefused", WAIT, || async {
        degraded_reason(&wss).await.as_deref() == Some("TokenRefused")
    })
    .await;
    // A new Pod reads the Secret's token: healthy again.
    delete(&cp, "pod", &pod);
    eventually("the new Pod's agent takes the token", WAIT, || async {
        agent_accepts_the_secrets_token(&wss, &secrets).await
            && degraded_reason(&wss).await.is_none()
    })
    .await;

    // --- A grow the claim cannot follow (no class that expands) while
    // suspended: the Pod still comes back on resume, the refusal is shown,
    // and the grow can be undone.
    patch(&cp, "ws", WS, "merge", r#"{"spec":{"suspended":true}}"#);
    eventually("suspended, no Pod", WAIT, || async {
        pods.get_opt(&pod).await.ok().flatten().is_none()
    })
    .await;
    patch(
        &cp,
        "ws",
        WS,
        "merge",
        r#"{"spec":{"storage":{"size":"2Gi"},"suspended":false}}"#,
    );
    eventually(
        "Running again, the refused claim shown as Degraded",
        WAIT,
        || async {
            let ws = wss.get(WS).await.ok();
            running_endpoint(&wss).await.is_some()
                && ws
                    .and_then(|w| degraded(&w))
                    .is_some_and(|(r, m)| r == "ApplyFailed" && m.contains("PersistentVolumeClaim"))
        },
    )
    .await;
    patch(
        &cp,
        "ws",
        WS,
        "merge",
        r#"{"spec":{"storage":{"size":"1Gi"}}}"#,
    );
    eventually("the grow undone, healthy", WAIT, || async {
        running_endpoint(&wss).await.is_some() && degraded_reason(&wss).await.is_none()
    })
    .await;

    // --- A claim deleted under a running workspace: reported while it goes;
    // its replacement (empty) is announced, not silent.
    delete(&cp, "pvc", &names::pvc(WS));
    repaired("claim deleted -> Degraded: VolumeDeleting", || async {
        degraded_reason(&wss).await.as_deref() == Some("VolumeDeleting")
    })
    .await;
    let old_claim = pvcs.get(&names::pvc(WS)).await.expect("claim").metadata.uid;
    patch(&cp, "ws", WS, "merge", r#"{"spec":{"suspended":true}}"#);
    eventually("a new claim made", WAIT, || async {
        let c = pvcs.get_opt(&names::pvc(WS)).await.ok().flatten();
        c.is_some_and(|c| c.metadata.uid != old_claim && c.metadata.deletion_timestamp.is_none())
    })
    .await;
    patch(&cp, "ws", WS, "merge", r#"{"spec":{"suspended":false}}"#);
    eventually(
        "Running on the new claim, Degraded: VolumeReplaced",
        WAIT,
        || async {
            running_endpoint(&wss).await.is_some()
                && degraded_reason(&wss).await.as_deref() == Some("VolumeReplaced")
        },
    )
    .await;
    eventually("a VolumeReplaced Warning Event", WAIT, || async {
        events.list(&ListParams::default()).await.is_ok_and(|l| {
            l.items.iter().any(|e| {
                e.reason.as_deref() == Some("VolumeReplaced")
                    && e.type_.as_deref() == Some("Warning")
            })
        })
    })
    .await;
    drop(operator);
    node.shutdown().await;
}
