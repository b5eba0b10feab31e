// Errors in words. Every failure the user should know of ends up here, as a sentence in an alert region that
// screen readers announce (role="alert"), instead of a blank screen or a silent console message.

import { errorText } from "../api";
import { h, replace } from "./dom";

export class Notice {
  readonly element = h("div", { class: "notice", role: "alert", "aria-live": "assertive", hidden: true });
  private timer: ReturnType<typeof setTimeout> | undefined;

  show(error: unknown, prefix = ""): void {
    const text = prefix ? `${prefix}: ${errorText(error)}` : errorText(error);
    replace(
      this.element,
      h("span", { class: "notice-text" }, text),
      h(
        "button",
        { type: "button", class: "link", "aria-label": "Dismiss the message", onclick: () => this.hide() },
        "✕",
      ),
    );
    this.element.hidden = false;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.hide(), 10_000);
  }

  hide(): void {
    this.element.hidden = true;
  }
}
