"""The runner payload: built by image/build_payload.py, copied by INSTALL_COMMAND, run by run.py.

No image can be built here, so these tests run the same script the Dockerfile
runs, the real `cp` of the contract's INSTALL_COMMAND, and the payload's run.py
in a fresh isolated interpreter.
"""

from __future__ import annotations

import ast
import filecmp
import glob
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from types import ModuleType

import pytest
from migrategate.runner import contract

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIR = REPO_ROOT / "operator" / "migrategate"
RUNNER_DIR = PACKAGE_DIR / "runner"
BUILD_SCRIPT = REPO_ROOT / "image" / "build_payload.py"

needs_cli = pytest.mark.skipif(
    not (RUNNER_DIR / "cli.py").is_file(),
    reason="operator/migrategate/runner/cli.py has not landed yet: run.py has nothing to call",
)

# What the runner may import: the stdlib, SQLAlchemy, Alembic, the Postgres drivers
# (imported only when present) and its own payload.
ALLOWED_THIRD_PARTY = {"sqlalchemy", "alembic", "psycopg", "psycopg2", "asyncpg"}
FORBIDDEN = (
    "kopf",
    "pydantic",
    "pydantic_settings",
    "kubernetes",
    "kubernetes_asyncio",
    "prometheus_client",
    "yaml",
    "pythonjsonlogger",
    "migrategate.controller",
    "migrategate.api",
)


def _load_build_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_payload", BUILD_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_script = _load_build_script()


def _files(root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}


