// How often the workspace list asks again. In a cluster a workspace moves
// through phases on its own (Pending, Starting, Running; Suspended when idle),
// so a list that only loads once goes stale.
import type { WorkspaceInfo, WorkspacePhase } from "./protocol";

/** Phases a workspace leaves by itself, soon. */
const PASSING: ReadonlySet<WorkspacePhase> = new Set(["Pending", "Starting", "Terminating"]);

export const SOON_MS = 2_000;
export const STEADY_MS = 10_000;

/** Milliseconds until the next refresh of a list that holds `list`. */
export function listRefreshMs(list: readonly Pick<WorkspaceInfo, "phase">[] | null): number {
  return list?.some((w) => PASSING.has(w.phase)) ? SOON_MS : STEADY_MS;
}
