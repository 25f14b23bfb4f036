import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { b64urlToBytes, defaultPrefs, parsePrefs, pushSupport } from "../src/lib/push";

interface Shown {
  title: string;
  options: Record<string, unknown>;
}

/** Loads public/sw.js with a fake `self` and `fetch`; its exported handlers. */
function loadSw(fetchImpl: (url: string, init: RequestInit) => Promise<Response>) {
  const code = readFileSync(new URL("../public/sw.js", import.meta.url), "utf8");
  const self: Record<string, unknown> = { location: { origin: "https://dispatch.example" } };
  new Function("self", "fetch", code)(self, fetchImpl);
  const shown: Shown[] = [];
  const reg = {
    showNotification: async (title: string, options: Record<string, unknown>) => void shown.push({ title, options }),
    getNotifications: async (_: { tag: string }): Promise<unknown[]> => [{ close() {} }],
  };
  return { sw: self.dispatchPush as any, reg, shown };
}

const approval = {
  kind: "approval",
  title: "demo: Claude asks to use Bash",
  body: "ls",
  tag: "approval:demo:s1:r1",
  url: "/#/w/demo",
  token: "pa1.x.y",
  requestId: "r1",
  actions: [
    { action: "allow", title: "Allow" },
    { action: "deny", title: "Deny" },
  ],
  sentAt: 1,
};

describe("service worker", () => {
  it("shows an approval with Allow and Deny that stays until answered", async () => {
    const { sw, reg, shown } = loadSw(async () => new Response());
    await sw.handlePush(reg, approval);
    expect(shown).toHaveLength(1);
    expect(shown[0].title).toBe(approval.title);
    expect(shown[0].options.requireInteraction).toBe(true);
    expect((shown[0].options.actions as { action: string }[]).map((a) => a.action)).toEqual(["allow", "deny"]);
    // Without a token there is nothing to answer with: no buttons.
    const n = sw.notificationFor({ ...approval, token: undefined });
    expect(n.options.actions).toEqual([]);
  });

  it("replaces the notification of a request resolved elsewhere, and shows nothing when there is none", async () => {
    const { sw, reg, shown } = loadSw(async () => new Response());
    await sw.handlePush(reg, { kind: "resolved", title: "demo: Bash: allowed", tag: approval.tag });
    expect(shown).toEqual([expect.objectContaining({ title: "demo: Bash: allowed" })]);
    expect(shown[0].options.tag).toBe(approval.tag);
    expect(shown[0].options.actions).toBeUndefined();
    reg.getNotifications = async () => [];
    await sw.handlePush(reg, { kind: "resolved", title: "again", tag: approval.tag });
    expect(shown).toHaveLength(1);
  });

  it("Allow posts the token and says so; a refusal says why", async () => {
    const calls: { url: string; body: unknown }[] = [];
    let status = 200;
    const { sw, reg, shown } = loadSw(async (url, init) => {
      calls.push({ url, body: JSON.parse(String(init.body)) });
      return new Response(status === 200 ? "{}" : JSON.stringify({ message: "the action token was used already" }), { status });
    });
    let closed = 0;
    const notification = { data: approval, close: () => closed++ };
    expect(await sw.handleClick(reg, {}, notification, "allow")).toEqual({ ok: true, status: 200 });
    expect(calls).toEqual([{ url: "/api/push/action", body: { token: "pa1.x.y", action: "allow" } }]);
    expect(closed).toBe(1);
    expect(shown.at(-1)!.title).toBe("Allowed");
    status = 410;
    expect(await sw.handleClick(reg, {}, notification, "deny")).toEqual({ ok: false, status: 410 });
    expect(shown.at(-1)!.title).toBe("Not answered");
    expect(String(shown.at(-1)!.options.body)).toContain("used already");
  });

  it("a click on the body opens the app at the workspace, never another origin", async () => {
    const { sw, reg } = loadSw(async () => new Response());
    const opened: string[] = [];
    const clients = { matchAll: async () => [], openWindow: async (u: string) => void opened.push(u) };
    await sw.handleClick(reg, clients, { data: approval, close() {} }, "");
    expect(opened).toEqual(["https://dispatch.example/#/w/demo"]);
    await sw.handleClick(reg, clients, { data: { ...approval, url: "https://evil.example/" }, close() {} }, "");
    expect(opened).toHaveLength(1);
  });
});

describe("push settings", () => {
  it("prefs default to approvals only and survive junk", () => {
    expect(parsePrefs(null)).toEqual(defaultPrefs);
    expect(parsePrefs("{not json")).toEqual(defaultPrefs);
    expect(parsePrefs('{"turnFinished":true,"errors":"yes"}')).toEqual({ approvals: true, turnFinished: true, errors: false });
  });

  it("decodes the base64url VAPID key", () => {
    expect(Array.from(b64urlToBytes("BP8-_w"))).toEqual([4, 255, 62, 255]);
  });

  it("says when the page cannot use push", () => {
    expect(pushSupport({ isSecureContext: false } as unknown as Window)).toBe("insecure");
    expect(pushSupport({ isSecureContext: true, navigator: {} } as unknown as Window)).toBe("no-service-worker");
    const w = { isSecureContext: true, navigator: { serviceWorker: {} }, PushManager: {}, Notification: { permission: "denied" } };
    expect(pushSupport(w as unknown as Window)).toBe("denied");
    expect(pushSupport({ ...w, Notification: { permission: "default" } } as unknown as Window)).toBe("ok");
  });
});
