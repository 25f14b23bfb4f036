// Never miss an approval, in a real Chromium against the real gateway, agent
// and Claude Code CLI (scripted model server on loopback): a permission
// request shows as a badge on the Claude tab, in the page title and the
// favicon, as a count in the workspace list and in the header's Inbox link,
// as the session's state in the session list, and in the Inbox, where it is
// denied with a reason and a second one allowed; the tool really runs.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { launchBrowser, randomKey, randomTag, shot, startGateway, until } from "./harness.mjs";
import { CLAUDE_BIN, startModelServer } from "./model-server.mjs";

const alice = { user: "alice", key: `alice-${randomKey()}` };
const workspace = `ap-${randomTag()}`;
const DENIED = `denied-${randomTag()}.txt`;
const ALLOWED = `allowed-${randomTag()}.txt`;
const REASON = `Not today ${randomTag()}`;

let model;
let gw;
let browser;
let page;
const consoleErrors = [];

const pane = () => page.locator('[data-testid="claude-pane"]:visible');
const title = () => page.evaluate(() => document.title);
const faviconCount = () => page.evaluate(() => document.querySelector('link[rel="icon"]')?.dataset.count ?? null);

async function prompt(text) {
  const box = pane().getByLabel("Message Claude");
  await box.fill(text);
  await box.press("Enter");
}

