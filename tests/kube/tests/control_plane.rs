//! The control plane is real: the pinned kube-apiserver answers, the real kubectl works with
//! the written kubeconfig, ServiceAccount tokens authenticate and RBAC limits them, and the
//! controller-manager garbage-collects owned objects.

use std::time::{Duration, Instant};

use dispatch_kube_harness::{ControlPlane, KUBE_VERSION};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::Api;
use kube::api::{DeleteParams, ObjectMeta, PostParams};

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        ..Default::default()
    }
}

async fn eventually<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_is_real_and_enforces_rbac() {
    let started = Instant::now();
    let cp = ControlPlane::start().await.expect("control plane starts");
    eprintln!("control plane ready in {:?}", started.elapsed());
    let client = cp.client();

    // /version is the pinned release.
    let v = client.apiserver_version().await.expect("/version");
    assert_eq!(v.git_version, KUBE_VERSION);
    assert_eq!((v.major.as_str(), v.minor.as_str()), ("1", "37"));

    // The real kubectl, with the written kubeconfig, lists the namespaces.
    let out = cp
        .kubectl()
        .args(["get", "ns", "-o", "name"])
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names = String::from_utf8_lossy(&out.stdout);
    for ns in ["namespace/default", "namespace/kube-system"] {
        assert!(names.lines().any(|l| l == ns), "{ns} missing in {names}");
    }
    let out = cp
        .kubectl()
        .args(["version", "-o", "json"])
        .output()
        .expect("kubectl version");
    let version: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(version["serverVersion"]["gitVersion"], KUBE_VERSION);
    assert_eq!(version["clientVersion"]["gitVersion"], KUBE_VERSION);

    // helm (built from the same tools module) reaches the cluster through KUBECONFIG.
    let out = cp
        .helm()
        .args(["list", "--all-namespaces", "-o", "json"])
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "helm: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");

    // A ServiceAccount token (TokenRequest) authenticates; RBAC allows exactly what is bound.
    cp.create_namespace("rbac-test", &[])
        .await
        .expect("namespace");
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "rbac-test");
    sas.create(
        &PostParams::default(),
        &ServiceAccount {
            metadata: meta("reader"),
            ..Default::default()
        },
    )
    .await
    .expect("sa");
    let roles: Api<Role> = Api::namespaced(client.clone(), "rbac-test");
    roles
        .create(
            &PostParams::default(),
            &Role {
                metadata: meta("read-configmaps"),
                rules: Some(vec![PolicyRule {
                    api_groups: Some(vec![String::new()]),
                    resources: Some(vec!["configmaps".into()]),
                    verbs: vec!["get".into(), "list".into()],
                    ..Default::default()
                }]),
            },
        )
        .await
        .expect("role");
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), "rbac-test");
    bindings
        .create(
            &PostParams::default(),
            &RoleBinding {
                metadata: meta("reader"),
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "Role".into(),
                    name: "read-configmaps".into(),
                },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".into(),
                    name: "reader".into(),
                    namespace: Some("rbac-test".into()),
                    ..Default::default()
                }]),
            },
        )
        .await
        .expect("binding");
    let token = cp
        .service_account_token("rbac-test", "reader", 600)
        .await
        .expect("token");
    assert!(token.split('.').count() == 3, "a JWT");
    let sa_client = cp.client_with_token(&token).await.expect("sa client");
    let cms: Api<ConfigMap> = Api::namespaced(sa_client.clone(), "rbac-test");
    cms.list(&Default::default())
        .await
        .expect("SA may list configmaps in its namespace");
    fn forbidden<T>(r: Result<T, kube::Error>) -> bool {
        matches!(r, Err(kube::Error::Api(s)) if s.code == 403)
    }
    assert!(forbidden(
        cms.create(
            &PostParams::default(),
            &ConfigMap {
                metadata: meta("x"),
                ..Default::default()
            }
        )
        .await
    ));
    let other_ns: Api<ConfigMap> = Api::namespaced(sa_client.clone(), "default");
    assert!(forbidden(
        other_ns.list(&Default::default()).await.map(|_| ())
    ));
    let pods: Api<Pod> = Api::namespaced(sa_client.clone(), "rbac-test");
    assert!(forbidden(pods.list(&Default::default()).await.map(|_| ())));
    // A made-up token is not accepted at all.
    let bad = cp.client_with_token("not-a-token").await.expect("client");
    match Api::<ConfigMap>::namespaced(bad, "rbac-test")
        .list(&Default::default())
        .await
    {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 401),
        other => panic!("expected 401, got {other:?}"),
    }

    // kubectl with the SA's kubeconfig sees the same limits.
    let kc = cp
        .write_token_kubeconfig("reader", &token)
        .expect("kubeconfig");
    let run = |args: &[&str]| {
        std::process::Command::new(cp.bin_dir().join("kubectl"))
            .arg(format!("--kubeconfig={}", kc.display()))
            .args(args)
            .output()
            .expect("kubectl")
    };
    assert!(
        run(&["-n", "rbac-test", "get", "configmaps"])
            .status
            .success()
    );
    let denied = run(&["-n", "rbac-test", "get", "pods"]);
    assert!(!denied.status.success());
    assert!(String::from_utf8_lossy(&denied.stderr).contains("forbidden"));

    // kube-controller-manager: ownerReference garbage collection and namespace deletion.
    let owner = Api::<ConfigMap>::namespaced(client.clone(), "rbac-test")
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: meta("owner"),
                ..Default::default()
            },
        )
        .await
        .expect("owner");
    let mut child_meta = meta("child");
    child_meta.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: "owner".into(),
            uid: owner.metadata.uid.clone().expect("uid"),
            ..Default::default()
        },
    ]);
    let admin_cms: Api<ConfigMap> = Api::namespaced(client.clone(), "rbac-test");
    admin_cms
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: child_meta,
                ..Default::default()
            },
        )
        .await
        .expect("child");
    admin_cms
        .delete("owner", &DeleteParams::default())
        .await
        .expect("delete owner");
    eventually(
        "the owned ConfigMap to be garbage-collected",
        Duration::from_secs(60),
        || {
            let api = admin_cms.clone();
            async move { matches!(api.get_opt("child").await, Ok(None)) }
        },
    )
    .await;
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.delete("rbac-test", &DeleteParams::default())
        .await
        .expect("delete ns");
    eventually("the namespace to be gone", Duration::from_secs(60), || {
        let api = nss.clone();
        async move { matches!(api.get_opt("rbac-test").await, Ok(None)) }
    })
    .await;

    // Dropping the control plane stops its processes and removes its state.
    let dir = cp.state_dir().to_path_buf();
    let server = cp.server_url().trim_start_matches("https://").to_string();
    drop(cp);
    assert!(!dir.exists(), "state dir removed");
    assert!(
        std::net::TcpStream::connect(&server).is_err(),
        "apiserver port closed"
    );
}
