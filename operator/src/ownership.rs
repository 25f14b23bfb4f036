//! Field ownership of children that were created rather than applied.
//!
//! A child that does not exist yet is created with a plain POST (field manager
//! set): server-side apply costs the apiserver roughly twice the CPU of a
//! create, which dominates when many Workspaces arrive at once. Such an object
//! records its fields under our manager with operation `Update`. A later apply
//! would only share those fields, so a field that the desired object no longer
//! has would never be removed. Before an apply that changes a child, our
//! `Update` entry, if any, is folded into our `Apply` entry (what client-go's
//! `csaupgrade` does for kubectl), so that apply owns, and can drop, them all.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
use serde_json::Value;

const APPLY: &str = "Apply";
const UPDATE: &str = "Update";

fn is_own_update(e: &ManagedFieldsEntry, manager: &str) -> bool {
    e.manager.as_deref() == Some(manager) && e.operation.as_deref() == Some(UPDATE)
}

/// The managedFields with `manager`'s `Update` entries merged into its `Apply`
/// entry for the same API version; `None` when there is nothing to merge.
pub fn fold_updates_into_apply(
    entries: &[ManagedFieldsEntry],
    manager: &str,
) -> Option<Vec<ManagedFieldsEntry>> {
    let update = entries.iter().find(|e| is_own_update(e, manager))?;
    let version = update.api_version.clone();
    let ours = |e: &ManagedFieldsEntry| {
        e.manager.as_deref() == Some(manager)
            && e.api_version == version
            && e.subresource.is_none()
            && matches!(e.operation.as_deref(), Some(APPLY) | Some(UPDATE))
    };
    let mut fields = Value::Object(Default::default());
    for e in entries.iter().filter(|e| ours(e)) {
        if let Some(f) = &e.fields_v1 {
            union_into(&mut fields, &f.0);
        }
    }
    let mut out: Vec<ManagedFieldsEntry> = entries.iter().filter(|e| !ours(e)).cloned().collect();
    out.push(ManagedFieldsEntry {
        api_version: version,
        fields_type: Some("FieldsV1".into()),
        fields_v1: Some(FieldsV1(fields)),
        manager: Some(manager.into()),
        operation: Some(APPLY.into()),
        subresource: None,
        time: update.time.clone(),
    });
    Some(out)
}

/// Field sets are tries of JSON objects: their union is a deep merge of keys.
fn union_into(into: &mut Value, from: &Value) {
    // Leaves are `{}`: nothing but objects occurs in a valid field set.
    if let (Value::Object(a), Value::Object(b)) = (into, from) {
        for (k, v) in b {
            union_into(
                a.entry(k.clone())
                    .or_insert(Value::Object(Default::default())),
                v,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(manager: &str, op: &str, fields: Value) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            api_version: Some("v1".into()),
            fields_type: Some("FieldsV1".into()),
            fields_v1: Some(FieldsV1(fields)),
            manager: Some(manager.into()),
            operation: Some(op.into()),
            ..Default::default()
        }
    }

    #[test]
    fn update_and_apply_of_ours_become_one_apply_others_stay() {
        let entries = vec![
            entry(
                "op",
                "Update",
                json!({"f:metadata": {"f:annotations": {".": {}, "f:a": {}, "f:b": {}}}, "f:spec": {"f:egress": {}}}),
            ),
            entry(
                "op",
                "Apply",
                json!({"f:metadata": {"f:annotations": {"f:a": {}}}, "f:spec": {"f:podSelector": {}}}),
            ),
            entry(
                "kubectl",
                "Update",
                json!({"f:metadata": {"f:labels": {"f:x": {}}}}),
            ),
        ];
        let out = fold_updates_into_apply(&entries, "op").expect("something to fold");
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].manager.as_deref(), Some("kubectl"));
        let ours = &out[1];
        assert_eq!(ours.operation.as_deref(), Some("Apply"));
        assert_eq!(
            ours.fields_v1.as_ref().map(|f| f.0.clone()),
            Some(json!({
                "f:metadata": {"f:annotations": {".": {}, "f:a": {}, "f:b": {}}},
                "f:spec": {"f:egress": {}, "f:podSelector": {}}
            }))
        );
    }

    #[test]
    fn nothing_to_fold_without_our_update_entry() {
        let entries = vec![
            entry("op", "Apply", json!({"f:spec": {}})),
            entry("other", "Update", json!({"f:spec": {}})),
        ];
        assert!(fold_updates_into_apply(&entries, "op").is_none());
    }
}
