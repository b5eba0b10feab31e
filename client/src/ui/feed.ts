// The content side: the feed (newest posts first), a new post with text and an image, comments and likes.
//
// Posts are not pushed over the WebSocket: the feed is read when it is opened, and on "Refresh".
// A post says how many likes it has, not whether *you* like it, so this client remembers the posts you liked
// (per user, in localStorage); liking is idempotent on the server (PUT), so a wrong guess costs nothing.

import { errorText } from "../api";
import type { Comment, Post } from "../types";
import type { Context } from "./context";
import { field, h, replace, timeText } from "./dom";

const MAX_IMAGE_BYTES = 5 * 1024 * 1024; // the content service's default limit: say so before uploading

export class FeedView {
  readonly element: HTMLElement;
  private readonly posts = h("div", { class: "posts", "aria-label": "Posts" });
  private readonly moreButton = h("button", { type: "button", class: "older", hidden: true }, "Load more posts");
  private cursor = "";
  private readonly likedKey: string;
  private readonly liked: Set<string>;
  private readonly imageUrls: string[] = [];

  constructor(private readonly context: Context) {
    this.likedKey = `messenger.liked.${context.me.userId}`;
    this.liked = new Set(JSON.parse(localStorage.getItem(this.likedKey) ?? "[]") as string[]);
    this.moreButton.addEventListener("click", () => void this.load(false));
    this.element = h(
      "section",
      { class: "feed", "aria-labelledby": "feed-title" },
      h(
        "div",
        { class: "feed-head" },
        h("h2", { id: "feed-title" }, "Feed"),
        h("button", { type: "button", onclick: () => void this.load(true) }, "Refresh"),
      ),
      this.composer(),
      this.posts,
      this.moreButton,
    );
  }

  /** Read the first page (fresh = true) or the next one. */
  async load(fresh = true): Promise<void> {
    if (fresh) {
      this.cursor = "";
      replace(this.posts, h("p", { class: "muted" }, "Loading…"));
    }
    // One page at a time: a second click while this one loads would append the same page twice.
    this.moreButton.disabled = true;
    try {
      const page = await this.context.api.feed(this.cursor);
      if (fresh) {
        this.forgetImages();
        replace(this.posts);
      }
      for (const post of page.posts) this.posts.append(this.postCard(post));
      if (fresh && page.posts.length === 0) replace(this.posts, h("p", { class: "muted" }, "No posts yet."));
      this.cursor = page.next_cursor;
      this.moreButton.hidden = !page.next_cursor;
    } catch (error) {
      replace(this.posts, h("p", { class: "error-text" }, `Could not load the feed: ${errorText(error)}`));
    } finally {
      this.moreButton.disabled = false;
    }
  }

  close(): void {
    this.forgetImages();
  }

  private forgetImages(): void {
    for (const url of this.imageUrls.splice(0)) URL.revokeObjectURL(url);
  }

  // -- a new post ----------------------------------------------------------------------------------------------------

