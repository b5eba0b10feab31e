"""Stage 05: the content service — posts, comments, likes and media files on MongoDB.

``domain`` holds the entities, the rules and the errors; ``safety`` keeps client input from becoming a
MongoDB operator; ``ports`` says what storage must offer; ``adapters.mongo`` is that storage on pymongo.
"""

from .domain import (
    Comment,
    ContentError,
    InvalidInput,
    Media,
    MediaAccess,
    MediaRef,
    MediaTooLarge,
    MediaTypeNotAllowed,
    NotFound,
    Page,
    Post,
)
from .ports import ContentStore
from .safety import refuse_operator_keys

__all__ = [
    "Comment",
    "ContentError",
    "ContentStore",
    "InvalidInput",
    "Media",
    "MediaAccess",
    "MediaRef",
    "MediaTooLarge",
    "MediaTypeNotAllowed",
    "NotFound",
    "Page",
    "Post",
    "refuse_operator_keys",
]
