// The signed-in session: the token pair, kept in localStorage so that a page refresh stays signed in.
//
// Why localStorage and not a cookie: the API takes `Authorization: Bearer …` (and the WebSocket an auth frame),
// not cookies, so the page must be able to read the token. The price is that a script injected into the page
// could read it too; that is why the UI never builds HTML from strings (see ui/dom.ts).
//
// No DOM here: a Storage (localStorage in the browser, a Map in the tests) is passed in.

import type { TokenPair } from "./types";

export const SESSION_KEY = "messenger.session";

/** Refresh this long before the access token expires (a short-lived token: at 3/4 of its life instead). */
const REFRESH_MARGIN_MS = 60_000;

export interface SavedSession {
  userId: number;
  username: string;
  accessToken: string;
  accessExpiresAt: number; // milliseconds since the epoch
  refreshToken: string;
}

export type KeyValueStore = Pick<Storage, "getItem" | "setItem" | "removeItem">;

export function sessionFromTokens(tokens: TokenPair, userId: number, username: string): SavedSession {
  return {
    userId,
    username,
    accessToken: tokens.access_token,
    accessExpiresAt: Date.parse(tokens.access_expires_at),
    refreshToken: tokens.refresh_token,
  };
}

export function loadSession(store: KeyValueStore): SavedSession | null {
  const raw = store.getItem(SESSION_KEY);
  if (!raw) return null;
  try {
    const saved = JSON.parse(raw) as SavedSession;
    return typeof saved.accessToken === "string" && typeof saved.userId === "number" ? saved : null;
  } catch {
    return null; // an old or hand-edited value: start signed out rather than crash
  }
}

export function saveSession(store: KeyValueStore, session: SavedSession | null): void {
  if (session) store.setItem(SESSION_KEY, JSON.stringify(session));
  else store.removeItem(SESSION_KEY);
}

/**
 * How long to wait before refreshing the access token: a minute before it expires; for a token that has less
 * than four minutes left (a short-lived one, as in the browser tests), after three quarters of what is left.
 * 0 for a token that has expired already.
 */
export function refreshDelayMs(accessExpiresAt: number, now: number): number {
  const left = accessExpiresAt - now;
  if (left <= 0) return 0;
  return left > 4 * REFRESH_MARGIN_MS ? left - REFRESH_MARGIN_MS : Math.round((left * 3) / 4);
}
