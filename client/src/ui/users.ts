// Names for user ids. Messages, chats and posts carry only ids; each user is asked for once (GET /users/{id})
// and remembered for the life of the page.

import type { Api } from "../api";
import type { User } from "../types";

export class Users {
  private readonly known = new Map<number, Promise<User | null>>();

  constructor(private readonly api: Api) {}

  remember(user: User): void {
    this.known.set(user.id, Promise.resolve(user));
  }

  get(id: number): Promise<User | null> {
    let user = this.known.get(id);
    if (!user) {
      user = this.api.user(id).catch(() => {
        this.known.delete(id); // try again next time rather than remember a failure
        return null;
      });
      this.known.set(id, user);
    }
    return user;
  }

  /** Fill an element with the user's name as soon as it is known (a placeholder until then). */
  nameInto(element: HTMLElement, id: number): void {
    element.textContent ||= `user ${id}`;
    void this.get(id).then((user) => {
      if (user) element.textContent = displayName(user);
    });
  }
}

export function displayName(user: User): string {
  return user.display_name || user.username;
}
