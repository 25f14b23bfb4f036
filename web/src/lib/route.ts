// Routes live in the URL hash so that the gateway only ever serves index.html
// at "/" (no server-side fallback needed), and a reload lands on the same view.

export type Route =
  | { page: "login" }
  | { page: "workspaces" }
  | { page: "inbox" }
  | { page: "workspace"; name: string; session?: string };

export function parseRoute(hash: string): Route {
  const h = hash.replace(/^#/, "");
  const parts = h.split("/").filter((p) => p.length > 0).map(safeDecode);
  if (parts[0] === "login") return { page: "login" };
  if (parts[0] === "inbox") return { page: "inbox" };
  if (parts[0] === "w" && parts[1]) {
    if (parts[2] === "s" && parts[3]) return { page: "workspace", name: parts[1], session: parts[3] };
    return { page: "workspace", name: parts[1] };
  }
  return { page: "workspaces" };
}

export function routeHash(r: Route): string {
  switch (r.page) {
    case "login":
      return "#/login";
    case "workspaces":
      return "#/";
    case "inbox":
      return "#/inbox";
    case "workspace":
      return `#/w/${encodeURIComponent(r.name)}` + (r.session ? `/s/${encodeURIComponent(r.session)}` : "");
  }
}

/**
 * The hash that records `session` as the active tab of workspace `name`, or
 * null when the URL (`current`) has already left that workspace: a tab that
 * becomes active while the user navigates away must not write the workspace
 * back into the URL.
 */
export function sessionHash(current: string, name: string, session: string | null): string | null {
  const r = parseRoute(current);
  if (r.page !== "workspace" || r.name !== name) return null;
  return routeHash({ page: "workspace", name, session: session ?? undefined });
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
