// Cold start on the real node, images present: for each of N Workspaces, one at a time,
//   apply -> Running   (the Workspace's status.phase, seen on a watch of the apiserver)
//   apply -> prompt    (Chromium, logged in to the gateway, opens the workspace's WebSocket
//                       through the gateway, starts a terminal and gets its first output)
// and prints p50/p90/max of both, plus where the time goes for the median workspace (the
// pod's own timestamps: scheduled, sandbox ready, container started, ready).
//
// Run by scripts/bench-cold-start.sh, which starts the node and installs the chart. Env:
//   DISPATCH_BENCH_GATEWAY_URL, DISPATCH_BENCH_KEY, DISPATCH_BENCH_NAMESPACE, BENCH_COLD (20),
//   DISPATCH_BENCH_API, DISPATCH_BENCH_CA, DISPATCH_BENCH_CERT, DISPATCH_BENCH_CLIENT_KEY.

import { readFileSync } from "node:fs";
import { request } from "node:https";
import { performance } from "node:perf_hooks";
import { launchBrowser, randomTag } from "./harness.mjs";

const env = (n) => {
  const v = process.env[n];
  if (!v) throw new Error(`${n} is not set: run scripts/bench-cold-start.sh`);
  return v;
};
const URL_ = env("DISPATCH_BENCH_GATEWAY_URL");
const KEY = env("DISPATCH_BENCH_KEY");
const NS = env("DISPATCH_BENCH_NAMESPACE");
const API = new URL(env("DISPATCH_BENCH_API"));
const TLS = { ca: readFileSync(env("DISPATCH_BENCH_CA")), cert: readFileSync(env("DISPATCH_BENCH_CERT")), key: readFileSync(env("DISPATCH_BENCH_CLIENT_KEY")) };
const N = Number(process.env.BENCH_COLD ?? 20);
// Empty: the default StorageClass (dynamic provisioning); else a class of pre-made volumes.
const STORAGE_CLASS = process.env.DISPATCH_BENCH_STORAGE_CLASS ?? "";
const WS_PATH = `/apis/dispatch.dev/v1alpha1/namespaces/${NS}/workspaces`;

function kube(method, path, body) {
  return new Promise((resolve, reject) => {
    const req = request({ host: API.hostname, port: API.port, method, path, ...TLS, headers: { "content-type": "application/json" } }, (res) => {
      let data = "";
      res.on("data", (d) => (data += d));
      res.on("end", () => (res.statusCode < 300 ? resolve(JSON.parse(data)) : reject(new Error(`${method} ${path}: ${res.statusCode} ${data}`))));
    });
    req.on("error", reject);
    req.end(body ? JSON.stringify(body) : undefined);
  });
}

/** Watches `path` on the apiserver; calls onEvent(event, t) for each event, `t` when its
 * chunk arrived (performance.now()). */
function watchEvents(path, onEvent) {
  const req = request({ host: API.hostname, port: API.port, path: `${path}?watch=1`, ...TLS }, (res) => {
    let buf = "";
    res.on("data", (d) => {
      const t = performance.now();
      buf += d;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const ev = JSON.parse(buf.slice(0, i));
        buf = buf.slice(i + 1);
        onEvent(ev, t);
      }
    });
  });
  req.end();
  return req;
}

/** Watches the namespace's Workspaces; calls onRunning(name, t) once per name. */
function watchRunning(onRunning) {
  const seen = new Set();
  return watchEvents(WS_PATH, (ev, t) => {
    const name = ev.object?.metadata?.name;
    if (ev.object?.status?.phase === "Running" && !seen.has(name)) {
      seen.add(name);
      onRunning(name, t);
    }
  });
}

/** Watches the namespace's pods; records, per pod, when this process first saw each step
 * (ms, on the same clock as the applies: the pod's own timestamps have 1 s resolution). */
function watchPods(steps) {
  return watchEvents(`/api/v1/namespaces/${NS}/pods`, (ev, t) => {
    const pod = ev.object;
    const name = pod?.metadata?.name;
    if (!name) return;
    const seen = steps.get(name) ?? {};
    const mark = (step, cond) => {
      if (cond && seen[step] === undefined) seen[step] = t;
    };
    const cond = (type) => pod.status?.conditions?.some((c) => c.type === type && c.status === "True");
    mark("created", true);
    mark("scheduled", !!pod.spec?.nodeName);
    mark("sandbox", cond("PodReadyToStartContainers"));
    mark("started", !!pod.status?.containerStatuses?.[0]?.state?.running);
    mark("ready", cond("Ready"));
    steps.set(name, seen);
  });
}
const podSteps = new Map();
const podWatch = watchPods(podSteps);
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};
const ms = (x) => `${Math.round(x)} ms`;

const browser = await launchBrowser();
const page = await (await browser.newContext()).newPage();
await page.goto(`${URL_}/login?key=${encodeURIComponent(KEY)}`);
await page.getByRole("heading", { name: "Workspaces" }).waitFor();

