//! Leader election with a coordination.k8s.io Lease, the algorithm of
//! client-go's leaderelection package: whoever holds an unexpired Lease leads
//! and renews it; anyone may take an expired one. Every write carries the
//! resourceVersion read, so two candidates never both win.
//! (kube-runtime 5 has no leader election of its own.)

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};

/// What identifies one write of the Lease record: a renewal changes it.
#[derive(Debug, Clone, PartialEq)]
struct Record {
    holder: Option<String>,
    acquired: Option<MicroTime>,
    renewed: Option<MicroTime>,
    duration: Option<i32>,
    transitions: Option<i32>,
}

impl Record {
    fn of(spec: &LeaseSpec) -> Self {
        Self {
            holder: spec.holder_identity.clone(),
            acquired: spec.acquire_time.clone(),
            renewed: spec.renew_time.clone(),
            duration: spec.lease_duration_seconds,
            transitions: spec.lease_transitions,
        }
    }
}

/// Whether `me` may take the lease now. As client-go does, the holder's
/// lease runs from when this candidate last saw the record change
/// (`observed_at`, on its own monotonic clock), never from the holder's
/// `renewTime`: clocks that disagree by more than the lease must not let
/// two replicas lead at once.
pub fn may_acquire(spec: &LeaseSpec, me: &str, observed_at: Instant, now: Instant) -> bool {
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() || holder == me {
        return true;
    }
    let secs = u64::try_from(spec.lease_duration_seconds.unwrap_or(15)).unwrap_or(15);
    now.saturating_duration_since(observed_at) > Duration::from_secs(secs)
}

pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease: Duration,
    /// The record as last seen, and when it was first seen so.
    observed: Mutex<Option<(Record, Instant)>>,
}

impl LeaderElector {
    pub fn new(api: Api<Lease>, name: String, identity: String, lease: Duration) -> Self {
        Self {
            api,
            name,
            identity,
            lease,
            observed: Mutex::new(None),
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// One attempt to take or renew the Lease. `Ok(true)`: we lead until
    /// `lease` from now.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let secs = i32::try_from(self.lease.as_secs()).unwrap_or(15);
        match self.api.get_opt(&self.name).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(secs),
                        acquire_time: Some(MicroTime(now)),
                        renew_time: Some(MicroTime(now)),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
            Some(mut lease) => {
                let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                let observed_at = self.observe(spec);
                if !may_acquire(spec, &self.identity, observed_at, Instant::now()) {
                    return Ok(false);
                }
                if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                    spec.holder_identity = Some(self.identity.clone());
                    spec.acquire_time = Some(MicroTime(now));
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
                spec.renew_time = Some(MicroTime(now));
                spec.lease_duration_seconds = Some(secs);
                // replace carries metadata.resourceVersion: a concurrent writer makes this 409.
                match self
                    .api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Notes the record read; returns since when it has looked like this.
    fn observe(&self, spec: &LeaseSpec) -> Instant {
        let record = Record::of(spec);
        let Ok(mut seen) = self.observed.lock() else {
            return Instant::now();
        };
        match seen.as_ref() {
            Some((r, at)) if *r == record => *at,
            _ => {
                let now = Instant::now();
                *seen = Some((record, now));
                now
            }
        }
    }

    /// Waits until this replica leads.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return,
                Ok(false) => tracing::debug!(lease = %self.name, "another replica leads"),
                Err(e) => tracing::warn!(error = %e, "leader election failed"),
            }
            tokio::time::sleep(self.retry_period()).await;
        }
    }

    /// Renews until renewal has failed for a whole lease duration (then
    /// another replica may already lead), and returns.
    pub async fn hold(&self) {
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.retry_period()).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_ok = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::error!("lost the lease to another replica");
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "renewing the lease failed"),
            }
            // Stop short of the full duration so two leaders never overlap.
            if last_ok.elapsed() > self.lease.mul_f32(0.8) {
                tracing::error!("could not renew the lease in time");
                return;
            }
        }
    }

    /// Gives the lease up (on orderly shutdown) so a successor need not wait.
    pub async fn release(&self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await
            && let Some(spec) = lease
                .spec
                .as_mut()
                .filter(|s| s.holder_identity.as_deref() == Some(&self.identity))
        {
            spec.holder_identity = None;
            spec.renew_time = None;
            let _ = self
                .api
                .replace(&self.name, &PostParams::default(), &lease)
                .await;
        }
    }

    fn retry_period(&self) -> Duration {
        (self.lease / 5).max(Duration::from_millis(200))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::SignedDuration;

    fn spec(holder: Option<&str>, renewed_secs_ago: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(String::from),
            renew_time: Some(MicroTime(
                Timestamp::now() - SignedDuration::from_secs(renewed_secs_ago),
            )),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn free_own_or_unrenewed_lease_may_be_taken() {
        let now = Instant::now();
        let long_ago = now - Duration::from_secs(20);
        assert!(may_acquire(&spec(None, 1), "me", now, now));
        assert!(may_acquire(&spec(Some(""), 1), "me", now, now));
        assert!(may_acquire(&spec(Some("me"), 1), "me", now, now));
        assert!(may_acquire(&spec(Some("other"), 0), "me", long_ago, now));
        assert!(!may_acquire(
            &spec(Some("other"), 0),
            "me",
            now - Duration::from_secs(5),
            now
        ));
    }

    #[test]
    fn a_holder_whose_clock_lags_still_holds_while_it_renews() {
        // Its renewTime says an hour ago, but this candidate saw it change just now.
        let now = Instant::now();
        assert!(!may_acquire(&spec(Some("other"), 3600), "me", now, now));
    }
}
