// What a new user trips on (issue 13), the terminal side, in a real Chromium
// against the real gateway and agent: a new workspace opens with a terminal,
// tab names (program title, rename), search as an overlay with a match
// count, the size policy for two viewers, a wrong login link, font size and
// theme remembered, the phone layout (tabs, key toolbar, touch selection and
// copy), and scrollback without an end (1,000,000 lines, bounded memory).

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  activeSession,
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
const workspace = `nu-${randomTag()}`;

let gw;
let browser;
let ctx;
let page;
let session;
const consoleErrors = [];

async function login(p, key = alice.key) {
  await p.goto(`${gw.url}/login?key=${encodeURIComponent(key)}`);
  await p.getByRole("heading", { name: "Workspaces" }).waitFor();
}

const tabOf = (p, id) => p.locator(`#tab-${id}`);
const hook = (p, id, what) => p.evaluate(([id, what]) => window.__dispatch.panes.get(id)[what](), [id, what]);

describe("a new user's terminal", () => {
  before(async () => {
    gw = await startGateway({ users: [alice], name: "gateway-newuser" });
    browser = await launchBrowser();
    ctx = await browser.newContext({ viewport: { width: 1200, height: 760 } });
    page = await ctx.newPage();
    page.on("console", (m) => {
      if (m.type() === "error") consoleErrors.push(`${m.text()} ${m.location()?.url ?? ""}`);
    });
    page.on("pageerror", (e) => consoleErrors.push(String(e)));
    await login(page);
  });

  after(async () => {
    await browser?.close();
    await gw?.stop();
  });

  test("a new workspace opens with a terminal ready", async () => {
    await page.getByLabel("New workspace").fill(workspace);
    await page.getByRole("button", { name: "Create" }).click();
    await page.waitForURL(new RegExp(`#/w/${workspace}`));
    // no click: the terminal is there, with a prompt, and takes typing
    session = await until(async () => {
      const a = await activeSession(page);
      return a && (await paneScreen(page, a))?.trim() ? a : false;
    }, "a terminal in the new workspace", 20_000);
    assert.equal(await page.getByRole("button", { name: "Open a terminal" }).count(), 0);
    const tag = randomTag();
    await page.keyboard.type(`echo ready-${tag}`);
    await page.keyboard.press("Enter");
    await waitForLine(page, session, new RegExp(`^ready-${tag}$`), "typing into the first terminal");
    await shot(page, "nu-07-new-workspace-terminal");
  });

  test("a tab is named by its program's title, and by the user once renamed, everywhere and after a reload", async () => {
    // the program running in the foreground names the tab
    await typeLine(page, "sleep 600");
    await until(async () => (await tabOf(page, session).innerText()).includes("sleep"), "the foreground program on the tab", 20_000);
    await shot(page, "nu-03-tab-foreground-program");
    await page.keyboard.press("Control+C");
    await until(async () => !(await tabOf(page, session).innerText()).includes("sleep"), "the shell's name back", 20_000);
    const tag = randomTag();
    await typeLine(page, `printf '\\033]0;build-${tag}\\007'`);
    await until(async () => (await tabOf(page, session).innerText()).includes(`build-${tag}`), "the program's title on the tab");
    await shot(page, "nu-03-tab-program-title");
    await tabOf(page, session).dblclick();
    const input = page.getByLabel("Name of this tab");
    await input.fill(`my shell ${tag}`);
    await input.press("Enter");
    await until(async () => (await tabOf(page, session).innerText()).includes(`my shell ${tag}`), "the new name on the tab");
    // a program's later title does not replace the user's name
    await page.locator(`#panel-${session} .xterm`).click();
    await typeLine(page, `printf '\\033]0;other-${tag}\\007'`);
    await waitForLine(page, session, /printf/, "the printf");
    // another viewer sees the name in its tab and its session list
    const c2 = await browser.newContext({ viewport: { width: 1000, height: 700 } });
    const p2 = await c2.newPage();
    await login(p2);
    await p2.goto(`${gw.url}/#/w/${workspace}/s/${session}`);
    await until(async () => (await tabOf(p2, session).innerText()).includes(`my shell ${tag}`), "the name on another page");
    await p2.getByRole("button", { name: /^Sessions/ }).click();
    assert.match(await p2.getByRole("dialog", { name: "All sessions" }).innerText(), new RegExp(`my shell ${tag}`));
    await c2.close();
    await page.reload();
    await until(async () => (await tabOf(page, session).innerText().catch(() => "")).includes(`my shell ${tag}`), "the name after a reload");
    assert.ok(!(await tabOf(page, session).innerText()).includes(`other-${tag}`));
    await shot(page, "nu-03-tab-renamed");
  });

  test("search is an overlay with a match count, and leaves the terminal's size alone", async () => {
    await page.locator(`#panel-${session} .xterm`).click();
    const tag = randomTag();
    await typeLine(page, `for i in 1 2 3; do echo hit-${tag}; done`);
    await waitForLine(page, session, new RegExp(`^hit-${tag}$`), "the hits");
    await until(async () => (await paneText(page, session)).split("\n").filter((l) => l === `hit-${tag}`).length === 3, "three hits");
    const before = await paneSize(page, session);
    await page.keyboard.press("Control+Shift+F");
    const box = page.getByLabel("Search the terminal");
    await box.waitFor();
    await box.fill(`hit-${tag}`);
    // three lines of output and the command line itself
    await until(async () => /\d of 4$/.test((await page.getByTestId("search-count").innerText()).trim()), "the match count", 10_000);
    await box.press("Enter");
    await until(async () => (await hook(page, session, "selection")) === `hit-${tag}`, "a match selected");
    assert.deepEqual(await paneSize(page, session), before, "the terminal kept its size with the search open");
    await shot(page, "nu-07-search-overlay");
    await box.press("Escape");
    await box.waitFor({ state: "detached" });
    await page.locator(`#panel-${session} .xterm`).click();
    const s = randomTag();
    await typeLine(page, `echo size-${s}=$(stty size)`);
    await waitForLine(page, session, new RegExp(`^size-${s}=${before.rows} ${before.cols}$`), "the PTY's size unchanged");
  });

  test("two viewers of different sizes: the one in use sizes the terminal, the other is told", async () => {
    const bigBefore = await paneSize(page, session);
    const c2 = await browser.newContext({ viewport: { width: 760, height: 520 } });
    const small = await c2.newPage();
    await login(small);
    await small.goto(`${gw.url}/#/w/${workspace}/s/${session}`);
    await until(async () => (await paneText(small, session)) !== null, "the session on the small page");
    await small.locator(`#panel-${session} .xterm`).click();
    let seen;
    const smallSize = await until(async () => {
      const s = await paneSize(small, session);
      seen = { small: s, big: await paneSize(page, session), bigBefore, notice: await small.getByTestId("sized-by-other").count() };
      return s && s.cols < bigBefore.cols ? s : false;
    }, "the small viewer fitted").catch((e) => {
      throw new Error(`${e.message}: ${JSON.stringify(seen)}`);
    });
    // (a line may keep stray text the resize left on screen after it: match its start)
    let tag = randomTag();
    await small.keyboard.type(`echo small-${tag}=$(stty size)`);
    await small.keyboard.press("Enter");
    await waitForLine(small, session, new RegExp(`^small-${tag}=${smallSize.rows} ${smallSize.cols}(?!\\d)`), "the PTY at the small viewer's size").catch(async (e) => {
      const lines = (await paneText(small, session)).split("\n").filter((l) => l.includes(`small-${tag}`));
      throw new Error(`${e.message}: ${JSON.stringify({ lines, smallSize, now: await paneSize(small, session), big: await paneSize(page, session), notice: await small.getByTestId("sized-by-other").count() })}`);
    });
    // the big page is told, and shows the terminal at that size
    const notice = page.getByTestId("sized-by-other");
    await notice.waitFor();
    assert.match(await notice.innerText(), new RegExp(`${smallSize.cols}×${smallSize.rows}`));
    assert.deepEqual(await paneSize(page, session), smallSize);
    await shot(page, "nu-07-sized-by-other-viewer");
    // the big page takes over
    await notice.getByRole("button", { name: "Fit to this window" }).click();
    await notice.waitFor({ state: "detached" });
    const bigSize = await paneSize(page, session);
    assert.ok(bigSize.cols > smallSize.cols);
    await small.getByTestId("sized-by-other").waitFor();
    await shot(small, "nu-07-sized-by-other-viewer-small");
    tag = randomTag();
    await page.locator(`#panel-${session} .xterm`).click();
    await typeLine(page, `echo big-${tag}=$(stty size)`);
    await waitForLine(page, session, new RegExp(`^big-${tag}=${bigSize.rows} ${bigSize.cols}(?!\\d)`), "the PTY at the big viewer's size");
    await c2.close();
  });

  test("a login link with a wrong key says so", async () => {
    const c = await browser.newContext();
    const p = await c.newPage();
    await p.goto(`${gw.url}/login?key=not-the-right-key-${randomKey()}`);
    const alert = p.getByRole("alert");
    await alert.waitFor();
    assert.match(await alert.innerText(), /key in that login link is not valid/);
    assert.equal(new URL(p.url()).search, "", "the error leaves the address bar");
    await shot(p, "nu-07-wrong-login-link");
    await c.close();
  });

  test("font size and a light theme, remembered after a reload", async () => {
    const before = await hook(page, session, "fontSize");
    await page.getByRole("button", { name: "Display settings" }).click();
    await page.getByRole("button", { name: "Larger text" }).click();
    await page.getByRole("button", { name: "Larger text" }).click();
    await page.getByRole("button", { name: "Light" }).click();
    await until(async () => (await hook(page, session, "fontSize")) === before + 2, "the larger font in the terminal");
    assert.equal(await hook(page, session, "background"), "#fbfbfd");
    assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), "light");
    await page.keyboard.press("Escape");
    await shot(page, "nu-07-light-theme");
    await page.reload();
    await until(async () => (await paneText(page, session)) !== null, "the terminal after the reload");
    assert.equal(await hook(page, session, "fontSize"), before + 2);
    assert.equal(await hook(page, session, "background"), "#fbfbfd");
    // back to the defaults for the tests that follow
    await page.getByRole("button", { name: "Display settings" }).click();
    await page.getByRole("button", { name: "Smaller text" }).click();
    await page.getByRole("button", { name: "Smaller text" }).click();
    await page.getByRole("button", { name: "Dark" }).click();
    await page.keyboard.press("Escape");
    await until(async () => (await hook(page, session, "fontSize")) === before, "the font back");
  });

  test("on a phone: tabs have their own row, the key toolbar has the missing keys, and text can be selected and copied", async () => {
    const c = await browser.newContext({ viewport: { width: 390, height: 760 }, hasTouch: true, isMobile: true, deviceScaleFactor: 2 });
    await c.grantPermissions(["clipboard-read", "clipboard-write"], { origin: gw.url });
    const p = await c.newPage();
    await login(p);
    await p.goto(`${gw.url}/#/w/${workspace}`);
    const id = await openTerminal(p);
    await openTerminal(p);
    const tablist = p.getByRole("tablist", { name: "Sessions" });
    const tl = await tablist.boundingBox();
    const newBtn = await p.getByRole("button", { name: "New terminal" }).boundingBox();
    assert.ok(tl.y >= newBtn.y + newBtn.height - 1, "the tabs are on a row below the buttons");
    assert.ok(tl.width > 330, `the tab row spans the screen (${tl.width} px)`);
    for (const t of await p.locator(".tab-title").all()) {
      // short names whole (a long one may end in an ellipsis)
      const cut = await t.evaluate((el) => el.textContent.length <= 12 && el.scrollWidth > el.clientWidth);
      assert.equal(cut, false, `a tab's name is shown whole (${await t.innerText()})`);
      const b = await t.boundingBox();
      assert.ok(b.x >= 0 && b.x + b.width <= 390, "every tab is on screen");
    }
    await p.getByRole("tab").first().tap();
    assert.equal(await activeSession(p), (await p.getByRole("tab").first().getAttribute("id")).slice(4));
    await tabOf(p, id).tap();
    await p.locator(`#panel-${id} .xterm`).tap();
    const bar = p.locator(`#panel-${id}`).getByRole("toolbar", { name: "Terminal keys" });
    const tag = randomTag();
    // | and ~ and / and - from the toolbar
    await p.keyboard.type(`echo one${tag} two `);
    await bar.getByRole("button", { name: "Pipe" }).tap();
    await p.keyboard.type(" wc ");
    await bar.getByRole("button", { name: "Dash" }).tap();
    await p.keyboard.type("w; echo home=");
    await bar.getByRole("button", { name: "Tilde" }).tap();
    await bar.getByRole("button", { name: "Slash" }).tap();
    await p.keyboard.press("Enter");
    await waitForLine(p, id, /^2$/, "the word count through the pipe");
    await waitForLine(p, id, /^home=\/.*\/$/, "the home directory from ~/");
    // Alt, PgUp and PgDn reach the program as their escape sequences
    // Keys sent while the shell still reads the line would go to readline, not
    // cat: the marker's output means bash has read the line and runs it.
    await typeLine(p, `echo cat-${tag}; cat -v`);
    await waitForLine(p, id, new RegExp(`^cat-${tag}$`), "cat -v to start");
    await bar.getByRole("button", { name: /^Alt/ }).tap();
    assert.equal(await bar.getByRole("button", { name: /^Alt/ }).getAttribute("aria-pressed"), "true");
    await p.keyboard.type("x");
    await bar.getByRole("button", { name: "Page up" }).tap();
    await bar.getByRole("button", { name: "Page down" }).tap();
    // paste what the clipboard holds
    await p.evaluate((t) => navigator.clipboard.writeText(`pasted-${t}`), tag);
    await bar.getByRole("button", { name: "Paste" }).tap();
    await waitForLine(p, id, new RegExp(`pasted-${tag}$`), "the pasted text echoed");
    await p.keyboard.press("Enter");
    await waitForLine(p, id, new RegExp(`^\\^\\[x\\^\\[\\[5~\\^\\[\\[6~pasted-${tag}$`), "Alt+x, PgUp, PgDn and the pasted text, as cat -v shows them").catch(async (e) => {
      throw new Error(`${e.message}\n${(await paneText(p, id)).split("\n").slice(-6).join("\n")}`);
    });
    await bar.getByRole("button", { name: /^Control/ }).tap();
    await p.keyboard.type("c");
    await waitForLine(p, id, /\^C/, "Ctrl+C");
    // The terminal echoes ^C before cat has died: the next line is typed
    // once bash shows its prompt again.
    await until(async () => /[#$]$/.test(((await paneScreen(p, id)) ?? "").trimEnd().split("\n").at(-1)), "the prompt after Ctrl+C");
    // selection and copy on a touch screen: a URL printed in the terminal
    // long enough that the phone's terminal wraps it: the selection view has it on one line
    const url = `https://example.invalid/a-rather-long-path/to-a-page-${tag}/with-more-of-it?q=1`;
    await typeLine(p, `echo ${url}`);
    await until(async () => (await paneText(p, id)).replace(/\n/g, "").split(url).length - 1 >= 2, "the URL, typed and printed").catch(async (e) => {
      throw new Error(`${e.message}\n${(await paneText(p, id)).split("\n").slice(-8).join("\n")}`);
    });
    await bar.getByRole("button", { name: "Select text to copy" }).tap();
    const text = p.getByTestId("select-text");
    await text.waitFor();
    assert.ok((await text.innerText()).split("\n").includes(url), "the wrapped URL is one line to select");
    await p.evaluate((url) => {
      const pre = document.querySelector('[data-testid="select-text"]');
      const node = pre.firstChild;
      const at = node.textContent.lastIndexOf(url);
      const r = document.createRange();
      r.setStart(node, at);
      r.setEnd(node, at + url.length);
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(r);
    }, url);
    await shot(p, "nu-05-phone-select");
    await p.getByRole("button", { name: "Copy", exact: true }).tap();
    await until(async () => (await p.evaluate(() => navigator.clipboard.readText())) === url, "the URL on the clipboard");
    await p.getByRole("button", { name: "Done" }).tap();
    const overflow = await p.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
    assert.equal(overflow, false, "nothing overflows the phone's width");
    await shot(p, "nu-05-phone-tabs-and-keys");
    await c.close();
  });

  test("scrollback without an end: 1,000,000 lines, the first one reachable, the tab's memory bounded", async () => {
    await page.goto(`${gw.url}/#/w/${workspace}/s/${session}`);
    await until(async () => (await paneText(page, session)) !== null, "the terminal");
    await page.locator(`#panel-${session} .xterm`).click();
    const t0 = Date.now();
    await typeLine(page, "seq 1 1000000; echo seq-$((1+1))-done");
    await waitForLine(page, session, /^seq-2-done$/, "the end of the million lines", 180_000);
    console.log(`1,000,000 lines shown in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    // scroll the live terminal to its top: it keeps 10,000 lines, far from the first
    // (a wheel turn scrolls a few lines; Shift+PageUp a screen at a time)
    await until(async () => {
      for (let i = 0; i < 20; i++) await page.keyboard.press("Shift+PageUp");
      return (await hook(page, session, "viewportY")) === 0;
    }, "the top of the live terminal", 60_000);
    await page.getByRole("button", { name: "↑ Earlier output" }).waitFor();
    await page.locator(`#panel-${session} .xterm`).hover();
    assert.ok(!(await paneText(page, session)).split("\n").includes("1"), "the live terminal does not hold the first line");
    // one more turn of the wheel at the top opens the earlier output
    await page.mouse.wheel(0, -400);
    const view = page.getByTestId("scrollback");
    await view.waitFor({ timeout: 10_000 });
    const lines = page.getByTestId("scrollback-lines");
    // the page opens on the output just before the live end; paging up reads earlier pages
    const visible = async () => (await lines.locator(".line").allInnerTexts()).map((l) => l.trim());
    await until(async () => (await visible()).some((l) => /^\d+$/.test(l)), "numbers in the earlier output");
    const startTop = Number((await visible()).find((l) => /^\d+$/.test(l)));
    for (let i = 0; i < 12; i++) await lines.evaluate((el) => (el.scrollTop = Math.max(0, el.scrollTop - el.clientHeight * 40)));
    const moved = await until(async () => {
      const v = (await visible()).filter((l) => /^\d+$/.test(l)).map(Number);
      return v.length > 10 && v[0] < startTop - 5000 ? v : false;
    }, "earlier pages as the view scrolls up", 30_000);
    assert.ok(moved.every((n, i) => i === 0 || n === moved[i - 1] + 1), "the lines read back are consecutive");
    await shot(page, "nu-08-scrollback-paging");
    // all the way to the first byte the agent keeps
    await view.getByRole("button", { name: "Start of output" }).click();
    await until(async () => (await visible()).includes("1") && (await visible()).includes("2"), "the first line", 30_000);
    const head = (await visible()).filter((l) => /^\d+$/.test(l)).map(Number);
    assert.deepEqual(head.slice(0, 5), [1, 2, 3, 4, 5]);
    assert.match(await page.getByTestId("scrollback-range").innerText(), /from the first byte kept/);
    await shot(page, "nu-08-scrollback-first-line");
    // scroll down from there: more pages, still in order
    for (let i = 0; i < 8; i++) await lines.evaluate((el) => (el.scrollTop += el.clientHeight * 40));
    const further = await until(async () => {
      const v = (await visible()).filter((l) => /^\d+$/.test(l)).map(Number);
      return v.length > 10 && v[0] > 5000 ? v : false;
    }, "later pages as the view scrolls down", 30_000);
    assert.ok(further.every((n, i) => i === 0 || n === further[i - 1] + 1));
    // memory: the tab's JS heap after a collection stays far below the output's size
    const cdp = await ctx.newCDPSession(page);
    await cdp.send("HeapProfiler.collectGarbage");
    await cdp.send("Performance.enable");
    const { metrics } = await cdp.send("Performance.getMetrics");
    const heap = metrics.find((m) => m.name === "JSHeapUsedSize").value;
    console.log(`JS heap after paging through 1,000,000 lines: ${(heap / 2 ** 20).toFixed(1)} MiB`);
    assert.ok(heap < 150 * 2 ** 20, `the heap stays bounded (${(heap / 2 ** 20).toFixed(1)} MiB)`);
    await view.getByRole("button", { name: "Back to live" }).click();
    await view.waitFor({ state: "detached" });
    const tag = randomTag();
    await page.locator(`#panel-${session} .xterm`).click();
    await typeLine(page, `echo live-${tag}`);
    await waitForLine(page, session, new RegExp(`^live-${tag}$`), "the live terminal after the history");
  });

  test("the page logged no errors", () => {
    const unexpected = consoleErrors.filter((e) => !/WebSocket connection .* failed/.test(e) && !/status of 401 \(Unauthorized\)/.test(e));
    assert.deepEqual(unexpected, []);
  });
});
