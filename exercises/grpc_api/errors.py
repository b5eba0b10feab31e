"""Domain errors → gRPC status codes, in ONE place that every server of the messenger uses.

A servicer never picks a status code. It calls a use case; the use case refuses a bad request by raising a
domain error whose message is one plain sentence meant for the caller (``ChatNotFound``, ``InvalidInput``…).
The interceptor below catches whatever a servicer method raises and ends the call with:

- the code of the error's class in ``STATUS_OF_ERROR`` (looked up along the class's ancestors, so
  ``MediaTooLarge`` gets the code of ``InvalidInput``), and the error's own message;
- INTERNAL and a fixed message for anything else. That is a bug, not a refusal: it is logged here with its
  traceback, and the caller learns nothing about our code. Without this, grpcio would answer UNKNOWN with the
  exception's text, which can carry SQL, file paths or data.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, NoReturn

import grpc
import psycopg
from loguru import logger

from ..auth.credentials import AuthError, InvalidCredentials, InvalidPassword, InvalidToken, RefreshRefused
from ..auth.domain import InvalidProfile, ProfileNotFound
from ..auth.users import InvalidUser, UserAlreadyExists, UserNotFound
from ..chat.domain import (
    ChatError,
    ChatNotFound,
    InvalidMessage,
    InvalidRequest,
    MessageNotFound,
    NotAuthor,
    ReplyNotFound,
)
from ..content.domain import ContentError, InvalidInput, NotFound
from .handlers import StreamedResponse, UnaryResponse, wrap_handler
from .identity import ProofUnavailable, Unauthenticated

Code = grpc.StatusCode

STATUS_OF_ERROR: Mapping[type[BaseException], grpc.StatusCode] = {
    Unauthenticated: Code.UNAUTHENTICATED,
    ProofUnavailable: Code.UNAVAILABLE,  # the token deny-list cannot be asked: try again, nothing was done
    # chat: a chat the caller is not a member of is NOT_FOUND, exactly like a chat that does not exist
    ChatNotFound: Code.NOT_FOUND,
    MessageNotFound: Code.NOT_FOUND,
    NotAuthor: Code.PERMISSION_DENIED,
    InvalidMessage: Code.INVALID_ARGUMENT,
    InvalidRequest: Code.INVALID_ARGUMENT,
    ReplyNotFound: Code.FAILED_PRECONDITION,  # the chat as it is has no such earlier message
    ChatError: Code.FAILED_PRECONDITION,  # a refusal that has no code of its own yet; still the caller's to fix
    # content
    NotFound: Code.NOT_FOUND,
    InvalidInput: Code.INVALID_ARGUMENT,  # MediaTooLarge and MediaTypeNotAllowed too: they are InvalidInput
    ContentError: Code.FAILED_PRECONDITION,
    # sign-up, sign-in and tokens: every refusal of a credential is UNAUTHENTICATED, with a message that says little
    InvalidPassword: Code.INVALID_ARGUMENT,  # a NEW password that breaks the length rule
    InvalidCredentials: Code.UNAUTHENTICATED,
    InvalidToken: Code.UNAUTHENTICATED,
    RefreshRefused: Code.UNAUTHENTICATED,
    AuthError: Code.UNAUTHENTICATED,
    # users and profiles
    UserAlreadyExists: Code.ALREADY_EXISTS,
    UserNotFound: Code.NOT_FOUND,
    InvalidUser: Code.INVALID_ARGUMENT,
    ProfileNotFound: Code.NOT_FOUND,
    InvalidProfile: Code.INVALID_ARGUMENT,
    # A method nobody has written yet (an exercise stub): say so, instead of hiding it behind INTERNAL.
    NotImplementedError: Code.UNIMPLEMENTED,
}

# All a caller learns about a bug on our side. The details are in the service's log, with the traceback.
INTERNAL_MESSAGE = "internal error: the service failed to handle this call; it has been logged"

# Not a bug: the database cannot be reached right now (down, restarting, a connection it ended, no connection free
# in time). The caller may try again; a send retried with the same client_message_id is stored once. The message
# is fixed: the driver's own text names hosts and ports.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (psycopg.OperationalError,)
UNAVAILABLE_MESSAGE = "the database is unavailable right now; try again shortly"

# Only the messenger's own services are wrapped: health and reflection come from grpcio and report their own codes.
OUR_METHODS_PREFIX = "/messenger."


def status_for(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and the message a caller gets for an exception raised by a servicer method."""
    # exercise 08.3: turn an exception into a status code and a message
    raise NotImplementedError("exercise 08.3 is yours to write: see notebooks/08_grpc.ipynb, section 'Exercise 08.3'. Stuck? python -m workbook hint 08.3")
    # end exercise


async def abort_with_status(error: Exception, context: grpc.aio.ServicerContext[Any, Any], method: str) -> NoReturn:
    """End the call with the status ``error`` stands for. A bug is logged here, with its traceback."""
    if isinstance(error, UNAVAILABLE_ERRORS):
        logger.warning("{} failed: the database is unavailable: {}", method, error)
        await context.abort(Code.UNAVAILABLE, UNAVAILABLE_MESSAGE)
    code, message = status_for(error)
    if code is Code.INTERNAL:
        logger.opt(exception=error).error("{} failed with an unexpected error", method)
    await context.abort(code, message)


def _guard_unary_response(behaviour: UnaryResponse, method: str) -> UnaryResponse:
    async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await behaviour(request, context)
        except grpc.aio.AbortError:
            raise  # the method ended the call itself, with a status of its own choosing
        except Exception as error:
            await abort_with_status(error, context, method)

    return guarded


def _guard_streamed_response(behaviour: StreamedResponse, method: str) -> StreamedResponse:
    async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        try:
            async for response in behaviour(request, context):
                yield response
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await abort_with_status(error, context, method)

    return guarded


class StatusFromErrors(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Wraps every method of the messenger's services so that what it raises becomes a proper status.

    gRPC hands the interceptor a *handler* per call: the method's function and how to (de)serialise its
    messages. The interceptor returns the same handler with the function wrapped. One of four kinds, by whether
    the request and the response are streams.
    """

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(OUR_METHODS_PREFIX):
            return handler
        return wrap_handler(
            handler,
            lambda unary: _guard_unary_response(unary, method),
            lambda streamed: _guard_streamed_response(streamed, method),
        )
