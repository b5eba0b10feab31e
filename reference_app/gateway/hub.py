"""The WebSocket hub (placeholder: being written). See docs/websocket_protocol.md."""

from __future__ import annotations

from ..config import Settings
from ..grpc_api.clients import ChatClient
from .presence import Presence


class Hub:
    def __init__(self, settings: Settings, *, chats: ChatClient, presence: Presence) -> None:
        self._settings = settings
        self._chats = chats
        self._presence = presence

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def chat_read(self, reader_id: int, chat_id: int, last_read_seq: int) -> None:
        return None
