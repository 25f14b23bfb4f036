// The Claude pane in a real Chromium against the real gateway, the real agent
// and the real Claude Code CLI, which talks to the project's scripted model
// server on loopback: a streamed answer, a Bash tool call that asks for
// permission, is allowed and really writes a file in the workspace, a reload
// that replays the conversation without doubling it, the history list and a
// past conversation's transcript, and a plain error when the CLI is missing.
// Any missing part (CLI, model server, binaries, UI build) fails the test.

import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { launchBrowser, randomKey, randomTag, shot, startGateway, until } from "./harness.mjs";
import { CLAUDE_BIN, startModelServer } from "./model-server.mjs";

const alice = { user: "alice", key: `alice-${randomKey()}` };
const workspace = `cl-${randomTag()}`;
const ANSWER = "Hello from the scripted model. Here is **bold** text and a snippet:\n\n```python\nprint('hi')\n```\n\nThat is all for now.";
const ANSWER_TEXT_END = "That is all for now.";
const PROOF = `made by claude ${randomTag()}`;
const COMMAND = `printf '${PROOF}\\n' > proof.txt && cat proof.txt`;
const DONE = "Created proof.txt for you.";

let model;
let gw;
let browser;
let page;
const consoleErrors = [];


const pane = () => page.locator('[data-testid="claude-pane"]:visible');
const assistantTexts = () => pane().locator('[data-testid="claude-assistant"] .md').allInnerTexts();

async function openWorkspace(p, url, name) {
  await p.goto(`${url}/login?key=${encodeURIComponent(alice.key)}`);
  await p.getByRole("heading", { name: "Workspaces" }).waitFor();
  const status = await p.evaluate(async (name) => (await fetch("/api/workspaces", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name }) })).status, name);
  assert.equal(status, 201, "workspace created");
  await p.goto(`${url}/#/w/${name}`);
  await until(() => p.evaluate(() => window.__dispatch?.listed === true), "the workspace's session list");
}

