// Diff render time in Chromium (issue 14: a 5,000-line file diff renders in
// under 200 ms). Serves the bench page built by scripts/bench-web-diff.sh
// (web/bench/) on loopback and prints, per case, the median over 7 runs of:
// texts -> diff laid out (jsdiff, word pairs, highlight.js, HTML, mount,
// style and layout), and texts -> the next frame. A bench, not a test.

import { createReadStream, existsSync } from "node:fs";
import { createServer } from "node:http";
import { extname, join, normalize } from "node:path";
import { launchBrowser, until } from "./harness.mjs";

const dir = process.argv[2];
if (!dir || !existsSync(join(dir, "diff.html"))) throw new Error("usage: node diff.bench.mjs <built bench dir> (scripts/bench-web-diff.sh builds it)");

const types = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css" };
const server = createServer((req, res) => {
  const rel = normalize(decodeURIComponent(new URL(req.url, "http://x").pathname)).replace(/^(\.\.[/\\])+/, "");
  const file = join(dir, rel === "/" ? "diff.html" : rel);
  if (!file.startsWith(dir) || !existsSync(file)) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { "content-type": types[extname(file)] ?? "application/octet-stream" });
  createReadStream(file).pipe(res);
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const url = `http://127.0.0.1:${server.address().port}/diff.html`;

const browser = await launchBrowser();
try {
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  await page.goto(url);
  const results = await until(() => page.evaluate(() => window.__bench), "the bench results", 300_000);
  if (results.error) throw new Error(results.error);
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log(`Chromium ${browser.version()}, ${results[0].layoutMs.length} runs each, median (min-max)`);
  for (const r of results) {
    const f = (xs) => `${median(xs).toFixed(1)} ms (${Math.min(...xs).toFixed(1)}-${Math.max(...xs).toFixed(1)})`;
    console.log(`${r.name}: ${r.changed} changed lines; laid out ${f(r.layoutMs)}; next frame ${f(r.frameMs)}`);
  }
} finally {
  await browser.close();
  server.close();
}
