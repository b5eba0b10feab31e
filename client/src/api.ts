// The REST API under /api/v1: one method per route the client uses, and one place that handles errors and tokens.
//
// Every error becomes an ApiError whose message is words a person can read: the problem document's `title` and
// `detail` (RFC 9457), or what went wrong with the network. The UI shows that message; it never shows a blank.

import {
  loadSession,
  refreshDelayMs,
  saveSession,
  sessionFromTokens,
  type KeyValueStore,
  type SavedSession,
} from "./session";
import type {
  Chat,
  ChatSummary,
  Comment,
  Comments,
  Feed,
  History,
  Like,
  Media,
  Post,
  ProblemDocument,
  TokenPair,
  User,
} from "./types";

const BASE = "/api/v1";

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number, // 0: the request never got an answer (offline, gateway down)
    readonly problem: ProblemDocument | null = null,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

/** The words for a problem document: "Title: detail", or whichever of them there is. */
export function problemText(problem: ProblemDocument | null, status: number): string {
  const title = problem?.title?.trim();
  const detail = problem?.detail?.trim();
  if (title && detail && detail !== title) return `${title}: ${detail}`;
  return title || detail || `The server answered ${status}`;
}

/** Any thrown value as one sentence for the screen. */
export function errorText(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}

export class Api {
  private session: SavedSession | null;
  private refreshing: Promise<boolean> | null = null;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  /** Called whenever the session changes: signed in, refreshed (a new access token), or signed out (null). */
  onSession: (session: SavedSession | null) => void = () => {};

  constructor(
    private readonly store: KeyValueStore,
    session: SavedSession | null,
  ) {
    this.session = session;
    this.scheduleRefresh();
  }

  get current(): SavedSession | null {
    return this.session;
  }

  // -- the session -------------------------------------------------------------------------------------------

  async register(username: string, password: string, displayName: string): Promise<User> {
    const email = `${username}@example.com`; // the API asks for one; this client does not use it
    return this.request<User>("POST", "/auth/register", {
      body: { username, email, password, display_name: displayName },
      auth: false,
    });
  }

  async logIn(username: string, password: string): Promise<SavedSession> {
    const tokens = await this.request<TokenPair>("POST", "/auth/login", { body: { username, password }, auth: false });
    // The token pair does not say who we are: ask, with the new access token.
    const me = await this.request<User>("GET", "/users/me", { token: tokens.access_token });
    this.setSession(sessionFromTokens(tokens, me.id, me.username));
    return this.session!;
  }

  async logOut(): Promise<void> {
    const session = this.session;
    this.setSession(null);
    if (!session) return;
    try {
      // Revokes the refresh token (and the access token) on the server; signed out locally whatever happens.
      await this.request("POST", "/auth/logout", {
        body: { refresh_token: session.refreshToken },
        token: session.accessToken,
      });
    } catch {
      // Offline or already expired: the tokens are forgotten here anyway, and expire on their own.
    }
  }

  /** A valid access token, refreshed first if it has (nearly) expired; null when signed out. */
  async accessToken(forceRefresh = false): Promise<string | null> {
    if (!this.session) return null;
    if (forceRefresh || this.session.accessExpiresAt - Date.now() < 5_000) {
      await this.refresh();
    }
    return this.session?.accessToken ?? null;
  }

  /**
   * Trade the refresh token for a new pair. One refresh at a time: callers that arrive while one runs wait for it.
   * Returns false when the session is over (the refresh token was refused); true when refreshed, or when it
   * could not be tried right now (offline) — the old token is kept and the next request tries again.
   */
  refresh(): Promise<boolean> {
    this.refreshing ??= this.doRefresh().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  /**
   * Refresh tokens are single-use: the auth service rotates them, and a spent one used again revokes the whole
   * sign-in (it looks stolen). Tabs of one browser share localStorage, so one tab at a time refreshes (a Web Lock,
   * where the browser has them), and a tab whose token another tab has refreshed already takes the stored pair.
   */
  private async doRefresh(): Promise<boolean> {
    const locks = globalThis.navigator?.locks; // only in secure contexts (https, localhost, 127.0.0.1)
    if (!locks) return this.refreshOnce();
    let refreshed = false;
    await locks.request("messenger.refresh", async () => {
      refreshed = await this.refreshOnce();
    });
    return refreshed;
  }

  private async refreshOnce(): Promise<boolean> {
    const session = this.session;
    if (!session) return false;
    const stored = loadSession(this.store);
    if (stored && stored.userId === session.userId && stored.refreshToken !== session.refreshToken) {
      this.setSession(stored); // another tab refreshed: our refresh token is spent, theirs is the live one
      return true;
    }
    try {
      const tokens = await this.request<TokenPair>("POST", "/auth/refresh", {
        body: { refresh_token: session.refreshToken },
        auth: false,
      });
      if (this.session === session) this.setSession(sessionFromTokens(tokens, session.userId, session.username));
      return true;
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        this.setSession(null); // the refresh token is no longer valid: sign in again
        return false;
      }
      this.scheduleRefresh(5_000); // offline or the gateway is down: try again soon
      return true;
    }
  }

