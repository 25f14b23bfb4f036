//! The reconcile pipeline in-process against a mocked apiserver (tower-test),
//! between the unit tests and the control-plane tests: which requests one
//! reconcile makes when the apiserver refuses some of them.

use std::sync::{Arc, Mutex};

use dispatch_api::crd::{FINALIZER, Workspace};
use dispatch_operator::config::WorkspaceDefaults;
use dispatch_operator::context::Context;
use dispatch_operator::desired::desired;
use dispatch_operator::idle::ActivityClient;
use dispatch_operator::metrics::Metrics;
use dispatch_operator::recent::Recent;
use dispatch_operator::reconcile::{Error, reconcile};
use http::{Request, Response};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use kube::{Client, Resource};

/// One request the operator made: method, path, body.
#[derive(Debug, Clone)]
struct Call {
    method: String,
    path: String,
    body: String,
}

impl Call {
    fn is(&self, method: &str, path_end: &str) -> bool {
        self.method == method && self.path.ends_with(path_end)
    }
}

/// An apiserver that refuses (403) creates of the resources named in
/// `refuse`, answers writes to the Workspace with `ws`, and otherwise echoes
/// what it is sent.
fn mock_apiserver(
    refuse: &'static [&'static str],
    ws: &Workspace,
) -> (Client, Arc<Mutex<Vec<Call>>>) {
    mock_apiserver_of(refuse, Some(ws))
}

/// As [`mock_apiserver`]; with `ws` None the Workspace is gone (404).
fn mock_apiserver_of(
    refuse: &'static [&'static str],
    ws: Option<&Workspace>,
) -> (Client, Arc<Mutex<Vec<Call>>>) {
    let ws = ws.map(|ws| serde_json::to_string(ws).expect("workspace json"));
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let method = req.method().to_string();
            let path = req.uri().path().to_string();
            let body = req.into_body().collect_bytes().await.unwrap_or_default();
            let text = String::from_utf8_lossy(&body).into_owned();
            seen.lock().unwrap().push(Call {
                method: method.clone(),
                path: path.clone(),
                body: text.clone(),
            });
            let refused = method == "POST" && refuse.iter().any(|r| path.ends_with(r));
            let (code, reply) = if refused {
                (
                    403,
                    serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Failure", "message": "refused by the test", "reason": "Forbidden", "code": 403})
                    .to_string(),
                )
            } else if path.contains("/workspaces/") {
                match &ws {
                    Some(ws) => (200, ws.clone()),
                    None => (
                        404,
                        serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Failure", "message": "workspaces \"w\" not found", "reason": "NotFound", "code": 404})
                        .to_string(),
                    ),
                }
            } else if method == "DELETE" {
                (
                    200,
                    serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
                        .to_string(),
                )
            } else {
                // What was sent, as if stored: good enough for the operator's reading.
                let mut obj: serde_json::Value =
                    serde_json::from_str(&text).unwrap_or(serde_json::json!({}));
                if obj.is_object() {
                    obj["metadata"]["uid"] = "uid-new".into();
                    obj["metadata"]["resourceVersion"] = "2".into();
                    if obj.get("apiVersion").is_none() {
                        obj["apiVersion"] = "v1".into();
                    }
                }
                (if method == "POST" { 201 } else { 200 }, obj.to_string())
            };
            send.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(reply.into_bytes()))
                    .expect("response"),
            );
        }
    });
    (Client::new(service, "default"), calls)
}

fn workspace(extra_spec: &str) -> Workspace {
    let mut ws: Workspace = serde_yaml::from_str(&format!(
        "apiVersion: dispatch.dev/v1alpha1\nkind: Workspace\nmetadata: {{name: w, namespace: n, generation: 1}}\nspec: {{owner: alice{extra_spec}}}\n"
    ))
    .expect("workspace");
    ws.metadata.uid = Some("uid-w".into());
    ws
}

fn fill<K>(writer: &mut Writer<K>, objects: Vec<K>)
where
    K: Resource<DynamicType = ()> + Clone,
{
    writer.apply_watcher_event(&watcher::Event::Init);
    for o in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(o));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
}

