//! Which Workspace events are worth a reconcile.

use dispatch_api::crd::Workspace;

use crate::recent::status_digest;

/// What of a Workspace calls for a reconcile: its spec (the generation) and
/// its deletion. The operator's own finalizer and status patches change
/// neither, so they no longer come back as reconciles that find nothing to
/// do; anything else is caught by the children's watches and the periodic
/// requeue. (The filter keys on the UID too: a recreated Workspace passes.)
pub fn spec_or_deletion(ws: &Workspace) -> Option<u64> {
    let generation = u64::try_from(ws.metadata.generation?).ok()?;
    Some((generation << 1) | u64::from(ws.metadata.deletion_timestamp.is_some()))
}

/// [`spec_or_deletion`], and a status that is not the one this process last
/// wrote (`written`, a [`status_digest`]): someone else wrote it, and it is
/// put right at once. The operator's own status writes still pass unseen.
pub fn worth_a_reconcile(ws: &Workspace, written: Option<u64>) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let base = spec_or_deletion(ws)?;
    let foreign = match (&ws.status, written) {
        (Some(s), Some(w)) if status_digest(s) != w => status_digest(s),
        _ => 0,
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (base, foreign).hash(&mut h);
    Some(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dispatch_api::crd::{WorkspacePhase, WorkspaceStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ws() -> Workspace {
        let mut w: Workspace = serde_yaml::from_str(
            "apiVersion: dispatch.dev/v1alpha1\nkind: Workspace\nmetadata: {name: a, generation: 3}\nspec: {owner: alice}\n",
        )
        .unwrap();
        w.metadata.uid = Some("u1".into());
        w
    }

    #[test]
    fn our_own_writes_pass_unseen_spec_changes_and_deletion_do_not() {
        let base = spec_or_deletion(&ws());
        let mut ours = ws();
        ours.metadata.finalizers = Some(vec!["dispatch.dev/cleanup".into()]);
        ours.metadata.resource_version = Some("99".into());
        ours.status = Some(WorkspaceStatus {
            phase: Some(WorkspacePhase::Running),
            ..WorkspaceStatus::default()
        });
        assert_eq!(spec_or_deletion(&ours), base);

        let mut edited = ws();
        edited.metadata.generation = Some(4);
        assert_ne!(spec_or_deletion(&edited), base);
        let mut deleting = ws();
        deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        assert_ne!(spec_or_deletion(&deleting), base);
    }

    #[test]
    fn a_status_someone_else_wrote_passes_our_own_does_not() {
        let ours = WorkspaceStatus {
            phase: Some(WorkspacePhase::Running),
            ..WorkspaceStatus::default()
        };
        let mut w = ws();
        w.status = Some(ours.clone());
        let written = Some(status_digest(&ours));
        let base = worth_a_reconcile(&w, written);
        let mut again = w.clone();
        again.metadata.resource_version = Some("100".into());
        assert_eq!(worth_a_reconcile(&again, written), base);
        let mut foreign = w.clone();
        foreign.status = Some(WorkspaceStatus {
            phase: Some(WorkspacePhase::Failed),
            ..WorkspaceStatus::default()
        });
        assert_ne!(worth_a_reconcile(&foreign, written), base);
        assert_eq!(
            worth_a_reconcile(&foreign, None),
            worth_a_reconcile(&w, None),
            "nothing written yet: the status alone is no reason"
        );
    }
}
