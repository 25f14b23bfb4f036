// Reconnect delays: exponential, capped, with jitter so that many clients
// dropped at once (a restarted gateway) do not come back in lockstep.

export interface BackoffPolicy {
  /** Delay before the first retry, in ms. */
  baseMs: number;
  /** Upper bound of any delay, in ms. */
  capMs: number;
  factor: number;
  /** Share of the delay that is randomised, 0..1 (0.5 = "equal jitter"). */
  jitter: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 300, capMs: 10_000, factor: 2, jitter: 0.5 };

/**
 * Delay before retry number `attempt` (0 for the first retry). `random` returns
 * a number in [0, 1), as Math.random does; pass a fixed one in tests.
 */
export function backoffDelay(attempt: number, policy: BackoffPolicy = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  const a = Number.isFinite(attempt) ? Math.max(0, Math.floor(attempt)) : 0;
  // Cap the exponent too, so a long outage never overflows to Infinity.
  const exp = Math.min(policy.baseMs * Math.pow(policy.factor, Math.min(a, 64)), policy.capMs);
  const fixed = exp * (1 - policy.jitter);
  const r = Math.min(Math.max(random(), 0), 1);
  return Math.round(fixed + exp * policy.jitter * r);
}
