"""People at their own browsers, for the browser tests: a context and a page each, signing up, screenshots.

A module of its own (not conftest.py) so that the tests can import it by a name no other test folder uses.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Browser, BrowserContext, Page, expect

ARTIFACTS = Path(__file__).parent / "artifacts"
PASSWORD = "correct horse battery staple"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@dataclass
class Person:
    """One person at their own computer: a browser context, its page, and who they are."""

    username: str
    display_name: str
    context: BrowserContext
    page: Page
    shots: Screenshots

    def shot(self, step: str) -> None:
        self.shots.take(self.page, f"{self.username.split('_')[0]}-{step}")


class Screenshots:
    """Numbered PNGs of a test's steps under tests/browser/artifacts/<test>/: what a failure looked like."""

    def __init__(self, name: str) -> None:
        self.folder = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        self.folder.mkdir(parents=True, exist_ok=True)
        for old in self.folder.glob("*.png"):
            old.unlink()
        self.count = 0

    def take(self, page: Page, step: str) -> None:
        self.count += 1
        page.screenshot(path=str(self.folder / f"{self.count:02d}-{step}.png"))


class PeopleFactory:
    def __init__(self, browser: Browser, base_url: str, shots: Screenshots) -> None:
        self.browser = browser
        self.base_url = base_url
        self.shots = shots
        self.contexts: list[BrowserContext] = []

    def new(self, name: str, display_name: str, *, viewport: dict[str, int] = DESKTOP) -> Person:
        """A person with a fresh browser (nobody signed in), on the client's page."""
        context = self.browser.new_context(base_url=self.base_url, viewport=viewport)
        self.contexts.append(context)
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())  # "Delete this message?" → yes
        # What the page said on its console: printed with a failing test's output (pytest shows captured stdout).
        page.on("console", lambda message: print(f"[{name} console.{message.type}] {message.text}"))
        page.on("pageerror", lambda error: print(f"[{name} page error] {error}"))
        page.goto("/")
        return Person(unique(name), display_name, context, page, self.shots)

    def close(self) -> None:
        for context in self.contexts:
            context.close()


def unique(name: str) -> str:
    return f"{name}_{uuid.uuid4().hex[:6]}"


def sign_up(person: Person) -> None:
    """Create the account in the form (it registers, then logs in) and wait for the signed-in app."""
    page = person.page
    page.get_by_label("Username").fill(person.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Display name (new accounts, optional)").fill(person.display_name)
    page.get_by_role("button", name="Create account").click()
    expect(page.locator(".topbar .me")).to_have_text(person.username)
    expect(page.locator(".topbar .status")).to_have_attribute("data-status", "online")
