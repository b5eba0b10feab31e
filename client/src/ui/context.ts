// What every view of the signed-in app shares. One object, passed in, instead of globals: a view's dependencies
// are visible in its signature.

import type { Api } from "../api";
import type { SavedSession } from "../session";
import type { MessengerSocket } from "../socket";
import type { Notice } from "./notice";
import type { Users } from "./users";

export interface Presence {
  online: boolean;
  lastSeen: string | null;
}

export interface Context {
  api: Api;
  socket: MessengerSocket;
  users: Users;
  notice: Notice;
  me: SavedSession;
  /** Contacts' presence, as the last `presence` frame said (unknown until one comes). */
  presence: Map<number, Presence>;
  /** Per chat, how far the *other* member has read (from `read` pushes): our messages up to it show ✓✓. */
  theirReadSeq: Map<number, number>;
  /** Go to a route: "#/chats", "#/chats/12", "#/feed". */
  navigate(hash: string): void;
}
