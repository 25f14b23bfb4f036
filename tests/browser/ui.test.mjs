// The web UI in a real Chromium against the real gateway and agent: login,
// workspaces, terminals, resize, reload, server-side drop and reconnect,
// isolation between users, mobile toolbar, login rate limit.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  activeSession,
  connStates,
  explain,
  launchBrowser,
  openTerminal,
  paneScreen,
  paneSize,
  paneText,
  randomKey,
  randomTag,
  shot,
  startGateway,
  typeLine,
  until,
  waitForLine,
} from "./harness.mjs";

const alice = { user: "alice", key: `alice-${randomKey()}` };
const bob = { user: "bob", key: `bob-${randomKey()}` };
const workspace = `ws-${randomTag()}`;

let gw;
let browser;
let ctx;
let page;
let session; // the terminal opened by the tests
const consoleErrors = [];

/**
 * Signs in through the form and returns once the gateway answered and, when
 * it let us in, the UI shows the workspace list (so that a following goto
 * cannot race the cookie or the UI's own navigation after login).
 */
async function login(p, key) {
  await p.goto(gw.url + "/");
  await p.getByLabel("Access key").fill(key);
  const answered = p.waitForResponse((r) => r.url().endsWith("/api/login") && r.request().method() === "POST");
  await p.getByRole("button", { name: "Sign in" }).click();
  if ((await answered).ok()) await p.getByRole("heading", { name: "Workspaces" }).waitFor();
}