@pytest.fixture(scope="module")
def payload(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_script.build_payload(tmp_path_factory.mktemp("image") / "payload")


def _expected_files() -> set[str]:
    """The payload file set, derived from the source tree independently of the build script."""
    expected = {"run.py", "migrategate/__init__.py"}
    for path in RUNNER_DIR.rglob("*.py"):
        if "__pycache__" not in path.parts:
            expected.add("migrategate/runner/" + path.relative_to(RUNNER_DIR).as_posix())
    return expected


def test_payload_has_exactly_the_runner(payload: Path) -> None:
    files = _files(payload)
    assert files == _expected_files()
    assert {"run.py", "migrategate/runner/__init__.py", "migrategate/runner/contract.py"} <= files
    assert not any(f.endswith((".pyc", ".toml")) or "__pycache__" in f for f in files)
    assert not any(f.startswith(("migrategate/controller", "migrategate/api")) for f in files)
    assert "migrategate/__main__.py" not in files


def test_payload_files_are_the_sources(payload: Path) -> None:
    sources = {"run.py": REPO_ROOT / "image" / "run.py"}
    sources.update(
        {f: PACKAGE_DIR / f.removeprefix("migrategate/") for f in _files(payload) if f != "run.py"}
    )
    for relative, source in sources.items():
        assert filecmp.cmp(payload / relative, source, shallow=False), relative


def test_payload_is_readable_by_any_uid(payload: Path) -> None:
    for path in [payload, *payload.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        assert mode == (0o755 if path.is_dir() else 0o644), (path, oct(mode))


def _module_name(relative: str) -> str:
    parts = PurePosixPath(relative).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(source: str, module: str, is_package: bool) -> Iterator[str]:
    """Absolute names of every module an import statement in source names."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            yield prefix
            yield from (f"{prefix}.{alias.name}" for alias in node.names)


def _payload_imports(payload: Path) -> Iterator[tuple[str, str]]:
    """(payload file, imported module name) for every import in the payload."""
    for relative in sorted(_files(payload)):
        source = (payload / relative).read_text()
        module = _module_name(relative) if relative != "run.py" else "__main__"
        for name in _imports(source, module, relative.endswith("__init__.py")):
            yield relative, name


def test_payload_imports_only_stdlib_sqlalchemy_alembic_and_itself(payload: Path) -> None:
    for relative, name in _payload_imports(payload):
        assert not any(name == f or name.startswith(f + ".") for f in FORBIDDEN), (
            f"{relative} imports {name}"
        )
        top = name.split(".")[0]
        assert top in sys.stdlib_module_names or top in ALLOWED_THIRD_PARTY | {"migrategate"}, (
            f"{relative} imports {name}, which application images need not have"
        )


@needs_cli
def test_payload_imports_of_migrategate_resolve_within_the_payload(payload: Path) -> None:
    shipped = {_module_name(f) for f in _files(payload) if f.startswith("migrategate/")}
    for relative, name in _payload_imports(payload):
        if name.split(".")[0] == "migrategate":
            # `from migrategate.runner import cli` names a module or an attribute of one.
            parent = name.rpartition(".")[0]
            assert name in shipped or parent in shipped, f"{relative}: {name} is not shipped"


def test_payload_parses_as_python_3_9(payload: Path) -> None:
    for relative in sorted(_files(payload)):
        ast.parse((payload / relative).read_text(), relative, feature_version=(3, 9))


def _python_3_9() -> str | None:
    # make test's compat virtualenv first; then PATH, then pyenv (PYENV_ROOT or ~/.pyenv).
    candidates = [os.environ.get("MIGRATEGATE_COMPAT_PYTHON"), shutil.which("python3.9")]
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    candidates += sorted(glob.glob(str(pyenv / "versions/3.9*/bin/python3.9")))
    for candidate in candidates:
        if not candidate:
            continue
        probe = subprocess.run([candidate, "--version"], capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.startswith("Python 3.9"):
            return candidate
    return None


def test_payload_compiles_under_a_real_python_3_9(payload: Path, tmp_path: Path) -> None:
    python39 = _python_3_9()
    if python39 is None:
        pytest.skip("no Python 3.9 interpreter on this machine (the ast check above still ran)")
    files = [str(payload / f) for f in sorted(_files(payload))]
    # The built-in compile() writes nothing, so the payload stays as built.
    probe = "import sys\nfor f in sys.argv[1:]:\n    compile(open(f).read(), f, 'exec')\n"
    compiled = subprocess.run(
        [python39, "-I", "-c", probe, *files], capture_output=True, text=True, cwd=tmp_path
    )
    assert compiled.returncode == 0, compiled.stderr


def test_build_payload_refuses_a_non_empty_dir(tmp_path: Path) -> None:
    (tmp_path / "stale.py").write_text("")
    with pytest.raises(FileExistsError):
        build_script.build_payload(tmp_path)


def test_build_script_command_line_builds_the_same_payload(payload: Path, tmp_path: Path) -> None:
    # As the Dockerfile runs it: `python image/build_payload.py DIR`, from another directory.
    out = tmp_path / "opt" / "payload"
    result = subprocess.run(
        [sys.executable, "-I", str(BUILD_SCRIPT), str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert _files(out) == _files(payload)
    again = subprocess.run(
        [sys.executable, "-I", str(BUILD_SCRIPT), str(out)], capture_output=True, text=True
    )
    assert again.returncode == 1 and "not empty" in again.stderr


def _install(image_payload: Path, injected: Path) -> list[str]:
    """contract.INSTALL_COMMAND with the two contract paths moved under the test's tmp dir."""
    command = []
    for arg in contract.INSTALL_COMMAND:
        if arg.startswith(contract.IMAGE_PAYLOAD_DIR):
            arg = str(image_payload) + arg[len(contract.IMAGE_PAYLOAD_DIR) :]
        elif arg.startswith(contract.INJECTED_PAYLOAD_DIR):
            arg = str(injected) + arg[len(contract.INJECTED_PAYLOAD_DIR) :]
        command.append(arg)
    assert str(image_payload) in " ".join(command) and str(injected) in " ".join(command)
    return command


@pytest.fixture
def injected(payload: Path, tmp_path: Path) -> Path:
    """An emptyDir after the init container's INSTALL_COMMAND ran (twice: a restart)."""
    target = tmp_path / "emptydir"
    target.mkdir()
    for _ in range(2):
        copied = subprocess.run(_install(payload, target), capture_output=True, text=True)
        assert copied.returncode == 0, copied.stderr
    return target


def test_install_command_copies_the_payload_into_the_volume(payload: Path, injected: Path) -> None:
    assert _files(injected) == _files(payload)
    for relative in _files(payload):
        assert filecmp.cmp(payload / relative, injected / relative, shallow=False), relative
    entrypoint = PurePosixPath(contract.INJECTED_ENTRYPOINT).relative_to(
        contract.INJECTED_PAYLOAD_DIR
    )
    assert (injected / entrypoint).is_file()


def _run_payload(
    run_py: Path, args: list[str], cwd: Path, **env: str
) -> subprocess.CompletedProcess:
    """Run `python -I run.py ARGS` as the application container does, but isolated.

    -I drops PYTHONPATH, the user site and the script's directory from sys.path,
    so run.py has to find the payload by itself.
    """
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    return subprocess.run(
        [sys.executable, "-I", str(run_py), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**base, **env},
        timeout=120,
    )


def _origin_of_cli(run_py: Path, cwd: Path) -> str:
    """The file migrategate.runner.cli was imported from when run.py ran."""
    probe = (
        "import runpy, sys\n"
        f"sys.argv = [{str(run_py)!r}, '--help']\n"
        "try:\n"
        f"    runpy.run_path({str(run_py)!r}, run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sys.modules['migrategate.runner.cli'].__file__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", probe], capture_output=True, text=True, cwd=cwd, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@needs_cli
def test_run_py_runs_from_the_payload_alone(payload: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "app"
    elsewhere.mkdir()
    result = _run_payload(payload / "run.py", ["--help"], elsewhere)
    assert result.returncode == 0, result.stderr
    for command in contract.COMMANDS:
        assert command in result.stdout
    assert (
        Path(_origin_of_cli(payload / "run.py", elsewhere)) == payload / "migrategate/runner/cli.py"
    )


@needs_cli
def test_run_py_from_the_installed_copy_derives_the_url(injected: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "app"
    elsewhere.mkdir()
    url = "postgresql+asyncpg://shop:s3cr%40t-pw@db.example.internal:5432/shop?ssl=require"
    result = _run_payload(injected / "run.py", ["url"], elsewhere, DATABASE_URL=url)
    assert result.returncode == 0, result.stderr
    assert "db.example.internal" in result.stdout
    assert "sslmode=require" in result.stdout
    assert "s3cr" not in result.stdout + result.stderr
    # The test extra installs psycopg (v3), which `--driver auto` prefers.
    assert "postgresql+psycopg://" in result.stdout
    origin = _origin_of_cli(injected / "run.py", elsewhere)
    assert Path(origin) == injected / "migrategate/runner/cli.py"


def test_image_readme_shows_the_contracts_commands() -> None:
    readme = (REPO_ROOT / "image" / "README.md").read_text()
    assert " ".join(contract.INSTALL_COMMAND) in readme
    assert f"python {contract.INJECTED_ENTRYPOINT} migrate" in readme
    assert f"`{contract.IMAGE_PAYLOAD_DIR}`" in readme
