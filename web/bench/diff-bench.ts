// How long a big diff takes to show, in the browser: from the two texts to
// the diff laid out on screen (jsdiff, word pairs, highlight.js, the HTML,
// Svelte's mount and the browser's style and layout), then to the next frame.
// Results go to `window.__bench` for scripts/bench-web-diff.sh.

import { flushSync, mount, unmount } from "svelte";
import "../src/app.css";
import DiffView from "../src/components/review/DiffView.svelte";
import { diffTexts } from "../src/lib/review/diff";

function source(lines: number, salt = ""): string {
  const out: string[] = [];
  for (let i = 0; i < lines; i++) {
    switch (i % 5) {
      case 0:
        out.push(`export function handler${i}(req: Request, limit = ${i}): Promise<Response> {`);
        break;
      case 1:
        out.push(`  const value${i} = await fetch(\`/api/items/\${req.id}?page=${i}\`); // fetch page ${i}${salt}`);
        break;
      case 2:
        out.push(`  if (value${i}.status !== 200) throw new Error("failed at ${i}: " + value${i}.statusText);`);
        break;
      case 3:
        out.push(`  return value${i}.json().then((x) => ({ ...x, index: ${i}, name: "item-${i}" }));`);
        break;
      default:
        out.push("}");
    }
  }
  return `${out.join("\n")}\n`;
}

function editEvery(text: string, every: number): string {
  return text
    .split("\n")
    .map((l, i) => (i % every === Math.min(1, every - 1) ? l.replace("fetch page", "load page").replace("limit", "max") : l))
    .join("\n");
}

async function frame(): Promise<void> {
  await new Promise((r) => requestAnimationFrame(() => r(undefined)));
}

async function measure(name: string, before: string | null, after: string, runs = 7): Promise<{ name: string; lines: number; changed: number; layoutMs: number[]; frameMs: number[] }> {
  const target = document.getElementById("out")!;
  const layoutMs: number[] = [];
  const frameMs: number[] = [];
  let changed = 0;
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    const diff = diffTexts("bench/file.ts", before, after);
    changed = diff.added + diff.removed;
    const app = mount(DiffView, { target, props: { diff, maxHeight: "70vh" } });
    flushSync();
    // Force style and layout of what was added.
    void target.getBoundingClientRect().height;
    void (target.querySelector(".lines") as HTMLElement | null)?.scrollHeight;
    const t1 = performance.now();
    await frame();
    const t2 = performance.now();
    layoutMs.push(t1 - t0);
    frameMs.push(t2 - t0);
    unmount(app);
    await frame();
  }
  return { name, lines: after.split("\n").length - 1, changed, layoutMs, frameMs };
}

async function run(): Promise<void> {
  const base = source(5000);
  const results = [];
  results.push(await measure("5,000 lines, every 10th line edited (word-level)", base, editEvery(base, 10)));
  results.push(await measure("5,000 lines, one line edited", base, editEvery(base, 5000)));
  results.push(await measure("5,000-line new file (all added)", null, base));
  results.push(await measure("5,000 lines, 2,000 of them edited", base, editEvery(base, 1)));
  (window as unknown as { __bench: unknown }).__bench = results;
}

void run().catch((e) => {
  (window as unknown as { __bench: unknown }).__bench = { error: String(e) };
});
