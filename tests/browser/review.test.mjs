// Reviewing what Claude does, in a real Chromium against the real gateway,
// agent and Claude Code CLI (scripted model on loopback), with real files
// and a real git (issue 14): Edit and Write permission prompts show a diff
// against the file on disk; files dropped on the terminal upload with a
// progress bar and download again byte for byte (a folder as tar); an edit
// saved over a file that changed on disk shows both versions; a commit made
// in the git panel is in the repository; a turn's changes (by its tools and
// its shell) are listed with their diff and undone. Any missing part fails
// the test.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { activeSession, launchBrowser, openTerminal, randomKey, randomTag, shot, startGateway, until } from "./harness.mjs";
import { CLAUDE_BIN, startModelServer } from "./model-server.mjs";

const alice = { user: "alice", key: `alice-${randomKey()}` };
const workspace = `rv-${randomTag()}`;

let model;
let gw;
let browser;
let page;
let dir;
const consoleErrors = [];

const pane = () => page.locator('[data-testid="claude-pane"]:visible');
const dock = () => page.getByTestId("review-dock");
const sha256 = (buf) => createHash("sha256").update(buf).digest("hex");

/** The source file the Edit changes: 40 lines, line 21 is the one edited. */
const SOURCE = Array.from({ length: 40 }, (_, i) => (i === 20 ? "export const limit = 10;" : `export function f${i}(x: number): number { return x + ${i}; }`)).join("\n") + "\n";

async function openDock(tab) {
  if ((await dock().count()) === 0) await page.getByTestId("files-toggle").click();
  await dock().waitFor();
  await dock().getByRole("tab", { name: tab }).click();
}