describe("approvals everywhere in Chromium", () => {
  before(async () => {
    model = await startModelServer(
      [
        { tool_use: { name: "Bash", input: { command: `touch ${DENIED}`, description: "Make a file" } } },
        { text: "Understood, I left it." },
        { tool_use: { name: "Bash", input: { command: `touch ${ALLOWED}`, description: "Make a file" } } },
        { text: "Made it." },
      ],
      "model-server-approvals",
    );
    gw = await startGateway({
      users: [alice],
      name: "gateway-approvals",
      env: {
        ANTHROPIC_BASE_URL: model.url,
        ANTHROPIC_API_KEY: "sk-ant-test-not-a-real-key",
        DISPATCH_CLAUDE_BIN: CLAUDE_BIN,
        CLAUDE_CODE_MAX_RETRIES: "0",
      },
    });
    browser = await launchBrowser();
    const ctx = await browser.newContext({ viewport: { width: 1200, height: 800 } });
    page = await ctx.newPage();
    page.on("console", (m) => {
      if (m.type() === "error") consoleErrors.push(m.text());
    });
    page.on("pageerror", (e) => consoleErrors.push(String(e)));
    await page.goto(`${gw.url}/login?key=${encodeURIComponent(alice.key)}`);
    await page.getByRole("heading", { name: "Workspaces" }).waitFor();
    const status = await page.evaluate(async (name) => (await fetch("/api/workspaces", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name }) })).status, workspace);
    assert.equal(status, 201);
    await page.goto(`${gw.url}/#/w/${workspace}`);
    await until(() => page.evaluate(() => window.__dispatch?.listed === true), "the workspace's session list");
  });

  after(async () => {
    await browser?.close();
    await gw?.stop();
    await model?.stop();
  });

  test("a waiting request shows on the tab, in the title, the favicon, the lists and the inbox; denied there", async () => {
    assert.equal(await title(), `${workspace} · Dispatch`);
    assert.equal(await faviconCount(), null);
    await page.getByRole("button", { name: "New Claude session" }).click();
    await pane().waitFor();
    await prompt("Make the first file");
    await pane().getByRole("alertdialog").waitFor({ timeout: 60_000 });

    // The tab's badge, the title, the favicon, the header.
    const tab = page.getByRole("tab", { selected: true });
    await until(async () => (await tab.getByTestId("pending-badge").count()) === 1, "the badge on the Claude tab", 30_000);
    assert.equal((await tab.getByTestId("pending-badge").innerText()).trim(), "1");
    await until(async () => (await title()) === `(1) ${workspace} · Dispatch`, "the count in the title");
    await until(async () => (await faviconCount()) === "1", "the count on the favicon");
    assert.match(await page.evaluate(() => document.querySelector('link[rel="icon"]').href), /^data:image\/png;base64,/);
    assert.equal((await page.getByTestId("inbox-count").innerText()).trim(), "1");
    // The session list says Claude waits.
    await page.getByRole("button", { name: /Sessions/ }).click();
    const state = page.locator('#session-list [data-testid="claude-state"]');
    await until(async () => (await state.getAttribute("data-state")) === "AwaitingApproval", "the session's state in the list");
    assert.equal(await state.innerText(), "waiting for you");
    await page.keyboard.press("Escape");
    await shot(page, "approvals-01-tab-title");

    // The workspace list counts it.
    await page.goto(`${gw.url}/#/`);
    const row = page.locator(`a[aria-label="Open workspace ${workspace}"]`);
    await until(async () => (await row.getByTestId("workspace-pending").count()) === 1, "the count in the workspace list");
    assert.equal((await row.getByTestId("workspace-pending").innerText()).trim(), "1");
    assert.equal(await title(), "(1) Dispatch");

    // The inbox: workspace, session, tool, input, age; denied with a reason.
    await page.getByTestId("inbox-link").click();
    const item = page.getByTestId("inbox-item");
    await item.waitFor();
    assert.equal(await item.getAttribute("data-workspace"), workspace);
    assert.equal(await item.getByTestId("inbox-tool").innerText(), "Bash");
    assert.equal((await item.getByTestId("inbox-input").innerText()).trim(), `touch ${DENIED}`);
    assert.match(await item.getByTestId("inbox-age").innerText(), /^\d+ s ago$/);
    assert.equal(await title(), "(1) Inbox · Dispatch");
    await shot(page, "approvals-02-inbox");
    await item.getByRole("button", { name: "Deny…" }).click();
    await item.getByTestId("inbox-reason").fill(REASON);
    await item.getByRole("button", { name: "Deny", exact: true }).click();
    await until(async () => (await page.getByTestId("inbox-item").count()) === 0, "the request gone from the inbox", 30_000);
    await page.getByTestId("inbox-empty").waitFor();
    assert.equal(await title(), "Inbox · Dispatch");
    assert.equal(await faviconCount(), null);
    const proofDenied = join(gw.dataDir, "data", "workspaces", alice.user, workspace, DENIED);
    await until(async () => (await model.messageRequests()).filter((r) => JSON.stringify(r).includes(REASON)).length > 0, "the reason reaching the model", 60_000);
    assert.equal(existsSync(proofDenied), false, "the denied command did not run");
  });

  test("allowed from the inbox, the tool runs and the pane says so", async () => {
    await page.goto(`${gw.url}/#/w/${workspace}`);
    await pane().waitFor();
    await until(async () => (await pane().locator('[data-testid="turn-cost"]').count()) === 1, "the first turn's end", 60_000);
    await prompt("Make the second file");
    await pane().getByRole("alertdialog").waitFor({ timeout: 60_000 });
    await page.getByTestId("inbox-link").click();
    const item = page.getByTestId("inbox-item");
    await item.waitFor({ timeout: 30_000 });
    assert.equal((await item.getByTestId("inbox-input").innerText()).trim(), `touch ${ALLOWED}`);
    await item.getByRole("button", { name: "Allow", exact: true }).click();
    const proof = join(gw.dataDir, "data", "workspaces", alice.user, workspace, ALLOWED);
    await until(() => existsSync(proof), "the allowed command's file", 60_000);
    await until(async () => (await page.getByTestId("inbox-item").count()) === 0, "the inbox empty again");
    await page.goto(`${gw.url}/#/w/${workspace}`);
    await pane().waitFor();
    await until(async () => (await pane().locator('[data-testid="turn-cost"]').count()) === 2, "the second turn's end", 60_000);
    assert.equal(await pane().getByRole("alertdialog").count(), 0, "the pane's prompt is settled");
    await shot(page, "approvals-03-allowed");
    assert.deepEqual(consoleErrors, []);
  });
});
