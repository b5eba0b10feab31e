"""The gateway's FastAPI application: what it holds while it runs, and how it starts and stops.

The gateway owns no data. It checks who is calling (the access token, verified here with the auth service's
public key), checks the request's shape, and calls the service that owns the data over gRPC. What it holds is
connections: one gRPC channel per service, a Redis client (presence, rate limits, the token deny-list), the
WebSocket hub and the hub's subscription to the broker. They are opened once, when the app starts (the
*lifespan*), shared by every request, and closed when it stops.

Several gateway nodes may run behind a load balancer (``python -m workbook app up --gateways 2``). Each answers
``GET /healthz`` (the balancer's health check) and, when it has a name, says it in an ``X-Gateway-Node`` header
on every response, WebSocket handshakes included: which node answered is then plain to see.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import redis
from fastapi import FastAPI, WebSocket
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..auth.tokens import TokenVerifier
from ..auth.wiring import build_token_verifier
from ..config import Settings
from ..grpc_api.clients import AuthClient, ChatClient, ContentClient, auth_client, chat_client, content_client
from .hub import Hub, new_node_id
from .presence import Presence
from .problems import install_problem_handlers
from .rate_limit import RateLimiter
from .request_ids import GatewayMiddleware
from .rest import MEDIA_PATH, router
from .ws import WS_PATH, websocket_endpoint

API_PREFIX = "/api/v1"
# Room for a multipart envelope (boundaries, part headers) around the largest file we accept.
MULTIPART_OVERHEAD_BYTES = 16 * 1024
# Redis must answer quickly or fail: a hung Redis must not hold every request for ever.
REDIS_TIMEOUT_SECONDS = 2.0
# The web client, as `make client` builds it: client/dist at the repository's root, two folders above any app root.
CLIENT_DIST = Path(__file__).resolve().parents[2] / "client" / "dist"
NODE_HEADER = "x-gateway-node"
HEALTH_PATH = "/healthz"


@dataclass(frozen=True)
class Gateway:
    """Everything a request handler may use. One per running app, in ``app.state.gateway``."""

    settings: Settings
    auth: AuthClient
    chats: ChatClient
    content: ContentClient
    verifier: TokenVerifier
    presence: Presence
    send_limiter: RateLimiter
    sign_in_per_account: RateLimiter
    sign_in_per_address: RateLimiter
    hub: Hub


def body_limits(settings: Settings) -> Callable[[str], int]:
    """The largest body each path accepts: uploads get the media limit, every other path the HTTP limit."""
    upload_limit = settings.mongo.max_media_bytes + MULTIPART_OVERHEAD_BYTES

    def limit_for(path: str) -> int:
        return upload_limit if path == API_PREFIX + MEDIA_PATH else settings.http.max_body_bytes

    return limit_for


@asynccontextmanager
async def open_gateway(settings: Settings, *, node_name: str | None = None) -> AsyncIterator[Gateway]:
    """Open every connection the gateway needs; close them all, in reverse order, when the block ends."""
    async with AsyncExitStack() as stack:
        client = redis.Redis.from_url(
            settings.redis.url, socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS
        )
        stack.callback(client.close)
        auth = await stack.enter_async_context(auth_client(settings))
        chats = await stack.enter_async_context(chat_client(settings))
        content = await stack.enter_async_context(content_client(settings))
        presence = Presence.from_settings(client, settings.redis)
        hub = Hub(settings, chats=chats, presence=presence, node=new_node_id(node_name))
        await hub.start()
        stack.push_async_callback(hub.stop)
        yield Gateway(
            settings=settings,
            auth=auth,
            chats=chats,
            content=content,
            verifier=build_token_verifier(settings, client),
            presence=presence,
            send_limiter=RateLimiter.for_sending(client, settings.redis),
            sign_in_per_account=RateLimiter.for_signing_in(client, settings.redis, per="account"),
            sign_in_per_address=RateLimiter.for_signing_in(client, settings.redis, per="address"),
            hub=hub,
        )


def create_app(settings: Settings, *, node_name: str | None = None) -> FastAPI:
    """The gateway app for these settings. Nothing connects until it starts (uvicorn, or a TestClient block).

    ``node_name`` names this node among several behind a load balancer (the X-Gateway-Node header).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_gateway(settings, node_name=node_name) as gateway:
            app.state.gateway = gateway
            yield

    app = FastAPI(
        title="Messenger gateway",
        version="1.0.0",
        summary="The messenger's public API: REST under /api/v1 and a WebSocket at /ws.",
        lifespan=lifespan,
        # Problem documents replace FastAPI's default error bodies; say so in the OpenAPI document.
        responses={"default": {"description": "An RFC 9457 problem document (application/problem+json)"}},
    )
    install_problem_handlers(app)
    app.include_router(router, prefix=API_PREFIX)

    @app.get(HEALTH_PATH, include_in_schema=False)
    async def healthz() -> dict[str, str]:
        """The load balancer's health check: the process serves HTTP. Cheap on purpose (asked every second), so
        it asks nothing of Redis or the services: a node is not taken out because a service they all share is down."""
        return {"status": "ok"}

    app.add_middleware(GatewayMiddleware, body_limit_for=body_limits(settings))
    app.add_middleware(WebSocketFirst, path=WS_PATH, endpoint=websocket_endpoint)
    if node_name:
        app.add_middleware(NodeHeader, node_name=node_name)
    serve_client(app, CLIENT_DIST)
    return app


class WebSocketFirst:
    """Hands the WebSocket at ``path`` straight to its endpoint, past FastAPI's routing and middleware.

    A WebSocket lives for hours, and every layer its call went through stays on the stack, with its locals, as
    long as it does: routing, dependency handling, exception middleware, the HTTP middleware. Measured with
    tracemalloc at 1,000 idle sockets, that was about 12 KiB per socket, a third of what one costs. The endpoint
    needs none of it (it catches its own errors, and the HTTP middleware passes WebSockets through anyway).
    Every other request, HTTP or WebSocket, goes on to the app.
    """

    def __init__(self, app: ASGIApp, *, path: str, endpoint: Callable[[WebSocket], Awaitable[None]]) -> None:
        self.app = app
        self.path = path
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == self.path:
            await self.endpoint(WebSocket(scope, receive, send))
        else:
            await self.app(scope, receive, send)


class NodeHeader:
    """Adds ``X-Gateway-Node: <name>`` to every HTTP response and WebSocket handshake of this node."""

    def __init__(self, app: ASGIApp, *, node_name: str) -> None:
        self.app = app
        self.header = (NODE_HEADER.encode(), node_name.encode("latin-1"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        async def send_with_node(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, send_with_node)


def serve_client(app: FastAPI, dist: Path) -> None:
    """Serve the built web client: its page at ``/`` and its bundles under ``/assets``. Nothing without a build.

    Added after the API and /ws routes, and only at those two paths rather than as a catch-all at ``/``: a
    mistyped API path still gets the API's own 404 or 405 problem document, never the client's page.
    """
    index = dist / "index.html"
    if not index.is_file():
        return  # not built (`make client`): the API works the same without it

    @app.get("/", include_in_schema=False)
    async def client_page() -> FileResponse:
        # no-cache: the page names the bundles by their content hash, so it must be asked for anew each time;
        # the bundles themselves never change under a name, and are cached normally.
        return FileResponse(index, headers={"Cache-Control": "no-cache"})

    if (dist / "assets").is_dir():
        app.mount("/assets", StaticFiles(directory=dist / "assets"), name="client-assets")
