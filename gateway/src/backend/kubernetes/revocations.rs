//! Logouts shared by gateway replicas through one ConfigMap: each logout adds
//! `<token id>: <expiry ms>` to its data (and drops entries whose tokens have
//! expired); every replica watches that one object and revokes what it lists.
//! The gateway's RBAC names the ConfigMap (resourceNames), so it can touch no
//! other. A replica that cannot reach the API keeps its own logouts (SQLite)
//! and catches up when the watch resumes.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};

use crate::auth::{Auth, RevocationSink, now_ms};

/// Entries of the ConfigMap's data that are still in force at `now`.
pub fn in_force(data: &BTreeMap<String, String>, now: i64) -> Vec<(String, i64)> {
    data.iter()
        .filter_map(|(id, exp)| Some((id.clone(), exp.trim().parse::<i64>().ok()?)))
        .filter(|(id, exp)| *exp > now && is_token_id(id))
        .collect()
}

/// Token ids are hex (see `auth::token`); anything else in the map is ignored.
fn is_token_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The merge patch that records one logout and prunes expired entries.
pub fn logout_patch(
    current: Option<&BTreeMap<String, String>>,
    id: &str,
    expires: i64,
    now: i64,
) -> serde_json::Value {
    let mut data = serde_json::Map::new();
    for (k, v) in current.into_iter().flatten() {
        if v.trim().parse::<i64>().map_or(true, |e| e <= now) {
            data.insert(k.clone(), serde_json::Value::Null);
        }
    }
    data.insert(id.to_owned(), expires.to_string().into());
    serde_json::json!({ "data": data })
}

/// Watches the ConfigMap into `auth` and makes `auth`'s logouts write to it.
pub fn start(client: kube::Client, namespace: &str, name: &str, auth: Arc<Auth>) {
    let api: Api<ConfigMap> = Api::namespaced(client, namespace);
    let writer = api.clone();
    let cm = name.to_owned();
    let sink: RevocationSink = Arc::new(move |id: String, expires: i64| {
        let api = writer.clone();
        let cm = cm.clone();
        Box::pin(async move {
            let current = api.get_opt(&cm).await.ok().flatten().and_then(|c| c.data);
            let patch = logout_patch(current.as_ref(), &id, expires, now_ms());
            let pp = PatchParams {
                field_manager: Some("dispatch-gateway".into()),
                ..Default::default()
            };
            if let Err(e) = api.patch(&cm, &pp, &Patch::Merge(&patch)).await {
                tracing::warn!(
                    configmap = %cm,
                    "logout not shared with other replicas (they accept this login until it expires): {e}"
                );
            }
        })
    });
    auth.set_revocation_sink(sink);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let name = name.to_owned();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(watcher(api, cfg).default_backoff().applied_objects());
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(cm) => {
                    for (id, exp) in in_force(&cm.data.unwrap_or_default(), now_ms()) {
                        auth.add_revocation(&id, exp);
                    }
                }
                Err(e) => tracing::warn!(configmap = %name, "watching shared logouts: {e}"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unexpired_hex_ids_are_in_force() {
        let data: BTreeMap<String, String> = [
            ("aa11", "2000"),
            ("bb22", "500"),
            ("not-hex", "9000"),
            ("cc33", "soon"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(in_force(&data, 1000), vec![("aa11".to_string(), 2000)]);
    }

    #[test]
    fn a_logout_prunes_what_expired() {
        let data: BTreeMap<String, String> = [("old", "500"), ("live", "5000"), ("bad", "x")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let p = logout_patch(Some(&data), "new1", 9000, 1000);
        assert_eq!(
            p,
            serde_json::json!({"data": {"old": null, "bad": null, "new1": "9000"}})
        );
        assert_eq!(
            logout_patch(None, "ab", 7, 1),
            serde_json::json!({"data": {"ab": "7"}})
        );
    }
}
