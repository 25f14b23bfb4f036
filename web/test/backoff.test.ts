import { describe, expect, it } from "vitest";
import { backoffDelay, DEFAULT_BACKOFF } from "../src/lib/backoff";

const policy = { baseMs: 100, capMs: 5000, factor: 2, jitter: 0.5 };

describe("backoff", () => {
  it("grows exponentially between the jitter bounds", () => {
    expect(backoffDelay(0, policy, () => 0)).toBe(50);
    expect(backoffDelay(0, policy, () => 0.999999)).toBe(100);
    expect(backoffDelay(3, policy, () => 0)).toBe(400);
    expect(backoffDelay(3, policy, () => 0.999999)).toBe(800);
  });

  it("is capped, even after a very long outage", () => {
    for (const attempt of [6, 10, 100, 10_000]) {
      const hi = backoffDelay(attempt, policy, () => 0.999999);
      expect(hi).toBeLessThanOrEqual(5000);
      expect(hi).toBeGreaterThanOrEqual(4999);
      expect(Number.isFinite(backoffDelay(attempt, policy))).toBe(true);
    }
  });

  it("spreads clients apart with jitter", () => {
    let seed = 1;
    const rnd = () => ((seed = (seed * 48271) % 2147483647) / 2147483647);
    const delays = new Set(Array.from({ length: 50 }, () => backoffDelay(4, policy, rnd)));
    expect(delays.size).toBeGreaterThan(20);
    for (const d of delays) {
      expect(d).toBeGreaterThanOrEqual(800);
      expect(d).toBeLessThanOrEqual(1600);
    }
  });

  it("treats bad attempt numbers as the first", () => {
    expect(backoffDelay(-3, policy, () => 0)).toBe(50);
    expect(backoffDelay(Number.NaN, DEFAULT_BACKOFF, () => 0)).toBeGreaterThan(0);
  });
});