  /** Another tab changed the session (refreshed, signed out, signed in): follow it without writing it back. */
  adopt(session: SavedSession | null): void {
    if (session?.refreshToken === this.session?.refreshToken) return;
    this.session = session;
    this.scheduleRefresh();
    this.onSession(session);
  }

  private setSession(session: SavedSession | null): void {
    this.session = session;
    saveSession(this.store, session);
    this.scheduleRefresh();
    this.onSession(session);
  }

  private scheduleRefresh(delayMs?: number): void {
    clearTimeout(this.refreshTimer);
    if (!this.session) return;
    const delay = delayMs ?? refreshDelayMs(this.session.accessExpiresAt, Date.now());
    this.refreshTimer = setTimeout(() => void this.refresh(), delay);
  }

  // -- the routes --------------------------------------------------------------------------------------------

  user(id: number): Promise<User> {
    return this.request<User>("GET", `/users/${id}`);
  }

  searchUsers(prefix: string): Promise<User[]> {
    return this.request<User[]>("GET", `/users/search?${new URLSearchParams({ q: prefix, limit: "10" })}`);
  }

  chats(): Promise<ChatSummary[]> {
    return this.request<ChatSummary[]>("GET", "/chats");
  }

  openChat(otherUserId: number): Promise<Chat> {
    return this.request<Chat>("POST", "/chats", { body: { other_user_id: otherUserId } });
  }

  history(chatId: number, beforeSeq?: number, limit = 30): Promise<History> {
    const query = new URLSearchParams({ limit: String(limit) });
    if (beforeSeq !== undefined) query.set("before_seq", String(beforeSeq));
    return this.request<History>("GET", `/chats/${chatId}/messages?${query}`);
  }

  feed(cursor = ""): Promise<Feed> {
    return this.request<Feed>("GET", `/posts?${new URLSearchParams({ cursor, limit: "20" })}`);
  }

  createPost(text: string, mediaIds: string[]): Promise<Post> {
    return this.request<Post>("POST", "/posts", { body: { text, media_ids: mediaIds } });
  }

  comments(postId: string): Promise<Comments> {
    return this.request<Comments>("GET", `/posts/${encodeURIComponent(postId)}/comments?limit=50`);
  }

  addComment(postId: string, text: string): Promise<Comment> {
    return this.request<Comment>("POST", `/posts/${encodeURIComponent(postId)}/comments`, { body: { text } });
  }

  like(postId: string, liked: boolean): Promise<Like> {
    return this.request<Like>(liked ? "PUT" : "DELETE", `/posts/${encodeURIComponent(postId)}/like`);
  }

  upload(file: File): Promise<Media> {
    const form = new FormData();
    form.append("file", file, file.name);
    return this.request<Media>("POST", "/media", { form });
  }

  /** An uploaded image as a blob: the media route needs the Authorization header, which an <img src> cannot send. */
  async mediaBlob(mediaId: string): Promise<Blob> {
    const response = await this.fetchWithAuth("GET", `/media/${encodeURIComponent(mediaId)}`, {});
    return response.blob();
  }

  // -- one request -------------------------------------------------------------------------------------------

  private async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const response = await this.fetchWithAuth(method, path, options);
    if (response.status === 204) return undefined as T;
    return (await response.json()) as T;
  }

  private async fetchWithAuth(method: string, path: string, options: RequestOptions): Promise<Response> {
    let response = await this.send(method, path, options);
    // A 401 with our own token: it may just have expired (a laptop that slept). Refresh once and try again.
    if (response.status === 401 && options.auth !== false && !options.token && this.session) {
      if (await this.refresh()) response = await this.send(method, path, options);
    }
    if (!response.ok) {
      let problem: ProblemDocument | null = null;
      try {
        problem = (await response.json()) as ProblemDocument;
      } catch {
        // not JSON (a proxy's HTML error page): the status alone will have to do
      }
      throw new ApiError(problemText(problem, response.status), response.status, problem);
    }
    return response;
  }

  private async send(method: string, path: string, options: RequestOptions): Promise<Response> {
    const headers: Record<string, string> = { Accept: "application/json" };
    const token = options.token ?? (options.auth === false ? undefined : this.session?.accessToken);
    if (token) headers.Authorization = `Bearer ${token}`;
    let body: BodyInit | undefined;
    if (options.form) {
      body = options.form; // the browser sets the multipart Content-Type with its boundary
    } else if (options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(options.body);
    }
    try {
      return await fetch(BASE + path, { method, headers, body });
    } catch {
      throw new ApiError("Cannot reach the server: check your connection and try again", 0);
    }
  }
}

interface RequestOptions {
  body?: unknown;
  form?: FormData;
  auth?: boolean; // false: send no token (register, login, refresh)
  token?: string; // this token instead of the session's
}
