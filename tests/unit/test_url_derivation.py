"""Sync URL derivation: table-driven cases plus a hypothesis round trip of awkward passwords."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from migrategate.runner import urls
from migrategate.runner.errors import BadInput
from sqlalchemy.engine import URL, make_url

BASE = "postgresql+asyncpg://app:pw@db.example:5432/shop"


def refusal(call: Callable[[], object], password: str | None = None) -> str:
    """The message of the BadInput that ``call`` raises: one line, without ``password``."""
    with pytest.raises(BadInput) as raised:
        call()
    message = raised.value.message
    assert "\n" not in message
    if password is not None:
        assert password not in message.replace("password", "")
    return message


@pytest.mark.parametrize(
    ("source", "driver", "expected"),
    [
        (BASE, "psycopg", "postgresql+psycopg://app:pw@db.example:5432/shop"),
        (BASE, "psycopg2", "postgresql+psycopg2://app:pw@db.example:5432/shop"),
        (BASE, "asyncpg", BASE),
        (
            BASE + "?ssl=require",
            "psycopg",
            "postgresql+psycopg://app:pw@db.example:5432/shop?sslmode=require",
        ),
        (
            BASE + "?ssl=true",
            "psycopg",
            "postgresql+psycopg://app:pw@db.example:5432/shop?sslmode=require",
        ),
        (
            BASE + "?ssl=false",
            "psycopg2",
            "postgresql+psycopg2://app:pw@db.example:5432/shop?sslmode=disable",
        ),
        (
            BASE + "?timeout=2.5",
            "psycopg",
            "postgresql+psycopg://app:pw@db.example:5432/shop?connect_timeout=3",
        ),
        (
            BASE + "?prepared_statement_cache_size=0&statement_cache_size=0&command_timeout=60",
            "psycopg",
            "postgresql+psycopg://app:pw@db.example:5432/shop",
        ),
        (
            BASE + "?ssl=require&statement_cache_size=0",
            "asyncpg",
            BASE + "?ssl=require&statement_cache_size=0",
        ),
        (
            "postgresql+asyncpg://app:pw@/shop?host=/var/run/postgresql",
            "psycopg",
            "postgresql+psycopg://app:pw@/shop?host=/var/run/postgresql",
        ),
        (
            "postgresql+asyncpg://app:pw@/shop?host=h1:5432&host=h2:5433&target_session_attrs=read-write",
            "psycopg",
            "postgresql+psycopg://app:pw@/shop?host=h1:5432&host=h2:5433&target_session_attrs=read-write",
        ),
        (
            "postgresql+asyncpg://app:p%40ss%3Aw%2Frd%25%3F%23%26%20x@db:5432/shop",
            "psycopg",
            "postgresql+psycopg://app:p%40ss%3Aw%2Frd%25%3F%23%26%20x@db:5432/shop",
        ),
    ],
)
def test_derive_sync_url(source: str, driver: str, expected: str) -> None:
    derived = urls.derive_sync_url(make_url(source), driver)
    assert derived == make_url(expected)


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("?ssl=sometimes", "ssl"),
        ("?timeout=soon", "timeout"),
        ("?timeout=-1", "timeout"),
        ("?direct_tls=true", "'direct_tls'"),
        ("?server_settings=x", "'server_settings'"),
    ],
)
def test_unmappable_query_parameters_fail_clearly(query: str, names: str) -> None:
    message = refusal(lambda: urls.derive_sync_url(make_url(BASE + query), "psycopg"), "pw")
    assert names in message


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("", "is not set"),
        ("   ", "is not set"),
        ("not a url", "not a valid database URL"),
        ("postgresql+asyncpg://app:s3cr3t@db:notaport/shop", "not a valid database URL"),
        ("mysql+aiomysql://app:s3cr3t@db/shop", "'mysql' backend"),
    ],
)
def test_read_async_url_rejects_with_one_line_and_no_password(raw: str, fragment: str) -> None:
    message = refusal(lambda: urls.read_async_url({"DATABASE_URL": raw}, "DATABASE_URL"), "s3cr3t")
    assert fragment in message and "DATABASE_URL" in message


def test_missing_variable_names_the_variable_and_the_fix() -> None:
    message = refusal(lambda: urls.read_async_url({}, "APP_DB"))
    assert "APP_DB is not set" in message and "--database-url-env" in message


@pytest.mark.parametrize(
    ("available", "requested", "chosen"),
    [
        ({"psycopg", "psycopg2"}, "auto", "psycopg"),
        ({"psycopg2"}, "auto", "psycopg2"),
        (set(), "auto", "asyncpg"),
        ({"psycopg", "psycopg2"}, "psycopg2", "psycopg2"),
        (set(), "asyncpg", "asyncpg"),
    ],
)
def test_choose_driver(available: set, requested: str, chosen: str) -> None:
    importable = lambda name: name in available | {"asyncpg"}  # noqa: E731
    assert urls.choose_driver(requested, importable) == chosen


def test_explicit_driver_that_is_missing_is_bad_input() -> None:
    with pytest.raises(BadInput, match="not importable"):
        urls.choose_driver("psycopg2", lambda name: False)


def test_render_masks_unless_asked() -> None:
    url = make_url("postgresql+psycopg://app:top%40secret@db/shop")
    assert "top" not in urls.render(url)
    assert "***" in urls.render(url)
    assert make_url(urls.render(url, show_password=True)).password == "top@secret"


PASSWORD = st.text(
    alphabet=st.sampled_from(list("@:/%?#& abcXYZ019-_.+=!$'()*,;[]~\\\"") + ["é", "ß"]),
    min_size=1,
    max_size=24,
)
HOSTS = st.sampled_from(
    [
        {"host": "db.example", "port": 5432, "query": {}},
        {"host": None, "port": None, "query": {"host": "/var/run/postgresql"}},
        {"host": None, "port": None, "query": {"host": ("h1:5432", "h2:5433")}},
    ]
)


@settings(max_examples=300, deadline=None)
@given(password=PASSWORD, user=st.sampled_from(["app", "a@b", "user name"]), where=HOSTS)
def test_round_trip_keeps_password_and_hosts(password: str, user: str, where: dict) -> None:
    source = URL.create(
        "postgresql+asyncpg",
        username=user,
        password=password,
        host=where["host"],
        port=where["port"],
        database="shop",
        query=where["query"],
    )
    text = source.render_as_string(hide_password=False)
    for driver in ("psycopg", "psycopg2", "asyncpg"):
        derived = urls.derive_sync_url(urls.read_async_url({"U": text}, "U"), driver)
        rendered = urls.render(derived, show_password=True)
        back = make_url(rendered)
        assert back.password == password
        assert back.username == user
        assert back.host == where["host"] and back.port == where["port"]
        assert dict(back.query) == dict(where["query"])
        # alembic.ini interpolation: what set_main_option stores reads back unchanged
        from configparser import ConfigParser

        ini = ConfigParser()
        ini.read_dict({"alembic": {"sqlalchemy.url": urls.escape_for_ini(rendered)}})
        assert make_url(ini.get("alembic", "sqlalchemy.url")).password == password
        masked = urls.render(derived)
        assert make_url(masked).password == "***"
        if len(password) >= 4:
            assert quote(password, safe="") not in masked
