// Web Push in a real Chromium: the service worker of the built UI, the real
// gateway, agent and Claude Code CLI (scripted model server on loopback).
//
// What is real and what is not:
// - Real: the permission request (the CLI's), the gateway's encrypted push of
//   it to the receiver of tests/push (Python's http_ece decrypts it, the VAPID
//   JWT is verified there), the payload and its action token as the gateway
//   made them, the service worker's push handler showing the notification
//   (read back with getNotifications), and the answer going from the worker's
//   fetch through the gateway to the agent and the CLI, which runs the tool.
// - Not real: Chromium's own push service. Headless Chromium here has no
//   push service to subscribe to (no network), so the decrypted payload is
//   handed to the worker with the DevTools protocol's
//   ServiceWorker.deliverPushMessage, which fires the worker's real `push`
//   event. And no person clicks: a notification's button cannot be pressed
//   from the DevTools protocol, so the test calls, inside the worker, the
//   same handler its `notificationclick` listener calls
//   (self.dispatchPush.handleClick) with the real Notification object and
//   the action "allow".

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createWriteStream, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe, test } from "node:test";
import { ARTIFACTS, launchBrowser, randomKey, randomTag, ROOT, shot, startGateway, until } from "./harness.mjs";

const CACHE = process.env.DISPATCH_CACHE ?? join(homedir(), ".cache/dispatch");
const TARGET = process.env.CARGO_TARGET_DIR ?? join(CACHE, "target");
const MODEL_SERVER_BIN = process.env.DISPATCH_MODEL_SERVER_BIN ?? join(TARGET, "debug/dispatch-model-server");
const CLAUDE_BIN = process.env.DISPATCH_CLAUDE_BIN ?? join(ROOT, "tools/claude/node_modules/.bin/claude");
const PYTHON = join(CACHE, "push-venv/bin/python");

const alice = { user: "alice", key: `alice-${randomKey()}` };
const workspace = `push-${randomTag()}`;
const COMMAND = "touch allowed-from-a-notification.txt";

let model;
let receiver;
let gw;
let browser;
let ctx;
let page;

