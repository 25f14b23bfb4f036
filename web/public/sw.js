// Dispatch's service worker: shows Web Push notifications and answers a
// permission request from a notification's Allow / Deny buttons.
//
// Served at /sw.js (root scope). Plain JavaScript so the file is served as
// written (no bundling, no module worker needed). The payload is the JSON the
// gateway encrypted (gateway/src/push/message.rs); the browser decrypted it.
//
// `self.dispatchPush` exposes the same functions the event listeners call, so
// that tests can drive them with the real Notification objects the browser
// shows (nothing here is reachable from a page that the page could not do
// itself with its own fetch).

/* eslint-env serviceworker */

const ACTION_PATH = "/api/push/action";

/** The options of showNotification for a payload; null for kinds that show nothing. */
function notificationFor(p) {
  if (!p || typeof p !== "object" || typeof p.title !== "string") return null;
  if (p.kind === "resolved") return null;
  const approval = p.kind === "approval" && typeof p.token === "string";
  return {
    title: p.title,
    options: {
      body: typeof p.body === "string" ? p.body : "",
      tag: typeof p.tag === "string" ? p.tag : undefined,
      icon: "/icon-192.png",
      badge: "/icon-192.png",
      // An approval blocks a session: keep it on screen until answered.
      requireInteraction: approval,
      renotify: p.kind === "approval" || p.kind === "reminder",
      actions: approval && Array.isArray(p.actions) ? p.actions.slice(0, 2) : [],
      data: p,
    },
  };
}

/**
 * A request was answered (here, in a pane, or by the timeout): a notification
 * still showing it is replaced by a quiet one saying how it ended, so its
 * buttons cannot be pressed in vain. None showing: nothing to show.
 */
async function settle(reg, p) {
  if (typeof p.tag !== "string") return;
  const open = await reg.getNotifications({ tag: p.tag });
  if (open.length === 0) return;
  await reg.showNotification(p.title, { body: p.body || "", tag: p.tag, icon: "/icon-192.png", silent: true, data: { kind: "settled", url: p.url } });
}

/** Two pushes of one event are at most this far apart (ms of their sentAt). */
const SAME_EVENT_MS = 30_000;

/**
 * Whether `p` was shown already: every gateway replica keeps its own push
 * subscriptions (a browser registers with whichever served the page) and
 * pushes the events it sees, so one approval may arrive once per replica.
 * The copy is dropped, not shown again (it would alert again, and after an
 * answer it would bring back buttons that can only fail).
 */
async function shownAlready(reg, p) {
  if (typeof p.tag !== "string" || typeof p.sentAt !== "number") return false;
  const open = await reg.getNotifications({ tag: p.tag });
  return open.some((n) => {
    const d = n.data || {};
    if (d.kind === "confirmation" || d.kind === "settled") return p.kind === "approval";
    return d.kind === p.kind && typeof d.sentAt === "number" && Math.abs(d.sentAt - p.sentAt) < SAME_EVENT_MS;
  });
}

async function handlePush(reg, payload) {
  if (payload && payload.kind === "resolved") {
    await settle(reg, payload);
    return;
  }
  const n = notificationFor(payload);
  if (n && !(await shownAlready(reg, payload))) await reg.showNotification(n.title, n.options);
}

/** Tells the user how an answer went, replacing the approval's notification. */
async function confirm(reg, p, title, body) {
  await reg.showNotification(title, { body, tag: p.tag, icon: "/icon-192.png", data: { kind: "confirmation", url: p.url } });
}

/** Allow / Deny: POST the token; anything else: open (or focus) the app. */
async function handleClick(reg, clients, notification, action) {
  const p = notification.data || {};
  notification.close();
  if ((action === "allow" || action === "deny") && typeof p.token === "string") {
    let res;
    try {
      res = await fetch(ACTION_PATH, {
        method: "POST",
        credentials: "same-origin",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ token: p.token, action }),
      });
    } catch (e) {
      await confirm(reg, p, "Could not reach Dispatch", "Open the app to answer.");
      return { ok: false, status: 0 };
    }
    if (res.ok) {
      await confirm(reg, p, action === "allow" ? "Allowed" : "Denied", p.title || "");
    } else {
      let message = `${res.status}`;
      try {
        message = (await res.json()).message || message;
      } catch {
        /* not JSON */
      }
      await confirm(reg, p, "Not answered", `${message}. Open the app to see the request.`);
    }
    return { ok: res.ok, status: res.status };
  }
  const url = new URL(typeof p.url === "string" ? p.url : "/", self.location.origin);
  if (url.origin !== self.location.origin) return { ok: false, status: 0 };
  const open = await clients.matchAll({ type: "window", includeUncontrolled: true });
  for (const c of open) {
    if ("focus" in c) {
      if ("navigate" in c && c.url !== url.href) await c.navigate(url.href).catch(() => {});
      await c.focus();
      return { ok: true, status: 0 };
    }
  }
  if (clients.openWindow) await clients.openWindow(url.href);
  return { ok: true, status: 0 };
}

function parsePayload(data) {
  if (!data) return null;
  try {
    return data.json();
  } catch {
    return { kind: "text", title: "Dispatch", body: data.text() };
  }
}

self.dispatchPush = { notificationFor, handlePush, handleClick };

if (typeof self.addEventListener === "function") {
  self.addEventListener("install", () => self.skipWaiting());
  self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));
  self.addEventListener("push", (event) => {
    event.waitUntil(handlePush(self.registration, parsePayload(event.data)));
  });
  self.addEventListener("notificationclick", (event) => {
    event.waitUntil(handleClick(self.registration, self.clients, event.notification, event.action));
  });
}
