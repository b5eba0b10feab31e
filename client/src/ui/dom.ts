// A tiny helper to build DOM elements, instead of a framework.
//
// Text always goes in as text (textContent), never as HTML: a message body like "<img onerror=…>" is shown as
// those characters and never runs. That matters more than usual here, because the tokens live in localStorage.

type Child = Node | string | number | null | undefined | false;
type Attributes = Record<string, string | number | boolean | null | undefined | EventListener>;

/** h("button", { type: "button", onclick: … }, "Send"): attributes starting with "on" are event listeners. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Attributes = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (value === true) {
      element.setAttribute(name, "");
    } else {
      element.setAttribute(name, String(value));
    }
  }
  append(element, ...children);
  return element;
}

export function append(parent: Node, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace everything inside `parent` with `children`. */
export function replace(parent: Element, ...children: Child[]): void {
  parent.replaceChildren();
  append(parent, ...children);
}

/** A time as people read it: "14:03" today, "3 May, 14:03" before. */
export function timeText(iso: string): string {
  const date = new Date(iso);
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (date.toDateString() === new Date().toDateString()) return time;
  return `${date.toLocaleDateString([], { day: "numeric", month: "short" })}, ${time}`;
}

let counter = 0;
/** A unique id, to tie a <label> to its control. */
export function uniqueId(prefix: string): string {
  counter += 1;
  return `${prefix}-${counter}`;
}

/** A labelled text field: the label is real (<label for>), so screen readers and Playwright's getByLabel find it. */
export function field(
  label: string,
  input: HTMLInputElement | HTMLTextAreaElement,
): { wrapper: HTMLElement; input: HTMLInputElement | HTMLTextAreaElement } {
  input.id ||= uniqueId("field");
  const wrapper = h("div", { class: "field" }, h("label", { for: input.id }, label), input);
  return { wrapper, input };
}
