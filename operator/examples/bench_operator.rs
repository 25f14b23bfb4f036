//! Benchmark of the operator on a real control plane (see scripts/bench-operator.sh).
//!
//! 1. Floor: a client creates, for N Workspaces, the Workspace and the same five
//!    children the operator would make, plus the status, directly.
//! 2. Operator: the same client creates N Workspaces; time until every one has
//!    its children and a status (phase Starting: no node runs their Pods).
//! 3. The operator's RSS once synced.
//! 4. Cold start: with the local node, apply one Workspace at a time and time
//!    apply -> phase Running; p50 and p90.
//!
//! The floor and the operator take turns for BENCH_ROUNDS rounds, each on a
//! fresh control plane, and the best round of each counts (the machine is
//! shared); CPU seconds of every process and the apiserver's request counts
//! are printed for the best rounds.
//!
//! Env: BENCH_N (1000), BENCH_CONCURRENCY (16), BENCH_ROUNDS (2), BENCH_COLD (15),
//! BENCH_APISERVER_PROFILE (a path prefix: the apiserver's CPU profile of each
//! phase is written there), DISPATCH_OPERATOR_BIN, DISPATCH_AGENT_BIN.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dispatch_api::crd::{Workspace, WorkspaceSpec};
use dispatch_kube_harness::{ControlPlane, ControlPlaneOptions, LocalNode, LocalNodeOptions};
use dispatch_operator::config::WorkspaceDefaults;
use dispatch_operator::desired::{desired, new_token};
use dispatch_operator::status::{Observed, compute};
use futures_util::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ws(name: &str, ns: &str, owner: &str) -> Workspace {
    let mut w = Workspace::new(
        name,
        WorkspaceSpec {
            owner: owner.into(),
            ..Default::default()
        },
    );
    w.metadata.namespace = Some(ns.into());
    w
}

async fn create_directly(client: Client, ns: String, name: String) -> anyhow::Result<()> {
    let pp = PostParams::default();
    let wss: Api<Workspace> = Api::namespaced(client.clone(), &ns);
    let created = wss.create(&pp, &ws(&name, &ns, "bench")).await?;
    let c = desired(&created, &WorkspaceDefaults::default(), &new_token());
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&pp, &c.secret)
        .await?;
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
        .create(&pp, &c.pvc)
        .await?;
    Api::<Service>::namespaced(client.clone(), &ns)
        .create(&pp, &c.service)
        .await?;
    Api::<NetworkPolicy>::namespaced(client.clone(), &ns)
        .create(&pp, &c.network_policy)
        .await?;
    let pod = Api::<Pod>::namespaced(client.clone(), &ns)
        .create(
            &pp,
            c.pod.as_ref().ok_or_else(|| anyhow::anyhow!("no pod"))?,
        )
        .await?;
    let obs = Observed {
        name: &name,
        generation: created.metadata.generation,
        deleting: false,
        suspended: false,
        invalid: None,
        pod: Some(&pod),
        problems: &[],
        volume: None,
    };
    let status = compute(&obs, None, Timestamp::now());
    let body = serde_json::json!({"status": status});
    wss.patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
        .await?;
    Ok(())
}

async fn create_many(
    client: &Client,
    ns: &str,
    n: usize,
    conc: usize,
    direct: bool,
) -> anyhow::Result<()> {
    stream::iter(0..n)
        .map(|i| {
            let (client, ns) = (client.clone(), ns.to_string());
            async move {
                let name = format!("b{i:04}");
                if direct {
                    create_directly(client, ns, name).await
                } else {
                    let api: Api<Workspace> = Api::namespaced(client, &ns);
                    api.create(&PostParams::default(), &ws(&name, &ns, "bench"))
                        .await
                        .map(|_| ())
                        .map_err(Into::into)
                }
            }
        })
        .buffer_unordered(conc)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

async fn count<K>(client: &Client, ns: &str) -> anyhow::Result<usize>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Ok(Api::<K>::namespaced(client.clone(), ns)
        .list_metadata(&ListParams::default())
        .await?
        .items
        .len())
}

