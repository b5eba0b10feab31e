// The JSON shapes of the gateway, as reference_app/gateway/schemas.py and docs/websocket_protocol.md define them.
// Only types: nothing here runs. Times are ISO 8601 strings; ids and seqs are numbers (post ids are strings).

export interface TokenPair {
  access_token: string;
  access_expires_at: string;
  refresh_token: string;
  token_type: string;
}

export interface User {
  id: number;
  username: string;
  display_name: string;
  created_at: string;
}

/** What a reply shows of the message it answers, as it reads now (as it was when pushed). Empty body if deleted. */
export interface ReplyTo {
  seq: number;
  sender_id: number;
  body: string;
  deleted: boolean;
}

export interface Message {
  chat_id: number;
  seq: number;
  sender_id: number;
  client_message_id: string;
  body: string;
  created_at: string;
  edited_at: string | null;
  deleted_at: string | null;
  // Replies are newer than the rest: a gateway that predates them sends neither field (hence optional).
  reply_to_seq?: number | null;
  reply_to?: ReplyTo | null;
}

export interface Chat {
  id: number;
  other_user_id: number;
  last_seq: number;
  created_at: string;
}

export interface ChatSummary {
  chat_id: number;
  other_user_id: number;
  last_message: Message | null;
  unread_count: number;
}

export interface History {
  messages: Message[]; // oldest first
  has_more: boolean;
}

export interface Post {
  id: string;
  author_id: number;
  text: string;
  media_ids: string[];
  created_at: string;
  like_count: number;
}

export interface Feed {
  posts: Post[]; // newest first
  next_cursor: string; // empty on the last page
}

export interface Comment {
  id: string;
  post_id: string;
  author_id: number;
  text: string;
  created_at: string;
}

export interface Comments {
  comments: Comment[]; // newest first
  next_cursor: string;
}

export interface Media {
  id: string;
  filename: string;
  content_type: string;
  length: number;
}

export interface Like {
  post_id: string;
  changed: boolean;
}

/** An RFC 9457 problem document: every error of the REST API has this shape. */
export interface ProblemDocument {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  request_id?: string;
}
