import { describe, expect, it } from "vitest";

import { loadSession, refreshDelayMs, saveSession, type SavedSession } from "../src/session";

describe("the session", () => {
  it("refreshes a minute before a 15-minute token expires", () => {
    expect(refreshDelayMs(15 * 60_000, 0)).toBe(14 * 60_000);
  });

  it("refreshes a short-lived token after three quarters of its life, and an expired one at once", () => {
    expect(refreshDelayMs(20_000, 0)).toBe(15_000);
    expect(refreshDelayMs(1_000, 5_000)).toBe(0);
  });

  it("survives a page refresh (localStorage) and forgets everything on logout", () => {
    const store = new Map<string, string>();
    const storage = {
      getItem: (key: string) => store.get(key) ?? null,
      setItem: (key: string, value: string) => void store.set(key, value),
      removeItem: (key: string) => void store.delete(key),
    };
    const session: SavedSession = {
      userId: 1,
      username: "ada",
      accessToken: "a",
      accessExpiresAt: 1,
      refreshToken: "r",
    };
    saveSession(storage, session);
    expect(loadSession(storage)).toEqual(session);
    saveSession(storage, null);
    expect(loadSession(storage)).toBeNull();
    store.set("messenger.session", "not json");
    expect(loadSession(storage)).toBeNull();
  });
});
