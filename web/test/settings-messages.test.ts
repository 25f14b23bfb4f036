import { describe, expect, it } from "vitest";
import { humanError, isNotLoggedIn, stripIds } from "../src/lib/messages";
import { defaultSettings, MAX_FONT, parseSettings } from "../src/lib/settings";

describe("settings", () => {
  it("reads back what was stored, and falls back on anything else", () => {
    const d = defaultSettings(false);
    expect(parseSettings(JSON.stringify({ fontSize: 18, theme: "light" }), d)).toEqual({ fontSize: 18, theme: "light" });
    expect(parseSettings("{nope", d)).toEqual(d);
    expect(parseSettings(null, d)).toEqual(d);
    expect(parseSettings(JSON.stringify({ fontSize: 400, theme: "pink" }), d)).toEqual({ fontSize: MAX_FONT, theme: "dark" });
    expect(defaultSettings(true).fontSize).toBeLessThan(d.fontSize);
  });
});

describe("messages for people", () => {
  it("name no ids and no codes", () => {
    const m = humanError({ code: "already_exists", message: "conversation 0f1e2d3c-aaaa-bbbb-cccc-0123456789ab is already open in session c0123456789abcdef; attach to that session" });
    expect(m).toBe("That is already open.");
    expect(humanError({ code: "no_such_session", message: "no session t0123456789abcdef" })).toBe("That session is no longer there.");
    const odd = humanError({ code: "weird_new_code", message: "session t0123456789abcdef broke (conversation 0f1e2d3c-aaaa-bbbb-cccc-0123456789ab)" });
    expect(odd).not.toMatch(/[0-9a-f]{8}/);
    expect(odd).not.toMatch(/weird_new_code/);
    expect(stripIds("no session c0123456789abcdef.")).toBe("no session.");
  });

  it("tells a missing login from a missing CLI", () => {
    expect(isNotLoggedIn({ code: "claude_unavailable", message: "Claude is not logged in. Open a terminal…" })).toBe(true);
    expect(isNotLoggedIn({ code: "claude_unavailable", message: "the Claude Code CLI was not found" })).toBe(false);
  });
});
