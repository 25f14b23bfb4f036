//! The git routes of a real agent on a real repository, run by the real git.

mod common;
mod files_common;

use std::process::Command;

use common::Agent;
use files_common::{Reply, bytes, empty, enc, request};
use serde_json::json;

const AUTH: (&str, &str) = ("authorization", "Bearer test-token-0123456789");

async fn get(a: &Agent, path: &str) -> Reply {
    request(&a.addr, "GET", path, &[AUTH], empty()).await
}

async fn post(a: &Agent, path: &str, body: serde_json::Value) -> Reply {
    request(
        &a.addr,
        "POST",
        path,
        &[AUTH, ("content-type", "application/json")],
        bytes(body.to_string()),
    )
    .await
}

/// Runs git in the workspace the way a user would from the terminal.
fn git(a: &Agent, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(&a.workspace)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn write(a: &Agent, rel: &str, text: &str) {
    let p = a.workspace.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[tokio::test]
async fn status_stage_commit_branches_and_log_with_the_real_git() {
    let a = Agent::start(&[]);

    // No repository: said so, and the routes that need one say so too.
    let st = get(&a, "/git/status").await;
    assert_eq!(st.status, 200, "{}", st.text());
    assert_eq!(st.json()["repository"], false);
    let r = get(&a, "/git/diff").await;
    assert_eq!((r.status, r.code().as_str()), (409, "not_a_repository"));

    let r = post(&a, "/git/init", json!(null)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = post(&a, "/git/init", json!(null)).await;
    assert_eq!((r.status, r.code().as_str()), (409, "already_exists"));
    git(&a, &["config", "user.name", "Ada Tester"]);
    git(&a, &["config", "user.email", "ada@example.invalid"]);

    // Untracked files show; the agent's own state never does.
    write(&a, "src/lib.rs", "pub fn one() -> u32 {\n    1\n}\n");
    write(&a, "-A", "a file whose name looks like an option\n");
    let st = get(&a, "/git/status").await.json();
    assert_eq!(st["repository"], true);
    let paths: Vec<&str> = st["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"src/"), "{st}");
    assert!(paths.contains(&"-A"), "{st}");
    assert!(!paths.iter().any(|p| p.starts_with(".dispatch")), "{st}");

    // Stage: paths are paths, never options ("-A" stages only that file).
    let r = post(&a, "/git/stage", json!({"paths": ["-A"]})).await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(git(&a, &["diff", "--cached", "--name-only"]), "-A");
    let r = post(&a, "/git/stage", json!({"paths": ["../outside"]})).await;
    assert_eq!((r.status, r.code().as_str()), (400, "bad_path"));
    let r = post(&a, "/git/stage", json!({"paths": ["src/lib.rs"]})).await;
    assert_eq!(r.status, 204, "{}", r.text());

    // The staged diff before the first commit, then unstage one file.
    let d = get(&a, "/git/diff?staged=1").await;
    assert_eq!(d.status, 200);
    assert!(d.text().contains("+pub fn one() -> u32 {"), "{}", d.text());
    let r = post(&a, "/git/unstage", json!({"paths": ["-A"]})).await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(git(&a, &["diff", "--cached", "--name-only"]), "src/lib.rs");

    // Commit: the message goes in as given, the reply names the commit.
    let r = post(
        &a,
        "/git/commit",
        json!({"message": "--amend first\n\nbody"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let sha = r.json()["commit"].as_str().unwrap().to_owned();
    assert_eq!(git(&a, &["rev-parse", "HEAD"]), sha);
    assert_eq!(git(&a, &["log", "-1", "--format=%s"]), "--amend first");
    let r = post(&a, "/git/commit", json!({"message": "   "})).await;
    assert_eq!(r.status, 400);

    // Work tree diff, staged diff, unstage with a HEAD.
    write(&a, "src/lib.rs", "pub fn one() -> u32 {\n    2\n}\n");
    let d = get(&a, "/git/diff").await.text();
    assert!(d.contains("-    1\n+    2"), "{d}");
    assert_eq!(get(&a, "/git/diff?staged=1").await.text(), "");
    let d = get(&a, &format!("/git/diff?path={}", enc("-A"))).await;
    assert_eq!((d.status, d.text().as_str()), (200, ""));
    post(&a, "/git/stage", json!({"paths": ["src/lib.rs"]})).await;
    assert!(
        get(&a, "/git/diff?staged=1")
            .await
            .text()
            .contains("+    2")
    );
    let r = post(&a, "/git/unstage", json!({"paths": ["src/lib.rs"]})).await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(get(&a, "/git/diff?staged=1").await.text(), "");
    let st = get(&a, "/git/status").await.json();
    assert_eq!(st["head"], sha.as_str());
    let lib = st["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "src/lib.rs")
        .cloned();
    assert_eq!(
        lib,
        Some(json!({"path": "src/lib.rs", "index": ".", "worktree": "M"}))
    );

    // Nothing staged: git's refusal, as a 409.
    let r = post(&a, "/git/commit", json!({"message": "empty"})).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (409, "git_failed"),
        "{}",
        r.text()
    );

    // Branches and switching.
    git(&a, &["stash"]);
    git(&a, &["branch", "feature"]);
    let b = get(&a, "/git/branches").await.json();
    let current = b["current"].as_str().unwrap().to_owned();
    assert!(
        b["branches"]
            .as_array()
            .unwrap()
            .contains(&json!("feature")),
        "{b}"
    );
    let r = post(&a, "/git/checkout", json!({"branch": "feature"})).await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(git(&a, &["branch", "--show-current"]), "feature");
    for bad in ["--orphan", "nope", "-"] {
        let r = post(&a, "/git/checkout", json!({"branch": bad})).await;
        assert_eq!((r.status, r.code().as_str()), (404, "not_found"), "{bad}");
    }
    assert_eq!(git(&a, &["branch", "--show-current"]), "feature");
    post(&a, "/git/checkout", json!({"branch": current})).await;

    // Log and one commit's diff.
    let log = get(&a, "/git/log?limit=5").await.json();
    let c = &log["commits"][0];
    assert_eq!(c["sha"], sha.as_str());
    assert_eq!(c["author"], "Ada Tester");
    assert_eq!(c["subject"], "--amend first");
    assert!(c["timeMs"].as_i64().unwrap() > 1_600_000_000_000);
    let show = get(&a, &format!("/git/show?sha={sha}")).await;
    assert_eq!(show.status, 200);
    assert!(
        show.text().contains("+pub fn one() -> u32 {"),
        "{}",
        show.text()
    );
    let r = get(&a, "/git/show?sha=--all").await;
    assert_eq!(r.status, 400);
    let r = get(&a, "/git/show?sha=0123456789abcdef").await;
    assert_eq!((r.status, r.code().as_str()), (404, "not_found"));
}

/// Output over the bound is cut and marked, not held whole.
#[tokio::test]
async fn a_diff_longer_than_the_bound_is_cut_and_marked() {
    let a = Agent::start(&["--max-git-output-bytes", "4096"]);
    git(&a, &["init", "-q"]);
    write(&a, "big.txt", &"a line of text\n".repeat(2000));
    post(&a, "/git/stage", json!({"paths": ["big.txt"]})).await;
    let d = get(&a, "/git/diff?staged=1").await;
    assert_eq!(d.status, 200);
    assert_eq!(d.body.len(), 4096);
    assert_eq!(d.header("x-dispatch-truncated"), "1");
}
