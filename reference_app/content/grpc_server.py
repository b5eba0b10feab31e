"""The content service over gRPC: ``messenger.v1.ContentService`` (protos/messenger/v1/content.proto).

The store (``adapters/mongo.py``) is synchronous pymongo: each call blocks its thread until MongoDB answers.
On the event loop that would stall every other call of this process for that long, so every store call runs
in a worker thread with ``asyncio.to_thread``. (pymongo's client is thread-safe and pools its connections.)

As in the chat server, a method reads the caller and the request, calls the store, and builds the response;
errors become status codes in ``grpc_api/errors.py``, nowhere else.

Run it as a process with ``python -m reference_app.content.grpc_server``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from ..auth.wiring import forwarded_token_verifier
from ..config import Settings
from ..grpc_api import content_pb2, content_pb2_grpc
from ..grpc_api.identity import Verify, caller_id
from ..grpc_api.server import RunningServer, run_service, start_server
from ..grpc_api.timestamps import to_timestamp
from ..tls import grpc_server_tls
from .adapters.mongo import open_content_store
from .domain import Comment, InvalidInput, MediaRef, MediaTooLarge, Post, may_download, media_not_found
from .ports import ContentStore

SERVICE_NAME = content_pb2.DESCRIPTOR.services_by_name["ContentService"].full_name  # "messenger.v1.ContentService"

# The size of each piece of a download. gRPC refuses messages over 4 MiB by default; small pieces also let
# the client start writing to disk before the whole file has arrived.
DOWNLOAD_CHUNK_BYTES = 64 * 1024

Context = grpc.aio.ServicerContext[Any, Any]


def post_message(post: Post) -> content_pb2.Post:
    return content_pb2.Post(
        id=post.id,
        author_id=post.author_id,
        text=post.text,
        media_ids=list(post.media_ids),
        created_at=to_timestamp(post.created_at),
        like_count=post.like_count,
    )


def comment_message(comment: Comment) -> content_pb2.Comment:
    return content_pb2.Comment(
        id=comment.id,
        post_id=comment.post_id,
        author_id=comment.author_id,
        text=comment.text,
        created_at=to_timestamp(comment.created_at),
    )


def media_ref_message(ref: MediaRef) -> content_pb2.MediaRef:
    return content_pb2.MediaRef(id=ref.id, filename=ref.filename, content_type=ref.content_type, length=ref.length)


class ContentServicer(content_pb2_grpc.ContentServiceServicer):
    def __init__(self, store: ContentStore, *, max_media_bytes: int) -> None:
        self._store = store
        self._max_media_bytes = max_media_bytes

    async def CreatePost(
        self, request: content_pb2.CreatePostRequest, context: Context
    ) -> content_pb2.CreatePostResponse:
        author_id = caller_id(context)
        post = await asyncio.to_thread(self._store.create_post, author_id, request.text, list(request.media_ids))
        return content_pb2.CreatePostResponse(post=post_message(post))

    async def GetPost(self, request: content_pb2.GetPostRequest, context: Context) -> content_pb2.GetPostResponse:
        caller_id(context)
        post = await asyncio.to_thread(self._store.get_post, request.post_id)
        return content_pb2.GetPostResponse(post=post_message(post))

    async def Feed(self, request: content_pb2.FeedRequest, context: Context) -> content_pb2.FeedResponse:
        caller_id(context)
        # proto3 strings and numbers cannot be missing: "" and 0 stand for "not given".
        cursor, limit = request.cursor or None, request.limit or None
        if request.HasField("author_id"):
            page = await asyncio.to_thread(self._store.feed_by_author, request.author_id, cursor=cursor, limit=limit)
        else:
            page = await asyncio.to_thread(self._store.feed, cursor=cursor, limit=limit)
        return content_pb2.FeedResponse(
            posts=[post_message(post) for post in page.items], next_cursor=page.next_cursor or ""
        )

    async def AddComment(
        self, request: content_pb2.AddCommentRequest, context: Context
    ) -> content_pb2.AddCommentResponse:
        author_id = caller_id(context)
        comment = await asyncio.to_thread(self._store.add_comment, request.post_id, author_id, request.text)
        return content_pb2.AddCommentResponse(comment=comment_message(comment))

    async def ListComments(
        self, request: content_pb2.ListCommentsRequest, context: Context
    ) -> content_pb2.ListCommentsResponse:
        caller_id(context)
        cursor, limit = request.cursor or None, request.limit or None
        page = await asyncio.to_thread(self._store.comments_of, request.post_id, cursor=cursor, limit=limit)
        return content_pb2.ListCommentsResponse(
            comments=[comment_message(comment) for comment in page.items], next_cursor=page.next_cursor or ""
        )

    async def Like(self, request: content_pb2.LikeRequest, context: Context) -> content_pb2.LikeResponse:
        added = await asyncio.to_thread(self._store.like, request.post_id, caller_id(context))
        return content_pb2.LikeResponse(added=added)

    async def Unlike(self, request: content_pb2.UnlikeRequest, context: Context) -> content_pb2.UnlikeResponse:
        removed = await asyncio.to_thread(self._store.unlike, request.post_id, caller_id(context))
        return content_pb2.UnlikeResponse(removed=removed)

    async def UploadMedia(
        self, request_iterator: AsyncIterator[content_pb2.UploadMediaRequest], context: Context
    ) -> content_pb2.UploadMediaResponse:
        uploader_id = caller_id(context)  # before a byte is read: an anonymous upload is refused at once
        # exercise 08.5: receive a client-streamed upload: a header first, then chunks, never more than the limit
        # hint: `async for part in request_iterator` reads the client's messages as they arrive; part.WhichOneof("part") is "header" or "chunk".
        # hint: The first message must be a header and no later one may be: raise InvalidInput with a plain message otherwise. No message at all is an error too.
        # hint: Count the bytes as chunks arrive and raise MediaTooLarge as soon as the total passes self._max_media_bytes: a client must not make the server hold more than the limit in memory.
        # hint: Then ONE store call in a worker thread: await asyncio.to_thread(self._store.upload_media_by, uploader_id, bytes(data), filename=..., content_type=...). It checks the type, stores the file and records the caller as its uploader.
        header: content_pb2.UploadMediaRequest.Header | None = None
        data = bytearray()
        async for part in request_iterator:
            kind = part.WhichOneof("part")
            if header is None:
                if kind != "header":
                    raise InvalidInput("the first message of an upload must be its header: filename and content type")
                header = part.header
            elif kind != "chunk":
                raise InvalidInput("an upload has one header, in its first message; every later message is a chunk")
            else:
                data += part.chunk
                if len(data) > self._max_media_bytes:
                    raise MediaTooLarge(f"the file is larger than the limit of {self._max_media_bytes} bytes")
        if header is None:
            raise InvalidInput("the upload sent no message: send a header, then the file in chunks")
        ref = await asyncio.to_thread(
            self._store.upload_media_by,
            uploader_id,
            bytes(data),
            filename=header.filename,
            content_type=header.content_type,
        )
        return content_pb2.UploadMediaResponse(media=media_ref_message(ref))
        # end exercise

    async def DownloadMedia(
        self, request: content_pb2.DownloadMediaRequest, context: Context
    ) -> AsyncIterator[content_pb2.DownloadMediaResponse]:
        reader_id = caller_id(context)
        # A file in a post is read like the post, by everyone signed in; until then only by its uploader. Anyone
        # else gets the answer of a file that does not exist: a leaked id must not reveal someone's upload.
        access = await asyncio.to_thread(self._store.media_access, request.media_id)
        if not may_download(reader_id, access):
            raise media_not_found(request.media_id)
        media = await asyncio.to_thread(self._store.download_media, request.media_id)
        yield content_pb2.DownloadMediaResponse(media=media_ref_message(media.ref))
        for start in range(0, len(media.data), DOWNLOAD_CHUNK_BYTES):
            yield content_pb2.DownloadMediaResponse(chunk=media.data[start : start + DOWNLOAD_CHUNK_BYTES])


async def start_content_server(
    store: ContentStore,
    *,
    max_media_bytes: int,
    host: str,
    port: int,
    verify: Verify | None = None,
    credentials: grpc.ServerCredentials | None = None,
) -> RunningServer:
    """A started server for ``store``; ``port=0`` picks a free port (see ``RunningServer.port``).

    ``credentials``: listen with TLS (reference_app/tls.py). ``verify``: require every call to prove its user
    with an access token (see grpc_api/identity.py).
    """

    def register(server: grpc.aio.Server) -> None:
        servicer = ContentServicer(store, max_media_bytes=max_media_bytes)
        content_pb2_grpc.add_ContentServiceServicer_to_server(servicer, server)

    return await start_server(register, [SERVICE_NAME], host=host, port=port, verify=verify, credentials=credentials)


async def serve(settings: Settings) -> None:
    """The content service's process: the store, the server; until cancelled, then a clean stop."""
    # Connecting and creating the indexes block for a moment; at start-up nothing else is waiting yet.
    async with forwarded_token_verifier(settings) as verifier:
        with open_content_store(settings.mongo) as store:
            server = await start_content_server(
                store,
                max_media_bytes=settings.mongo.max_media_bytes,
                host=settings.grpc.bind_host,
                port=settings.grpc.content_port,
                verify=verifier.verify,
                credentials=grpc_server_tls(settings.grpc),
            )
            await server.wait_then_stop()  # the MongoDB client closes after the server: running calls finish with it


def main() -> None:
    run_service("content", serve)


if __name__ == "__main__":
    main()