async function startModelServer(turns) {
  if (!existsSync(MODEL_SERVER_BIN)) throw new Error(`dispatch-model-server not found at ${MODEL_SERVER_BIN}: cargo build -p dispatch-model-server`);
  const dir = mkdtempSync(join(tmpdir(), "dispatch-model-"));
  const script = join(dir, "turns.json");
  writeFileSync(script, JSON.stringify({ turns }));
  const child = spawn(MODEL_SERVER_BIN, ["--listen", "127.0.0.1:0", "--script", script], { stdio: ["ignore", "pipe", "pipe"] });
  child.stderr.pipe(createWriteStream(join(ARTIFACTS, "model-server-push.log")));
  const url = await new Promise((resolve, reject) => {
    let buf = "";
    const timer = setTimeout(() => reject(new Error("the model server printed no listening line within 20 s")), 20_000);
    child.stdout.on("data", (c) => {
      buf += c.toString();
      const m = buf.match(/^DISPATCH_MODEL_SERVER_LISTENING (http:\/\/127\.0\.0\.1:\d+)\s*$/m);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on("exit", (code) => reject(new Error(`the model server exited (${code}) before listening`)));
  });
  return {
    url,
    async stop() {
      child.kill("SIGTERM");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** tests/push/receiver.py: its first line (endpoint, keys), then one JSON line per push. */
async function startReceiver() {
  if (!existsSync(PYTHON)) throw new Error(`${PYTHON} is missing: run scripts/setup.d/35-push-python.sh (Python's http_ece and cryptography)`);
  const child = spawn(PYTHON, [join(ROOT, "tests/push/receiver.py")], { stdio: ["pipe", "pipe", "inherit"] });
  const lines = [];
  const waiters = [];
  createInterface({ input: child.stdout }).on("line", (l) => {
    const v = JSON.parse(l);
    const w = waiters.findIndex((x) => x.match(v));
    if (w >= 0) waiters.splice(w, 1)[0].resolve(v);
    else lines.push(v);
  });
  const next = (match, what, timeout = 120_000) => {
    const i = lines.findIndex(match);
    if (i >= 0) return Promise.resolve(lines.splice(i, 1)[0]);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no ${what} push within ${timeout} ms`)), timeout);
      waiters.push({ match, resolve: (v) => (clearTimeout(t), resolve(v)) });
    });
  };
  const first = await next((v) => "endpoint" in v, "receiver start", 30_000);
  return { ...first, next, stop: () => child.stdin.end() };
}

describe("Web Push in Chromium", () => {
  before(async () => {
    if (!existsSync(CLAUDE_BIN)) throw new Error(`the Claude Code CLI is not installed at ${CLAUDE_BIN}: run scripts/setup.d/30-claude.sh`);
    receiver = await startReceiver();
    model = await startModelServer([
      { tool_use: { name: "Bash", input: { command: COMMAND, description: "Make a file" } } },
      { text: "Made it." },
    ]);
    gw = await startGateway({
      users: [alice],
      name: "gateway-push",
      env: {
        ANTHROPIC_BASE_URL: model.url,
        ANTHROPIC_API_KEY: "sk-ant-test-not-a-real-key",
        DISPATCH_CLAUDE_BIN: CLAUDE_BIN,
        CLAUDE_CODE_MAX_RETRIES: "0",
        DISPATCH_PUSH_ALLOW_HTTP_LOOPBACK: "true",
      },
    });
    browser = await launchBrowser();
    ctx = await browser.newContext({ viewport: { width: 1200, height: 800 } });
    await ctx.grantPermissions(["notifications"], { origin: gw.url });
    page = await ctx.newPage();
    await page.goto(`${gw.url}/login?key=${encodeURIComponent(alice.key)}`);
    await page.getByRole("heading", { name: "Workspaces" }).waitFor();
  });

  after(async () => {
    await browser?.close();
    await gw?.stop();
    await model?.stop();
    receiver?.stop();
  });

  test("the app installs: manifest, icons, and a service worker at the root scope", async () => {
    const scope = await page.evaluate(async () => (await navigator.serviceWorker.ready).scope);
    assert.equal(scope, `${gw.url}/`);
    const manifest = await page.evaluate(async () => {
      const href = document.querySelector('link[rel="manifest"]').href;
      const m = await (await fetch(href)).json();
      const icons = await Promise.all(m.icons.map(async (i) => [i.sizes, (await fetch(i.src)).status]));
      return { display: m.display, start: m.start_url, icons };
    });
    assert.equal(manifest.display, "standalone");
    assert.equal(manifest.start, "/");
    assert.deepEqual(
      manifest.icons.map(([, s]) => s),
      manifest.icons.map(() => 200),
    );
    assert.ok(manifest.icons.some(([sizes]) => sizes === "512x512"));
    // The bell opens the per-browser settings.
    await page.getByRole("button", { name: "Notification settings" }).click();
    await page.getByRole("dialog", { name: "Notification settings" }).waitFor();
    await shot(page, "push-01-settings");
    await page.getByRole("button", { name: "Notification settings" }).click();
  });

  test("a pushed approval shows in the service worker and its Allow answers the request", async () => {
    // The browser's subscription would point at its push service; this one
    // points at the receiver, which decrypts what the gateway sends.
    const sub = { endpoint: `${receiver.endpoint}chromium`, keys: { p256dh: receiver.p256dh, auth: receiver.auth }, prefs: {} };
    const status = await page.evaluate(
      async ([sub, name]) => {
        const post = (path, body) => fetch(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
        const a = await post("/api/push/subscriptions", sub);
        const b = await post("/api/workspaces", { name });
        return [a.status, b.status];
      },
      [sub, workspace],
    );
    assert.deepEqual(status, [201, 201]);

    await page.goto(`${gw.url}/#/w/${workspace}`);
    await until(() => page.evaluate(() => window.__dispatch?.listed === true), "the workspace's session list");
    await page.getByRole("button", { name: "New Claude session" }).click();
    const pane = page.locator('[data-testid="claude-pane"]:visible');
    const box = pane.getByLabel("Message Claude");
    await box.fill("Please make the file");
    await box.press("Enter");
    await pane.getByRole("alertdialog").waitFor({ timeout: 120_000 });

    const push = await receiver.next((v) => v.payload?.kind === "approval", "approval");
    assert.equal(push.status, 201);
    const payload = push.payload;
    assert.match(payload.body, /touch allowed-from-a-notification\.txt/);

    // Hand the decrypted payload to the worker's real push event.
    const cdp = await ctx.newCDPSession(page);
    const registrations = [];
    cdp.on("ServiceWorker.workerRegistrationUpdated", (e) => registrations.push(...e.registrations));
    await cdp.send("ServiceWorker.enable");
    const reg = await until(() => registrations.find((r) => r.scopeURL === `${gw.url}/` && !r.isDeleted), "the worker's registration id");
    await cdp.send("ServiceWorker.deliverPushMessage", { origin: gw.url, registrationId: reg.registrationId, data: JSON.stringify(payload) });

    const shown = await until(
      () =>
        page.evaluate(async (tag) => {
          const ns = await (await navigator.serviceWorker.ready).getNotifications({ tag });
          return ns.length ? ns.map((n) => ({ title: n.title, body: n.body, actions: n.actions.map((a) => a.action), sticky: n.requireInteraction })) : null;
        }, payload.tag),
      "the notification",
    );
    assert.deepEqual(shown, [{ title: `${workspace}: Claude asks to use Bash`, body: payload.body, actions: ["allow", "deny"], sticky: true }]);

    // The same approval pushed by another gateway replica (its own subscription of this
    // browser, its own token): shown once, the first stays.
    const copy = { ...payload, token: `${payload.token}-from-another-replica`, sentAt: payload.sentAt + 1500 };
    const tokens = () =>
      page.evaluate(async (tag) => (await (await navigator.serviceWorker.ready).getNotifications({ tag })).map((n) => n.data?.token ?? n.title), payload.tag);
    const [sw0] = ctx.serviceWorkers();
    await sw0.evaluate((p) => self.dispatchPush.handlePush(self.registration, p), copy);
    assert.deepEqual(await tokens(), [payload.token], "the copy was not shown");

    // "Allow" on that notification: the handler notificationclick calls.
    const [worker] = ctx.serviceWorkers();
    assert.ok(worker, "the service worker is running");
    const answered = await worker.evaluate(async (tag) => {
      const [n] = await self.registration.getNotifications({ tag });
      return self.dispatchPush.handleClick(self.registration, self.clients, n, "allow");
    }, payload.tag);
    assert.deepEqual(answered, { ok: true, status: 200 });

    // The pane sees the request answered and the tool run.
    const made = join(gw.dataDir, "data", "workspaces", alice.user, workspace, "allowed-from-a-notification.txt");
    await until(async () => (await pane.getByRole("alertdialog").count()) === 0, "the permission prompt to go", 60_000);
    await until(() => existsSync(made), "the allowed command's file", 60_000);
    const after = await page.evaluate(async (tag) => (await (await navigator.serviceWorker.ready).getNotifications({ tag })).map((n) => n.title), payload.tag);
    assert.deepEqual(after, ["Allowed"], "the approval's notification was replaced by the outcome");
    // A copy arriving late from another replica does not bring the answered request back.
    await worker.evaluate((p) => self.dispatchPush.handlePush(self.registration, p), copy);
    assert.deepEqual(await tokens(), ["Allowed"], "a late copy was not shown");
    await shot(page, "push-02-answered");

    // The token is spent: pressing Deny on a copy of it changes nothing.
    const again = await worker.evaluate((p) => self.dispatchPush.handleClick(self.registration, self.clients, { data: p, close() {} }, "deny"), payload);
    assert.deepEqual(again, { ok: false, status: 410 });
  });

  test("a request nobody answers is denied after the agent's timeout, and the pane says so", async () => {
    const slowModel = await startModelServer([
      { tool_use: { name: "Bash", input: { command: "touch never.txt", description: "Make a file" } } },
      { text: "Understood." },
    ]);
    const slow = await startGateway({
      users: [alice],
      name: "gateway-push-timeout",
      env: {
        ANTHROPIC_BASE_URL: slowModel.url,
        ANTHROPIC_API_KEY: "sk-ant-test-not-a-real-key",
        DISPATCH_CLAUDE_BIN: CLAUDE_BIN,
        CLAUDE_CODE_MAX_RETRIES: "0",
        DISPATCH_CLAUDE_PERMISSION_TIMEOUT: "6",
      },
    });
    try {
      const p = await ctx.newPage();
      await p.goto(`${slow.url}/login?key=${encodeURIComponent(alice.key)}`);
      await p.getByRole("heading", { name: "Workspaces" }).waitFor();
      const name = `slow-${randomTag()}`;
      assert.equal(await p.evaluate(async (name) => (await fetch("/api/workspaces", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name }) })).status, name), 201);
      await p.goto(`${slow.url}/#/w/${name}`);
      await until(() => p.evaluate(() => window.__dispatch?.listed === true), "the workspace's session list");
      await p.getByRole("button", { name: "New Claude session" }).click();
      const pane = p.locator('[data-testid="claude-pane"]:visible');
      await pane.getByLabel("Message Claude").fill("Please make never.txt");
      await pane.getByLabel("Message Claude").press("Enter");
      await pane.getByRole("alertdialog").waitFor({ timeout: 120_000 });
      const card = pane.locator('[data-testid="tool-card"][data-tool="Bash"]');
      await until(async () => (await card.getAttribute("data-status")) === "denied: no answer in time", "the card to say the request timed out", 60_000);
      assert.equal(await pane.getByRole("alertdialog").count(), 0, "the prompt is gone");
      await card.locator("summary").click();
      assert.match(await card.locator('[data-testid="tool-result"]').innerText(), /Nobody answered the permission prompt within 6 s/);
      await shot(p, "push-03-timed-out");
      await p.close();
    } finally {
      await slow.stop();
      await slowModel.stop();
    }
  });
});