const running = new Map();
const waiters = new Map();
const watch = watchRunning((name, t) => {
  running.set(name, t);
  waiters.get(name)?.();
});

const results = [];
const tag = randomTag();
// One more than measured: the first warms the operator's, the gateway's and the kubelet's caches.
for (let i = 0; i <= N; i++) {
  const name = `cold-${tag}-${i}`;
  const runningSeen = new Promise((r) => waiters.set(name, r));
  const t0 = performance.now();
  await kube("POST", WS_PATH, { apiVersion: "dispatch.dev/v1alpha1", kind: "Workspace", metadata: { name }, spec: { owner: "me", storage: { size: "1Gi", ...(STORAGE_CLASS ? { storageClassName: STORAGE_CLASS } : {}) } } });
  // In the page: open the workspace's WebSocket through the gateway (retrying while the
  // gateway does not know it yet), start a terminal, resolve on its first output frame.
  const promptAfter = await page.evaluate(async (name) => {
    const start = performance.now();
    for (;;) {
      const ok = await new Promise((resolve) => {
        const ws = new WebSocket(`${location.origin.replace(/^http/, "ws")}/api/workspaces/${name}/ws`);
        ws.binaryType = "arraybuffer";
        ws.onopen = () => ws.send(JSON.stringify({ type: "terminal.start", cols: 80, rows: 24 }));
        ws.onmessage = (m) => {
          if (typeof m.data !== "string") {
            ws.close();
            resolve(true);
          }
        };
        ws.onerror = () => resolve(false);
        ws.onclose = () => resolve(false);
      });
      if (ok) return performance.now() - start;
      if (performance.now() - start > 120_000) throw new Error(`no prompt from ${name} in 120 s`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }, name);
  const tPrompt = performance.now();
  await runningSeen;
  if (i === 0) {
    await kube("DELETE", `${WS_PATH}/${name}`);
    continue;
  }
  const pod = await kube("GET", `/api/v1/namespaces/${NS}/pods/ws-${name}`);
  const cond = (type) => Date.parse(pod.status.conditions.find((c) => c.type === type)?.lastTransitionTime ?? 0);
  const created = Date.parse(pod.metadata.creationTimestamp);
  results.push({
    name,
    running: running.get(name) - t0,
    prompt: tPrompt - t0,
    inPage: promptAfter,
    // Second-resolution timestamps of the apiserver: a rough split only.
    podScheduledS: (cond("PodScheduled") - created) / 1000,
    sandboxS: (cond("PodReadyToStartContainers") - created) / 1000,
    startedS: (Date.parse(pod.status.containerStatuses?.[0]?.state?.running?.startedAt ?? 0) - created) / 1000,
    readyS: (cond("Ready") - created) / 1000,
    steps: Object.fromEntries(Object.entries(podSteps.get(`ws-${name}`) ?? {}).map(([k, v]) => [k, v - t0])),
  });
  process.stderr.write(`${name}: Running ${ms(results.at(-1).running)}, prompt ${ms(results.at(-1).prompt)}\n`);
  // One workspace at a time: the previous one is gone before the next is applied (the node
  // has 2 cores, and each workspace requests CPU).
  await kube("DELETE", `${WS_PATH}/${name}`);
  for (;;) {
    try {
      await kube("GET", `/api/v1/namespaces/${NS}/pods/ws-${name}`);
    } catch {
      break;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
watch.destroy();
podWatch.destroy();
await browser.close();

const run = results.map((r) => r.running);
const prompt = results.map((r) => r.prompt);
const label = process.env.DISPATCH_BENCH_LABEL || (STORAGE_CLASS ? `volumes pre-made (${STORAGE_CLASS})` : "volumes provisioned (default class)");
console.log(`${label}:`);
console.log(`cold start apply -> Running   p50 ${ms(pct(run, 50))}, p90 ${ms(pct(run, 90))}, max ${ms(Math.max(...run))} over ${results.length}`);
console.log(`cold start apply -> prompt    p50 ${ms(pct(prompt, 50))}, p90 ${ms(pct(prompt, 90))}, max ${ms(Math.max(...prompt))} over ${results.length} (goal p50 <= 1500 ms)`);
const median = [...results].sort((a, b) => a.prompt - b.prompt)[Math.floor(results.length / 2)];
console.log(`median workspace, seconds after the pod was created: scheduled ${median.podScheduledS}, sandbox ready ${median.sandboxS}, container started ${median.startedS}, ready ${median.readyS}`);
// Where the time goes, on this process's clock (median over the workspaces of each step's
// time after the apply): pod created by the operator, bound to the node, sandbox (pause
// container and network) ready, container running, Ready (readiness probe), Workspace Running.
const stepNames = ["created", "scheduled", "sandbox", "started", "ready"];
const medians = stepNames.map((st) => `${st} ${ms(pct(results.map((r) => r.steps[st] ?? NaN).filter((x) => !Number.isNaN(x)), 50))}`);
console.log(`median after the apply: ${medians.join(", ")}, Running ${ms(pct(run, 50))}, prompt ${ms(pct(prompt, 50))}`);
