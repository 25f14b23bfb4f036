// The Kubernetes path in Chromium: a Workspace made with kubectl, opened in
// the web UI through the gateway's kubernetes backend, a terminal echo through
// gateway to agent, suspended with kubectl (the UI shows it), opened again
// (it resumes), and out of another user's reach.
//
// Not a *.test.mjs: it needs a control plane, the chart installed, the
// operator, a gateway and the local node, which the Rust driver
// gateway/tests/kubernetes_browser.rs starts before running this file
// (scripts/test.d/60-kube-browser.sh runs that driver). It passes:
//   DISPATCH_E2E_GATEWAY_URL, DISPATCH_E2E_ALICE_KEY, DISPATCH_E2E_BOB_KEY,
//   DISPATCH_E2E_KUBECTL, DISPATCH_E2E_NAMESPACE and KUBECONFIG (admin).

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { connStates, launchBrowser, openTerminal, randomTag, shot, typeLine, until, waitForLine } from "./harness.mjs";

const need = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run this through gateway/tests/kubernetes_browser.rs (scripts/test.d/60-kube-browser.sh)`);
  return v;
};
const URL_ = need("DISPATCH_E2E_GATEWAY_URL");
const ALICE = need("DISPATCH_E2E_ALICE_KEY");
const BOB = need("DISPATCH_E2E_BOB_KEY");
const KUBECTL = need("DISPATCH_E2E_KUBECTL");
const NS = need("DISPATCH_E2E_NAMESPACE");
need("KUBECONFIG");
const WS = `k8s-${randomTag()}`;

function kubectl(args, input) {
  const r = spawnSync(KUBECTL, ["-n", NS, ...args], { input, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`kubectl ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

/** The phase badge of workspace `name` in the list (after a fresh load of it). */
async function listedPhase(page, name) {
  await page.goto(`${URL_}/`);
  await page.getByRole("heading", { name: "Workspaces" }).waitFor();
  const badge = page.locator(`a[aria-label="Open workspace ${name}"] .phase`);
  if ((await badge.count()) === 0) return null;
  return (await badge.innerText()).trim();
}

describe("kubernetes: kubectl apply to a browser terminal", () => {
  let browser;
  let page;
  before(async () => {
    browser = await launchBrowser();
    const ctx = await browser.newContext({ viewport: { width: 1200, height: 760 } });
    page = await ctx.newPage();
  });
  after(async () => {
    await browser?.close();
  });

  test("a Workspace applied with kubectl is listed for its owner and runs", async () => {
    await page.goto(`${URL_}/login?key=${encodeURIComponent(ALICE)}`);
    await page.getByRole("heading", { name: "Workspaces" }).waitFor();
    // Applied while the list is open: the list shows it and follows it to
    // Running by itself, without a reload.
    kubectl(["apply", "-f", "-"], `apiVersion: dispatch.dev/v1alpha1\nkind: Workspace\nmetadata: {name: ${WS}}\nspec: {owner: alice, storage: {size: 1Gi}}\n`);
    const badge = page.locator(`a[aria-label="Open workspace ${WS}"] .phase`);
    await badge.filter({ hasText: /^Running$/ }).waitFor({ timeout: 90_000 });
    await shot(page, "k8s-01-listed-running");
  });

  test("opening it gives a terminal whose echo comes back through gateway and agent", async () => {
    await page.getByRole("link", { name: `Open workspace ${WS}` }).click();
    await until(async () => (await connStates(page)).includes("open"), "the workspace connection", 60_000);
    const id = await openTerminal(page, 60_000);
    const tag = randomTag();
    await typeLine(page, `echo k8s-$((6*7))-${tag}`);
    await waitForLine(page, id, new RegExp(`^k8s-42-${tag}$`), "the echo through the gateway");
    await shot(page, "k8s-02-terminal");
  });

  test("suspended with kubectl: the connection drops and the list shows it Suspended", async () => {
    kubectl(["patch", "ws", WS, "--type=merge", "-p", '{"spec":{"suspended":true}}']);
    await until(async () => (await connStates(page)).includes("reconnecting"), "the view to notice the agent went away", 60_000);
    await shot(page, "k8s-03-view-after-suspend");
    await until(async () => (await listedPhase(page, WS)) === "Suspended", `${WS} Suspended in the list`, 60_000);
    await shot(page, "k8s-04-listed-suspended");
    // Listing it did not resume it.
    assert.equal(kubectl(["get", "ws", WS, "-o", "jsonpath={.spec.suspended}"]), "true");
  });

  test("opening it again resumes it and the terminal works", async () => {
    await page.getByRole("link", { name: `Open workspace ${WS}` }).click();
    await until(async () => (await connStates(page)).includes("open"), "the resumed workspace's connection", 90_000);
    assert.equal(kubectl(["get", "ws", WS, "-o", "jsonpath={.spec.suspended}"]), "false");
    assert.equal(kubectl(["get", "ws", WS, "-o", "jsonpath={.status.phase}"]), "Running");
    const id = await openTerminal(page, 60_000);
    const tag = randomTag();
    await typeLine(page, `echo resumed-$((2+3))-${tag}`);
    await waitForLine(page, id, new RegExp(`^resumed-5-${tag}$`), "the echo after resuming");
    await shot(page, "k8s-05-resumed");
    assert.equal(await listedPhase(page, WS), "Running");
  });

  test("another user neither sees nor reaches it", async () => {
    const c = await browser.newContext();
    const p = await c.newPage();
    await p.goto(`${URL_}/login?key=${encodeURIComponent(BOB)}`);
    await p.getByRole("heading", { name: "Workspaces" }).waitFor();
    const list = await p.evaluate(() => fetch("/api/workspaces").then((r) => r.json()));
    assert.deepEqual(list, []);
    await p.goto(`${URL_}/#/w/${WS}`);
    await p.getByTestId("workspace-missing").waitFor();
    const statuses = await p.evaluate(async (ws) => {
      const open = await fetch(`/api/workspaces/${ws}/open`, { method: "POST" });
      const sessions = await fetch(`/api/workspaces/${ws}/sessions`);
      return [open.status, sessions.status];
    }, WS);
    assert.deepEqual(statuses, [404, 404]);
    await shot(p, "k8s-06-other-user");
    await c.close();
  });
});
