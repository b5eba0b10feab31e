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
    raise NotImplementedError("exercise 05.1 is yours to write: see notebooks/05_mongodb.ipynb, section 'Exercise 05.1'. Stuck? python -m workbook hint 05.1")
    # end exercise