describe("Claude pane in Chromium", () => {
  before(async () => {
    if (!existsSync(CLAUDE_BIN)) throw new Error(`the Claude Code CLI is not installed at ${CLAUDE_BIN}: run ./scripts/setup.sh or set DISPATCH_CLAUDE_BIN`);
    model = await startModelServer([
      // streamed slowly enough that the page sees it grow
      { text: ANSWER, delay_ms: 60 },
      { tool_use: { name: "Bash", input: { command: COMMAND, description: "Write proof.txt" } } },
      { text: DONE },
    ], "model-server-claude");
    gw = await startGateway({
      users: [alice],
      name: "gateway-claude",
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
    await openWorkspace(page, gw.url, workspace);
  });

  after(async () => {
    await browser?.close();
    await gw?.stop();
    await model?.stop();
  });

  test("a prompt gets a streamed, rendered answer with usage and cost", async () => {
    await page.getByRole("button", { name: "New Claude session" }).click();
    await pane().waitFor();
    const box = pane().getByLabel("Message Claude");
    await box.waitFor();
    // Record every text the answer shows while it streams.
    await page.evaluate(() => {
      window.__seenAnswers = [];
      new MutationObserver(() => {
        const el = document.querySelector('[data-testid="claude-pane"] [data-testid="claude-assistant"] .md');
        if (el) window.__seenAnswers.push(el.textContent);
      }).observe(document.body, { subtree: true, childList: true, characterData: true });
    });
    await box.click();
    // Shift+Enter is a new line, Enter sends.
    await page.keyboard.type("Say hello");
    await page.keyboard.press("Shift+Enter");
    await page.keyboard.type("in two lines please");
    await page.keyboard.press("Enter");
    assert.equal(await box.inputValue(), "", "the box is emptied once sent");
    await until(async () => (await pane().locator('[data-testid="claude-user"]').allInnerTexts()).some((t) => t === "Say hello\nin two lines please"), "the prompt, on two lines, in the conversation");
    await pane().getByRole("button", { name: "Interrupt" }).waitFor({ timeout: 30_000 });
    await until(async () => (await assistantTexts()).some((t) => t.includes(ANSWER_TEXT_END)), "the whole answer", 60_000);
    const seen = await page.evaluate(() => window.__seenAnswers);
    const final = (await assistantTexts())[0];
    assert.ok(
      seen.some((t) => t && t.length > 0 && t.length < final.length && !t.includes(ANSWER_TEXT_END)),
      `the answer was seen growing while it streamed (${seen.length} states seen)`,
    );
    // markdown rendered, code highlighted, nothing left as raw markup
    assert.equal(await pane().locator('[data-testid="claude-assistant"] strong').first().innerText(), "bold");
    const code = pane().locator('[data-testid="claude-assistant"] pre code.language-python');
    assert.equal((await code.innerText()).trim(), "print('hi')");
    assert.ok((await code.locator("span[class^=hljs-]").count()) > 0, "the code is highlighted");
    assert.ok(!final.includes("**"), "no raw markdown left");
    // the turn's end: usage and cost, and the Interrupt button is gone
    await until(async () => (await pane().locator('[data-testid="turn-cost"]').count()) === 1, "the turn's cost");
    assert.match(await pane().locator('[data-testid="turn-cost"]').innerText(), /^\$\d+\.\d+$/);
    assert.match(await pane().locator('[data-testid="claude-result"]').innerText(), /in \/ .* out/);
    assert.match(await pane().locator('[data-testid="claude-cost"]').innerText(), /^\$\d+\.\d+$/);
    assert.equal(await pane().getByRole("button", { name: "Interrupt" }).count(), 0);
    await shot(page, "claude-01-answer");
  });

  test("a Bash tool call asks for permission; allowed, it runs and its result shows in the card", async () => {
    const proof = join(gw.dataDir, "data", "workspaces", alice.user, workspace, "proof.txt");
    const box = pane().getByLabel("Message Claude");
    await box.fill("Please create proof.txt");
    await box.press("Enter");
    const dialog = pane().getByRole("alertdialog");
    await dialog.waitFor({ timeout: 60_000 });
    assert.match(await dialog.innerText(), /Claude wants to use Bash/);
    assert.equal((await dialog.getByTestId("permission-input").innerText()).trim(), COMMAND);
    const card = pane().locator('[data-testid="tool-card"][data-tool="Bash"]');
    assert.equal(await card.getAttribute("data-status"), "needs permission");
    assert.equal(existsSync(proof), false, "nothing runs before the answer");
    assert.match(await page.evaluate(() => document.activeElement?.id ?? ""), /^claude-input-/, "the prompt does not take the focus (an Enter must not allow)");
    await shot(page, "claude-02-permission");

    await dialog.getByRole("button", { name: "Allow", exact: true }).click();
    await until(async () => (await card.getAttribute("data-status")) === "done", "the tool card to show the tool's result", 60_000);
    assert.equal(await pane().getByRole("alertdialog").count(), 0, "the permission prompt is gone");
    // collapsed by default; opened, it shows input and result
    assert.equal(await card.locator('[data-testid="tool-result"]').isVisible(), false, "the card starts collapsed");
    await card.locator("summary").click();
    assert.equal((await card.locator('[data-testid="tool-result"]').innerText()).trim(), PROOF);
    assert.match(await card.locator('[data-testid="tool-input"]').innerText(), /"command": "printf/);
    assert.equal(readFileSync(proof, "utf8"), `${PROOF}\n`, "the file exists in the workspace");
    await until(async () => (await assistantTexts()).some((t) => t.includes(DONE)), "the closing answer", 60_000);
    await until(async () => (await pane().locator('[data-testid="turn-cost"]').count()) === 2, "the second turn's cost");
    await shot(page, "claude-03-tool-result");
  });

  test("a reload replays the conversation without doubling it", async () => {
    const count = async () => ({
      users: await pane().locator('[data-testid="claude-user"]').count(),
      assistants: await pane().locator('[data-testid="claude-assistant"]').count(),
      tools: await pane().locator('[data-testid="tool-card"]').count(),
      results: await pane().locator('[data-testid="claude-result"]').count(),
    });
    const before = await count();
    assert.deepEqual(before, { users: 2, assistants: 3, tools: 1, results: 2 });
    await page.reload();
    await pane().waitFor();
    await until(async () => (await assistantTexts()).some((t) => t.includes(DONE)), "the replayed conversation");
    // a dropped connection replays from the last seq seen: still nothing twice
    await page.evaluate(() => window.__dispatch?.dropConnection?.());
    await until(async () => (await page.evaluate(() => window.__dispatch?.states ?? [])).filter((s) => s === "open").length >= 2, "the reconnect");
    await until(async () => JSON.stringify(await count()) === JSON.stringify(before), "the same conversation after reload and reconnect", 10_000);
    const card = pane().locator('[data-testid="tool-card"]');
    assert.equal(await card.getAttribute("data-status"), "done");
    assert.equal(await pane().getByRole("alertdialog").count(), 0, "a settled permission request does not come back");
  });

  test("the history lists the conversation and shows its transcript", async () => {
    await page.getByRole("button", { name: "Claude history" }).click();
    const row = page.getByTestId("claude-history-row").filter({ hasText: "Say hello" });
    await row.waitFor();
    await row.getByRole("button", { name: "View" }).click();
    const transcript = page.getByTestId("claude-transcript");
    await transcript.waitFor();
    await until(async () => (await transcript.innerText()).includes(DONE), "the transcript's closing answer");
    const text = await transcript.innerText();
    assert.match(text, /Please create proof\.txt/);
    assert.equal(await transcript.locator('[data-testid="tool-card"][data-tool="Bash"]').count(), 1);
    await shot(page, "claude-04-transcript");
    await page.getByRole("button", { name: "Close", exact: true }).click();
    await transcript.waitFor({ state: "hidden" });
    const requests = await model.requests();
    assert.equal(requests.filter((r) => r.uri.startsWith("/v1/messages")).length, 3, "one model request per scripted turn");
  });

  test("a denied tool call does not run, and the model is told why", async () => {
    const denied = join(gw.dataDir, "data", "workspaces", alice.user, workspace, "denied.txt");
    await model.addTurns([{ tool_use: { name: "Bash", input: { command: "touch denied.txt", description: "Write denied.txt" } } }, { text: "Understood, I left it alone." }]);
    const box = pane().getByLabel("Message Claude");
    await box.fill("Create denied.txt");
    await box.press("Enter");
    const dialog = pane().getByRole("alertdialog");
    await dialog.waitFor({ timeout: 60_000 });
    await dialog.getByRole("button", { name: "Deny…" }).click();
    await dialog.getByLabel("Reason (optional, told to Claude)").fill("Not in this workspace, thanks.");
    await dialog.getByRole("button", { name: "Deny", exact: true }).click();
    const card = pane().locator('[data-testid="tool-card"][data-tool="Bash"]').nth(1);
    await until(async () => (await card.getAttribute("data-status")) === "denied", "the card to show the denial", 30_000);
    await until(async () => (await assistantTexts()).some((t) => t.includes("Understood, I left it alone.")), "the answer after the denial", 60_000);
    assert.equal(existsSync(denied), false, "the denied command did not run");
    const requests = await model.requests();
    assert.match(JSON.stringify(requests[requests.length - 1].body.messages), /Not in this workspace, thanks\./, "the reason reached the model");
  });

  test("Interrupt stops a streaming answer and the session goes on", async () => {
    const words = Array.from({ length: 80 }, (_, i) => `word${i}`).join(" ");
    await model.addTurns([{ text: words, delay_ms: 150 }]);
    const results = pane().locator('[data-testid="claude-result"]');
    const before = await results.count();
    const box = pane().getByLabel("Message Claude");
    await box.fill("Tell me a long story");
    await box.press("Enter");
    await until(async () => (await assistantTexts()).some((t) => t.startsWith("word0 word1")), "the story to start streaming", 60_000);
    await pane().getByRole("button", { name: "Interrupt" }).click();
    await until(async () => (await results.count()) === before + 1, "the interrupted turn to end", 30_000);
    await until(async () => (await pane().getByRole("button", { name: "Interrupt" }).count()) === 0, "the Interrupt button to go");
    const story = (await assistantTexts()).find((t) => t.startsWith("word0"));
    assert.ok(!story.includes("word79"), "the answer stopped early");
    assert.equal(await pane().getByLabel("Message Claude").isDisabled(), false, "the session goes on");
  });

  test("a stopped conversation resumes from the history, with its earlier messages", async () => {
    await page.getByRole("button", { name: "Stop", exact: true }).click();
    await page.getByRole("button", { name: "Stop session" }).click();
    await pane().getByTestId("claude-ended").waitFor({ timeout: 30_000 });
    assert.equal(await pane().getByLabel("Message Claude").isDisabled(), true);
    await model.addTurns([{ text: "Welcome back." }]);
    await page.getByRole("button", { name: "Claude history" }).click();
    const row = page.getByTestId("claude-history-row");
    await row.first().waitFor();
    await shot(page, "claude-06-history");
    assert.equal(await row.count(), 1, "one conversation in this workspace");
    await row.getByRole("button", { name: "Resume" }).click();
    await until(async () => (await page.locator('[data-testid="claude-pane"]').count()) === 2, "a second Claude pane");
    const earlier = pane().locator(".earlier");
    await until(async () => (await earlier.count()) === 1 && (await earlier.innerText()).includes(DONE), "the earlier messages, from the transcript", 30_000);
    const box = pane().getByLabel("Message Claude");
    await box.fill("Are you back?");
    await box.press("Enter");
    await until(async () => (await assistantTexts()).some((t) => t.includes("Welcome back.")), "the resumed conversation's answer", 60_000);
    const requests = await model.requests();
    const last = JSON.stringify(requests[requests.length - 1].body.messages);
    assert.match(last, /Please create proof\.txt/, "the resumed request carries the earlier conversation");
    assert.match(last, /Are you back\?/);
    await shot(page, "claude-07-resumed");
  });

  test("an API error is shown in the pane", async () => {
    await model.addTurns([{ error: { status: 529 } }]);
    const box = pane().getByLabel("Message Claude");
    await box.fill("Are you there?");
    await box.press("Enter");
    const alert = pane().locator('[data-testid="claude-assistant"][role="alert"]');
    await alert.waitFor({ timeout: 60_000 });
    assert.match(await alert.innerText(), /API Error: 529/);
    assert.equal(await alert.count(), 1, "said once");
    await until(async () => /✗ API error 529/.test(await pane().locator('[data-testid="claude-result"]').last().innerText()), "the failed turn's end");
    assert.equal(await pane().getByLabel("Message Claude").isDisabled(), false, "the session goes on after an API error");
    await shot(page, "claude-08-api-error");
  });

  test("the pane fits a phone screen", async () => {
    await page.setViewportSize({ width: 390, height: 760 });
    try {
      const overflow = await page.evaluate(() => {
        const el = document.querySelector('[data-testid="claude-pane"]:not(.hidden) .scroll');
        return el ? el.scrollWidth - el.clientWidth : null;
      });
      assert.equal(overflow, 0, "no sideways scrolling");
      await shot(page, "claude-09-phone");
    } finally {
      await page.setViewportSize({ width: 1200, height: 800 });
    }
  });

  test("no errors in the page console", () => {
    assert.deepEqual(consoleErrors, []);
  });
});

describe("Claude pane without a CLI", () => {
  let gw2;
  let browser2;
  before(async () => {
    gw2 = await startGateway({ users: [alice], name: "gateway-claude-missing", env: { DISPATCH_CLAUDE_BIN: "/nonexistent/claude", ANTHROPIC_API_KEY: "sk-ant-test-not-a-real-key" } });
    browser2 = await launchBrowser();
  });
  after(async () => {
    await browser2?.close();
    await gw2?.stop();
  });

  test("starting a session says plainly that Claude is unavailable", async () => {
    const p = await (await browser2.newContext()).newPage();
    await openWorkspace(p, gw2.url, `nocli-${randomTag()}`);
    await p.getByRole("button", { name: "New Claude session" }).click();
    const toast = p.locator(".toast").filter({ hasText: "Claude Code CLI was not found" });
    await toast.waitFor({ timeout: 30_000 });
    assert.doesNotMatch(await toast.innerText(), /claude_unavailable/, "no error codes in messages for people");
    assert.equal(await toast.count(), 1, "said once");
    assert.equal(await p.locator('[data-testid="claude-pane"]').count(), 0, "no pane for a session that never started");
    await shot(p, "claude-05-unavailable");
  });
});
