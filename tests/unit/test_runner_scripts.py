"""Pure decisions over an Alembic project: target, classification, env.py inspection, failures."""

from __future__ import annotations

from pathlib import Path

import pytest
import samples
from migrategate.runner import envpy, errors, scripts
from migrategate.runner.errors import BadInput

BRANCH = samples.revision_source("0003b", "0002", 'raise RuntimeError("boom in 0003b")')


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Sample v3 as the working directory (script_location is relative to it, as in a pod)."""
    path = samples.materialize("seed004_ini_url", "v3", tmp_path / "app")
    monkeypatch.chdir(path)
    return path


def load(project: Path, x_args: tuple = ()):
    cfg = scripts.load_config(str(project / "alembic.ini"), "alembic", x_args)
    return scripts.load_scripts(cfg)


def test_resolve_target(project: Path) -> None:
    script = load(project)
    assert scripts.resolve_target(script, "head") == ("0005",)
    assert scripts.resolve_target(script, "0003") == ("0003",)
    with pytest.raises(BadInput, match="unknown target revision 'cafe'"):
        scripts.resolve_target(script, "cafe")


def test_multiple_heads_are_named(project: Path) -> None:
    (samples.versions_dir(project) / "0003b_branch.py").write_text(BRANCH)
    script = load(project)
    with pytest.raises(BadInput) as raised:
        scripts.resolve_target(script, "head")
    assert "0003b, 0005" in raised.value.message and "alembic merge heads" in raised.value.message
    assert scripts.resolve_target(script, "heads") == ("0003b", "0005")


@pytest.mark.parametrize(
    ("current", "target", "position"),
    [
        ([], ["0005"], scripts.Position.BEHIND),
        (["0003"], ["0005"], scripts.Position.BEHIND),
        (["0005"], ["0005"], scripts.Position.AT_TARGET),
        (["0005"], ["0003"], scripts.Position.AHEAD),
        (["9999"], ["0005"], scripts.Position.AHEAD),
        ([], [], scripts.Position.AT_TARGET),
    ],
)
def test_compare(project: Path, current: list, target: list, position: scripts.Position) -> None:
    assert scripts.compare(load(project), current, target) == position


def test_pending_revisions_oldest_first(project: Path) -> None:
    script = load(project)
    everything = ["0001", "0002", "0003", "0004", "0005"]
    assert scripts.pending_revisions(script, [], ["0005"]) == everything
    assert scripts.pending_revisions(script, ["0003"], ["0005"]) == ["0004", "0005"]
    assert scripts.unknown_revisions(script, ["0003", "abc"]) == ["abc"]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("context.configure(connection=c)", (None, "alembic_version")),
        ("context.configure(connection=c, version_table='v')", (None, "v")),
        ('configure(version_table="v", version_table_schema="s")', ("s", "v")),
        ("configure(version_table=TABLE)", None),
        ("configure(version_table='a')\nconfigure(version_table='b')", None),
        ("configure(version_table='v', version_table_schema=schema)", None),
    ],
)
def test_version_table_from_env_py(source: str, expected: tuple | None) -> None:
    assert envpy.version_table(source) == expected


def test_env_py_styles_of_the_samples_are_recognised(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    own_loop = {}
    for style in samples.STYLES:
        project = samples.materialize(style, "v1", tmp_path / style)
        monkeypatch.chdir(project)
        source = scripts.env_py_source(load(project))
        assert source, style
        own_loop[style] = envpy.starts_own_event_loop(source)
        assert envpy.version_table(source) == (None, "alembic_version")
    assert own_loop == {
        "seed000_env_sync_url": False,
        "seed001_async_settings": True,
        "seed002_async_engine_wrap": True,
        "seed003_settings_sync_property": False,
        "seed004_ini_url": False,
    }


def test_failing_revision_is_found_in_the_traceback(project: Path) -> None:
    path = samples.versions_dir(project) / "0003b_branch.py"
    path.write_text(BRANCH)
    script = load(project)
    namespace: dict = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    try:
        try:
            namespace["upgrade"]()
        except RuntimeError as inner:
            raise ValueError("wrapped") from inner
    except ValueError as error:
        assert scripts.failing_revision(error, script) == "0003b"
        assert errors.first_line(error) == "ValueError: wrapped"
    assert scripts.failing_revision(RuntimeError("elsewhere"), script) is None


def test_missing_section_and_script_location(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    ini = tmp_path / "alembic.ini"
    ini.write_text("[other]\nx = 1\n")
    with pytest.raises(BadInput, match=r"no \[alembic\] section"):
        scripts.load_config(str(ini), "alembic")
    ini.write_text("[alembic]\nscript_location = nowhere\n")
    with pytest.raises(BadInput, match="cannot load the Alembic scripts"):
        load(tmp_path)
