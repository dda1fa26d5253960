"""Lay out the runner payload that the migrategate image ships for injection.

    python image/build_payload.py OUT_DIR

writes

    OUT_DIR/run.py                       the bootstrap (image/run.py)
    OUT_DIR/migrategate/__init__.py      the package root (holds __version__)
    OUT_DIR/migrategate/runner/**/*.py   the runner, and nothing else of the package

The Dockerfile runs this in its build stage; the tests run the same function,
since no image can be built where they run. The payload is copied as source:
it runs on the application's own Python, whose version the image cannot know,
so no bytecode is shipped. Stdlib only, Python >= 3.9.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = REPO_ROOT / "operator" / "migrategate"
BOOTSTRAP = Path(__file__).resolve().parent / "run.py"

FILE_MODE = 0o644
DIR_MODE = 0o755


def payload_sources(
    package_dir: Path = PACKAGE_DIR, bootstrap: Path = BOOTSTRAP
) -> dict[str, Path]:
    """Map each payload path (relative, POSIX) to the source file it is copied from."""
    runner_dir = package_dir / "runner"
    if not (runner_dir / "__init__.py").is_file():
        raise FileNotFoundError(f"no runner package at {runner_dir}")
    sources = {
        "run.py": bootstrap,
        "migrategate/__init__.py": package_dir / "__init__.py",
    }
    for path in sorted(runner_dir.rglob("*.py")):
        relative = path.relative_to(runner_dir)
        if "__pycache__" in relative.parts:
            continue
        sources["migrategate/runner/" + relative.as_posix()] = path
    return sources


def build_payload(
    out_dir: Path, package_dir: Path = PACKAGE_DIR, bootstrap: Path = BOOTSTRAP
) -> Path:
    """Write the payload into out_dir, which must be absent or empty; return out_dir.

    Files are made world-readable whatever the umask, because the application
    container that runs them may use any UID.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty; the payload must hold only its own files")
    sources = payload_sources(package_dir, bootstrap)
    out_dir.mkdir(parents=True, exist_ok=True)
    out_dir.chmod(DIR_MODE)
    for relative, source in sources.items():
        target = out_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        target.chmod(FILE_MODE)
    for directory in out_dir.rglob("*"):
        if directory.is_dir():
            directory.chmod(DIR_MODE)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="directory to create (absent or empty)")
    args = parser.parse_args(argv)
    try:
        out_dir = build_payload(args.out_dir)
    except (FileExistsError, FileNotFoundError) as error:
        print(f"build_payload: {error}", file=sys.stderr)
        return 1
    count = sum(1 for path in out_dir.rglob("*") if path.is_file())
    print(f"runner payload: {count} files in {out_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
