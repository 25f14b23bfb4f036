//! A change to what the operator wants of an existing child reaches it on a
//! real kube-apiserver, including fields that the new desired object drops
//! (children are created with a plain POST and applied afterwards).

mod common;

use std::time::Duration;

use common::*;
use dispatch_api::crd::names;
use dispatch_kube_harness::ControlPlane;
use dispatch_operator::controller::MANAGER;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::Api;

const NS: &str = "team-c";
const WAIT: Duration = Duration::from_secs(60);

fn operations(np: &NetworkPolicy) -> Vec<String> {
    np.metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|e| e.manager.as_deref() == Some(MANAGER))
        .filter_map(|e| e.operation.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_field_leaves_a_created_child() {
    let cp = ControlPlane::start().await.expect("control plane starts");
    install_crd(&cp);
    cp.create_namespace(NS, &[]).await.expect("namespace");
    let mut operator = Operator::start(&cp, &["--egress", "none"]);
    ok(kubectl_apply(
        &cp,
        &format!(
            "apiVersion: dispatch.dev/v1alpha1\nkind: Workspace\nmetadata:\n  name: w\n  namespace: {NS}\nspec:\n  owner: alice\n"
        ),
    ));
    let policies: Api<NetworkPolicy> = Api::namespaced(cp.client(), NS);
    let name = names::network_policy("w");
    eventually("the NetworkPolicy with egress rules", WAIT, || async {
        policies
            .get_opt(&name)
            .await
            .ok()
            .flatten()
            .and_then(|np| np.spec?.egress)
            .is_some_and(|e| !e.is_empty())
    })
    .await;
    // Created, not applied: its fields are ours through an Update entry.
    let np = policies.get(&name).await.expect("policy");
    assert_eq!(
        operations(&np),
        ["Update"],
        "{:?}",
        np.metadata.managed_fields
    );

    // With egress open, the policy has no egress rules and no Egress type.
    operator.kill();
    let operator = Operator::start(&cp, &["--egress", "all"]);
    eventually("the egress rules removed", WAIT, || async {
        policies
            .get_opt(&name)
            .await
            .ok()
            .flatten()
            .and_then(|np| np.spec)
            .is_some_and(|s| s.egress.is_none() && s.policy_types == Some(vec!["Ingress".into()]))
    })
    .await;
    let np = policies.get(&name).await.expect("policy");
    assert_eq!(
        operations(&np),
        ["Apply"],
        "one apply entry owns every field: {:?}\n{}",
        np.metadata.managed_fields,
        operator.log_text()
    );
}
