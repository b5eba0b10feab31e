"""The chat service over gRPC: ``messenger.v1.ChatService`` (protos/messenger/v1/chat.proto) on the use cases.

A servicer method does three things and nothing else: read the caller's id (``x-user-id`` metadata) and the
request's fields, call ONE use case of ``ChatService``, and turn the result into the response message. It
never picks a status code: a use case that refuses raises a domain error, and the interceptor of
``grpc_api/errors.py`` turns it into the right code with its plain message.

Run it as a process with ``python -m reference_app.chat.grpc_server``.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import grpc
from loguru import logger

from ..auth.wiring import forwarded_token_verifier
from ..config import Settings
from ..db.pool import open_pool
from ..events.notifications import Notification
from ..grpc_api import chat_pb2, chat_pb2_grpc
from ..grpc_api.identity import Verify, caller_id
from ..grpc_api.server import RunningServer, run_service, start_server
from ..grpc_api.timestamps import to_optional_timestamp, to_timestamp
from ..tls import grpc_server_tls
from .adapters.hot_chats import GroupingChatStore
from .domain import ChatSummary, InvalidRequest, Message, PrivateChat, Quote
from .service import ChatService

SERVICE_NAME = chat_pb2.DESCRIPTOR.services_by_name["ChatService"].full_name  # "messenger.v1.ChatService"

Context = grpc.aio.ServicerContext[Any, Any]


def chat_message(chat: PrivateChat, user_id: int) -> chat_pb2.Chat:
    return chat_pb2.Chat(
        id=chat.id,
        other_user_id=chat.other_member(user_id),
        last_seq=chat.last_seq,
        created_at=to_timestamp(chat.created_at),
    )


def message_message(message: Message) -> chat_pb2.Message:
    return chat_pb2.Message(
        chat_id=message.chat_id,
        seq=message.seq,
        sender_id=message.sender_id,
        client_message_id=str(message.client_message_id),
        body=message.body,
        created_at=to_timestamp(message.created_at),
        edited_at=to_optional_timestamp(message.edited_at),
        deleted_at=to_optional_timestamp(message.deleted_at),
        reply_to_seq=message.reply_to_seq,
        reply_to=quote_message(message.reply_to),
    )


def quote_message(quote: Quote | None) -> chat_pb2.Quote | None:
    """A reply's quote on the wire; None leaves the field unset, which is what a message that answers nothing has."""
    # exercise 11.4: put a reply's quote on the wire
    raise NotImplementedError("exercise 11.4 is yours to write: see notebooks/11_assembly.ipynb, section 'Exercise 11.4'. Stuck? python -m workbook hint 11.4")
    # end exercise


def summary_message(summary: ChatSummary) -> chat_pb2.ChatSummary:
    return chat_pb2.ChatSummary(
        chat_id=summary.chat_id,
        other_user_id=summary.other_user_id,
        last_message=None if summary.last_message is None else message_message(summary.last_message),
        unread_count=summary.unread_count,
    )


def notification_message(notification: Notification) -> chat_pb2.Notification:
    # user_id stays out: it is always the caller.
    return chat_pb2.Notification(
        id=notification.id,
        event_id=str(notification.event_id),
        chat_id=notification.chat_id,
        seq=notification.seq,
        preview=notification.preview,
        created_at=to_timestamp(notification.created_at),
        read_at=to_optional_timestamp(notification.read_at),
    )


