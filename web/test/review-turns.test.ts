import { describe, expect, it } from "vitest";
import { ApiError, type FilesApi } from "../src/lib/review/files-api";
import { TurnTracker } from "../src/lib/review/turns.svelte";

function fake(turns: { turn: number; complete: boolean }[]) {
  const asked: string[] = [];
  const api = {
    async turns() {
      asked.push("list");
      return { turns };
    },
    async turnChanges(_s: string, n: number) {
      asked.push(`changes ${n}`);
      return { turn: n, files: [{ path: `f${n}`, status: "modified" }], diff: "", truncated: false };
    },
    async undoTurn(_s: string, n: number, force: boolean) {
      asked.push(`undo ${n}${force ? " force" : ""}`);
      if (!force) throw new ApiError(409, "conflict", "changed again since the turn ended: f1");
      return { restored: [`f${n}`], removed: [] };
    },
  } as unknown as FilesApi;
  return { api, asked };
}

const settle = () => new Promise((r) => setTimeout(r, 0));

describe("per-turn changes", () => {
  it("asks only for complete, recorded turns, once each, and only when a result came", async () => {
    const { api, asked } = fake([
      { turn: 1, complete: true },
      { turn: 2, complete: false },
    ]);
    const t = new TurnTracker(api, "s1");
    await t.sync(0);
    expect(asked).toEqual([]);
    await t.sync(1);
    await settle();
    expect(asked).toEqual(["list", "changes 1"]);
    expect(t.changes[1].files[0].path).toBe("f1");
    expect(t.changes[2]).toBeUndefined();
    await t.sync(1);
    expect(asked).toHaveLength(2);
  });

  it("undo refuses over later changes unless forced, then marks the turn undone", async () => {
    const { api, asked } = fake([{ turn: 1, complete: true }]);
    const t = new TurnTracker(api, "s1");
    await t.sync(1);
    await settle();
    await expect(t.undo(1)).rejects.toMatchObject({ status: 409 });
    expect(t.changes[1].undone).toBeUndefined();
    await t.undo(1, true);
    expect(t.changes[1].undone).toBe(true);
    expect(asked.slice(-2)).toEqual(["undo 1", "undo 1 force"]);
  });
});
