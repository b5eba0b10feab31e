"""The WebSocket endpoint (placeholder: being written). See docs/websocket_protocol.md."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
