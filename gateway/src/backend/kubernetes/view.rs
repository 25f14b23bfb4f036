//! Pure mapping from a `Workspace` resource to what the gateway reports, and
//! from the gateway's template to a new resource. No I/O, unit-tested.

use dispatch_api::crd::{MAX_NAME_LEN, Workspace, WorkspacePhase as CrdPhase, WorkspaceSpec};
use dispatch_api::rest::{WorkspaceInfo, WorkspacePhase};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;

/// Whether `ws` belongs to `owner` (the only way a user ever sees it).
pub fn owned_by(ws: &Workspace, owner: &str) -> bool {
    ws.spec.owner == owner
}

fn ms(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> i64 {
    t.0.as_millisecond()
}

fn condition<'a>(conds: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conds.iter().find(|c| c.type_ == type_)
}

/// The phase a user should see. The operator's status lags the spec by a
/// reconcile, so a workspace just resumed (spec.suspended false, status still
/// Suspended) is shown as Starting, and one just suspended as Suspended.
pub fn phase(ws: &Workspace) -> WorkspacePhase {
    if ws.metadata.deletion_timestamp.is_some() {
        return WorkspacePhase::Terminating;
    }
    let status = ws.status.as_ref().and_then(|s| s.phase);
    match (status, ws.spec.suspended) {
        (Some(CrdPhase::Suspended), false) => WorkspacePhase::Starting,
        (Some(CrdPhase::Running | CrdPhase::Starting | CrdPhase::Pending), true) => {
            WorkspacePhase::Suspended
        }
        (Some(p), _) => p.into(),
        (None, true) => WorkspacePhase::Suspended,
        (None, false) => WorkspacePhase::Pending,
    }
}

/// Progress or trouble in words: a Degraded condition's message first, then
/// what is in progress, then why it is not ready.
pub fn message(ws: &Workspace) -> Option<String> {
    let status = ws.status.as_ref()?;
    let conds = &status.conditions;
    let pick = |type_: &str, status: &str| {
        condition(conds, type_)
            .filter(|c| c.status == status && !c.message.is_empty())
            .map(|c| c.message.clone())
    };
    if status.phase == Some(CrdPhase::Suspended) && !ws.spec.suspended {
        return Some("resuming".into());
    }
    pick("Degraded", "True")
        .or_else(|| pick("Progressing", "True"))
        .or_else(|| pick("Ready", "False"))
}

pub fn info(ws: &Workspace) -> WorkspaceInfo {
    WorkspaceInfo {
        name: ws.name_any(),
        owner: ws.spec.owner.clone(),
        phase: phase(ws),
        created: ws.metadata.creation_timestamp.as_ref().map_or(0, ms),
        last_accessed: ws
            .status
            .as_ref()
            .and_then(|s| s.last_activity.as_ref())
            .map(ms),
        message: message(ws),
    }
}

/// Where the agent of a Running workspace answers, and the Secret holding its
/// token; None until the operator reports both.
pub fn reachable(ws: &Workspace) -> Option<(String, String)> {
    if phase(ws) != WorkspacePhase::Running {
        return None;
    }
    let st = ws.status.as_ref()?;
    let ep = st.endpoint.as_deref()?.trim_end_matches('/');
    if !(ep.starts_with("http://") || ep.starts_with("https://")) {
        return None;
    }
    Some((ep.to_owned(), st.token_secret.clone()?))
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("the workspace template is not YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("the workspace template must be a mapping of Workspace spec fields")]
    NotAMapping,
    #[error("the workspace template is not a valid Workspace spec: {0}")]
    Spec(serde_json::Error),
}

/// The default spec of workspaces made from the UI: any Workspace spec
/// fields, `owner` filled in per user. Kept as JSON so that fields the
/// gateway does not know pass through to the apiserver, which validates them.
#[derive(Debug, Clone, PartialEq)]
pub struct Template(serde_json::Map<String, serde_json::Value>);

impl Default for Template {
    fn default() -> Self {
        Template(serde_json::Map::new())
    }
}

impl Template {
    pub fn parse(yaml: &str) -> Result<Template, TemplateError> {
        let v: serde_json::Value = serde_yaml::from_str(yaml)?;
        let map = match v {
            serde_json::Value::Null => serde_json::Map::new(),
            serde_json::Value::Object(m) => m,
            _ => return Err(TemplateError::NotAMapping),
        };
        let t = Template(map);
        // Refuse at start-up what every create would fail on.
        serde_json::from_value::<WorkspaceSpec>(t.spec("template-check"))
            .map_err(TemplateError::Spec)?;
        Ok(t)
    }

    /// The spec for `owner`: the template with owner set and never suspended.
    pub fn spec(&self, owner: &str) -> serde_json::Value {
        let mut m = self.0.clone();
        m.insert("owner".into(), owner.into());
        m.remove("suspended");
        serde_json::Value::Object(m)
    }

    /// A whole Workspace object named `name` in `namespace`.
    pub fn workspace(&self, namespace: &str, name: &str, owner: &str) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "dispatch.dev/v1alpha1",
            "kind": "Workspace",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": { dispatch_api::crd::LABEL_OWNER: owner },
            },
            "spec": self.spec(owner),
        })
    }
}

