"""The web client, used as people use it: in Chromium, with the mouse and the keyboard, against the real app.

Two people chat in real time (typing, read receipts, presence, edit, delete); one goes offline while messages
arrive and, back online, sees each missed message exactly once and in order. A post with an image reaches the
other person's feed, where it is commented on and liked. A signed-in session survives a page refresh and a token
refresh, history loads older pages, and logging out ends it. Each step leaves a screenshot in artifacts/.
"""

from __future__ import annotations

import os
import re
import struct
import uuid
import zlib
from pathlib import Path

import httpx
from playwright.sync_api import Locator, Page, expect
from web_people import PASSWORD, PHONE, PeopleFactory, Person, sign_up, unique

DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "chat.png"


def messages(page: Page) -> list[tuple[int, str]]:
    """The (seq, text) of each message the open chat shows, top to bottom (pending ones have no seq: left out)."""
    items = page.locator(".messages li.message[data-seq]")
    seqs = [int(seq or 0) for seq in items.evaluate_all("items => items.map(item => item.dataset.seq)")]
    bodies = items.locator(".body").all_inner_texts()
    return list(zip(seqs, bodies, strict=True))


def message(page: Page, seq: int) -> Locator:
    return page.locator(f'.messages li.message[data-seq="{seq}"]')


def send(page: Page, text: str) -> None:
    """Type a message and press Enter; wait until the gateway acked it (it is no longer shown as pending)."""
    page.get_by_label("Message", exact=True).fill(text)
    page.get_by_label("Message", exact=True).press("Enter")
    sent = page.locator(".messages li.message[data-seq] .body").filter(has_text=re.compile(f"^{re.escape(text)}$"))
    expect(sent.last).to_be_visible()
    expect(page.locator(".messages li.pending")).to_have_count(0)


def open_chat_with(person: Person, other: Person) -> None:
    """Find the other person by the start of their username and open the chat with them."""
    page = person.page
    page.get_by_label("Find a user by name").fill(other.username[:-2])
    page.get_by_role("button", name=re.compile(other.display_name)).click()
    expect(page).to_have_url(re.compile(r"#/chats/\d+$"))
    expect(page.locator(".chat-title")).to_have_text(other.display_name)


def status_of(page: Page) -> Locator:
    return page.locator(".topbar .status")


def test_two_people_chat_live_and_catch_up_after_going_offline(people: PeopleFactory) -> None:
    ada, bob = people.new("ada", "Ada Lovelace"), people.new("bob", "Bob Kahn")
    sign_up(ada)
    sign_up(bob)
    ada.shot("signed-in")

    open_chat_with(ada, bob)
    send(ada.page, "Hi Bob! Are you there?")
    ada.shot("first-message")

    # Bob did not have this chat when he connected: it appears in his list, unread, pushed over his WebSocket.
    bob_item = bob.page.locator(".chat-item").filter(has_text="Ada Lovelace")
    expect(bob_item.locator(".badge")).to_have_text("1")
    expect(bob_item.locator(".chat-preview")).to_have_text("Hi Bob! Are you there?")
    bob.shot("unread-in-list")
    bob_item.click()
    expect(bob.page.locator(".messages .body")).to_have_text(["Hi Bob! Are you there?"])
    # Bob has read it: Ada's message shows the read receipt.
    expect(message(ada.page, 1).locator('.receipt[data-receipt="read"]')).to_be_visible()
    expect(bob_item.locator(".badge")).to_have_count(0)

    # Typing is shown on the other side while it happens.
    bob.page.get_by_label("Message", exact=True).press_sequentially("Hel")
    expect(ada.page.locator(".chat-subtitle")).to_have_text("typing…")
    ada.shot("bob-typing")
    bob.page.get_by_label("Message", exact=True).fill("")
    send(bob.page, "Hello Ada, I am here.")
    expect(ada.page.locator(".messages .body")).to_have_text(["Hi Bob! Are you there?", "Hello Ada, I am here."])
    ada.shot("live-reply")

    # Bob's network goes away. The client notices, and Ada sees that Bob went offline (presence).
    bob.context.set_offline(True)
    expect(status_of(bob.page)).to_have_attribute("data-status", "offline")
    expect(ada.page.locator(".chat-subtitle")).to_have_text(re.compile(r"^last seen "))
    shown_before = messages(bob.page)
    missed = [f"While you were away ({number})" for number in range(1, 4)]
    for text in missed:
        send(ada.page, text)
    assert messages(bob.page) == shown_before, "an offline browser cannot have received anything"
    bob.shot("offline")

    bob.context.set_offline(False)
    expect(status_of(bob.page)).to_have_attribute("data-status", "online")
    # Back online, the client syncs from the highest seq it holds: each missed message once, in order.
    caught_up = ["Hi Bob! Are you there?", "Hello Ada, I am here.", *missed]
    expect(bob.page.locator(".messages li.message .body")).to_have_text(caught_up)
    assert messages(bob.page) == list(enumerate(caught_up, start=1)), "each missed message once, in order"
    expect(ada.page.locator(".chat-subtitle")).to_have_text("online")
    bob.shot("back-online")

    # Offline again, Bob writes: the message waits in his outbox, shown as pending, and is sent once he is back.
    bob.context.set_offline(True)
    expect(status_of(bob.page)).to_have_attribute("data-status", "offline")
    bob.page.get_by_label("Message", exact=True).fill("Written on the train")
    bob.page.get_by_label("Message", exact=True).press("Enter")
    expect(bob.page.locator(".messages li.pending")).to_contain_text("Sending…")
    bob.shot("pending-while-offline")
    bob.context.set_offline(False)
    everything = [*caught_up, "Written on the train"]
    expect(bob.page.locator(".messages li.message .body")).to_have_text(everything)
    expect(ada.page.locator(".messages li.message .body")).to_have_text(everything)
    assert messages(ada.page) == list(enumerate(everything, start=1)), "the resent message is stored once"
    assert messages(bob.page) == messages(ada.page), "both see the same messages with the same seqs"

    # Ada edits one of her messages and deletes another; Bob sees both changes live.
    ada_missed_3 = message(ada.page, 5)
    ada_missed_3.hover()
    ada_missed_3.get_by_role("button", name="Edit message 5").click()
    ada.page.get_by_label("Edit message", exact=True).fill("While you were away (3), edited")
    ada.page.get_by_role("button", name="Save").click()
    expect(message(bob.page, 5).locator(".body")).to_have_text("While you were away (3), edited")
    expect(message(bob.page, 5).locator(".meta")).to_contain_text("edited")
    message(ada.page, 4).hover()
    message(ada.page, 4).get_by_role("button", name="Delete message 4").click()
    expect(message(bob.page, 4).locator(".body")).to_have_text("Message deleted")
    expect(bob.page.locator(".messages li.message")).to_have_count(6)
    ada.shot("edited-and-deleted")
    bob.shot("sees-edit-and-delete")

    if os.environ.get("BROWSER_DOCS_SCREENSHOT"):
        # The README's picture: the chat view at desktop width (BROWSER_DOCS_SCREENSHOT=1 only, to keep it stable).
        message(bob.page, 3).hover()
        message(bob.page, 3).get_by_role("button", name="Reply").click()
        send(bob.page, "Got them all, in order. Thanks!")
        expect(ada.page.locator(".chat-subtitle")).to_have_text("online")
        expect(ada.page.locator(".messages li.message")).to_have_count(7)
        ada.page.mouse.move(0, 0)
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        ada.page.screenshot(path=str(DOCS_SCREENSHOT))


