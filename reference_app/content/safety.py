"""Keep user input from turning into a MongoDB operator.

MongoDB reads a key that starts with ``$`` as an operator (``{"$ne": 0}`` matches everything that is not 0)
and a key with a dot as a path into a nested document (``{"profile.role": ...}``). A query or a document
built from a client's JSON must therefore never carry such a key: the client would be writing our query.
"""

from __future__ import annotations

from collections.abc import Mapping

from .domain import InvalidInput


def refuse_operator_keys(value: object, where: str = "input") -> None:
    """Raise :class:`InvalidInput` naming a key, at any depth, that starts with ``$`` or holds a dot.

    Values may hold anything, ``"$5 off"`` included: only keys become operators or paths. ``where`` names
    the value in the message, e.g. ``author_id``.
    """
    # exercise 05.1: refuse keys that mongodb would read as an operator or a path
    # hint: Walk the whole value: a Mapping's keys and values, and every item of a list or tuple, at any depth.
    # hint: A key is refused when it is not a str, when key.startswith("$"), or when "." in key. Raise InvalidInput with the key in the message.
    # hint: A stack of (value, path) pairs walks any depth without recursion, so a hostile 10 000-level document cannot blow Python's stack.
    pending: list[tuple[object, str]] = [(value, where)]
    while pending:
        current, path = pending.pop()
        if isinstance(current, Mapping):
            for key, inner in current.items():
                if not isinstance(key, str):
                    raise InvalidInput(f"the key {key!r} in {path} is not allowed: keys must be text")
                if key.startswith("$") or "." in key:
                    raise InvalidInput(
                        f"the key {key!r} in {path} is not allowed: a key must not start with '$' or contain '.'"
                    )
                pending.append((inner, f"{path}.{key}"))
        elif isinstance(current, list | tuple):
            pending.extend((item, f"{path}[{index}]") for index, item in enumerate(current))
    # end exercise
