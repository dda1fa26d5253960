"""Fixtures for tests against a throwaway PostgreSQL server (see tests/pgserver.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parents[1]
if str(TESTS_DIR) not in sys.path:  # make tests/pgserver.py and tests/samples importable
    sys.path.insert(0, str(TESTS_DIR))

import pgserver  # noqa: E402


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
