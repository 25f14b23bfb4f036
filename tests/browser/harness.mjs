// Test harness: starts the real dispatch-gateway (which starts the real
// dispatch-agent per workspace) on a free loopback port, and Debian's
// Chromium through playwright-core. No browser is ever downloaded.

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const ARTIFACTS = join(ROOT, "tests/artifacts/browser");
const TARGET = process.env.CARGO_TARGET_DIR ?? join(process.env.DISPATCH_CACHE ?? join(homedir(), ".cache/dispatch"), "target");
export const GATEWAY_BIN = process.env.DISPATCH_GATEWAY_BIN ?? join(TARGET, "debug/dispatch-gateway");
export const AGENT_BIN = process.env.DISPATCH_AGENT_BIN ?? join(TARGET, "debug/dispatch-agent");
export const WEB_DIST = join(ROOT, "web/dist");
export const CHROMIUM = process.env.DISPATCH_CHROMIUM ?? "/usr/bin/chromium";

mkdirSync(ARTIFACTS, { recursive: true });

export const randomKey = () => randomBytes(18).toString("hex");
export const randomTag = () => randomBytes(4).toString("hex");

/**
 * Starts a gateway with a temp data dir and the given users; resolves once it
 * printed its listening line. Fails (never skips) when a binary or the UI
 * build is missing.
 */
export async function startGateway({ users, name = "gateway", env = {} }) {
  for (const [what, path] of [["dispatch-gateway", GATEWAY_BIN], ["dispatch-agent", AGENT_BIN], ["web UI build", join(WEB_DIST, "index.html")]]) {
    if (!existsSync(path)) throw new Error(`${what} not found at ${path}: build it first (cargo build -p dispatch-gateway -p dispatch-agent; npm run build in web/)`);
  }
  const dataDir = mkdtempSync(join(tmpdir(), "dispatch-browser-"));
  const usersFile = join(dataDir, "users.json");
  writeFileSync(usersFile, JSON.stringify(users), { mode: 0o600 });
  const log = createWriteStream(join(ARTIFACTS, `${name}.log`));
  const child = spawn(
    GATEWAY_BIN,
    ["--listen", "127.0.0.1:0", "--data-dir", join(dataDir, "data"), "--users-file", usersFile, "--web-dir", WEB_DIST, "--agent-bin", AGENT_BIN],
    { env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "info", ...env }, stdio: ["ignore", "pipe", "pipe"] },
  );
  child.stderr.pipe(log);
  const url = await new Promise((resolveUrl, reject) => {
    let buf = "";
    const timer = setTimeout(() => reject(new Error(`gateway printed no DISPATCH_GATEWAY_LISTENING line within 30 s (see ${name}.log)`)), 30_000);
    child.stdout.on("data", (chunk) => {
      log.write(chunk);
      buf += chunk.toString();
      const m = buf.match(/^DISPATCH_GATEWAY_LISTENING (http:\/\/127\.0\.0\.1:\d+)\s*$/m);
      if (m) {
        clearTimeout(timer);
        resolveUrl(m[1]);
      }
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`gateway exited (code ${code}, signal ${signal}) before listening; see ${name}.log`));
    });
  });
  child.stdout.on("data", (chunk) => log.write(chunk));
  return {
    url,
    dataDir,
    pid: child.pid,
    child,
    /** Pid of the running agent of `workspace` (a child of this gateway), or null. */
    agentPid(workspace) {
      return findChildWithEnv(child.pid, `DISPATCH_WORKSPACE_NAME=${workspace}`);
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        const t = setTimeout(() => child.kill("SIGKILL"), 10_000);
        await exited;
        clearTimeout(t);
      }
      log.end();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** The child of `ppid` whose environment holds `entry` (how the gateway names a workspace to its agent). */
function findChildWithEnv(ppid, entry) {
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      // the field after the parenthesised command is the state, then the ppid
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[1]) !== ppid) continue;
      const env = readFileSync(`/proc/${d}/environ`, "utf8").split("\0");
      if (env.includes(entry)) return Number(d);
    } catch {
      /* the process went away while we looked */
    }
  }
  return null;
}

export async function launchBrowser() {
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM} (scripts/setup.d/10-system.sh installs Debian's chromium)`);
  // playwright-core gives every launch a fresh temporary profile (user-data-dir).
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** Polls `fn` until it returns a truthy value; fails with `what` after `timeout` ms. */
export async function until(fn, what, timeout = 15_000) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function shot(page, name) {
  return page.screenshot({ path: join(ARTIFACTS, `${name}.png`) });
}

/**
 * Rethrows `e` with what the page showed when it happened (its URL and text,
 * and a screenshot `fail-<name>.png`), so a failure on a loaded CI machine
 * can be read afterwards.
 */
export async function explain(page, name, e) {
  const seen = await page
    .evaluate(() => `${location.href}\n${document.body.innerText.slice(0, 2000)}`)
    .catch((err) => `(page unreadable: ${err.message})`);
  await shot(page, `fail-${name}`).catch(() => {});
  throw new Error(`${e.message}\n--- the page (screenshot fail-${name}.png) ---\n${seen}`, { cause: e });
}

// In-page views of the terminal through the UI's read-only debug hook.
export const activeSession = (page) => page.evaluate(() => window.__dispatch?.activeSession ?? null);
export const paneText = (page, id) => page.evaluate((id) => window.__dispatch?.panes.get(id)?.text() ?? null, id);
export const paneScreen = (page, id) => page.evaluate((id) => window.__dispatch?.panes.get(id)?.screen() ?? null, id);
export const paneSize = (page, id) => page.evaluate((id) => window.__dispatch?.panes.get(id)?.size() ?? null, id);
export const connStates = (page) => page.evaluate(() => [...(window.__dispatch?.states ?? [])]);

/** Waits until the pane's whole buffer has a line matching `re`; returns the buffer. */
/**
 * Opens a new terminal in the workspace view on screen (once its session list
 * has loaded, within `listTimeout`); returns the session id once the shell
 * printed its prompt, with the terminal focused.
 */
export async function openTerminal(p, listTimeout = 15_000) {
  await until(() => p.evaluate(() => window.__dispatch?.listed === true), "the session list", listTimeout);
  const before = await activeSession(p);
  const empty = p.getByRole("button", { name: "Open a terminal" });
  if (await empty.isVisible()) await empty.click();
  else await p.getByRole("button", { name: "New terminal" }).click();
  const id = await until(async () => {
    const a = await activeSession(p);
    return a && a !== before && (await paneText(p, a)) !== null ? a : false;
  }, "a new terminal pane");
  await until(async () => ((await paneScreen(p, id)) ?? "").trim().length > 0, "a shell prompt");
  await p.locator(`#panel-${id} .xterm`).click();
  return id;
}

export function waitForLine(page, id, re, what, timeout = 15_000) {
  return until(async () => {
    const t = await paneText(page, id);
    return t !== null && t.split("\n").some((l) => re.test(l)) ? t : false;
  }, what, timeout);
}

/** Types a command line into the focused terminal. */
export async function typeLine(page, text) {
  await page.keyboard.type(text, { delay: 2 });
  await page.keyboard.press("Enter");
}
