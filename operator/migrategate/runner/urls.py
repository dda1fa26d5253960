"""Derive the URL Alembic runs with from the async URL.

Pure functions over ``sqlalchemy.engine.URL``: the URL is parsed and rebuilt with
``make_url``/``URL.set``, never edited as a string, so percent-encoded
passwords, unix-socket ``host=`` and multiple hosts survive.
"""

import importlib
import importlib.util
import math
from collections.abc import Mapping
from typing import Callable, Union

from sqlalchemy.engine import URL, make_url

from .contract import Driver
from .errors import BadInput

QueryValue = Union[str, tuple[str, ...]]  # a parameter given more than once is a tuple

# asyncpg-only tuning with no libpq meaning: dropping it changes nothing about what runs.
ASYNC_ONLY_PARAMS = frozenset(
    {
        "prepared_statement_cache_size",
        "statement_cache_size",
        "command_timeout",
        "max_cached_statement_lifetime",
        "max_cacheable_statement_size",
    }
)
# Parameters libpq (psycopg, psycopg2) understands as they are.
LIBPQ_PARAMS = frozenset(
    {
        "host",
        "port",
        "application_name",
        "options",
        "target_session_attrs",
        "krbsrvname",
        "passfile",
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "sslcrl",
        "connect_timeout",
        "gssencmode",
        "channel_binding",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
    }
)
SSL_MODES = frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})
SSL_BOOLEANS = {"true": "require", "1": "require", "false": "disable", "0": "disable"}

SYNC_DRIVERNAMES = {
    Driver.PSYCOPG.value: "postgresql+psycopg",
    Driver.PSYCOPG2.value: "postgresql+psycopg2",
    Driver.ASYNCPG.value: "postgresql+asyncpg",
}
URL_SHAPE = "postgresql+asyncpg://USER:PASSWORD@HOST:5432/DBNAME"


def read_async_url(environ: Mapping[str, str], variable: str) -> URL:
    """Parse the async URL held by environment variable ``variable``."""
    raw = environ.get(variable, "")
    if not raw.strip():
        raise BadInput(
            f"{variable} is not set: set it to the async database URL ({URL_SHAPE}),"
            " or name another variable with --database-url-env"
        )
    try:
        url = make_url(raw.strip())
    except Exception:  # the parser's message quotes the URL, password included
        raise BadInput(
            f"{variable} is not a valid database URL: expected {URL_SHAPE}"
            " with special characters in the password percent-encoded"
        ) from None
    if url.get_backend_name() != "postgresql":
        raise BadInput(
            f"{variable} names the {url.get_backend_name()!r} backend;"
            f" migrategate needs PostgreSQL ({URL_SHAPE})"
        )
    return url


def driver_importable(driver: str) -> bool:
    """True if the DBAPI module and SQLAlchemy's dialect for ``driver`` both import."""
    dialect = "sqlalchemy.dialects.postgresql." + driver
    try:
        importlib.import_module(driver)
        return importlib.util.find_spec(dialect) is not None
    except ImportError:
        return False


def choose_driver(requested: str, importable: Callable[[str], bool] = driver_importable) -> str:
    """Resolve ``auto`` to psycopg, then psycopg2, then asyncpg; check an explicit choice."""
    if requested == Driver.AUTO.value:
        for candidate in (Driver.PSYCOPG.value, Driver.PSYCOPG2.value):
            if importable(candidate):
                return candidate
        return Driver.ASYNCPG.value
    if requested not in SYNC_DRIVERNAMES:
        raise BadInput(f"unknown driver {requested!r}: use one of auto, psycopg, psycopg2, asyncpg")
    if not importable(requested):
        raise BadInput(
            f"driver {requested!r} is not importable in this image:"
            " install it, or use --driver auto"
        )
    return requested


def _ssl_mode(value: QueryValue) -> str:
    """Map asyncpg's ``ssl`` value to libpq's ``sslmode``."""
    if isinstance(value, str):
        lowered = value.lower()
        if lowered in SSL_MODES:
            return lowered
        if lowered in SSL_BOOLEANS:
            return SSL_BOOLEANS[lowered]
    raise BadInput(
        "the URL's ssl parameter must be one of " + ", ".join(sorted(SSL_MODES)) + ", true, false"
    )


def _connect_timeout(value: QueryValue) -> str:
    """Map asyncpg's float ``timeout`` to libpq's whole-second ``connect_timeout``."""
    try:
        seconds = float(value) if isinstance(value, str) else float("nan")
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or math.isinf(seconds):
        raise BadInput("the URL's timeout parameter must be a positive number of seconds")
    return str(max(1, math.ceil(seconds)))


def libpq_query(query: Mapping[str, QueryValue]) -> dict[str, QueryValue]:
    """Translate an asyncpg URL's query parameters into libpq ones."""
    out: dict[str, QueryValue] = {}
    for key, value in query.items():
        if key in ASYNC_ONLY_PARAMS:
            continue
        if key == "ssl":
            out["sslmode"] = _ssl_mode(value)
        elif key == "timeout":
            out["connect_timeout"] = _connect_timeout(value)
        elif key in LIBPQ_PARAMS:
            out[key] = value
        else:
            raise BadInput(
                f"the URL's query parameter {key!r} has no equivalent for a sync driver:"
                " remove it, or use --driver asyncpg"
            )
    return out


def derive_sync_url(url: URL, driver: str) -> URL:
    """The URL Alembic runs with: ``url`` on ``driver``, query translated for libpq drivers."""
    if driver == Driver.ASYNCPG.value:
        return url.set(drivername=SYNC_DRIVERNAMES[driver])
    return url.set(drivername=SYNC_DRIVERNAMES[driver], query=libpq_query(url.query))


def render(url: URL, show_password: bool = False) -> str:
    """The URL as a string, password masked as *** unless ``show_password``."""
    return url.render_as_string(hide_password=not show_password)


def escape_for_ini(value: str) -> str:
    """Escape ``%`` for alembic.ini's interpolation (``config.set_main_option``)."""
    return value.replace("%", "%%")
