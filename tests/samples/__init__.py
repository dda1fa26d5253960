"""Sample Alembic projects, one per seed env.py style, and the image versions built from them.

Each folder ``seed00N_*`` holds one application's alembic.ini, env.py and tiny
``app`` package. ``materialize`` copies it and adds the revision files of an image
version (stacked from ``variants/``), giving a self-contained directory that can be
bind-mounted as an image's ``/app``. See README.md here.
"""

from __future__ import annotations

import configparser
import shutil
import textwrap
from pathlib import Path

SAMPLES_DIR = Path(__file__).resolve().parent
VARIANTS_DIR = SAMPLES_DIR / "variants"

# Style name -> seed number (../shared/seeds/00N_*.txt).
STYLES: dict[str, str] = {
    "seed000_env_sync_url": "000",
    "seed001_async_settings": "001",
    "seed002_async_engine_wrap": "002",
    "seed003_settings_sync_property": "003",
    "seed004_ini_url": "004",
}

# Image version -> (revision folders under variants/, stacked in order; heads after upgrading).
# The revisions are the same for every style, so they live once, outside the projects.
VERSIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "v1": (("v1",), "0003"),  # 0001 create table (+rows), 0002 add column, 0003 data migration
    "v2": (("v1", "v2"), "0004"),  # + 0004 (waits on SLOW_LOCK_KEY, then adds a column)
    "v2-broken": (("v1", "v2-broken"), "0004"),  # + a 0004 that fails (division by zero)
    "v3": (("v1", "v2", "v3"), "0005"),  # + the good 0004 + 0005 (an index): the v2-broken fix
}

# Expand/contract image versions (issue 12; docs/expand-contract.md): a rename of items.name
# to items.title. Version -> (layers; expand head, contract head or None). Kept apart from
# VERSIONS, whose versions the cluster tests build as images with a single head each.
EXPAND_CONTRACT_VERSIONS: dict[str, tuple[tuple[str, ...], str, str | None]] = {
    "ec-v1": (("v1",), "0003", None),  # no contract branch: code reads and writes items.name
    # + 0004 add title, backfill, sync trigger | contract 0004c (own base, depends_on 0004):
    # drop the trigger and items.name
    "ec-v2": (("v1", "ec-v2"), "0004", "0004c"),
    # + 0005 add created_at | contract 0005c (after 0004c, depends_on 0005): drop items.slug
    "ec-v3": (("v1", "ec-v2", "ec-v3"), "0005", "0005c"),
    # ec-v2 whose contract revision 0004c fails (division by zero): a failed contract phase
    "ec-v2-contract-broken": (("v1", "ec-v2", "ec-v2-contract-broken"), "0004", "0004c"),
}

# Every image version the cluster tests build (imagebuild, kind): both tables.
IMAGE_VERSIONS: tuple[str, ...] = (*VERSIONS, *EXPAND_CONTRACT_VERSIONS)

# A test that holds this advisory lock (pg_advisory_lock) keeps revision 0004 of
# v2/v3 waiting until it lets go: a migration that is as slow as the test wants.
SLOW_LOCK_KEY = 7400001

# seed004_ini_url's ``app/db/base.py`` in the SQLAlchemy 1.4 spelling: the samples use 2.0's
# ``DeclarativeBase``, which 1.4 lacks. Put it in place to run the sample under SQLAlchemy 1.4.
BASE_14_PATH = "app/db/base.py"
BASE_14 = '''"""Declarative base in the SQLAlchemy 1.4 spelling."""

from sqlalchemy import Column, Integer, String
from sqlalchemy.orm import declarative_base

Base = declarative_base()


class Item(Base):
    __tablename__ = "items"
    id = Column(Integer, primary_key=True)
    name = Column(String(100), nullable=False)
    slug = Column(String(100), nullable=False)
'''

# Environment variable naming a file the sample's ``app`` package appends a line
# to whenever it is imported (proof that env.py ran).
IMPORT_MARKER_ENV = "SAMPLE_IMPORT_MARKER"


def versions_dir(project: Path) -> Path:
    """The ``versions`` folder of a sample project, from its alembic.ini script_location."""
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(project / "alembic.ini")
    return project / ini["alembic"]["script_location"] / "versions"


def materialize(style: str, version: str, dest: Path) -> Path:
    """Copy sample ``style`` as image ``version`` into ``dest`` (created); return ``dest``."""
    if style not in STYLES:
        raise ValueError(f"unknown sample style {style!r}; one of {sorted(STYLES)}")
    layers = VERSIONS[version][0] if version in VERSIONS else EXPAND_CONTRACT_VERSIONS[version][0]
    shutil.copytree(
        SAMPLES_DIR / style, dest, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True
    )
    versions = versions_dir(dest)
    versions.mkdir(parents=True, exist_ok=True)
    for layer in layers:
        for revision_file in sorted((VARIANTS_DIR / layer).glob("*.py")):
            shutil.copy2(revision_file, versions / revision_file.name)
    return dest


def head_of(version: str) -> str:
    """The single head revision of an image version."""
    return VERSIONS[version][1]


def phase_heads_of(version: str) -> tuple[str, str | None]:
    """(expand head, contract head or None) of an expand/contract image version."""
    _, expand, contract = EXPAND_CONTRACT_VERSIONS[version]
    return expand, contract


def revision_source(
    revision: str,
    down_revision: str | None,
    upgrade: str = "pass",
    *,
    downgrade: str = "pass",
    doc: str | None = None,
    branch_labels: tuple[str, ...] | None = None,
    depends_on: str | None = None,
) -> str:
    """An Alembic revision file, as ``alembic revision`` writes it: ``revision`` after
    ``down_revision``, whose upgrade() and downgrade() run the given bodies (unindented
    statements; ``sa`` and ``op`` are imported)."""
    revises = f"Revises: {down_revision}" if down_revision else "Revises:"
    return f'''"""{doc or f"revision {revision}"}

Revision ID: {revision}
{revises}
"""

import sqlalchemy as sa
from alembic import op

revision = {revision!r}
down_revision = {down_revision!r}
branch_labels = {branch_labels!r}
depends_on = {depends_on!r}


def upgrade() -> None:
{_indented(upgrade)}


def downgrade() -> None:
{_indented(downgrade)}
'''


def _indented(body: str) -> str:
    return textwrap.indent(textwrap.dedent(body).strip(), "    ")
