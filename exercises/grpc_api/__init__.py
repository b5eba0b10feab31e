"""Stage 08: the messenger's gRPC layer.

- ``*_pb2.py`` / ``*_pb2_grpc.py`` (and their ``.pyi``): generated from ``protos/messenger/v1/*.proto`` by
  ``scripts/gen_protos.py`` (``make protos``). Never edit them by hand: change the .proto and regenerate.
- ``errors``: domain errors → gRPC status codes, in one interceptor every server uses.
- ``identity``: who the caller is, from the ``x-user-id`` metadata the gateway sets.
- ``server``: a server with the standard health and reflection services, started and stopped cleanly.
- ``clients``: small async clients whose every call has a deadline.

The servicers themselves live with their services: ``chat/grpc_server.py`` and ``content/grpc_server.py``.
"""
