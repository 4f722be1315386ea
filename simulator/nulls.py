"""Explicit JSON ``null`` as "unset", as the vendors' services take it.

The official SDKs send every parameter a caller left out as ``null`` (zai-sdk's
``videos.generations``, the Volcengine Ark runtime's ``content_generation.tasks.create``:
docs/wire-formats.md §1 and §4), so the real services must read a null as the field's default;
the simulator's request models drop nulls before validating, so a required field sent as null
is still "missing".
"""

from __future__ import annotations

from typing import Any


def unset_nulls(data: Any) -> Any:
    """``data`` without its top-level ``null`` members (a pydantic ``mode="before"`` hook)."""
    if isinstance(data, dict):
        return {name: value for name, value in data.items() if value is not None}
    return data
