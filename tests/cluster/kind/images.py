"""The images the cluster scenarios name, built with Docker, and their image map.

    python tests/cluster/kind/images.py build --out images.json [--python-image IMAGE]
    python tests/cluster/kind/images.py names images.json    # one per line, for `kind load`

``build`` runs ``docker build`` for the migrategate image (image/Dockerfile, as
it is), one app base per stack the wanted flavours need (appbase.Dockerfile), and
each sample application image (app.Dockerfile), then writes the image map that
``MIGRATEGATE_IMAGES`` points the tests at (kubeharness/external.py).

Wanted: every sample style at every image version, flavour ``root`` (what
test_operator.py, test_gate.py and test_chart.py ask ``node_images.app`` for), and
seed004_ini_url at v1 in every flavour (test_job_pods.py), as imagebuild's ``all``.

run.sh calls this. It was written on a machine without a Docker daemon and has
not been run there; the plan (names, build arguments) is unit-tested.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import samples
from kubeharness import external, imagebuild

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]


TAG = "e2e"
RUNNER = f"localhost/migrategate:{TAG}"
FLAVOUR_STYLE = "seed004_ini_url"  # built at v1 in every flavour


def wanted() -> list[tuple[str, str, str]]:
    """(style, version, flavour) of every application image to build."""
    apps = list(itertools.product(sorted(samples.STYLES), samples.VERSIONS, ["root"]))
    return apps + [(FLAVOUR_STYLE, "v1", f) for f in imagebuild.FLAVOURS if f != "root"]


def app_name(style: str, version: str, flavour: str) -> str:
    return f"localhost/migrategate-app:{style}-{version}-{flavour}"


def appbase_name(stack: str) -> str:
    return f"localhost/migrategate-appbase:{stack}-{TAG}"


def image_map(apps: Sequence[tuple[str, str, str]]) -> dict[str, str]:
    """What MIGRATEGATE_IMAGES holds: the map key -> image name."""
    images = {"runner": RUNNER}
    images.update({external.app_key(*app): app_name(*app) for app in apps})
    return external.parse_image_map(images)


def _python(python_image: str | None) -> list[str]:
    return ["--build-arg", f"PYTHON_IMAGE={python_image}"] if python_image else []


def runner_build(python_image: str | None = None) -> list[str]:
    """image/Dockerfile unchanged, from the repository root (its .dockerignore applies)."""
    argv = ["docker", "build", "-f", str(REPO / "image" / "Dockerfile"), "-t", RUNNER]
    return [*argv, *_python(python_image), str(REPO)]


def appbase_build(stack: str, python_image: str | None = None) -> list[str]:
    requirements = " ".join(imagebuild.STACKS[stack])
    argv = ["docker", "build", "-f", str(HERE / "appbase.Dockerfile"), "-t", appbase_name(stack)]
    argv += ["--build-arg", f"REQUIREMENTS={requirements}", *_python(python_image)]
    return [*argv, str(HERE)]


def app_build(style: str, version: str, flavour: str, context: Path) -> list[str]:
    """``context`` holds the materialised project as ``app/``."""
    spec = imagebuild.FLAVOURS[flavour]
    target = "named-user" if spec.user else "root"
    argv = ["docker", "build", "-f", str(HERE / "app.Dockerfile"), "--target", target]
    argv += ["--build-arg", f"BASE={appbase_name(spec.stack)}"]
    argv += ["-t", app_name(style, version, flavour)]
    return [*argv, str(context)]


def _run(argv: Sequence[str]) -> None:
    print("+", " ".join(argv), flush=True)
    subprocess.run(argv, check=True)


def build(out: Path, python_image: str | None) -> None:
    apps = wanted()
    _run(runner_build(python_image))
    for stack in sorted({imagebuild.FLAVOURS[flavour].stack for _, _, flavour in apps}):
        _run(appbase_build(stack, python_image))
    for style, version, flavour in apps:
        with tempfile.TemporaryDirectory(prefix="mg-kind-app-") as tmp:
            imagebuild.materialize_project(style, version, Path(tmp) / "app", {})
            _run(app_build(style, version, flavour, Path(tmp)))
    out.write_text(json.dumps(image_map(apps), indent=2, sort_keys=True) + "\n")
    print(f"image map: {out}", flush=True)


def names(path: Path) -> list[str]:
    """The distinct image names of an image map, sorted."""
    return sorted(set(external.parse_image_map(json.loads(path.read_text()), str(path)).values()))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="docker build every image; write the image map")
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--python-image", help="base of every image (default: the Dockerfiles')")
    n = sub.add_parser("names", help="print an image map's image names")
    n.add_argument("map", type=Path)
    args = parser.parse_args(argv)
    if args.command == "build":
        build(args.out, args.python_image)
    else:
        print("\n".join(names(args.map)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
