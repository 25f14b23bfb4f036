import { describe, expect, it } from "vitest";
import { parseRetryAfter } from "../src/lib/api";
import { applyAlt, applyCtrl, applyModifiers, arrowSequence } from "../src/lib/keys";
import { isDns1123Label, workspaceNameProblem } from "../src/lib/names";
import { parseServerMessage } from "../src/lib/protocol";
import { listRefreshMs, SOON_MS, STEADY_MS } from "../src/lib/refresh";
import { parseRoute, routeHash, sessionHash } from "../src/lib/route";
import { isSoftwareRenderer } from "../src/lib/terminal";

describe("workspace names", () => {
  it("match api::rest::is_dns1123_label", () => {
    for (const ok of ["a", "ws-1", "0abc", "a".repeat(63)]) expect(isDns1123Label(ok)).toBe(true);
    for (const bad of ["", "-a", "a-", "A", "a.b", "a/b", "..", "a_b", "a".repeat(64), "é"]) expect(isDns1123Label(bad)).toBe(false);
  });
  it("explain what is wrong", () => {
    expect(workspaceNameProblem("Foo")).toMatch(/lowercase/);
    expect(workspaceNameProblem("a_b")).toMatch(/only lowercase/);
    expect(workspaceNameProblem("-a")).toMatch(/Start and end/);
    expect(workspaceNameProblem("")).toMatch(/Enter/);
    expect(workspaceNameProblem("x".repeat(64))).toMatch(/63/);
    expect(workspaceNameProblem("good-1")).toBeNull();
  });
});

describe("toolbar keys", () => {
  it("sends arrows in normal and application cursor mode", () => {
    expect(arrowSequence("up", false)).toBe("\x1b[A");
    expect(arrowSequence("left", true)).toBe("\x1bOD");
  });
  it("applies a sticky Ctrl to the next key", () => {
    expect(applyCtrl("c")).toBe("\x03");
    expect(applyCtrl("C")).toBe("\x03");
    expect(applyCtrl("[")).toBe("\x1b");
    expect(applyCtrl("dx")).toBe("\x04x");
    expect(applyCtrl("?")).toBe("\x7f");
    expect(applyCtrl("1")).toBe("1");
    expect(applyCtrl("")).toBe("");
    expect(applyAlt("b")).toBe("\x1bb");
    expect(applyAlt("")).toBe("");
    expect(applyModifiers("b", { ctrl: false, alt: true })).toBe("\x1bb");
    expect(applyModifiers("c", { ctrl: true, alt: true })).toBe("\x1b\x03");
    expect(applyModifiers("|", { ctrl: false, alt: false })).toBe("|");
  });
});

describe("server messages", () => {
  it("accept known types and ignore the rest", () => {
    expect(parseServerMessage('{"type":"session.ended","id":"s1","exitCode":3}')).toEqual({ type: "session.ended", id: "s1", exitCode: 3 });
    expect(parseServerMessage('{"type":"future.thing"}')).toBeNull();
    expect(parseServerMessage("{nope")).toBeNull();
    expect(parseServerMessage("[1]")).toBeNull();
    expect(parseServerMessage('"hello"')).toBeNull();
  });
});

describe("Retry-After", () => {
  it("reads seconds and dates", () => {
    expect(parseRetryAfter("30")).toBe(30);
    expect(parseRetryAfter(null)).toBeUndefined();
    expect(parseRetryAfter("soon")).toBeUndefined();
    const now = Date.parse("2026-01-01T00:00:00Z");
    expect(parseRetryAfter("Thu, 01 Jan 2026 00:00:12 GMT", now)).toBe(12);
  });
});

