// Web Push in this browser: register the service worker (/sw.js), subscribe
// with the gateway's VAPID key, and tell the gateway what this browser wants
// to be notified of. The choice is per browser (kept in localStorage and with
// the subscription on the gateway).

export interface PushPrefs {
  approvals: boolean;
  turnFinished: boolean;
  errors: boolean;
}

export const PREFS_KEY = "dispatch.push.prefs";
export const defaultPrefs: PushPrefs = { approvals: true, turnFinished: false, errors: false };

export type PushSupport = "ok" | "no-service-worker" | "no-push" | "insecure" | "denied";

/** Whether this page can use Web Push at all, and if not, why. */
export function pushSupport(w: Window = window): PushSupport {
  if (!w.isSecureContext) return "insecure";
  if (!("serviceWorker" in w.navigator)) return "no-service-worker";
  const N = (w as Window & { Notification?: typeof Notification }).Notification;
  if (!("PushManager" in w) || !N) return "no-push";
  if (N.permission === "denied") return "denied";
  return "ok";
}

export function supportMessage(s: PushSupport): string {
  switch (s) {
    case "ok":
      return "";
    case "insecure":
      return "Notifications need HTTPS (or localhost): open Dispatch over https://.";
    case "no-service-worker":
    case "no-push":
      return "This browser has no Web Push. On an iPhone, add Dispatch to the Home Screen first.";
    case "denied":
      return "Notifications are blocked for this site in the browser's settings.";
  }
}

export function parsePrefs(stored: string | null): PushPrefs {
  try {
    const v = stored ? JSON.parse(stored) : null;
    if (v && typeof v === "object") {
      return {
        approvals: v.approvals !== false,
        turnFinished: v.turnFinished === true,
        errors: v.errors === true,
      };
    }
  } catch {
    /* fall through */
  }
  return { ...defaultPrefs };
}

export function loadPrefs(): PushPrefs {
  try {
    return parsePrefs(localStorage.getItem(PREFS_KEY));
  } catch {
    return { ...defaultPrefs };
  }
}

function savePrefs(p: PushPrefs): void {
  try {
    localStorage.setItem(PREFS_KEY, JSON.stringify(p));
  } catch {
    /* storage disabled */
  }
}

/** base64url (the VAPID key as the gateway gives it) to bytes. */
export function b64urlToBytes(s: string): Uint8Array<ArrayBuffer> {
  const b64 = s.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (s.length % 4)) % 4);
  const bin = atob(b64);
  const out = new Uint8Array(new ArrayBuffer(bin.length));
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

async function call(method: string, path: string, body?: unknown): Promise<Response> {
  const res = await fetch(path, {
    method,
    credentials: "same-origin",
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok && res.status !== 404) {
    let msg = `${res.status}`;
    try {
      msg = (await res.json()).message ?? msg;
    } catch {
      /* not JSON */
    }
    throw new Error(msg);
  }
  return res;
}

/** The service worker registration (registering /sw.js when needed). */
export async function registration(): Promise<ServiceWorkerRegistration> {
  const existing = await navigator.serviceWorker.getRegistration("/");
  if (existing) return existing;
  await navigator.serviceWorker.register("/sw.js", { scope: "/" });
  return navigator.serviceWorker.ready;
}

/** Registers the service worker at load, so the app installs and pushes arrive. */
export function registerServiceWorker(): void {
  if (typeof navigator === "undefined" || !("serviceWorker" in navigator) || !window.isSecureContext) return;
  navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch((e) => console.warn("service worker:", e));
}

export async function currentSubscription(): Promise<PushSubscription | null> {
  if (pushSupport() !== "ok" && pushSupport() !== "denied") return null;
  const reg = await navigator.serviceWorker.getRegistration("/");
  return reg ? reg.pushManager.getSubscription() : null;
}

/** Asks permission, subscribes, and sends the subscription with `prefs`. */
export async function enable(prefs: PushPrefs): Promise<void> {
  const permission = await Notification.requestPermission();
  if (permission !== "granted") throw new Error("notifications were not allowed");
  const reg = await registration();
  const { publicKey } = (await (await call("GET", "/api/push/vapid-public-key")).json()) as { publicKey: string };
  let sub = await reg.pushManager.getSubscription();
  // A subscription made with another key (the gateway's key changed) is useless.
  const key = sub?.options.applicationServerKey;
  if (sub && key && !sameBytes(new Uint8Array(key), b64urlToBytes(publicKey))) {
    await sub.unsubscribe();
    sub = null;
  }
  sub ??= await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: b64urlToBytes(publicKey) });
  await call("POST", "/api/push/subscriptions", { ...sub.toJSON(), prefs });
  savePrefs(prefs);
}

/** Sends new prefs for this browser's subscription. */
export async function updatePrefs(prefs: PushPrefs): Promise<void> {
  savePrefs(prefs);
  const sub = await currentSubscription();
  if (sub) await call("POST", "/api/push/subscriptions", { ...sub.toJSON(), prefs });
}

export async function disable(): Promise<void> {
  const sub = await currentSubscription();
  if (!sub) return;
  await call("DELETE", "/api/push/subscriptions", { endpoint: sub.endpoint });
  await sub.unsubscribe();
}

export async function sendTest(): Promise<string[]> {
  const r = (await (await call("POST", "/api/push/test")).json()) as { deliveries: { result: string }[] };
  return r.deliveries.map((d) => d.result);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
