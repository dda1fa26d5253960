"""Sample Alembic projects, one per seed env.py style, and the image versions built from them.

Each folder ``seed00N_*`` is a self-contained application directory (alembic.ini,
its migrations folder, a tiny ``app`` package) that can be bind-mounted as an
image's ``/app``. Its committed revisions are image version ``v1``; the other
versions add the revision files under ``variants/``. See README.md here.
"""

from __future__ import annotations

import configparser
import shutil
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

# Image version -> (variant folder or None, heads after upgrading).
VERSIONS: dict[str, tuple[str | None, str]] = {
    "v1": (None, "0003"),  # 0001 create table (+rows), 0002 add column, 0003 data migration
    "v2": ("v2", "0004"),  # v1 + 0004 (waits on SLOW_LOCK_KEY, then adds a column)
    "v2-broken": ("v2-broken", "0004"),  # v1 + a 0004 that fails (division by zero)
    "v3": ("v3", "0005"),  # v1 + the good 0004 + 0005 (an index): the fix for v2-broken
}

# A test that holds this advisory lock (pg_advisory_lock) keeps revision 0004 of
# v2/v3 waiting until it lets go: a migration that is as slow as the test wants.
SLOW_LOCK_KEY = 7400001

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
    variant, _ = VERSIONS[version]
    shutil.copytree(
        SAMPLES_DIR / style, dest, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True
    )
    if variant:
        for revision_file in sorted((VARIANTS_DIR / variant).glob("*.py")):
            shutil.copy2(revision_file, versions_dir(dest) / revision_file.name)
    return dest


def head_of(version: str) -> str:
    """The single head revision of an image version."""
    return VERSIONS[version][1]