describe("web UI in Chromium", () => {
  before(async () => {
    gw = await startGateway({ users: [alice, bob], name: "gateway-ui" });
    browser = await launchBrowser();
    ctx = await browser.newContext({ viewport: { width: 1200, height: 760 } });
    page = await ctx.newPage();
    page.on("console", (m) => {
      if (m.type() === "error") consoleErrors.push(m.text());
    });
    page.on("pageerror", (e) => consoleErrors.push(String(e)));
  });

  after(async () => {
    await browser?.close();
    await gw?.stop();
  });

  test("a wrong key is refused with a clear message", async () => {
    await login(page, "not-the-key-0123456789");
    const alert = page.getByRole("alert");
    await alert.waitFor();
    assert.match(await alert.innerText(), /access key is not valid/);
    await shot(page, "01-login-refused");
    const me = await page.evaluate(() => fetch("/api/me").then((r) => r.status));
    assert.equal(me, 401);
  });

  test("logs in with the key", async () => {
    await page.getByLabel("Access key").fill(alice.key);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { name: "Workspaces" }).waitFor();
    const me = await page.evaluate(() => fetch("/api/me").then((r) => r.json()));
    assert.equal(me.user, "alice");
  });

  test("the printed /login?key= link signs in too", async () => {
    const c = await browser.newContext();
    const p = await c.newPage();
    await p.goto(`${gw.url}/login?key=${encodeURIComponent(alice.key)}`);
    await p.getByRole("heading", { name: "Workspaces" }).waitFor();
    assert.equal(new URL(p.url()).pathname, "/");
    await c.close();
  });

  test("creates a workspace, checking the name first", async () => {
    const input = page.getByLabel("New workspace");
    await input.fill("Bad_Name");
    assert.match(await page.locator("#ws-name-help").innerText(), /lowercase/i);
    assert.equal(await page.getByRole("button", { name: "Create" }).isDisabled(), true);
    await input.fill(workspace);
    await shot(page, "02-workspace-list");
    await page.getByRole("button", { name: "Create" }).click();
    await page.waitForURL(new RegExp(`#/w/${workspace}`));
    // a new workspace opens with a terminal
    await until(async () => (await activeSession(page)) !== null, "the first terminal");
    await until(async () => (await connStates(page)).includes("open"), "the workspace connection");
    const list = await page.evaluate(() => fetch("/api/workspaces").then((r) => r.json()));
    assert.deepEqual(list.map((w) => w.name), [workspace]);
  });

  test("opens a terminal and runs a command in it", async () => {
    session = await openTerminal(page);
    const tag = `hello-${randomTag()}`;
    await typeLine(page, `echo ${tag}`);
    // the command's output is a line of its own, apart from the typed command line
    const text = await waitForLine(page, session, new RegExp(`^${tag}$`), `the output line ${tag}`);
    assert.ok(text.includes(`echo ${tag}`), "the typed command is echoed too");
    await shot(page, "03-terminal");
  });

  test("Ctrl+Shift+F searches the terminal", async () => {
    const tag = `needle-${randomTag()}`;
    await typeLine(page, `echo ${tag}`);
    await waitForLine(page, session, new RegExp(`^${tag}$`), "the needle");
    await page.keyboard.press("Control+Shift+F");
    const box = page.getByLabel("Search the terminal");
    await box.waitFor();
    await box.fill(tag);
    await box.press("Enter");
    await until(async () => (await page.evaluate((id) => window.__dispatch.panes.get(id).selection(), session)) === tag, "the match selected");
    await box.press("Escape");
    await box.waitFor({ state: "detached" });
    await page.locator(`#panel-${session} .xterm`).click();
  });

  test("resizing the window resizes the terminal (stty size follows)", async () => {
    for (const viewport of [{ width: 900, height: 520 }, { width: 1280, height: 800 }]) {
      const before = await paneSize(page, session);
      await page.setViewportSize(viewport);
      const size = await until(async () => {
        const s = await paneSize(page, session);
        return s && (s.cols !== before.cols || s.rows !== before.rows) ? s : false;
      }, `the terminal to fit ${viewport.width}x${viewport.height}`);
      const tag = randomTag();
      // stty prints "rows cols"; the marker keeps it apart from older output
      await typeLine(page, `echo size-${tag}=$(stty size)`);
      await waitForLine(page, session, new RegExp(`^size-${tag}=${size.rows} ${size.cols}$`), `stty size = ${size.rows} ${size.cols}`);
    }
    await shot(page, "04-resized");
  });

  test("a reload shows the same screen", async () => {
    const tag = randomTag();
    await typeLine(page, `printf 'colour \\033[32mgreen-${tag}\\033[0m done\\n'`);
    await waitForLine(page, session, new RegExp(`^colour green-${tag} done$`), "coloured output");
    // let the screen settle: the prompt after the command
    await until(async () => (await paneScreen(page, session)).trimEnd().split("\n").pop() !== `colour green-${tag} done`, "the prompt");
    const before = await paneScreen(page, session);
    await page.reload();
    await until(async () => (await activeSession(page)) === session, "the same tab after reload");
    const after = await until(async () => {
      const s = await paneScreen(page, session);
      return s && s === before ? s : false;
    }, "the screen to match the one before the reload", 15_000).catch(async (e) => {
      throw new Error(`${e.message}\n--- before ---\n${before}\n--- after ---\n${await paneScreen(page, session)}`);
    });
    assert.equal(after, before);
    await shot(page, "05-after-reload");
  });

  test("a live session resumes from its last offset after a drop, missing nothing", async () => {
    const tag = randomTag();
    const ticks = async () =>
      (await paneText(page, session))
        .split("\n")
        .map((l) => l.match(new RegExp(`^live-${tag}-(\\d+)$`)))
        .filter(Boolean)
        .map((m) => Number(m[1]));
    await typeLine(page, `for i in $(seq 1 150); do echo live-${tag}-$i; sleep 0.02; done`);
    await waitForLine(page, session, new RegExp(`^live-${tag}-20$`), "20 live ticks");
    const statesBefore = (await connStates(page)).length;
    // the shell keeps printing while the page is disconnected
    await page.evaluate(() => window.__dispatch.dropConnection());
    await until(async () => (await connStates(page)).slice(statesBefore).includes("reconnecting"), "the reconnecting state");
    await until(async () => (await connStates(page)).at(-1) === "open", "the connection to come back");
    await waitForLine(page, session, new RegExp(`^live-${tag}-150$`), "the last live tick", 20_000);
    assert.deepEqual(await ticks(), Array.from({ length: 150 }, (_, i) => i + 1), "ticks 1..150, each once, in order");
  });

  test("a flood of output is paced, not dropped, and the terminal stays usable", async () => {
    const tag = randomTag();
    const n = 2_000_000; // about 15 MB: far more than the terminal takes in one go
    const t0 = Date.now();
    await typeLine(page, `seq 1 ${n}; echo flood-${tag}`);
    const text = await waitForLine(page, session, new RegExp(`^flood-${tag}$`), "the end of the flood", 120_000);
    const lines = text.split("\n");
    const end = lines.indexOf(`flood-${tag}`);
    // the lines just before the marker are the last numbers, in order, each once
    const seconds = (Date.now() - t0) / 1000;
    const heap = await page.evaluate(() => performance.memory?.usedJSHeapSize ?? 0);
    const [pauses, resyncs] = await page.evaluate(() => [window.__dispatch.flowPauses(), window.__dispatch.resyncs()]);
    console.log(`flood of ${n} lines shown in ${seconds.toFixed(1)} s; flow-control pauses ${pauses}; server resyncs ${resyncs}; JS heap ${(heap / 2 ** 20).toFixed(0)} MiB`);
    console.log(`stream events: ${(await page.evaluate(() => window.__dispatch.streamLog())).join("; ")}`);
    if (resyncs === 0) {
      // nothing was skipped on purpose, so the scrollback (10,000 lines) before the marker holds consecutive numbers
      const tail = lines.slice(end - 9000, end).map(Number);
      assert.deepEqual(tail, Array.from({ length: 9000 }, (_, i) => n - 8999 + i));
    }
    const echo = `after-flood-${tag}`;
    await typeLine(page, `echo ${echo}`);
    await waitForLine(page, session, new RegExp(`^${echo}$`), "a command after the flood");
  });

  test("a connection dropped by the server reconnects with no output lost or repeated", async () => {
    const tag = randomTag();
    // a steady stream of numbered lines, still running when the connection drops
    await typeLine(page, `i=0; while [ $i -lt 100000 ]; do i=$((i+1)); echo tick-${tag}-$i; sleep 0.02; done`);
    await waitForLine(page, session, new RegExp(`^tick-${tag}-40$`), "40 ticks");
    const statesBefore = (await connStates(page)).length;
    const pid = gw.agentPid(workspace);
    assert.ok(pid, "the workspace's agent process is found");
    process.kill(pid, "SIGKILL");
    await until(async () => (await connStates(page)).slice(statesBefore).includes("reconnecting"), "the reconnecting state");
    await shot(page, "06-reconnecting");
    await until(async () => (await connStates(page)).slice(statesBefore).includes("open") && (await connStates(page)).at(-1) === "open", "the connection to come back", 30_000);
    await page.getByTestId("connection-state").getByText("Connected").waitFor();
    // every tick that reached the page is there exactly once, in order, with no gap
    const ticks = async () =>
      (await paneText(page, session))
        .split("\n")
        .map((l) => l.match(new RegExp(`^tick-${tag}-(\\d+)$`)))
        .filter(Boolean)
        .map((m) => Number(m[1]));
    const seen = await ticks();
    assert.ok(seen.length >= 40, `at least the 40 ticks seen before the drop survive (${seen.length})`);
    assert.deepEqual(seen, Array.from({ length: seen.length }, (_, i) => i + 1), "ticks 1..n, each once, in order");
    // the shell died with its agent: the session shows as ended, its history stays
    await page.locator(`#panel-${session} [data-testid=session-ended]`).waitFor({ timeout: 15_000 });
    await shot(page, "07-reconnected");
    // a fresh page reads the ended session's whole history, read-only
    const c = await browser.newContext({ viewport: { width: 1200, height: 760 } });
    const p = await c.newPage();
    await p.goto(`${gw.url}/`);
    await login(p, alice.key);
    await p.goto(`${gw.url}/#/w/${workspace}/s/${session}`);
    await until(async () => (await paneText(p, session)) !== null, "the ended session's history");
    const history = await waitForLine(p, session, new RegExp(`^tick-${tag}-${seen.at(-1)}$`), "the last tick in the history");
    const replayed = history.split("\n").filter((l) => new RegExp(`^tick-${tag}-\\d+$`).test(l)).map((l) => Number(l.split("-").pop()));
    assert.deepEqual(replayed.slice(0, seen.length), seen, "the history holds the same ticks");
    assert.equal(await p.evaluate((id) => window.__dispatch.panes.get(id).readOnly(), session), true);
    await shot(p, "08-history");
    await c.close();
  });

  test("stopping a session shows its exit", async () => {
    await page.goto(`${gw.url}/#/w/${workspace}`);
    const id = await openTerminal(page);
    await page.getByRole("button", { name: "Stop" }).click();
    await page.getByRole("button", { name: "Stop session" }).click();
    await until(async () => (await page.locator(`#panel-${id} [data-testid=session-ended]`).count()) === 1, "the ended banner");
    assert.match(await page.locator(`#panel-${id} [data-testid=session-ended]`).textContent(), /Ended\s*exit code \d+ · stopped/);
    const tab = page.getByRole("tab", { selected: true });
    assert.match(await tab.textContent(), /\d/, "the tab shows the exit code");
    // the session list tells running from ended sessions, with how they ended
    await page.getByRole("button", { name: /^Sessions/ }).click();
    const list = page.getByRole("dialog", { name: "All sessions" });
    await list.waitFor();
    const text = await list.innerText();
    assert.match(text, /exit \d+ · stopped/);
    assert.match(text, /agent restarted/);
    await shot(page, "09-session-list");
    await page.keyboard.press("Escape");
    await list.waitFor({ state: "detached" });
  });

  test("a shell that exits shows its exit code and keeps its output readable", async () => {
    const id = await openTerminal(page);
    const tag = randomTag();
    await typeLine(page, `echo bye-${tag}; exit 3`);
    const banner = page.locator(`#panel-${id} [data-testid=session-ended]`);
    await banner.waitFor();
    assert.match(await banner.textContent(), /exit code 3/);
    assert.match(await paneText(page, id), new RegExp(`^bye-${tag}$`, "m"));
    assert.equal(await page.evaluate((id) => window.__dispatch.panes.get(id).readOnly(), id), true);
  });

  test("a second user cannot open the first user's workspace", async () => {
    const c = await browser.newContext();
    const p = await c.newPage();
    await login(p, bob.key);
    await p.getByRole("heading", { name: "Workspaces" }).waitFor();
    const list = await p.evaluate(() => fetch("/api/workspaces").then((r) => r.json()));
    assert.deepEqual(list, []);
    await p.goto(`${gw.url}/#/w/${workspace}`);
    await p.getByTestId("workspace-missing").waitFor();
    const statuses = await p.evaluate(async (ws) => {
      const open = await fetch(`/api/workspaces/${ws}/open`, { method: "POST" });
      const sessions = await fetch(`/api/workspaces/${ws}/sessions`);
      return [open.status, sessions.status];
    }, workspace);
    assert.deepEqual(statuses, [404, 404]);
    // and the WebSocket is refused too: no hello ever arrives
    const ws = await p.evaluate(
      (ws) =>
        new Promise((resolve) => {
          const s = new WebSocket(`ws://${location.host}/api/workspaces/${ws}/ws`);
          s.onmessage = (m) => resolve(`message ${m.data}`);
          s.onclose = () => resolve("closed");
        }),
      workspace,
    );
    assert.equal(ws, "closed");
    await shot(p, "09-other-user");
    // signing out ends that login
    await p.getByRole("button", { name: "Sign out" }).click();
    await p.getByLabel("Access key").waitFor();
    assert.equal(await p.evaluate(() => fetch("/api/me").then((r) => r.status)), 401);
    await c.close();
  });

  test("deletes a workspace only after confirming", () => deleteAfterConfirming().catch((e) => explain(page, "delete", e)));

  async function deleteAfterConfirming() {
    const doomed = `tmp-${randomTag()}`;
    await page.goto(`${gw.url}/#/`);
    await page.getByLabel("New workspace").fill(doomed);
    await page.getByRole("button", { name: "Create" }).click();
    await page.waitForURL(new RegExp(`#/w/${doomed}`));
    await page.getByRole("link", { name: "Dispatch: all workspaces" }).click();
    const del = page.getByRole("button", { name: `Delete workspace ${doomed}` });
    await del.click();
    const dialog = page.getByRole("dialog", { name: `Delete workspace “${doomed}”?` });
    await dialog.waitFor();
    await shot(page, "10-delete-confirm");
    await dialog.getByRole("button", { name: "Cancel" }).click();
    await dialog.waitFor({ state: "detached" });
    assert.equal(await del.isVisible(), true, "cancel keeps it");
    await del.click();
    await page.getByRole("dialog").getByRole("button", { name: "Delete workspace" }).click();
    await del.waitFor({ state: "detached" });
    const names = await page.evaluate(() => fetch("/api/workspaces").then((r) => r.json()).then((l) => l.map((w) => w.name)));
    assert.deepEqual(names, [workspace]);
  }

  test("a navigation away from a workspace wins over its URL being rewritten before the hashchange", async () => {
    await page.goto(`${gw.url}/#/w/${workspace}`);
    await until(() => page.evaluate(() => window.__dispatch?.listed === true), "the session list");
    // What a tab becoming active did between a click on a link and its
    // hashchange event: the old handler read location.hash and stayed.
    await page.evaluate((ws) => {
      location.hash = "#/";
      history.replaceState(null, "", `#/w/${ws}/s/x`);
    }, workspace);
    await page.getByRole("heading", { name: "Workspaces" }).waitFor({ timeout: 10_000 });
    await page.goto(`${gw.url}/#/`);
  });

  test("on a phone: responsive layout and the key toolbar with a sticky Ctrl", async () => {
    const c = await browser.newContext({ viewport: { width: 390, height: 760 }, hasTouch: true, isMobile: true, deviceScaleFactor: 2 });
    const p = await c.newPage();
    await login(p, alice.key);
    await p.goto(`${gw.url}/#/w/${workspace}`);
    const id = await openTerminal(p);
    const bar = p.getByRole("toolbar", { name: "Terminal keys" }).last();
    await bar.waitFor();
    const tag = randomTag();
    await typeLine(p, `echo arrow-${tag}`);
    await waitForLine(p, id, new RegExp(`^arrow-${tag}$`), "the first echo");
    // Up recalls the last command; Enter runs it again
    await bar.getByRole("button", { name: "Up arrow" }).tap();
    await p.keyboard.press("Enter");
    await until(async () => (await paneText(p, id)).split("\n").filter((l) => l === `arrow-${tag}`).length === 2, "the recalled command's output");
    // Ctrl then c interrupts a running command
    await typeLine(p, "sleep 600");
    await bar.getByRole("button", { name: /^Control/ }).tap();
    assert.equal(await bar.getByRole("button", { name: /^Control/ }).getAttribute("aria-pressed"), "true");
    await p.keyboard.type("c");
    await waitForLine(p, id, /\^C/, "the interrupt (^C)");
    await typeLine(p, `echo after-${tag}`);
    await waitForLine(p, id, new RegExp(`^after-${tag}$`), "the shell back after the interrupt");
    const overflow = await p.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
    assert.equal(overflow, false, "nothing overflows the phone's width");
    await shot(p, "11-mobile");
    await c.close();
  });

  test("WebGL renderer, and the DOM renderer when its context is lost", async () => {
    const c = await browser.newContext({ viewport: { width: 1000, height: 700 } });
    // headless Chromium has only software WebGL, which the UI skips unless told
    await c.addInitScript(() => localStorage.setItem("dispatchRenderer", "webgl"));
    const p = await c.newPage();
    await login(p, alice.key);
    await p.goto(`${gw.url}/#/w/${workspace}`);
    const id = await openTerminal(p);
    assert.equal(await p.evaluate((id) => window.__dispatch.panes.get(id).renderer(), id), "webgl");
    const lost = await p.evaluate((id) => {
      for (const canvas of document.querySelectorAll(`#panel-${id} canvas`)) {
        const gl = canvas.getContext("webgl2");
        const ext = gl?.getExtension("WEBGL_lose_context");
        if (ext) {
          ext.loseContext();
          return true;
        }
      }
      return false;
    }, id);
    assert.ok(lost, "the terminal's WebGL canvas is found");
    await until(async () => (await p.evaluate((id) => window.__dispatch.panes.get(id).renderer(), id)) === "dom", "the DOM renderer", 20_000);
    const tag = randomTag();
    await p.locator(`#panel-${id} .xterm`).click();
    await typeLine(p, `echo dom-${tag}`);
    // the DOM renderer draws rows as elements: the text is really on screen
    await until(async () => (await p.locator(`#panel-${id} .xterm-rows`).innerText()).includes(`\ndom-${tag}`) || (await p.locator(`#panel-${id} .xterm-rows`).innerText()).startsWith(`dom-${tag}`), "the output drawn by the DOM renderer");
    await shot(p, "12-dom-after-context-loss");
    await c.close();
  });

  test("the page logged no errors", () => {
    // Expected: WebSocket failures while the agent restarts, and the 401s of
    // checking the login before signing in and of the refused key. Nothing else.
    const unexpected = consoleErrors.filter((e) => !/WebSocket connection .* failed/.test(e) && !/status of 401 \(Unauthorized\)/.test(e));
    assert.deepEqual(unexpected, []);
  });

  test("repeated wrong keys are rate-limited and the wait is shown", async () => {
    const c = await browser.newContext();
    const p = await c.newPage();
    await p.goto(gw.url + "/");
    const alert = p.getByRole("alert");
    await until(async () => {
      await p.getByLabel("Access key").fill(`wrong-${randomKey()}`);
      const button = p.getByRole("button", { name: "Sign in" });
      if (await button.isDisabled()) return false;
      await button.click();
      await alert.waitFor();
      return /Too many failed attempts\. Try again in \d+ s/.test(await alert.innerText());
    }, "the rate-limit message", 30_000);
    assert.equal(await p.getByRole("button", { name: "Sign in" }).isDisabled(), true);
    await shot(p, "13-rate-limited");
    await c.close();
  });
});
