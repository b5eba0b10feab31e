// The token refresh against a fake fetch: the one piece of Api whose mistakes would sign people out.
import { afterEach, describe, expect, it, vi } from "vitest";

import { Api } from "../src/api";
import { loadSession, saveSession, type SavedSession } from "../src/session";

function memoryStore() {
  const values = new Map<string, string>();
  return {
    getItem: (key: string) => values.get(key) ?? null,
    setItem: (key: string, value: string) => void values.set(key, value),
    removeItem: (key: string) => void values.delete(key),
  };
}

const session: SavedSession = {
  userId: 1,
  username: "ada",
  accessToken: "access-1",
  accessExpiresAt: Date.now() + 600_000,
  refreshToken: "refresh-1",
};

function answer(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

afterEach(() => {
  vi.unstubAllGlobals();
});

describe("Api", () => {
  it("trades the refresh token for a new pair, once, however many callers ask at the same time", async () => {
    const fetch = vi.fn(async () =>
      answer(200, {
        access_token: "access-2",
        access_expires_at: new Date(Date.now() + 900_000).toISOString(),
        refresh_token: "refresh-2",
        token_type: "Bearer",
      }),
    );
    vi.stubGlobal("fetch", fetch);
    const store = memoryStore();
    const api = new Api(store, session);
    expect(await Promise.all([api.refresh(), api.refresh()])).toEqual([true, true]);
    expect(fetch).toHaveBeenCalledTimes(1);
    expect(api.current?.accessToken).toBe("access-2");
    expect(loadSession(store)?.refreshToken).toBe("refresh-2"); // kept for the next page load
  });

  it("takes the pair another tab refreshed instead of spending a refresh token twice", async () => {
    const fetch = vi.fn();
    vi.stubGlobal("fetch", fetch);
    const store = memoryStore();
    const api = new Api(store, session);
    saveSession(store, { ...session, accessToken: "access-from-tab-2", refreshToken: "refresh-from-tab-2" });
    expect(await api.refresh()).toBe(true);
    expect(fetch).not.toHaveBeenCalled();
    expect(api.current?.accessToken).toBe("access-from-tab-2");
  });

  it("signs out when the refresh token is refused, and says why in words from the problem document", async () => {
    vi.stubGlobal(
      "fetch",
      vi.fn(async () => answer(401, { title: "Not signed in", detail: "the refresh token is not valid", status: 401 })),
    );
    const store = memoryStore();
    const api = new Api(store, session);
    const seen: (SavedSession | null)[] = [];
    api.onSession = (changed) => seen.push(changed);
    expect(await api.refresh()).toBe(false);
    expect(api.current).toBeNull();
    expect(seen).toEqual([null]);
    await expect(api.chats()).rejects.toThrow("Not signed in: the refresh token is not valid");
  });
});
