//! Pod volumes as host dirs: a PVC is a dir per claim under the node's state dir (its files
//! outlive the Pod, as with a real volume), emptyDir a fresh dir per Pod, Secret, ConfigMap
//! and projected volumes are files written from the API objects at start.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, KeyToPath, PersistentVolumeClaim, Pod, Secret, ServiceAccount,
};
use kube::Client;
use kube::api::{Api, PostParams};

use super::plan::{self, RefData};

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("volume {volume:?}: {what} {name:?} not found")]
    Missing {
        volume: String,
        what: &'static str,
        name: String,
    },
    #[error("volume {0:?}: this volume type is not supported by the local node")]
    Unsupported(String),
    #[error("volume {volume:?}: {source}")]
    Io {
        volume: String,
        source: std::io::Error,
    },
    #[error("volume {volume:?}: {source}")]
    Api { volume: String, source: kube::Error },
}

/// Fetches every Secret and ConfigMap the pod's volumes and the container's env name.
/// Missing ones are simply absent; whether that is an error depends on `optional`.
pub async fn fetch_refs(
    client: &Client,
    pod: &Pod,
    container: &str,
) -> Result<RefData, kube::Error> {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut secret_names = Vec::new();
    let mut cm_names = Vec::new();
    if let Ok(c) = plan::container(pod, container) {
        let (s, c) = plan::env_refs(c);
        secret_names.extend(s);
        cm_names.extend(c);
    }
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        if let Some(s) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            secret_names.push(s);
        }
        if let Some(c) = &v.config_map {
            cm_names.push(c.name.clone());
        }
        for src in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(s) = &src.secret {
                secret_names.push(s.name.clone());
            }
            if let Some(c) = &src.config_map {
                cm_names.push(c.name.clone());
            }
        }
    }
    secret_names.sort();
    secret_names.dedup();
    cm_names.sort();
    cm_names.dedup();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let mut refs = RefData::default();
    for name in secret_names {
        if let Some(s) = secrets.get_opt(&name).await? {
            let data = s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            refs.secrets.insert(name, data);
        }
    }
    for name in cm_names {
        if let Some(c) = cms.get_opt(&name).await? {
            let mut data: BTreeMap<String, Vec<u8>> = c
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            data.extend(
                c.binary_data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0)),
            );
            refs.config_maps.insert(name, data);
        }
    }
    Ok(refs)
}

/// Creates the host dir of every volume of `pod` and fills Secret/ConfigMap/projected ones.
pub async fn prepare(
    client: &Client,
    state: &Path,
    pod_dir: &Path,
    pod: &Pod,
    refs: &RefData,
) -> Result<HashMap<String, PathBuf>, VolumeError> {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut dirs = HashMap::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let name = v.name.clone();
        let ioerr = |source| VolumeError::Io {
            volume: name.clone(),
            source,
        };
        let own = pod_dir.join("volumes").join(&name);
        let dir = if let Some(pvc) = &v.persistent_volume_claim {
            // As a kubelet: no mount (so no start) for a claim that does not exist or is going.
            let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
            match claims.get_opt(&pvc.claim_name).await {
                Ok(Some(c)) if c.metadata.deletion_timestamp.is_none() => {}
                Ok(_) => {
                    return Err(VolumeError::Missing {
                        volume: name,
                        what: "PersistentVolumeClaim",
                        name: pvc.claim_name.clone(),
                    });
                }
                Err(source) => {
                    return Err(VolumeError::Api {
                        volume: name,
                        source,
                    });
                }
            }
            plan::claim_dir(state, &ns, &pvc.claim_name)
        } else if v.empty_dir.is_some() {
            own
        } else if let Some(s) = &v.secret {
            let secret_name = s.secret_name.clone().unwrap_or_default();
            std::fs::create_dir_all(&own).map_err(ioerr)?;
            match refs.secrets.get(&secret_name) {
                Some(data) => {
                    write_keys(&own, data, s.items.as_deref(), s.default_mode).map_err(ioerr)?
                }
                None if s.optional.unwrap_or(false) => {}
                None => {
                    return Err(VolumeError::Missing {
                        volume: name,
                        what: "Secret",
                        name: secret_name,
                    });
                }
            }
            own
        } else if let Some(c) = &v.config_map {
            std::fs::create_dir_all(&own).map_err(ioerr)?;
            match refs.config_maps.get(&c.name) {
                Some(data) => {
                    write_keys(&own, data, c.items.as_deref(), c.default_mode).map_err(ioerr)?
                }
                None if c.optional.unwrap_or(false) => {}
                None => {
                    return Err(VolumeError::Missing {
                        volume: name,
                        what: "ConfigMap",
                        name: c.name.clone(),
                    });
                }
            }
            own
        } else if let Some(p) = &v.projected {
            std::fs::create_dir_all(&own).map_err(ioerr)?;
            for src in p.sources.iter().flatten() {
                if let Some(s) = &src.secret
                    && let Some(data) = refs.secrets.get(&s.name)
                {
                    write_keys(&own, data, s.items.as_deref(), p.default_mode).map_err(ioerr)?;
                }
                if let Some(c) = &src.config_map
                    && let Some(data) = refs.config_maps.get(&c.name)
                {
                    write_keys(&own, data, c.items.as_deref(), p.default_mode).map_err(ioerr)?;
                }
                if let Some(t) = &src.service_account_token {
                    let token = bound_token(client, pod, t.audience.clone(), t.expiration_seconds)
                        .await
                        .map_err(|source| VolumeError::Api {
                            volume: name.clone(),
                            source,
                        })?;
                    write_file(&own.join(&t.path), token.as_bytes(), p.default_mode)
                        .map_err(ioerr)?;
                }
                if let Some(d) = &src.downward_api {
                    for item in d.items.iter().flatten() {
                        let value = match item.field_ref.as_ref().map(|f| f.field_path.as_str()) {
                            Some("metadata.namespace") => ns.clone(),
                            Some("metadata.name") => pod.metadata.name.clone().unwrap_or_default(),
                            Some("metadata.uid") => pod.metadata.uid.clone().unwrap_or_default(),
                            _ => continue,
                        };
                        write_file(&own.join(&item.path), value.as_bytes(), p.default_mode)
                            .map_err(ioerr)?;
                    }
                }
            }
            own
        } else {
            return Err(VolumeError::Unsupported(name));
        };
        std::fs::create_dir_all(&dir).map_err(|source| VolumeError::Io {
            volume: v.name.clone(),
            source,
        })?;
        dirs.insert(v.name.clone(), dir);
    }
    Ok(dirs)
}

