"""Fixtures for tests against a throwaway PostgreSQL server (see tests/pgserver.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pgserver
import pytest


@pytest.fixture(scope="session")
def pg_server() -> Iterator[pgserver.PgServer]:
    """One server for the whole session; started once, stopped and deleted at the end.

    Its directory is a fresh /tmp/migrategate-pg-* (pytest's tmp dirs are private to
    root, and the server runs as an unprivileged user).
    """
    with pgserver.running_server() as server:
        yield server


@pytest.fixture
def pg_database(pg_server: pgserver.PgServer) -> Iterator[str]:
    """A fresh empty database owned by the application role, dropped afterwards."""
    name = pg_server.create_database()
    yield name
    pg_server.drop_database(name)
