import { describe, expect, it } from "vitest";
import { ApiError, type FilesApi } from "../src/lib/review/files-api";
import { UploadQueue } from "../src/lib/review/uploads.svelte";

type Call = { path: string; overwrite: boolean; progress: (sent: number, total: number) => void; resolve: () => void; reject: (e: unknown) => void };

function fakeFiles(): { api: FilesApi; calls: Call[] } {
  const calls: Call[] = [];
  const api = {
    upload(path: string, _file: Blob, progress: (s: number, t: number) => void, opts: { overwrite?: boolean } = {}) {
      let resolve!: () => void;
      let reject!: (e: unknown) => void;
      const done = new Promise<{ etag: string; size: number }>((res, rej) => {
        resolve = () => res({ etag: '"1"', size: 3 });
        reject = rej;
      });
      calls.push({ path, overwrite: opts.overwrite ?? false, progress, resolve, reject });
      return { done, abort: () => reject(new ApiError(0, "aborted", "upload cancelled")) };
    },
  } as unknown as FilesApi;
  return { api, calls };
}

const file = (name: string, size = 3) => new File([new Uint8Array(size)], name);
const settle = () => new Promise((r) => setTimeout(r, 0));

describe("uploads", () => {
  it("tracks bytes sent, ends done, and tells which folder changed", async () => {
    const { api, calls } = fakeFiles();
    const finished: string[] = [];
    const q = new UploadQueue(api, (p, ok) => finished.push(`${p}:${ok}`));
    q.add("docs", [file("a.txt", 10)]);
    expect(calls[0].path).toBe("docs/a.txt");
    expect(calls[0].overwrite).toBe(false);
    expect(q.active).toBe(1);
    calls[0].progress(4, 10);
    expect(q.items[0]).toMatchObject({ sent: 4, total: 10, status: "sending" });
    calls[0].resolve();
    await settle();
    expect(q.items[0]).toMatchObject({ sent: 10, status: "done" });
    expect(finished).toEqual(["docs/a.txt:true"]);
    expect(q.active).toBe(0);
  });

  it("does not replace an existing file unless asked, then sends it again over it", async () => {
    const { api, calls } = fakeFiles();
    const q = new UploadQueue(api);
    q.add("", [file("x.bin")]);
    calls[0].reject(new ApiError(409, "already_exists", "exists"));
    await settle();
    expect(q.items[0]).toMatchObject({ status: "failed", exists: true });
    q.replace(q.items[0].id);
    expect(calls[1]).toMatchObject({ path: "x.bin", overwrite: true });
    expect(q.items).toHaveLength(1);
    expect(q.items[0].status).toBe("sending");
  });

  it("cancels, and keeps only the last few finished entries", async () => {
    const { api, calls } = fakeFiles();
    const q = new UploadQueue(api);
    q.add("", [file("c")]);
    q.items[0].abort?.();
    await settle();
    expect(q.items[0].status).toBe("cancelled");
    q.add("", Array.from({ length: 12 }, (_, i) => file(`f${i}`)));
    for (const c of calls.slice(1)) c.resolve();
    await settle();
    expect(q.items.length).toBe(8);
    expect(q.items.at(-1)?.path).toBe("f11");
  });
});
