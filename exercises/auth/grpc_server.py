"""The auth service over gRPC: ``messenger.v1.AuthService`` (protos/messenger/v1/auth.proto) on the use cases.

Most of these calls do not read ``x-user-id``: Register, Login and Refresh are made by a user who is not signed
in yet, and Logout and Authenticate carry the access token itself, which says who it is. GetUser and
SearchUsers are signed-in calls, like the chat service's: the caller's id must be in ``x-user-id``. The answer
does not depend on who asks, but a call without it did not come through the gateway and is refused.
The use cases raise the errors of ``credentials.py`` and ``users.py``; ``grpc_api/errors.py`` maps them to
status codes (a wrong password and a bad token are UNAUTHENTICATED, a taken username ALREADY_EXISTS).

Run it as a process with ``python -m reference_app.auth.grpc_server``.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from ..config import Settings
from ..db.pool import open_pool
from ..grpc_api import auth_pb2, auth_pb2_grpc
from ..grpc_api.identity import Verify, caller_id
from ..grpc_api.server import RunningServer, run_service, start_server
from ..grpc_api.timestamps import to_timestamp
from ..tls import grpc_server_tls
from .credentials import TokenPair
from .service import AuthService
from .users import User
from .wiring import build_auth_service, forwarded_token_verifier, redis_for_tokens

SERVICE_NAME = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name  # "messenger.v1.AuthService"

Context = grpc.aio.ServicerContext[Any, Any]


def user_message(user: User) -> auth_pb2.User:
    # The e-mail address stays out: the response of a sign-up needs no more than what other users may see.
    return auth_pb2.User(
        id=user.id, username=user.username, display_name=user.display_name, created_at=to_timestamp(user.created_at)
    )


def token_pair_message(pair: TokenPair) -> auth_pb2.TokenPair:
    return auth_pb2.TokenPair(
        access_token=pair.access_token,
        access_expires_at=Timestamp(seconds=pair.expires_at),
        refresh_token=pair.refresh_token,
    )


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, auth: AuthService) -> None:
        self._auth = auth

    async def Register(self, request: auth_pb2.RegisterRequest, context: Context) -> auth_pb2.RegisterResponse:
        user = await self._auth.register(request.username, request.email, request.password, request.display_name)
        return auth_pb2.RegisterResponse(user=user_message(user))

    async def Login(self, request: auth_pb2.LoginRequest, context: Context) -> auth_pb2.LoginResponse:
        pair = await self._auth.login(request.username, request.password)
        return auth_pb2.LoginResponse(tokens=token_pair_message(pair))

    async def Refresh(self, request: auth_pb2.RefreshRequest, context: Context) -> auth_pb2.RefreshResponse:
        pair = await self._auth.refresh(request.refresh_token)
        return auth_pb2.RefreshResponse(tokens=token_pair_message(pair))

    async def Logout(self, request: auth_pb2.LogoutRequest, context: Context) -> auth_pb2.LogoutResponse:
        await self._auth.logout(request.access_token, request.refresh_token or None)
        return auth_pb2.LogoutResponse()

    async def Authenticate(
        self, request: auth_pb2.AuthenticateRequest, context: Context
    ) -> auth_pb2.AuthenticateResponse:
        return auth_pb2.AuthenticateResponse(user_id=await self._auth.authenticate(request.access_token))

    async def GetUser(self, request: auth_pb2.GetUserRequest, context: Context) -> auth_pb2.GetUserResponse:
        caller_id(context)  # signed-in only: raises Unauthenticated (→ UNAUTHENTICATED) without x-user-id
        return auth_pb2.GetUserResponse(user=user_message(await self._auth.get_user(request.user_id)))

    async def SearchUsers(self, request: auth_pb2.SearchUsersRequest, context: Context) -> auth_pb2.SearchUsersResponse:
        caller_id(context)
        # proto3 cannot tell an unset limit from 0: 0 means "the server's default", as auth.proto says.
        users = await self._auth.search_users(request.query, request.limit or None)
        return auth_pb2.SearchUsersResponse(users=[user_message(user) for user in users])


async def start_auth_server(
    auth: AuthService,
    *,
    host: str,
    port: int,
    verify: Verify | None = None,
    credentials: grpc.ServerCredentials | None = None,
) -> RunningServer:
    """A started server for ``auth``; ``port=0`` picks a free port (see ``RunningServer.port``).

    ``credentials``: listen with TLS (reference_app/tls.py). ``verify``: require the signed-in calls to prove
    their user with an access token (see grpc_api/identity.py).
    """

    def register(server: grpc.aio.Server) -> None:
        auth_pb2_grpc.add_AuthServiceServicer_to_server(AuthServicer(auth), server)

    return await start_server(register, [SERVICE_NAME], host=host, port=port, verify=verify, credentials=credentials)


async def serve(settings: Settings) -> None:
    """The auth service's process: a pool, Redis, the use cases, the server; until cancelled, then a clean stop."""
    client = redis_for_tokens(settings)
    try:
        async with open_pool(settings.postgres, name="auth") as pool, forwarded_token_verifier(settings) as verifier:
            auth = build_auth_service(settings, pool, client)
            server = await start_auth_server(
                auth,
                host=settings.grpc.bind_host,
                port=settings.grpc.auth_port,
                verify=verifier.verify,
                credentials=grpc_server_tls(settings.grpc),
            )
            await server.wait_then_stop()
    finally:
        client.close()


def main() -> None:
    run_service("auth", serve)


if __name__ == "__main__":
    main()
