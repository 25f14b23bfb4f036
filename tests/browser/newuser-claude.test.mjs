// What a new user trips on (issue 13), the Claude side, in a real Chromium
// against the real gateway, agent and Claude Code CLI (talking to the
// scripted model server on loopback): raw HTML in answers shown as text, a
// slash command's reply in its place, one stable and renamable title, the
// model and permission-mode pickers (also in a running session), copy
// buttons, Retry after an API error, resuming an open or ended
// conversation, and Claude in local mode without a key: what the pane says,
// and a login made in a workspace terminal that the pane then uses, with one
// shared history.

import assert from "node:assert/strict";
import { delimiter, dirname, join } from "node:path";
import { mkdirSync, writeFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { activeSession, launchBrowser, openTerminal, paneText, randomKey, randomTag, shot, startGateway, typeLine, until, waitForLine } from "./harness.mjs";
import { CLAUDE_BIN, startModelServer } from "./model-server.mjs";

const alice = { user: "alice", key: `alice-${randomKey()}` };
const FIRST = "Plan the release notes";
const TAGGED = "Use Option<T> or Vec<u8>, then pass a <path> to it.\n\n<div>raw html stays text</div>\n\n```sh\necho copied-code\n```\n\nDone with tags.";

const consoleErrors = [];

async function openWorkspace(p, url, name) {
  await p.goto(`${url}/login?key=${encodeURIComponent(alice.key)}`);
  await p.getByRole("heading", { name: "Workspaces" }).waitFor();
  const status = await p.evaluate(async (name) => (await fetch("/api/workspaces", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name }) })).status, name);
  assert.equal(status, 201, "workspace created");
  await p.goto(`${url}/#/w/${name}`);
  await until(() => p.evaluate(() => window.__dispatch?.listed === true), "the workspace's session list");
}

