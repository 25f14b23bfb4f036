//! Leader election when clocks disagree: a replica whose clock lags an hour
//! renews its Lease with a renewTime that looks an hour old. As long as it
//! keeps renewing, the operator must not lead beside it (it counts the
//! lease from when it saw the record change, as client-go does); once it
//! stops, the operator takes over.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use dispatch_kube_harness::{ControlPlane, ControlPlaneOptions};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};

const NS: &str = "lead";
const LEASE: &str = "dispatch-operator";

fn lagging_now() -> MicroTime {
    MicroTime(Timestamp::now() - SignedDuration::from_secs(3600))
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases.get(LEASE).await.ok()?.spec?.holder_identity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_with_a_lagging_clock_keeps_the_lease_while_it_renews() {
    let cp = ControlPlane::start_with(ControlPlaneOptions {
        controller_manager: false,
        ..Default::default()
    })
    .await
    .expect("control plane starts");
    install_crd(&cp);
    cp.create_namespace(NS, &[]).await.expect("namespace");
    let leases: Api<Lease> = Api::namespaced(cp.client(), NS);
    leases
        .create(
            &PostParams::default(),
            &Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE.into()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some("lagging".into()),
                    lease_duration_seconds: Some(3),
                    acquire_time: Some(lagging_now()),
                    renew_time: Some(lagging_now()),
                    ..LeaseSpec::default()
                }),
            },
        )
        .await
        .expect("lease");

    // The lagging replica renews every 300 ms with its own idea of now.
    let renewing = Arc::new(AtomicBool::new(true));
    let renewer = {
        let leases = leases.clone();
        let renewing = renewing.clone();
        tokio::spawn(async move {
            while renewing.load(Ordering::SeqCst) {
                if let Ok(mut l) = leases.get(LEASE).await
                    && let Some(spec) = l.spec.as_mut()
                    && spec.holder_identity.as_deref() == Some("lagging")
                {
                    spec.renew_time = Some(lagging_now());
                    let _ = leases.replace(LEASE, &PostParams::default(), &l).await;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };

    let operator = Operator::start(&cp, &["--namespace", NS, "--identity", "me"]);
    // It retries every lease/5 (600 ms): eight refusals span more than the 3 s lease.
    eventually(
        "the operator to see the lease held eight times (or to lead)",
        WAIT,
        || async {
            let log = operator.log_text();
            log.matches("another replica leads").count() >= 8 || log.contains(" leading")
        },
    )
    .await;
    assert_eq!(holder(&leases).await.as_deref(), Some("lagging"));
    assert!(
        !operator.log_text().contains(" leading"),
        "took a lease that is being renewed:\n{}",
        operator.log_text()
    );

    renewing.store(false, Ordering::SeqCst);
    renewer.await.expect("renewer");
    eventually("the operator leads once renewals stop", WAIT, || async {
        holder(&leases).await.as_deref() == Some("me")
    })
    .await;
}

const WAIT: Duration = Duration::from_secs(60);