def parse_client_message_id(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise InvalidRequest(f"client_message_id must be a UUID, e.g. {UUID(int=1)}; got {text[:64]!r}") from None


class ChatServicer(chat_pb2_grpc.ChatServiceServicer):
    def __init__(self, chats: ChatService) -> None:
        self._chats = chats

    async def OpenChat(self, request: chat_pb2.OpenChatRequest, context: Context) -> chat_pb2.OpenChatResponse:
        user_id = caller_id(context)
        chat = await self._chats.open_chat(user_id, request.other_user_id)
        return chat_pb2.OpenChatResponse(chat=chat_message(chat, user_id))

    async def SendMessage(self, request: chat_pb2.SendMessageRequest, context: Context) -> chat_pb2.SendMessageResponse:
        user_id = caller_id(context)
        client_message_id = parse_client_message_id(request.client_message_id)
        reply_to_seq = request.reply_to_seq if request.HasField("reply_to_seq") else None
        message = await self._chats.send_message(
            user_id, request.chat_id, client_message_id, request.body, reply_to_seq
        )
        logger.debug("stored message {} of chat {} from user {}", message.seq, message.chat_id, user_id)
        return chat_pb2.SendMessageResponse(message=message_message(message))

    async def EditMessage(self, request: chat_pb2.EditMessageRequest, context: Context) -> chat_pb2.EditMessageResponse:
        message = await self._chats.edit_message(caller_id(context), request.chat_id, request.seq, request.body)
        return chat_pb2.EditMessageResponse(message=message_message(message))

    async def DeleteMessage(
        self, request: chat_pb2.DeleteMessageRequest, context: Context
    ) -> chat_pb2.DeleteMessageResponse:
        message = await self._chats.delete_message(caller_id(context), request.chat_id, request.seq)
        return chat_pb2.DeleteMessageResponse(message=message_message(message))

    async def History(self, request: chat_pb2.HistoryRequest, context: Context) -> chat_pb2.HistoryResponse:
        # exercise 08.4: serve a page of history: from the request's oneof to the use case and back
        raise NotImplementedError("exercise 08.4 is yours to write: see notebooks/08_grpc.ipynb, section 'Exercise 08.4'. Stuck? python -m workbook hint 08.4")
        # end exercise

    async def MarkRead(self, request: chat_pb2.MarkReadRequest, context: Context) -> chat_pb2.MarkReadResponse:
        last_read_seq = await self._chats.mark_read(caller_id(context), request.chat_id, request.seq)
        return chat_pb2.MarkReadResponse(last_read_seq=last_read_seq)

    async def ListChats(self, request: chat_pb2.ListChatsRequest, context: Context) -> chat_pb2.ListChatsResponse:
        summaries = await self._chats.list_chats(caller_id(context))
        return chat_pb2.ListChatsResponse(chats=[summary_message(summary) for summary in summaries])

    async def ListNotifications(
        self, request: chat_pb2.ListNotificationsRequest, context: Context
    ) -> chat_pb2.ListNotificationsResponse:
        # An unset limit reads 0, which chat.proto defines as "the server's default page".
        notifications = await self._chats.list_notifications(caller_id(context), request.limit or None)
        return chat_pb2.ListNotificationsResponse(notifications=[notification_message(n) for n in notifications])


async def start_chat_server(
    chats: ChatService,
    *,
    host: str,
    port: int,
    verify: Verify | None = None,
    credentials: grpc.ServerCredentials | None = None,
) -> RunningServer:
    """A started server for ``chats``; ``port=0`` picks a free port (see ``RunningServer.port``).

    ``credentials``: listen with TLS (reference_app/tls.py). ``verify``: require every call to prove its user
    with an access token (see grpc_api/identity.py).
    """

    def register(server: grpc.aio.Server) -> None:
        chat_pb2_grpc.add_ChatServiceServicer_to_server(ChatServicer(chats), server)

    return await start_server(register, [SERVICE_NAME], host=host, port=port, verify=verify, credentials=credentials)


async def serve(settings: Settings) -> None:
    """The chat service's process: a pool, the use cases, the server; until cancelled, then a clean stop."""
    async with forwarded_token_verifier(settings) as verifier, open_pool(settings.postgres, name="chat") as pool:
        # The sends into a busy chat are written together (adapters/hot_chats.py); each keeps its own answer.
        chats = ChatService(GroupingChatStore(pool), history_page_max=settings.postgres.history_page_max)
        server = await start_chat_server(
            chats,
            host=settings.grpc.bind_host,
            port=settings.grpc.chat_port,
            verify=verifier.verify,
            credentials=grpc_server_tls(settings.grpc),
        )
        await server.wait_then_stop()  # the pool closes after the server: running calls finish with it


def main() -> None:
    run_service("chat", serve)


if __name__ == "__main__":
    main()