describe("a new user's Claude pane", () => {
  let model;
  let gw;
  let browser;
  let page;
  const workspace = `cn-${randomTag()}`;
  const pane = () => page.locator('[data-testid="claude-pane"]:visible');
  const assistantTexts = () => pane().locator('[data-testid="claude-assistant"] .md').allInnerTexts();
  const clipboard = () => page.evaluate(() => navigator.clipboard.readText());
  let first; // the first Claude session

  async function ask(text) {
    const box = pane().getByLabel("Message Claude");
    await box.fill(text);
    await box.press("Enter");
  }

  before(async () => {
    model = await startModelServer([{ text: TAGGED }, { text: "Second answer." }], "model-server-newuser");
    gw = await startGateway({
      users: [alice],
      name: "gateway-newuser-claude",
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
    await ctx.grantPermissions(["clipboard-read", "clipboard-write"], { origin: gw.url });
    await openWorkspace(page, gw.url, workspace);
  });

  after(async () => {
    await browser?.close();
    await gw?.stop();
    await model?.stop();
  });

  test("angle brackets and raw HTML in an answer are shown as text; a slash command's reply sits under it", async () => {
    await page.getByRole("button", { name: "New Claude session" }).click();
    await pane().waitFor();
    first = await activeSession(page);
    await ask(FIRST);
    await until(async () => (await assistantTexts()).some((t) => t.includes("Done with tags.")), "the answer", 60_000);
    const answer = (await assistantTexts())[0];
    assert.match(answer, /Use Option<T> or Vec<u8>, then pass a <path> to it\./);
    assert.match(answer, /<div>raw html stays text<\/div>/);
    assert.equal(await pane().locator('[data-testid="claude-assistant"] .md path, [data-testid="claude-assistant"] .md div div').count(), 0, "no element was made of the tags");
    await shot(page, "nu-01-markdown-tags-as-text");
    // The first turn's result is in before the command is sent: a prompt sent while a turn
    // still runs is listed above that turn's result, which is not what this test is about.
    await until(async () => (await pane().locator('[data-testid="claude-result"]').count()) >= 1, "the first turn's result", 60_000);
    // the CLI answers /model itself, without echoing it
    await ask("/model");
    await until(async () => (await assistantTexts()).some((t) => /Usage: \/model <name>/.test(t)), "the /model reply, with its <name>", 60_000);
    await until(async () => (await pane().locator("li.user.queued").count()) === 0, "no prompt left queued at the bottom");
    const order = await pane().locator("ol.list > li").evaluateAll((els) => els.map((e) => (e.classList.contains("user") ? `user:${e.innerText.trim()}` : e.dataset.testid ?? e.className)));
    const cmd = order.indexOf("user:/model");
    assert.ok(cmd > 0, `the command is in the conversation (${order.join(", ")})`);
    assert.equal(order[cmd + 1], "claude-assistant", `its reply follows it (${order.join(", ")})`);
    await shot(page, "nu-06-slash-command-reply");
  });

  test("one stable title for a conversation, in the tab, the session list and the history; renamed, everywhere", async () => {
    await ask("Another question");
    await until(async () => (await assistantTexts()).some((t) => t.includes("Second answer.")), "the second answer", 60_000);
    const tab = page.locator(`#tab-${first}`);
    await until(async () => (await tab.innerText()).includes(FIRST), "the tab named after the first prompt");
    await page.getByRole("button", { name: "Claude history" }).click();
    const row = page.getByTestId("claude-history-row");
    await row.first().waitFor();
    assert.equal((await row.first().locator(".row-title").innerText()).trim(), FIRST, "the history names it as the tab does, not by the latest prompt");
    await page.keyboard.press("Escape");
    await page.locator("header.top").click();
    // rename it from the tab
    await tab.dblclick();
    await page.getByLabel("Name of this tab").fill("Release plan");
    await page.getByLabel("Name of this tab").press("Enter");
    await until(async () => (await page.locator(`#tab-${first}`).innerText()).includes("Release plan"), "the new name on the tab");
    await page.getByRole("button", { name: /^Sessions/ }).click();
    assert.match(await page.getByRole("dialog", { name: "All sessions" }).innerText(), /Release plan/);
    await page.keyboard.press("Escape");
    await page.getByRole("button", { name: "Claude history" }).click();
    await until(async () => (await page.getByTestId("claude-history-row").first().locator(".row-title").innerText()).trim() === "Release plan", "the new name in the history");
    await shot(page, "nu-03-claude-title-renamed");
    await page.locator("header.top").click();
  });

  test("the model and the permission mode change in a running session", async () => {
    await pane().getByLabel("Model").selectOption("haiku");
    await model.addTurns([{ text: "Model noted." }]);
    await ask("Which model now?");
    await until(async () => (await assistantTexts()).some((t) => t.includes("Model noted.")), "the answer", 60_000);
    const reqs = await model.messageRequests();
    assert.match(String(reqs.at(-1).body.model), /haiku/, `the turn ran on the chosen model (${reqs.at(-1).body.model})`);
    assert.doesNotMatch(String(reqs[0].body.model), /haiku/);
    // the CLI's note about the change shows as a notice, not as something the user said
    assert.ok(!(await pane().locator('[data-testid="claude-user"]').allInnerTexts()).some((t) => t.includes("local-command")), "no CLI markup in the user's bubbles");
    const mode = pane().getByLabel("Permission mode");
    await mode.selectOption("plan");
    // the CLI confirms: the picker shows what is in force, and the next turn plans
    await until(async () => (await mode.inputValue()) === "plan", "the plan mode confirmed");
    await model.addTurns([{ text: "Here is a plan." }]);
    await ask("What would you change?");
    await until(async () => (await assistantTexts()).some((t) => t.includes("Here is a plan.")), "the planned answer", 60_000);
    assert.match(JSON.stringify((await model.messageRequests()).at(-1).body), /[Pp]lan mode/, "the CLI told the model it is in plan mode");
    await shot(page, "nu-06-mode-and-model-pickers");
  });

  test("copy buttons on code blocks and messages", async () => {
    const answer = pane().locator('[data-testid="claude-assistant"]').first();
    await answer.hover();
    await answer.getByRole("button", { name: "Copy code" }).click();
    await until(async () => (await clipboard()).trim() === "echo copied-code", "the code on the clipboard");
    await answer.getByRole("button", { name: "Copy message" }).click();
    await until(async () => (await clipboard()).includes("Use Option<T> or Vec<u8>"), "the message on the clipboard");
    assert.match(await clipboard(), /```sh/, "the message is copied as its markdown");
  });

  test("Retry after an API error sends the prompt again", async () => {
    await model.addTurns([{ error: { status: 529 } }, { text: "Back again." }]);
    await ask("Are you there?");
    const retry = pane().getByRole("button", { name: "Retry" });
    await retry.waitFor({ timeout: 60_000 });
    await shot(page, "nu-06-retry-after-api-error");
    await retry.click();
    await until(async () => (await assistantTexts()).some((t) => t.includes("Back again.")), "the answer after Retry", 60_000);
    const reqs = await model.messageRequests();
    assert.match(JSON.stringify(reqs.at(-1).body.messages), /Are you there\?/);
    assert.equal(await retry.count(), 0, "no Retry once the turn succeeded");
  });

  test("a new session with a chosen model and permission mode", async () => {
    await page.getByRole("button", { name: "Claude session options" }).click();
    const opts = page.getByRole("dialog", { name: "Claude session options" });
    await opts.getByLabel("Permission mode").selectOption("acceptEdits");
    await opts.getByLabel("Model").selectOption("sonnet");
    await shot(page, "nu-06-new-session-options");
    await opts.getByRole("button", { name: "Start" }).click();
    await until(async () => (await activeSession(page)) !== first, "the new session's tab");
    await model.addTurns([{ text: "Options applied." }]);
    await ask("Hello with options");
    await until(async () => (await assistantTexts()).some((t) => t.includes("Options applied.")), "its answer", 60_000);
    assert.equal(await pane().getByLabel("Permission mode").inputValue(), "acceptEdits");
    const reqs = await model.messageRequests();
    assert.match(String(reqs.at(-1).body.model), /sonnet/);
  });

  test("resuming an open conversation goes to its tab; an ended pane has Resume; no ids in messages", async () => {
    const panes = await page.locator('[data-testid="claude-pane"]').count();
    await page.getByRole("button", { name: "Claude history" }).click();
    const row = page.getByTestId("claude-history-row").filter({ hasText: "Release plan" });
    await row.getByRole("button", { name: "Resume" }).click();
    await until(async () => (await activeSession(page)) === first, "the conversation's own tab");
    assert.equal(await page.locator('[data-testid="claude-pane"]').count(), panes, "no second pane for it");
    assert.equal(await page.locator(".toast.error").count(), 0, "no error shown");
    // ended: its pane offers Resume
    await page.getByRole("button", { name: "Stop", exact: true }).click();
    await page.getByRole("button", { name: "Stop session" }).click();
    await pane().getByTestId("claude-ended").waitFor({ timeout: 30_000 });
    await shot(page, "nu-04-ended-pane-resume");
    await pane().getByRole("button", { name: "Resume" }).click();
    await until(async () => (await page.locator('[data-testid="claude-pane"]').count()) === panes + 1, "a new pane for the resumed conversation");
    await until(async () => (await pane().locator(".earlier").count()) === 1 && (await pane().locator(".earlier").innerText()).includes("Second answer."), "its earlier messages", 30_000);
    await model.addTurns([{ text: "Resumed fine." }]);
    await ask("Still there?");
    await until(async () => (await assistantTexts()).some((t) => t.includes("Resumed fine.")), "the resumed answer", 60_000);
    const shown = (await page.locator(".toast").allInnerTexts()).join(" ");
    assert.doesNotMatch(shown, /[0-9a-f]{8}-[0-9a-f]{4}|\b[ct][0-9a-f]{16}\b|already_exists|_/, "no raw ids or codes");
    await shot(page, "nu-04-resumed");
  });

  test("the page logged no errors", () => {
    assert.deepEqual(consoleErrors, []);
  });
});

describe("Claude in local mode without a key", () => {
  let model;
  let gw;
  let browser;
  let page;
  const workspace = `lo-${randomTag()}`;

  before(async () => {
    model = await startModelServer([{ text: "Hello from the terminal's claude." }, { text: "Hello in the pane." }], "model-server-local-login");
    // As ./scripts/run-local.sh runs it: the pinned CLI on PATH and named to
    // the gateway; no ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN.
    const env = {
      PATH: `${dirname(CLAUDE_BIN)}${delimiter}${process.env.PATH}`,
      DISPATCH_CLAUDE_BIN: CLAUDE_BIN,
      ANTHROPIC_BASE_URL: model.url,
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
      CLAUDE_CODE_MAX_RETRIES: "0",
      ANTHROPIC_API_KEY: "",
      CLAUDE_CODE_OAUTH_TOKEN: "",
      ANTHROPIC_AUTH_TOKEN: "",
    };
    gw = await startGateway({ users: [alice], name: "gateway-local-login", env });
    browser = await launchBrowser();
    page = await (await browser.newContext({ viewport: { width: 1200, height: 800 } })).newPage();
    await openWorkspace(page, gw.url, workspace);
  });

  after(async () => {
    await browser?.close();
    await gw?.stop();
    await model?.stop();
  });

  test("the pane says what to do; a login made in a workspace terminal serves the pane, with one history", async () => {
    await page.getByRole("button", { name: "New Claude session" }).click();
    const help = page.getByTestId("claude-help");
    await help.waitFor({ timeout: 30_000 });
    const text = await help.innerText();
    assert.match(text, /run `claude` to log in/);
    assert.match(text, /run-local\.sh/);
    assert.match(text, /Kubernetes/);
    assert.equal(await page.locator('[data-testid="claude-pane"]').count(), 0);
    await shot(page, "nu-02-claude-needs-login");
    await help.getByRole("button", { name: "Close" }).click();

    // a terminal of the workspace shares the pane's config dir, and has the CLI
    const id = await openTerminal(page);
    const cfg = join(gw.dataDir, "data", "workspaces", alice.user, workspace, ".dispatch", "claude");
    await typeLine(page, 'echo "cfg=$CLAUDE_CONFIG_DIR"; command -v claude >/dev/null && echo has-$((1+1))-claude');
    await waitForLine(page, id, /^has-2-claude$/, "claude on the terminal's PATH");
    const line = (await paneText(page, id)).split("\n").find((l) => l.startsWith("cfg="));
    assert.ok(line.endsWith(".dispatch/claude"), line);
    // What a login with an API key in the terminal leaves in that dir (the
    // real login needs Anthropic's servers, which tests never reach).
    mkdirSync(cfg, { recursive: true });
    writeFileSync(join(cfg, ".claude.json"), JSON.stringify({ primaryApiKey: "sk-ant-test-not-a-real-key" }));
    await typeLine(page, "claude -p 'Hello from a terminal' && echo cli-$((1+1))-done");
    await waitForLine(page, id, /^cli-2-done$/, "claude answering in the terminal", 60_000);
    assert.match(await paneText(page, id), /Hello from the terminal's claude\./);
    await shot(page, "nu-02-claude-in-terminal");

    // now the pane starts, with that login
    await page.getByRole("button", { name: "New Claude session" }).click();
    const pane = page.locator('[data-testid="claude-pane"]:visible');
    await pane.waitFor({ timeout: 30_000 });
    await pane.getByLabel("Message Claude").fill("Hello from the pane");
    await pane.getByLabel("Message Claude").press("Enter");
    await until(async () => (await pane.locator('[data-testid="claude-assistant"] .md').allInnerTexts()).some((t) => t.includes("Hello in the pane.")), "the pane's answer", 60_000);
    // and both conversations are in one history (the list is read when opened: open it again until the pane's transcript is there)
    const rows = page.getByTestId("claude-history-row");
    await until(async () => {
      if ((await rows.count()) === 2) return true;
      await page.locator("header.top").click();
      await page.getByRole("button", { name: "Claude history" }).click();
      await rows.first().waitFor();
      return (await rows.count()) === 2;
    }, "two conversations in the history", 30_000);
    const titles = (await rows.locator(".row-title").allInnerTexts()).sort();
    assert.deepEqual(titles, ["Hello from a terminal", "Hello from the pane"]);
    await shot(page, "nu-02-shared-history");
  });
});