/// Names the CRD accepts (shorter than a DNS label: children add suffixes).
pub fn name_fits(name: &str) -> bool {
    name.len() <= MAX_NAME_LEN
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws(yaml: &str) -> Workspace {
        serde_yaml::from_str(yaml).unwrap()
    }

    const BASE: &str = "apiVersion: dispatch.dev/v1alpha1\nkind: Workspace\nmetadata: {name: demo, namespace: ns, creationTimestamp: '2026-01-01T00:00:00Z'}\n";

    #[test]
    fn phases_follow_status_and_spec() {
        let w = ws(&format!("{BASE}spec: {{owner: alice}}\n"));
        assert_eq!(phase(&w), WorkspacePhase::Pending);
        assert_eq!(info(&w).created, 1_767_225_600_000);
        let w = ws(&format!(
            "{BASE}spec: {{owner: alice}}\nstatus: {{phase: Running, endpoint: 'http://127.0.0.5:8080/', tokenSecret: demo-token}}\n"
        ));
        assert_eq!(phase(&w), WorkspacePhase::Running);
        assert_eq!(
            reachable(&w),
            Some(("http://127.0.0.5:8080".into(), "demo-token".into()))
        );
        // Just resumed: the status still says Suspended.
        let w = ws(&format!(
            "{BASE}spec: {{owner: alice, suspended: false}}\nstatus: {{phase: Suspended}}\n"
        ));
        assert_eq!(phase(&w), WorkspacePhase::Starting);
        assert_eq!(message(&w).as_deref(), Some("resuming"));
        assert_eq!(reachable(&w), None);
        // Just suspended: the status still says Running.
        let w = ws(&format!(
            "{BASE}spec: {{owner: alice, suspended: true}}\nstatus: {{phase: Running, endpoint: 'http://127.0.0.5:8080', tokenSecret: t}}\n"
        ));
        assert_eq!(phase(&w), WorkspacePhase::Suspended);
        assert_eq!(reachable(&w), None);
    }

    #[test]
    fn messages_prefer_trouble_then_progress() {
        let w = ws(&format!(
            "{BASE}spec: {{owner: alice}}\nstatus:\n  phase: Starting\n  conditions:\n  - {{type: Ready, status: 'False', reason: NotReady, message: agent not ready, lastTransitionTime: '2026-01-01T00:00:00Z'}}\n  - {{type: Progressing, status: 'True', reason: PodStarting, message: waiting for the pod, lastTransitionTime: '2026-01-01T00:00:00Z'}}\n"
        ));
        assert_eq!(message(&w).as_deref(), Some("waiting for the pod"));
        let w = ws(&format!(
            "{BASE}spec: {{owner: alice}}\nstatus:\n  phase: Failed\n  conditions:\n  - {{type: Progressing, status: 'True', reason: X, message: trying, lastTransitionTime: '2026-01-01T00:00:00Z'}}\n  - {{type: Degraded, status: 'True', reason: Invalid, message: bad image, lastTransitionTime: '2026-01-01T00:00:00Z'}}\n"
        ));
        assert_eq!(message(&w).as_deref(), Some("bad image"));
        assert_eq!(phase(&w), WorkspacePhase::Failed);
    }

    #[test]
    fn endpoints_must_be_http_urls() {
        let w = ws(&format!(
            "{BASE}spec: {{owner: alice}}\nstatus: {{phase: Running, endpoint: '127.0.0.5:8080', tokenSecret: t}}\n"
        ));
        assert_eq!(reachable(&w), None);
        let w = ws(&format!(
            "{BASE}spec: {{owner: alice}}\nstatus: {{phase: Running, endpoint: 'http://127.0.0.5:8080'}}\n"
        ));
        assert_eq!(reachable(&w), None);
    }

    #[test]
    fn template_fills_the_owner_and_never_suspends() {
        let t =
            Template::parse("storage: {size: 1Gi}\nidleTimeout: 2h\nsuspended: true\nowner: x\n")
                .unwrap();
        let v = t.workspace("ns", "demo", "alice");
        assert_eq!(v["spec"]["owner"], "alice");
        assert_eq!(v["spec"]["storage"]["size"], "1Gi");
        assert!(v["spec"].get("suspended").is_none());
        assert_eq!(v["metadata"]["labels"]["dispatch.dev/owner"], "alice");
        let w: Workspace = serde_json::from_value(v).unwrap();
        assert!(owned_by(&w, "alice"));
        assert!(!owned_by(&w, "bob"));
        assert_eq!(Template::parse("").unwrap(), Template::default());
    }

    #[test]
    fn bad_templates_are_refused() {
        assert!(matches!(
            Template::parse("[1, 2]"),
            Err(TemplateError::NotAMapping)
        ));
        assert!(matches!(
            Template::parse("storage: {size: [x]}"),
            Err(TemplateError::Spec(_))
        ));
        assert!(matches!(
            Template::parse("a: [: "),
            Err(TemplateError::Yaml(_))
        ));
    }

    #[test]
    fn names_fit_the_crd() {
        assert!(name_fits(&"a".repeat(54)));
        assert!(!name_fits(&"a".repeat(55)));
    }
}
