"""Wrap the function of a gRPC method handler, whatever its kind: what a server interceptor does.

gRPC hands a server interceptor a *handler* per call: the method's function and how to (de)serialise its
messages. An interceptor that wants to run code around the method returns the same handler with the function
wrapped. There are four kinds, by whether the request and the response are streams; the two with a single
response are awaited, the two with a streamed response are iterated, so two wrappers cover all four.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

UnaryResponse = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]
StreamedResponse = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]]


def wrap_handler(
    handler: Any,
    wrap_unary: Callable[[UnaryResponse], UnaryResponse],
    wrap_streamed: Callable[[StreamedResponse], StreamedResponse],
) -> grpc.RpcMethodHandler[Any, Any]:
    """The same handler, with its function wrapped. (Any: grpc-stubs describe the handlers of the sync API.)"""
    codecs = {"request_deserializer": handler.request_deserializer, "response_serializer": handler.response_serializer}
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(wrap_unary(handler.unary_unary), **codecs)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(wrap_unary(handler.stream_unary), **codecs)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(wrap_streamed(handler.unary_stream), **codecs)
    return grpc.stream_stream_rpc_method_handler(wrap_streamed(handler.stream_stream), **codecs)