async fn all_children(client: &Client, ns: &str, n: usize) -> anyhow::Result<bool> {
    Ok(count::<Secret>(client, ns).await? >= n
        && count::<PersistentVolumeClaim>(client, ns).await? >= n
        && count::<Service>(client, ns).await? >= n
        && count::<NetworkPolicy>(client, ns).await? >= n
        && count::<Pod>(client, ns).await? >= n)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The apiserver's request counts by verb and resource (its `/metrics`).
fn requests(cp: &ControlPlane) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    let Ok(out) = cp.kubectl().args(["get", "--raw", "/metrics"]).output() else {
        return m;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |k: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{k}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        let sub = label("subresource");
        let res = if sub.is_empty() {
            label("resource")
        } else {
            format!("{}/{sub}", label("resource"))
        };
        let v: f64 = value.trim().parse().unwrap_or(0.0);
        *m.entry(format!("{} {res}", label("verb"))).or_insert(0.0) += v;
    }
    m
}

/// Requests made between two snapshots, per workspace, most first.
fn print_requests(
    phase: &str,
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
    n: usize,
) {
    let mut d: Vec<(String, f64)> = after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(k, v)| *v > 0.0 && !k.starts_with("WATCH") && !k.contains("leases"))
        .collect();
    d.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = d.iter().map(|(_, v)| v).sum();
    println!(
        "{phase}: {:.2} apiserver requests per workspace (leases and watches aside)",
        total / n as f64
    );
    for (k, v) in d.iter().filter(|(_, v)| *v >= n as f64 / 20.0) {
        println!("    {:<40} {:>6.2}", k, v / n as f64);
    }
}

type Requests = BTreeMap<String, f64>;
type CpuTimes = Vec<(String, f64)>;

/// One side's timing, with the apiserver's request counts and every process's
/// CPU seconds before and after.
struct Phase {
    took: Duration,
    requests: (Requests, Requests),
    cpu: (CpuTimes, CpuTimes),
}

/// The floor: the bench creates every object and the status itself.
async fn floor_round(n: usize, conc: usize) -> anyhow::Result<Phase> {
    let cp = control_plane("bench-floor").await?;
    let client = cp.client();
    let r0 = requests(&cp);
    let cpu0 = cpu_times(&cp, 0);
    let profile = start_profile(&cp, "floor", 12)?;
    let t = Instant::now();
    create_many(&client, "bench-floor", n, conc, true).await?;
    let took = t.elapsed();
    let (r1, cpu1) = (requests(&cp), cpu_times(&cp, 0));
    if let Some(mut p) = profile {
        p.wait()?;
    }
    Ok(Phase {
        took,
        requests: (r0, r1),
        cpu: (cpu0, cpu1),
    })
}

/// The operator's round; its control plane and process stay up for what follows.
struct OperatorRound {
    cp: ControlPlane,
    process: std::process::Child,
    phase: Phase,
    rss_idle: u64,
    rss_after: u64,
    /// Request counts 3 s after sync.
    settled: Requests,
}

