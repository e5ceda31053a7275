"""Cursor pagination of list endpoints (spec §1.2): ``limit``, ``order``, ``after``, ``before``.

Lists are kept in creation order, which is the ``created_at`` order the spec sorts by (ties broken
by creation). The answer is ``{"object":"list","data":[...],"first_id","last_id","has_more"}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import msgspec

from gateway.mock.bodies import decimal
from gateway.mock.errors import APIError, clipped, quoted

__all__ = ["ListParams", "Page", "list_params", "paginate"]

T = TypeVar("T")

_DEFAULT_LIMIT = 20
_MAX_LIMIT = 100


class ListParams(msgspec.Struct, frozen=True, kw_only=True):
    limit: int = _DEFAULT_LIMIT
    order: str = "desc"
    after: str | None = None
    before: str | None = None


class Page(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[Any]
    first_id: str | None
    last_id: str | None
    has_more: bool


def list_params(query: Mapping[str, str]) -> ListParams:
    raw_limit = query.get("limit", str(_DEFAULT_LIMIT))
    limit = decimal(raw_limit)
    if limit is None or not 1 <= limit <= _MAX_LIMIT:
        raise APIError(
            400,
            f"Invalid 'limit': expected an integer between 1 and {_MAX_LIMIT}, got {quoted(raw_limit)}.",
            param="limit",
            code="integer_out_of_range",
        )
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise APIError(
            400, f"Invalid 'order': expected 'asc' or 'desc', got {quoted(order)}.", param="order"
        )
    return ListParams(
        limit=limit, order=order, after=query.get("after"), before=query.get("before")
    )


def paginate(items: Sequence[T], params: ListParams, id_of: Callable[[T], str]) -> Page:
    """One page of ``items`` (given oldest first) per ``params``."""
    ordered = list(items) if params.order == "asc" else list(reversed(items))
    ids = [id_of(item) for item in ordered]
    start, end = 0, len(ordered)
    if params.after is not None:
        start = _position(ids, params.after, "after") + 1
    if params.before is not None:
        end = _position(ids, params.before, "before")
    window = ordered[start:end]
    if params.before is not None and params.after is None:
        # Paging backwards: the items just before the cursor.
        data = window[-params.limit :] if window else []
    else:
        data = window[: params.limit]
    return Page(
        data=data,
        first_id=id_of(data[0]) if data else None,
        last_id=id_of(data[-1]) if data else None,
        has_more=len(window) > len(data),
    )


def _position(ids: list[str], cursor: str, param: str) -> int:
    try:
        return ids.index(cursor)
    except ValueError:
        raise APIError(
            400,
            f"Invalid '{param}': no object with id '{clipped(cursor)}' in this list.",
            param=param,
        ) from None