describe("review in Chromium: diffs, files, uploads, conflicts, git", () => {
  before(async () => {
    if (!existsSync(CLAUDE_BIN)) throw new Error(`the Claude Code CLI is not installed at ${CLAUDE_BIN}: run ./scripts/setup.sh or set DISPATCH_CLAUDE_BIN`);
    model = await startModelServer([], "model-server-review");
    gw = await startGateway({
      users: [alice],
      name: "gateway-review",
      env: {
        ANTHROPIC_BASE_URL: model.url,
        ANTHROPIC_API_KEY: "sk-ant-test-not-a-real-key",
        DISPATCH_CLAUDE_BIN: CLAUDE_BIN,
        CLAUDE_CODE_MAX_RETRIES: "0",
      },
    });
    browser = await launchBrowser();
    const ctx = await browser.newContext({ viewport: { width: 1400, height: 900 }, acceptDownloads: true });
    page = await ctx.newPage();
    page.on("console", (m) => {
      if (m.type() === "error") consoleErrors.push(m.text());
    });
    page.on("pageerror", (e) => consoleErrors.push(String(e)));
    await page.goto(`${gw.url}/login?key=${encodeURIComponent(alice.key)}`);
    await page.getByRole("heading", { name: "Workspaces" }).waitFor();
    const status = await page.evaluate(async (name) => (await fetch("/api/workspaces", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name }) })).status, workspace);
    assert.equal(status, 201, "workspace created");
    dir = realpathSync(join(gw.dataDir, "data", "workspaces", alice.user, workspace));
    mkdirSync(join(dir, "src"), { recursive: true });
    writeFileSync(join(dir, "src/app.ts"), SOURCE);
    await page.goto(`${gw.url}/#/w/${workspace}`);
    await until(() => page.evaluate(() => window.__dispatch?.listed === true), "the workspace's session list");
  });

  after(async () => {
    await browser?.close();
    await gw?.stop();
    await model?.stop();
  });

  test("Edit and Write prompts show the change as a diff against the file on disk", async () => {
    const app = join(dir, "src/app.ts");
    const fresh = join(dir, "notes/todo.md");
    await model.addTurns([
      { tool_use: { name: "Read", input: { file_path: app } } },
      { tool_use: { name: "Edit", input: { file_path: app, old_string: "export const limit = 10;", new_string: "export const limit = 25;" } } },
      { tool_use: { name: "Write", input: { file_path: fresh, content: "# To do\n\n- review the limit\n- ship it\n" } } },
      { text: "Raised the limit and wrote notes/todo.md." },
    ]);
    await page.getByRole("button", { name: "New Claude session" }).click();
    await pane().waitFor();
    const box = pane().getByLabel("Message Claude");
    await box.fill("Raise the limit and write a to-do list");
    await box.press("Enter");

    const dialog = pane().getByTestId("permission-dialog");
    // A Read may ask too (depends on the CLI's defaults): allowed.
    await until(async () => {
      if ((await dialog.count()) === 0) return false;
      const text = await dialog.innerText();
      if (/wants to use Read/.test(text)) {
        await dialog.getByRole("button", { name: "Allow", exact: true }).click();
        return false;
      }
      return /wants to use Edit/.test(text);
    }, "the Edit permission prompt", 90_000);
    const diff = dialog.getByTestId("diff-view");
    await diff.waitFor();
    assert.equal(await diff.getAttribute("data-path"), "src/app.ts", "the path, relative to the workspace");
    assert.equal(await diff.getAttribute("data-added"), "1");
    assert.equal(await diff.getAttribute("data-removed"), "1");
    const del = diff.locator(".l.del");
    const add = diff.locator(".l.add");
    assert.equal(await del.count(), 1);
    assert.equal(await add.count(), 1);
    assert.equal((await del.locator(".c").innerText()).trim(), "export const limit = 10;");
    assert.equal((await add.locator(".c").innerText()).trim(), "export const limit = 25;");
    // word level: only the number is marked; line numbers from the file on disk
    assert.equal(await del.locator("mark").innerText(), "10");
    assert.equal(await add.locator("mark").innerText(), "25");
    assert.equal((await del.locator(".n").first().innerText()).trim(), "21");
    assert.equal((await add.locator(".n").nth(1).innerText()).trim(), "21");
    // context lines around it, syntax colours
    assert.equal(await diff.locator(".l.ctx").count(), 6);
    assert.ok((await diff.locator(".hljs-keyword").count()) > 0, "the code is highlighted");
    assert.equal(readFileSync(app, "utf8"), SOURCE, "nothing changed before the answer");
    await shot(page, "review-01-edit-diff");
    await dialog.getByRole("button", { name: "Allow", exact: true }).click();

    await until(async () => (await dialog.count()) > 0 && /wants to use Write/.test(await dialog.innerText()), "the Write permission prompt", 90_000);
    const wdiff = dialog.getByTestId("diff-view");
    await wdiff.waitFor();
    assert.equal(await wdiff.getAttribute("data-path"), "notes/todo.md");
    assert.match(await wdiff.locator(".head").innerText(), /new file/);
    assert.equal(await wdiff.locator(".l.add").count(), 4, "a new file's lines, all added");
    assert.equal(await wdiff.locator(".l.del, .l.ctx").count(), 0);
    await shot(page, "review-02-write-diff");
    await dialog.getByRole("button", { name: "Allow", exact: true }).click();

    await until(() => existsSync(fresh), "notes/todo.md on disk", 60_000);
    assert.equal(readFileSync(app, "utf8"), SOURCE.replace("limit = 10", "limit = 25"), "the edit was made");
    // The Edit's card, once the tool ran, still shows the diff against the text before it.
    const card = pane().locator('[data-testid="tool-card"][data-tool="Edit"]');
    await until(async () => (await card.getAttribute("data-status")) === "done", "the Edit card done", 60_000);
    await card.locator("summary").click();
    const cdiff = card.getByTestId("diff-view");
    await cdiff.waitFor();
    assert.equal((await cdiff.locator(".l.del .c").innerText()).trim(), "export const limit = 10;");
    assert.equal((await cdiff.locator(".l.add .c").innerText()).trim(), "export const limit = 25;");
  });

  test("files dropped on the terminal upload with progress and download byte for byte; a folder downloads as tar", async () => {
    const size = 6 * 1024 * 1024;
    await openTerminal(page);
    const term = await activeSession(page);
    // Slow the upload (Chromium's own throttling) so progress has time to show.
    const cdp = await page.context().newCDPSession(page);
    await cdp.send("Network.enable");
    await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 2 * 1024 * 1024 });
    try {
      await page.evaluate(([size, term]) => {
        window.__progress = [];
        const seen = () => {
          for (const p of document.querySelectorAll('[data-testid="upload"] progress')) window.__progress.push([p.value, p.max]);
        };
        window.__progressTimer = setInterval(seen, 25);
        const bytes = new Uint8Array(size);
        for (let i = 0; i < size; i++) bytes[i] = (i * 31 + (i >> 11)) & 0xff;
        const file = new File([bytes], "big.bin", { type: "application/octet-stream" });
        const dt = new DataTransfer();
        dt.items.add(file);
        // onto the terminal itself (xterm's screen), as a user drops a file
        const target = document.querySelector(`#panel-${term} .xterm-screen`);
        for (const type of ["dragenter", "dragover", "drop"]) target.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: dt }));
      }, [size, term]);
      const row = dock().locator('[data-testid="upload"][data-path="big.bin"]');
      await row.waitFor({ timeout: 30_000 });
      await until(async () => (await row.getAttribute("data-status")) === "done", "the upload to finish", 120_000);
    } finally {
      await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    }
    const progress = await page.evaluate(() => {
      clearInterval(window.__progressTimer);
      return window.__progress;
    });
    assert.ok(progress.some(([v, max]) => v > 0 && v < max && max === 6 * 1024 * 1024), `the bar showed the upload part way (${JSON.stringify(progress.slice(0, 5))}...)`);
    const expected = new Uint8Array(size);
    for (let i = 0; i < size; i++) expected[i] = (i * 31 + (i >> 11)) & 0xff;
    const onDisk = readFileSync(join(dir, "big.bin"));
    assert.equal(onDisk.length, size);
    assert.equal(sha256(onDisk), sha256(expected), "the uploaded file, byte for byte");
    await shot(page, "review-03-upload");

    // Download it back from the files panel.
    await openDock("Files");
    const fileRow = dock().locator('[data-testid="file-row"][data-path="big.bin"]');
    await fileRow.waitFor();
    await fileRow.hover();
    const [download] = await Promise.all([page.waitForEvent("download"), fileRow.getByRole("link", { name: "Download big.bin" }).click()]);
    assert.equal(download.suggestedFilename(), "big.bin");
    const got = readFileSync(await download.path());
    assert.equal(sha256(got), sha256(expected), "the downloaded file, byte for byte");
    // The response says its length: the browser shows the download's progress.
    const head = await page.evaluate(async (ws) => {
      const r = await fetch(`/api/workspaces/${ws}/files/content?path=big.bin&download=1`);
      const len = r.headers.get("content-length");
      await r.body.cancel();
      return { status: r.status, len, disposition: r.headers.get("content-disposition") };
    }, workspace);
    assert.equal(head.status, 200);
    assert.equal(Number(head.len), size);
    assert.match(head.disposition ?? "", /attachment/);

    // A folder, as a tar stream.
    const srcRow = dock().locator('[data-testid="file-row"][data-path="src"]');
    await srcRow.hover();
    const [tarDl] = await Promise.all([page.waitForEvent("download"), srcRow.getByRole("link", { name: "Download src as a tar archive" }).click()]);
    const tar = readFileSync(await tarDl.path());
    const listing = execFileSync("tar", ["-tf", "-"], { input: tar }).toString();
    assert.match(listing, /app\.ts/, `the tar holds src/app.ts (${listing})`);
  });

  test("saving over a file that changed on disk shows both versions; the user's is kept when chosen", async () => {
    const path = join(dir, "src/conf.txt");
    writeFileSync(path, "alpha\nbeta\ngamma\n");
    await openDock("Files");
    await dock().getByRole("button", { name: "Refresh the file list" }).click();
    const srcRow = dock().locator('[data-testid="file-row"][data-path="src"]');
    if ((await srcRow.locator("button.entry").getAttribute("aria-expanded")) !== "true") await srcRow.locator("button.entry").click();
    await dock().locator('[data-testid="file-row"][data-path="src/conf.txt"] button.entry').click();
    const editor = dock().getByTestId("file-editor");
    await editor.locator(".cm-content").waitFor();
    await until(async () => (await editor.locator(".cm-content").innerText()).includes("gamma"), "the file in the editor");
    // Someone else changes the file meanwhile.
    writeFileSync(path, "alpha\nBETA FROM DISK\ngamma\n");
    await editor.locator(".cm-line", { hasText: "gamma" }).click();
    await page.keyboard.press("End");
    await page.keyboard.type(" mine");
    await editor.getByTestId("editor-dirty").waitFor();
    await page.keyboard.press("Control+s");
    const conflict = editor.getByTestId("edit-conflict");
    await conflict.waitFor({ timeout: 15_000 });
    const merge = editor.locator(".cm-mergeView");
    await until(async () => {
      const t = await merge.innerText();
      return t.includes("BETA FROM DISK") && t.includes("gamma mine");
    }, "both versions side by side");
    assert.equal(readFileSync(path, "utf8"), "alpha\nBETA FROM DISK\ngamma\n", "nothing written over the other change");
    await shot(page, "review-04-conflict");
    await conflict.getByRole("button", { name: "Save my version" }).click();
    await conflict.waitFor({ state: "detached" });
    assert.equal(readFileSync(path, "utf8"), "alpha\nbeta\ngamma mine\n", "the user's version, saved over the one on disk");
    // The next save goes over the version just written: no conflict.
    await editor.locator(".cm-line", { hasText: "alpha" }).click();
    await page.keyboard.press("End");
    await page.keyboard.type("!");
    await page.keyboard.press("Control+s");
    await until(() => readFileSync(path, "utf8") === "alpha!\nbeta\ngamma mine\n", "the second save");
    assert.equal(await editor.getByTestId("edit-conflict").count(), 0);
    await editor.getByRole("button", { name: "Back to the file list" }).click();
  });

  test("the git panel: no repository, git init, stage, commit, the commit's diff", async () => {
    writeFileSync(join(dir, "README.md"), "# Review\n\nA workspace under review.\n");
    await openDock("Git");
    const git = dock().getByTestId("git-panel");
    await git.getByTestId("git-norepo").waitFor();
    await git.getByRole("button", { name: "git init" }).click();
    // Untracked: the new files, and folders as a whole (git's --untracked-files=normal).
    await git.locator('[data-testid="git-unstaged"][data-path="src/"]').waitFor({ timeout: 15_000 });
    assert.ok(existsSync(join(dir, ".git")), "a repository now");
    // A commit needs an identity, which this machine may not have: the repository gets one.
    execFileSync("git", ["-C", dir, "config", "user.name", "Review Test"]);
    execFileSync("git", ["-C", dir, "config", "user.email", "review@example.invalid"]);
    // An untracked file's diff shows it as new.
    await git.locator('[data-testid="git-unstaged"][data-path="README.md"] button.name').click();
    const shown = git.getByTestId("git-diff");
    await shown.locator(".l.add", { hasText: "A workspace under review." }).waitFor();
    await git.locator('[data-testid="git-unstaged"][data-path="src/"]').getByRole("button", { name: "Stage src/" }).click();
    await git.locator('[data-testid="git-staged"][data-path="src/app.ts"]').waitFor();
    await git.locator('[data-testid="git-staged"][data-path="src/conf.txt"]').waitFor();
    await git.getByLabel("Commit message").fill("Raise the limit");
    await git.getByRole("button", { name: /^Commit/ }).click();
    const commit = git.locator('[data-testid="git-commit"]').first();
    await until(async () => (await commit.count()) > 0 && (await commit.innerText()).includes("Raise the limit"), "the commit in the log");
    const subject = execFileSync("git", ["-C", dir, "log", "-1", "--format=%s"]).toString().trim();
    assert.equal(subject, "Raise the limit");
    const files = execFileSync("git", ["-C", dir, "show", "--name-only", "--format=", "HEAD"]).toString().trim().split("\n");
    assert.deepEqual(files, ["src/app.ts", "src/conf.txt"], "only the staged files were committed");
    assert.equal(await git.locator('[data-testid="git-staged"]').count(), 0, "nothing staged after the commit");
    await commit.locator("button.name").click();
    const committed = shown.locator('[data-testid="diff-view"][data-path="src/app.ts"]');
    await committed.waitFor();
    // New in the first commit: all 40 lines added (only those in sight are drawn).
    assert.equal(await committed.getAttribute("data-added"), "40");
    // A change after the commit: its working-tree diff, word level.
    writeFileSync(join(dir, "src/app.ts"), SOURCE.replace("limit = 10", "limit = 50"));
    await git.getByRole("button", { name: "Refresh git status" }).click();
    await git.locator('[data-testid="git-unstaged"][data-path="src/app.ts"] button.name').click();
    await shown.locator(".l.add mark", { hasText: "50" }).waitFor();
    await shot(page, "review-05-git");
  });

  test("after a turn, its changed files and combined diff; undo this turn puts them back exactly", async () => {
    const readme = join(dir, "README.md");
    const conf = join(dir, "src/conf.txt");
    const made = join(dir, "gen/new.txt");
    const readmeBefore = readFileSync(readme, "utf8");
    const confBefore = readFileSync(conf, "utf8");
    await model.addTurns([
      { tool_use: { name: "Read", input: { file_path: readme } } },
      { tool_use: { name: "Edit", input: { file_path: readme, old_string: "A workspace under review.", new_string: "A workspace Claude changed." } } },
      { tool_use: { name: "Write", input: { file_path: made, content: "generated\n" } } },
      { tool_use: { name: "Bash", input: { command: "rm src/conf.txt", description: "Remove conf.txt" } } },
      { text: "Edited the README, wrote gen/new.txt and removed src/conf.txt." },
    ]);
    await page.locator(".tab-main", { hasText: "Raise the limit" }).click();
    await pane().waitFor();
    const box = pane().getByLabel("Message Claude");
    await box.fill("Change a few files");
    await box.press("Enter");
    // Allow whatever the turn asks for, until its result.
    const dialog = pane().getByTestId("permission-dialog");
    await until(async () => {
      if ((await dialog.count()) > 0) await dialog.getByRole("button", { name: "Allow", exact: true }).click();
      return (await pane().locator('[data-testid="claude-result"]').count()) === 2;
    }, "the second turn's result", 120_000);
    assert.ok(!existsSync(conf) && existsSync(made), "the turn ran: conf.txt removed, gen/new.txt made");
    const turn = pane().getByTestId("turn-changes").filter({ hasText: "README.md" });
    await turn.waitFor({ timeout: 30_000 });
    await turn.locator("summary").click();
    const listed = await turn.locator(".files li").allInnerTexts();
    assert.deepEqual(listed.map((t) => t.trim()).sort(), ["added gen/new.txt", "deleted src/conf.txt", "modified README.md"], "the files the turn changed, by its tools and its shell");
    await turn.locator('[data-testid="diff-view"][data-path="README.md"] .l.add mark', { hasText: "Claude" }).waitFor();
    assert.equal(await turn.locator('[data-testid="diff-view"][data-path="gen/new.txt"]').getAttribute("data-added"), "1");
    assert.equal(await turn.locator('[data-testid="diff-view"][data-path="src/conf.txt"]').getAttribute("data-removed"), "3");
    // The first turn has its own list (src/app.ts, notes/todo.md).
    assert.equal(await pane().getByTestId("turn-changes").count(), 2);
    // The open files panel follows the turn without a refresh: its new folder is listed.
    await openDock("Files");
    await dock().locator('[data-testid="file-row"][data-path="gen"]').waitFor({ timeout: 10_000 });
    await shot(page, "review-06-turn-changes");
    await turn.getByRole("button", { name: "Undo this turn" }).click();
    await turn.getByRole("button", { name: "Undo", exact: true }).click();
    await until(async () => (await turn.getAttribute("data-undone")) === "true", "the turn undone", 30_000);
    assert.equal(readFileSync(readme, "utf8"), readmeBefore, "README.md as before the turn");
    assert.equal(readFileSync(conf, "utf8"), confBefore, "src/conf.txt back, byte for byte");
    assert.ok(!existsSync(made), "gen/new.txt, made by the turn, is gone");
  });

  test("no errors in the page's console", () => {
    // Two failed requests are the point of a test: reading the file a Write creates (404,
    // "new file") and saving over a changed file (412, the conflict). Chromium logs both.
    const expected = [/status of 404 \(Not Found\)/, /status of 412 \(Precondition Failed\)/];
    assert.deepEqual(consoleErrors.filter((e) => !expected.some((re) => re.test(e))), []);
  });
});
