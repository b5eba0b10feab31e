// The entry point: signed in (a session in localStorage) → the app; signed out → the login form.

import "./styles.css";

import { Api, errorText } from "./api";
import { loadSession, SESSION_KEY, type SavedSession } from "./session";
import { MessengerApp } from "./ui/app";
import { authView } from "./ui/auth";

// A last resort: an error nobody caught is still shown in words, never a blank or silently broken page.
const lastResort = document.createElement("p");
lastResort.className = "notice fatal";
lastResort.setAttribute("role", "alert");
lastResort.hidden = true;
document.body.prepend(lastResort);
function showUncaught(error: unknown): void {
  console.error(error);
  lastResort.textContent = `Something went wrong: ${errorText(error)}. Reloading the page should help.`;
  lastResort.hidden = false;
}
window.addEventListener("error", (event) => showUncaught(event.error ?? event.message));
window.addEventListener("unhandledrejection", (event) => showUncaught(event.reason));

const root = document.getElementById("app")!;
const api = new Api(localStorage, loadSession(localStorage));
let app: MessengerApp | null = null;
let shownUserId: number | null = null;

function show(session: SavedSession | null, signedOutMessage: string | null = null): void {
  if (session && session.userId === shownUserId && app) {
    app.tokenRefreshed(); // same user, new access token
    return;
  }
  app?.stop();
  app = null;
  shownUserId = session?.userId ?? null;
  if (session) {
    app = new MessengerApp(api, session);
    root.replaceChildren(app.element);
    app.start();
  } else {
    root.replaceChildren(authView(api, signedOutMessage));
    document.querySelector<HTMLInputElement>("input[name=username]")?.focus();
  }
}

api.onSession = (session) => show(session, session ? null : "You are signed out.");
show(api.current);

// Another tab of this browser refreshed the tokens, logged out, or logged in as someone else: follow it.
window.addEventListener("storage", (event) => {
  if (event.storageArea === localStorage && (event.key === null || event.key === SESSION_KEY)) {
    api.adopt(loadSession(localStorage));
  }
});
