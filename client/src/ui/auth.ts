// Signing in: one form, two buttons. "Log in" for an existing account; "Create account" registers, then logs in
// (the API's register does not sign you in: the tokens always come from login).

import { errorText, type Api } from "../api";
import { field, h } from "./dom";

export function authView(api: Api, signedOut: string | null): HTMLElement {
  const username = h("input", { name: "username", autocomplete: "username", required: true, maxlength: 32 });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const displayName = h("input", { name: "display_name", autocomplete: "nickname", maxlength: 64 });
  const status = h("p", { class: "form-status", role: "alert", "aria-live": "assertive" }, signedOut ?? "");
  const logIn = h("button", { type: "submit", class: "primary" }, "Log in");
  const register = h("button", { type: "button" }, "Create account");

  async function run(creating: boolean): Promise<void> {
    if (!form.reportValidity()) return;
    logIn.disabled = register.disabled = true;
    status.textContent = creating ? "Creating your account…" : "Signing in…";
    try {
      if (creating) await api.register(username.value.trim(), password.value, displayName.value.trim());
      await api.logIn(username.value.trim(), password.value); // api.onSession takes it from here
    } catch (error) {
      status.textContent = errorText(error);
      logIn.disabled = register.disabled = false;
    }
  }

  const form = h(
    "form",
    { class: "auth-form", "aria-labelledby": "auth-title" },
    h("h1", { id: "auth-title" }, "Messenger"),
    h("p", { class: "muted" }, "Log in, or create an account with a new username."),
    field("Username", username).wrapper,
    field("Password", password).wrapper,
    field("Display name (new accounts, optional)", displayName).wrapper,
    h("div", { class: "actions" }, logIn, register),
    status,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void run(false);
  });
  register.addEventListener("click", () => void run(true));
  return h("main", { class: "auth" }, form);
}
