"""Helpers shared by the test files (import them with ``from conftest import ...``)."""

from __future__ import annotations

from typing import Any


def cfg(thread_id: str, **extra: Any) -> dict:
    """A LangGraph config for ``thread_id``, with any other ``configurable`` keys."""
    return {"configurable": {"thread_id": thread_id, **extra}}


# The throwaway PostgreSQL server of the Postgres tests (tests/pg_server.py).
from pg_server import pg_db, pg_server  # noqa: E402, F401