def tiny_png(width: int = 96, height: int = 64) -> bytes:
    """A real PNG (the content service looks at the bytes): a blue-to-orange gradient."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(
        b"\x00" + b"".join(bytes((47 + x * 2, 111, 223 - x * 2)) for x in range(width)) for _ in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_a_post_with_an_image_reaches_the_other_feed_and_is_commented_and_liked(people: PeopleFactory) -> None:
    grace, alan = (
        people.new("grace", "Grace Hopper"),
        people.new("alan", "Alan Kay", viewport=PHONE),
    )
    sign_up(grace)
    sign_up(alan)
    text = f"A gradient, for the feed {uuid.uuid4().hex[:6]}"

    grace.page.get_by_role("link", name="Feed").click()
    grace.page.get_by_label("New post").fill(text)
    grace.page.get_by_label("Image (optional)").set_input_files(
        files=[{"name": "gradient.png", "mimeType": "image/png", "buffer": tiny_png()}]
    )
    grace.page.get_by_role("button", name="Post", exact=True).click()
    expect(grace.page.locator(".post-form .form-status")).to_have_text("Posted.")
    grace.shot("posted")

    # Alan, on a phone-sized screen, finds it in his feed, with the image loaded.
    alan.page.get_by_role("link", name="Feed").click()
    post = alan.page.locator("article.post").filter(has_text=text)
    expect(post.locator(".post-author")).to_have_text("Grace Hopper")
    image = post.locator("img")
    expect(image).to_have_attribute("src", re.compile(r"^blob:"))
    expect(image).to_have_js_property("naturalWidth", 96)  # decoded: the bytes really are the PNG
    alan.shot("sees-post")

    like = post.locator("button.like")
    like.click()
    expect(like).to_have_text("♥ Liked · 1")
    expect(like).to_have_attribute("aria-pressed", "true")
    like.click()  # unlike …
    expect(like).to_have_text("♡ Like · 0")
    like.click()  # … and like again
    expect(like).to_have_text("♥ Liked · 1")
    post.get_by_role("button", name="Comments").click()
    expect(post.locator(".comment-list")).to_contain_text("No comments yet.")
    post.get_by_label("Write a comment").fill("Lovely colours.")
    post.get_by_role("button", name="Comment", exact=True).click()
    expect(post.locator(".comment")).to_have_text(["Alan Kay Lovely colours."])
    alan.shot("liked-and-commented")

    # Grace sees the like and the comment when she refreshes her feed.
    grace.page.get_by_role("button", name="Refresh").click()
    mine = grace.page.locator("article.post").filter(has_text=text)
    expect(mine.locator(".like")).to_have_text("♡ Like · 1")
    mine.get_by_role("button", name="Comments").click()
    expect(mine.locator(".comment")).to_have_text(["Alan Kay Lovely colours."])
    grace.shot("sees-comment-and-like")


def register_over_rest(http: httpx.Client, username: str, display_name: str) -> tuple[int, dict[str, str]]:
    registered = http.post(
        "/api/v1/auth/register",
        json={
            "username": username,
            "email": f"{username}@example.com",
            "password": PASSWORD,
            "display_name": display_name,
        },
    )
    assert registered.status_code == 201, registered.text
    login = http.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return int(registered.json()["id"]), {"Authorization": f"Bearer {login.json()['access_token']}"}


def test_a_session_survives_a_refresh_loads_older_history_and_ends_at_logout(
    people: PeopleFactory, base_url: str
) -> None:
    linus = people.new("linus", "Linus", viewport=PHONE)  # a phone: the list and the chat take turns
    with httpx.Client(base_url=base_url, timeout=30) as http:
        _, linus_headers = register_over_rest(http, linus.username, linus.display_name)
        margaret_id, margaret_headers = register_over_rest(http, unique("margaret"), "Margaret Hamilton")
        opened = http.post("/api/v1/chats", json={"other_user_id": margaret_id}, headers=linus_headers)
        chat_id = opened.json()["id"]
        for number in range(1, 41):
            sent = http.post(
                f"/api/v1/chats/{chat_id}/messages",
                json={"client_message_id": str(uuid.uuid4()), "body": f"History {number}"},
                headers=margaret_headers,
            )
            assert sent.status_code == 201, sent.text

    # A wrong password is refused in words (the problem document's title and detail), not a blank screen.
    page = linus.page
    page.get_by_label("Username").fill(linus.username)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".form-status")).to_contain_text("Not signed in")
    linus.shot("wrong-password")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".topbar .me")).to_have_text(linus.username)

    item = page.locator(".chat-item").filter(has_text="Margaret Hamilton")
    expect(item.locator(".badge")).to_have_text("40")
    item.click()
    expect(page.locator(".messages li.message")).to_have_count(30)  # the newest page
    expect(page.locator(".sidebar")).to_be_hidden()
    expect(page.locator(".messages li.message").first).to_have_attribute("data-seq", "11")
    page.get_by_role("button", name="Load older messages").click()
    expect(page.locator(".messages li.message")).to_have_count(40)
    assert [seq for seq, _ in messages(page)] == list(range(1, 41)), "every seq once, in order"
    expect(page.get_by_role("button", name="Load older messages")).to_be_hidden()
    linus.shot("older-loaded")

    # A page refresh keeps the session, and the open chat (it is in the URL).
    first_token = page.evaluate("JSON.parse(localStorage.getItem('messenger.session')).accessToken")
    page.reload()
    expect(page.locator(".topbar .me")).to_have_text(linus.username)
    expect(page.locator(".chat-title")).to_have_text("Margaret Hamilton")
    expect(page.locator(".messages li.message")).to_have_count(30)
    linus.shot("after-reload")

    # The access token lives 20 s here: the client refreshes it before it expires, and keeps working.
    page.wait_for_function(
        "old => JSON.parse(localStorage.getItem('messenger.session')).accessToken !== old",
        arg=first_token,
        timeout=30_000,
    )
    expect(status_of(page)).to_have_attribute("data-status", "online")
    send(page, "Still here after a token refresh")
    expect(page.locator(".messages li.message").last).to_have_attribute("data-seq", "41")
    page.get_by_role("link", name="Back to the chat list").click()
    expect(item.locator(".chat-preview")).to_have_text("You: Still here after a token refresh")
    expect(item.locator(".badge")).to_have_count(0)

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    assert page.evaluate("localStorage.getItem('messenger.session')") is None, "logging out forgets the tokens"
    page.reload()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    linus.shot("logged-out")


def test_a_reply_quotes_the_message_it_answers(people: PeopleFactory) -> None:
    ada, bob = people.new("ada", "Ada Lovelace"), people.new("bob", "Bob Kahn")
    sign_up(ada)
    sign_up(bob)
    open_chat_with(ada, bob)
    send(ada.page, "Which protocol should we use?")
    bob.page.locator(".chat-item").filter(has_text="Ada Lovelace").click()
    first = message(bob.page, 1)
    first.hover()
    first.get_by_role("button", name="Reply").click()
    send(bob.page, "TCP, obviously.")
    for page in (bob.page, ada.page):
        quote = message(page, 2).locator(".quote")
        expect(quote).to_contain_text("Ada Lovelace")
        expect(quote).to_contain_text("Which protocol should we use?")
    bob.shot("reply")