/// A token for the pod's ServiceAccount bound to the Pod, as the kubelet projects one.
async fn bound_token(
    client: &Client,
    pod: &Pod,
    audience: Option<String>,
    expiration: Option<i64>,
) -> Result<String, kube::Error> {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let req = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: audience.map(|a| vec![a]),
            expiration_seconds: Some(expiration.unwrap_or(3600).max(600)),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let resp = api
        .create_token_request(&sa, &PostParams::default(), &req)
        .await?;
    Ok(resp.status.and_then(|s| s.token).unwrap_or_default())
}

fn write_keys(
    dir: &Path,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
) -> std::io::Result<()> {
    match items {
        Some(items) => {
            for it in items {
                if let Some(v) = data.get(&it.key) {
                    write_file(&dir.join(&it.path), v, it.mode.or(default_mode))?;
                }
            }
        }
        None => {
            for (k, v) in data {
                write_file(&dir.join(k), v, default_mode)?;
            }
        }
    }
    Ok(())
}

fn write_file(path: &Path, data: &[u8], mode: Option<i32>) -> std::io::Result<()> {
    // Keys and paths come from API objects: refuse anything that climbs out of the volume.
    if path
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("path {} leaves the volume", path.display()),
        ));
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, data)?;
    // Owner read is kept so the process (same user here) can read a 0400-style mode.
    let mode = u32::try_from(mode.unwrap_or(0o644)).unwrap_or(0o644) | 0o400;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o777))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_items_with_modes_and_refuses_escape() {
        let d = tempfile::tempdir().expect("tempdir");
        let data = BTreeMap::from([
            ("token".to_string(), b"abc".to_vec()),
            ("other".to_string(), b"x".to_vec()),
        ]);
        write_keys(d.path(), &data, None, Some(0o400)).expect("write");
        assert_eq!(std::fs::read(d.path().join("token")).expect("read"), b"abc");
        let mode = std::fs::metadata(d.path().join("token"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o400);

        let items = vec![KeyToPath {
            key: "token".into(),
            path: "sub/t".into(),
            mode: None,
            ..Default::default()
        }];
        let d2 = tempfile::tempdir().expect("tempdir");
        write_keys(d2.path(), &data, Some(&items), None).expect("write");
        assert!(d2.path().join("sub/t").is_file());
        assert!(!d2.path().join("other").exists());

        let bad = vec![KeyToPath {
            key: "token".into(),
            path: "../escape".into(),
            mode: None,
            ..Default::default()
        }];
        assert!(write_keys(d2.path(), &data, Some(&bad), None).is_err());
    }
}
