"""Offset page tokens (AIP-158 shape: page_size, opaque page_token, next_page_token)."""

from __future__ import annotations

import base64

from services.platform.errors import InvalidArgument

MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 100
MAX_OFFSET = 10**9  # tokens we issue stay far below; larger ones are forged


def page_bounds(
    page_size: int, page_token: str, default: int = DEFAULT_PAGE_SIZE
) -> tuple[int, int]:
    """(limit, offset) for a request; a negative size or a foreign token is INVALID_ARGUMENT."""
    if page_size < 0:
        raise InvalidArgument("page_size", "must not be negative")
    size = min(page_size or default, MAX_PAGE_SIZE)
    offset = 0
    if page_token:
        if len(page_token) > 64:
            raise InvalidArgument("page_token", "not a token this server issued")
        try:
            offset = int(base64.urlsafe_b64decode(page_token.encode()).decode())
        except ValueError as exc:
            raise InvalidArgument("page_token", "not a token this server issued") from exc
        if not 0 <= offset <= MAX_OFFSET:
            raise InvalidArgument("page_token", "not a token this server issued")
    return size, offset


def next_page_token(offset: int, size: int, fetched: int) -> str:
    """Fetch size+1 rows; there is a next page only when the extra row came back."""
    return base64.urlsafe_b64encode(str(offset + size).encode()).decode() if fetched > size else ""