/// A context whose caches hold the token Secret (and `pods`).
fn context(client: Client, ws: &Workspace, pods: Vec<Pod>) -> Arc<Context> {
    let (secrets, mut sw) = reflector::store::<Secret>();
    fill(
        &mut sw,
        vec![desired(ws, &WorkspaceDefaults::default(), "tok").secret],
    );
    let (pod_store, mut pw) = reflector::store::<Pod>();
    fill(&mut pw, pods);
    let (pvcs, mut cw) = reflector::store();
    fill(&mut cw, vec![]);
    let (services, mut svw) = reflector::store();
    fill(&mut svw, vec![]);
    let (policies, mut nw) = reflector::store();
    fill(&mut nw, vec![]);
    Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "test".into(),
                instance: None,
            },
        ),
        client,
        defaults: WorkspaceDefaults::default(),
        metrics: Arc::new(Metrics::default()),
        activity: ActivityClient::default(),
        pods: pod_store,
        secrets,
        pvcs,
        services,
        policies,
        recent: Arc::new(Recent::default()),
        warm: None,
        full_applies: Mutex::default(),
        failures: Mutex::default(),
    })
}

fn calls(c: &Arc<Mutex<Vec<Call>>>) -> Vec<Call> {
    c.lock().unwrap().clone()
}

#[tokio::test]
async fn a_refused_claim_holds_up_no_other_child_and_shows_in_the_status() {
    let ws = workspace("");
    let (client, log) = mock_apiserver(&["/persistentvolumeclaims"], &ws);
    let ctx = context(client, &ws, vec![]);
    let result = reconcile(Arc::new(ws), ctx).await;
    match &result {
        Err(Error::Apply(msg)) => {
            assert!(msg.contains("PersistentVolumeClaim/n/ws-w-data"), "{msg}")
        }
        other => panic!("expected the claim's failure, got {other:?}"),
    }
    let c = calls(&log);
    for created in ["/services", "/networkpolicies", "/pods"] {
        assert!(
            c.iter().any(|x| x.is("POST", created)),
            "{created} created after the refused claim: {c:#?}"
        );
    }
    let status = c
        .iter()
        .find(|x| x.is("PATCH", "/workspaces/w/status"))
        .expect("status written");
    assert!(status.body.contains("ApplyFailed"), "{}", status.body);
    assert!(
        status.body.contains("refused by the test"),
        "{}",
        status.body
    );
    assert!(
        !c.iter().any(|x| x.is("PATCH", "/workspaces/w")),
        "no finalizer for a workspace whose deletion needs no operator"
    );
}

#[tokio::test]
async fn suspending_removes_the_pod_though_another_child_is_refused() {
    let ws = workspace(", suspended: true");
    let (client, log) = mock_apiserver(&["/services", "/networkpolicies"], &ws);
    let mut pod = desired(&workspace(""), &WorkspaceDefaults::default(), "tok")
        .pod
        .expect("pod");
    pod.metadata.uid = Some("uid-pod".into());
    let ctx = context(client, &ws, vec![pod]);
    let result = reconcile(Arc::new(ws), ctx).await;
    assert!(matches!(result, Err(Error::Apply(_))), "{result:?}");
    let c = calls(&log);
    let delete = c
        .iter()
        .find(|x| x.is("DELETE", "/pods/ws-w"))
        .unwrap_or_else(|| panic!("the Pod deleted: {c:#?}"));
    assert!(
        delete.body.contains("uid-pod"),
        "deleted only that Pod: {}",
        delete.body
    );
}

#[tokio::test]
async fn the_finalizer_of_an_older_operator_is_taken_off() {
    let mut ws = workspace("");
    ws.metadata.finalizers = Some(vec![FINALIZER.into()]);
    let (client, log) = mock_apiserver(&[], &ws);
    let ctx = context(client, &ws, vec![]);
    reconcile(Arc::new(ws), ctx).await.expect("reconciled");
    let c = calls(&log);
    let patch = c
        .iter()
        .find(|x| x.is("PATCH", "/workspaces/w"))
        .unwrap_or_else(|| panic!("finalizers patched: {c:#?}"));
    let ops: serde_json::Value = serde_json::from_str(&patch.body).expect("json patch");
    assert_eq!(
        ops[1],
        serde_json::json!({"op": "remove", "path": "/metadata/finalizers/0"})
    );
}

#[tokio::test]
async fn a_workspace_deleted_while_it_is_reconciled_is_not_a_failure() {
    // The cache still shows it; the apiserver no longer has it.
    let ws = workspace("");
    let (client, log) = mock_apiserver_of(&[], None);
    let ctx = context(client, &ws, vec![]);
    let result = reconcile(Arc::new(ws), ctx).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(
        calls(&log)
            .iter()
            .any(|x| x.is("PATCH", "/workspaces/w/status")),
        "the status write was tried and met the 404"
    );
}
