//! The files routes of a real agent on a real workspace: each way out of the
//! workspace is tried and refused (including a symlink made from the
//! workspace's own terminal), and each operation does what it says.

mod common;
mod files_common;

use common::Agent;
use files_common::{Reply, bytes, empty, enc, generated, request};
use serde_json::json;

const AUTH: (&str, &str) = ("authorization", "Bearer test-token-0123456789");

async fn get(a: &Agent, path: &str) -> Reply {
    request(&a.addr, "GET", path, &[AUTH], empty()).await
}

async fn put(a: &Agent, rel: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut h = vec![AUTH];
    h.extend_from_slice(headers);
    let path = format!("/files/content?path={}", enc(rel));
    request(&a.addr, "PUT", &path, &h, bytes(body.to_vec())).await
}

async fn call(a: &Agent, method: &str, path: &str, body: serde_json::Value) -> Reply {
    request(
        &a.addr,
        method,
        path,
        &[AUTH, ("content-type", "application/json")],
        bytes(body.to_string()),
    )
    .await
}

/// A workspace with a file and a folder, and a folder outside it holding a
/// secret, reachable from inside by an absolute symlink, a relative one that
/// climbs out, and a hard link.
struct Fixture {
    agent: Agent,
    outside: tempfile::TempDir,
    _ws: tempfile::TempDir,
}

fn fixture(args: &[&str]) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    std::fs::create_dir_all(ws.join("src")).unwrap();
    std::fs::write(ws.join("src/main.rs"), "fn main() {}\n").unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "top secret\n").unwrap();
    std::os::unix::fs::symlink(outside.path(), ws.join("abs-link")).unwrap();
    let depth = ws.components().count();
    let climb = format!("{}{}", "../".repeat(depth), outside.path().display());
    std::os::unix::fs::symlink(&climb, ws.join("rel-link")).unwrap();
    std::os::unix::fs::symlink("src", ws.join("inner-link")).unwrap();
    // Same filesystem (both under the temp dir), so the link can be made.
    std::fs::hard_link(outside.path().join("secret"), ws.join("hard-link")).unwrap();
    Fixture {
        agent: Agent::start_in(&ws, args),
        outside,
        _ws: tmp,
    }
}

fn secret(f: &Fixture) -> String {
    std::fs::read_to_string(f.outside.path().join("secret")).unwrap()
}

fn assert_refused(r: &Reply, status: u16, code: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text());
    assert_eq!(r.code(), code, "{what}: {}", r.text());
}

