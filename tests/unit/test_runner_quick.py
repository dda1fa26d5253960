"""The quick path's reading of a project, without a database: the same heads Alembic finds,
and Undecided wherever it cannot be sure."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import samples
from migrategate.runner import quick, scripts
from migrategate.runner.settings import Settings

ALL_VERSIONS = sorted(samples.VERSIONS)


def settings(**changes: Any) -> Settings:
    return dataclasses.replace(Settings(), **changes)


def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, style: str, version: str) -> Path:
    path = samples.materialize(style, version, tmp_path / "app")
    monkeypatch.chdir(path)
    return path


@pytest.mark.parametrize("version", ALL_VERSIONS)
@pytest.mark.parametrize("style", sorted(samples.STYLES))
def test_the_heads_are_alembics(tmp_path, monkeypatch, style: str, version: str) -> None:
    project(tmp_path, monkeypatch, style, version)
    alembic_heads = scripts.load_scripts(scripts.load_config("alembic.ini", "alembic")).get_heads()
    assert quick.target_heads(settings()) == tuple(sorted(alembic_heads))
    assert quick.target_heads(settings(target="heads")) == (samples.head_of(version),)


def test_a_contract_branch_is_left_to_the_full_path(tmp_path, monkeypatch) -> None:
    project(tmp_path, monkeypatch, "seed004_ini_url", "ec-v2")
    with pytest.raises(quick.Undecided, match="contract branch"):
        quick.target_heads(settings(target="heads", phase="expand"))


def write(versions: Path, name: str, source: str) -> None:
    (versions / f"{name}.py").write_text(source)


def test_two_heads_are_a_target_only_as_heads(tmp_path, monkeypatch) -> None:
    path = project(tmp_path, monkeypatch, "seed004_ini_url", "v1")
    write(samples.versions_dir(path), "0003b", samples.revision_source("0003b", "0002"))
    assert quick.target_heads(settings(target="heads")) == ("0003", "0003b")
    with pytest.raises(quick.Undecided, match="several heads"):
        quick.target_heads(settings())


UNSURE = {
    "a computed id": 'revision = "00" + "06"\ndown_revision = "0003"\n',
    "an id assigned twice": 'revision = "0006"\nrevision = "0007"\ndown_revision = "0003"\n',
    "an id set in a branch": (
        'revision = "0006"\ndown_revision = "0003"\nif True:\n    down_revision = "0002"\n'
    ),
    "no down_revision": 'revision = "0006"\n',
    "a dependency": samples.revision_source("0006", "0003", depends_on="0002"),
    "an unknown down_revision": samples.revision_source("0006", "9999"),
    "a duplicate id": samples.revision_source("0003", "0002"),
    "not Python": "revision = (\n",
}


@pytest.mark.parametrize("what", sorted(UNSURE))
def test_revision_files_it_cannot_read_for_sure(tmp_path, monkeypatch, what: str) -> None:
    path = project(tmp_path, monkeypatch, "seed004_ini_url", "v1")
    write(samples.versions_dir(path), "0006_extra", UNSURE[what])
    with pytest.raises((quick.Undecided, SyntaxError, ValueError)):
        quick.target_heads(settings())


def test_annotated_ids_as_alembic_templates_write_them(tmp_path, monkeypatch) -> None:
    path = project(tmp_path, monkeypatch, "seed004_ini_url", "v1")
    source = (
        'revision: str = "0006"\ndown_revision: str | None = "0003"\n'
        "branch_labels: tuple[str, ...] | None = None\ndepends_on: str | None = None\n"
    )
    write(samples.versions_dir(path), "0006_annotated", source)
    assert quick.target_heads(settings()) == ("0006",)


def test_files_alembic_skips_are_skipped(tmp_path, monkeypatch) -> None:
    path = project(tmp_path, monkeypatch, "seed004_ini_url", "v1")
    versions = samples.versions_dir(path)
    (versions / "__init__.py").write_text("")
    (versions / ".#0006.py").write_text("not a revision")
    (versions / "notes.txt").write_text("")
    assert quick.target_heads(settings()) == ("0003",)


@pytest.mark.parametrize(
    ("option", "why"),
    [
        ("version_locations = %(here)s/more", "outside its versions"),
        ("recursive_version_locations = false", "outside its versions"),
        ("sourceless = false", "outside its versions"),
    ],
)
def test_other_layouts_are_left_to_alembic(tmp_path, monkeypatch, option: str, why: str) -> None:
    path = project(tmp_path, monkeypatch, "seed004_ini_url", "v1")
    ini = path / "alembic.ini"
    ini.write_text(ini.read_text().replace("[alembic]\n", f"[alembic]\n{option}\n", 1))
    with pytest.raises(quick.Undecided, match=why):
        quick.target_heads(settings())


def test_here_is_the_ini_files_folder(tmp_path, monkeypatch) -> None:
    path = project(tmp_path, monkeypatch, "seed004_ini_url", "v1")
    ini = path / "alembic.ini"
    location = quick.script_location("alembic.ini", "alembic")
    ini.write_text(ini.read_text().replace(f"= {location}\n", "= %(here)s/" + location + "\n"))
    assert quick.script_location("alembic.ini", "alembic") == f"{path}/{location}"
    assert quick.target_heads(settings()) == ("0003",)


def test_a_package_resource_or_another_version_table_is_left_alone(tmp_path, monkeypatch) -> None:
    path = project(tmp_path, monkeypatch, "seed004_ini_url", "v1")
    ini = path / "alembic.ini"
    location = quick.script_location("alembic.ini", "alembic")
    env_py = path / location / "env.py"
    env_py.write_text(env_py.read_text() + '\n# version_table="app_versions"\n')
    with pytest.raises(quick.Undecided, match="version table"):
        quick.target_heads(settings())
    ini.write_text(ini.read_text().replace(f"= {location}\n", "= app:migrations\n"))
    with pytest.raises(quick.Undecided, match="package resource"):
        quick.target_heads(settings())


@pytest.mark.parametrize(
    ("command", "changes"),
    [
        ("check", {}),
        ("plan", {}),
        ("migrate", {"x_args": ("tenant=a",)}),
        ("migrate", {"target": "0002"}),
        ("migrate", {"driver": "asyncpg"}),
        ("migrate", {"phase": "contract"}),
    ],
)
def test_runs_it_does_not_try(tmp_path, monkeypatch, command: str, changes: dict) -> None:
    """Nothing is read: the database URL would not even connect."""
    project(tmp_path, monkeypatch, "seed004_ini_url", "v1")
    env = {"DATABASE_URL": "postgresql+asyncpg://app:pw@127.0.0.1:1/app"}
    assert quick.at_target(command, settings(**changes), env) is None


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://app:pw@db/app?ssl=require",  # asyncpg's, not libpq's parameters
        "postgresql+psycopg://app:pw@db/app",
        "postgresql+asyncpg://app:pw@db1,db2/app",
        "not a url",
    ],
)
def test_urls_it_leaves_to_the_full_path(url: str) -> None:
    with pytest.raises(quick.Undecided):
        quick.read_heads(url)
