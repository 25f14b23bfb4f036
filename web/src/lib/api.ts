// The gateway's REST API (contracts: /api/login, /api/me, /api/workspaces...).
// The session cookie travels by itself (same origin).

import type { ApprovalAnswer, Inbox } from "./generated/protocol";
import type { ApiErrorBody, Me, SessionInfo, WorkspaceInfo } from "./protocol";

export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
    /** Seconds to wait, from Retry-After on 429. */
    public retryAfter?: number,
  ) {
    super(message);
  }
}

/** Retry-After is either seconds or an HTTP date. */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | undefined {
  if (value === null || value.trim() === "") return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return parseInt(v, 10);
  const t = Date.parse(v);
  if (Number.isNaN(t)) return undefined;
  return Math.max(0, Math.ceil((t - now) / 1000));
}

async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      credentials: "same-origin",
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, "network", `cannot reach the server (${e instanceof Error ? e.message : String(e)})`);
  }
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  let parsed: unknown = undefined;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  if (!res.ok) {
    const b = parsed as Partial<ApiErrorBody> | undefined;
    throw new ApiError(
      res.status,
      typeof b?.code === "string" ? b.code : `http_${res.status}`,
      typeof b?.message === "string" ? b.message : `${res.status} ${res.statusText}`,
      res.status === 429 ? parseRetryAfter(res.headers.get("retry-after")) : undefined,
    );
  }
  return parsed as T;
}

const ws = (name: string) => `/api/workspaces/${encodeURIComponent(name)}`;

export const api = {
  login: (key: string) => request<Me>("POST", "/api/login", { key }),
  logout: () => request<void>("POST", "/api/logout"),
  me: () => request<Me>("GET", "/api/me"),
  listWorkspaces: () => request<WorkspaceInfo[]>("GET", "/api/workspaces"),
  createWorkspace: (name: string) => request<WorkspaceInfo>("POST", "/api/workspaces", { name }),
  openWorkspace: (name: string) => request<WorkspaceInfo>("POST", `${ws(name)}/open`),
  deleteWorkspace: (name: string) => request<void>("DELETE", ws(name)),
  listSessions: (name: string) => request<SessionInfo[]>("GET", `${ws(name)}/sessions`),
  inbox: () => request<Inbox>("GET", "/api/approvals"),
  answerApproval: (workspace: string, session: string, requestId: string, a: ApprovalAnswer) =>
    request<void>("POST", `/api/approvals/${encodeURIComponent(workspace)}/${encodeURIComponent(session)}/${encodeURIComponent(requestId)}`, a),
};