#[tokio::test]
async fn every_way_out_of_the_workspace_is_refused() {
    let f = fixture(&[]);
    let a = &f.agent;

    // Shapes refused before the disk is touched: 400 bad_path.
    let long = "a/".repeat(2100);
    for bad in ["../x", "src/../../x", "/etc/passwd", "a%00b", long.as_str()] {
        let q = if bad == "a%00b" {
            bad.to_owned()
        } else {
            enc(bad)
        };
        for route in [
            "/files/content?path=",
            "/files/list?path=",
            "/files/archive?path=",
        ] {
            let r = get(a, &format!("{route}{q}")).await;
            assert_refused(&r, 400, "bad_path", &format!("{route}{bad:.40}"));
        }
    }

    // Through symlinks that lead out: 403, for every operation.
    for link in ["abs-link", "rel-link"] {
        let inside = format!("{link}/secret");
        let r = get(a, &format!("/files/content?path={}", enc(&inside))).await;
        assert_refused(&r, 403, "path_outside_workspace", &inside);
        let r = get(a, &format!("/files/list?path={link}")).await;
        assert_refused(&r, 403, "path_outside_workspace", link);
        let r = get(a, &format!("/files/archive?path={link}")).await;
        assert_refused(&r, 403, "path_outside_workspace", link);
        let r = put(a, &format!("{link}/planted"), &[], b"x").await;
        assert_refused(&r, 403, "path_outside_workspace", "put through a link");
        let r = call(
            a,
            "POST",
            &format!("/files/mkdir?path={link}/d"),
            json!(null),
        )
        .await;
        assert_refused(&r, 403, "path_outside_workspace", "mkdir through a link");
        let r = call(
            a,
            "POST",
            "/files/move",
            json!({"from": "src/main.rs", "to": format!("{link}/main.rs")}),
        )
        .await;
        assert_refused(&r, 403, "path_outside_workspace", "move out");
        let r = call(
            a,
            "POST",
            "/files/move",
            json!({"from": format!("{link}/secret"), "to": "stolen"}),
        )
        .await;
        assert_refused(&r, 403, "path_outside_workspace", "move in");
        let r = call(
            a,
            "DELETE",
            &format!("/files?path={link}/secret"),
            json!(null),
        )
        .await;
        assert_refused(&r, 403, "path_outside_workspace", "delete through a link");
    }
    assert!(!f.outside.path().join("planted").exists());
    assert!(!f.outside.path().join("d").exists());
    assert!(!f.outside.path().join("main.rs").exists());
    assert_eq!(secret(&f), "top secret\n");

    // A symlink that stays inside is followed.
    let r = get(a, "/files/content?path=inner-link/main.rs").await;
    assert_eq!((r.status, r.text().as_str()), (200, "fn main() {}\n"));

    // The listing shows the links as links, without following them.
    let r = get(a, "/files/list?path=").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let kinds: Vec<(String, String)> = r.json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().into(),
                e["kind"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        kinds.contains(&("abs-link".into(), "symlink".into())),
        "{kinds:?}"
    );
    assert!(kinds.contains(&("src".into(), "dir".into())), "{kinds:?}");

    // A hard link to a file outside: a write replaces the name in the
    // workspace and never writes through to the file outside.
    let r = put(a, "hard-link", &[], b"replaced\n").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(secret(&f), "top secret\n");
    assert_eq!(
        std::fs::read_to_string(a.workspace.join("hard-link")).unwrap(),
        "replaced\n"
    );

    // Writing onto a symlink's own name is refused (it would replace the link).
    let r = put(a, "inner-link", &[], b"x").await;
    assert_refused(&r, 409, "wrong_kind", "put onto a symlink");

    // The archive of the whole workspace carries the links as links, never
    // what lies outside.
    let r = get(a, "/files/archive?path=").await;
    assert_eq!(r.status, 200);
    let mut ar = tar::Archive::new(&r.body[..]);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().display().to_string();
        let mut content = String::new();
        let _ = std::io::Read::read_to_string(&mut e, &mut content);
        assert!(!p.contains("secret"), "{p} is in the archive");
        if p.ends_with("hard-link") {
            assert_eq!(content, "replaced\n");
        }
    }

    // Deleting a link deletes the link; a recursive delete of a folder
    // holding one leaves the target alone.
    std::fs::create_dir(a.workspace.join("holder")).unwrap();
    std::os::unix::fs::symlink(f.outside.path(), a.workspace.join("holder/link")).unwrap();
    let r = call(a, "DELETE", "/files?path=holder&recursive=1", json!(null)).await;
    assert_eq!(r.status, 204, "{}", r.text());
    let r = call(a, "DELETE", "/files?path=abs-link", json!(null)).await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(!a.workspace.join("abs-link").exists());
    assert_eq!(secret(&f), "top secret\n");

    // The root itself cannot be deleted or moved; the agent's state is read-only.
    let r = call(a, "DELETE", "/files?path=&recursive=1", json!(null)).await;
    assert_refused(&r, 403, "forbidden", "delete the root");
    let r = put(a, ".dispatch/agent.db", &[], b"x").await;
    assert_refused(&r, 403, "forbidden", "write the agent's state");

    // The agent's state is not the user's work: the root's listing and
    // archive leave it out; it stays readable by its path, and a folder of
    // that name deeper down is the user's own.
    assert!(a.workspace.join(".dispatch/agent.db").exists());
    std::fs::create_dir_all(a.workspace.join("src/.dispatch")).unwrap();
    let names = |r: &Reply| -> Vec<String> {
        r.json()["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let root = names(&get(a, "/files/list?path=").await);
    assert!(root.contains(&"src".to_owned()), "{root:?}");
    assert!(!root.contains(&".dispatch".to_owned()), "{root:?}");
    let state = names(&get(a, "/files/list?path=.dispatch").await);
    assert!(state.contains(&"agent.db".to_owned()), "{state:?}");
    let src = names(&get(a, "/files/list?path=src").await);
    assert!(src.contains(&".dispatch".to_owned()), "{src:?}");
    let r = get(a, "/files/archive?path=").await;
    assert_eq!(r.status, 200);
    let paths: Vec<String> = tar::Archive::new(&r.body[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(
        paths.iter().any(|p| p.contains("src/.dispatch")),
        "{paths:?}"
    );
    assert!(
        !paths.iter().any(|p| p.contains("agent.db")),
        "the archive holds the agent's state: {paths:?}"
    );

    // Without the token: 401 and nothing happens.
    let r = request(&a.addr, "PUT", "/files/content?path=nope", &[], bytes("x")).await;
    assert_eq!(r.status, 401);
    assert!(!a.workspace.join("nope").exists());
}

/// A symlink made from the workspace's own terminal, a moment before the
/// request, is refused just the same: the check is the kernel's, at open.
#[tokio::test]
async fn a_symlink_made_in_the_terminal_is_refused_too() {
    let f = fixture(&[]);
    let a = &f.agent;
    let mut c = a.connect().await;
    let id = c.start(json!({})).await;
    let target = f.outside.path().display().to_string();
    c.write(
        &id,
        &format!("ln -s '{target}' from-term && echo made-$((40+2))\r"),
    )
    .await;
    c.wait_output(&id, "made-42").await;
    assert!(a.workspace.join("from-term").is_symlink());

    let r = get(a, "/files/content?path=from-term/secret").await;
    assert_refused(&r, 403, "path_outside_workspace", "terminal link");
    let r = put(a, "from-term/secret", &[], b"overwritten").await;
    assert_refused(&r, 403, "path_outside_workspace", "terminal link write");
    assert_eq!(secret(&f), "top secret\n");
}

#[tokio::test]
async fn files_are_listed_read_written_moved_and_deleted() {
    let f = fixture(&["--max-upload-bytes", "4096", "--max-list-entries", "3"]);
    let a = &f.agent;

    // Create only: the first succeeds, the second is 409.
    let r = put(a, "notes.md", &[("if-none-match", "*")], b"# one\n").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v1 = r.json()["etag"].as_str().unwrap().to_owned();
    assert_eq!(r.header("etag"), v1);
    let r = put(a, "notes.md", &[("if-none-match", "*")], b"# two\n").await;
    assert_refused(&r, 409, "already_exists", "create over a file");

    // Read: the bytes, the same version, a text type.
    let r = get(a, "/files/content?path=notes.md").await;
    assert_eq!((r.status, r.text().as_str()), (200, "# one\n"));
    assert_eq!(r.header("etag"), v1);
    assert_eq!(r.header("content-type"), "text/plain; charset=utf-8");
    assert_eq!(r.header("content-length"), "6");
    let r = get(a, "/files/content?path=notes.md&download=1").await;
    assert!(
        r.header("content-disposition")
            .starts_with("attachment; filename=\"notes.md\"")
    );

    // Save over the version read: ok. Save over a stale version: 412 with
    // the current one, and the file keeps the newer content.
    let r = put(a, "notes.md", &[("if-match", &v1)], b"# two\n").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v2 = r.json()["etag"].as_str().unwrap().to_owned();
    assert_ne!(v1, v2);
    let r = put(a, "notes.md", &[("if-match", &v1)], b"# stale\n").await;
    assert_refused(&r, 412, "conflict", "stale save");
    assert_eq!(r.json()["current"]["etag"], v2.as_str());
    assert_eq!(
        std::fs::read_to_string(a.workspace.join("notes.md")).unwrap(),
        "# two\n"
    );
    // Changed by someone else in place (the terminal, an editor): 412 too.
    std::fs::write(a.workspace.join("notes.md"), "# three, elsewhere\n").unwrap();
    let r = put(a, "notes.md", &[("if-match", &v2)], b"# mine\n").await;
    assert_refused(&r, 412, "conflict", "changed in place");

    // Over the upload limit: 413, nothing written, no temp file left.
    let big = vec![b'x'; 5000];
    let r = put(a, "big.bin", &[], &big).await;
    assert_refused(&r, 413, "too_large", "upload over the limit");
    let r = request(
        &a.addr,
        "PUT",
        "/files/content?path=big.bin",
        &[AUTH, ("transfer-encoding", "chunked")],
        generated(5000),
    )
    .await;
    assert_refused(&r, 413, "too_large", "chunked upload over the limit");
    assert!(!a.workspace.join("big.bin").exists());
    let leftovers: Vec<_> = std::fs::read_dir(&a.workspace)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".dispatch-upload")
        })
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");

    // Directories: create, refuse twice, move into, list (bounded), delete.
    let r = call(a, "POST", "/files/mkdir?path=docs", json!(null)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = call(a, "POST", "/files/mkdir?path=docs", json!(null)).await;
    assert_refused(&r, 409, "already_exists", "mkdir twice");
    let r = call(
        a,
        "POST",
        "/files/move",
        json!({"from": "notes.md", "to": "docs/notes.md"}),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let r = call(
        a,
        "POST",
        "/files/move",
        json!({"from": "src/main.rs", "to": "docs/notes.md"}),
    )
    .await;
    assert_refused(&r, 409, "already_exists", "move over a file");
    let r = call(a, "POST", "/files/move", json!({"from": "gone", "to": "x"})).await;
    assert_refused(&r, 404, "not_found", "move a missing file");
    let r = get(a, "/files/content?path=docs").await;
    assert_refused(&r, 409, "wrong_kind", "read a directory");
    let r = get(a, "/files/list?path=").await;
    let list = r.json();
    assert_eq!(list["entries"].as_array().unwrap().len(), 3, "{list}");
    assert_eq!(list["truncated"], true);
    let r = get(a, "/files/list?path=docs").await;
    assert_eq!(r.json()["entries"][0]["name"], "notes.md");
    assert_eq!(r.json()["entries"][0]["kind"], "file");
    let r = call(a, "DELETE", "/files?path=docs", json!(null)).await;
    assert_refused(&r, 409, "wrong_kind", "delete a full directory");
    let r = call(a, "DELETE", "/files?path=docs&recursive=1", json!(null)).await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(!a.workspace.join("docs").exists());
    let r = call(a, "DELETE", "/files?path=docs", json!(null)).await;
    assert_refused(&r, 404, "not_found", "delete twice");

    // A folder as a tar stream: named after the folder, with its files.
    std::fs::create_dir_all(a.workspace.join("src/deep")).unwrap();
    std::fs::write(a.workspace.join("src/deep/data.bin"), [0u8, 1, 2, 255]).unwrap();
    let r = get(a, "/files/archive?path=src").await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-disposition")
            .contains("filename=\"src.tar\"")
    );
    let mut got = Vec::new();
    for e in tar::Archive::new(&r.body[..]).entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().display().to_string();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        got.push((p, data));
    }
    assert!(
        got.contains(&("src/main.rs".into(), b"fn main() {}\n".to_vec())),
        "{got:?}"
    );
    assert!(
        got.contains(&("src/deep/data.bin".into(), vec![0, 1, 2, 255])),
        "{got:?}"
    );
    let r = get(a, "/files/content?path=src/deep/data.bin").await;
    assert_eq!(r.header("content-type"), "application/octet-stream");
}