async fn operator_round(
    n: usize,
    conc: usize,
    operator_bin: &std::path::Path,
) -> anyhow::Result<OperatorRound> {
    let cp = control_plane("bench-op").await?;
    let client = cp.client();
    let mut op = Command::new(operator_bin)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--namespace",
            "bench-op",
            "--concurrency",
            &conc.to_string(),
        ])
        .env("KUBECONFIG", cp.kubeconfig_path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()?;
    let pid = op.id();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(
            op.stdout
                .take()
                .ok_or_else(|| anyhow::anyhow!("operator stdout"))?,
        ),
        &mut line,
    )?;
    let metrics_url = format!(
        "http://{}/metrics",
        line.trim()
            .strip_prefix("DISPATCH_OPERATOR_LISTENING ")
            .ok_or_else(|| anyhow::anyhow!("operator said {line:?}"))?
    );
    // Started and leading before the clock runs: the Lease exists once it leads.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), "bench-op");
    while leases.get_opt("dispatch-operator").await?.is_none() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rss_idle = rss_kib(pid);
    let r0 = requests(&cp);
    let wss: Api<Workspace> = Api::namespaced(client.clone(), "bench-op");
    let cpu0 = cpu_times(&cp, pid);
    let profile = start_profile(&cp, "operator", 12)?;
    let t = Instant::now();
    create_many(&client, "bench-op", n, conc, false).await?;
    // The operator's own gauge says when it has written every status (watching
    // or listing Workspaces would load the apiserver it is using); then the
    // apiserver is asked once, inside the timing, that it is really so.
    wait_reported_starting(&metrics_url, n).await?;
    while synced(&wss).await? < n {
        anyhow::ensure!(t.elapsed() < Duration::from_secs(600), "statuses missing");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Children are in place before the operator writes a status; check once.
    while !all_children(&client, "bench-op", n).await? {
        anyhow::ensure!(t.elapsed() < Duration::from_secs(600), "children missing");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = t.elapsed();
    let cpu1 = cpu_times(&cp, pid);
    if let Some(mut p) = profile {
        p.wait()?;
    }
    let r1 = requests(&cp);
    // Let the re-reconciles the children triggered settle, then measure memory.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_after = rss_kib(pid);
    let settled = requests(&cp);
    Ok(OperatorRound {
        cp,
        process: op,
        phase: Phase {
            took,
            requests: (r0, r1),
            cpu: (cpu0, cpu1),
        },
        rss_idle,
        rss_after,
        settled,
    })
}

/// A control plane with the Workspace CRD and namespace `ns`; with
/// `BENCH_APISERVER_PROFILE` set, the apiserver serves its Go profiles.
async fn control_plane(ns: &str) -> anyhow::Result<ControlPlane> {
    let profiling = std::env::var_os("BENCH_APISERVER_PROFILE").is_some();
    let cp = ControlPlane::start_with(ControlPlaneOptions {
        extra_apiserver_args: if profiling {
            vec!["--profiling=true".into()]
        } else {
            Vec::new()
        },
        ..Default::default()
    })
    .await?;
    let crd = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/workspace.yaml");
    anyhow::ensure!(
        cp.kubectl()
            .args(["apply", "--server-side", "-f", crd])
            .status()?
            .success(),
        "CRD"
    );
    anyhow::ensure!(
        cp.kubectl()
            .args([
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/workspaces.dispatch.dev"
            ])
            .status()?
            .success(),
        "CRD established"
    );
    cp.create_namespace(ns, &[]).await?;
    Ok(cp)
}

/// With `BENCH_APISERVER_PROFILE=<prefix>`, records the apiserver's CPU profile
/// for `secs` seconds into `<prefix>.<phase>` (read it with `go tool pprof`).
fn start_profile(
    cp: &ControlPlane,
    phase: &str,
    secs: u32,
) -> anyhow::Result<Option<std::process::Child>> {
    let Some(prefix) = std::env::var_os("BENCH_APISERVER_PROFILE") else {
        return Ok(None);
    };
    let mut path = prefix;
    path.push(format!(".{phase}"));
    let out = std::fs::File::create(&path)?;
    let child = cp
        .kubectl()
        .args([
            "get",
            "--raw",
            &format!("/debug/pprof/profile?seconds={secs}"),
        ])
        .stdout(out)
        .spawn()?;
    Ok(Some(child))
}

/// How many Workspaces have a status for their generation (phase Starting:
/// no node runs their Pods).
async fn synced(api: &Api<Workspace>) -> anyhow::Result<usize> {
    let list = api.list(&ListParams::default()).await?;
    Ok(list
        .items
        .iter()
        .filter(|w| {
            w.status.as_ref().is_some_and(|s| {
                s.phase.map(|p| p.as_str()) == Some("Starting")
                    && s.observed_generation == w.metadata.generation
            })
        })
        .count())
}

/// Polls the operator's `/metrics` until its Workspaces-by-phase gauge counts
/// `n` in phase Starting (it is set after the status write returns).
async fn wait_reported_starting(url: &str, n: usize) -> anyhow::Result<()> {
    use http_body_util::{BodyExt, Empty};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let started = Instant::now();
    loop {
        let resp = client
            .request(hyper::Request::get(url).body(Empty::<hyper::body::Bytes>::new())?)
            .await?;
        let body = resp.into_body().collect().await?.to_bytes();
        let starting = String::from_utf8_lossy(&body)
            .lines()
            .find_map(|l| l.strip_prefix("dispatch_operator_workspaces{phase=\"Starting\"} "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if starting >= n as f64 {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "the operator never synced"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// CPU seconds (user + system) used so far by each control-plane process,
/// the operator (`operator` pid, 0 for none) and this benchmark.
fn cpu_times(cp: &ControlPlane, operator: u32) -> Vec<(String, f64)> {
    let mut v: Vec<(String, f64)> = cp
        .processes()
        .into_iter()
        .map(|(name, pid)| (name.to_string(), cpu_secs(&pid.to_string())))
        .collect();
    if operator != 0 {
        v.push(("dispatch-operator".into(), cpu_secs(&operator.to_string())));
    }
    v.push(("bench client".into(), cpu_secs("self")));
    v
}

fn cpu_secs(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces): utime, stime
    // are the 12th and 13th, in clock ticks (100 per second on Linux).
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn print_cpu(phase: &str, before: &[(String, f64)], after: &[(String, f64)], took: Duration) {
    let parts: Vec<String> = after
        .iter()
        .map(|(name, a)| {
            let b = before
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0.0, |(_, b)| *b);
            format!("{name} {:.1}", a - b)
        })
        .collect();
    println!(
        "{phase}: CPU seconds over {:.1} s wall: {}",
        took.as_secs_f64(),
        parts.join(", ")
    );
}

fn pctl(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n = env_usize("BENCH_N", 1000);
    let conc = env_usize("BENCH_CONCURRENCY", 16);
    let cold = env_usize("BENCH_COLD", 15);
    let operator_bin = PathBuf::from(std::env::var("DISPATCH_OPERATOR_BIN")?);
    let agent_bin = PathBuf::from(std::env::var("DISPATCH_AGENT_BIN")?);

    let rounds = env_usize("BENCH_ROUNDS", 2).max(1);

    // The two sides take turns, each on a fresh control plane, so neither pays
    // for the other's 1,000 Workspaces (the apiserver's cost per write grows
    // with what it holds); the best round of each side counts.
    let mut floors: Vec<Phase> = Vec::new();
    let mut operators: Vec<OperatorRound> = Vec::new();
    for round in 0..rounds {
        let f = floor_round(n, conc).await?;
        println!(
            "round {round}: floor {:.2} s ({n} Workspaces + 5 children + status created directly)",
            f.took.as_secs_f64()
        );
        floors.push(f);
        let mut o = operator_round(n, conc, &operator_bin).await?;
        println!(
            "round {round}: operator {:.2} s (all {n} with children and status), RSS {:.1} MiB",
            o.phase.took.as_secs_f64(),
            o.rss_after as f64 / 1024.0
        );
        if round + 1 < rounds {
            let _ = o.process.kill();
        }
        operators.push(o);
    }
    let best_floor = floors
        .iter()
        .min_by_key(|p| p.took)
        .ok_or_else(|| anyhow::anyhow!("no floor round"))?;
    let best_op = operators
        .iter()
        .min_by_key(|o| o.phase.took)
        .ok_or_else(|| anyhow::anyhow!("no operator round"))?;
    let rss_idle = operators.iter().map(|o| o.rss_idle).max().unwrap_or(0);
    let rss = operators.iter().map(|o| o.rss_after).max().unwrap_or(0);
    let (floor, with_operator) = (best_floor.took, best_op.phase.took);
    let last = operators.len() - 1;
    let cp = &operators[last].cp;
    cp.create_namespace("bench-cold", &[]).await?;
    let client = cp.client();

    // 4. Cold start with the local node (only the bench-cold namespace).
    let node = LocalNode::start(
        client.clone(),
        LocalNodeOptions {
            namespace: Some("bench-cold".into()),
            label_selector: Some("app.kubernetes.io/name=dispatch-workspace".into()),
            agent_bin: Some(agent_bin),
            ..Default::default()
        },
    )
    .await?;
    let mut op_cold = Command::new(&operator_bin)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--namespace",
            "bench-cold",
            "--no-leader-election",
        ])
        .env("KUBECONFIG", cp.kubeconfig_path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    let cold_api: Api<Workspace> = Api::namespaced(client.clone(), "bench-cold");
    // Warm the cold operator's watches with one workspace first.
    let mut times = Vec::new();
    for i in 0..=cold {
        let name = format!("c{i:02}");
        let t = Instant::now();
        cold_api
            .create(&PostParams::default(), &ws(&name, "bench-cold", "cold"))
            .await?;
        loop {
            let w = cold_api.get(&name).await?;
            if w.status.and_then(|s| s.phase).map(|p| p.as_str()) == Some("Running") {
                break;
            }
            anyhow::ensure!(t.elapsed() < Duration::from_secs(60), "{name} never ran");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if i > 0 {
            times.push(t.elapsed());
        }
    }
    times.sort();
    let _ = op_cold.kill();
    node.shutdown().await;

    let ratio = with_operator.as_secs_f64() / floor.as_secs_f64();
    println!();
    print_requests(
        "floor (best round)",
        &best_floor.requests.0,
        &best_floor.requests.1,
        n,
    );
    print_requests(
        "operator until synced (best round)",
        &best_op.phase.requests.0,
        &best_op.phase.requests.1,
        n,
    );
    print_requests(
        "operator, 3 s after sync",
        &best_op.phase.requests.1,
        &best_op.settled,
        n,
    );
    println!();
    print_cpu(
        "floor (best round)",
        &best_floor.cpu.0,
        &best_floor.cpu.1,
        floor,
    );
    print_cpu(
        "operator (best round)",
        &best_op.phase.cpu.0,
        &best_op.phase.cpu.1,
        with_operator,
    );
    println!();
    let list = |v: Vec<Duration>| {
        v.iter()
            .map(|d| format!("{:.2}", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "rounds (s): floor [{}], operator [{}]",
        list(floors.iter().map(|p| p.took).collect()),
        list(operators.iter().map(|o| o.phase.took).collect())
    );
    println!(
        "== results (N={n}, client concurrency {conc}, best of {rounds} alternating rounds) =="
    );
    println!(
        "floor (direct creates)          {:>8.2} s",
        floor.as_secs_f64()
    );
    println!(
        "operator (apply -> all synced)  {:>8.2} s",
        with_operator.as_secs_f64()
    );
    println!(
        "ratio                           {:>8.2} x   (target <= 1.3)",
        ratio
    );
    println!(
        "operator RSS before / after     {:>5.1} / {:.1} MiB, the most of any round (target <= 40)",
        rss_idle as f64 / 1024.0,
        rss as f64 / 1024.0
    );
    println!(
        "cold start apply -> Running     p50 {:.0} ms, p90 {:.0} ms, max {:.0} ms over {} (target p50 <= 1000)",
        pctl(&times, 0.5).as_secs_f64() * 1000.0,
        pctl(&times, 0.9).as_secs_f64() * 1000.0,
        times.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
        times.len()
    );
    let _ = operators[last].process.kill();
    Ok(())
}