  private composer(): HTMLElement {
    const text = h("textarea", { name: "post-text", rows: 3, maxlength: 4000, placeholder: "What's new?" });
    const file = h("input", { type: "file", name: "image", accept: "image/png,image/jpeg,image/gif,image/webp" });
    const status = h("p", { class: "form-status", role: "status" });
    const submit = h("button", { type: "submit", class: "primary" }, "Post");
    const form = h(
      "form",
      { class: "post-form", "aria-label": "Write a post" },
      field("New post", text).wrapper,
      field("Image (optional)", file).wrapper,
      h("div", { class: "actions" }, submit, status),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const image = file.files?.[0];
      if (!text.value.trim() && !image) {
        status.textContent = "Write something or choose an image.";
        return;
      }
      if (image && image.size > MAX_IMAGE_BYTES) {
        status.textContent = "That image is too large (at most 5 MB).";
        return;
      }
      submit.disabled = true;
      try {
        // Two steps: upload the file (multipart), then create the post naming it.
        const mediaIds: string[] = [];
        if (image) {
          status.textContent = "Uploading the image…";
          mediaIds.push((await this.context.api.upload(image)).id);
        }
        status.textContent = "Posting…";
        const post = await this.context.api.createPost(text.value.trim(), mediaIds);
        form.reset();
        status.textContent = "Posted.";
        this.posts.querySelector(".muted")?.remove(); // "No posts yet."
        this.posts.prepend(this.postCard(post));
      } catch (error) {
        status.textContent = `Not posted: ${errorText(error)}`;
      } finally {
        submit.disabled = false;
      }
    });
    return form;
  }

  // -- one post ------------------------------------------------------------------------------------------------------

  private postCard(post: Post): HTMLElement {
    const author = h("span", { class: "post-author" });
    this.context.users.nameInto(author, post.author_id);
    const images = h("div", { class: "post-images" });
    for (const mediaId of post.media_ids) images.append(this.image(mediaId));
    const comments = h("section", { class: "comments", hidden: true, "aria-label": "Comments" });
    const commentsButton = h("button", { type: "button", class: "link", "aria-expanded": "false" }, "Comments");
    commentsButton.addEventListener("click", () => {
      const opening = comments.hidden;
      comments.hidden = !opening;
      commentsButton.setAttribute("aria-expanded", String(opening));
      if (opening) void this.loadComments(post, comments);
    });
    return h(
      "article",
      { class: "post", "data-post-id": post.id },
      h("header", { class: "post-head" }, author, h("time", { datetime: post.created_at }, timeText(post.created_at))),
      post.text ? h("p", { class: "post-text" }, post.text) : null,
      images,
      h("div", { class: "post-actions" }, this.likeButton(post), commentsButton),
      comments,
    );
  }

  /** The media route needs the Authorization header, so the image is fetched, then shown from a blob: URL. */
  private image(mediaId: string): HTMLElement {
    const img = h("img", { alt: "An image attached to the post", loading: "lazy", "data-media-id": mediaId });
    void this.context.api.mediaBlob(mediaId).then(
      (blob) => {
        const url = URL.createObjectURL(blob);
        this.imageUrls.push(url);
        img.src = url;
      },
      (error) => img.replaceWith(h("p", { class: "error-text" }, `The image could not be loaded: ${errorText(error)}`)),
    );
    return img;
  }

  private likeButton(post: Post): HTMLElement {
    let count = post.like_count;
    const button = h("button", { type: "button", class: "like" });
    const draw = () => {
      const liked = this.liked.has(post.id);
      button.setAttribute("aria-pressed", String(liked));
      button.textContent = `${liked ? "♥ Liked" : "♡ Like"} · ${count}`;
    };
    button.addEventListener("click", async () => {
      const liking = !this.liked.has(post.id);
      button.disabled = true;
      try {
        const { changed } = await this.context.api.like(post.id, liking);
        if (changed) count += liking ? 1 : -1; // unchanged: it was already so (another device); the count stands
        if (liking) this.liked.add(post.id);
        else this.liked.delete(post.id);
        localStorage.setItem(this.likedKey, JSON.stringify([...this.liked]));
        draw();
      } catch (error) {
        this.context.notice.show(error, liking ? "Could not like the post" : "Could not unlike the post");
      } finally {
        button.disabled = false;
      }
    });
    draw();
    return button;
  }

  private async loadComments(post: Post, section: HTMLElement): Promise<void> {
    const list = h("ul", { class: "comment-list" }, h("li", { class: "muted" }, "Loading…"));
    const text = h("input", { name: "comment", maxlength: 2000, autocomplete: "off" });
    const form = h(
      "form",
      { class: "comment-form" },
      field("Write a comment", text).wrapper,
      h("button", { type: "submit" }, "Comment"),
    );
    const status = h("p", { class: "form-status", role: "status" });
    replace(section, list, form, status);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!text.value.trim()) return;
      try {
        const comment = await this.context.api.addComment(post.id, text.value.trim());
        text.value = "";
        status.textContent = "";
        list.querySelector(".muted")?.remove();
        list.append(this.commentItem(comment)); // oldest at the top, as in a conversation
      } catch (error) {
        status.textContent = `Not sent: ${errorText(error)}`;
      }
    });
    try {
      const page = await this.context.api.comments(post.id);
      // The API gives the newest first; a thread reads better oldest first.
      const items = page.comments.reverse().map((comment) => this.commentItem(comment));
      replace(list, ...(items.length > 0 ? items : [h("li", { class: "muted" }, "No comments yet.")]));
    } catch (error) {
      replace(list, h("li", { class: "error-text" }, `Could not load the comments: ${errorText(error)}`));
    }
  }

  private commentItem(comment: Comment): HTMLElement {
    const author = h("span", { class: "comment-author" });
    this.context.users.nameInto(author, comment.author_id);
    return h("li", { class: "comment", "data-comment-id": comment.id }, author, " ", h("span", {}, comment.text));
  }
}