describe("routes", () => {
  it("round-trip through the hash", () => {
    for (const r of [{ page: "login" }, { page: "workspaces" }, { page: "workspace", name: "dev" }, { page: "workspace", name: "dev", session: "t-1" }] as const) {
      expect(parseRoute(routeHash(r))).toEqual(r);
    }
    expect(parseRoute("")).toEqual({ page: "workspaces" });
    expect(parseRoute("#/w/%E0%A4%A")).toEqual({ page: "workspace", name: "%E0%A4%A" });
  });

  it("record the active tab only while the URL is still that workspace's", () => {
    expect(sessionHash("#/w/dev", "dev", "t-1")).toBe("#/w/dev/s/t-1");
    expect(sessionHash("#/w/dev/s/t-1", "dev", "t-2")).toBe("#/w/dev/s/t-2");
    expect(sessionHash("#/w/dev/s/t-1", "dev", null)).toBe("#/w/dev");
    // the user went to the list, the inbox or another workspace meanwhile
    expect(sessionHash("#/", "dev", "t-1")).toBeNull();
    expect(sessionHash("#/inbox", "dev", "t-1")).toBeNull();
    expect(sessionHash("#/w/other", "dev", "t-1")).toBeNull();
  });
});

describe("renderer choice", () => {
  it("treats software WebGL as no GPU", () => {
    expect(isSoftwareRenderer("ANGLE (Google, Vulkan 1.3.0 (SwiftShader Device (Subzero) (0x0000C0DE)), SwiftShader driver)")).toBe(true);
    expect(isSoftwareRenderer("llvmpipe (LLVM 15.0.6, 256 bits)")).toBe(true);
    expect(isSoftwareRenderer("ANGLE (NVIDIA, NVIDIA GeForce RTX 3070 Direct3D11 vs_5_0 ps_5_0)")).toBe(false);
    expect(isSoftwareRenderer("Apple M2")).toBe(false);
  });
});

describe("workspace list refresh", () => {
  it("asks again soon while a workspace is between phases, else now and then", () => {
    expect(listRefreshMs(null)).toBe(STEADY_MS);
    expect(listRefreshMs([{ phase: "Running" }, { phase: "Suspended" }, { phase: "Stopped" }])).toBe(STEADY_MS);
    for (const phase of ["Pending", "Starting", "Terminating"] as const) {
      expect(listRefreshMs([{ phase: "Running" }, { phase }])).toBe(SOON_MS);
    }
    expect(SOON_MS).toBeLessThan(STEADY_MS);
  });
});

import { nextForeground, parseIdList, rememberRenamed, tabTitle } from "../src/lib/names";

describe("tab names", () => {
  it("prefer the user's name, then the running program, then the last title, then the shell", () => {
    const t = { type: "terminal" as const, title: "bash" };
    const prompt = { title: "me@host: ~/src", at: 100 };
    expect(tabTitle(t, undefined, false)).toBe("bash");
    expect(tabTitle(t, prompt, false)).toBe("me@host: ~/src");
    // a program started after the prompt's title: its name
    expect(tabTitle(t, prompt, false, { name: "top", since: 200 })).toBe("top");
    // ...unless it set a title of its own since
    expect(tabTitle(t, { title: "notes.txt - VIM", at: 300 }, false, { name: "vim", since: 200 })).toBe("notes.txt - VIM");
    expect(tabTitle({ ...t, title: "build" }, prompt, true, { name: "make", since: 200 })).toBe("build");
    expect(tabTitle({ type: "claude", title: "Fix the tests" }, prompt, false)).toBe("Fix the tests");
    expect(tabTitle({ type: "claude", title: "" }, undefined, false)).toBe("Claude");
  });

  it("keeps when a foreground program was first seen", () => {
    const a = nextForeground(undefined, "top", 10);
    expect(a).toEqual({ name: "top", since: 10 });
    expect(nextForeground(a, "top", 20)).toBe(a);
    expect(nextForeground(a, "vim", 30)).toEqual({ name: "vim", since: 30 });
    expect(nextForeground(a, undefined, 40)).toBeUndefined();
  });

  it("remembers renamed sessions, bounded", () => {
    let l: string[] = [];
    for (let i = 0; i < 300; i++) l = rememberRenamed(l, `t${i}`);
    expect(l.length).toBe(200);
    expect(l.at(-1)).toBe("t299");
    expect(rememberRenamed(["a", "b"], "a")).toEqual(["b", "a"]);
    expect(parseIdList("{bad")).toEqual([]);
    expect(parseIdList('["a", 3, "b"]')).toEqual(["a", "b"]);
  });
});
