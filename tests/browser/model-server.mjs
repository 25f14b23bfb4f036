// The project's scripted model server (tests/model-server) on loopback, for
// tests that run the real Claude Code CLI: scripted turns, more added on the
// fly, and the requests the CLI made.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createWriteStream, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { ARTIFACTS, ROOT } from "./harness.mjs";

const TARGET = process.env.CARGO_TARGET_DIR ?? join(process.env.DISPATCH_CACHE ?? join(homedir(), ".cache/dispatch"), "target");
export const MODEL_SERVER_BIN = process.env.DISPATCH_MODEL_SERVER_BIN ?? join(TARGET, "debug/dispatch-model-server");
export const CLAUDE_BIN = process.env.DISPATCH_CLAUDE_BIN ?? join(ROOT, "tools/claude/node_modules/.bin/claude");

/** Starts dispatch-model-server with `turns`; resolves with its base URL and controls. */
export async function startModelServer(turns, name = "model-server") {
  if (!existsSync(MODEL_SERVER_BIN)) throw new Error(`dispatch-model-server not found at ${MODEL_SERVER_BIN}: cargo build -p dispatch-model-server`);
  if (!existsSync(CLAUDE_BIN)) throw new Error(`the Claude Code CLI is not installed at ${CLAUDE_BIN}: run ./scripts/setup.sh or set DISPATCH_CLAUDE_BIN`);
  const dir = mkdtempSync(join(tmpdir(), "dispatch-model-"));
  const script = join(dir, "turns.json");
  writeFileSync(script, JSON.stringify({ turns }));
  const child = spawn(MODEL_SERVER_BIN, ["--listen", "127.0.0.1:0", "--script", script], { stdio: ["ignore", "pipe", "pipe"] });
  child.stderr.pipe(createWriteStream(join(ARTIFACTS, `${name}.log`)));
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
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the model server exited (${code}) before listening`));
    });
  });
  return {
    url,
    async addTurns(more) {
      const r = await fetch(`${url}/control/turns`, { method: "POST", body: JSON.stringify(more) });
      assert.equal(r.status, 200, await r.text());
    },
    /** Every request the model server was sent, as it recorded them. */
    async requests() {
      const r = await fetch(`${url}/control/requests`);
      return r.json();
    },
    /** The CLI's requests for model answers (not its token counts and the like). */
    async messageRequests() {
      const r = await fetch(`${url}/control/requests`);
      return (await r.json()).filter((q) => q.uri.startsWith("/v1/messages") && !q.uri.includes("count_tokens"));
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