/// Peak resident memory of a process, from /proc (kB).
fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// 512 MiB up and down: the agent's peak memory grows by far less than the
/// file (it streams to and from disk), and the bytes come back intact.
#[tokio::test]
async fn a_large_upload_and_download_stream_through_the_agent() {
    const SIZE: u64 = 512 << 20;
    let f = fixture(&[]);
    let a = &f.agent;
    let pid = a.child.id();
    // Warm up the routes so the baseline includes their one-time costs.
    let _ = put(a, "warm", &[], b"x").await;
    let _ = get(a, "/files/content?path=warm").await;
    let before = peak_rss_kb(pid);

    let len = SIZE.to_string();
    let r = request(
        &a.addr,
        "PUT",
        "/files/content?path=big.bin",
        &[AUTH, ("content-length", &len)],
        generated(SIZE),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        std::fs::metadata(a.workspace.join("big.bin"))
            .unwrap()
            .len(),
        SIZE
    );

    let (status, headers, mut body) = files_common::request_streamed(
        &a.addr,
        "GET",
        "/files/content?path=big.bin",
        &[AUTH],
        empty(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-length"], len.as_str());
    let mut at = 0u64;
    use http_body_util::BodyExt;
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame.unwrap().into_data() {
            for (i, b) in d.iter().enumerate() {
                assert_eq!(*b, ((at + i as u64) % 251) as u8, "byte {}", at + i as u64);
            }
            at += d.len() as u64;
        }
    }
    assert_eq!(at, SIZE);

    let grew_mb = peak_rss_kb(pid).saturating_sub(before) / 1024;
    println!(
        "agent peak RSS grew by {grew_mb} MiB for a {} MiB upload and download",
        SIZE >> 20
    );
    assert!(
        grew_mb < 64,
        "the agent's peak memory grew by {grew_mb} MiB"
    );
}
